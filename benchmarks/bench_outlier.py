"""Benchmark: stage-3 outlier detection on N dithered full-frame inputs, time and peak memory.

N synthetic webb_like 2048 x 2048 ``_cal`` inputs (sky + stars + noise,
1% bad pixels, 2000 cosmic rays each; dithers of a few arcsec and small
rotations).  Each input is given as a *loader* (a function making it), as
the stage-3 job reads ``_cal`` files, so no more than one input is held at
a time.  Printed side by side:

* wall time of :func:`obsflow.stage3.outlier.outlier_masks` (and per input
  megapixel);
* peak traced memory (tracemalloc; numpy reports its buffers to it; the
  temporary memory maps of the single resamples are files, not traced)
  against the budget of the whole stage 3: the output arrays (SCI, ERR,
  WHT, VAR_POISSON, VAR_RNOISE, VAR_FLAT float32 and CON int32 per grid
  pixel) plus two inputs (SCI, ERR, VAR_POISSON, VAR_RNOISE float32 and DQ
  uint32 per input pixel), and the masks returned (one byte per input
  pixel);
* the fraction of injected rays flagged.

    .venv/bin/python benchmarks/bench_outlier.py [--inputs N] [--size PIX]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from obsflow.models.dq import DQ
from obsflow.models.pointing import detector_wcs
from obsflow.stage3.grid import output_grid
from obsflow.stage3.outlier import OutlierInput, outlier_masks

SCALE = 0.031


def _wcs(k: int, n: int):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7 + k)
    dx, dy = rng.uniform(-3.0, 3.0, 2)  # arcsec: up to ~100 pixels, random sub-pixel phases
    return detector_wcs(53.16, -27.79, 0.5 * k, (dx, dy, 0.0), SCALE, (n, n, 1, 1, n, n))


def make_input(k: int, n: int) -> tuple[OutlierInput, np.ndarray, np.ndarray]:
    """One synthetic _cal (MJy/sr) with its cosmic rays' rows and columns."""
    rng = np.random.default_rng(100 + k)
    sci = rng.normal(0.3, 0.02, (n, n)).astype(np.float32)
    star = np.random.default_rng(5)  # the same stars (sky positions ~ pixels here) in every input
    for _ in range(n // 8):
        x, y = star.uniform(8, n - 8, 2)
        i0, j0 = int(x), int(y)
        yy, xx = np.mgrid[j0 - 4:j0 + 5, i0 - 4:i0 + 5]
        sci[j0 - 4:j0 + 5, i0 - 4:i0 + 5] += star.uniform(1, 100) * np.exp(
            -((xx - x) ** 2 + (yy - y) ** 2) / 2.0)
    err = np.sqrt(4e-4 + np.abs(sci) * 1e-3).astype(np.float32)
    cy, cx = rng.integers(8, n - 8, 2000), rng.integers(8, n - 8, 2000)
    sci[cy, cx] += err[cy, cx] * 10 ** rng.uniform(1.0, 3.0, cy.size)
    dq = np.zeros((n, n), np.uint32)
    dq[rng.random((n, n)) < 0.01] = DQ.DO_NOT_USE
    vr = np.full((n, n), 4e-4, np.float32)
    return OutlierInput(sci, err, dq, _wcs(k, n), var_rnoise=vr, name=f"input{k}"), cy, cx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=8)
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args()
    n, size = args.inputs, args.size
    wcses = [_wcs(k, size) for k in range(n)]
    grid = output_grid(wcses, [(size, size)] * n)
    ny, nx = grid.pixel_shape[1], grid.pixel_shape[0]
    out_bytes = ny * nx * (6 * 4 + 4)
    in_bytes = size * size * (4 * 4 + 4)
    # compile the kernels outside the measurement
    small = [make_input(k, 64)[0] for k in range(2)]
    outlier_masks(small, output_grid([i.wcs for i in small], [(64, 64)] * 2))  # type: ignore[misc]

    rays: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    making = [0.0]

    def loader(k: int):  # type: ignore[no-untyped-def]
        def load() -> OutlierInput:
            t = time.perf_counter()
            inp, cy, cx = make_input(k, size)
            rays[k] = (cy, cx)
            making[0] += time.perf_counter() - t
            return inp
        return load

    tracemalloc.start()
    t0 = time.perf_counter()
    masks = outlier_masks([loader(k) for k in range(n)], grid)
    wall = time.perf_counter() - t0 - making[0]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    found = sum(int(m[rays[k]].sum()) for k, m in enumerate(masks))
    total = sum(r[0].size for r in rays.values())
    mask_bytes = n * size * size
    print(f"outlier detection: {n} inputs of {size}x{size}, grid {ny}x{nx}")
    print(f"  wall time        {wall:8.1f} s   ({wall / (n * size * size / 1e6):.3f} s per input "
          f"megapixel; making the inputs, {making[0]:.1f} s, not counted)")
    print(f"  peak traced      {peak / 2**20:8.1f} MiB")
    print(f"  budget           {(out_bytes + 2 * in_bytes) / 2**20:8.1f} MiB = output arrays "
          f"{out_bytes / 2**20:.1f} + two inputs {2 * in_bytes / 2**20:.1f}")
    print(f"  of which masks   {mask_bytes / 2**20:8.1f} MiB (returned, one byte per input pixel)")
    print(f"  rays flagged     {found}/{total} ({100.0 * found / total:.2f}%, incl. rays on stars "
          "and where one input alone covers)")


if __name__ == "__main__":
    main()
