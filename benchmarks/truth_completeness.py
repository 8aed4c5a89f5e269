"""Completeness and spurious detections over many simulated fields, before and after a change.

Accuracy, not speed: the issue's completeness target (90% of the true
point-like sources with S/N >= 10 found, fewer than 1% spurious detections)
counted as ``tests/stage3/test_catalog_truth.py`` counts it
(:func:`~tests.stage3.test_catalog_truth.completeness`), on the stage-3 truth
field over seeds (seed 11 with all its exposures, as the test's shared field;
the others with their first pointings, as the test's flux-pull fields).  Each
mosaic's catalog is made twice, with the default :class:`CatalogOptions` and
with ``--before`` (options as ``name=value``, e.g. ``deblend_npixels=3``),
point sources placed from the inputs both times, as the stage-3 job does.

Printed per seed and pooled: the target's size, how many found before and
after, detections, spurious detections, duplicates (detections beyond the
first whose nearest true source within 2 FWHM is the same), and for the
sources still missed after, how many lie in the segment of a brighter true
neighbour within 4 FWHM (a blend not deblended).

Usage: ``PYTHONPATH=src:. .venv/bin/python benchmarks/truth_completeness.py
--profile smallsat --seeds 11-16 --before deblend_npixels=3`` (figures in
docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from astropy.table import Table
from scipy.spatial import cKDTree

from obsflow.stage3.catalog import CatalogOptions, point_positions_from_inputs, source_catalog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the field lives with the tests
from tests.stage3 import test_catalog_truth as truth  # noqa: E402
from tests.stage3.conftest import FIELDS, FIRST_POINTINGS, Field, _make_field  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from truth_flux_pulls import _seeds  # noqa: E402  (the same --seeds syntax)


def _catalog(field: Field, m: truth.Mosaic, options: CatalogOptions) -> tuple[Table, np.ndarray]:
    """``m``'s catalog made with ``options``, point sources placed from the inputs, and its
    segmentation image."""
    result = source_catalog(np.ascontiguousarray(m.i2d.sci), np.ascontiguousarray(m.i2d.err),
                            np.ascontiguousarray(m.i2d.wht), m.grid, m.psf, options)
    point_positions_from_inputs(result.table, m.grid,
                                ((c.sci, c.dq, c.wcs, field.fwhm(c)) for c in m.aligned))
    return result.table, result.segm


def _duplicates(m: truth.Mosaic, t: Table) -> int:
    near = max(2.0, 2 * m.psf.blurred_fwhm_pix)
    d, j = cKDTree(np.column_stack([m.x, m.y])).query(
        np.column_stack([t["x_centroid"], t["y_centroid"]]))
    j = j[d <= near]
    return int(j.size - np.unique(j).size)


def _blended(m: truth.Mosaic, missed: np.ndarray, segm: np.ndarray) -> int:
    """How many of the true sources ``missed`` share their segment with a brighter true
    source within 4 FWHM."""
    ny, nx = segm.shape
    xi = np.clip(np.round(m.x).astype(int), 0, nx - 1)
    yi = np.clip(np.round(m.y).astype(int), 0, ny - 1)
    label = segm[yi, xi]
    tree = cKDTree(np.column_stack([m.x, m.y]))
    out = 0
    for i in missed:
        near = tree.query_ball_point((m.x[i], m.y[i]), 4 * m.psf.blurred_fwhm_pix)
        out += any(j != i and m.flux_jy[j] > m.flux_jy[i] and label[j] == label[i] > 0
                   for j in near)
    return out


def _options(pairs: list[str]) -> CatalogOptions:
    fields = {f.name: f.type for f in dataclasses.fields(CatalogOptions)}
    values: dict[str, object] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in fields:
            raise SystemExit(f"--before: unknown option {name!r}; options: {sorted(fields)}")
        values[name] = float(value) if "float" in str(fields[name]) else int(value)
    return CatalogOptions(**values)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", choices=sorted(FIELDS), default="smallsat")
    ap.add_argument("--seeds", default="11-16", help="a seed or a range, e.g. 11-16")
    ap.add_argument("--before", nargs="*", default=[], help="options as name=value")
    args = ap.parse_args()
    before = _options(args.before)
    warnings.simplefilter("ignore")
    total = np.zeros(9, int)
    print("seed  target  found before  after  detections before  after  spurious before  "
          "after  duplicates before  after  missed after: blended")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in _seeds(args.seeds):
            exposures = None if seed == 11 else FIRST_POINTINGS[args.profile]
            field = _make_field(Path(tmp) / f"s{seed}", args.profile, seed, exposures)
            m = truth.Mosaic(field)
            row = []
            for options in (before, CatalogOptions()):
                t, segm = _catalog(field, m, options)
                target, found, spurious, _ = truth.completeness(m, t)
                row.append((int(found[target].sum()), len(t), spurious, _duplicates(m, t)))
            blended = _blended(m, np.flatnonzero(target & ~found), segm)
            (f0, n0, s0, d0), (f1, n1, s1, d1) = row
            counts = np.array([target.sum(), f0, f1, n0, n1, s0, s1, d0, d1])
            total += counts
            print(f"{seed:4d}  {counts[0]:6d}  {f0:5d} ({f0 / counts[0]:.3f})  {f1:5d} "
                  f"({f1 / counts[0]:.3f})  {n0:5d}  {n1:5d}  {s0:3d}  {s1:3d}  {d0:3d}  {d1:3d}  "
                  f"{counts[0] - f1}: {blended}")
    n, f0, f1 = total[0], total[1], total[2]
    print(f"all   {n:6d}  {f0:5d} ({f0 / n:.3f})  {f1:5d} ({f1 / n:.3f})  "
          + "  ".join(f"{v:5d}" for v in total[3:]))


if __name__ == "__main__":
    main()
