"""The source catalog of simulated mosaics against the simulator's truth (both profiles).

The mosaic: one program's dithered ``_cal`` products of the shared stage-3
field (tests/stage3/conftest.py), aligned (tweakreg against the simulated
astrometric catalog) and drizzled with the Resampler (square kernel,
pixfrac 1, exposure-time weights: see ``_mosaic``).  True sources come from
``truth/sources_<target>.ecsv``, their true fluxes from their AB magnitudes.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from astropy.table import Table
from astropy.wcs import WCS
from photutils.aperture import CircularAperture, aperture_photometry
from scipy.spatial import cKDTree
from tests.stage3.conftest import Field, scratch_realization

from obsflow.fileio import sha256_file
from obsflow.models.level2 import CalImage
from obsflow.models.provenance import RefFileUse
from obsflow.stage3.align import AlignOptions, align_products, aligned_cal
from obsflow.stage3.catalog import (
    FLAGS,
    SourceCatalogResult,
    point_sources_from_inputs,
    source_catalog,
)
from obsflow.stage3.grid import output_grid, pixel_scale_arcsec
from obsflow.stage3.pixmap import pixel_map
from obsflow.stage3.psfmodel import MosaicPSF
from obsflow.stage3.resample import I2DArrays, Resampler, input_weight

PROGRAM = "01234"


class Mosaic:
    """A field's mosaic, its catalog and its truth in mosaic pixels."""

    def __init__(self, field: Field) -> None:
        cals = field.program(PROGRAM)
        mode = "rshift" if cals[0].meta.subarray == "FULL" else "shift"
        use = RefFileUse("ASTROCAT", field.astrocat_path.name, sha256_file(field.astrocat_path))
        alignment = align_products(cals, field.astrocat, field.profile,
                                   AlignOptions(fit_mode=mode, abs_fit_mode=mode), use)
        aligned = [aligned_cal(c, alignment) for c in cals]
        grid = output_grid([c.wcs for c in aligned], [c.sci.shape for c in aligned])
        resampler = Resampler(grid)
        for cal in aligned:
            # exposure-time weights: with "ivm" (1/VAR_RNOISE) a bright star's core, where
            # stage 1 used fewer groups and VAR_RNOISE is larger, is down-weighted against its
            # wings and the drizzled star loses ~4.5% of its flux (webb_like, measured)
            weight = input_weight(cal.sci, cal.dq, cal.var_rnoise, "exptime", exptime=1.0)
            resampler.add(cal.sci, weight, pixel_map(cal.wcs, cal.sci.shape, grid),
                          var_poisson=cal.var_poisson, var_rnoise=cal.var_rnoise)
        self.i2d: I2DArrays = resampler.finish()
        self.grid: WCS = grid
        self.aligned: list[CalImage] = aligned  # (the inputs, their WCS aligned)
        meta = cals[0].meta
        self.psf = MosaicPSF.for_image(field.profile, meta.instrument, meta.filter,
                                       pixel_scale_arcsec(grid), 1.0, inputs=len(cals))
        self.result: SourceCatalogResult = source_catalog(
            np.ascontiguousarray(self.i2d.sci), np.ascontiguousarray(self.i2d.err),
            np.ascontiguousarray(self.i2d.wht), grid, self.psf, name="field_i2d.fits")
        # point sources' positions and own aperture corrections from the aligned inputs, as
        # the stage-3 job does (exposure-time weights of 1: each input's level is 1)
        point_sources_from_inputs(self.result.table, grid,
                                  ((c.sci, c.dq, c.wcs, field.fwhm(c), 1.0) for c in aligned),
                                  self.psf)
        truth = Table.read(field.out / "truth" / f"sources_{meta.target}.ecsv")
        self.kind = np.asarray(truth["kind"])
        self.flux_jy = 3631.0 * 10 ** (-0.4 * np.asarray(truth[f"mag_{meta.filter}"]))
        self.ra, self.dec = np.asarray(truth["ra"]), np.asarray(truth["dec"])
        self.x, self.y = grid.world_to_pixel_values(self.ra, self.dec)
        self.r_eff_pix = np.asarray(truth["r_eff_arcsec"]) / pixel_scale_arcsec(grid)
        self.profile = field.profile.mission.name

    @functools.cached_property
    def true_snr(self) -> np.ndarray:
        """S/N each true source would have in the catalog's total flux: its flux within the
        largest aperture (the PSF's encircled energy) over that aperture's error from ERR."""
        meta = self.result.table.meta
        ap = meta["apertures"][-1]
        ny, nx = self.i2d.sci.shape
        pos = np.column_stack([self.x, self.y])
        inside = (self.x > 0) & (self.x < nx - 1) & (self.y > 0) & (self.y < ny - 1)
        err = np.where(self.i2d.wht > 0, self.i2d.err, 0.0)
        phot = aperture_photometry(err, CircularAperture(np.where(inside[:, None], pos, 0.0),
                                                         ap["radius_pix"]), error=err)
        sigma = np.sqrt(ap["noise_variance_factor"]) * np.asarray(phot["aperture_sum_err"])
        sigma_jy = sigma * meta["pixel_area_sr"] * 1e6
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = np.where(inside, ap["encircled_energy"] * self.flux_jy / sigma_jy, 0.0)
        return np.nan_to_num(snr)

    def covered(self, margin: float) -> np.ndarray:
        """True sources at least ``margin`` pixels inside pixels with weight."""
        ny, nx = self.i2d.wht.shape
        r = int(math.ceil(margin))
        ok = (self.x > r) & (self.x < nx - 1 - r) & (self.y > r) & (self.y < ny - 1 - r)
        xi = np.clip(np.round(self.x).astype(int), 0, nx - 1)
        yi = np.clip(np.round(self.y).astype(int), 0, ny - 1)
        from scipy.ndimage import minimum_filter
        full = minimum_filter((self.i2d.wht > 0).astype(np.uint8), size=2 * r + 1) > 0
        return ok & full[yi, xi]

    def isolated(self, radius: float, contrast: float = 0.01) -> np.ndarray:
        """True sources with no other true source brighter than ``contrast`` x their flux
        within ``radius`` pixels."""
        tree = cKDTree(np.column_stack([self.x, self.y]))
        out = np.ones(self.x.size, bool)
        for i, j in tree.query_pairs(radius, output_type="ndarray"):
            if self.flux_jy[j] > contrast * self.flux_jy[i]:
                out[i] = False
            if self.flux_jy[i] > contrast * self.flux_jy[j]:
                out[j] = False
        return out


