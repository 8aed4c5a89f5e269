"""Alignment of simulated, calibrated exposures checked against the simulator's truth.

Both profiles (webb_like on a subarray, smallsat full frame); the header
WCS of every product starts off by the simulated pointing error (about a
pixel), the aligned WCS must agree with the true one to < 0.05 pixel and
bright isolated stars must land on their true positions to < 0.05 pixel RMS.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.wcs import WCS
from scipy.spatial import cKDTree
from tests.stage3.conftest import Field

from obsflow.exceptions import AlignmentError
from obsflow.fileio import sha256_file
from obsflow.models.level2 import CalImage, read_cal, write_cal
from obsflow.models.provenance import RefFileUse
from obsflow.stage3.align import (
    Alignment,
    AlignOptions,
    align_products,
    aligned_cal,
    exposure_key,
)
from obsflow.stage3.detect import detect_stars

PROGRAMS = ("01234", "02345")  # two visits, two targets


def _wcs_offsets(field: Field, cal: CalImage, wcs: WCS) -> np.ndarray:
    """(49, 2) pixel offsets of ``wcs`` from the true WCS on a 7x7 grid over the product."""
    true = field.true_wcs(cal)
    nx, ny = cal.meta.subsize1, cal.meta.subsize2
    gx, gy = (g.ravel() for g in np.meshgrid(np.linspace(0, nx - 1, 7), np.linspace(0, ny - 1, 7)))
    x, y = wcs.world_to_pixel_values(*true.pixel_to_world_values(gx, gy))
    return np.column_stack([x - gx, y - gy])


def _wcs_error_pix(field: Field, cal: CalImage, wcs: WCS) -> np.ndarray:
    """Pixel distance between ``wcs`` and the true WCS on a 7x7 grid over the product."""
    return np.hypot(*_wcs_offsets(field, cal, wcs).T)


def _isolated(tree: cKDTree, tx: np.ndarray, ty: np.ndarray, flux: np.ndarray, i: int,
              radius: float) -> bool:
    """True when no other true star brighter than 2% of star ``i`` lies within ``radius`` px."""
    near = tree.query_ball_point([tx[i], ty[i]], radius)
    return sum(1 for j in near if flux[j] > 0.02 * flux[i]) == 1


def _align(field: Field, program: str, mode: str = "") -> tuple[list[CalImage], Alignment]:
    """Align one program's products: shift only on subarrays (too small to fit a rotation)."""
    cals = field.program(program)
    use = RefFileUse("ASTROCAT", field.astrocat_path.name, sha256_file(field.astrocat_path))
    mode = mode or ("rshift" if cals[0].meta.subarray == "FULL" else "shift")
    return cals, align_products(cals, field.astrocat, field.profile,
                                AlignOptions(fit_mode=mode, abs_fit_mode=mode), use)


@pytest.mark.parametrize("program", PROGRAMS)
def test_aligned_wcs_matches_the_true_pointing(field: Field, program: str) -> None:
    cals, alignment = _align(field, program)
    assert len(cals) >= 2 and alignment.absolute is not None
    for cal in cals:
        before = _wcs_error_pix(field, cal, cal.wcs)
        after = _wcs_error_pix(field, cal, aligned_cal(cal, alignment).wcs)
        assert before.mean() > 0.3, "the simulated pointing error should be visible"
        assert np.sqrt(np.mean(after**2)) < 0.05, (cal.meta.basename, after)


@pytest.mark.parametrize("program", PROGRAMS)
def test_bright_isolated_stars_land_on_their_true_positions(field: Field, program: str) -> None:
    cals, alignment = _align(field, program)
    truth = field.stars(cals[0].meta.target)
    errors = []
    for cal in cals:
        fwhm = field.fwhm(cal)
        true_wcs, wcs = field.true_wcs(cal), aligned_cal(cal, alignment).wcs
        tx, ty = true_wcs.world_to_pixel_values(np.asarray(truth["ra"]), np.asarray(truth["dec"]))
        flux = 10 ** (-0.4 * np.asarray(truth[f"mag_{cal.meta.filter}"]))
        tree = cKDTree(np.column_stack([tx, ty]))
        stars = detect_stars(cal.sci, cal.err, cal.dq, fwhm)
        bright = stars.snr > 50
        x, y = true_wcs.world_to_pixel_values(*wcs.pixel_to_world_values(stars.x[bright],
                                                                         stars.y[bright]))
        dist, k = tree.query(np.column_stack([x, y]))
        isolated = np.array([_isolated(tree, tx, ty, flux, i, 4 * fwhm) for i in k], bool)
        near = dist < 0.5
        errors.append(np.column_stack([x - tx[k], y - ty[k]])[isolated & near])
    errors = np.concatenate(errors)
    assert errors.shape[0] >= 10
    rms = float(np.sqrt(np.mean(np.sum(errors**2, axis=1))))
    print(f"{field.profile.mission.name} {program}: {errors.shape[0]} stars, RMS {rms:.4f} px")
    # The issue asks < 0.05 px.  Measured with centroids from a fit of the pixel-integrated
    # PSF model (2026-12-02): webb_like 0.019 / 0.031 px, smallsat 0.027 / 0.025 px (the
    # Gaussian centroids before gave 0.055 px on webb_like's first program: their
    # pixel-phase bias on a one-pixel-FWHM Moffat alone is 0.025 px RMS).
    assert rms < 0.05


