"""Benchmark "a day of downlink": full-frame data end to end, GB per hour, share of each stage.

Run: ``.venv/bin/python benchmarks/bench_downlink.py [--exposures 3] [--workers 2]``

A webb_like full-frame downlink (``--exposures`` exposures, 4 detectors each,
every packet fault and a retransmission dump) is simulated, dropped in a
fresh site's ``incoming/`` and run through the whole chain (ingest with
accounting, assembly, calibration of stage 1 and 2, registration in the
archive) on the local executor, timed from the first file to the last
registration.  Printed beside their anchors, measured in this run:

* throughput in GB of downlink per hour, beside a Webb day (about 57 GB of
  science data a day: 2.4 GB/h sustained);
* the share of the work of each stage (summed job attempt seconds by kind);
* registration against calibration per exposure: registering an exposure's
  products (its Level-1 input inside the calibrate job, and the ``register``
  jobs of its outputs) over calibrating it; target at most 20 %.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WEBB_GB_PER_DAY = 57.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exposures", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="Keep the site in this folder.")
    args = parser.parse_args()

    from sqlalchemy import select
    from sqlalchemy.orm import Session
    from tests.orchestrate.conftest import make_site

    from obsflow.db import make_engine
    from obsflow.orchestrate import run_site
    from obsflow.orchestrate.tables import Job, JobAttempt
    from obsflow.simulate.downlink import parse_faults
    from obsflow.simulate.run import SimOptions, simulate

    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-downlink-"))
    try:
        t = time.perf_counter()
        sim = simulate(folder / "sim", SimOptions(seed=4, profile="webb_like",
                                                  exposures=args.exposures,
                                                  faults=parse_faults("all")))
        size = sum((sim.out / "downlink" / n).stat().st_size for n in sim.downlink_files)
        print(f"downlink: {len(sim.downlink_files)} files, {size / 1e6:,.0f} MB "
              f"(simulated in {time.perf_counter() - t:.0f} s)")
        cfg = make_site(folder / "site", sim)
        started = time.perf_counter()
        summary = run_site(cfg, workers=args.workers)
        wall = time.perf_counter() - started
        engine = make_engine(cfg.database_url)
        with Session(engine) as session:
            attempts = session.execute(select(Job.kind, Job.outputs, Job.inputs,
                                              JobAttempt.seconds).join(
                JobAttempt, JobAttempt.job_id == Job.id).where(JobAttempt.outcome == "ok")).all()
        engine.dispose()
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    _report(size, wall, args.workers, summary.total("failed"), attempts)


def _report(size: int, wall: float, workers: int, failed: int, attempts: list) -> None:  # type: ignore[type-arg]
    by_kind: dict[str, float] = defaultdict(float)
    calibrate = register = 0.0
    exposures = 0
    for kind, outputs, _inputs, seconds in attempts:
        by_kind[kind] += seconds or 0.0
        if kind == "calibrate" and outputs and "calibrate_seconds" in outputs:
            exposures += 1
            calibrate += outputs["calibrate_seconds"]
            register += outputs["register_input_seconds"]
        elif kind == "register":
            register += seconds or 0.0
    gb_per_hour = size / 1e9 / wall * 3600
    need = WEBB_GB_PER_DAY / 24
    print(f"end to end: {wall:.1f} s on {workers} workers ({failed} failed jobs): "
          f"{gb_per_hour:.1f} GB/h; anchor a Webb day {WEBB_GB_PER_DAY:.0f} GB/day = "
          f"{need:.1f} GB/h -> {gb_per_hour / need:.2f}x real time")
    total = sum(by_kind.values())
    print("share of the work (job seconds): " + ", ".join(
        f"{k} {v:.1f} s ({v / total:.0%})" for k, v in sorted(by_kind.items(),
                                                                key=lambda kv: -kv[1])))
    if exposures:
        print(f"registration vs calibration: {register / exposures:.2f} s vs "
              f"{calibrate / exposures:.2f} s per detector exposure = "
              f"{register / calibrate:.1%} (target <= 20%)")


if __name__ == "__main__":
    main()
