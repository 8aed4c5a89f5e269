"""A real Dask cluster for tests: ``dask scheduler`` + ``dask worker`` processes on 127.0.0.1.

Kept free of obsflow imports: spawned pool processes of some tests import
test modules that use it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

DASK = str(Path(sys.executable).parent / "dask")

_COMMON = ["--dashboard-address", "127.0.0.1:0"]


class DaskCluster:
    """Start with :meth:`start`; :meth:`add_worker` for more; :meth:`stop` (workers first)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.info = folder / "scheduler.json"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.address = ""

    def start(self, workers: int) -> DaskCluster:
        """Start the scheduler and ``workers`` workers; wait until they are all connected."""
        self.procs.append(subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0",
             "--scheduler-file", str(self.info), *_COMMON],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 30
        while not self.info.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the Dask scheduler did not write its scheduler file")
            time.sleep(0.1)
        for _ in range(workers):
            self.add_worker()
        from distributed import Client

        with Client(scheduler_file=str(self.info), timeout=30, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=60)
            self.address = client.scheduler.address
        return self

    def add_worker(self) -> None:
        """Start one more ``dask worker --nthreads 1`` (with its nanny)."""
        self.procs.append(subprocess.Popen(
            [DASK, "worker", "--scheduler-file", str(self.info), "--host", "127.0.0.1",
             "--nthreads", "1", "--local-directory", str(self.folder), *_COMMON],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    @property
    def pids(self) -> list[int]:
        """Scheduler first, then the workers (nanny processes)."""
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        """Workers first, while the scheduler can still take their goodbyes, then the scheduler."""
        for group in (self.procs[1:], self.procs[:1]):
            for proc in group:
                proc.terminate()
            for proc in group:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
