"""Pixel area on a distorted detector (smallsat: pixel solid angles 0.9998-1.037 of nominal).

The simulator collects a sky in proportion to each pixel's true solid angle
and the flats are the pixels' response alone (uniform light on the focal
plane), so stage 2's photom divides by the relative pixel area: a uniform
sky comes out flat in MJy/sr, and a point source's total flux is the sum of
SB x true pixel solid angle.  The solid angles here are measured on the sky
through astropy's WCS (:func:`tests.sky_area.solid_angle_sr`), independently
of both the simulator's and the calibration's.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from astropy.wcs import WCS
from photutils.aperture import CircularAnnulus, CircularAperture, aperture_photometry
from tests.sky_area import solid_angle_sr

from obsflow.calibrate.pipeline import CalibrationOptions, beside, calibrate_product
from obsflow.models.level2 import CalImage, read_cal
from obsflow.models.pointing import detector_wcs, relative_pixel_area
from obsflow.profiles import load_profile
from obsflow.refdata import FolderRefs
from obsflow.simulate.run import SimOptions, simulate
from obsflow.simulate.sky import SceneOptions, pixel_solid_angle
from obsflow.simulate.truth import read_truth

_RAD_PER_DEG = np.pi / 180.0


def _nominal_sr(wcs: WCS) -> float:
    return float(abs(np.linalg.det(wcs.pixel_scale_matrix))) * _RAD_PER_DEG**2


@pytest.mark.parametrize("profile", ["smallsat", "webb_like"])
def test_area_maps_are_the_solid_angles_on_the_sky(profile: str) -> None:
    """The calibration's map (from the distortion polynomials) and the simulator's (pixel
    corners on the sky, interpolated) equal the solid angles measured here, to 1e-5, on a
    full frame and a subarray of every detector's first."""
    p = load_profile(profile)
    inst = p.instruments[0]
    det = inst.detectors[0]
    for frame in ((det.nx, det.ny, 1, 1, det.nx, det.ny),
                  (det.nx, det.ny, det.nx - 70, 3, 64, 40)):
        if det.nx > 512 and frame[4] == det.nx:
            frame = (det.nx, det.ny, 1, 1, 300, 260)  # a corner (keeps the test quick)
        wcs = detector_wcs(211.0, -33.0, 71.0, (det.v2_arcsec, det.v3_arcsec, det.rotation_deg),
                           inst.pixel_scale_arcsec, frame, det.distortion)
        shape = (frame[5], frame[4])
        truth = solid_angle_sr(wcs, shape) / _nominal_sr(wcs)
        area = relative_pixel_area(det.distortion, frame)
        assert area is not None and area.shape == shape and area.dtype == np.float32
        assert truth.max() - truth.min() > (0.01 if profile == "smallsat" else 0.0005)
        np.testing.assert_allclose(area, truth, rtol=1e-5)
        np.testing.assert_allclose(pixel_solid_angle(wcs, shape), truth, rtol=1e-5)


def _bright_sky_profile(folder: Path) -> Path:
    """smallsat with a J-band sky of 300 MJy/sr (as bright as a twilight flat): a uniform
    sky whose flatness can be measured to 0.05 % on 32 x 32 pixel blocks."""
    raw = (resources.files("obsflow.profiles") / "smallsat.toml").read_text()
    assert raw.count("background_mjy_sr = 0.3\n") == 1
    path = folder / "smallsat_bright.toml"
    path.write_text(raw.replace("background_mjy_sr = 0.3\n", "background_mjy_sr = 300.0\n"))
    return path


def _simulate(root: Path, profile: str, scene: SceneOptions, exposures: int) -> list[CalImage]:
    simulate(root, SimOptions(seed=21, profile=profile, exposures=exposures, level1=True,
                              scene=scene))
    loaded = load_profile(profile)
    refs = FolderRefs(root / "refs", loaded)
    for uncal in sorted((root / "level1").glob("*_uncal.fits")):
        calibrate_product(uncal, refs, loaded, CalibrationOptions(place=beside(root / "cal")))
    return [read_cal(p) for p in sorted((root / "cal").glob("*_cal.fits"))]


