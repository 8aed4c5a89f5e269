"""Alignment from star lists: a four-detector exposure, rotation and scale, failure, tweakwcs.

The stars are placed with a known *true* WCS per detector (true pointing,
roll and plate scale) and measured with 0.02 pixel centroid noise; the
header WCSs carry the commanded pointing.  No images: the geometry alone.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from astropy.wcs import WCS
from tweakwcs import FITSWCSCorrector, align_wcs

from obsflow.exceptions import AlignmentError
from obsflow.models.pointing import detector_wcs
from obsflow.models.reffiles import AstrometricCatalog
from obsflow.profiles import load_profile
from obsflow.stage3.align import AlignOptions, DetectorStars, ExposureStars, align_catalogs

INST = load_profile("webb_like").instruments[0]
COMMANDED = [(53.16, -27.78, 12.0), (53.16 + 1.2 / 3600, -27.78 + 0.7 / 3600, 12.0)]  # 2 dithers


def _wcs(pointing: tuple[float, float, float], det, scale_factor: float = 1.0,  # type: ignore[no-untyped-def]
         n: int = 2048) -> WCS:
    """A detector's WCS; ``scale_factor`` scales the whole focal plane (plate scale)."""
    return detector_wcs(*pointing, (det.v2_arcsec * scale_factor, det.v3_arcsec * scale_factor,
                                    det.rotation_deg),
                        INST.pixel_scale_arcsec * scale_factor, (det.nx, det.ny, 1, 1, n, n))


def _scene(error_mas: tuple[float, float], roll_arcsec: float, scale_error: float,
           seed: int = 4, per_detector: int = 60) -> tuple[list[ExposureStars], AstrometricCatalog,
                                                          dict[tuple[str, str], WCS]]:
    """Two exposures of four detectors: (star lists, catalog, true WCS by (exposure, detector))."""
    rng = np.random.default_rng(seed)
    ra_all, dec_all = [], []
    exposures, truth = [], {}
    stars_sky = None
    for k, (ra, dec, pa) in enumerate(COMMANDED):
        east, north = error_mas[0] + 3 * k, error_mas[1] - 2 * k  # visit error + dither error
        true_pointing = (ra + east / 3.6e6 / np.cos(np.deg2rad(dec)), dec + north / 3.6e6,
                         pa + roll_arcsec / 3600)
        detectors = []
        for det in INST.detectors:
            true = _wcs(true_pointing, det, 1 + scale_error)
            if stars_sky is None or k == 0:
                x, y = rng.uniform(20, 2028, (2, per_detector))
                ra_s, dec_s = true.pixel_to_world_values(x, y)
                ra_all.append(ra_s)
                dec_all.append(dec_s)
            ra_c, dec_c = np.concatenate(ra_all), np.concatenate(dec_all)
            x, y = true.world_to_pixel_values(ra_c, dec_c)
            on = (x > 5) & (x < 2043) & (y > 5) & (y < 2043)
            x, y = x[on] + rng.normal(0, 0.02, on.sum()), y[on] + rng.normal(0, 0.02, on.sum())
            key = f"exp{k + 1}"
            truth[(key, det.name)] = true
            detectors.append(DetectorStars(det.name, _wcs((ra, dec, pa), det), x, y))
        stars_sky = True
        exposures.append(ExposureStars(f"exp{k + 1}", tuple(detectors)))
    ra_c, dec_c = np.concatenate(ra_all), np.concatenate(dec_all)
    sigma = np.full(ra_c.size, 1.0)  # mas
    d = rng.normal(0, 1.0, (2, ra_c.size)) / 3.6e6
    catalog = AstrometricCatalog(np.arange(ra_c.size), ra_c + d[0] / np.cos(np.deg2rad(dec_c)),
                                 dec_c + d[1], sigma, sigma, np.full(ra_c.size, 18.0), 2016.0)
    return exposures, catalog, truth


