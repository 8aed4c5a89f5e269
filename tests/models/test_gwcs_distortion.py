"""The detectors' distortion (profile) in both WCS forms: SIP header cards and gwcs."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from obsflow.models.gwcsmodel import gwcs_from_fits
from obsflow.models.pointing import detector_wcs, wcs_header
from obsflow.profiles import load_profile

PROFILES = ("smallsat", "webb_like")
"""Profiles with a distortion model (every built-in one)."""


def _detectors(profile: str) -> list[tuple[WCS, WCS]]:
    """(with distortion, without) WCS pairs of every detector of ``profile``, one pointing."""
    p = load_profile(profile)
    pairs = []
    for inst in p.instruments:
        for det in inst.detectors:
            args = (150.1, 2.2, 37.0, (det.v2_arcsec, det.v3_arcsec, det.rotation_deg),
                    inst.pixel_scale_arcsec, (det.nx, det.ny, 1, 1, det.nx, det.ny))
            pairs.append((detector_wcs(*args, det.distortion), detector_wcs(*args)))
    return pairs


def _sky_px(wcs: WCS, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
            ) -> float:
    """Largest separation of sky positions ``a`` and ``b`` (RA, Dec deg), in pixels of ``wcs``."""
    scale = float(np.sqrt(abs(np.linalg.det(wcs.pixel_scale_matrix)))) * 3600.0
    dra = (np.asarray(a[0]) - b[0] + 180.0) % 360.0 - 180.0
    return float(np.hypot(dra * np.cos(np.deg2rad(b[1])), np.asarray(a[1]) - b[1]).max()
                 * 3600.0 / scale)


def _grid(wcs: WCS, n: int = 9) -> tuple[np.ndarray, np.ndarray]:
    nx, ny = wcs.pixel_shape
    x, y = np.meshgrid(np.linspace(0, nx - 1, n), np.linspace(0, ny - 1, n))
    return x.ravel(), y.ravel()


@pytest.mark.parametrize("profile", PROFILES)
def test_sip_is_the_profile_polynomial(profile: str) -> None:
    """The SIP WCS puts pixel (x, y) where the gnomonic WCS puts (x, y) + the profile's
    polynomial, evaluated here independently; the distortion is > 1.0 px at the corners."""
    det = load_profile(profile).instruments[0].detectors[0]
    assert det.distortion is not None
    for wcs, ideal in _detectors(profile)[:1]:
        x, y = _grid(wcs)
        u, v = x - (det.nx - 1) / 2, y - (det.ny - 1) / 2
        du = sum(c * u ** int(k[0]) * v ** int(k[2]) for k, c in det.distortion.a.items())
        dv = sum(c * u ** int(k[0]) * v ** int(k[2]) for k, c in det.distortion.b.items())
        assert np.hypot(du, dv).max() > 1.0
        expected = ideal.pixel_to_world_values(x + du, y + dv)
        got = wcs.pixel_to_world_values(x, y)
        px = ideal.world_to_pixel_values(*got)
        assert np.hypot(px[0] - x - du, px[1] - y - dv).max() < 1e-6
        np.testing.assert_allclose(got, expected, atol=1e-10)


@pytest.mark.parametrize("profile", PROFILES)
def test_gwcs_and_sip_headers_agree(profile: str) -> None:
    """gwcs (forward and inverse) and the SIP header cards read by astropy.wcs give the same
    sky positions as the WCS they were made from, on every detector."""
    for wcs, _ in _detectors(profile):
        x, y = _grid(wcs)
        ra, dec = wcs.pixel_to_world_values(x, y)
        header = wcs_header(wcs)
        assert header["CTYPE1"] == "RA---TAN-SIP" and "A_2_0" in header
        assert _sky_px(wcs, WCS(header).pixel_to_world_values(x, y), (ra, dec)) < 1e-6
        g = gwcs_from_fits(wcs)
        assert _sky_px(wcs, g(x, y), (ra, dec)) < 1e-6
        ix, iy = g.invert(ra, dec)
        assert np.hypot(ix - x, iy - y).max() < 1e-3


def test_products_carry_the_same_wcs_in_both_forms(tmp_path: Path) -> None:
    """A written product's SCI header WCS (SIP) and the gwcs stdatamodels reads from its ASDF
    extension agree to 1e-6 px over the detector."""
    from stdatamodels.jwst import datamodels
    from tests.archive.factories import meta

    from obsflow.models.identity import ProductRef
    from obsflow.models.level2 import CalImage, write_cal
    from obsflow.models.provenance import Provenance

    m = meta(subsize1=48, subsize2=32)
    det = load_profile("webb_like").instruments[0].detectors[0]
    wcs = detector_wcs(m.ra_v1, m.dec_v1, m.pa_v3, (0.0, 0.0, 0.0), 0.031,
                       (det.nx, det.ny, 1700, 90, 48, 32), det.distortion)
    shape = (32, 48)
    zeros = np.zeros(shape, np.float32)
    path = write_cal(tmp_path / "x_cal.fits", CalImage(
        zeros + 1, zeros, np.zeros(shape, np.uint32), zeros, zeros, meta=m,
        ref=ProductRef.derived("cal", m.data_id, "r1", "o"),
        provenance=Provenance(run="r1", software="t"), wcs=wcs)).path
    with fits.open(path) as hdul:
        header_wcs = WCS(hdul["SCI"].header)
    assert header_wcs.sip is not None
    x, y = _grid(header_wcs, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the mission's own names
        with datamodels.open(path) as model:
            from_asdf = model.meta.wcs(x, y)
    assert _sky_px(header_wcs, from_asdf, header_wcs.pixel_to_world_values(x, y)) < 1e-6
