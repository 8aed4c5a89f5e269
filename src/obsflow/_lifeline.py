"""Pool workers die with their orchestrator: armed before any heavy import.

A worker of the local process pool is a fresh interpreter (``spawn``) that
imports obsflow (seconds of imports) before it runs any code the pool hands
it.  So that it never outlives a killed orchestrator by more than a moment,
the orchestrator names itself in :data:`ORCHESTRATOR_VARIABLE` before it
starts workers, and the first import of :mod:`obsflow` in a child calls
:func:`arm_from_environment` (standard library only, a few milliseconds):

* the child's parent is that orchestrator: ask Linux for SIGKILL when the
  parent dies (``prctl(PR_SET_PDEATHSIG)``), then check the parent did not
  die before that took effect (the child is then an orphan: exit at once);
* any other process (a grandchild, or no variable): nothing happens.

Elsewhere than Linux nothing is armed (workers then end when their pool's
pipes close, as the standard library arranges).
"""

from __future__ import annotations

import os
import sys

__all__ = ["ORCHESTRATOR_VARIABLE", "arm_from_environment", "die_with_parent"]

ORCHESTRATOR_VARIABLE = "OBSFLOW_ORCHESTRATOR_PID"
"""Environment variable naming the pid of the orchestrator whose workers must die with it."""

_PR_SET_PDEATHSIG = 1
_SIGKILL = 9


def die_with_parent(parent_pid: int) -> bool:
    """On Linux, SIGKILL this process when ``parent_pid`` (its parent) dies; True if armed.

    Exits at once (status 1) when the parent is already gone.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        armed = libc.prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover - no prctl in this libc
        return False
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    return armed


def arm_from_environment() -> bool:
    """:func:`die_with_parent` if this process is a worker of the orchestrator the environment
    names; True if armed.

    The variable is removed from the worker's environment once read, so the worker's own
    subprocesses are not taken for workers.  A process that sees it, whose parent is not the
    orchestrator, and the orchestrator has exited, was a worker orphaned before it got here
    (handed to init): it exits at once.
    """
    value = os.environ.get(ORCHESTRATOR_VARIABLE, "")
    if not value.isdigit() or os.getpid() == int(value):
        return False  # no orchestrator named, or this is the orchestrator itself
    del os.environ[ORCHESTRATOR_VARIABLE]
    if os.getppid() != int(value):
        if _gone(int(value)):
            os._exit(1)
        return False  # started by another process the orchestrator started: not a worker
    return die_with_parent(int(value))


def _gone(pid: int) -> bool:
    """True if process ``pid`` has exited (a zombie not yet reaped counts as exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state in (b"Z", b"X")
