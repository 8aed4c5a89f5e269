"""Atomic writing and its clean-up after a killed writer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from obsflow.fileio import atomic_path, sweep_temp_files


def test_atomic_path_leaves_nothing_on_error(tmp_path: Path) -> None:
    final = tmp_path / "product.fits"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(final) as tmp:
        tmp.write_bytes(b"whole")
    assert final.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [final]


_WRITER = """
import sys, time
from pathlib import Path
from obsflow.fileio import atomic_path
with atomic_path(Path(sys.argv[1])) as tmp:
    tmp.write_bytes(b"half a product")
    print(tmp, flush=True)
    time.sleep(600)
"""


def _writer(final: Path) -> tuple[subprocess.Popen[str], Path]:
    """A real process writing ``final`` through atomic_path, paused mid-write."""
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(final)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    with proc.stdout:
        return proc, Path(proc.stdout.readline().strip())


def test_sweep_removes_the_temporary_file_of_a_killed_writer_only(tmp_path: Path) -> None:
    killed, abandoned = _writer(tmp_path / "a" / "x_cal.fits")
    live, held = _writer(tmp_path / "b" / "y_cal.fits")
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        other = tmp_path / "c.part"  # a ground station's delivery in progress: not obsflow's
        other.write_bytes(b"x")
        assert abandoned.exists() and held.exists()
        assert sweep_temp_files(tmp_path, 3600) == []  # younger than the safe age: kept
        later = time.time() + 7200
        assert sweep_temp_files(tmp_path, 3600, now=later) == [abandoned]
        assert not abandoned.exists() and held.exists() and other.exists()
        assert sweep_temp_files(tmp_path, 0.0, now=later) == []  # a live writer's: never
        assert held.read_bytes() == b"half a product"
    finally:
        live.kill()
        live.wait()
    assert sweep_temp_files(tmp_path, 0.0) == [held]  # its writer is gone now
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "c.part"]


def test_writer_taking_over_an_abandoned_name_is_not_disturbed(tmp_path: Path) -> None:
    """A temporary name left by a dead process whose pid (and thread id) came back."""
    final = tmp_path / "p.fits"
    leftover = final.with_name(f".p.fits.{os.getpid()}-{threading.get_native_id()}.part")
    leftover.write_bytes(b"stale bytes of an earlier process")
    os.utime(leftover, (0, 0))
    with atomic_path(final) as tmp:
        assert tmp == leftover and tmp.read_bytes() == b""  # taken over, emptied, locked
        assert sweep_temp_files(tmp_path, 0.0) == []
        tmp.write_bytes(b"new")
    assert final.read_bytes() == b"new" and list(tmp_path.iterdir()) == [final]


def test_two_threads_writing_one_file_use_their_own_temporary_names(tmp_path: Path) -> None:
    final = tmp_path / "product.fits"
    both_open = threading.Barrier(2)
    temps: dict[str, Path] = {}
    errors: list[BaseException] = []
    contents = {"a": b"a" * 100_000, "b": b"b" * 100_000}

    def write(name: str) -> None:
        try:
            with atomic_path(final) as tmp:
                temps[name] = tmp
                tmp.write_bytes(contents[name])
                both_open.wait(timeout=10)  # both temporary files exist at this point
                assert tmp.read_bytes() == contents[name]
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(name,)) for name in contents]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert temps["a"] != temps["b"] and temps["a"].parent == temps["b"].parent == tmp_path
    assert all(t.name.startswith(".product.fits.") and t.name.endswith(".part")
               for t in temps.values())
    assert final.read_bytes() in contents.values()
    assert list(tmp_path.iterdir()) == [final]


def _products() -> dict[str, object]:
    import numpy as np
    from astropy.io import fits
    from astropy.table import Table

    rng = np.random.default_rng(5)
    table = fits.table_to_hdu(Table({"step": ["dq_init", "ramp_fit"], "status": ["COMPLETE"] * 2}))
    table.name = "PROVENANCE"
    primary = fits.PrimaryHDU()
    primary.header["TARGNAME"] = ("a target", "with a comment")
    return {
        "rate-like": [primary.copy(), fits.ImageHDU(rng.normal(size=(33, 47)).astype(np.float32), name="SCI"),
                      fits.ImageHDU(rng.integers(0, 2**32, (33, 47), dtype=np.uint32), name="DQ"),
                      table.copy()],
        "uncal-like": [primary.copy(),
                       fits.ImageHDU(rng.integers(0, 65536, (2, 3, 9, 7), dtype=np.uint16), name="SCI"),
                       fits.ImageHDU(rng.integers(0, 256, (2, 3, 9, 7), dtype=np.uint8), name="GROUPDQ")],
        "big-endian and float64": [fits.PrimaryHDU(rng.normal(size=(5, 5)).astype(">f8")),
                                   fits.ImageHDU(rng.integers(-9, 9, (4, 4), dtype=np.int16))],
        "header only": [primary.copy(), fits.ImageHDU(name="EMPTY")],
    }


@pytest.mark.parametrize("name", list(_products()))
def test_write_fits_bytes_equal_astropy(tmp_path: Path, name: str) -> None:
    """The one-pass writer writes exactly the bytes of astropy's add_checksum + writeto,
    and its sha256 and size are the file's."""
    import hashlib

    from astropy.io import fits

    from obsflow.fileio import write_fits_hashed

    ours = fits.HDUList(_products()[name])
    written = write_fits_hashed(ours, tmp_path / "ours.fits", stamp="t")
    theirs = fits.HDUList(_products()[name])
    for hdu in theirs:
        hdu.add_checksum(when="t")
    theirs.writeto(tmp_path / "astropy.fits", checksum=False)
    data = written.path.read_bytes()
    assert data == (tmp_path / "astropy.fits").read_bytes()
    assert written.sha256 == hashlib.sha256(data).hexdigest() and written.size == len(data)
    with fits.open(written.path, checksum=True) as hdul:
        assert len(hdul) == len(ours)
