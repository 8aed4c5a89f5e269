"""Every product kind as a pure ASDF file, read back: arrays, headers, provenance, gwcs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from tests.models.test_asdf_extension import META, PROV, WRITERS, _arrays, _ref

from obsflow.exceptions import ProductFileError
from obsflow.fileio import Written, sha256_file
from obsflow.models.asdffile import ASDF_FORMAT, read_asdf_product, write_asdf_copy
from obsflow.models.identity import ProductRef
from obsflow.models.level1 import Level1, write_uncal_hashed
from obsflow.models.level2 import CrfImage, write_crf
from obsflow.models.pointing import detector_wcs
from obsflow.models.provenance import Provenance
from obsflow.profiles import load_profile

_STRUCTURAL = {"XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "BZERO", "BSCALE", "EXTNAME",
               "EXTVER", "CHECKSUM", "DATASUM", "COMMENT", "HISTORY", ""}


def _crf(path: Path) -> Written:
    from tests.models.test_asdf_extension import WCS as DETECTOR_WCS

    return write_crf(path, CrfImage(**_arrays((16, 24)), meta=META, ref=_ref("crf"),
                                    provenance=PROV, wcs=DETECTOR_WCS))


def _distorted_uncal(path: Path) -> Written:
    """A level-1 ramp (4-D) whose SCI WCS has the webb_like detector's SIP distortion."""
    inst = load_profile("webb_like").instruments[0]
    det = inst.detectors[0]
    wcs = detector_wcs(META.ra_v1, META.dec_v1, META.pa_v3,
                       (det.v2_arcsec, det.v3_arcsec, det.rotation_deg),
                       inst.pixel_scale_arcsec, (24, 16, 1, 1, 24, 16), det.distortion)
    cube = np.random.default_rng(3).integers(0, 60000, (2, 3, 16, 24), dtype=np.uint16)
    prov = Provenance(run="r1", software="obsflow-test")
    return write_uncal_hashed(path, Level1(cube, META, wcs=wcs, ref=_ref("uncal"),
                                           provenance=prov))


ALL: dict[str, Callable[[Path], Written]] = {**WRITERS, "crf": _crf}


@pytest.mark.parametrize("kind", sorted(ALL))
def test_every_kind_round_trips(kind: str, tmp_path: Path) -> None:
    """Arrays (values and types), primary and SCI header values, provenance and the
    product reference come back from the ASDF form as the FITS form has them."""
    fits_path = ALL[kind](tmp_path / f"x_{kind}.fits").path
    written = write_asdf_copy(fits_path)
    assert written.path.name == f"x_{kind}.asdf" and written.sha256 == sha256_file(written.path)
    back = read_asdf_product(written.path)
    assert back.fits_name == fits_path.name and back.fits_sha256 == sha256_file(fits_path)
    with fits.open(fits_path) as hdul:
        images = {("data" if h.name == "SCI" else h.name.lower()): h.data
                  for h in hdul[1:] if h.is_image and h.data is not None}
        assert set(back.arrays) == set(images)
        for key, array in images.items():
            assert back.arrays[key].dtype == array.dtype, key
            np.testing.assert_array_equal(back.arrays[key], array)
        primary = {k: v for k, v in hdul[0].header.items() if k not in _STRUCTURAL}
        assert {k: back.primary[k] for k in primary} == primary
        sci = {k: v for k, v in hdul["SCI"].header.items()
               if k not in _STRUCTURAL and not k.startswith("NAXIS")}
        assert {k: back.sci_header[k] for k in sci} == sci
        assert [back.sci_header[f"NAXIS{i}"] for i in range(1, back.sci_header["NAXIS"] + 1)] \
            == [hdul["SCI"].header[f"NAXIS{i}"] for i in range(1, hdul["SCI"].header["NAXIS"] + 1)]
        if "PROVENANCE" in hdul:
            assert back.provenance == Provenance.from_hdu(hdul["PROVENANCE"], fits_path.name)
        else:
            assert back.provenance is None
    ref = ProductRef.from_header(back.primary, META.data_id, written.path.name)
    assert (ref.kind, ref.uuid) == (kind, _ref(kind).uuid)
    assert write_asdf_copy(fits_path, tmp_path / "again.asdf").sha256 == written.sha256


def test_a_distorted_level1_ramp_carries_its_gwcs(tmp_path: Path) -> None:
    """A 4-D ramp whose header has SIP distortion: its gwcs (the first two axes) puts pixels
    where the FITS SIP WCS puts them; its provenance comes back."""
    import asdf

    fits_path = _distorted_uncal(tmp_path / "d_uncal.fits").path
    written = write_asdf_copy(fits_path)
    header = fits.getheader(fits_path, "SCI")
    assert header["CTYPE1"] == "RA---TAN-SIP" and header["NAXIS"] == 4
    fits_wcs = WCS(header, naxis=2)
    x, y = np.meshgrid(np.linspace(0, 23, 5), np.linspace(0, 15, 4))
    with asdf.open(written.path) as af:
        ra, dec = af.tree["meta"]["wcs"](x.ravel(), y.ravel())
    ra0, dec0 = fits_wcs.all_pix2world(x.ravel(), y.ravel(), 0)
    np.testing.assert_allclose(ra, ra0, atol=1e-9)
    np.testing.assert_allclose(dec, dec0, atol=1e-9)
    back = read_asdf_product(written.path)
    assert back.arrays["data"].dtype == np.uint16 and back.arrays["data"].shape == (2, 3, 16, 24)
    assert back.provenance == Provenance(run="r1", software="obsflow-test")


@pytest.mark.parametrize("kind", ["rateints", "crf", "segm"])
def test_stdatamodels_opens_the_other_kinds(kind: str, tmp_path: Path) -> None:
    """stdatamodels opens the ASDF form of the kinds the first test left out as its model."""
    import warnings

    from stdatamodels.jwst import datamodels
    from tests.jwst_models import MODELS

    written = write_asdf_copy(ALL[kind](tmp_path / f"x_{kind}.fits").path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the mission's own names: tests/jwst_models.py
        with datamodels.open(written.path) as model:
            assert type(model).__name__ == MODELS[kind]
            np.testing.assert_array_equal(model.data, read_asdf_product(written.path)
                                          .arrays["data"])


def test_a_foreign_asdf_file_is_refused_by_name(tmp_path: Path) -> None:
    import asdf

    foreign = tmp_path / "theirs_cal.asdf"
    asdf.AsdfFile({"data": np.zeros((2, 2)), "obsflow": {"format": "other"}}).write_to(foreign)
    with pytest.raises(ProductFileError, match=rf"^theirs_cal.asdf: an ASDF file that is not "
                                               rf"an obsflow product \(no obsflow.format = "
                                               rf"'{ASDF_FORMAT}'\)"):
        read_asdf_product(foreign)
    not_asdf = tmp_path / "x_cal.asdf"
    not_asdf.write_bytes(b"SIMPLE  = T")
    with pytest.raises(ProductFileError, match=r"^x_cal.asdf: not an ASDF file"):
        read_asdf_product(not_asdf)
    with pytest.raises(ProductFileError, match="no such file"):
        read_asdf_product(tmp_path / "gone.asdf")
