"""Measurement: outlier detection against the simulator's truth over several realizations.

The truth test (``tests/stage3/test_outlier_truth.py``) on more area: for
each seed, both test fields are simulated and calibrated afresh (``webb_like``
SUB320, 3-4 dithers; ``smallsat`` full frame, 4 dithers; the conftest's
scenes), aligned, and 30 rays of 10-1000 ERR are injected on the sky of each
``_cal``.  Printed per realization and pooled per profile, for the default
options and, in the same run, the anchor ``scale`` everywhere (the JWST rule:
the derivative allowance of cores on the wings too):

* residual ray groups above 5 sigma in the mosaic per 1e5 pixels (3 px
  inside the area two or more inputs cover), against the clean mosaic;
* injected rays flagged / tested;
* false flags: flagged pixels that are neither an injected ray nor a
  simulated ray's residue, per 1e5 good input pixels;
* bright star peaks (S/N >= 20) with a flagged pixel in their 3x3;
* true stars of S/N >= 100 (and >= 20) with a flagged pixel in their core
  (max(2, 1.5 FWHM) px of the true position), rays' pixels left out.

    .venv/bin/python benchmarks/bench_outlier_truth.py [--seeds 11 12 ...] [--keep DIR]

Simulations go to ``--keep DIR`` (reused when present) or a temporary folder.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from obsflow.profiles import load_profile
from obsflow.stage3.outlier import OutlierInput, OutlierOptions, outlier_masks

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the fields live with the tests
from tests.stage3.conftest import FIELDS, Field, _make_field  # noqa: E402
from tests.stage3.test_outlier_truth import (  # noqa: E402
    bright_peaks,
    false_flags,
    injected_flagged,
    make_case,
    mosaic_grid,
    residuals,
    star_cores,
)


def _field(root: Path, name: str, seed: int) -> Field:
    folder = root / f"{name}_s{seed}"
    if not (folder / "done").exists():
        _make_field(folder, name, seed)
        (folder / "done").touch()
    return Field(folder, load_profile(name))


def measure(field: Field, options: OutlierOptions) -> dict[str, float]:
    """One realization's figures under ``options``."""
    case = make_case(field)
    t0 = time.perf_counter()
    masks = outlier_masks([OutlierInput.from_cal(c) for c in case.hit], mosaic_grid(case.hit), options)
    seconds = time.perf_counter() - t0
    n_before, n_after, area = residuals(case, masks)
    flagged, tested, _ = injected_flagged(case, masks)
    false, good = false_flags(case, masks)
    peaks, peaks_flagged = bright_peaks(case, masks)
    cores100, flagged100 = star_cores(case, masks, 100.0)
    cores20, flagged20 = star_cores(case, masks, 20.0)
    return dict(before=n_before, after=n_after, area=area, flagged=flagged, tested=tested,
                false=false, good=good, peaks=peaks, peaks_flagged=len(peaks_flagged),
                cores100=cores100, cores100_flagged=len({f[:3] for f in flagged100}),
                cores20=cores20, cores20_flagged=len({f[:3] for f in flagged20}),
                seconds=seconds)


def _line(label: str, m: dict[str, float]) -> str:
    return (f"{label:<26} residuals {m['after']:>3.0f} of {m['before']:>4.0f} in {m['area']:>9,.0f} px "
            f"({m['after'] / m['area'] * 1e5:4.2f} /1e5) | rays {m['flagged']:.0f}/{m['tested']:.0f} | "
            f"false {m['false']:>3.0f} of {m['good']:>10,.0f} ({m['false'] / m['good'] * 1e5:4.2f} /1e5)"
            f" | peaks flagged {m['peaks_flagged']:.0f}/{m['peaks']:.0f}"
            f" | core px flagged S/N>=100 {m['cores100_flagged']:.0f} ({m['cores100']:.0f} cores),"
            f" >=20 {m['cores20_flagged']:.0f} ({m['cores20']:.0f}) | {m['seconds']:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13, 14, 15, 16])
    ap.add_argument("--profiles", nargs="+", default=sorted(FIELDS))
    ap.add_argument("--keep", type=Path, default=None, help="folder for the simulations (reused)")
    args = ap.parse_args()
    default = OutlierOptions()
    variants = {"default": default, "anchor scale everywhere": OutlierOptions(
        wing_scale=default.scale)}
    with tempfile.TemporaryDirectory(prefix="obsflow-bench-outlier-") as tmp:
        root = args.keep or Path(tmp)
        for name in args.profiles:
            totals = {v: dict.fromkeys(("before", "after", "area", "flagged", "tested", "false",
                                        "good", "peaks", "peaks_flagged", "cores100",
                                        "cores100_flagged", "cores20", "cores20_flagged",
                                        "seconds"), 0.0)
                      for v in variants}
            for seed in args.seeds:
                field = _field(root, name, seed)
                for label, options in variants.items():
                    m = measure(field, options)
                    print(_line(f"{name} s{seed} {label}", m), flush=True)
                    for key, value in m.items():
                        totals[label][key] += value
            for label in variants:
                print(_line(f"{name} ALL {label}", totals[label]), flush=True)


if __name__ == "__main__":
    main()