def _blocks(a: np.ndarray, size: int) -> np.ndarray:
    ny, nx = (n // size * size for n in a.shape)
    return np.nanmedian(a[:ny, :nx].reshape(ny // size, size, nx // size, size), axis=(1, 3))


def test_a_uniform_sky_comes_out_flat_in_mjy_per_sr(tmp_path: Path) -> None:
    """A uniform 300 MJy/sr sky on smallsat's distorted detector: after calibration every
    32 x 32 block's median is 300 MJy/sr within 0.25 % (the pixels' solid angles differ by
    3.7 %); times the relative pixel area (what photom without the area map would give) it
    follows the area instead."""
    profile = _bright_sky_profile(tmp_path)
    cal = _simulate(tmp_path / "sim", str(profile), SceneOptions(
        star_density=0.0, galaxy_density=0.0, sky_gradient=(0.0, 0.0)), 1)[0]
    assert cal.wcs is not None and cal.wcs.sip is not None
    good = np.where(cal.dq == 0, cal.sci, np.nan)
    border = 4  # reference pixels
    sci = good[border:-border, border:-border]
    ratio = np.ravel(_blocks(sci, 31)) / 300.0
    area = solid_angle_sr(cal.wcs, cal.sci.shape) / _nominal_sr(cal.wcs)
    blocks_area = np.ravel(_blocks(area[border:-border, border:-border], 31))
    print(f"flat: {ratio.min():.5f}-{ratio.max():.5f}; area {blocks_area.min():.4f}-"
          f"{blocks_area.max():.4f}")
    assert blocks_area.max() - blocks_area.min() > 0.025
    assert np.abs(ratio - 1).max() < 0.0025
    # the same blocks without the area division would track the area: slope ~1, not ~0
    slope = np.polyfit(blocks_area, ratio, 1)[0]
    slope_uncorrected = np.polyfit(blocks_area, ratio * blocks_area, 1)[0]
    assert abs(slope) < 0.1 and abs(slope_uncorrected - 1) < 0.1


def test_point_sources_keep_their_total_flux(tmp_path: Path) -> None:
    """Bright stars on smallsat's distorted detector: sum(SB x true pixel solid angle) in a
    6 px aperture (sky from an annulus) over the truth's flux, divided by the Moffat
    fraction inside 6 px, is 1 within 1.5 % per star and 0.5 % on average, and does not
    follow the pixel area at the star (it would, by ~3 %, without the area map)."""
    cals = _simulate(tmp_path / "sim", "smallsat", SceneOptions(
        star_density=2.0, galaxy_density=0.0, star_mag=(11.0, 12.0)), 2)
    prof = load_profile("smallsat")
    inst = prof.instruments[0]
    ratios, areas = [], []
    for cal in cals:
        m = cal.meta
        det = inst.detector(m.detector)
        truth = read_truth(tmp_path / "sim" / "truth" / f"{m.basename}_truth.fits")
        true_wcs = detector_wcs(*truth.pointing, (det.v2_arcsec, det.v3_arcsec,
                                                  det.rotation_deg), inst.pixel_scale_arcsec,
                                (det.nx, det.ny, m.substrt1, m.substrt2, m.subsize1,
                                 m.subsize2), det.distortion)
        stars = Table.read(tmp_path / "sim" / "truth" / f"sources_{m.target}.ecsv")
        x, y = true_wcs.world_to_pixel_values(np.asarray(stars["ra"]), np.asarray(stars["dec"]))
        radius = 6.0
        ny, nx = cal.sci.shape
        inside = (x > 20) & (y > 20) & (x < nx - 21) & (y < ny - 21)
        jy = 3631.0 * 10 ** (-0.4 * np.asarray(stars[f"mag_{m.filter}"]))
        near = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
        isolated = (np.sort(near, axis=1)[:, 1] > 4 * radius) if x.size > 1 else inside
        pick = np.flatnonzero(inside & isolated)
        omega = solid_angle_sr(true_wcs, cal.sci.shape)
        flux = np.nan_to_num(cal.sci) * omega * 1e6  # Jy per pixel
        sb = np.nan_to_num(cal.sci)
        xy = np.column_stack([x[pick], y[pick]])
        total = np.asarray(aperture_photometry(flux, CircularAperture(xy, radius))[
            "aperture_sum"])
        sky = np.array([np.median(mask.get_values(sb)) for mask in
                        CircularAnnulus(xy, 3 * radius, 4 * radius).to_mask(method="center")])
        sky_jy = sky * np.asarray(aperture_photometry(omega, CircularAperture(xy, radius))[
            "aperture_sum"]) * 1e6
        bad = np.array([np.any(mask.get_values(cal.dq.astype(np.float64)) != 0)
                        for mask in CircularAperture(xy, radius).to_mask(method="center")])
        fwhm = inst.psf_fwhm_pix_per_um * inst.filter(m.filter).pivot_um
        alpha = fwhm / (2.0 * np.sqrt(2 ** (1 / 2.5) - 1))
        enclosed = 1 - (1 + radius**2 / alpha**2) ** (1 - 2.5)
        keep = ~bad
        ratios.extend(((total - sky_jy) / (jy[pick] * enclosed))[keep])
        rel = relative_pixel_area(det.distortion, (det.nx, det.ny, m.substrt1, m.substrt2,
                                                   m.subsize1, m.subsize2))
        assert rel is not None
        areas.extend(rel[np.round(y[pick]).astype(int), np.round(x[pick]).astype(int)][keep])
    r, a = np.array(ratios), np.array(areas)
    print(f"{r.size} stars: flux ratio {np.mean(r):.4f} +/- {np.std(r):.4f}; "
          f"area {a.min():.4f}-{a.max():.4f}")
    assert r.size >= 10 and a.max() - a.min() > 0.01
    assert np.abs(r - 1).max() < 0.015 and abs(np.mean(r) - 1) < 0.005
    assert abs(np.polyfit(a, r, 1)[0]) < 0.5  # without the area map: ratio ~ area, slope 1
