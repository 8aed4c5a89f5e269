"""Benchmark the simulator's detector physics against a naive frame-by-frame model.

Target (issue "Foundation"): at least 20 million pixel-frames per second on
one core, i.e. a full-frame 2048x2048 exposure of 10 groups x 8 frames in
well under 20 s.

Measured in the same run:

* obsflow ``simulate_ramps`` on a full frame, MEDIUM8-like timing
  (10 groups, nframes=8, groupgap=2), with cosmic rays;
* the naive anchor: an exact frame-by-frame simulation (one Poisson draw per
  pixel per frame, read noise per frame, onboard averaging) on a 512x512
  crop, scaled per pixel-frame;
* the whole ``obsflow simulate`` command for one full-frame exposure of the
  smallsat profile and one of the webb_like profile (four 2048x2048
  detectors; reference files, truth and packets included).

Run with ``.venv/bin/python benchmarks/bench_simulator.py`` (one core: the
numpy random generators are single-threaded).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from obsflow.profiles import load_profile  # noqa: E402
from obsflow.simulate.cosmic_rays import ReadoutTiming, sample_deposits  # noqa: E402
from obsflow.simulate.detector import realize_detector  # noqa: E402
from obsflow.simulate.ramps import PixelInputs, simulate_ramps  # noqa: E402
from obsflow.simulate.run import SimOptions, simulate  # noqa: E402

TARGET = 20e6


def _inputs(size: int) -> tuple[PixelInputs, object, np.ndarray]:
    profile = load_profile("webb_like")
    det = profile.instruments[0].detectors[0]
    model = realize_detector(det, 1)
    cut = (slice(0, size), slice(0, size))
    cols = np.arange(size)
    illum = (2.0 * model.response[cut]).astype(np.float32)
    inp = PixelInputs(illum, model.dark_e_s[cut], model.gain[cut], model.read_noise_dn[cut],
                      model.superbias[cut], det.full_well_e, tuple(det.nonlinearity),
                      det.adc_max_dn, (cols // 512).astype(np.intp), (cols % 2).astype(np.intp),
                      det.refpix_drift_dn, det.row_noise_dn)
    return inp, profile, illum > 0


def naive_ramps(inp: PixelInputs, timing: ReadoutTiming, rng: np.random.Generator) -> np.ndarray:
    """Exact frame-by-frame reference: a Poisson draw per pixel per frame."""
    lam = (inp.illum_e_s + inp.dark_e_s).astype(np.float64) * timing.frame_time
    charge = np.zeros(lam.shape)
    out = np.empty((timing.ngroups, *lam.shape), np.uint16)
    for g in range(timing.ngroups):
        acc = np.zeros(lam.shape)
        for _ in range(timing.groupgap if g else 0):
            charge += rng.poisson(lam)
        for _ in range(timing.nframes):
            charge += rng.poisson(lam)
            acc += charge + rng.normal(0, 1, lam.shape) * inp.read_noise_dn * inp.gain
        dn = inp.superbias + np.minimum(acc / timing.nframes, inp.full_well_e) / inp.gain
        out[g] = np.clip(np.rint(dn), 0, inp.adc_max)
    return out


def main() -> None:
    timing = ReadoutTiming(ngroups=10, nframes=8, groupgap=2, frame_time=10.73676)
    rows = []
    inp, profile, sensitive = _inputs(2048)
    rng = np.random.default_rng(1)
    t = time.perf_counter()
    dep = sample_deposits(profile.cosmic_rays, (2048, 2048), 1, timing, sensitive, rng)
    simulate_ramps(inp, timing, 1, dep, rng)
    dt = time.perf_counter() - t
    pf = 2048 * 2048 * timing.ngroups * timing.nframes
    rows.append(("obsflow simulate_ramps, 2048x2048, 10x8 frames", dt, pf / dt))
    small, _, _ = _inputs(512)
    t = time.perf_counter()
    naive_ramps(small, timing, np.random.default_rng(2))
    dtn = time.perf_counter() - t
    pfn = 512 * 512 * timing.ngroups * timing.nframes
    rows.append(("naive frame-by-frame (512x512 crop)", dtn * pf / pfn, pfn / dtn))
    for prof in ("smallsat", "webb_like"):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            res = simulate(Path(tmp), SimOptions(seed=1, profile=prof, exposures=1,
                                                 faults=frozenset({"drop", "bitflip"})))
            dte = time.perf_counter() - t
        rows.append((f"obsflow simulate, {prof} 1 FULL exposure (end to end)", dte,
                     res.pixel_frames / dte))
    print(f"{'what':58s} {'seconds':>9s} {'Mpix-frames/s':>14s} {'vs target':>9s}")
    for name, sec, rate in rows:
        print(f"{name:58s} {sec:9.2f} {rate / 1e6:14.1f} {rate / TARGET:8.2f}x")
    print(f"speed-up of simulate_ramps over the naive frame-by-frame model: "
          f"{rows[0][2] / rows[1][2]:.1f}x (target {TARGET / 1e6:.0f} Mpix-frames/s)")


if __name__ == "__main__":
    main()