def _grid_error(wcs: WCS, true: WCS) -> float:
    """Largest pixel distance between ``wcs`` and ``true`` over a 5x5 grid of the detector."""
    g = np.linspace(0, 2047, 5)
    gx, gy = (a.ravel() for a in np.meshgrid(g, g))
    x, y = wcs.world_to_pixel_values(*true.pixel_to_world_values(gx, gy))
    return float(np.hypot(x - gx, y - gy).max())


CASES = {  # name: (pointing error mas, roll arcsec, plate-scale error, fit mode)
    "shift": ((25.0, -40.0), 0.0, 0.0, "shift"),
    "rotation": ((25.0, -40.0), 30.0, 0.0, "rshift"),
    "rotation+scale": ((-60.0, 35.0), 30.0, 4e-5, "rscale"),
    "general": ((-60.0, 35.0), 30.0, 4e-5, "general"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_all_detectors_of_an_exposure_share_one_recovered_correction(case: str) -> None:
    error, roll, scale_error, mode = CASES[case]
    exposures, catalog, truth = _scene(error, roll, scale_error)
    alignment = align_catalogs(exposures, catalog, AlignOptions(fit_mode=mode, abs_fit_mode=mode))
    for e in exposures:
        correction = alignment.exposures[e.key].correction
        # a roll error of +r (PA, north through east) is undone by -r (east towards north)
        assert correction.rotation_arcsec == pytest.approx(-roll, abs=1.0)
        assert correction.scale == pytest.approx(1 + scale_error, abs=3e-6)
        for d in e.detectors:
            true = truth[(e.key, d.name)]
            assert _grid_error(d.wcs, true) > 0.5  # the header is off by the pointing error
            assert _grid_error(alignment.wcs_for(e.key, d.wcs), true) < 0.02, (case, d.name)


def test_too_few_matches_fail_loudly() -> None:
    exposures, catalog, _ = _scene((25.0, -40.0), 0.0, 0.0)
    few = AstrometricCatalog(*(np.asarray(a)[:4] for a in (catalog.source_id, catalog.ra,
                                                           catalog.dec, catalog.ra_error,
                                                           catalog.dec_error, catalog.mag)),
                             catalog.epoch)
    with pytest.raises(AlignmentError, match=r"against the astrometric catalog: \d matched stars "
                                             r"\(\d+ detected, \d in the reference\); need at "
                                             r"least 6"):
        align_catalogs(exposures, few)
    lonely = ExposureStars("exp3", (DetectorStars("WRA1", exposures[0].detectors[0].wcs,
                                                  np.array([10.0, 500.0]),
                                                  np.array([10.0, 900.0])),))
    with pytest.raises(AlignmentError, match="exposure exp3 against exp1: [0-2] matched stars"):
        align_catalogs([*exposures, lonely], catalog)
    with pytest.raises(AlignmentError, match="no exposure"):
        align_catalogs([], catalog)


def test_corrections_agree_with_tweakwcs() -> None:
    """tweakwcs.align_wcs (relative then absolute by group) on the same star lists."""
    error, roll, scale_error, mode = CASES["rotation"]
    exposures, catalog, truth = _scene(error, roll, scale_error, seed=9)
    ours = align_catalogs(exposures, catalog, AlignOptions(fit_mode=mode, abs_fit_mode=mode))
    correctors = []
    for k, e in enumerate(exposures):
        for d in e.detectors:
            table = Table({"x": d.x, "y": d.y})
            correctors.append(FITSWCSCorrector(d.wcs.deepcopy(), meta={
                "catalog": table, "group_id": k + 1, "name": f"{e.key}:{d.name}"}))
    refcat = Table({"RA": catalog.ra, "DEC": catalog.dec})
    align_wcs(correctors, refcat=refcat, fitgeom=mode, nclip=3, sigma=3.0)
    for c in correctors:
        key, det = c.meta["name"].split(":")
        header_wcs = next(d.wcs for e in exposures if e.key == key for d in e.detectors
                          if d.name == det)
        mine = ours.wcs_for(key, header_wcs)
        assert c.meta["fit_info"]["status"] == "SUCCESS"
        assert _grid_error(mine, c.wcs) < 0.01
        assert _grid_error(c.wcs, truth[(key, det)]) < 0.01
