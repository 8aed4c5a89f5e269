"""Stage-3 resample (drizzle): against the drizzle package, flux conservation, grids, pixel maps."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.wcs import WCS
from drizzle.resample import Drizzle

from obsflow.exceptions import ResampleError
from obsflow.models.dq import DQ
from obsflow.models.pointing import detector_wcs
from obsflow.profiles import load_profile
from obsflow.stage3.grid import footprint, output_grid, pixel_scale_arcsec
from obsflow.stage3.pixmap import (
    LatticeMap,
    exact_pixel_map,
    fill_rows,
    max_map_error,
    pixel_map,
    scale_ratio,
)
from obsflow.stage3.product import _read_if_mapped
from obsflow.stage3.resample import TINY_WHT, Resampler, input_weight, spill_planes

SCALE = 0.031  # arcsec, the webb-like profile's


def _wcs(ny: int, nx: int, ra: float = 150.0, dec: float = 2.0, pa: float = 0.0,
         scale: float = SCALE, dx_arcsec: float = 0.0, dy_arcsec: float = 0.0) -> WCS:
    return detector_wcs(ra, dec, pa, (dx_arcsec, dy_arcsec, 0.0), scale, (nx, ny, 1, 1, nx, ny))


def _inputs(n: int, ny: int = 60, nx: int = 72, seed: int = 3) -> list[dict]:
    """Dithered, rotated inputs with positive sky + noise values (no near-zero SCI)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        w = _wcs(ny, nx, pa=7.0 * k, dx_arcsec=0.37 * k, dy_arcsec=-0.23 * k)
        sci = (5.0 + rng.random((ny, nx))).astype(np.float32)
        vr = (0.01 + 0.01 * rng.random((ny, nx))).astype(np.float32)
        vp = (0.02 * rng.random((ny, nx))).astype(np.float32)
        vf = (0.001 * rng.random((ny, nx))).astype(np.float32)
        dq = np.zeros((ny, nx), np.uint32)
        dq[rng.random((ny, nx)) < 0.02] = DQ.DO_NOT_USE
        out.append(dict(wcs=w, sci=sci, vr=vr, vp=vp, vf=vf, dq=dq))
    return out


def _both(inputs: list[dict], kernel: str, pixfrac: float, grid: WCS) -> tuple:
    """The same inputs, pixel maps, weights, kernel and grid through drizzle and obsflow."""
    nx, ny = grid.pixel_shape
    rs = Resampler(grid, kernel=kernel, pixfrac=pixfrac)
    dz = Drizzle(kernel=kernel, out_shape=(ny, nx), fillval="NaN", max_ctx_id=len(inputs))
    for item in inputs:
        pmap = pixel_map(item["wcs"], item["sci"].shape, grid)
        ratio = scale_ratio(pmap)
        wt = input_weight(item["sci"], item["dq"], item["vr"], "ivm")
        rs.add(item["sci"], wt, pmap, var_poisson=item["vp"], var_rnoise=item["vr"],
               var_flat=item["vf"], ratio=ratio)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # drizzle warns about gaussian/lanczos flux conservation
            dz.add_image(item["sci"], exptime=1.0, pixmap=pmap, data2=[item["vp"], item["vr"], item["vf"]],
                         weight_map=wt, pixfrac=pixfrac, pixel_scale_ratio=ratio)
    return rs.finish(), dz


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b) / np.abs(b)))


@pytest.mark.parametrize("scale_factor", [0.08, 0.45, 2.6])
def test_square_kernel_matches_drizzle_at_any_scale_ratio(scale_factor: float) -> None:
    """Output pixels much finer (an input pixel spread over boxes wider than the kernel's 8-pixel
    edge-by-edge box: the per-pixel path), a few times finer and coarser than the input's."""
    inputs = _inputs(2, ny=14, nx=18)
    grid = output_grid([i["wcs"] for i in inputs], [i["sci"].shape for i in inputs],
                       pixel_scale=SCALE * scale_factor, rotation=-31.0)
    for pixfrac in (1.0, 0.6):
        i2d, dz = _both(inputs, "square", pixfrac, grid)
        good = dz.out_wht > 0
        assert np.array_equal(good, i2d.wht > 0) and good.sum() > 50
        assert _rel(i2d.sci[good], dz.out_img[good]) < 1e-5
        assert _rel(i2d.wht[good], dz.out_wht[good]) < 1e-5
        assert np.array_equal(i2d.con, dz.out_ctx)


