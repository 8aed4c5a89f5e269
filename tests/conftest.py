"""Fixtures shared by every test package.

``db_url`` / ``module_db_url``: an empty database on each backend the suite
runs on, as a SQLAlchemy URL string.  SQLite is a file in a temporary
folder; PostgreSQL is a fresh schema (first on the ``search_path``, with
``public`` after it so pg_sphere's functions resolve) in the server named by
``OBSFLOW_TEST_POSTGRES_URL`` (``make test`` starts one with
``.ci/postgres.sh``).  Without that variable the PostgreSQL cases fail with
a message saying how to get one: a missing server is never a silent skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_ENV = "OBSFLOW_TEST_POSTGRES_URL"
BACKENDS = ["sqlite", "postgresql"]


@contextmanager
def fresh_database(backend: str, folder: Path) -> Iterator[str]:
    """An empty database on ``backend`` (``sqlite``: a file in ``folder``), as a URL."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / f'test-{uuid.uuid4().hex[:8]}.db'}"
        return
    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.fail(f"{POSTGRES_ENV} is not set: the PostgreSQL half of the database suite "
                    "needs a server; run `make test` (it starts one with .ci/postgres.sh) or "
                    f"export {POSTGRES_ENV}=$(bash .ci/postgres.sh)", pytrace=False)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema},public"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database for one test, on each backend."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def module_db_url(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database shared by the tests of one module, on each backend."""
    with fresh_database(request.param, tmp_path_factory.mktemp("db")) as url:
        yield url


# -- disk: a module's temporary folders go when its fixtures do -------------------------------
#
# The suite simulates several GB of telemetry.  A test's own ``tmp_path`` is
# removed when it passes (``tmp_path_retention_policy`` in pyproject.toml); the
# folders a module- or class-scoped fixture makes with ``tmp_path_factory``
# would stay until the session ends, so they are removed when that fixture is
# torn down.  A folder is the fixture's if it appeared under the worker's base
# temporary folder while the fixture was being set up (fixtures of one worker
# are set up one at a time; the fixtures it depends on were set up before).

_SHORT_SCOPES = ("module", "class")


def _tmp_children(request: pytest.FixtureRequest) -> set[Path]:
    base = request.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    return set(base.iterdir())


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[object],
                         request: pytest.FixtureRequest) -> object:
    if fixturedef.scope not in _SHORT_SCOPES:
        return (yield)
    before = _tmp_children(request)
    try:
        return (yield)
    finally:
        made = sorted(_tmp_children(request) - before)
        fixturedef.addfinalizer(lambda: _remove(made))


def _remove(folders: list[Path]) -> None:
    import shutil

    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
