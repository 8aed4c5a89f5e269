"""Benchmark: obsflow detect_jumps + fit_ramps against stcal jump + OLS_C, one core.

Each case runs in its own subprocess (so peak memory, VmHWM, is per case)
on identical synthetic data: full frame 2048x2048 with 10 groups, 50 groups,
and a many-integration time series.  Prints times, peak memory over the
input cube (float32 data + uint8 group DQ) and the speed ratio.  Then
stage 1 + stage 2 with files in and out (``calibrate_product``) on one
full-frame webb_like exposure from the simulator (simulated once into
``--sim``, not timed): read ``_uncal``, every step, write ``_rate``,
``_rateints`` and ``_cal``.

    .venv/bin/python benchmarks/bench_calibrate.py [--quick] [--no-stcal] [--no-files]
        [--stream-ints N]

The streamed case: stage 1 + 2 of a time series of ``--stream-ints``
integrations (6 groups, 64x64; the simulator's 25-integration transit
repeated), files in and out, with the default block memory and in one
piece, peak memory against the cube.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CASES = {"full_10": (1, 10, 2048, 2048), "full_50": (1, 50, 2048, 2048),
         "tso_200x10_256": (200, 10, 256, 256), "tso_1000x10_128": (1000, 10, 128, 128)}
"""Synthetic cubes (nints, ngroups, ny, nx).  obsflow runs what its recipe runs: a time series
(more than one integration) searches jumps per integration (``timeseries`` recipe), an
``obsflow_pooled`` run also pools them like stcal; stcal always pools the integrations
(and switches to sigma clipping at >= 100 groups in all)."""


def _vmhwm_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_vmhwm() -> None:
    """Reset the peak-RSS mark to the current RSS (Linux: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


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
    gdq = np.empty(shape, np.uint8)
    gdq.fill(0)  # resident now (np.zeros pages would only become resident when flagged)
    return data, gdq


def run_case(name: str, which: str) -> dict[str, float]:
    shape = CASES[name]
    data, gdq = _data(shape)
    ny, nx = shape[2:]
    rn = np.full((ny, nx), 6.0, np.float32)
    gain = np.full((ny, nx), 2.0, np.float32)
    readout = {"frame_time": 10.0, "group_time": 10.0, "nframes": 1, "groupgap": 0}
    cube_mb = (data.nbytes + gdq.nbytes) / 2**20
    per_int = which == "obsflow" and shape[0] > 1
    if which.startswith("obsflow"):
        from obsflow.calibrate.jumps import detect_jumps
        from obsflow.calibrate.ramps import fit_ramps

        # compile (or load from numba's cache) outside the timing, on a tiny cube
        # with exactly the argument types of the timed call
        tiny = (slice(None), slice(None), slice(0, 4), slice(0, 4))
        small = {"read_noise": rn[:4, :4].copy(), "gain": gain[:4, :4].copy()}
        tgdq = detect_jumps(data[tiny].copy(), gdq[tiny].copy(), nframes=1, **small)
        fit_ramps(data[tiny].copy(), tgdq, **small, **readout)
    else:
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "calibrate"))
        from stcal_oracle import stcal_jumps, stcal_ramp_fit
    _reset_vmhwm()
    base = _vmhwm_mb()
    t0 = time.perf_counter()
    if which.startswith("obsflow"):
        # flag in place, as stcal does (the pipeline owns its DQ copy the same way)
        gdq = detect_jumps(data, gdq, read_noise=rn, gain=gain, nframes=1, out=gdq,
                           per_integration=per_int)
        t1 = time.perf_counter()
        fit_ramps(data, gdq, read_noise=rn, gain=gain, **readout)
    else:
        gdq = stcal_jumps(data, gdq, rn, gain, 1)
        t1 = time.perf_counter()
        stcal_ramp_fit(data, gdq, rn, gain, readout)
    t2 = time.perf_counter()
    peak = _vmhwm_mb()
    return {"jump_s": t1 - t0, "fit_s": t2 - t1, "cube_mb": cube_mb,
            "peak_over_cube": (peak - base + cube_mb) / cube_mb, "peak_mb": peak}