@pytest.mark.parametrize(("scale_factor", "pixfrac"), [(0.45, 1.0), (1.0, 0.8), (3.0, 1.0)])
def test_gaussian_kernel_matches_drizzle_on_either_path(scale_factor: float, pixfrac: float) -> None:
    """Both ways the kernel evaluates its exponentials: chains of products (output pixels 0.45
    of an input's: eight output columns an input pixel, efac x (span + 1)^2 ~ 45; pixfrac 0.8:
    ~ 160) and one exponential each where a chain is not used (output pixels 3 input pixels
    wide: ~ 400, the bound is 300)."""
    inputs = _inputs(2, ny=24, nx=30)
    grid = output_grid([i["wcs"] for i in inputs], [i["sci"].shape for i in inputs],
                       pixel_scale=SCALE * scale_factor, rotation=-31.0)
    i2d, dz = _both(inputs, "gaussian", pixfrac, grid)
    good = dz.out_wht > 0
    assert np.array_equal(good, i2d.wht > 0) and good.sum() > 100
    assert _rel(i2d.sci[good], dz.out_img[good]) < 1e-5
    assert _rel(i2d.wht[good], dz.out_wht[good]) < 1e-5
    for mine, theirs in zip((i2d.var_poisson, i2d.var_rnoise, i2d.var_flat), dz.out_img2, strict=True):
        assert _rel(mine[good], theirs[good]) < 1e-5
    assert np.array_equal(i2d.con, dz.out_ctx)


def test_a_narrow_gaussians_faint_tail_keeps_its_variances_or_says_nan() -> None:
    """Gaussian at pixfrac 0.4 and 0.55: the coverage's edge holds pixels of weight 1e-37 to
    1e-18 (the kernel's far tail).  Their variances match drizzle's (which keeps them as
    running means) wherever they are given; below TINY_WHT the squared weights underflowed
    float32, and the variances and ERR are NaN (never a variance rounded to 0 or a 0/0), SCI
    still drizzle's; a variance whose sum of w² var is subnormal is NaN too."""
    inputs = _inputs(3)
    grid = output_grid([i["wcs"] for i in inputs], [i["sci"].shape for i in inputs],
                       pixel_scale=SCALE * 0.9, rotation=20.0)
    for pixfrac in (0.4, 0.55):
        i2d, dz = _both(inputs, "gaussian", pixfrac, grid)
        covered = dz.out_wht > 0
        assert np.array_equal(covered, i2d.wht > 0)
        assert _rel(i2d.sci[covered], dz.out_img[covered]) < 1e-5
        faint = covered & (i2d.wht < TINY_WHT)
        for mine, theirs in zip((i2d.var_poisson, i2d.var_rnoise, i2d.var_flat), dz.out_img2,
                                strict=True):
            given = covered & np.isfinite(mine)
            assert not (faint & given).any()
            assert (i2d.wht[given] < 1e-12).sum() > 10  # the far tail itself is checked
            assert given.sum() > 0.98 * covered.sum()
            assert _rel(mine[given], theirs[given]) < 1e-5
        assert np.isnan(i2d.err[faint]).all()
        assert faint.sum() > (10 if pixfrac == 0.4 else -1)


@pytest.mark.parametrize(("kernel", "pixfrac"), [("square", 1.0), ("square", 0.8), ("square", 0.5),
                                                 ("point", 1.0), ("turbo", 1.0), ("turbo", 0.7),
                                                 ("gaussian", 1.0), ("lanczos3", 1.0)])
