"""Outlier detection on scenes the simulator does not make, checked against their truth.

Dithered (sub-pixel and a few pixels, small rotations) images of a dense star
field with an undersampled PSF (Moffat FWHM 1.0 px, the webb_like
short-wave case of jwst issue 9989) and very bright, saturated-ish stars;
cosmic rays of known positions and amplitudes (10-1000 sigma, sharing 5% of
their charge with each side neighbour) injected into each image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from astropy.wcs import WCS
from scipy import ndimage

from obsflow.exceptions import ObsflowError, OutlierError
from obsflow.models.dq import DQ
from obsflow.models.pointing import detector_wcs
from obsflow.simulate.sky import moffat_stamp
from obsflow.stage3.grid import output_grid
from obsflow.stage3.outlier import (
    CRF_BITS,
    OutlierInput,
    OutlierOptions,
    crf_dq,
    outlier_masks,
)
from obsflow.stage3.pixmap import pixel_map
from obsflow.stage3.resample import I2DArrays, Resampler, input_weight

SCALE = 0.031  # arcsec per pixel (webb_like)
BKG, RNOISE, GAIN = 0.3, 0.05, 20.0  # background, read-noise sigma, Poisson: var = value / GAIN


@dataclass
class Scene:
    """Inputs with cosmic rays, the same inputs without them, and the truth."""

    inputs: list[OutlierInput]
    clean: list[OutlierInput]
    crs: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # (y, x, amplitude / ERR) per input
    star_ra: np.ndarray
    star_dec: np.ndarray
    star_flux: np.ndarray
    truth: list[np.ndarray]  # noiseless image of each input


def _wcs(ny: int, nx: int, dx: float, dy: float, pa: float) -> WCS:
    return detector_wcs(150.0, 2.0, pa, (dx * SCALE, dy * SCALE, 0.0), SCALE, (nx, ny, 1, 1, nx, ny))


def _render(w: WCS, shape: tuple[int, int], ra: np.ndarray, dec: np.ndarray, flux: np.ndarray,
            fwhm: float) -> np.ndarray:
    ny, nx = shape
    img = np.full(shape, BKG, dtype=np.float64)
    x, y = w.world_to_pixel_values(ra, dec)
    half = 10
    for xi, yi, f in zip(x, y, flux, strict=True):
        x0, y0 = int(np.floor(xi + 0.5)), int(np.floor(yi + 0.5))
        stamp = f * moffat_stamp(xi - x0, yi - y0, half, fwhm)
        ya, yb, xa, xb = max(0, y0 - half), min(ny, y0 + half + 1), max(0, x0 - half), min(nx, x0 + half + 1)
        if ya < yb and xa < xb:
            img[ya:yb, xa:xb] += stamp[ya - y0 + half:yb - y0 + half, xa - x0 + half:xb - x0 + half]
    return img


def make_scene(n: int, fwhm: float = 1.0, size: int = 150, stars: int = 40,
               max_flux: float = 2.0e4, crs: int = 60, seed: int = 5) -> Scene:
    """``n`` dithered images: offsets up to +/-3 px (sub-pixel phases), rotations up to 2 deg."""
    rng = np.random.default_rng(seed)
    shape = (size, size)
    ref = _wcs(size, size, 0.0, 0.0, 0.0)
    sx, sy = rng.uniform(8, size - 8, stars), rng.uniform(8, size - 8, stars)
    ra, dec = ref.pixel_to_world_values(sx, sy)
    flux = 10 ** rng.uniform(np.log10(max_flux / 300), np.log10(max_flux), stars)
    inputs, clean, hits, truths = [], [], [], []
    for k in range(n):
        w = _wcs(size, size, *rng.uniform(-3, 3, 2), pa=float(rng.uniform(0, 2)) if k else 0.0)
        truth = _render(w, shape, np.asarray(ra), np.asarray(dec), flux, fwhm)
        var = RNOISE**2 + truth / GAIN
        err = np.sqrt(var).astype(np.float32)
        sci = (truth + rng.normal(size=shape) * np.sqrt(var)).astype(np.float32)
        dq = np.zeros(shape, np.uint32)
        bright = truth > 0.5 * truth.max()
        dq[bright] |= np.uint32(DQ.SATURATED)  # saturated-ish: a value from the first groups
        vr = np.full(shape, RNOISE**2, np.float32)
        clean.append(OutlierInput(sci, err, dq, w, var_rnoise=vr, name=f"clean{k}"))
        # cosmic rays on the sky (true scene within 1 sigma of the background), 6 px from edges
        sky = (np.abs(truth - BKG) < np.sqrt(RNOISE**2 + BKG / GAIN))
        sky[:6], sky[-6:], sky[:, :6], sky[:, -6:] = False, False, False, False
        cand = np.flatnonzero(sky)
        pick = rng.choice(cand, size=crs, replace=False)
        cy, cx = np.unravel_index(pick, shape)
        amp = 10 ** rng.uniform(1.0, 3.0, crs)
        hit = sci.copy()
        hit[cy, cx] += amp * err[cy, cx]
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            hit[cy + dy, cx + dx] += 0.05 * amp * err[cy, cx]
        inputs.append(OutlierInput(hit, err, dq, w, var_rnoise=vr, name=f"input{k}"))
        hits.append((cy, cx, amp))
        truths.append(truth)
    return Scene(inputs, clean, hits, np.asarray(ra), np.asarray(dec), flux, truths)


def _grid(inputs: list[OutlierInput]) -> WCS:
    return output_grid([i.wcs for i in inputs], [i.sci.shape for i in inputs])  # type: ignore[misc]


def _mosaic(inputs: list[OutlierInput], grid: WCS, masks: list[np.ndarray] | None = None):
    rs = Resampler(grid)
    for k, inp in enumerate(inputs):
        dq = inp.dq if masks is None else crf_dq(inp.dq, masks[k])
        w = input_weight(inp.sci, dq, inp.var_rnoise, "ivm")
        rs.add(inp.sci, w, pixel_map(inp.wcs, inp.sci.shape, grid), var_rnoise=inp.var_rnoise,
               var_poisson=np.square(inp.err) - inp.var_rnoise)
    return rs.finish()


def residual_groups(after: I2DArrays, before: I2DArrays, clean: I2DArrays,
                    area: np.ndarray) -> tuple[int, int]:
    """Groups of mosaic pixels above 5 sigma of ``clean`` within ``area``: (before, after)."""
    counts = []
    for mosaic in (before, after):
        with np.errstate(invalid="ignore"):
            z = np.where(area, (mosaic.sci - clean.sci) / clean.err, 0.0)
        counts.append(int(ndimage.label(z > 5)[1]))
    return counts[0], counts[1]


def _star_peaks(scene: Scene, k: int, min_snr: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) of the brightest pixel of each star with peak S/N >= ``min_snr`` in input ``k``."""
    truth = scene.truth[k]
    x, y = scene.inputs[k].wcs.world_to_pixel_values(scene.star_ra, scene.star_dec)  # type: ignore[union-attr]
    ny, nx = truth.shape
    ys, xs = [], []
    for xi, yi in zip(np.round(x).astype(int), np.round(y).astype(int), strict=True):
        if 2 <= xi < nx - 2 and 2 <= yi < ny - 2:
            box = truth[yi - 1:yi + 2, xi - 1:xi + 2]
            j, i = np.unravel_index(np.argmax(box), box.shape)
            py, px = yi - 1 + j, xi - 1 + i
            if (truth[py, px] - BKG) / np.sqrt(RNOISE**2 + truth[py, px] / GAIN) >= min_snr:
                ys.append(py)
                xs.append(px)
    return np.array(ys, int), np.array(xs, int)