def _ten_groups(uncal: Path, folder: Path) -> Path:
    """A 10-group copy of an exposure: groups appended with each pixel's mean slope (+ noise)."""
    import dataclasses

    from obsflow.models.level1 import Level1, read_uncal, write_uncal

    l1 = read_uncal(uncal)
    ng = l1.meta.ngroups
    if ng >= 10:
        return uncal
    data = l1.data.astype(np.float32)
    step = (data[:, -1] - data[:, 0]) / (ng - 1)
    rng = np.random.default_rng(2)
    extra = [data[:, -1] + step * k + rng.normal(0, 3.0, step.shape) for k in range(1, 11 - ng)]
    cube = np.clip(np.rint(np.concatenate([data, np.stack(extra, axis=1)], axis=1)), 0, 65535)
    meta = dataclasses.replace(l1.meta, ngroups=10)
    return write_uncal(folder / uncal.name, Level1(cube.astype(np.uint16), meta, l1.wcs, None,
                                                   l1.raw_files, l1.header_extra))


def run_files(sim: str) -> dict[str, float]:
    """Stage 1 + 2, files in and out, one full-frame exposure, as a worker runs it.

    The process is readied first as a worker is (``prepare_worker``: imports,
    compiled kernels, malloc settings), then each exposure is calibrated three times into new folders;
    the first and the median of the three are reported, and the median CPU
    seconds of all the process's threads (robust to a busy machine).
    """
    import tempfile

    from astropy.io import fits

    from obsflow.calibrate.pipeline import CalibrationOptions, beside, calibrate_product
    from obsflow.orchestrate.worker import prepare_worker
    from obsflow.profiles import load_profile
    from obsflow.refdata import FolderRefs

    prof = load_profile("webb_like")
    refs = FolderRefs(Path(sim) / "refs", prof)
    result: dict[str, float] = {}
    prepare_worker()
    with tempfile.TemporaryDirectory() as tmp:
        sim_uncal = sorted((Path(sim) / "level1").glob("*_uncal.fits"))[0]
        for label, uncal in (("sim", sim_uncal), ("ten", _ten_groups(sim_uncal, Path(tmp)))):
            times, cpu = [], []
            for k in range(3):
                out = Path(tmp) / f"{label}{k}"
                out.mkdir()
                t0, c0 = time.perf_counter(), time.process_time()
                calibrate_product(uncal, refs, prof, CalibrationOptions(place=beside(out)))
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)  # every thread's CPU seconds
            h = fits.getheader(uncal)
            result.update({f"{label}_first_s": times[0], f"{label}_median_s": sorted(times)[1],
                           f"{label}_cpu_median_s": sorted(cpu)[1],
                           f"{label}_ngroups": h["NGROUPS"]})
        result.update({"nframes": h["NFRAMES"], "ny": h["SUBSIZE2"], "nx": h["SUBSIZE1"],
                       "peak_mb": _vmhwm_mb()})
    return result


