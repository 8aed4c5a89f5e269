"""Measurement: residual cosmic rays of the outlier scenes over several seeds, and which are coincidences.

The scene of ``tests/stage3/test_outlier_scenes.py::test_residual_cosmic_rays_in_the_mosaic``
(``make_scene(n, size=200, crs=40, seed)``: dithered 200x200 inputs, 40
stars, 40 rays of 10-1000 ERR per input) for several seeds: residual ray
groups above 5 sigma in the mosaic against the clean mosaic (the test's
``residual_groups``) per seed and pooled, and for each residual the rays
of the inputs within 2 grid pixels of it (two or more inputs: a
coincidence, where the lower median may be a ray) and the nearest star.

    PYTHONPATH=src:. .venv/bin/python benchmarks/bench_outlier_scenes.py [--inputs 3] [--seeds 14 15 ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from obsflow.stage3.outlier import outlier_masks

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the scenes live with the tests
from tests.stage3.test_outlier_scenes import _grid, _mosaic, make_scene  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[14, 15, 16, 17, 18, 19])
    args = ap.parse_args()
    total = area = coincident = 0
    for seed in args.seeds:
        scene = make_scene(args.inputs, size=200, crs=40, seed=seed)
        grid = _grid(scene.inputs)
        masks = outlier_masks(scene.inputs, grid)
        mosaic, clean = _mosaic(scene.inputs, grid, masks), _mosaic(scene.clean, grid)
        covered = clean.wht > 0
        with np.errstate(invalid="ignore"):
            z = np.where(covered, (mosaic.sci - clean.sci) / clean.err, 0.0)
        labels, count = ndimage.label(z > 5)
        total, area = total + count, area + int(covered.sum())
        print(f"seed {seed}: {count} residual(s) in {int(covered.sum()):,} px", flush=True)
        rays = []
        for inp, (cy, cx, amp) in zip(scene.inputs, scene.crs, strict=True):
            gx, gy = grid.world_to_pixel_values(*inp.wcs.pixel_to_world_values(cx, cy))  # type: ignore[union-attr]
            rays.append((np.asarray(gx), np.asarray(gy), amp))
        sx, sy = grid.world_to_pixel_values(scene.star_ra, scene.star_dec)
        for g in range(1, count + 1):
            yy, xx = np.nonzero(labels == g)
            y, x = yy.mean(), xx.mean()
            near = [f"input {k}: {a[d < 2].round().astype(int).tolist()} ERR"
                    for k, (rx, ry, a) in enumerate(rays) if (d := np.hypot(rx - x, ry - y)).min() < 2]
            coincident += len(near) >= 2
            print(f"  grid (y {y:.0f}, x {x:.0f}), {z[labels == g].max():.1f} sigma; rays within 2 px: "
                  f"{'; '.join(near) or 'none'}; nearest star {np.hypot(sx - x, sy - y).min():.0f} px")
    print(f"pooled: {total} residual(s) in {area:,} px ({total / area * 1e5:.2f} per 1e5), "
          f"{coincident} at rays of two or more inputs")


if __name__ == "__main__":
    main()