def test_matches_drizzle_package(kernel: str, pixfrac: float) -> None:
    inputs = _inputs(3)
    grid = output_grid([i["wcs"] for i in inputs], [i["sci"].shape for i in inputs],
                       pixel_scale=SCALE * 0.9, rotation=20.0)
    i2d, dz = _both(inputs, kernel, pixfrac, grid)
    covered = dz.out_wht > 0
    assert np.array_equal(covered, i2d.wht > 0)
    assert covered.sum() > 1000
    good = covered.copy()
    if kernel == "lanczos3":
        # negative lobes: where the weights nearly cancel, both float32 sums lose digits
        good &= dz.out_wht > 0.1 * np.median(dz.out_wht[good])
    assert _rel(i2d.sci[good], dz.out_img[good]) < 1e-5
    assert _rel(i2d.wht[good], dz.out_wht[good]) < 1e-5
    for mine, theirs in zip((i2d.var_poisson, i2d.var_rnoise, i2d.var_flat), dz.out_img2, strict=True):
        assert _rel(mine[good], theirs[good]) < 1e-5
    assert np.array_equal(i2d.con, dz.out_ctx)
    assert np.all(np.isnan(i2d.sci[~covered]))
    assert set(np.unique(i2d.con)) >= {1, 2, 4, 3, 7}  # every input contributed, overlaps too
    np.testing.assert_allclose(i2d.err[good] ** 2, (i2d.var_poisson + i2d.var_rnoise + i2d.var_flat)[good],
                               rtol=1e-5)
    assert np.all(np.isnan(i2d.err[~covered]))


def test_context_has_a_plane_per_32_inputs() -> None:
    inputs = _inputs(34, ny=12, nx=14)
    grid = output_grid([i["wcs"] for i in inputs], [i["sci"].shape for i in inputs])
    i2d, dz = _both(inputs, "square", 1.0, grid)
    assert i2d.con.shape == (2,) + grid.array_shape
    assert np.array_equal(i2d.con, dz.out_ctx)
    assert np.any(i2d.con[1] == 1) and np.any(i2d.con[1] == 2) and np.any(i2d.con[0] == -(1 << 31))  # inputs 32, 33, 31


def _star_image(wcs: WCS, ny: int, nx: int, ra: float, dec: float, flux: float, sigma_pix: float) -> np.ndarray:
    """A Gaussian star of total ``flux`` (SB x pixel area units) centred at (ra, dec), analytic pixel integrals."""
    from scipy.special import erf

    x0, y0 = wcs.world_to_pixel_values(ra, dec)
    xe = np.arange(nx + 1) - 0.5
    ye = np.arange(ny + 1) - 0.5
    fx = np.diff(0.5 * (1 + erf((xe - x0) / (np.sqrt(2) * sigma_pix))))
    fy = np.diff(0.5 * (1 + erf((ye - y0) / (np.sqrt(2) * sigma_pix))))
    return (flux * np.outer(fy, fx)).astype(np.float32)


@pytest.mark.parametrize(("kernel", "pixfrac"), [("square", 1.0), ("square", 0.7), ("turbo", 1.0)])
def test_point_source_flux_conserved(kernel: str, pixfrac: float) -> None:
    """Sum of SB x pixel solid angle over a star: _cal vs _i2d, on a rotated, shifted, rescaled grid."""
    ny, nx = 80, 90
    ra, dec = 150.0, 2.0
    wcses = [_wcs(ny, nx, pa=11.0 * k, dx_arcsec=0.41 * k, dy_arcsec=0.17 * k) for k in range(2)]
    sr_in = (SCALE / 206264.806) ** 2
    flux = 1.0  # MJy/sr x sr_in units
    grid = output_grid(wcses, [(ny, nx)] * 2, pixel_scale=SCALE * 0.77, rotation=33.0)
    sr_out = (pixel_scale_arcsec(grid) / 206264.806) ** 2
    rs = Resampler(grid, kernel=kernel, pixfrac=pixfrac)
    totals_in = []
    for w in wcses:
        sci = _star_image(w, ny, nx, ra, dec, flux, sigma_pix=1.3) / np.float32(sr_in)  # SB
        totals_in.append(float(sci.sum(dtype=np.float64)) * sr_in)
        rs.add(sci, input_weight(sci, None, None, "exptime", exptime=100.0), pixel_map(w, (ny, nx), grid))
    i2d = rs.finish()
    ox, oy = grid.world_to_pixel_values(ra, dec)
    yy, xx = np.mgrid[0:grid.array_shape[0], 0:grid.array_shape[1]]
    inside = np.hypot(xx - ox, yy - oy) < 15 / 0.77
    assert np.all(i2d.wht[inside] > 0)
    total_out = float(np.nansum(i2d.sci[inside], dtype=np.float64)) * sr_out
    assert np.mean(totals_in) == pytest.approx(flux, rel=1e-3)
    assert total_out == pytest.approx(np.mean(totals_in), rel=0.005)


