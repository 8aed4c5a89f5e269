"""Outlier detection on simulated, calibrated and aligned exposures, against the simulator's truth.

Both profiles: ``webb_like`` on subarray SUB320 (three dithers, F150W, PSF
FWHM 1.03 px: undersampled) and ``smallsat`` full frame (four dithers, FWHM
1.4 px).  Cosmic rays of known positions and amplitudes (10-1000 x ERR) are
injected on the sky of every ``_cal``; besides them the products hold the
rays stage 1 did not fully remove (the truth's CRHITS).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest
from scipy import ndimage
from tests.stage3.conftest import Field, realization
from tests.stage3.test_outlier_scenes import residual_groups

from obsflow.fileio import sha256_file
from obsflow.models.dq import DQ
from obsflow.models.level2 import CalImage
from obsflow.models.provenance import RefFileUse
from obsflow.simulate.truth import read_truth
from obsflow.stage3.align import AlignOptions, align_products, aligned_cal
from obsflow.stage3.grid import output_grid
from obsflow.stage3.outlier import OutlierInput, crf_dq, outlier_masks
from obsflow.stage3.pixmap import pixel_map
from obsflow.stage3.resample import BAD_BITS, I2DArrays, Resampler, input_weight

PROGRAM = "01234"  # one visit: 3 (webb_like) or 4 (smallsat) dithers


@dataclass
class Case:
    """Aligned products, the same with injected rays, and what was injected."""

    field: Field
    cals: list[CalImage]
    hit: list[CalImage]
    rays: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (y, x, amplitude / ERR)
    truth_hits: list[np.ndarray]  # bool (ny, nx): pixels a simulated ray left > 2 ERR in
    true_rays: list[np.ndarray]  # bool (ny, nx): pixels a simulated ray hit (truth CRHITS)
    expected: list[np.ndarray]  # the noiseless scene in each _cal's units (truth rate x gain)


def _aligned(field: Field) -> list[CalImage]:
    cals = field.program(PROGRAM)
    use = RefFileUse("ASTROCAT", field.astrocat_path.name, sha256_file(field.astrocat_path))
    mode = "rshift" if cals[0].meta.subarray == "FULL" else "shift"
    alignment = align_products(cals, field.astrocat, field.profile,
                               AlignOptions(fit_mode=mode, abs_fit_mode=mode), use)
    return [aligned_cal(c, alignment) for c in cals]


def make_case(field: Field, seed: int = 23, cals: list[CalImage] | None = None) -> Case:
    """The field's aligned products (``cals``, by default aligned here) with 30 rays of
    10-1000 ERR injected on the sky of each (positions and amplitudes drawn from ``seed``)."""
    rng = np.random.default_rng(seed)
    cals = _aligned(field) if cals is None else cals
    hit, rays, truth_hits, true_rays, scenes = [], [], [], [], []
    for cal in cals:
        truth = read_truth(field.out / "truth" / f"{cal.meta.basename}_truth.fits")
        hits = np.zeros(cal.sci.shape, bool)
        hits[np.asarray(truth.hits["Y"]), np.asarray(truth.hits["X"])] = True
        # the sky: the true (noiseless) rate within 1 ERR of its median, 8 px from the edges
        gain = np.nanmedian(cal.sci) / np.median(truth.rate)
        expected = truth.rate * gain
        with np.errstate(invalid="ignore"):
            sky = (np.abs(expected - np.median(expected)) < cal.err) & (cal.dq == 0) & ~hits
            # a hit that left less than 2 ERR (a few electrons on a bright star) is no ray to find
            # (leaving those pixels out of the clean mosaic moved star cores by > 5 sigma)
            truth_hits.append(hits & (cal.sci - expected > 2 * cal.err))
        sky[:8], sky[-8:], sky[:, :8], sky[:, -8:] = False, False, False, False
        pick = rng.choice(np.flatnonzero(sky), size=30, replace=False)
        cy, cx = np.unravel_index(pick, sky.shape)
        amp = 10 ** rng.uniform(1.0, 3.0, pick.size)
        sci = cal.sci.copy()
        sci[cy, cx] += amp * cal.err[cy, cx]
        hit.append(replace(cal, sci=sci))
        rays.append((cy, cx, amp))
        true_rays.append(hits)
        scenes.append(expected.astype(np.float32))
    return Case(field, cals, hit, rays, truth_hits, true_rays, scenes)


@pytest.fixture(scope="module")
def case(field: Field) -> Case:
    return make_case(field)


def mosaic_grid(cals: list[CalImage]):
    return output_grid([c.wcs for c in cals], [c.sci.shape for c in cals])  # type: ignore[misc]


def _mosaic(cals: list[CalImage], dqs: list[np.ndarray], grid) -> I2DArrays:
    rs = Resampler(grid)
    for cal, dq in zip(cals, dqs, strict=True):
        w = input_weight(cal.sci, dq, cal.var_rnoise, "ivm")
        rs.add(cal.sci, w, pixel_map(cal.wcs, cal.sci.shape, grid), var_poisson=cal.var_poisson,
               var_rnoise=cal.var_rnoise)
    return rs.finish()


@pytest.fixture(scope="module")
def masks(case: Case) -> list[np.ndarray]:
    return outlier_masks([OutlierInput.from_cal(c) for c in case.hit], mosaic_grid(case.hit))


def injected_flagged(case: Case, masks: list[np.ndarray]) -> tuple[int, int, list[float]]:
    """Injected rays flagged, injected rays another exposure covers (tested), and the
    amplitudes (ERR) of the tested ones of 15 ERR or more left unflagged."""
    flagged = total = 0
    strong_missed: list[float] = []
    for k, mask in enumerate(masks):
        cy, cx, amp = case.rays[k]
        ra, dec = case.hit[k].wcs.pixel_to_world_values(cx, cy)  # type: ignore[union-attr]
        others = 0
        for j, other in enumerate(case.hit):
            if j == k:
                continue
            x, y = other.wcs.world_to_pixel_values(ra, dec)  # type: ignore[union-attr]
            ny, nx = other.sci.shape
            others += ((x > 3) & (x < nx - 4) & (y > 3) & (y < ny - 4)).astype(int)
        tested = others >= 1  # another exposure covers the ray (2 or more: tested)
        flagged += int(mask[cy, cx][tested].sum())
        total += int(tested.sum())
        strong_missed += [float(a) for a in amp[tested & (amp >= 15.0) & ~mask[cy, cx]]]
    return flagged, total, strong_missed


def test_injected_cosmic_rays_are_flagged(case: Case, masks: list[np.ndarray]) -> None:
    n = len(case.hit)
    flagged, total, strong_missed = injected_flagged(case, masks)
    print(f"{case.field.profile.mission.name}: {flagged}/{total} injected rays flagged ({n} inputs)")
    assert not strong_missed
    assert total >= 20 * n
    # measured: all on webb_like, all but one of 13 sigma on smallsat
    assert flagged >= 0.98 * total


def bright_peaks(case: Case, masks: list[np.ndarray]) -> tuple[int, list[tuple[str, int, int]]]:
    """Peaks (brightest pixel near a true star position, S/N >= 20) checked, and those whose 3x3
    holds a flagged pixel (product, y, x)."""
    stars = case.field.stars(case.cals[0].meta.target)
    checked, flagged = 0, []
    for cal, mask in zip(case.cals, masks, strict=True):
        x, y = case.field.true_wcs(cal).world_to_pixel_values(np.asarray(stars["ra"]),
                                                              np.asarray(stars["dec"]))
        ix, iy = np.round(x).astype(int), np.round(y).astype(int)
        ny, nx = cal.sci.shape
        inside = (ix >= 2) & (ix < nx - 2) & (iy >= 2) & (iy < ny - 2)
        background = np.nanmedian(cal.sci)
        for i, j in zip(ix[inside], iy[inside], strict=True):
            box = cal.sci[j - 1:j + 2, i - 1:i + 2]
            if not np.all(np.isfinite(box)):
                continue
            peak = np.unravel_index(np.argmax(box), box.shape)
            py, px = j - 1 + peak[0], i - 1 + peak[1]
            if (cal.sci[py, px] - background) / cal.err[py, px] < 20:
                continue
            checked += 1
            if mask[py - 1:py + 2, px - 1:px + 2].any():
                flagged.append((cal.meta.basename, int(py), int(px)))
    return checked, flagged


def star_cores(case: Case, masks: list[np.ndarray], min_snr: float = 100.0
               ) -> tuple[int, list[tuple[str, int, int, float]]]:
    """True stars of S/N >= ``min_snr`` checked, and the flagged pixels in their cores (product,
    y, x, the star's S/N), counted in every input.

    From the truth alone: a star's core is the pixels whose centres lie
    within max(2, 1.5 FWHM) px of its true position (the truth WCS of the
    exposure); its S/N the noiseless scene minus the sky summed over the core,
    over the root sum of ERR^2 there.  Stars whose core reaches off the image
    are left out; so are core pixels a simulated ray hit (truth CRHITS) or an
    injected one.
    """
    stars = case.field.stars(case.cals[0].meta.target)
    checked, flagged = 0, []
    for k, (cal, mask) in enumerate(zip(case.cals, masks, strict=True)):
        radius = max(2.0, 1.5 * case.field.fwhm(cal))
        x, y = case.field.true_wcs(cal).world_to_pixel_values(np.asarray(stars["ra"]),
                                                              np.asarray(stars["dec"]))
        ny, nx = cal.sci.shape
        scene = case.expected[k]
        sky = np.median(scene)
        ray = case.true_rays[k].copy()
        ray[case.rays[k][0], case.rays[k][1]] = True
        r = int(np.ceil(radius))
        oy, ox = np.mgrid[-r:r + 1, -r:r + 1]
        inside = (x >= r) & (x < nx - 1 - r) & (y >= r) & (y < ny - 1 - r)
        for xi, yi in zip(x[inside], y[inside], strict=True):
            cy, cx = oy + int(round(yi)), ox + int(round(xi))
            core = np.hypot(cx - xi, cy - yi) <= radius
            cy, cx = cy[core], cx[core]
            snr = float(np.sum(scene[cy, cx] - sky) / np.sqrt(np.sum(np.square(cal.err[cy, cx]))))
            if not snr >= min_snr:
                continue
            checked += 1
            hit = mask[cy, cx] & ~ray[cy, cx]
            flagged += [(cal.meta.basename, int(j), int(i), snr)
                        for j, i in zip(cy[hit], cx[hit], strict=True)]
    return checked, flagged


def test_no_pixel_of_a_bright_star_core_flagged(case: Case, masks: list[np.ndarray]) -> None:
    """The issue's "no bright-star peak flagged", from the truth: no pixel within the core of a
    true star flagged unless a simulated or injected ray hit it; checked from S/N 20 on (the
    issue's bright stars, S/N ~100, among them; over six realizations of each field:
    benchmarks/bench_outlier_truth.py, docs/stage3.md)."""
    checked, flagged = star_cores(case, masks, 20.0)
    print(f"{case.field.profile.mission.name}: {checked} star cores of S/N >= 20, "
          f"{len(flagged)} flagged pixels in them")
    assert not flagged
    assert checked >= 100


def test_star_cores_beside_the_tested_area_on_another_realization(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """webb_like seed 12: a star of S/N ~100 on the first usable row of one dither, whose core
    the single resamples cover only once (not tested there); the pixel 1.9 px from it, 11.9
    ERR above a blot five of whose eight neighbours (the star's side) were NaN, was flagged
    until the blot's slope came from those once-covered grid pixels too (docs/stage3.md)."""
    field = realization(tmp_path_factory, "webb_like", 12)
    case = make_case(field)
    masks = outlier_masks([OutlierInput.from_cal(c) for c in case.hit], mosaic_grid(case.hit))
    checked, flagged = star_cores(case, masks, 20.0)
    print(f"webb_like seed 12: {checked} star cores of S/N >= 20, {len(flagged)} flagged pixels "
          f"in them")
    assert not flagged
    assert checked >= 100
    after, area = residuals(case, masks)[1:]
    assert after <= area / 1e5


def test_no_bright_star_peak_flagged(case: Case, masks: list[np.ndarray]) -> None:
    checked, flagged = bright_peaks(case, masks)
    print(f"{case.field.profile.mission.name}: {checked} bright star peaks, {len(flagged)} flagged")
    assert not flagged
    assert checked >= 15


def residuals(case: Case, masks: list[np.ndarray]) -> tuple[int, int, int]:
    """Residual ray groups above 5 sigma in the mosaic (before, after outlier detection) and the
    pixels counted (3 px inside the area 2 or more inputs cover).

    Reference: the mosaic of the products without injected rays and without
    the pixels a simulated ray left more than 2 ERR in that stage 1 did not
    flag as a jump (truth CRHITS), so a clean one.
    """
    grid = mosaic_grid(case.hit)
    after = _mosaic(case.hit, [crf_dq(c.dq, m) for c, m in zip(case.hit, masks, strict=True)], grid)
    before = _mosaic(case.hit, [c.dq for c in case.hit], grid)
    clean = _mosaic(case.cals, [c.dq | np.where(m, np.uint32(DQ.DO_NOT_USE), np.uint32(0))
                                for c, m in zip(case.cals, _missed(case), strict=True)], grid)
    count = sum(((clean.con[0] >> k) & 1) for k in range(len(case.hit)))
    # at least 2 inputs, 3 pixels (lanczos reach, cubic blot) inside the edge of that area
    area = ndimage.binary_erosion((count >= 2) & (clean.wht > 0), np.ones((7, 7), bool))
    n_before, n_after = residual_groups(after, before, clean, area)
    return n_before, n_after, int(area.sum())


def _missed(case: Case) -> list[np.ndarray]:
    """Simulated rays stage 1 did not flag as jumps (a flagged jump's slope is clean)."""
    return [h & ((c.dq & DQ.JUMP_DET) == 0) for c, h in zip(case.cals, case.truth_hits, strict=True)]


def false_flags(case: Case, masks: list[np.ndarray]) -> tuple[int, int]:
    """Flagged pixels that are neither an injected ray nor a simulated ray's residue (truth), and
    the good pixels (no bad or SATURATED DQ bit, finite) of all inputs."""
    false = good = 0
    for k, (cal, mask, ray) in enumerate(zip(case.hit, masks, _missed(case), strict=True)):
        cy, cx, _ = case.rays[k]
        ray[cy, cx] = True
        ok = ((cal.dq & (BAD_BITS | DQ.SATURATED)) == 0) & np.isfinite(cal.sci)
        false += int(np.count_nonzero(mask & ~ray))
        good += int(np.count_nonzero(ok & ~ray))
    return false, good


def test_residual_cosmic_rays_in_the_mosaic(case: Case, masks: list[np.ndarray]) -> None:
    """At most 1 residual ray above 5 sigma per 1e5 mosaic pixels covered by 2+ inputs."""
    n_before, n_after, area = residuals(case, masks)
    n = len(case.hit)
    print(f"{case.field.profile.mission.name}: {n_before} ray groups above 5 sigma in the mosaic "
          f"before, {n_after} after, {n_after / area * 1e5:.2f} per 1e5 of {area} pixels")
    assert n_before >= 20 * n
    # the rule (none in < 1e5 px).  Measured: 0 on both (smallsat 59,482 px, webb_like
    # 95,223); 1 and 0 before the fixes of 2026-12-02 (docs/stage3.md, outlier detection)
    assert n_after <= area / 1e5


def test_residual_rate_over_more_ray_draws(case: Case, masks: list[np.ndarray]) -> None:
    """The same rule over four draws of injected rays on the field (its stars, bad pixels and
    simulated rays stay): more ray placements beside stars and bad pixels, within the time
    budget (a new realization of the field costs 10-30 s of simulation; the measurement over
    six realizations is benchmarks/bench_outlier_truth.py)."""
    n_after, area = residuals(case, masks)[1:]
    for seed in (24, 25, 26):
        draw = make_case(case.field, seed, case.cals)
        draw_masks = outlier_masks([OutlierInput.from_cal(c) for c in draw.hit],
                                   mosaic_grid(draw.hit))
        after, pixels = residuals(draw, draw_masks)[1:]
        n_after += after
        area += pixels
        false, good = false_flags(draw, draw_masks)
        print(f"{case.field.profile.mission.name} ray draw {seed}: {after} residuals in {pixels} "
              f"px; {false} false flags of {good} good pixels")
        assert false <= 2e-5 * good
    print(f"{case.field.profile.mission.name}: {n_after} residuals in {area} px over 4 draws")
    assert n_after <= area / 1e5


def test_few_false_flags(case: Case, masks: list[np.ndarray]) -> None:
    """Flagged pixels that are neither rays nor simulated rays' residues: at most 2 per 1e5
    good input pixels (measured 0 of 239,264 smallsat, 0 of 269,278 webb_like; over six
    realizations 0.2 and 0.6 per 1e5, docs/stage3.md)."""
    false, good = false_flags(case, masks)
    print(f"{case.field.profile.mission.name}: {false} false flags of {good} good input pixels")
    assert false <= 2e-5 * good
