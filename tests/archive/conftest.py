"""Archive fixtures: an :class:`Archive` on each backend, a live uvicorn server, and
:func:`live_site`, the two together with users and registered products."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import uvicorn
from fastapi import FastAPI

from obsflow.archive.context import Archive, ArchiveSettings
from obsflow.archive.server import server_config
from obsflow.archive.store import ProductStore
from obsflow.profiles import load_profile

if TYPE_CHECKING:
    from fastapi import APIRouter

    from obsflow.archive.api import ApiSettings


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


@dataclass
class LiveSite:
    """A live archive (see :func:`live_site`)."""

    url: str
    """Base URL of the server, ``http://127.0.0.1:PORT``."""
    archive: Archive
    tokens: dict[str, str]
    """API token of each user :func:`add_people` made (empty with ``people=False``)."""
    ids: dict[str, str]
    """Product id of each registered file, by the key it was given under."""
    files: dict[str, Path]
    """The registered files, by key."""


@contextmanager
def live_site(db_url: str, folder: Path, settings: ApiSettings, *,
              files: Mapping[str, Path] | Callable[[Archive], Mapping[str, Path]] | None = None,
              routers: Sequence[APIRouter] = (), people: bool = True,
              access_policy: str = "metadata") -> Iterator[LiveSite]:
    """An archive at ``db_url`` (store in ``folder/store``) served live while the block runs.

    In order: the archive (:func:`make_archive`), its users and programs
    (:func:`add_people`, unless ``people`` is false), then ``files`` registered
    (a mapping key -> product file, or a function of the archive that makes
    its own programs and products and returns that mapping), then the app
    (:func:`~obsflow.archive.api.create_app` with ``settings`` and ``routers``)
    under :func:`live_server`.  The archive is closed afterwards.
    """
    from obsflow.archive.api import create_app
    from obsflow.archive.register import register_product

    archive = make_archive(db_url, folder / "store", access_policy=access_policy)
    try:
        tokens = add_people(archive) if people else {}
        made = dict(files(archive) if callable(files) else files or {})
        ids = {key: register_product(archive, path).product_id for key, path in made.items()}
        app = create_app(archive, settings, routers=routers)
        with live_server(app) as url:
            yield LiveSite(url, archive, tokens, ids, made)
    finally:
        archive.close()