@pytest.mark.parametrize(("n", "fwhm", "max_flux"), [(4, 1.0, 2e4), (3, 1.0, 2e4), (2, 1.0, 2e4),
                                                     (3, 1.4, 3e5), (4, 2.0, 3e5)])
def test_no_star_peak_flagged(n: int, fwhm: float, max_flux: float) -> None:
    scene = make_scene(n, fwhm=fwhm, max_flux=max_flux)
    masks = outlier_masks(scene.inputs, _grid(scene.inputs))
    peaks = 0
    for k, mask in enumerate(masks):
        py, px = _star_peaks(scene, k)
        peaks += py.size
        core = ndimage.binary_dilation(np.zeros_like(mask), iterations=0)
        core[py, px] = True
        flagged = mask & ndimage.binary_dilation(core, np.ones((3, 3), bool))
        assert not flagged.any(), (k, np.argwhere(flagged))
    assert peaks >= 20 * n


def corner_scene(shifts: list[tuple[float, float]], fwhm: float, size: int = 120,
                 seed: int = 3) -> tuple[list[OutlierInput], list[np.ndarray], np.ndarray, np.ndarray]:
    """Inputs of one orientation, shifted by ``shifts`` (px) from the first, of a lattice of
    stars (every 12 px, fluxes 300 to 3e5, geometric) each on a pixel *corner* of the first
    input: an input shifted by (0.5, 0.5) has them at pixel centres.  No cosmic rays.  Returns
    the inputs, their noiseless images and the stars' RA, Dec."""
    rng = np.random.default_rng(seed)
    ref = _wcs(size, size, 0.0, 0.0, 0.0)
    gy, gx = np.mgrid[12:size - 12:12, 12:size - 12:12]
    ra, dec = ref.pixel_to_world_values(gx.ravel() + 0.5, gy.ravel() + 0.5)
    flux = np.geomspace(3e2, 3e5, gx.size)
    inputs, truths = [], []
    for k, (dx, dy) in enumerate(shifts):
        w = _wcs(size, size, dx, dy, 0.0)
        truth = _render(w, (size, size), np.asarray(ra), np.asarray(dec), flux, fwhm)
        var = RNOISE**2 + truth / GAIN
        sci = (truth + rng.normal(size=truth.shape) * np.sqrt(var)).astype(np.float32)
        inputs.append(OutlierInput(sci, np.sqrt(var).astype(np.float32),
                                   np.zeros(truth.shape, np.uint32), w,
                                   var_rnoise=np.full(truth.shape, RNOISE**2, np.float32),
                                   name=f"corner{k}"))
        truths.append(truth)
    return inputs, truths, np.asarray(ra), np.asarray(dec)