def test_aligned_product_records_the_correction(field: Field, tmp_path: Path) -> None:
    cals, alignment = _align(field, PROGRAMS[0])
    # an exposure matched to the group's reference (which one is the reference depends on
    # the star counts: the exposure with the most stars)
    cal = next(c for c in cals if alignment.exposures[exposure_key(c.meta)].relative is not None)
    out = aligned_cal(cal, alignment)
    h = out.header_extra
    assert h["ALN_NABS"][0] == alignment.absolute.n_used >= 6  # type: ignore[union-attr]
    assert h["ALN_REF"][0] == field.astrocat_path.name
    scale_mas = field.profile.instruments[0].pixel_scale_arcsec * 1000.0
    assert 0 < h["ALN_RABS"][0] < 0.2 * scale_mas and h["ALN_NREL"][0] >= 6
    assert out.provenance.steps[-1].name == "tweakreg"
    assert "ASTROCAT" in out.provenance.reference_names()
    path = tmp_path / f"{cal.meta.basename}_cal.fits"
    write_cal(path, out)
    back = read_cal(path)
    assert back.header_extra["ALN_DXI"] == pytest.approx(h["ALN_DXI"][0])
    assert np.allclose(back.wcs.wcs.crval, out.wcs.wcs.crval, rtol=0, atol=1e-12)
    assert np.max(_wcs_error_pix(field, cal, back.wcs)) < 0.1
    assert back.provenance.steps[-1].params["fit_mode"] == alignment.options.fit_mode


def test_two_targets_do_not_align(field: Field) -> None:
    mixed = field.program(PROGRAMS[0])[:2] + field.program(PROGRAMS[1])[:2]
    with pytest.raises(AlignmentError, match=r"matched stars .* need at least 6"):
        align_products(mixed, field.astrocat, field.profile)


def test_relative_only_needs_no_catalog(field: Field) -> None:
    cals = field.program(PROGRAMS[0])
    alignment = align_products(cals, None, field.profile, AlignOptions(absolute=False))
    assert alignment.absolute is None
    with pytest.raises(AlignmentError, match="needs an astrometric catalog"):
        align_products(cals, None, field.profile)
    # relative alignment: every exposure moves onto the reference exposure's frame, so
    # all aligned WCSs share the reference exposure's (header) error, to < 0.05 px
    ref = next(c for c in cals if alignment.exposures[exposure_key(c.meta)].relative is None)
    common = _wcs_offsets(field, ref, ref.wcs)
    for cal in cals:
        out = aligned_cal(cal, alignment)
        assert out.header_extra["ALN_REF"][0] == "RELATIVE ONLY"
        before = _wcs_offsets(field, cal, cal.wcs) - common
        after = _wcs_offsets(field, cal, out.wcs) - common
        assert np.sqrt(np.mean(np.sum(after**2, axis=1))) < 0.05
        if cal is not ref:
            assert np.sqrt(np.mean(np.sum(before**2, axis=1))) > 0.05


def test_truth_stars_through_both_wcs_forms(field: Field, tmp_path: Path) -> None:
    """Truth stars through an aligned product's WCS, read back both as the SIP header cards
    (astropy.wcs) and as the gwcs of its ASDF extension (stdatamodels), land where the
    simulator put them (its true, distorted WCS): the distortion model of the products is
    the simulator's; what is left is the alignment's own error (a shift common to all stars,
    limited by the astrometric catalog's errors), RMS within the issue's 0.02 px: measured
    RMS 0.007-0.010 px (max 0.011) on smallsat (distorted by 1.3-1.9 px at the corners) and
    0.009 px (max 0.011) on webb_like (~2 px), with centroids from the PSF-model fit
    (0.013-0.018 px, max 0.020, on webb_like with Gaussian centroids); the two forms agree
    to 1e-6 px."""
    import warnings

    from astropy.io import fits
    from stdatamodels.jwst import datamodels

    cals, alignment = _align(field, PROGRAMS[0])
    for cal in cals[:2]:
        out = aligned_cal(cal, alignment)
        path = tmp_path / f"{cal.meta.basename}_cal.fits"
        write_cal(path, out)
        true = field.true_wcs(cal)
        stars = field.stars(cal.meta.target)
        tx, ty = true.world_to_pixel_values(np.asarray(stars["ra"]), np.asarray(stars["dec"]))
        inside = (tx > 0) & (ty > 0) & (tx < cal.meta.subsize1 - 1) & (ty < cal.meta.subsize2 - 1)
        tx, ty = tx[inside], ty[inside]
        with fits.open(path) as hdul:
            sip = WCS(hdul["SCI"].header)
        det = field.profile.instrument(cal.meta.instrument).detector(cal.meta.detector)
        assert (sip.sip is None) == (det.distortion is None)  # webb_like's have one
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the mission's own names
            with datamodels.open(path) as model:
                g_sky = model.meta.wcs(tx, ty)
        sip_sky = sip.pixel_to_world_values(tx, ty)
        for form, sky in (("SIP", sip_sky), ("gwcs", g_sky)):
            x, y = true.world_to_pixel_values(*sky)
            err = np.hypot(x - tx, y - ty)
            print(f"{field.profile.mission.name} {cal.meta.basename} {form}: {err.size} stars, "
                  f"RMS {np.sqrt(np.mean(err**2)):.4f} px, max {err.max():.4f} px")
            assert err.size > 50 and np.sqrt(np.mean(err**2)) < 0.02 and err.max() < 0.03
        # the two forms agree with each other to numerical precision
        gx, gy = true.world_to_pixel_values(*g_sky)
        sx, sy = true.world_to_pixel_values(*sip_sky)
        assert np.hypot(gx - sx, gy - sy).max() < 1e-4
