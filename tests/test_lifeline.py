"""Workers die with their orchestrator from their first import of obsflow (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from obsflow._lifeline import ORCHESTRATOR_VARIABLE

_WORKER = ("import os, time, obsflow; "
           "print(os.environ.get('OBSFLOW_ORCHESTRATOR_PID', 'popped'), flush=True); "
           "time.sleep(60)")

_ORCHESTRATOR = f"""
import os, subprocess, sys, time
os.environ[{ORCHESTRATOR_VARIABLE!r}] = str(os.getpid())
child = subprocess.Popen([sys.executable, "-c", {_WORKER!r}])
print(child.pid, flush=True)
time.sleep(60)
"""


def test_a_worker_dies_within_a_second_of_its_orchestrator() -> None:
    orchestrator = subprocess.Popen([sys.executable, "-c", _ORCHESTRATOR], stdout=subprocess.PIPE,
                                    text=True)
    assert orchestrator.stdout is not None
    with orchestrator.stdout:
        worker = psutil.Process(int(orchestrator.stdout.readline()))
        time.sleep(0.5)  # the worker is past its import of obsflow (it is light) and sleeps
        assert worker.is_running()
        orchestrator.send_signal(signal.SIGKILL)
        orchestrator.wait()
        killed = time.monotonic()
        while _alive(worker) and time.monotonic() - killed < 5:
            time.sleep(0.01)
        outlived = time.monotonic() - killed
        if _alive(worker):
            worker.kill()
    assert outlived <= 1.0, f"the worker outlived its orchestrator by {outlived:.2f} s"


def _alive(process: psutil.Process) -> bool:
    """Running and not a zombie (a dead child of init may wait a while to be reaped)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)


def test_a_worker_orphaned_before_its_first_import_exits_at_once() -> None:
    env = {**os.environ, ORCHESTRATOR_VARIABLE: str(_dead_pid())}
    done = subprocess.run([sys.executable, "-c", _WORKER], env=env, capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 1 and done.stdout == ""


def test_other_processes_are_left_alone_and_do_not_pass_the_name_on() -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # a live process that is not the parent: e.g. started through a shell
        env = {**os.environ, ORCHESTRATOR_VARIABLE: str(bystander.pid)}
        code = _WORKER.replace("time.sleep(60)", "pass")
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=30, check=False)
        assert done.returncode == 0 and done.stdout.strip() == "popped"
    finally:
        bystander.kill()
        bystander.wait()
    env = {k: v for k, v in os.environ.items() if k != ORCHESTRATOR_VARIABLE}
    done = subprocess.run([sys.executable, "-c", _WORKER.replace("time.sleep(60)", "pass")],
                          env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "popped"
