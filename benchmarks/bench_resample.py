"""Benchmark: obsflow resample (drizzle) against the ``drizzle`` package, same inputs.

Four full-frame 2048 x 2048 webb_like inputs (dithers of a few arcsec, PA
0 / 0.5 / 3 / 8 degrees; sky + stars + noise, 1% bad pixels, ivm weights),
one output grid covering them all.  In the same run, for each kernel/pixfrac:

* pixel maps: the exact WCS transform of every pixel (what the JWST
  pipeline computes, here through astropy) vs obsflow's interpolated map,
  with its largest error against the exact map;
* kernel: ``drizzle.resample.Drizzle.add_image`` vs
  ``obsflow.stage3.resample.Resampler.add`` on the same pixel maps, weights,
  variances and grid, obsflow on one thread (and on two with ``--threads2``);
  wall and CPU time, the best of ``--repeat`` runs taking turns, for every
  kernel of issue 13 (square, turbo, gaussian at pixfrac 1.0 and 0.8; point;
  lanczos3);
* obsflow with its own positions: ``Resampler.add_mapped`` from a ``LatticeMap`` made
  from the WCS inside the timing (drizzle still gets its pixel map for free), on one thread
  and, with ``--threads2``, on two (the kernels release the GIL; wall time);
* agreement: largest relative SCI difference where WHT > 0 (of both obsflow runs), WHT,
  the variances and CON.

Peak memory of the obsflow path (tracemalloc; numpy reports its buffers to
it) is compared with the output arrays plus two inputs.

    .venv/bin/python benchmarks/bench_resample.py [--quick] [--inputs N] [--repeat N]
        [--kernels square:1.0,point:1.0] [--threads2] [--no-memory]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
import warnings

import numpy as np

from obsflow.models.dq import DQ
from obsflow.models.pointing import detector_wcs
from obsflow.stage3.grid import output_grid
from obsflow.stage3.pixmap import (
    LatticeMap,
    exact_pixel_map,
    max_map_error,
    pixel_map,
    scale_ratio,
)
from obsflow.stage3.resample import Resampler, input_weight

SCALE = 0.031
PAS = (0.0, 0.5, 3.0, 8.0)
DITHERS = ((0.0, 0.0), (2.1, 1.3), (-1.7, 3.9), (4.4, -2.2))  # arcsec
CASES = (("square", 1.0), ("square", 0.8), ("turbo", 1.0), ("turbo", 0.8), ("gaussian", 1.0),
         ("gaussian", 0.8), ("point", 1.0), ("lanczos3", 1.0))


def make_input(k: int, n: int) -> dict:
    """One synthetic _cal: MJy/sr sky + Gaussian stars + noise, its variances, DQ and WCS."""
    rng = np.random.default_rng(100 + k)
    wcs = detector_wcs(53.16, -27.79, PAS[k % 4], (DITHERS[k % 4][0], DITHERS[k % 4][1], 0.0), SCALE,
                       (n, n, 1, 1, n, n))
    sci = rng.normal(0.3, 0.02, (n, n)).astype(np.float32)
    for _ in range(n // 8):
        x, y = rng.uniform(5, n - 5, 2)
        i0, j0 = int(x), int(y)
        yy, xx = np.mgrid[j0 - 4:j0 + 5, i0 - 4:i0 + 5]
        sci[j0 - 4:j0 + 5, i0 - 4:i0 + 5] += rng.uniform(1, 100) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 2.0)
    vr = np.full((n, n), 4e-4, np.float32)
    vp = np.abs(sci) * 1e-3
    vf = (sci * 0.005) ** 2
    dq = np.zeros((n, n), np.uint32)
    dq[rng.random((n, n)) < 0.01] = DQ.DO_NOT_USE
    return dict(wcs=wcs, sci=sci, vr=vr, vp=vp.astype(np.float32), vf=vf.astype(np.float32), dq=dq)


def _timed(fn, *args):  # type: ignore[no-untyped-def]
    """(result, wall s, CPU s of this process) of fn(*args)."""
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w, time.process_time() - c


def run_drizzle(inputs, maps, weights, ratios, kernel, pixfrac, shape):  # type: ignore[no-untyped-def]
    """The inputs through drizzle.resample.Drizzle, variances as data2 (the JWST pipeline's use)."""
    from drizzle.resample import Drizzle

    dz = Drizzle(kernel=kernel, out_shape=shape, fillval="NaN", max_ctx_id=len(inputs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for item, pm, wt, r in zip(inputs, maps, weights, ratios, strict=True):
            dz.add_image(item["sci"], exptime=1.0, pixmap=pm, data2=[item["vp"], item["vr"], item["vf"]],
                         weight_map=wt, pixfrac=pixfrac, pixel_scale_ratio=r)
    return dz


def run_obsflow(inputs, maps, weights, ratios, kernel, pixfrac, grid, threads):  # type: ignore[no-untyped-def]
    """The same inputs through obsflow's Resampler."""
    rs = Resampler(grid, kernel=kernel, pixfrac=pixfrac, threads=threads)
    for item, pm, wt, r in zip(inputs, maps, weights, ratios, strict=True):
        rs.add(item["sci"], wt, pm, var_poisson=item["vp"], var_rnoise=item["vr"], var_flat=item["vf"], ratio=r)
    return rs


def run_obsflow_mapped(inputs, grid, weights, kernel, pixfrac, threads=1):  # type: ignore[no-untyped-def]
    """obsflow's own path: each input's positions computed from its WCS (the exact transform on
    the 32-pixel lattice, then interpolated a band of rows at a time inside ``add_mapped``)."""
    rs = Resampler(grid, kernel=kernel, pixfrac=pixfrac, threads=threads)
    for item, wt in zip(inputs, weights, strict=True):
        mapper = LatticeMap(item["wcs"], item["sci"].shape, grid)
        rs.add_mapped(item["sci"], wt, mapper, var_poisson=item["vp"], var_rnoise=item["vr"],
                      var_flat=item["vf"])
    return rs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="512 x 512 inputs")
    ap.add_argument("--inputs", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=1, help="runs of each side, taking turns (best kept)")
    ap.add_argument("--kernels", default=",".join(f"{k}:{p}" for k, p in CASES),
                    help="comma-separated kernel:pixfrac cases")
    ap.add_argument("--threads2", action="store_true", help="also time obsflow on 2 threads")
    ap.add_argument("--no-memory", action="store_true", help="skip the traced-memory run")
    args = ap.parse_args()
    cases = [(c.split(":")[0], float(c.split(":")[1])) for c in args.kernels.split(",")]

    n = 512 if args.quick else 2048
    inputs = [make_input(k, n) for k in range(args.inputs)]
    grid = output_grid([i["wcs"] for i in inputs], [(n, n)] * len(inputs))
    ny, nx = grid.array_shape
    print(f"{len(inputs)} inputs {n}x{n}, output grid {ny}x{nx} at {SCALE} arcsec")

    # warm-up (numba compiles once per process from its cache)
    warm = Resampler(grid, threads=2)
    small = inputs[0]["sci"][:64, :64]
    pm = pixel_map(inputs[0]["wcs"], (64, 64), grid)
    for kern in sorted({k for k, _ in cases}):
        Resampler(grid, kernel=kern).add(small, np.ones_like(small), pm)
    warm.add(small, np.ones_like(small), pm)

    # pixel maps
    t_exact = t_fast = 0.0
    maps, err = [], 0.0
    for item in inputs:
        t0 = time.perf_counter()
        exact = exact_pixel_map(item["wcs"], (n, n), grid)
        t_exact += time.perf_counter() - t0
        t0 = time.perf_counter()
        pmap = pixel_map(item["wcs"], (n, n), grid)
        t_fast += time.perf_counter() - t0
        err = max(err, float(np.max(np.hypot(*(pmap - exact).transpose(2, 0, 1)))))
        del exact
        maps.append(pmap)
    err_sampled = max(max_map_error(i["wcs"], (n, n), grid, m, sample=97) for i, m in zip(inputs, maps, strict=True))
    print(f"pixel maps: exact (astropy) {t_exact:.2f} s, interpolated {t_fast:.3f} s, "
          f"x{t_exact / t_fast:.0f}; max error {err:.2e} px (sampled check {err_sampled:.2e})")
    weights = [input_weight(i["sci"], i["dq"], i["vr"], "ivm") for i in inputs]
    ratios = [scale_ratio(m) for m in maps]

    print("| kernel | pixfrac | drizzle s (CPU) | obsflow 1 thread s (CPU) | ratio 1 thread wall (CPU) | "
          "obsflow 2 threads s | obsflow with its positions s (CPU) | ratio to that wall (CPU) | "
          "with its positions, 2 threads s | ratio to that wall | "
          "with maps: exact+drizzle / interpolated+obsflow | "
          "max rel SCI | max rel WHT | max rel VAR | CON equal |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for kernel, pixfrac in cases:
        same = (inputs, maps, weights, ratios, kernel, pixfrac)
        td = [np.inf, np.inf]
        t1 = [np.inf, np.inf]
        t2 = [np.inf, np.inf]
        tm = [np.inf, np.inf]
        tm2 = [np.inf, np.inf]
        for _ in range(args.repeat):
            dz, *t = _timed(run_drizzle, *same, (ny, nx))
            td = [min(a, b) for a, b in zip(td, t, strict=True)]
            rs1, *t = _timed(run_obsflow, *same, grid, 1)
            t1 = [min(a, b) for a, b in zip(t1, t, strict=True)]
            rsm, *t = _timed(run_obsflow_mapped, inputs, grid, weights, kernel, pixfrac)
            tm = [min(a, b) for a, b in zip(tm, t, strict=True)]
            if args.threads2:
                _, *t = _timed(run_obsflow, *same, grid, 2)
                t2 = [min(a, b) for a, b in zip(t2, t, strict=True)]
                rsm2, *t = _timed(run_obsflow_mapped, inputs, grid, weights, kernel, pixfrac, 2)
                tm2 = [min(a, b) for a, b in zip(tm2, t, strict=True)]
        i2d = rs1.finish()
        mapped = rsm.finish()
        # (2 threads: the same sums up to float32 summation order, checked against drizzle too)
        sci2 = rsm2.finish().sci if args.threads2 else mapped.sci
        covered = dz.out_wht > 0
        good = covered.copy()
        if kernel == "lanczos3":  # negative lobes: where weights nearly cancel both float32 sums lose digits
            good &= dz.out_wht > 0.1 * np.median(dz.out_wht[covered])
        rel = np.abs(i2d.sci[good].astype(np.float64) - dz.out_img[good]) / np.abs(dz.out_img[good])
        wrel = np.max(np.abs(i2d.wht[good] - dz.out_wht[good]) / np.abs(dz.out_wht[good]))
        vrel = max(float(np.max(np.abs(mine[good].astype(np.float64) - theirs[good]) / np.abs(theirs[good])))
                   for mine, theirs in zip((i2d.var_poisson, i2d.var_rnoise, i2d.var_flat), dz.out_img2,
                                           strict=True))
        two = f"{t2[0]:.2f}" if args.threads2 else "-"
        two_mapped = f"{tm2[0]:.2f} | **{td[0] / tm2[0]:.2f}**" if args.threads2 else "- | -"
        mrel = np.maximum(np.abs(mapped.sci[good].astype(np.float64) - dz.out_img[good]),
                          np.abs(sci2[good].astype(np.float64) - dz.out_img[good])) / np.abs(dz.out_img[good])
        print(f"| {kernel} | {pixfrac} | {td[0]:.2f} ({td[1]:.2f}) | {t1[0]:.2f} ({t1[1]:.2f}) | "
              f"**{td[0] / t1[0]:.2f}** ({td[1] / t1[1]:.2f}) | {two} | {tm[0]:.2f} ({tm[1]:.2f}) | "
              f"**{td[0] / tm[0]:.2f}** ({td[1] / tm[1]:.2f}) | {two_mapped} | "
              f"{(t_exact + td[0]) / (t_fast + t1[0]):.2f} | {max(rel.max(), mrel.max()):.1e} | {wrel:.1e} | {vrel:.1e} | "
              f"{np.array_equal(i2d.con, dz.out_ctx) and np.array_equal(covered, i2d.wht > 0)} |", flush=True)
        del dz, i2d, rs1, mapped, rsm, sci2
        if args.threads2:
            del rsm2

    if args.no_memory:
        return
    # peak memory of the obsflow path, inputs made and dropped one at a time
    del maps, weights
    in_bytes = sum(a.nbytes for a in (inputs[0]["sci"], inputs[0]["vr"], inputs[0]["vp"], inputs[0]["vf"],
                                      inputs[0]["dq"]))
    wcses = [i["wcs"] for i in inputs]
    del inputs
    tracemalloc.start()
    rs = Resampler(grid, kernel="square", pixfrac=0.8)
    for k, w in enumerate(wcses):
        item = make_input(k, n)
        pm = pixel_map(w, (n, n), grid)
        rs.add(item["sci"], input_weight(item["sci"], item["dq"], item["vr"]), pm,
               var_poisson=item["vp"], var_rnoise=item["vr"], var_flat=item["vf"])
        del item, pm
    i2d = rs.finish()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out_bytes = ny * nx * 4 * 7  # SCI ERR WHT CON VAR_POISSON VAR_RNOISE VAR_FLAT
    print(f"peak traced memory {peak / 2**20:.0f} MiB; output arrays {out_bytes / 2**20:.0f} MiB + two inputs "
          f"(5 arrays each) {2 * in_bytes / 2**20:.0f} MiB = {(out_bytes + 2 * in_bytes) / 2**20:.0f} MiB "
          f"(an input's pixel map: {n * n * 16 / 2**20:.0f} MiB)")
    del i2d


if __name__ == "__main__":
    main()