def test_ivm_med_weights_keep_an_undersampled_stars_flux_where_ivm_loses_it() -> None:
    """A star's core has a larger VAR_RNOISE (fewer groups fitted before saturation): per-pixel
    inverse-variance weights then favour whichever input sampled the core off its peak."""
    ny, nx = 60, 60
    ra, dec = 150.0, 2.0
    wcses = [_wcs(ny, nx, pa=0.0, dx_arcsec=SCALE * dx, dy_arcsec=SCALE * dy)
             for dx, dy in ((0.0, 0.0), (0.5, 0.5), (0.25, 0.75), (0.75, 0.25))]
    sr_in = (SCALE / 206264.806) ** 2
    grid = output_grid(wcses, [(ny, nx)] * 4)
    totals: dict[str, float] = {}
    for kind in ("ivm", "ivm-med"):
        rs = Resampler(grid)
        for w in wcses:
            sci = _star_image(w, ny, nx, ra, dec, 1.0, sigma_pix=0.45) / np.float32(sr_in)
            vr = np.where(sci > 0.05 * sci.max(), 4e-2, 1e-2).astype(np.float32)
            rs.add(sci, input_weight(sci, None, vr, kind), pixel_map(w, (ny, nx), grid))
        i2d = rs.finish()
        totals[kind] = float(np.nansum(i2d.sci, dtype=np.float64)) * sr_in
    assert totals["ivm-med"] == pytest.approx(1.0, rel=0.005)
    assert abs(totals["ivm"] - 1.0) > 2 * abs(totals["ivm-med"] - 1.0)


@pytest.mark.parametrize("kernel", ["square", "turbo", "point", "gaussian"])
def test_constant_surface_brightness_stays_constant(kernel: str) -> None:
    inputs = _inputs(2, ny=50, nx=50)
    grid = output_grid([i["wcs"] for i in inputs], [(50, 50)] * 2, pixel_scale=SCALE * 1.3, rotation=-25.0)
    rs = Resampler(grid, kernel=kernel, pixfrac=0.8)
    for item in inputs:
        sci = np.full((50, 50), 3.25, np.float32)
        rs.add(sci, input_weight(sci, item["dq"], item["vr"]), pixel_map(item["wcs"], (50, 50), grid))
    i2d = rs.finish()
    good = i2d.wht > 0
    assert good.mean() > 0.3
    np.testing.assert_allclose(i2d.sci[good], 3.25, rtol=1e-5)


def test_bad_pixels_are_excluded() -> None:
    (item,) = _inputs(1, ny=40, nx=40)
    grid = output_grid([item["wcs"]], [(40, 40)])
    pmap = pixel_map(item["wcs"], (40, 40), grid)
    dq = np.zeros((40, 40), np.uint32)
    dq[10:13, 20] = DQ.DO_NOT_USE
    dq[30, 5] = DQ.NON_SCIENCE
    dq[25, 25] = DQ.SATURATED  # not a bad bit by default: used
    sci = item["sci"].copy()
    sci[25, 25] = 1e6
    clean = Resampler(grid)
    dq_clean = dq.copy()
    dq_clean[5, 5] = DQ.DO_NOT_USE
    clean.add(sci, input_weight(sci, dq_clean, item["vr"]), pmap)
    sci[dq != 0] = 1e6
    sci[25, 25] = 1e6
    sci[5, 5] = np.nan  # a non-finite value gets no weight either
    dirty = Resampler(grid)
    dirty.add(sci, input_weight(sci, dq, item["vr"]), pmap)
    a, b = clean.finish(), dirty.finish()
    assert np.array_equal(a.sci, b.sci, equal_nan=True) and np.array_equal(a.wht, b.wht)
    assert np.nanmax(b.sci) > 1e5  # the SATURATED pixel is in
    full = Resampler(grid)
    full.add(item["sci"], input_weight(item["sci"], None, item["vr"]), pmap)
    c = full.finish()
    for j, i in ((11, 20), (30, 5), (5, 5)):  # the excluded pixels' weight is missing under them
        ox, oy = pmap[j, i]
        assert b.wht[round(oy), round(ox)] < 0.9 * c.wht[round(oy), round(ox)]
    hole = c.wht - b.wht > 0
    assert 3 < hole.sum() <= 5 * 9  # five excluded pixels, each touching at most 9 output pixels


