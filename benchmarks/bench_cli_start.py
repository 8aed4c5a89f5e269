"""Benchmark: how fast `obsflow --help` and the light commands start (issue 15: at most 0.5 s).

Each command runs in a new interpreter (as a user types it), ``--repeat``
times; the median wall time is printed beside anchors measured in the same
run: a bare interpreter, the interpreter importing SQLAlchemy + pydantic (the
floor of any command that opens a site) and the import of the whole CLI the
old way (every command module eagerly: what each command paid before).

    .venv/bin/python benchmarks/bench_cli_start.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _median_seconds(args: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        subprocess.run([py, "-m", "obsflow", "init", str(site)], check=True, stdout=subprocess.DEVNULL)
        rows = [
            ("anchor: python -c pass", [py, "-c", "pass"]),
            ("anchor: import sqlalchemy.orm, pydantic", [py, "-c", "import sqlalchemy.orm, pydantic"]),
            ("anchor: every command module imported (before)",
             [py, "-c", "import obsflow.cli as c; [c.main.get_command(None, n) for n in c.LAZY_COMMANDS]"]),
            ("obsflow --help", [py, "-m", "obsflow", "--help"]),
            ("obsflow status", [py, "-m", "obsflow", "status", "--site", str(site)]),
            ("obsflow jobs", [py, "-m", "obsflow", "jobs", "--site", str(site)]),
            ("obsflow refs contexts", [py, "-m", "obsflow", "refs", "contexts", "--site", str(site)]),
        ]
        _median_seconds(rows[0][1], 2)  # warm the file cache
        print(f"median of {args.repeat} runs, wall seconds (target: --help and light commands <= 0.5 s)")
        print("| command | s |\n|---|---:|")
        for name, cmd in rows:
            print(f"| {name} | {_median_seconds(cmd, args.repeat):.3f} |")


if __name__ == "__main__":
    main()