_MOSAICS: dict[str, Mosaic] = {}

KNOWN_GAPS: dict[tuple[str, str], str] = {
    # (profile, check): what was measured when the gap was recorded (docs/stage3.md).  None
    # since 2026-12-03: the flux pulls' last gaps were the test's too-small sample (4 webb_like
    # fields -0.127, 8 smallsat fields 0.129; see REALIZATIONS)
}


def _check(m: Mosaic, check: str, ok: bool, measured: str) -> None:
    """Assert ``ok``; for a recorded gap, expect it to fail (and fail once it passes)."""
    name = m.profile
    gap = KNOWN_GAPS.get((name, check))
    if gap is None:
        assert ok, f"{name} {check}: {measured}"
    elif ok:
        pytest.fail(f"{name} {check} now meets the target ({measured}): remove it from KNOWN_GAPS")
    else:
        pytest.xfail(f"{name} {check}: {measured} (known gap: {gap})")


@pytest.fixture
def mosaic(field: Field) -> Mosaic:
    name = field.profile.mission.name
    if name not in _MOSAICS:
        _MOSAICS[name] = Mosaic(field)
    return _MOSAICS[name]


def _match(m: Mosaic, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """For each true source: distance to the nearest detection and its row."""
    t = m.result.table
    tree = cKDTree(np.column_stack([t["x_centroid"], t["y_centroid"]]))
    return tree.query(np.column_stack([m.x, m.y]), distance_upper_bound=radius)


def _isolated_stars(m: Mosaic) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Isolated true stars well inside the mosaic, matched within 1 px, with flags 0:
    (their indices in the truth, their catalog rows, the rows' S/N)."""
    t = m.result.table
    fwhm = m.psf.blurred_fwhm_pix
    dist, row = _match(m, 1.0)
    star = (m.kind == "star") & m.isolated(6 * fwhm) & m.covered(4 * fwhm) & np.isfinite(dist)
    index = np.flatnonzero(star)
    rows = row[star]
    ok = np.asarray(t["flags"][rows]) == 0
    index, rows = index[ok], rows[ok]
    snr = np.asarray(t["aper_total_flux"][rows] / t["aper_total_flux_err"][rows])
    return index, rows, snr


def completeness(m: Mosaic, t: Table) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The completeness target's sources in ``m``'s truth against catalog ``t``: (the point-like
    true sources with S/N >= 10 well inside the data, which of them a detection lies within
    max(1.5 px, the FWHM) of, the spurious detections, the EDGE detections of sources
    centred beyond the data that are not counted as spurious)."""
    fwhm = m.psf.blurred_fwhm_pix
    radius = max(1.5, fwhm)
    # point-like true sources: stars and galaxies smaller than the PSF (S/N in a point
    # source's aperture is only meaningful for them)
    pointlike = (m.kind == "star") | (m.r_eff_pix < 0.5 * fwhm)
    target = pointlike & (m.true_snr >= 10) & m.covered(3 * fwhm)
    pos = np.column_stack([t["x_centroid"], t["y_centroid"]])
    dist, _ = cKDTree(pos).query(np.column_stack([m.x, m.y]), distance_upper_bound=radius)
    found = np.isfinite(dist)
    # spurious: a detection with no true source (any brightness) within 2 FWHM; except one
    # whose largest aperture crosses the border of the data (EDGE) and holds >= 5 sigma of
    # the light of a true star centred beyond the border (no data at its position): the
    # truncated wing of that star (its light from the profile's Moffat at the distance)
    near = max(2.0, 2 * fwhm)
    d_det, _ = cKDTree(np.column_stack([m.x, m.y])).query(pos)
    outside = np.flatnonzero(~m.covered(0.0))
    assert outside.size > 0  # (the truth's field is larger than the mosaic)
    d_out, k_out = cKDTree(np.column_stack([m.x[outside], m.y[outside]])).query(pos)
    ap = t.meta["apertures"][-1]
    alpha = m.psf.fwhm_pix / (2 * math.sqrt(2 ** (1 / m.psf.beta) - 1))
    density = (m.psf.beta - 1) / (math.pi * alpha**2) * (1 + d_out**2 / alpha**2) ** -m.psf.beta
    light = m.flux_jy[outside[np.minimum(k_out, outside.size - 1)]] * density * math.pi * \
        ap["radius_pix"] ** 2
    edge = (np.asarray(t["flags"]) & FLAGS["EDGE"]) > 0
    across = edge & (d_det > near) & np.isfinite(d_out) & \
        (light >= 5 * np.asarray(t[f"{ap['name']}_flux_err"]))
    return target, found, int(np.sum((d_det > near) & ~across)), int(across.sum())


def test_completeness_and_spurious_detections(mosaic: Mosaic) -> None:
    m = mosaic
    t = m.result.table
    target, found, spurious, across = completeness(m, t)
    fraction = float(found[target].mean())
    print(f"{m.psf}: {target.sum()} true S/N>=10, completeness {fraction:.3f}; "
          f"{len(t)} detections, {spurious} spurious ({across} EDGE detections of "
          f"sources centred beyond the data)")
    assert target.sum() >= 30
    assert spurious < 0.01 * len(t)
    _check(m, "completeness", fraction >= 0.90, f"{fraction:.3f} of {target.sum()}")


MEDIAN_SE = 0.04
"""The standard error the pooled median pull is given, so that the test can decide the target:
an unbiased catalog lands within +-0.1 (2.5 standard errors) in ~99% of samples, and one biased
by 0.2 outside it in 99%."""

STARS_PER_FIELD = {"webb_like": 47, "smallsat": 39}
"""Isolated stars with 10 <= S/N <= 2000 in one realization (their first pointings), as measured
over seeds 11-58 (``benchmarks/truth_flux_pulls.py``: 2,285 and 1,902 stars in 48 fields)."""

STARS_NEEDED = (math.sqrt(math.pi / 2) / MEDIAN_SE) ** 2
"""Pooled stars whose median pull has the standard error MEDIAN_SE (~980)."""

REALIZATIONS = {name: math.ceil(STARS_NEEDED / n) for name, n in STARS_PER_FIELD.items()}
"""Simulated fields the flux pulls are pooled over (seeds 11, 12, ...; 11 is the shared field):
the median of N unit-spread pulls has a standard error of sqrt(pi/2)/sqrt(N), so MEDIAN_SE
needs ~980 stars: 21 webb_like and 26 smallsat fields.  (Until 2026-12-03 it was 4 and 8
fields, ~175 and ~330 stars, standard errors 0.09 and 0.07: too few to decide +-0.1, and the
first four webb_like fields happen to lie low, -0.13.)"""


def _pulls(m: Mosaic) -> np.ndarray:
    """(total flux - true flux) / error of the isolated stars with 10 <= S/N <= 2000."""
    t = m.result.table
    index, rows, snr = _isolated_stars(m)
    pull = np.asarray((t["aper_total_flux"][rows] - m.flux_jy[index])
                      / t["aper_total_flux_err"][rows])
    return pull[(snr >= 10) & (snr <= 2000)]


def test_isolated_star_fluxes_against_truth(mosaic: Mosaic,
                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    m = mosaic
    pulls = [_pulls(m)]
    for seed in range(12, 11 + REALIZATIONS[m.profile]):
        # the same scene statistics, another realization (stars, noise, rays, pointing
        # errors); only the first pointings are simulated (FIRST_POINTINGS)
        with scratch_realization(tmp_path_factory, m.profile, seed) as other:
            pulls.append(_pulls(Mosaic(other)))
    pull = np.concatenate(pulls)
    med = float(np.median(pull))
    spread = float(1.4826 * np.median(np.abs(pull - med)))
    print(f"{m.psf}: {pull.size} isolated stars in {len(pulls)} fields "
          f"(per field: {', '.join(f'{p.size} {np.median(p):+.2f}' for p in pulls)}), median pull "
          f"{med:.3f} (s.e. {math.sqrt(math.pi / 2 / pull.size):.3f}), spread (MAD) {spread:.3f}")
    assert min(p.size for p in pulls) >= 10
    # the sample the test was sized for (a scene change that thins the stars fails here first)
    assert pull.size >= 0.8 * STARS_NEEDED
    _check(m, "flux pulls", abs(med) <= 0.1 and 0.9 <= spread <= 1.1,
           f"median {med:.3f}, spread {spread:.3f} over {pull.size} stars in {len(pulls)} fields")


def test_bright_isolated_star_positions(mosaic: Mosaic) -> None:
    m = mosaic
    t = m.result.table
    index, rows, snr = _isolated_stars(m)
    bright = snr > 100
    # sky positions of the catalog through the grid back onto the truth's pixels
    x, y = m.grid.world_to_pixel_values(np.asarray(t["ra"][rows][bright]),
                                        np.asarray(t["dec"][rows][bright]))
    dx, dy = x - m.x[index][bright], y - m.y[index][bright]
    rms = float(np.sqrt(np.mean(dx**2 + dy**2)))
    print(f"{m.psf}: {bright.sum()} bright isolated stars, position RMS {rms:.4f} px")
    assert bright.sum() >= 5
    # point sources' positions come from PSF fits on the aligned inputs (the alignment alone
    # leaves ~0.02 px: tests/stage3/test_align_truth.py); the bound
    _check(m, "positions", rms < 0.05, f"RMS {rms:.4f} px over {bright.sum()} stars")


def test_stars_are_point_sources(mosaic: Mosaic) -> None:
    m = mosaic
    _, rows, snr = _isolated_stars(m)
    rows = rows[snr > 20]
    point = ~np.asarray(m.result.table["is_extended"][rows])
    print(f"{m.psf}: {point.mean():.3f} of {rows.size} isolated stars point-like")
    assert rows.size >= 10
    _check(m, "point-like", point.mean() >= 0.9, f"{point.mean():.3f} of {rows.size}")