def test_exptime_and_ivm_weights() -> None:
    sci = np.ones((4, 4), np.float32)
    vr = np.full((4, 4), 0.25, np.float32)
    vr[0, 0] = 0.0
    dq = np.zeros((4, 4), np.uint32)
    dq[1, 1] = DQ.DO_NOT_USE | DQ.HOT
    w = input_weight(sci, dq, vr, "ivm")
    assert w[2, 2] == 4.0 and w[0, 0] == 0.0 and w[1, 1] == 0.0
    vr[3, 3] = 1.0  # a star's core: larger read-noise variance
    w = input_weight(sci, dq, vr, "ivm-med")
    assert w[2, 2] == w[3, 3] == 4.0 and w[0, 0] == 0.0 and w[1, 1] == 0.0  # median of good pixels
    w = input_weight(sci, dq, None, "exptime", exptime=42.5)
    assert w[2, 2] == 42.5 and w[1, 1] == 0.0 and w.dtype == np.float32
    # a reference pixel holds no sky (~0 after the reference-pixel correction): kept out
    dq[0, 3] = DQ.REFERENCE_PIXEL
    assert input_weight(sci, dq, None, "exptime", exptime=42.5)[0, 3] == 0.0
    with pytest.raises(ResampleError, match="VAR_RNOISE"):
        input_weight(sci, dq, None, "ivm")
    with pytest.raises(ResampleError, match="weight type"):
        input_weight(sci, dq, vr, "median")


def test_bad_arguments_raise_one_clear_error() -> None:
    grid = output_grid([_wcs(10, 10)], [(10, 10)])
    with pytest.raises(ResampleError, match="kernel"):
        Resampler(grid, kernel="bilinear")
    with pytest.raises(ResampleError, match="pixfrac"):
        Resampler(grid, pixfrac=1.5)
    rs = Resampler(grid)
    with pytest.raises(ResampleError, match="pixel map"):
        rs.add(np.ones((10, 10), np.float32), np.ones((10, 10), np.float32), np.zeros((10, 9, 2)))
    rs.finish()
    with pytest.raises(ResampleError, match="finished"):
        rs.finish()


def test_default_grid_covers_every_input_pixel() -> None:
    wcses = [_wcs(64, 80, pa=30.0 * k, dx_arcsec=1.1 * k) for k in range(3)]
    grid = output_grid(wcses, [(64, 80)] * 3)
    assert pixel_scale_arcsec(grid) == pytest.approx(SCALE, rel=1e-9)
    ny, nx = grid.array_shape
    for w in wcses:
        x, y = grid.world_to_pixel_values(*footprint(w, (64, 80)).T)
        assert x.min() >= -0.5 and y.min() >= -0.5 and x.max() <= nx - 0.5 and y.max() <= ny - 0.5
    # tight: one pixel less in either axis would cut an input
    assert x.max() > nx - 3 or max(grid.world_to_pixel_values(*footprint(wcses[0], (64, 80)).T)[0]) > nx - 3


def test_user_grid_scale_rotation_crval_shape() -> None:
    w = _wcs(32, 32)
    grid = output_grid([w], [(32, 32)], pixel_scale=0.05, rotation=90.0, crval=(150.001, 2.002), shape=(40, 50))
    assert grid.array_shape == (40, 50)
    assert pixel_scale_arcsec(grid) == pytest.approx(0.05)
    ra, dec = grid.pixel_to_world_values(24.5, 19.5)
    assert (float(ra), float(dec)) == pytest.approx((150.001, 2.002), abs=1e-9)
    # rotation 90: output +y points east (RA increases along +y)
    r0, _ = grid.pixel_to_world_values(24.5, 19.5)
    r1, _ = grid.pixel_to_world_values(24.5, 29.5)
    assert float(r1) > float(r0)
    with pytest.raises(ResampleError, match="pixel_scale"):
        output_grid([w], [(32, 32)], pixel_scale=0.0)


