"""Benchmark of the job layer: scaling from 1 to 2 workers, and the per-job overhead.

Run: ``.venv/bin/python benchmarks/bench_orchestrate.py [--exposures 16] [--subarray SUB640]
[--repeat 2] [--postgres URL]``

1. A batch of Level-1 products (webb_like SUB640 by default, ingested once into a template
   site whose ``exposure_ready`` events are left unconsumed) is calibrated and
   registered with 1 and then 2 workers, on the local executor and on a Dask
   cluster (``dask scheduler`` + N ``dask worker`` processes on 127.0.0.1).
   Each run starts from a fresh copy of the template and includes the
   executor's start-up (not the Dask cluster's: an operator's workers are
   up before a run).  Each configuration runs ``--repeat`` times, 1 and 2
   workers in turn; the fastest run of each is reported (machines are noisy).
2. Per-job overhead: 200 ``noop`` jobs (sleep 0) on one worker; the wall time
   divided by the number of jobs is what the executor and the job bookkeeping
   (claim, attempt, commit) cost per job.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import tomli_w
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from obsflow.config import SiteConfig, load_config
from obsflow.db import make_engine
from obsflow.site import init_site

# The pool's spawned processes re-import this script, as they re-import the
# ``obsflow`` command: what only the parent needs is imported where it is used.

DASK = str(Path(sys.executable).parent / "dask")


def _configure(root: Path, **executor: object) -> SiteConfig:
    path = root / "obsflow.toml"
    data = tomllib.loads(path.read_text())
    data["ingest"]["settle_seconds"] = 0.0
    data["executor"].update(executor)
    path.write_text(tomli_w.dumps(data))
    return load_config(root, env={})


def _ingested_site(root: Path, sim_out: Path, files: list[str], database: str | None) -> Path:
    """A site at ``root`` (database: its SQLite file, or ``database``) with the sim ingested."""
    from obsflow.demo import _deliver_refs
    from obsflow.ingest.service import ingest_once

    init_site(root, env={})
    if database is not None:
        path = root / "obsflow.toml"
        data = tomllib.loads(path.read_text())
        data["database"] = {"url": database}
        path.write_text(tomli_w.dumps(data))
        init_site(root, env={})
    cfg = _configure(root)
    _deliver_refs(cfg, sim_out / "refs")
    for name in files:
        shutil.copyfile(sim_out / "downlink" / name, cfg.incoming_dir / name)
    ingest_once(cfg)
    return root


def _fresh_schema(base: str) -> str:
    """A new empty schema on the PostgreSQL server ``base``; its URL."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    return make_url(base).update_query_dict(
        {"options": f"-csearch_path={schema},public"}).render_as_string(hide_password=False)


def _preparer(folder: Path, exposures: int, subarray: str,
              postgres: str | None) -> Callable[[Path], None]:
    """A function making a freshly ingested site at a given path (SQLite: copy a template)."""
    from obsflow.simulate.run import SimOptions, simulate

    sim = simulate(folder / "sim", SimOptions(seed=3, exposures=exposures, subarray=subarray))
    if postgres is not None:
        base = postgres

        def fresh(root: Path) -> None:
            _ingested_site(root, sim.out, sim.downlink_files, _fresh_schema(base))

        return fresh
    template = _ingested_site(folder / "template", sim.out, sim.downlink_files, None)

    def copy(root: Path) -> None:
        shutil.copytree(template, root)

    return copy


