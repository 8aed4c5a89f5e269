"""Headers read in pure Python (models.fitsheaders, models.level1headers) are astropy's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from tests.refdata.factories import META, meta, write_product

from obsflow.models.fitsheaders import BLOCK_BYTES, read_headers
from obsflow.models.level1 import read_uncal
from obsflow.models.level1headers import level1_meta


def _astropy_headers(path: Path) -> list[dict[str, object]]:
    with fits.open(path) as hdul:
        out = []
        for hdu in hdul:
            header: dict[str, object] = {}
            for card in hdu.header.cards:
                if card.keyword not in ("", "COMMENT", "HISTORY") and card.keyword not in header:
                    header[card.keyword] = card.value
            out.append(header)
        return out


def test_headers_of_a_product_are_astropys(tmp_path: Path) -> None:
    product = write_product(tmp_path, meta(title="a long title " * 12, pi_name="O'Brien"))
    assert read_headers(product) == _astropy_headers(product)  # CONTINUE and '' included


def test_headers_of_a_table_file_are_astropys(tmp_path: Path) -> None:
    path = tmp_path / "table.fits"
    table = fits.BinTableHDU.from_columns([fits.Column("A", "D", array=np.arange(3.0)),
                                           fits.Column("B", "16A", array=["x", "y", "z"])],
                                          name="PHOTOM")
    primary = fits.PrimaryHDU()
    primary.header["REAL"] = (1.5e-7, "a real")
    primary.header["FLAG"] = True
    primary.header["NEG"] = -3
    fits.HDUList([primary, table]).writeto(path)
    assert read_headers(path) == _astropy_headers(path)


def test_files_it_does_not_take_are_left_to_astropy(tmp_path: Path) -> None:
    product = write_product(tmp_path, META)
    data = product.read_bytes()
    cases = {"empty": b"", "text": b"not a FITS file\n" * 200, "truncated": data[:-BLOCK_BYTES],
             "extra block": data + b"\0" * BLOCK_BYTES, "odd size": data + b"x"}
    for name, content in cases.items():
        path = tmp_path / f"{name}.fits"
        path.write_bytes(content)
        assert read_headers(path) is None, name
        assert level1_meta(path) is None, name
    assert read_headers(tmp_path / "missing.fits") is None


def test_level1_meta_is_read_uncals(tmp_path: Path) -> None:
    product = write_product(tmp_path, meta(expstart=61130.123456789, subarray="FULL"))
    assert level1_meta(product) == read_uncal(product).meta


@pytest.mark.parametrize("change", [{"PRODKIND": "rate"}, {"DATAMODL": "ImageModel"},
                                    {"NINTS": 0}, {"TARG_RA": "east"}, {"EXPSTART": None}])
def test_a_product_that_is_not_plainly_level1_is_left_to_read_uncal(
        tmp_path: Path, change: dict[str, object]) -> None:
    product = write_product(tmp_path, META)
    with fits.open(product, mode="update") as hdul:
        for key, value in change.items():
            if value is None:
                del hdul[0].header[key]
            else:
                hdul[0].header[key] = value
    assert read_headers(product) is not None  # still FITS: the product check says no
    assert level1_meta(product) is None