@pytest.mark.parametrize("profile", ["webb_like", "smallsat"])
def test_interpolated_pixel_map_matches_exact_transform(profile: str) -> None:
    """Full-frame detectors of both profiles, two pointings and a rotated, rescaled grid."""
    inst = load_profile(profile).instruments[0]
    det = inst.detectors[0]
    frame = (det.nx, det.ny, 1, 1, det.nx, det.ny)
    scale = inst.pixel_scale_arcsec
    w1 = detector_wcs(53.1, -27.8, 10.0, (det.v2_arcsec, det.v3_arcsec, det.rotation_deg), scale, frame)
    w2 = detector_wcs(53.1 + 2e-4, -27.8 - 1e-4, 14.0, (det.v2_arcsec, det.v3_arcsec, det.rotation_deg),
                      scale, frame)
    grid = output_grid([w1, w2], [(det.ny, det.nx)] * 2, pixel_scale=scale * 0.6, rotation=45.0)
    pmap = pixel_map(w2, (det.ny, det.nx), grid)
    assert pmap.shape == (det.ny, det.nx, 2)
    err = max_map_error(w2, (det.ny, det.nx), grid, pmap, sample=31)
    assert err < 1e-3
    assert scale_ratio(pmap) == pytest.approx(0.6, rel=1e-3)


def test_pixel_map_equals_exact_map_on_small_image() -> None:
    w = _wcs(50, 70, pa=5.0)
    grid = output_grid([w], [(50, 70)], pixel_scale=SCALE * 1.7, rotation=12.0)
    exact = exact_pixel_map(w, (50, 70), grid)
    fast = pixel_map(w, (50, 70), grid, step=16)
    assert np.max(np.abs(exact - fast)) < 1e-6
    assert np.array_equal(pixel_map(w, (50, 70), grid, step=1), exact)


@pytest.mark.parametrize("kernel", ["square", "lanczos3"])
def test_threads_give_the_same_mosaic(kernel: str) -> None:
    inputs = _inputs(2, ny=300, nx=120)
    grid = output_grid([i["wcs"] for i in inputs], [(300, 120)] * 2, pixel_scale=SCALE * 0.8, rotation=37.0)
    out = []
    # add_mapped with one band of 300 rows cut into thread bands inside it, and with five
    # bands of 60 rows that themselves run two at a time (even ones, then odd ones)
    for threads, band_rows in ((1, 0), (2, 0), (2, 300), (2, 60)):
        rs = Resampler(grid, kernel=kernel, threads=threads)
        for item in inputs:
            wt = input_weight(item["sci"], item["dq"], item["vr"])
            if band_rows:  # the map made from the lattice inside each thread's band
                rs.add_mapped(item["sci"], wt, LatticeMap(item["wcs"], (300, 120), grid),
                              var_rnoise=item["vr"], band_rows=band_rows)
            else:
                rs.add(item["sci"], wt, pixel_map(item["wcs"], (300, 120), grid),
                       var_rnoise=item["vr"])
        out.append(rs.finish())
    one = out[0]
    good = one.wht > 0.1 * np.median(one.wht[one.wht > 0])
    for two in out[1:]:
        assert np.array_equal(one.con, two.con)
        np.testing.assert_allclose(two.sci[good], one.sci[good], rtol=1e-5)
        np.testing.assert_allclose(two.wht[good], one.wht[good], rtol=1e-5)


@pytest.mark.parametrize(("kernel", "pixfrac"), [("square", 1.0), ("square", 0.6), ("point", 1.0),
                                                 ("turbo", 0.8), ("gaussian", 0.8),
                                                 ("lanczos3", 1.0)])
