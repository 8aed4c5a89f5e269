"""Benchmark: how fast `obsflow --help` and the light commands start (issue 15: at most 0.5 s).

Each command runs in a new interpreter (as a user types it), ``--repeat``
times, the commands taking turns so a machine's changing load falls on all
of them alike.  Printed: the median wall seconds and the median CPU seconds
(user + system of the child process).  Start-up is single-threaded, so on a
quiet machine wall time is about the CPU time; on a loaded one the CPU
column is the figure to compare with the 0.5 s target, and the anchors
measured in the same run say what the floor is: a bare interpreter; what a
light command imports now (click, rich's tables, pydantic for the typed
configuration, sqlite3: on a SQLite site `status`, `jobs`, `refs contexts`
and `refs best` read with sqlite3 and import no SQLAlchemy); what they
imported before (SQLAlchemy, its ORM and pydantic; astropy's FITS and time
for `refs best`, which now reads the product's headers in pure Python); and
the import of the whole CLI the old way (every command module eagerly).  The
best CPU time of the runs is printed too: on a loaded machine it is the
nearest to a quiet one's.

    .venv/bin/python benchmarks/bench_cli_start.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(args: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one run of ``args``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited with {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def _site_with_product(py: str, tmp: Path) -> tuple[Path, Path]:
    """A smallsat site with the simulator's reference files delivered, and one ``_uncal`` file."""
    site, sim = tmp / "site", tmp / "sim"
    quiet = {"check": True, "stdout": subprocess.DEVNULL}
    subprocess.run([py, "-m", "obsflow", "init", str(site), "--profile", "smallsat"], **quiet)
    subprocess.run([py, "-m", "obsflow", "simulate", "--out", str(sim), "--profile", "smallsat",
                    "--exposures", "1", "--subarray", "64", "--level1"], **quiet)
    subprocess.run([py, "-m", "obsflow", "refs", "deliver", "--site", str(site),
                    *map(str, sorted((sim / "refs").glob("*.fits")))], **quiet)
    return site, next((sim / "level1").glob("*_uncal.fits"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    py = sys.executable
    import obsflow

    # byte-compile obsflow as an install does (a source tree run with PYTHONDONTWRITEBYTECODE
    # set would otherwise compile every module on every start: a tenth of a second)
    compileall.compile_dir(Path(obsflow.__file__).parent, quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        site, uncal = _site_with_product(py, Path(tmp))
        obsflow = [py, "-m", "obsflow"]
        rows = [
            ("anchor: python -c pass", [py, "-c", "pass"]),
            ("anchor: import click, rich.table, pydantic, sqlite3 (a light command's floor now)",
             [py, "-c", "import click, rich.table, pydantic, sqlite3; from pydantic import BaseModel"]),
            ("anchor: import sqlalchemy.orm, pydantic (what the light commands imported before)",
             [py, "-c", "import sqlalchemy.orm, pydantic"]),
            ("anchor: import astropy.io.fits, astropy.time (refs best before)",
             [py, "-c", "import astropy.io.fits, astropy.time"]),
            ("anchor: every command module imported (before)",
             [py, "-c", "import obsflow.cli as c; [c.main.get_command(None, n) for n in c.LAZY_COMMANDS]"]),
            ("obsflow --help", [*obsflow, "--help"]),
            ("obsflow status", [*obsflow, "status", "--site", str(site)]),
            ("obsflow jobs", [*obsflow, "jobs", "--site", str(site)]),
            ("obsflow refs contexts", [*obsflow, "refs", "contexts", "--site", str(site)]),
            ("obsflow refs best", [*obsflow, "refs", "best", "--site", str(site), str(uncal)]),
        ]
        _run(rows[0][1])  # warm the file cache
        for _, cmd in rows:
            _run(cmd)
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in rows}
        for _ in range(args.repeat):
            for name, cmd in rows:
                runs[name].append(_run(cmd))
        load = os.getloadavg()[0]
        print(f"median of {args.repeat} runs taking turns, load {load:.1f} on {os.cpu_count()} cores "
              "(target: --help and light commands <= 0.5 s)")
        print("| command | wall s | CPU s | best CPU s |\n|---|---:|---:|---:|")
        for name, _ in rows:
            wall = statistics.median(w for w, _ in runs[name])
            cpu = statistics.median(c for _, c in runs[name])
            best = min(c for _, c in runs[name])
            print(f"| {name} | {wall:.3f} | {cpu:.3f} | {best:.3f} |")


if __name__ == "__main__":
    main()
