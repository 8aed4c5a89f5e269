"""Create and open an obsflow site: a folder with ``obsflow.toml``, data folders and a database.

A site looks like this (folder names are configurable in ``[paths]``)::

    <root>/
      obsflow.toml   configuration (see obsflow.config)
      obsflow.db     SQLite catalog (unless [database] url points elsewhere)
      incoming/      downlink drop folder, polled by ingest
      raw/           Level-0 raw archive, never modified
      products/      product store
      refs/          calibration reference files
      quarantine/    files that failed checks
      logs/          job and service logs

:func:`init_site` creates one (idempotently); :func:`open_site` loads an
existing one and refuses a folder that is not a site.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from obsflow.config import (
    CONFIG_FILENAME,
    DEFAULT_PROFILE,
    SiteConfig,
    load_config,
    write_config,
)
from obsflow.dbread import SqliteReader
from obsflow.dburl import sqlite_path
from obsflow.exceptions import SiteError
from obsflow.fileio import sweep_temp_files
from obsflow.migrations import schema_is_complete

__all__ = ["init_site", "open_site", "sweep_site"]

logger = logging.getLogger(__name__)


def _site_root(root: Path) -> Path:
    root = Path(root).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise SiteError(f"cannot make an obsflow site at {root}: it is a file, not a folder")
    return root


def _profile_ref(profile: str) -> str:
    """A profile given as a path is stored absolute (it was relative to the cwd)."""
    if profile.endswith(".toml"):
        return str(Path(profile).expanduser().resolve())
    return profile


def _write_new_config(root: Path, profile: str) -> None:
    """Validate the profile, then write a default ``obsflow.toml`` for it."""
    cfg = SiteConfig.for_root(root, profile=_profile_ref(profile))
    cfg.load_profile()
    root.mkdir(parents=True, exist_ok=True)
    write_config(cfg, cfg.config_path)
    logger.info("wrote %s", cfg.config_path)


def _create_folders(cfg: SiteConfig) -> None:
    for path in cfg.folders.values():
        if not path.is_dir():
            path.mkdir(parents=True, exist_ok=True)
            logger.info("created %s", path)


def _sqlite_is_complete(cfg: SiteConfig) -> bool:
    """Whether the site's SQLite database needs nothing from :func:`init_schema` (read with
    :mod:`sqlite3`: opening a current site imports no SQLAlchemy)."""
    path = sqlite_path(cfg.database_url)
    if path is None or not path.is_file():
        return False
    with SqliteReader(path) as db:
        return schema_is_complete(db, cfg.profile.name)


def _init_database(cfg: SiteConfig) -> None:
    """Create or upgrade the site's schema and ``site_info`` (nothing when already complete)."""
    if _sqlite_is_complete(cfg):
        return
    from obsflow.db import make_engine
    from obsflow.migrations import init_schema

    engine = make_engine(cfg.database_url)
    try:
        init_schema(engine, profile=cfg.profile.name)
    finally:
        engine.dispose()


def init_site(
    root: Path,
    *,
    profile: str | None = None,
    force: bool = False,
    env: Mapping[str, str] | None = None,
) -> SiteConfig:
    """Create (or complete) a site at ``root`` and return its configuration.

    Creates ``root``, writes ``obsflow.toml`` if it is absent, creates every
    data folder and the database schema.  Idempotent: on an existing site
    the configuration is kept and loaded, and nothing that exists changes.

    Parameters
    ----------
    root : pathlib.Path
        Site folder (created if missing).
    profile : str, optional
        Observatory profile for a new configuration: a built-in name or the
        path of a profile ``.toml``.  Default ``"webb_like"`` for a new site;
        on an existing site, None keeps the configured profile.
    force : bool
        Overwrite an existing ``obsflow.toml`` with a fresh default one.
    env : Mapping[str, str], optional
        Environment for ``OBSFLOW_*`` overrides (default ``os.environ``).

    Raises
    ------
    SiteError
        ``root`` is a file, or the existing site uses another profile than
        ``profile`` (pass ``force=True`` to rewrite its configuration).
    ConfigError
        The existing ``obsflow.toml`` is invalid.
    ProfileError, UnknownOptionError
        The profile is invalid or unknown; nothing is created in that case.
    """
    root = _site_root(root)
    keep = (root / CONFIG_FILENAME).is_file() and not force
    if not keep:
        _write_new_config(root, profile or DEFAULT_PROFILE)
    cfg = load_config(root, env)
    if keep and profile is not None and _profile_ref(profile) != cfg.profile.name:
        raise SiteError(
            f"the site at {root} uses profile {cfg.profile.name!r}, not {profile!r}; "
            f"run `obsflow init {root} --force --profile {profile}` to rewrite its config"
        )
    cfg.load_profile()
    _create_folders(cfg)
    _init_database(cfg)
    return cfg


def open_site(root: Path, env: Mapping[str, str] | None = None) -> SiteConfig:
    """Load an existing site's configuration, checking the site is complete.

    Parameters
    ----------
    root : pathlib.Path
        Site folder.
    env : Mapping[str, str], optional
        Environment for ``OBSFLOW_*`` overrides (default ``os.environ``).

    Raises
    ------
    SiteError
        ``root`` holds no ``obsflow.toml``, or a data folder or the SQLite
        database is missing; the message says to run ``obsflow init``.
    ConfigError
        ``obsflow.toml`` is invalid.
    """
    root = Path(root).expanduser().resolve()
    if not (root / CONFIG_FILENAME).is_file():
        raise SiteError(f"no obsflow site at {root}; run `obsflow init {root}`")
    cfg = load_config(root, env)
    missing = [path for path in cfg.folders.values() if not path.is_dir()]
    database = sqlite_path(cfg.database_url)
    if database is not None and not database.is_file():
        missing.append(database)
    if missing:
        listed = ", ".join(str(path) for path in missing)
        raise SiteError(
            f"the obsflow site at {root} is incomplete (missing: {listed}); "
            f"run `obsflow init {root}`"
        )
    _init_database(cfg)  # upgrades a site made by an earlier release in place
    return cfg


def _swept_folders(cfg: SiteConfig) -> list[Path]:
    """The site's data folders and a local product store, none inside another."""
    folders = [path.resolve() for path in cfg.folders.values()]
    store = cfg.archive.store_url
    if store is not None and ("://" not in store or store.startswith("file://")):
        folders.append(Path(store.removeprefix("file://")).expanduser().resolve())
    return [path for path in sorted(set(folders))
            if not any(path != other and path.is_relative_to(other) for other in folders)]


def sweep_site(cfg: SiteConfig, min_age_seconds: float | None = None) -> list[Path]:
    """Remove the temporary files writers killed mid-write left anywhere in the site.

    Looks in every data folder (incoming, raw, products, refs, quarantine,
    logs, and a local ``archive.store_url``) and at the site root (the
    configuration's own temporary file), and removes the files
    :func:`obsflow.fileio.atomic_path` names that no live writer holds and that
    were last written more than ``min_age_seconds`` ago (default
    ``executor.stale_temp_seconds``); see :func:`obsflow.fileio.sweep_temp_files`.
    A remote (fsspec) product store is not swept: its writes are single puts.
    Returns the paths removed.
    """
    age = cfg.executor.stale_temp_seconds if min_age_seconds is None else min_age_seconds
    removed = sweep_temp_files(cfg.root, age, recursive=False)
    for folder in _swept_folders(cfg):
        removed += sweep_temp_files(folder, age)
    for path in removed:
        logger.info("removed %s, left by a writer that was killed", path)
    return removed