def test_banded_pixel_maps_give_the_same_sums_bit_for_bit(kernel: str, pixfrac: float) -> None:
    """add_mapped (the map made from the lattice CHUNK = 16 rows at a time inside bands of 17
    or 256 input rows, never whole) == add with the whole map (inputs of 150 rows: with the
    square kernel's corner lines taken at band-relative rows, j + 0.4 rounded differently and
    a few sums differed in their last bit)."""
    inputs = _inputs(3, ny=150)
    grid = output_grid([i["wcs"] for i in inputs], [i["sci"].shape for i in inputs])
    whole = Resampler(grid, kernel, pixfrac)
    banded = {rows: Resampler(grid, kernel, pixfrac) for rows in (17, 256)}
    for item in inputs:
        wt = input_weight(item["sci"], item["dq"], item["vr"], "ivm")
        whole.add(item["sci"], wt, pixel_map(item["wcs"], item["sci"].shape, grid),
                  var_poisson=item["vp"], var_rnoise=item["vr"])
        for rows, rs in banded.items():
            rs.add_mapped(item["sci"], wt, LatticeMap(item["wcs"], item["sci"].shape, grid),
                          var_poisson=item["vp"], var_rnoise=item["vr"], band_rows=rows)
    a = whole.finish()
    for b in (rs.finish() for rs in banded.values()):
        for name in ("sci", "wht", "var_poisson", "var_rnoise", "var_flat", "err", "con"):
            assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name
    assert np.isfinite(a.sci).sum() > 0.5 * a.sci.size


def test_lattice_map_bands_and_shift_equal_the_whole_map() -> None:
    w = _wcs(61, 70, pa=20.0)
    grid = output_grid([w], [(61, 70)], rotation=3.0)
    whole = pixel_map(w, (61, 70), grid)
    mapper = LatticeMap(w, (61, 70), grid)
    assert np.array_equal(np.concatenate([mapper.rows(0, 25), mapper.rows(25, 61)]), whole)
    shifted = whole.copy()
    shifted[..., 0] -= 5
    shifted[..., 1] -= 7
    assert np.array_equal(mapper.shifted(5, 7).rows(10, 40), shifted[10:40])
    buf = np.full((40, 70, 2), np.nan)  # what the kernels' lattice path fills: rows into a buffer
    fill_rows(mapper.shifted(5, 7).lattice, 23, 39, buf)
    assert np.array_equal(buf[:16], shifted[23:39]) and np.isnan(buf[16:]).all()
    assert mapper.scale_ratio() == scale_ratio(whole)
    assert mapper.bounds() == (whole[..., 0].min(), whole[..., 0].max(),
                               whole[..., 1].min(), whole[..., 1].max())
    with pytest.raises(ResampleError, match="outside"):
        mapper.rows(50, 62)
    with pytest.raises(ResampleError, match="band_rows"):
        Resampler(grid).add_mapped(np.zeros((61, 70), np.float32),
                                   np.ones((61, 70), np.float32), mapper, band_rows=0)


def _clip_area(poly: list[tuple[float, float]], x0: float, x1: float, y0: float, y1: float) -> float:
    """Area of a polygon inside the rectangle [x0, x1] x [y0, y1]: Sutherland-Hodgman clipping
    against its four sides, then the shoelace formula (|area|; written here as the truth)."""
    def clip(pts: list[tuple[float, float]], inside, cut) -> list[tuple[float, float]]:  # type: ignore[no-untyped-def]
        out: list[tuple[float, float]] = []
        for k, cur in enumerate(pts):
            prev = pts[k - 1]
            if inside(cur):
                if not inside(prev):
                    out.append(cut(prev, cur))
                out.append(cur)
            elif inside(prev):
                out.append(cut(prev, cur))
        return out

    def at_x(x: float):  # type: ignore[no-untyped-def]
        return lambda a, b: (x, a[1] + (b[1] - a[1]) * (x - a[0]) / (b[0] - a[0]))

    def at_y(y: float):  # type: ignore[no-untyped-def]
        return lambda a, b: (a[0] + (b[0] - a[0]) * (y - a[1]) / (b[1] - a[1]), y)

    pts = list(poly)
    for inside, cut in ((lambda p: p[0] >= x0, at_x(x0)), (lambda p: p[0] <= x1, at_x(x1)),
                        (lambda p: p[1] >= y0, at_y(y0)), (lambda p: p[1] <= y1, at_y(y1))):
        pts = clip(pts, inside, cut)
        if not pts:
            return 0.0
    return abs(0.5 * sum(a[0] * b[1] - a[1] * b[0] for a, b in zip(pts, pts[1:] + pts[:1], strict=True)))