def _flagged_cores(inputs: list[OutlierInput], truths: list[np.ndarray], ra: np.ndarray,
                   dec: np.ndarray, masks: list[np.ndarray]) -> tuple[int, int]:
    """Stars of S/N >= 100 in their core (pixels within 2 px of the true position: light over
    the root sum of the variance) counted in every input, and those with a flagged core pixel."""
    checked = flagged = 0
    for inp, truth, mask in zip(inputs, truths, masks, strict=True):
        x, y = inp.wcs.world_to_pixel_values(ra, dec)  # type: ignore[union-attr]
        yy, xx = np.mgrid[:truth.shape[0], :truth.shape[1]]
        for xi, yi in zip(x, y, strict=True):
            core = np.hypot(xx - xi, yy - yi) <= 2.0
            if (truth[core] - BKG).sum() / np.sqrt(np.square(inp.err[core]).sum()) >= 100:
                checked += 1
                flagged += int(mask[core].any())
    return checked, flagged


@pytest.mark.parametrize(("shifts", "fwhm"), [
    ([(0.0, 0.0), (0.5, 0.5), (0.25, -0.25)], 0.6),
    ([(0.0, 0.0), (0.5, 0.5), (0.0, 0.5), (0.5, 0.0)], 0.6),
    ([(0.0, 0.0), (0.5, 0.5)], 1.0),
    # a pair at FWHM 0.6 px: 70 of 118 cores flagged while the simulator's stars were 3x3
    # midpoint sums (centre pixel 4% too bright), none since they are exact (2026-12-03)
    ([(0.0, 0.0), (0.5, 0.5)], 0.6),
])
def test_star_on_a_pixel_corner_with_an_input_half_a_pixel_off(shifts: list[tuple[float, float]],
                                                              fwhm: float) -> None:
    """Very undersampled stars (Moffat FWHM 0.6 and 1.0 px) on a pixel corner of one input and at
    a pixel centre of another (shifted by half a pixel): the centred input's core pixel holds
    2.9 x what the corner input's brightest one does (FWHM 0.6; 2.1 x at 1.0), which no blot of
    the median reproduces; no core pixel of a star of S/N >= 100 may be flagged."""
    inputs, truths, ra, dec = corner_scene(shifts, fwhm)
    masks = outlier_masks(inputs, _grid(inputs))
    checked, flagged = _flagged_cores(inputs, truths, ra, dec, masks)
    print(f"{len(shifts)} inputs, FWHM {fwhm}: {flagged} of {checked} star cores flagged")
    assert checked >= 50 * len(shifts)
    assert flagged == 0