def _cluster(folder: Path, workers: int) -> tuple[str, list[subprocess.Popen[bytes]]]:
    info = folder / f"scheduler-{workers}.json"
    common = ["--dashboard-address", "127.0.0.1:0"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--scheduler-file", str(info), *common], **quiet)]
    while not info.exists():
        time.sleep(0.1)
    for _ in range(workers):
        procs.append(subprocess.Popen([DASK, "worker", "--scheduler-file", str(info), "--host",
                                       "127.0.0.1", "--nthreads", "1", *common], **quiet))
    from distributed import Client

    with Client(scheduler_file=str(info), timeout=30) as client:
        client.wait_for_workers(workers, timeout=60)
        # a long-running cluster has imported obsflow already: the workers to run jobs,
        # the scheduler because it unpickles every task it is sent (~1.2 s of CPU the
        # first time, which would otherwise land inside the measured run)
        client.run(lambda: __import__("obsflow.calibrate.pipeline"))
        client.run_on_scheduler(lambda: __import__("obsflow.orchestrate.executors"))
        return client.scheduler.address, procs


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        proc.terminate()
    for proc in procs:
        proc.wait()


def _span(cfg: SiteConfig) -> float:
    """Seconds from the first job attempt's start to the last one's end."""
    engine = make_engine(cfg.database_url)
    with engine.connect() as conn:
        first, last = conn.exec_driver_sql(
            "SELECT MIN(started), MAX(finished) FROM job_attempts").one()
    engine.dispose()
    parse = datetime.fromisoformat
    return (parse(str(last)) - parse(str(first))).total_seconds()


def _run(prepare: Callable[[Path], None], folder: Path, name: str, noop: int = 0,
         **executor: object) -> tuple[float, float]:
    """(wall seconds including the executor's start-up, seconds of job processing)."""
    from obsflow.orchestrate import run_site
    from obsflow.orchestrate.jobs import JobSpec, RetryPolicy, enqueue_all

    root = folder / name
    prepare(root)
    cfg = _configure(root, **executor)
    if noop:
        engine = make_engine(cfg.database_url)
        with engine.begin() as conn:  # only the noop jobs: mark the events consumed
            conn.exec_driver_sql("UPDATE events SET consumed_at = created")
        enqueue_all(engine, [JobSpec("noop", f"noop:{k}", {"seconds": 0}) for k in range(noop)],
                    RetryPolicy())
        engine.dispose()
    started = time.perf_counter()
    summary = run_site(cfg)
    seconds = time.perf_counter() - started
    assert summary.total("failed") == 0, summary.counts
    span = _span(cfg)
    shutil.rmtree(root)
    return seconds, span


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exposures", type=int, default=16)
    parser.add_argument("--subarray", default="SUB640")
    parser.add_argument("--noop", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs of each configuration; the fastest is reported")
    parser.add_argument("--postgres", default=None, metavar="URL",
                        help="run the sites on this PostgreSQL server (a schema each) "
                             "instead of SQLite")
    args = parser.parse_args()
    runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        template = _preparer(folder, args.exposures, args.subarray, args.postgres)
        for rep in range(args.repeat):
            for workers in (1, 2):
                runs.setdefault(("local", workers), []).append(
                    _run(template, folder, f"l{workers}-{rep}", workers=workers))
            for workers in (1, 2):
                address, procs = _cluster(folder, workers)
                try:
                    runs.setdefault(("dask", workers), []).append(
                        _run(template, folder, f"d{workers}-{rep}", kind="dask",
                             dask_scheduler=address))
                finally:
                    _stop(procs)
        noop_local = _run(template, folder, "nl", noop=args.noop, workers=1)
        address, procs = _cluster(folder, 1)
        try:
            noop_dask = _run(template, folder, "nd", noop=args.noop, kind="dask",
                             dask_scheduler=address)
        finally:
            _stop(procs)
    print(f"batch: {args.exposures} planned exposures (webb_like {args.subarray}), "
          f"calibrate + register, database: {'PostgreSQL' if args.postgres else 'SQLite'}, "
          f"fastest of {args.repeat} runs")
    print("| executor | workers | processing (s) | speed-up | wall incl. start-up (s) | speed-up |")
    print("| --- | --- | --- | --- | --- | --- |")
    best = {key: (min(w for w, _ in times), min(s for _, s in times)) for key, times in runs.items()}
    for (kind, workers), (wall, span) in best.items():
        wall1, span1 = best[(kind, 1)]
        print(f"| {kind} | {workers} | {span:.1f} | {span1 / span:.2f}x | {wall:.1f} | "
              f"{wall1 / wall:.2f}x |")
    for kind in ("local", "dask"):
        pairs = zip(runs[(kind, 1)], runs[(kind, 2)], strict=True)
        ratios = [f"{s1 / s2:.2f}x" for (_, s1), (_, s2) in pairs]
        print(f"{kind}: processing speed-up of each run: {', '.join(ratios)}")
    print(f"per-job overhead ({args.noop} noop jobs, 1 worker, wall / jobs): local "
          f"{1000 * noop_local[0] / args.noop:.1f} ms, dask {1000 * noop_dask[0] / args.noop:.1f} ms")


if __name__ == "__main__":
    main()