def test_square_kernel_2x2_cells_equal_clipped_areas() -> None:
    """The square kernel's overlaps with a 2x2 box of output pixels (the shoelace sums about the
    box centre) against polygon clipping, for quadrilaterals in every configuration: one corner
    per cell, split by one line, inside one cell, corners and edges on the lines, mirrored."""
    from obsflow.stage3.kernels import _cells2

    rng = np.random.default_rng(5)
    quads = []
    for _ in range(400):  # distorted, rotated squares of side 0.3-1.0 (corners within 0.78 side)
        side = rng.uniform(0.3, 1.0)
        ang = rng.uniform(0, 2 * np.pi)
        c = rng.uniform(-1 + 0.8 * side, 1 - 0.8 * side, 2)
        base = np.array([[-1, 1], [1, 1], [1, -1], [-1, -1]]) * side / 2  # clockwise
        base = base + rng.uniform(-0.05, 0.05, (4, 2)) * side
        rot = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        quads.append(base @ rot.T + c)
    quads.append(np.array([[-0.4, 0.5], [0.5, 0.5], [0.5, -0.4], [-0.4, -0.4]]))  # one per cell
    quads.append(np.array([[0.0, 0.5], [0.5, 0.5], [0.5, -0.4], [0.0, -0.4]]))  # edge on u = 0
    quads.append(np.array([[-0.4, 0.5], [0.5, 0.0], [0.0, -0.4], [-0.5, 0.1]]))  # corners on axes
    quads.append(np.array([[-0.5, 0.5], [0.5, -0.5], [0.4, -0.6], [-0.6, 0.4]]))  # through centre
    quads.append(np.array([[0.1, 0.9], [0.9, 0.9], [0.9, 0.1], [0.1, 0.1]]))  # inside one cell
    cells = np.empty(9)
    configurations = set()
    for q in quads:
        for corners in (q, q[::-1]):  # clockwise (positive areas) and mirrored (negative)
            _cells2(cells, *corners.ravel())
            sign = 1.0 if corners is q else -1.0
            for col, row in ((0, 0), (1, 0), (0, 1), (1, 1)):
                truth = _clip_area([tuple(p) for p in corners], col - 1.0, col, row - 1.0, row)
                assert abs(sign * cells[col + 3 * row] - truth) < 1e-13, (corners, col, row)
        configurations.add(sum(_clip_area([tuple(p) for p in q], c - 1.0, c, r - 1.0, r) > 0
                               for c in (0, 1) for r in (0, 1)))
    assert configurations == {1, 2, 3, 4}  # quadrilaterals over 1, 2, 3 and 4 cells all tested


def test_spilled_planes_equal_the_resampled_ones_and_leave_the_accumulator(tmp_path) -> None:
    """Before the catalog, stage 3 writes the variances and CON to disk and maps them back:
    the same values bit for bit; SCI and WHT own their memory (the accumulator block they
    were views of can be freed), the spilled planes are read-only memory maps."""
    inputs = _inputs(2)
    grid = output_grid([i["wcs"] for i in inputs], [i["sci"].shape for i in inputs],
                       pixel_scale=SCALE, rotation=10.0)
    i2d, _ = _both(inputs, "square", 0.8, grid)
    out = spill_planes(i2d, tmp_path)
    for name in ("sci", "err", "wht", "con", "var_poisson", "var_rnoise", "var_flat"):
        np.testing.assert_array_equal(getattr(out, name), getattr(i2d, name))
    for name in ("con", "var_poisson", "var_rnoise", "var_flat"):
        plane = getattr(out, name)
        assert isinstance(plane, np.memmap) and not plane.flags.writeable
        assert (tmp_path / f"{name}.npy").exists()
        read = _read_if_mapped(plane)  # (what the _i2d writer takes: a plain read, not the map)
        assert not isinstance(read, np.memmap) and read.flags.writeable
        np.testing.assert_array_equal(read, getattr(i2d, name))
    assert not np.shares_memory(out.sci, i2d.sci) and not np.shares_memory(out.wht, i2d.wht)
    assert out.sci.flags.c_contiguous and out.wht.flags.c_contiguous
    assert out.err is i2d.err and out.wcs is i2d.wcs and out.n_inputs == i2d.n_inputs