def test_a_pair_flags_the_high_exposure_not_the_clean_one() -> None:
    """Two exposures cannot vote; what they can do: the lower value of the pair is the clean one
    where they differ by a ray (rays are positive), so every ray of 10 sigma or more on the sky
    is flagged in the exposure it hit and the other exposure's pixel there is left alone (its
    pixel at the ray's position is not flagged unless a ray of its own is within 2 px)."""
    scene = make_scene(2, size=200, crs=40, seed=9)
    masks = outlier_masks(scene.inputs, _grid(scene.inputs))
    clean_kept = 0
    for k, other in ((0, 1), (1, 0)):
        cy, cx, _ = scene.crs[k]
        assert masks[k][cy, cx].all()
        ra, dec = scene.inputs[k].wcs.pixel_to_world_values(cx, cy)  # type: ignore[union-attr]
        x, y = scene.inputs[other].wcs.world_to_pixel_values(ra, dec)  # type: ignore[union-attr]
        ix, iy = np.round(x).astype(int), np.round(y).astype(int)
        on = (ix >= 0) & (ix < 200) & (iy >= 0) & (iy < 200)
        oy, ox, _ = scene.crs[other]
        own = np.hypot(ix[:, None] - ox[None, :], iy[:, None] - oy[None, :]).min(axis=1) <= 2
        keep = on & ~own
        assert keep.sum() >= 30
        assert not masks[other][iy[keep], ix[keep]].any()
        clean_kept += int(keep.sum())
    assert clean_kept >= 60


@pytest.mark.parametrize("n", [2, 3, 5])
def test_cosmic_rays_on_the_sky_are_flagged(n: int) -> None:
    scene = make_scene(n, size=200, crs=40, seed=7 + n)
    masks = outlier_masks(scene.inputs, _grid(scene.inputs))
    sky = [np.column_stack(inp.wcs.pixel_to_world_values(c[1], c[0]))  # type: ignore[union-attr]
           for inp, c in zip(scene.inputs, scene.crs, strict=True)]
    for k, mask in enumerate(masks):
        cy, cx, amp = scene.crs[k]
        # rays of other exposures within 5 pixels (kernel and blot reach) of this one: the
        # lower median of n values stands n - 1 - (n - 1) // 2 high ones, no more
        others = [s for j, s in enumerate(sky) if j != k]
        near = sum((np.hypot((sky[k][:, None, 0] - o[None, :, 0]) * np.cos(np.deg2rad(2.0)),
                             sky[k][:, None, 1] - o[None, :, 1]) * 3600 / SCALE < 5.0).any(axis=1)
                   for o in others)
        alone = near + 1 <= n - 1 - (n - 1) // 2
        assert alone.sum() >= 0.7 * alone.size
        # every injected cosmic ray of 10 sigma or more on the sky
        hit = mask[cy, cx]
        assert hit[alone].all(), (k, amp[alone & ~hit])
        # few other pixels: the rays' neighbours (5% of the charge), noise at 4-5 sigma
        near = np.zeros_like(mask)
        near[cy, cx] = True
        near = ndimage.binary_dilation(near, np.ones((3, 3), bool))
        assert np.count_nonzero(mask & ~near) <= 2e-3 * mask.size


KNOWN_GAPS: dict[int, str] = {}
"""Inputs (n) whose residual-ray rate is a known gap: what was measured (docs/stage3.md)."""


@pytest.mark.parametrize(("n", "limit", "seed"), [(2, 1.0, 13), (3, 1.0, 14), (4, 1.0, 15),
                                                   (3, 1.0, 18)])
