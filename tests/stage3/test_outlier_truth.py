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
from tests.stage3.conftest import Field
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
from obsflow.stage3.resample import I2DArrays, Resampler, input_weight

PROGRAM = "01234"  # one visit: 3 (webb_like) or 4 (smallsat) dithers


@dataclass
class Case:
    """Aligned products, the same with injected rays, and what was injected."""

    field: Field
    cals: list[CalImage]
    hit: list[CalImage]
    rays: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (y, x, amplitude / ERR)
    truth_hits: list[np.ndarray]  # bool (ny, nx): pixels a simulated cosmic ray touched


def _aligned(field: Field) -> list[CalImage]:
    cals = field.program(PROGRAM)
    use = RefFileUse("ASTROCAT", field.astrocat_path.name, sha256_file(field.astrocat_path))
    mode = "rshift" if cals[0].meta.subarray == "FULL" else "shift"
    alignment = align_products(cals, field.astrocat, field.profile,
                               AlignOptions(fit_mode=mode, abs_fit_mode=mode), use)
    return [aligned_cal(c, alignment) for c in cals]


@pytest.fixture(scope="module")
def case(field: Field) -> Case:
    rng = np.random.default_rng(23)
    cals = _aligned(field)
    hit, rays, truth_hits = [], [], []
    for cal in cals:
        truth = read_truth(field.out / "truth" / f"{cal.meta.basename}_truth.fits")
        hits = np.zeros(cal.sci.shape, bool)
        hits[np.asarray(truth.hits["Y"]), np.asarray(truth.hits["X"])] = True
        truth_hits.append(hits)
        # the sky: the true (noiseless) rate within 1 ERR of its median, 8 px from the edges
        gain = np.nanmedian(cal.sci) / np.median(truth.rate)
        expected = truth.rate * gain
        with np.errstate(invalid="ignore"):
            sky = (np.abs(expected - np.median(expected)) < cal.err) & (cal.dq == 0) & ~hits
        sky[:8], sky[-8:], sky[:, :8], sky[:, -8:] = False, False, False, False
        pick = rng.choice(np.flatnonzero(sky), size=30, replace=False)
        cy, cx = np.unravel_index(pick, sky.shape)
        amp = 10 ** rng.uniform(1.0, 3.0, pick.size)
        sci = cal.sci.copy()
        sci[cy, cx] += amp * cal.err[cy, cx]
        hit.append(replace(cal, sci=sci))
        rays.append((cy, cx, amp))
    return Case(field, cals, hit, rays, truth_hits)


def _grid(cals: list[CalImage]):
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
    return outlier_masks([OutlierInput.from_cal(c) for c in case.hit], _grid(case.hit))


def test_injected_cosmic_rays_are_flagged(case: Case, masks: list[np.ndarray]) -> None:
    n = len(case.hit)
    flagged = total = 0
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
        strong = tested & (amp >= 15.0)
        assert mask[cy, cx][strong].all(), (case.hit[k].meta.basename, amp[strong & ~mask[cy, cx]])
    print(f"{case.field.profile.mission.name}: {flagged}/{total} injected rays flagged ({n} inputs)")
    assert total >= 20 * n
    # measured: all on webb_like, all but one of 13 sigma on smallsat
    assert flagged >= 0.98 * total


def test_no_bright_star_peak_flagged(case: Case, masks: list[np.ndarray]) -> None:
    stars = case.field.stars(case.cals[0].meta.target)
    checked = 0
    for cal, mask in zip(case.cals, masks, strict=True):
        x, y = case.field.true_wcs(cal).world_to_pixel_values(np.asarray(stars["ra"]),
                                                              np.asarray(stars["dec"]))
        ix, iy = np.round(x).astype(int), np.round(y).astype(int)
        ny, nx = cal.sci.shape
        inside = (ix >= 2) & (ix < nx - 2) & (iy >= 2) & (iy < ny - 2)
        for i, j in zip(ix[inside], iy[inside], strict=True):
            box = cal.sci[j - 1:j + 2, i - 1:i + 2]
            if not np.all(np.isfinite(box)):
                continue
            peak = np.unravel_index(np.argmax(box), box.shape)
            py, px = j - 1 + peak[0], i - 1 + peak[1]
            background = np.nanmedian(cal.sci)
            if (cal.sci[py, px] - background) / cal.err[py, px] < 20:
                continue
            checked += 1
            assert not mask[py - 1:py + 2, px - 1:px + 2].any(), (cal.meta.basename, py, px)
    print(f"{case.field.profile.mission.name}: {checked} bright star peaks, none flagged")
    assert checked >= 15


