"""FITS checksums computed block by block agree with astropy and verify with fitsverify."""

from __future__ import annotations

import io
import shutil
import subprocess
import warnings

import numpy as np
import pytest
from astropy.io import fits

from obsflow.fitschecksum import DataSum, checksum_of, datasum_of, disk_form_and_sum, set_checksum


def _arrays() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.normal(size=(37, 53)).astype(np.float32),
            rng.integers(0, 256, size=(3, 7, 11), dtype=np.uint8),  # 231 bytes: not whole words
            rng.integers(0, 2**32, size=(64, 64), dtype=np.uint32),
            np.zeros((5, 5), np.float32),
            np.full((4, 4), -1, np.int32)]  # all ones: sums to negative zero


@pytest.mark.parametrize("index", range(5))
@pytest.mark.parametrize("layout", ["native", "big-endian", "non-contiguous"])
def test_disk_form_and_sum_equal_astropys_bytes_and_datasum(index: int, layout: str) -> None:
    """The compiled swap-and-sum pass (4-byte native arrays) and the general path give the
    bytes and DATASUM astropy writes, whatever the array's byte order and layout."""
    data = _arrays()[index]
    if layout == "big-endian":
        data = data.astype(data.dtype.newbyteorder(">"))
    elif layout == "non-contiguous":
        data = np.repeat(data, 2, axis=-1)[..., ::2]
    hdu = fits.ImageHDU(np.array(data), name="SCI")
    hdu.add_checksum(when="t")
    buffer = io.BytesIO()
    hdu.writeto(buffer)
    padded = -(-data.nbytes // 2880) * 2880
    on_disk = buffer.getvalue()[-padded:][:data.nbytes]
    raw, words = disk_form_and_sum(data)
    assert raw.tobytes() == on_disk
    assert datasum_of(words) == int(hdu.header["DATASUM"])
    if data.dtype.itemsize == 4:  # whole words: a running sum takes the plain sum
        acc = DataSum()
        acc.add_words(words)
        acc.add_words(words)
        twice = DataSum()
        twice.update(np.concatenate([data.reshape(-1), data.reshape(-1)]))
        assert acc.value == twice.value


@pytest.mark.parametrize("index", range(5))
def test_datasum_in_blocks_equals_astropy(index: int) -> None:
    data = _arrays()[index]
    hdu = fits.ImageHDU(data.copy(), name="SCI")
    hdu.add_checksum(when="t")
    flat = data.reshape(-1)
    for cuts in ([flat.size], [1, 2, 3, 5, 8, 13], [flat.size // 3, flat.size // 3 + 1]):
        acc = DataSum()
        start = 0
        for size in cuts + [flat.size]:
            stop = min(start + size, flat.size)
            acc.update(flat[start:stop])
            start = stop
        assert acc.value == int(hdu.header["DATASUM"])
    buffer = io.BytesIO()  # the same data fed as the bytes astropy writes, in odd pieces
    hdu.writeto(buffer)
    padded = -(-data.nbytes // 2880) * 2880  # the file ends with this HDU's padded data
    be = buffer.getvalue()[-padded:][:data.nbytes]
    raw = DataSum()
    for k in range(0, len(be), 7):
        raw.update(be[k:k + 7])
    assert raw.value == int(hdu.header["DATASUM"])


@pytest.mark.parametrize("index", range(5))
def test_checksum_equals_astropy(index: int) -> None:
    data = _arrays()[index]
    hdu = fits.ImageHDU(data.copy(), name="SCI")
    hdu.header["OBSERVER"] = ("someone", "a card with a comment")
    hdu.add_checksum(when="t")
    ours = hdu.header.copy()
    acc = DataSum()
    acc.update(data)
    set_checksum(ours, acc.value, when="t")
    assert ours["CHECKSUM"] == hdu.header["CHECKSUM"]
    assert ours.tostring() == hdu.header.tostring()
    assert checksum_of(hdu.header, acc.value) == hdu.header["CHECKSUM"]


def test_streamed_file_verifies(tmp_path) -> None:
    """A file written header first, then data block by block, passes astropy's and
    fitsverify's checksum checks; a flipped byte fails astropy's."""
    data = np.random.default_rng(3).normal(size=(200, 30, 30)).astype(np.float32)
    primary = fits.PrimaryHDU()
    set_checksum(primary.header, 0)
    header = fits.ImageHDU(np.empty((0,), np.float32), name="SCI").header
    header["NAXIS"], header["NAXIS1"] = 3, 30
    header.insert("NAXIS1", ("NAXIS2", 30), after=True)
    header.insert("NAXIS2", ("NAXIS3", 200), after=True)
    acc = DataSum()
    for i in range(0, 200, 17):
        acc.update(data[i:i + 17])
    set_checksum(header, acc.value)
    path = tmp_path / "streamed.fits"
    with open(path, "wb") as fh:
        fh.write(primary.header.tostring().encode())
        fh.write(header.tostring().encode())
        for i in range(0, 200, 17):
            fh.write(data[i:i + 17].astype(">f4").tobytes())
        fh.write(bytes(-fh.tell() % 2880))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with fits.open(path, checksum=True) as hdul:
            np.testing.assert_array_equal(hdul["SCI"].data, data)
    if shutil.which("fitsverify"):
        out = subprocess.run(["fitsverify", "-q", str(path)], capture_output=True, text=True)
        assert "OK" in out.stdout and out.returncode == 0, out.stdout
    raw = bytearray(path.read_bytes())
    raw[2 * 2880 + 100] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="verification failed"), \
            fits.open(path, checksum=True) as hdul:
        hdul["SCI"].data.sum()
