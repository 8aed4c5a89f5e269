"""Benchmark: the whole of stage 3 (the ``image3`` job's ``make_mosaic``) on 8 full-frame 2048 x 2048 ``_cal`` inputs.

Eight ``_cal`` products of one detector (webb_like WRA1, 0.031 arcsec
pixels), eight dithers a few arcseconds apart with PA 0-1 degree, are
synthesized as real product files under a temporary folder (``/tmp``,
removed at the end): a star field on the sky (Gaussian stars of the
profile's FWHM, drawn through each input's TRUE WCS), sky, noise,
variances, 1% DO_NOT_USE pixels; each file's header WCS is off its true one
by a random pointing error of 30 mas per axis (so alignment has work to do).

Then a child process (``--run FOLDER``) reads the association, loads the
compiled kernels on a small warm-up mosaic, gives glibc's freed-but-kept
heap back (``malloc_trim``), resets its resident peak
(``/proc/self/clear_refs``), notes its resident set (the baseline: Python,
numpy, astropy, numba and the compiled kernels) and runs ``make_mosaic``
exactly as the ``image3`` job does (detect, relative alignment — no ASTROCAT
here —, skymatch, grid, outlier detection, the ``_crf`` products written and
resampled one by one, association file, source catalog, ``_i2d``).

Reported: wall and CPU seconds, seconds per input megapixel, each step's
seconds; the process's resident peak (VmHWM, anonymous and file-backed
pages alike, memory-mapped member pages included) minus the baseline,
beside the bound "output arrays + two inputs": the ``_i2d``'s SCI, ERR,
WHT, CON, VAR_POISSON, VAR_RNOISE, VAR_FLAT (7 x 4 bytes per output pixel,
from the written grid) plus two inputs (SCI, ERR, DQ, VAR_POISSON,
VAR_RNOISE: 5 x 4 bytes per input pixel each); and each step's resident
peak, sampled every 10 ms by a thread (steps placed in time by
``make_mosaic``'s own step seconds).

    .venv/bin/python benchmarks/bench_stage3.py [--inputs 8] [--size 2048] [--keep DIR]
    .venv/bin/python benchmarks/bench_stage3.py --quick    # 2 inputs of 512 x 512: seconds

A second child then runs the same ``make_mosaic`` under ``tracemalloc``
(``--no-traced`` skips it) and reports its traced peak beside the same
bound: the heap the stage allocates, without the interpreter's baseline,
glibc's not-yet-returned free pages or memory-mapped file pages.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

from obsflow.fileio import sha256_file
from obsflow.profiles import load_profile
from obsflow.stage3.association import Association, read_association, write_association
from obsflow.stage3.mosaic import make_mosaic

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the scene lives with the tests
from tests.stage3.scenes import StarField, star_field_cals  # noqa: E402


def make_inputs(folder: Path, count: int, n: int) -> Association:
    """``count`` synthetic _cal files under ``folder`` and their association (the shared
    star-field scene: ~n/4 stars, dithers of +/-3 arcsec, 30 mas pointing errors)."""
    return star_field_cals(folder, count, n, StarField(seed=7, label="bench"))


STEPS = ("detect", "align", "skymatch", "outlier", "resample", "catalog", "write")
"""The timeline of ``make_mosaic`` (its ``seconds``: grid and outlier inside "resample")."""


def _status(*names: str) -> dict[str, int]:
    """Fields of /proc/self/status in bytes (VmRSS, VmHWM, RssAnon, RssFile)."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in names:
            out[key] = int(value.split()[0]) * 1024
    return out