def _stream_uncal(folder: Path, nints: int) -> tuple[Path, Path]:
    """A time series of ``nints`` integrations (6 groups, 64x64) and its references.

    The simulator's transit observation of 25 integrations (made once into
    ``folder``), its cube repeated to ``nints`` integrations (written once).
    """
    import dataclasses

    from obsflow.models.level1 import Level1, read_uncal, write_uncal

    sim = folder / "sim"
    if not (sim / "level1").is_dir():
        from obsflow.simulate.run import SimOptions, simulate
        from obsflow.simulate.tso import TsoOptions

        simulate(sim, SimOptions(seed=4, subarray="SUB64", level1=True,
                                 tso=TsoOptions(nints=25, ngroups=6)))
    source = next((sim / "level1").glob("*_uncal.fits"))
    target = folder / f"n{nints}" / source.name
    if not target.exists():
        l1 = read_uncal(source)
        cube = np.tile(l1.data, (nints // l1.meta.nints + 1, 1, 1, 1))[:nints]
        write_uncal(target, Level1(np.ascontiguousarray(cube),
                                   dataclasses.replace(l1.meta, nints=nints), l1.wcs))
    return target, sim / "refs"


def run_stream(uncal: str, refs: str, block_mb: float) -> dict[str, float]:
    """Stage 1 + 2 of a long time series, files in and out, in blocks of ``block_mb``."""
    import tempfile

    from obsflow.calibrate.pipeline import CalibrationOptions, beside, calibrate_product, warm_up
    from obsflow.models.level1 import UncalBlocks
    from obsflow.profiles import load_profile
    from obsflow.refdata import FolderRefs

    prof = load_profile("webb_like")
    with UncalBlocks(Path(uncal)) as cube:
        m = cube.meta
    warm_up()
    _reset_vmhwm()
    base = _vmhwm_mb()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        calibrate_product(Path(uncal), FolderRefs(Path(refs), prof), prof,
                          CalibrationOptions(place=beside(Path(tmp)), block_mb=block_mb))
        took = time.perf_counter() - t0
    cube_mb = m.nints * m.ngroups * m.subsize1 * m.subsize2 * 5 / 2**20
    return {"s": took, "peak_mb": _vmhwm_mb(), "base_mb": base, "cube_mb": cube_mb,
            "nints": m.nints, "ngroups": m.ngroups, "ny": m.subsize2, "nx": m.subsize1}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="only the 10-group full frame")
    parser.add_argument("--no-stcal", action="store_true")
    parser.add_argument("--no-files", action="store_true", help="skip the files-in/out case")
    parser.add_argument("--sim", default="/tmp/obsflow_bench_sim",
                        help="simulation folder for the files case (made once if missing)")
    parser.add_argument("--stream-ints", type=int, default=10000,
                        help="integrations of the streamed time-series case (0: skip it)")
    parser.add_argument("--tso", default="/tmp/obsflow_bench_tso",
                        help="folder for the streamed case's simulation and cube (made once)")
    parser.add_argument("--case", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--files", help=argparse.SUPPRESS)
    parser.add_argument("--stream", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(*args.case)))
        return
    if args.stream:
        print(json.dumps(run_stream(args.stream[0], args.stream[1], float(args.stream[2]))))
        return
    if args.files:
        print(json.dumps(run_files(args.files)))
        return
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    names = ["full_10"] if args.quick else list(CASES)
    for name in names:
        results = {}
        pooled = ("obsflow_pooled",) if CASES[name][0] > 1 else ()
        for which in ("obsflow", *pooled) + (() if args.no_stcal else ("stcal",)):
            out = subprocess.run([sys.executable, __file__, "--case", name, which], env=env,
                                 capture_output=True, text=True, check=True)
            results[which] = json.loads(out.stdout.strip().splitlines()[-1])
            r = results[which]
            print(f"{name:16s} {which:14s} jump {r['jump_s']:7.2f} s  fit {r['fit_s']:7.2f} s  "
                  f"cube {r['cube_mb']:7.0f} MB  peak {r['peak_mb']:7.0f} MB "
                  f"(peak - baseline + cube = {r['peak_over_cube']:.2f} x cube)")
        if "stcal" in results:
            ours = results["obsflow"]["jump_s"] + results["obsflow"]["fit_s"]
            theirs = results["stcal"]["jump_s"] + results["stcal"]["fit_s"]
            print(f"{name:16s} speed-up jump+fit: {theirs / ours:.1f}x")
            if pooled:
                ours = results["obsflow_pooled"]["jump_s"] + results["obsflow_pooled"]["fit_s"]
                print(f"{name:16s} speed-up jump+fit, both pooling: {theirs / ours:.1f}x")
    if args.stream_ints:
        from obsflow.calibrate.pipeline import CalibrationOptions

        uncal, refs = _stream_uncal(Path(args.tso), args.stream_ints)
        for block_mb in (CalibrationOptions.block_mb, 1e9):  # the default, and in one piece
            out = subprocess.run([sys.executable, __file__, "--stream", str(uncal), str(refs),
                                  str(block_mb)], env=env, capture_output=True, text=True,
                                 check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            how = "in one piece" if block_mb > 1e6 else f"block_mb {block_mb:g}"
            print(f"stream_stage1+2  obsflow {r['nints']} ints x {r['ngroups']} groups "
                  f"{r['ny']}x{r['nx']} ({how}): {r['s']:.1f} s, peak {r['peak_mb']:.0f} MB "
                  f"(baseline {r['base_mb']:.0f} MB; cube float32 + DQ {r['cube_mb']:.0f} MB; "
                  f"peak - baseline = {(r['peak_mb'] - r['base_mb']) / r['cube_mb']:.2f} x cube)")
    if not args.no_files:
        if not (Path(args.sim) / "level1").is_dir():
            from obsflow.simulate.run import SimOptions, simulate

            simulate(Path(args.sim), SimOptions(profile="webb_like", exposures=1, level1=True))
        out = subprocess.run([sys.executable, __file__, "--files", args.sim], env=env,
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        for label in ("sim", "ten"):
            print(f"files_stage1+2   obsflow {r['ny']}x{r['nx']} {r[label + '_ngroups']} groups x "
                  f"{r['nframes']} frames: first run {r[label + '_first_s']:.2f} s, median of 3 "
                  f"{r[label + '_median_s']:.2f} s, CPU {r[label + '_cpu_median_s']:.2f} s "
                  f"(peak of the process {r['peak_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