def test_residual_cosmic_rays_in_the_mosaic(case: Case, masks: list[np.ndarray]) -> None:
    """At most 1 residual ray above 5 sigma per 1e5 mosaic pixels covered by 2+ inputs.

    Reference: the mosaic of the products without injected rays and without
    the pixels a simulated ray touched that stage 1 did not flag as a jump
    (truth CRHITS), so a clean one.
    """
    grid = _grid(case.hit)
    after = _mosaic(case.hit, [crf_dq(c.dq, m) for c, m in zip(case.hit, masks, strict=True)], grid)
    before = _mosaic(case.hit, [c.dq for c in case.hit], grid)
    # simulated rays stage 1 did not flag as jumps (a flagged jump's slope is clean)
    missed = [h & ((c.dq & DQ.JUMP_DET) == 0) for c, h in zip(case.cals, case.truth_hits, strict=True)]
    clean = _mosaic(case.cals, [c.dq | np.where(m, np.uint32(DQ.DO_NOT_USE), np.uint32(0))
                                for c, m in zip(case.cals, missed, strict=True)], grid)
    n = len(case.hit)
    count = sum(((clean.con[0] >> k) & 1) for k in range(n))
    # at least 2 inputs, 3 pixels (lanczos reach, cubic blot) inside the edge of that area
    area = ndimage.binary_erosion((count >= 2) & (clean.wht > 0), np.ones((7, 7), bool))
    n_before, n_after = residual_groups(after, before, clean, area)
    per_1e5 = n_after / area.sum() * 1e5
    print(f"{case.field.profile.mission.name}: {n_before} ray groups above 5 sigma in the mosaic "
          f"before, {n_after} after, {per_1e5:.2f} per 1e5 of {area.sum()} pixels")
    assert n_before >= 20 * n
    # measured: 0 on smallsat (62,803 px); 1 on webb_like (97,436 px: 1.03 per 1e5) until
    # the simulator drew faint stars at their exact sub-pixel positions and webb_like got its
    # distortion, then 2 (97,731 px): both at the cores of 16.5 and 17.9 mag stars (within
    # 0.75 px), 10% above the clean mosaic: a flagged core pixel of a star too faint for
    # test_no_bright_star_peak_flagged (peak S/N < 20), not a ray.  Since the simulator
    # collects the sky by pixel solid angle (new realizations of both fields): webb_like 1
    # (97,729 px, within the target); smallsat 2 (63,498 px): single pixels 1.9 and 3.1 px
    # from 15.4 and 15.7 mag stars, a simulated ray stage 1 did not flag and an injected one
    # of 13 ERR, neither flagged by outlier detection (its threshold grows with the median's
    # gradient beside a star); a known gap (docs/stage3.md) until 2026-12-02, when reference
    # pixels left the mosaics (as they had left the single resamples): smallsat 1 (59,483 px),
    # webb_like 1 (95,223 px)
    gaps: dict[str, str] = {}
    ok = n_after <= max(1.0, area.sum() / 1e5)
    name = case.field.profile.mission.name
    if name in gaps:
        if ok:
            pytest.fail(f"{name} now meets the target ({n_after} residuals): remove the gap")
        pytest.xfail(f"{name}: {n_after} residuals above 5 sigma in {area.sum()} px, "
                     f"{gaps[name]} (known gap)")
    assert ok