class _Sampler(threading.Thread):
    """Resident set every ``every`` seconds: (seconds since start, RssAnon, RssFile) in bytes."""

    def __init__(self, every: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.every, self.stop = every, threading.Event()
        self.samples: list[tuple[float, int, int]] = []
        self.t0 = time.perf_counter()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            got = _status("RssAnon", "RssFile")
            self.samples.append((time.perf_counter() - self.t0, got["RssAnon"], got["RssFile"]))


def _step_peaks(samples: list[tuple[float, int, int]], seconds: dict[str, float]
                ) -> dict[str, tuple[int, int] | None]:
    """(anonymous, file-backed) resident bytes at the highest sampled resident set of each step
    of ``STEPS`` (None: no sample in it)."""
    ends = {"detect": seconds["detect"]}
    ends["align"] = ends["detect"] + seconds["align"]
    ends["skymatch"] = ends["align"] + seconds["skymatch"]
    ends["outlier"] = ends["skymatch"] + seconds["outlier"]
    ends["resample"] = ends["skymatch"] + seconds["resample"]
    ends["catalog"] = ends["resample"] + seconds["catalog"]
    ends["write"] = float("inf")
    peaks: dict[str, tuple[int, int] | None] = {}
    begin = 0.0
    for step in STEPS:
        inside = [(a, f) for t, a, f in samples if begin <= t < ends[step]]
        peaks[step] = max(inside, key=sum) if inside else None
        begin = ends[step]
    return peaks


def run_traced(folder: Path) -> dict[str, object]:
    """``make_mosaic`` on ``folder``'s association under ``tracemalloc`` (after the same
    warm-up): the traced peak (every numpy array and Python object allocated during the run;
    memory-mapped file pages are not counted) and the wall time (tracing slows it)."""
    profile = load_profile("webb_like")
    warm = make_inputs(folder / "warm", 2, 256)
    make_mosaic(warm, folder / "warm", profile, "warmup", None)
    shutil.rmtree(folder / "warm")
    asn = read_association(folder / "bench_asn.json")
    tracemalloc.start()
    t = time.perf_counter()
    made = make_mosaic(asn, folder, profile, "bench-traced", None)
    wall = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"wall": wall, "traced_peak": peak, "out_px": _shape(made.mosaic.path)}


def _release_freed_heap() -> None:
    """Give the memory glibc keeps after frees (the warm-up's) back to the system
    (``malloc_trim``), so the baseline is what the process holds and the stage cannot
    reuse kept pages unseen: without it the baseline moved by hundreds of MiB between runs
    and the stage's resident peak with it."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing kept to give back this way
        pass


def run_child(folder: Path) -> dict[str, object]:
    """``make_mosaic`` on ``folder``'s association, measured in this process (module docstring)."""
    profile = load_profile("webb_like")
    warm = make_inputs(folder / "warm", 2, 256)  # compiled kernels loaded first
    make_mosaic(warm, folder / "warm", profile, "warmup", None)
    shutil.rmtree(folder / "warm")
    asn = read_association(folder / "bench_asn.json")
    _release_freed_heap()
    Path("/proc/self/clear_refs").write_text("5")  # the resident peak starts again here
    start = _status("VmRSS", "RssAnon", "RssFile")
    base = start["VmRSS"]
    sampler = _Sampler()
    sampler.start()
    cpu0, t = time.process_time(), time.perf_counter()
    made = make_mosaic(asn, folder, profile, "bench", None)
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu0
    sampler.stop.set()
    sampler.join()
    status = _status("VmHWM", "VmRSS")
    peaks = _step_peaks(sampler.samples, made.seconds)
    return {"wall": wall, "cpu": cpu, "baseline": base, "hwm": status["VmHWM"],
            "steps": made.seconds, "step_peaks": {k: None if v is None else (v[0] - start["RssAnon"], v[1] - start["RssFile"])
                           for k, v in peaks.items()},
            "out_px": _shape(made.mosaic.path), "alignment":
            made.mosaic.provenance.steps[0].status, "i2d_bytes": made.mosaic.size,
            "sha256": sha256_file(made.mosaic.path), "catalog": [m.path.name for m in made.catalog]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=8)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--quick", action="store_true", help="2 inputs of 512 x 512 (a smoke test)")
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep")
    parser.add_argument("--no-traced", action="store_true",
                        help="skip the second, tracemalloc-traced run")
    parser.add_argument("--run", type=Path, default=None, help=argparse.SUPPRESS)  # the child
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)  # its mode
    args = parser.parse_args()
    if args.run is not None:
        print(json.dumps(run_traced(args.run) if args.traced else run_child(args.run)))
        return
    if args.quick:
        args.inputs, args.size = 2, 512
    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench-stage3-", dir="/tmp"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        report(folder, args.inputs, args.size, not args.no_traced)
    finally:
        if args.keep is None:
            shutil.rmtree(folder)


