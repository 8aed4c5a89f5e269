"""Reference-file layout: the one writer and reader round-trip, and bad files are refused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from obsflow.exceptions import ReferenceFileError
from obsflow.models.reffiles import (
    LAYOUTS,
    PHOTOM_COLUMNS,
    REFTYPES,
    REQUIRED_KEYWORDS,
    PhotomTable,
    RefHeader,
    check_layout,
    read_photom,
    read_reference_array,
    write_reference_file,
)
from obsflow.profiles import load_profile
from obsflow.refdata.validate import read_record

PROFILE = load_profile("smallsat")  # one 256 x 256 detector SSD1, filters J, H, K
SHAPE = (256, 256)


def _header(reftype: str, **kw: object) -> RefHeader:
    base = RefHeader(reftype, "OBSFLOW-S", "SSCAM", "SSD1", "2026-01-01T00:00:00",
                     pedigree="GROUND", author="tests", descrip=f"a {reftype}", bunit="DN")
    return replace(base, **kw)  # type: ignore[arg-type]


def _image(reftype: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if reftype == "MASK":
        return rng.integers(0, 2**31, SHAPE).astype(np.uint32)
    return rng.normal(100.0, 5.0, SHAPE).astype(np.float32)


def _photom() -> PhotomTable:
    return PhotomTable(("J", "H", "K"), np.array([1.5, 2.5, 3.5]), np.array([0.1, 0.2, 0.3]),
                       np.array([1.25, 1.63, 2.15]))


IMAGES = [r for r, lay in LAYOUTS.items() if lay.dtype is not None and not lay.coefficients]


@pytest.mark.parametrize("reftype", IMAGES)
def test_image_round_trip(tmp_path: Path, reftype: str) -> None:
    data = _image(reftype)
    kw = {"filter": "J"} if reftype == "FLAT" else {}
    path = write_reference_file(tmp_path / "r.fits", _header(reftype, **kw), data)
    back = read_reference_array(path, reftype)
    assert np.array_equal(back, data)
    # the layout, read independently with astropy
    with fits.open(path, checksum=True) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", REFTYPES[reftype]]
        assert hdul[1].data.dtype.newbyteorder("=") == LAYOUTS[reftype].dtype
        assert all(k in hdul[0].header for k in REQUIRED_KEYWORDS)
    record = read_record(path, PROFILE)  # and refdata validation accepts it
    assert record.reftype == reftype and record.filter == ("J" if reftype == "FLAT" else "ANY")


def test_header_cards_in_order(tmp_path: Path) -> None:
    header = _header("flat", filter="H", readpatt="RAPID", extra=(("NOISETYP", "SINGLE"),))
    path = write_reference_file(tmp_path / "f.fits", header, _image("FLAT"))
    h = fits.getheader(path)
    cards = [k for k in h if k not in ("SIMPLE", "BITPIX", "NAXIS", "EXTEND", "CHECKSUM",
                                       "DATASUM")]
    assert cards == ["REFTYPE", "TELESCOP", "INSTRUME", "DETECTOR", "SUBARRAY", "USEAFTER",
                     "PEDIGREE", "AUTHOR", "DESCRIP", "BUNIT", "FILTER", "READPATT", "NOISETYP"]
    assert h["REFTYPE"] == "FLAT" and h["USEAFTER"] == "2026-01-01T00:00:00"
    record = read_record(path, PROFILE)
    assert (record.filter, record.readpatt, record.pedigree) == ("H", "RAPID", "GROUND")


def test_float64_images_are_stored_as_float32(tmp_path: Path) -> None:
    data = np.linspace(0, 1, SHAPE[0] * SHAPE[1]).reshape(SHAPE)
    path = write_reference_file(tmp_path / "g.fits", _header("GAIN"), data)
    back = read_reference_array(path, "GAIN")
    assert back.dtype.newbyteorder("=") == np.float32
    assert np.array_equal(back, data.astype(np.float32))


@pytest.mark.parametrize("shape", [(5,), (5, *SHAPE)])
def test_linearity_round_trip(tmp_path: Path, shape: tuple[int, ...]) -> None:
    coeffs = np.random.default_rng(1).normal(size=shape)
    path = write_reference_file(tmp_path / "l.fits", _header("LINEARITY"), coeffs)
    assert fits.getheader(path, "COEFFS")["BITPIX"] == -64
    assert np.array_equal(read_reference_array(path, "LINEARITY"), coeffs)
    # a coefficient vector applies to every pixel: a window leaves it whole
    window = read_reference_array(path, "LINEARITY", (97, 101, 64, 32))
    if len(shape) == 1:
        assert np.array_equal(window, coeffs)
    else:
        assert np.array_equal(window, coeffs[:, 100:132, 96:160])
    assert read_record(path, PROFILE).reftype == "LINEARITY"


def test_window_cuts_images_at_the_fits_origin(tmp_path: Path) -> None:
    data = _image("DARK")
    path = write_reference_file(tmp_path / "d.fits", _header("DARK"), data)
    cut = read_reference_array(path, "DARK", (97, 5, 64, 10))  # SUBSTRT1/2, SUBSIZE1/2
    assert np.array_equal(cut, data[4:14, 96:160])


def test_photom_round_trip(tmp_path: Path) -> None:
    table = _photom()
    path = write_reference_file(tmp_path / "p.fits", _header("photom", bunit="MJy/sr/(DN/s)"),
                                table)
    back = read_photom(path)
    assert back.filter == table.filter
    for name in ("photmjsr", "uncertainty", "pivot_um"):
        assert np.array_equal(getattr(back, name), getattr(table, name))
    assert back.photmjsr_for("H", "p.fits") == 2.5
    with fits.open(path) as hdul:
        columns = hdul["PHOTOM"].columns
        assert [(c.name, c.format) for c in columns] == list(PHOTOM_COLUMNS)
    assert read_record(path, PROFILE).reftype == "PHOTOM"


def test_photom_without_optional_columns(tmp_path: Path) -> None:
    path = tmp_path / "p.fits"
    hdu = fits.BinTableHDU.from_columns([fits.Column("FILTER", "8A", array=["K"]),
                                         fits.Column("PHOTMJSR", "D", array=[4.0])], name="PHOTOM")
    fits.HDUList([fits.PrimaryHDU(header=_header("PHOTOM").to_fits()), hdu]).writeto(path)
    back = read_photom(path)
    assert back.photmjsr_for("K") == 4.0 and np.isnan(back.pivot_um).all()
    with pytest.raises(ReferenceFileError, match="PHOTOM p.fits has no row for filter J"):
        back.photmjsr_for("J", "p.fits")


# -- refused -----------------------------------------------------------------------------


def test_writer_refuses_data_that_do_not_fit(tmp_path: Path) -> None:
    out = tmp_path / "x.fits"
    with pytest.raises(ReferenceFileError, match="unknown REFTYPE 'BIAS'; allowed: ASTROCAT, DARK, FLAT"):
        write_reference_file(out, _header("BIAS"), _image("DARK"))
    with pytest.raises(ReferenceFileError, match="PHOTOM data must be a PhotomTable"):
        write_reference_file(out, _header("PHOTOM"), _image("DARK"))
    with pytest.raises(ReferenceFileError, match="DARK data must be an array"):
        write_reference_file(out, _header("DARK"), _photom())
    with pytest.raises(ReferenceFileError, match=r"SCI must have 2 dimensions, got shape \(4,\)"):
        write_reference_file(out, _header("DARK"), np.zeros(4, np.float32))
    with pytest.raises(ReferenceFileError, match=r"COEFFS must have 1 or 3 dimensions"):
        write_reference_file(out, _header("LINEARITY"), np.zeros((3, 3)))
    with pytest.raises(ReferenceFileError, match="DQ must be uint32, got float32"):
        write_reference_file(out, _header("MASK"), _image("DARK"))
    assert not out.exists()


def _rewrite(src: Path, dst: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    with fits.open(src) as hdul:
        edit(hdul)
        hdul.writeto(dst)
    return dst


def test_layout_errors_name_the_file_and_what_was_expected(tmp_path: Path) -> None:
    dark = write_reference_file(tmp_path / "dark.fits", _header("DARK"), _image("DARK"))
    renamed = _rewrite(dark, tmp_path / "renamed.fits", lambda h: setattr(h[1], "name", "DATA"))
    with pytest.raises(ReferenceFileError, match="renamed.fits: DARK needs a SCI extension"):
        read_record(renamed, PROFILE)
    with pytest.raises(ReferenceFileError, match="DARK needs a SCI extension"):
        read_reference_array(renamed, "DARK")
    small = _rewrite(dark, tmp_path / "small.fits",
                     lambda h: setattr(h["SCI"], "data", h["SCI"].data[:10]))
    with pytest.raises(ReferenceFileError, match=r"SCI shape \(10, 256\) != expected \(256, 256\)"):
        read_record(small, PROFILE)
    lin = write_reference_file(tmp_path / "lin.fits", _header("LINEARITY"), np.zeros((3, 8, 8)))
    with pytest.raises(ReferenceFileError, match=r"COEFFS must be \(ncoeffs,\) or \(ncoeffs, 256, "
                                                 r"256\), got \(3, 8, 8\)"):
        read_record(lin, PROFILE)
    notfits = tmp_path / "note.fits"
    notfits.write_text("not FITS")
    with pytest.raises(ReferenceFileError, match="note.fits: not a FITS file .*expected a reference file"):
        read_reference_array(notfits, "DARK")
    with pytest.raises(ReferenceFileError, match="is a table; use read_photom"):
        read_reference_array(dark, "PHOTOM")


def test_photom_missing_columns_and_empty_images(tmp_path: Path) -> None:
    path = tmp_path / "p.fits"
    hdu = fits.BinTableHDU.from_columns([fits.Column("FILTER", "8A", array=["K"])], name="PHOTOM")
    fits.HDUList([fits.PrimaryHDU(header=_header("PHOTOM").to_fits()), hdu]).writeto(path)
    with pytest.raises(ReferenceFileError, match="PHOTOM table needs FILTER and PHOTMJSR columns"):
        read_photom(path)
    with fits.open(path) as hdul, pytest.raises(ReferenceFileError, match="needs FILTER and"):
        check_layout(hdul, "PHOTOM", SHAPE, path)
    empty = tmp_path / "e.fits"
    fits.HDUList([fits.PrimaryHDU(header=_header("GAIN").to_fits()),
                  fits.ImageHDU(name="SCI")]).writeto(empty)
    with pytest.raises(ReferenceFileError, match="SCI extension is empty"):
        read_record(empty, PROFILE)
