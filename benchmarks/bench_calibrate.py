"""Benchmark: obsflow detect_jumps + fit_ramps against stcal jump + OLS_C, one core.

Each case runs in its own subprocess (so peak memory, VmHWM, is per case)
on identical synthetic data: full frame 2048x2048 with 10 groups, 50 groups,
and a many-integration time series.  Prints times, peak memory over the
input cube (float32 data + uint8 group DQ) and the speed ratio.

    .venv/bin/python benchmarks/bench_calibrate.py [--quick] [--no-stcal]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

CASES = {"full_10": (1, 10, 2048, 2048), "full_50": (1, 50, 2048, 2048),
         "tso_200x10_256": (200, 10, 256, 256)}


def _vmhwm_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _data(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    nints, ng, ny, nx = shape
    rate = rng.uniform(0.5, 50, (ny, nx)).astype(np.float32)
    data = np.empty(shape, np.float32)
    for i in range(nints):
        for g in range(ng):
            data[i, g] = rate * 10.0 * (g + 1) + rng.normal(0, 6.0, (ny, nx)).astype(np.float32)
    hits = rng.random((nints, ng, ny, nx), dtype=np.float32) < 2e-4
    data += np.cumsum(hits * np.float32(500.0), axis=1, dtype=np.float32)
    return data, np.zeros(shape, np.uint8)


def run_case(name: str, which: str) -> dict[str, float]:
    shape = CASES[name]
    data, gdq = _data(shape)
    ny, nx = shape[2:]
    rn = np.full((ny, nx), 6.0, np.float32)
    gain = np.full((ny, nx), 2.0, np.float32)
    readout = {"frame_time": 10.0, "group_time": 10.0, "nframes": 1, "groupgap": 0}
    base = _vmhwm_mb()
    cube_mb = (data.nbytes + gdq.nbytes) / 2**20
    t0 = time.perf_counter()
    if which == "obsflow":
        from obsflow.calibrate.jumps import detect_jumps
        from obsflow.calibrate.ramps import fit_ramps

        # compile outside the timing, on a tiny cube
        fit_ramps(data[:1, :, :2, :2].copy(), gdq[:1, :, :2, :2].copy(), read_noise=6.0,
                  gain=2.0, **readout)
        detect_jumps(data[:1, :, :2, :2].copy(), gdq[:1, :, :2, :2].copy(), read_noise=6.0,
                     gain=2.0, nframes=1)
        t0 = time.perf_counter()
        gdq = detect_jumps(data, gdq, read_noise=rn, gain=gain, nframes=1)
        t1 = time.perf_counter()
        fit_ramps(data, gdq, read_noise=rn, gain=gain, **readout)
    else:
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "calibrate"))
        from stcal_oracle import stcal_jumps, stcal_ramp_fit

        gdq = stcal_jumps(data, gdq, rn, gain, 1)
        t1 = time.perf_counter()
        stcal_ramp_fit(data, gdq, rn, gain, readout)
    t2 = time.perf_counter()
    peak = _vmhwm_mb()
    return {"jump_s": t1 - t0, "fit_s": t2 - t1, "cube_mb": cube_mb,
            "peak_over_cube": (peak - base + cube_mb) / cube_mb, "peak_mb": peak}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="only the 10-group full frame")
    parser.add_argument("--no-stcal", action="store_true")
    parser.add_argument("--case", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(*args.case)))
        return
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    names = ["full_10"] if args.quick else list(CASES)
    for name in names:
        results = {}
        for which in ("obsflow",) + (() if args.no_stcal else ("stcal",)):
            out = subprocess.run([sys.executable, __file__, "--case", name, which], env=env,
                                 capture_output=True, text=True, check=True)
            results[which] = json.loads(out.stdout.strip().splitlines()[-1])
            r = results[which]
            print(f"{name:16s} {which:8s} jump {r['jump_s']:7.2f} s  fit {r['fit_s']:7.2f} s  "
                  f"cube {r['cube_mb']:7.0f} MB  peak {r['peak_mb']:7.0f} MB "
                  f"(peak - baseline + cube = {r['peak_over_cube']:.2f} x cube)")
        if "stcal" in results:
            ours = results["obsflow"]["jump_s"] + results["obsflow"]["fit_s"]
            theirs = results["stcal"]["jump_s"] + results["stcal"]["fit_s"]
            print(f"{name:16s} speed-up jump+fit: {theirs / ours:.1f}x")


if __name__ == "__main__":
    main()