def report(folder: Path, inputs: int, size: int, traced: bool = True) -> None:
    """Make the inputs, run the child on them (and a traced child), print the figures."""
    t = time.perf_counter()
    write_association(folder / "bench_asn.json", make_inputs(folder, inputs, size))
    print(f"{inputs} synthetic _cal inputs of {size}x{size} in "
          f"{time.perf_counter() - t:.1f} s ({folder})", flush=True)
    child = subprocess.run([sys.executable, __file__, "--run", str(folder)], check=True,
                           capture_output=True, text=True)
    got = json.loads(child.stdout.strip().splitlines()[-1])
    out_px, in_px = int(got["out_px"]), size * size
    outputs, two_inputs = 7 * 4 * out_px, 2 * 5 * 4 * in_px
    bound = outputs + two_inputs
    peak = int(got["hwm"]) - int(got["baseline"])
    mpix = inputs * in_px / 1e6
    mib = 2**20
    print(f"steps (s): {got['steps']}")
    print(f"whole stage 3: {got['wall']:.1f} s wall, {got['cpu']:.1f} s CPU for {mpix:.1f} input "
          f"Mpx = {got['wall'] / mpix:.2f} s wall ({got['cpu'] / mpix:.2f} s CPU) per input "
          "megapixel")
    print(f"resident peak (VmHWM) - baseline: {peak / mib:.0f} MiB (baseline "
          f"{int(got['baseline']) / mib:.0f} MiB); bound: output arrays ({out_px / 1e6:.2f} Mpx "
          f"x 7 x 4 B = {outputs / mib:.0f} MiB) + two inputs (2 x 5 x 4 B x {in_px / 1e6:.2f} "
          f"Mpx = {two_inputs / mib:.0f} MiB) = {bound / mib:.0f} MiB; ratio {peak / bound:.2f} "
          f"({'met' if peak <= bound else 'NOT met'})")
    print("resident peak - baseline per step, sampled every 10 ms (MiB: total = anonymous + "
          "file-backed): " + ", ".join(
              f"{k} " + ("-" if v is None else
                         f"{(v[0] + v[1]) / mib:.0f} = {v[0] / mib:.0f} + {v[1] / mib:.0f}")
              for k, v in dict(got["step_peaks"]).items()))
    print(f"alignment: {got['alignment']}; i2d {int(got['i2d_bytes']) / mib:.0f} MiB; "
          f"sha256 {str(got['sha256'])[:12]}; catalog {got['catalog']}", flush=True)
    if traced:
        child = subprocess.run([sys.executable, __file__, "--run", str(folder), "--traced"],
                               check=True, capture_output=True, text=True)
        tr = json.loads(child.stdout.strip().splitlines()[-1])
        tpeak = int(tr["traced_peak"])
        print(f"traced peak (tracemalloc, a second run: {tr['wall']:.1f} s wall with tracing): "
              f"{tpeak / mib:.1f} MiB; bound {bound / mib:.0f} MiB; ratio {tpeak / bound:.2f} "
              f"({'met' if tpeak <= bound else 'NOT met'})")


def _shape(path: Path) -> int:
    from astropy.io import fits

    header = fits.getheader(path, "SCI")
    return int(header["NAXIS1"]) * int(header["NAXIS2"])


if __name__ == "__main__":
    main()
