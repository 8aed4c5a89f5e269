"""The archive of a site: its database engine, product store and settings.

:class:`Archive` is what the pipeline, the commands and the HTTP API hold;
build it from a site with :meth:`Archive.from_site` (or by hand in tests) and
:meth:`Archive.close` it when done.  Functions that write to the catalog take
an ``Archive``, a :class:`~obsflow.config.SiteConfig`, or a caller's open
SQLAlchemy ``Session`` plus the :class:`ArchiveSettings` (then the caller
commits); :func:`unit_of_work` turns any of the three into a session.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from obsflow.archive.policy import check_policy
from obsflow.archive.store import ProductStore
from obsflow.db import make_engine
from obsflow.exceptions import ArchiveError
from obsflow.migrations import init_schema
from obsflow.profiles import Profile

if TYPE_CHECKING:
    from obsflow.config import SiteConfig

__all__ = ["Archive", "ArchiveSettings", "opened", "unit_of_work"]


@dataclass(frozen=True)
class ArchiveSettings:
    """What registration needs besides the database.

    Attributes
    ----------
    store : ProductStore
        Where product files and previews go.
    default_exclusive_months : int
        Exclusive-access period of a program first seen in a product header.
    profile : Profile or None
        Observatory profile (filter bands, resolution); None leaves
        ``em_min``/``em_max``/``s_resolution`` empty.
    authority : str
        IVOA authority of publisher DIDs: ``ivo://<authority>/obsflow?<product_id>``.
    access_policy : str
        What others are told of proprietary data: ``metadata`` or ``hidden``
        (see :mod:`obsflow.archive.policy`).
    """

    store: ProductStore
    default_exclusive_months: int = 12
    profile: Profile | None = None
    authority: str = "obsflow.local"
    access_policy: str = "metadata"

    def __post_init__(self) -> None:
        check_policy(self.access_policy)

    @classmethod
    def of_site(cls, cfg: SiteConfig) -> ArchiveSettings:
        """The settings of a site: its store, profile, authority and access policy."""
        profile = cfg.load_profile()
        return cls(store=ProductStore(cfg.archive.store_url or cfg.products_dir),
                   default_exclusive_months=profile.mission.default_exclusive_access_months,
                   profile=profile, authority=f"{cfg.site.name or 'obsflow'}.obsflow",
                   access_policy=cfg.archive.access_policy)


def _sqlite_sphere_functions(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Register the spherical-geometry functions (footprint search, ADQL geometry) of
    :mod:`obsflow.archive.vo.sphere` on a SQLite connection, once per connection."""
    if not record.info.get("obsflow_sphere"):
        from obsflow.archive.vo.sphere import sqlite_functions

        for name, (count, function) in sqlite_functions().items():
            dbapi_connection.create_function(name, count, function, deterministic=True)
        record.info["obsflow_sphere"] = True


@dataclass
class Archive:
    """A site's archive: engine, session factory and :class:`ArchiveSettings`."""

    engine: Engine
    settings: ArchiveSettings

    def __post_init__(self) -> None:
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if self.engine.dialect.name == "sqlite" and not event.contains(
                self.engine, "checkout", _sqlite_sphere_functions):
            event.listen(self.engine, "checkout", _sqlite_sphere_functions)

    @classmethod
    def from_site(cls, cfg: SiteConfig) -> Archive:
        """Open the archive of a site (runs pending migrations)."""
        settings = ArchiveSettings.of_site(cfg)
        engine = make_engine(cfg.database_url)
        init_schema(engine, profile=cfg.profile.name)
        return cls(engine, settings)

    @classmethod
    def from_url(cls, url: str, settings: ArchiveSettings) -> Archive:
        """Open (and migrate) the archive in the database at ``url``."""
        engine = make_engine(url)
        init_schema(engine)
        return cls(engine, settings)

    def session(self) -> Session:
        """A new ORM session (use as a context manager)."""
        return self._sessions()

    def close(self) -> None:
        """Dispose of the engine's connections."""
        self.engine.dispose()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



@contextmanager
def opened(target: Archive | SiteConfig) -> Iterator[Archive]:
    """``target`` itself when it is an :class:`Archive`, else the site's archive (closed after)."""
    archive = target if isinstance(target, Archive) else Archive.from_site(target)
    try:
        yield archive
    finally:
        if archive is not target:
            archive.close()


@contextmanager
def unit_of_work(target: Archive | SiteConfig | Session,
                 settings: ArchiveSettings | None = None
                 ) -> Iterator[tuple[Session, ArchiveSettings]]:
    """A session and settings for ``target``; commits at the end unless the caller owns it."""
    if isinstance(target, Session):
        if settings is None:
            raise ArchiveError("pass settings=ArchiveSettings(...) when registering "
                               "through your own Session (the store is needed)")
        yield target, settings
        target.flush()
        return
    with opened(target) as archive, archive.session() as session, session.begin():
        yield session, settings or archive.settings
