"""Archive fixtures: an :class:`Archive` on each backend and a live uvicorn server."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from obsflow.archive.context import Archive, ArchiveSettings
from obsflow.archive.server import server_config
from obsflow.archive.store import ProductStore
from obsflow.profiles import load_profile


def make_archive(url: str, store_root: Path | str, access_policy: str = "metadata") -> Archive:
    """A migrated archive with the smallsat profile (6 months default exclusive access)."""
    settings = ArchiveSettings(store=ProductStore(store_root), default_exclusive_months=6,
                               profile=load_profile("smallsat"), access_policy=access_policy)
    return Archive.from_url(url, settings)


@pytest.fixture
def archive(db_url: str, tmp_path: Path) -> Iterator[Archive]:
    """An empty archive on each backend, store in ``tmp_path/store``."""
    arch = make_archive(db_url, tmp_path / "store")
    yield arch
    arch.close()


def add_people(archive: Archive) -> dict[str, str]:
    """Users and programs of the access tests; returns each user's API token.

    ``alice`` is a member of 01234 (12 months of exclusive access), ``bob``
    of 05678 (12 months, another program); 03456 is public at once.  Their
    passwords (for the login form) are ``alice-pw`` and ``bob-pw``.
    """
    from obsflow.archive.register import register_program
    from obsflow.archive.users import add_user, create_token

    with archive.session() as session, session.begin():
        for name in ("alice", "bob"):
            add_user(session, name, password=f"{name}-pw")
    register_program(archive, "01234", exclusive_months=12, members=["alice"])
    register_program(archive, "03456", exclusive_months=0)
    register_program(archive, "05678", exclusive_months=12, members=["bob"])
    with archive.session() as session, session.begin():
        return {name: create_token(session, name) for name in ("alice", "bob")}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def live_server(app: FastAPI, trusted_proxies: tuple[str, ...] = ()) -> Iterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1 in a thread, configured as ``obsflow serve``
    configures it (:func:`~obsflow.archive.server.server_config`); yield its base URL."""
    port = free_port()
    config = server_config(app, "127.0.0.1", port, trusted_proxies, log_level="warning",
                           access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def fitsverify(path: Path) -> None:
    """Assert that Debian's fitsverify finds no error (nor warning) in ``path``."""
    result = subprocess.run(["fitsverify", "-q", str(path)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0 and "verification OK" in result.stdout, result.stdout + result.stderr
