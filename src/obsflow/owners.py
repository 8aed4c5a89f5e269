"""Who holds an ingest claim or runs a job: ``host:pid`` owner strings.

Ingest claims (:mod:`obsflow.ingest.rawstore`) and job attempts
(:mod:`obsflow.orchestrate.jobs`) record their owner this way, so that a
process on the same host can tell a dead owner from a live one.
"""

from __future__ import annotations

import os
import socket

__all__ = ["owner_alive", "process_id"]


def process_id() -> str:
    """This process as ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str) -> bool:
    """False only for a ``host:pid`` owner on this host whose process is gone.

    Another host's owner, or a string that is not ``host:pid``, counts as alive
    (it cannot be checked from here, and a live owner must never be robbed).
    """
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