def test_residual_cosmic_rays_in_the_mosaic(n: int, limit: float, seed: int) -> None:
    """At most 1 residual ray above 5 sigma per 1e5 mosaic pixels.

    A pair: met since 2026-12-03 (branch pair3; 2.43 per 1e5 before, limit
    15): the 5% side neighbours of rays of > 100 sigma, 5.1-5.8 sigma in the
    mosaic, stayed under the derivative allowance every pixel of a pair's
    median has; the side-neighbour rule of a two-input median
    (:func:`obsflow.stage3.outlier.ray_sides`) flags them; pooled over seeds
    14-19, 0 residuals in 246,683 px (main 7, 2.84 per 1e5).  Three
    inputs: met since 2026-12-03 (a known gap before: rays of two inputs on
    one sky pixel made the median a ray; see
    :func:`test_two_rays_on_one_sky_pixel_in_two_of_three_inputs`); pooled
    over seeds 14-19, 1 residual in 248,920 px (0.40 per 1e5; main 6, 2.41),
    a ray's side neighbour where only its own input covers the grid (seed
    18: 2.38 per 1e5), flagged since branch pair3 (the rule of a pair's
    median applies beside untested pixels too): 0.  A
    known gap (:data:`KNOWN_GAPS`) is expected to fail, and fails loudly
    once it passes.
    """
    scene = make_scene(n, size=200, crs=40, seed=seed)
    grid = _grid(scene.inputs)
    masks = outlier_masks(scene.inputs, grid)
    mosaic = _mosaic(scene.inputs, grid, masks)
    clean = _mosaic(scene.clean, grid)
    raw = _mosaic(scene.inputs, grid)
    covered = clean.wht > 0
    n_before, n_after = residual_groups(mosaic, raw, clean, covered)
    per_1e5 = n_after / covered.sum() * 1e5
    print(f"{n} inputs: {n_before} cosmic-ray groups above 5 sigma in the mosaic before, "
          f"{n_after} after ({per_1e5:.2f} per 1e5 pixels)")
    assert n_before > 30 * n  # the injected rays are there without outlier detection
    if n in KNOWN_GAPS:
        if per_1e5 <= limit:
            pytest.fail(f"{n} inputs now meet the target ({per_1e5:.2f} per 1e5): remove it "
                        "from KNOWN_GAPS")
        pytest.xfail(f"{n} inputs: {per_1e5:.2f} per 1e5 (known gap: {KNOWN_GAPS[n]})")
    assert per_1e5 <= limit


def coincident_rays(scene: Scene, hit: tuple[int, int], count: int,
                    seed: int = 2) -> tuple[list[OutlierInput], list[tuple[np.ndarray, np.ndarray]]]:
    """``scene``'s inputs with ``count`` pairs of rays of unrelated amplitudes (200-1000 ERR,
    5% to each side neighbour) on the same sky positions (the nearest pixel of each) in the two
    inputs ``hit``, on the sky 12 px or more from every star and 10 px from the edges; the
    inputs and the (row, column) of each input's rays."""
    rng = np.random.default_rng(seed)
    ref = scene.inputs[hit[0]]
    ny, nx = ref.sci.shape
    sx, sy = ref.wcs.world_to_pixel_values(scene.star_ra, scene.star_dec)  # type: ignore[union-attr]
    yy, xx = np.mgrid[10:ny - 10, 10:nx - 10]
    far = np.hypot(xx.ravel()[:, None] - sx[None], yy.ravel()[:, None] - sy[None]).min(axis=1) >= 12
    pick = rng.choice(np.flatnonzero(far), size=count, replace=False)
    ra, dec = ref.wcs.pixel_to_world_values(xx.ravel()[pick], yy.ravel()[pick])  # type: ignore[union-attr]
    inputs, where = list(scene.inputs), []
    for k in hit:
        inp = scene.inputs[k]
        x, y = inp.wcs.world_to_pixel_values(ra, dec)  # type: ignore[union-attr]
        cy, cx = np.round(y).astype(int), np.round(x).astype(int)
        amp = rng.uniform(200.0, 1000.0, count) * inp.err[cy, cx]
        sci = inp.sci.copy()
        sci[cy, cx] += amp
        for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            sci[cy + dy, cx + dx] += 0.05 * amp
        inputs[k] = replace(inp, sci=sci)
        where.append((cy, cx))
    return inputs, where


def test_two_rays_on_one_sky_pixel_in_two_of_three_inputs() -> None:
    """Where rays of two of three inputs hit the same sky pixel, the median there is a ray (the
    lower median of three stands one high value); the pixels flagged in two inputs there lower
    its rank in the second pass (:func:`lower_median`'s ``high``), so both rays are flagged whole
    -- centre and side neighbours (10-50 ERR) -- none of the clean input's pixels there is, and
    the mosaic keeps no residual above 5 sigma.  (Before, 2026-12-03: every one of the 25
    pairs left ray pixels unflagged, 24 residual groups.)"""
    scene = make_scene(3, size=200, stars=40, crs=0, seed=21)
    inputs, where = coincident_rays(scene, (0, 1), 25)
    grid = _grid(inputs)
    masks = outlier_masks(inputs, grid)
    for k, (cy, cx) in zip((0, 1), where, strict=True):
        for dy, dx in ((0, 0), (0, 1), (0, -1), (1, 0), (-1, 0)):
            assert masks[k][cy + dy, cx + dx].all(), (k, dy, dx, np.flatnonzero(~masks[k][cy + dy, cx + dx]))
    assert not masks[2].any()
    mosaic, clean = _mosaic(inputs, grid, masks), _mosaic(scene.clean, grid)
    raw = _mosaic(inputs, grid)
    before, after = residual_groups(mosaic, raw, clean, clean.wht > 0)
    assert before >= 20
    assert after == 0


