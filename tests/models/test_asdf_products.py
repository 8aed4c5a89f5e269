"""Products written as pure ASDF files: the FITS product's arrays, meta and gwcs."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from tests.models.test_asdf_extension import WRITERS

from obsflow.fileio import sha256_file
from obsflow.models.asdffile import write_asdf_copy


@pytest.mark.parametrize("kind", ["uncal", "rate", "cal", "i2d"])
def test_asdf_form_has_the_fits_content(kind: str, tmp_path: Path) -> None:
    """asdf.open and stdatamodels read the ASDF form with the same arrays as the FITS form;
    its meta and WCS are the FITS product's."""
    import asdf
    from stdatamodels.jwst import datamodels
    from tests.jwst_models import MODELS

    fits_path = WRITERS[kind](tmp_path / f"x_{kind}.fits").path
    written = write_asdf_copy(fits_path)
    assert written.path.name == f"x_{kind}.asdf" and written.sha256 == sha256_file(written.path)
    with fits.open(fits_path) as hdul:
        arrays = {("data" if h.name == "SCI" else h.name.lower()): np.asarray(h.data)
                  for h in hdul[1:] if h.is_image and h.data is not None}
        primary = hdul[0].header
        with asdf.open(written.path) as af:
            assert set(arrays) <= set(af.tree)
            for key, value in arrays.items():
                np.testing.assert_array_equal(af.tree[key], value)
            assert af.tree["meta"]["instrument"]["name"] == primary["INSTRUME"]
            kept = {row[0]: row[1] for row in af.tree["extra_fits"]["PRIMARY"]["header"]}
            assert kept["PRODUUID"] == primary["PRODUUID"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the mission's own names
            with datamodels.open(written.path) as model:
                assert type(model).__name__ == MODELS[kind]
                np.testing.assert_array_equal(model.data, arrays["data"])
                assert model.meta.observation.visit_number == "001"
                if kind != "uncal":
                    ny, nx = arrays["data"].shape[-2:]
                    x, y = np.array([0.0, nx - 1.0]), np.array([0.0, ny - 1.0])
                    from astropy.wcs import WCS

                    ra, dec = WCS(hdul["SCI"].header, naxis=2).pixel_to_world_values(x, y)
                    np.testing.assert_allclose(model.meta.wcs(x, y), (ra, dec), atol=1e-9)


def test_not_fits_is_one_clear_error(tmp_path: Path) -> None:
    from obsflow.exceptions import ProductFileError

    bad = tmp_path / "x_cal.fits"
    bad.write_text("not fits")
    with pytest.raises(ProductFileError, match="x_cal.fits: not a FITS file"):
        write_asdf_copy(bad)
    assert not (tmp_path / "x_cal.asdf").exists()
