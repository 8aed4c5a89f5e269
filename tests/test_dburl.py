"""obsflow.dburl reads database URLs as SQLAlchemy's make_url does (without importing it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from obsflow.dburl import backend_name, parse_url, sqlite_path
from obsflow.exceptions import ConfigError, UnknownOptionError

URLS = [
    "sqlite://", "sqlite:///:memory:", "sqlite:///relative/site.db", "sqlite:////abs/site.db",
    "sqlite+pysqlite:////abs/a%20b.db", "sqlite:///file:x.db?mode=ro&uri=true",
    "sqlite:////abs/site.db?timeout=5", "postgresql://obsflow@db/obsflow",
    "postgresql+psycopg://u:p%40ss@[::1]:5432/obs?options=-csearch_path%3Dx",
    "postgresql://u@host:54329/db", "postgresql:///local", "mysql://u@h/d",
]


def _same_as_make_url(url: str) -> None:
    ours, theirs = parse_url(url), make_url(url)
    assert ours.drivername == theirs.drivername
    assert ours.backend == theirs.get_backend_name()
    assert ours.host == theirs.host
    assert ours.database == theirs.database


@pytest.mark.parametrize("url", URLS)
def test_parts_are_make_urls(url: str) -> None:
    _same_as_make_url(url)


@given(st.text(alphabet="abc+:/@?=&%[]. 019", max_size=40))
def test_any_text_parses_as_make_url_does_or_is_refused(text: str) -> None:
    try:
        theirs = make_url(text)
    except Exception:  # noqa: BLE001  (ArgumentError, or ValueError for a port)
        with pytest.raises(ConfigError):
            parse_url(text)
        return
    ours = parse_url(text)
    assert (ours.drivername, ours.host, ours.database) == (theirs.drivername, theirs.host,
                                                          theirs.database)


def test_sqlite_path_and_backend() -> None:
    assert sqlite_path("sqlite:////abs/site.db") == Path("/abs/site.db")
    assert sqlite_path("sqlite:///rel/a%20b.db") == Path("rel/a b.db")
    assert sqlite_path("sqlite://") is None and sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("sqlite:///file:x.db?mode=ro") is None
    assert sqlite_path("postgresql://u@h/d") is None
    assert backend_name("postgresql+psycopg://u@h/d") == "postgresql"
    with pytest.raises(UnknownOptionError, match="allowed: postgresql, sqlite"):
        backend_name("mysql://u@h/d")
    with pytest.raises(ConfigError, match="not a database URL"):
        backend_name("obsflow.db")
    with pytest.raises(ConfigError, match="port 'x' is not a number"):
        parse_url("postgresql://u@h:x/d")