def test_one_member_gives_empty_masks(caplog: pytest.LogCaptureFixture) -> None:
    scene = make_scene(1)
    with caplog.at_level(logging.INFO, logger="obsflow.stage3.outlier"):
        masks = outlier_masks(scene.inputs, _grid(scene.inputs))
    assert len(masks) == 1 and masks[0].shape == scene.inputs[0].sci.shape and not masks[0].any()
    assert "1 input(s), fewer than the 2 needed" in caplog.text


def test_loaders_give_the_same_masks_and_memory_maps_are_removed(tmp_path: Path) -> None:
    scene = make_scene(3, size=90, stars=15, crs=20)
    grid = _grid(scene.inputs)
    opts = OutlierOptions(tmpdir=tmp_path, section_mb=0.01)  # many row sections
    calls = []

    def loader(k: int):
        def load() -> OutlierInput:
            calls.append(k)
            return scene.inputs[k]
        return load

    direct = outlier_masks(scene.inputs, grid, opts)
    lazy = outlier_masks([loader(k) for k in range(3)], grid, opts)
    assert sorted(calls) == [0] * 4 + [1] * 4 + [2] * 4  # two loads per pass, two passes
    assert all(np.array_equal(a, b) for a, b in zip(direct, lazy, strict=True))
    assert sum(int(m.sum()) for m in direct) >= 60
    assert list(tmp_path.iterdir()) == []


def test_crf_dq_sets_outlier_and_do_not_use() -> None:
    dq = np.array([[0, int(DQ.JUMP_DET)], [int(DQ.SATURATED), 0]], np.uint32)
    mask = np.array([[True, True], [False, False]])
    out = crf_dq(dq, mask)
    assert out.dtype == np.uint32
    assert out.tolist() == [[CRF_BITS, CRF_BITS | int(DQ.JUMP_DET)], [int(DQ.SATURATED), 0]]
    assert dq[0, 0] == 0  # a copy
    with pytest.raises(OutlierError, match="outlier mask shape"):
        crf_dq(dq, mask[:1])


def test_bad_input_raises_one_clear_error() -> None:
    scene = make_scene(2, size=40, stars=3, crs=5)
    grid = _grid(scene.inputs)
    a, b = scene.inputs
    cases = [
        ([a, replace(b, err=b.err[:-1])], r"outlier input 1 \(input1\): ERR shape \(39, 40\) differs from SCI"),
        ([a, replace(b, dq=b.dq[:, :5])], r"outlier input 1 \(input1\): DQ shape"),
        ([replace(a, wcs=None), b], r"outlier input 0 \(input0\): no celestial WCS"),
        ([replace(a, sci=a.sci[0]), b], r"outlier input 0 \(input0\): SCI must be a 2-D image"),
        ([], "at least one input"),
    ]
    for inputs, message in cases:
        with pytest.raises(OutlierError, match=message) as info:
            outlier_masks(inputs, grid)
        assert isinstance(info.value, ObsflowError) and "\n" not in str(info.value)
    for bad, message in ((dict(snr=(5.0,)), "snr must be two"), (dict(min_exposures=1), "min_exposures"),
                         (dict(kernel="box"), "kernel must be one of"), (dict(maskpt=1.5), "maskpt"),
                         (dict(coincidence_radius=-1), "coincidence_radius"),
                         (dict(coincidence_contrast=0.0), "coincidence_contrast")):
        with pytest.raises(OutlierError, match=message):
            OutlierOptions(**bad)  # type: ignore[arg-type]
    nogrid = grid.deepcopy()
    nogrid.pixel_shape = None
    with pytest.raises(OutlierError, match="no pixel_shape"):
        outlier_masks([a, b], nogrid)
