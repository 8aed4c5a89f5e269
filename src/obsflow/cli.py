"""The ``obsflow`` command.

Each subcommand is a small function registered on :func:`main`, a
:class:`ObsflowGroup`: any :class:`~obsflow.exceptions.ObsflowError` raised
by a subcommand is printed as one red line ``error: ...`` on stderr and the
command exits with status 2 (no traceback; ``-v`` adds one to the log).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from obsflow import __version__
from obsflow.config import CONFIG_FILENAME, SiteConfig, default_site_root, load_config
from obsflow.db import sqlite_path
from obsflow.exceptions import ObsflowError
from obsflow.profiles import Profile, builtin_profiles, load_profile
from obsflow.site import init_site

__all__ = ["ObsflowGroup", "main"]

ERROR_EXIT_CODE = 2
"""Exit status of a command that failed with an :class:`ObsflowError`."""

logger = logging.getLogger(__name__)


class ObsflowGroup(click.Group):
    """A click group that turns :class:`ObsflowError` into ``error: ...`` and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; report an :class:`ObsflowError` in one line."""
        try:
            return super().invoke(ctx)
        except ObsflowError as exc:
            logger.debug("command failed", exc_info=True)
            message = Text.assemble(("error: ", "bold red"), (str(exc), "red"))
            Console(stderr=True).print(message, soft_wrap=True, highlight=False)
            ctx.exit(ERROR_EXIT_CODE)


def _console() -> Console:
    return Console(highlight=False)


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.WARNING
    logging.getLogger("obsflow").setLevel(level)
    if verbose:
        logging.basicConfig(
            level=level,
            format="%(message)s",
            handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
        )


@click.group(cls=ObsflowGroup)
@click.version_option(__version__, prog_name="obsflow")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """obsflow: science data processing for space telescopes."""
    _setup_logging(verbose)


def _planned_paths(root: Path) -> list[Path]:
    """Paths ``init`` may create at ``root`` (to tell created from kept afterwards)."""
    candidates = [SiteConfig.for_root(root)]
    if (root / CONFIG_FILENAME).is_file():
        try:
            candidates.append(load_config(root))
        except ObsflowError:
            pass  # init itself reports the bad configuration
    paths = [root / CONFIG_FILENAME]
    for cfg in candidates:
        paths += list(cfg.folders.values())
        database = sqlite_path(cfg.database_url)
        paths += [database] if database is not None else []
    return paths


def _init_table(cfg: SiteConfig, existed: set[Path], rewritten: bool) -> Table:
    table = Table(title=f"obsflow site {cfg.site.name!r} (profile {cfg.profile.name})")
    table.add_column("item")
    table.add_column("path")
    table.add_column("status")
    rows = [("config", cfg.config_path), *cfg.folders.items()]
    database = sqlite_path(cfg.database_url)
    rows.append(("database", database if database is not None else Path(cfg.database_url)))
    for name, path in rows:
        status = "kept" if path in existed else "[green]created[/green]"
        if name == "config" and rewritten:
            status = "[yellow]rewritten[/yellow]"
        table.add_row(name, str(path), status)
    return table


@main.command()
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("--profile", default=None, help="Observatory profile: built-in name or .toml path.")
@click.option("--force", is_flag=True, help="Rewrite an existing obsflow.toml with defaults.")
def init(directory: Path | None, profile: str | None, force: bool) -> None:
    """Create a site: folders, obsflow.toml and database.

    DIRECTORY defaults to $OBSFLOW_HOME, or ./obsflow-site if that is unset.
    Idempotent: running it again on a site changes nothing.
    """
    root = (directory or default_site_root()).expanduser().resolve()
    existed = {path for path in _planned_paths(root) if path.exists()}
    cfg = init_site(root, profile=profile, force=force)
    rewritten = force and cfg.config_path in existed
    _console().print(_init_table(cfg, existed, rewritten))


def _profile_row(name: str, profile: Profile) -> tuple[str, ...]:
    detectors = [d for i in profile.instruments for d in i.detectors]
    sizes = sorted({f"{d.nx}x{d.ny}" for d in detectors})
    return (
        name,
        profile.mission.telescope,
        ", ".join(i.name for i in profile.instruments),
        str(len(detectors)),
        ", ".join(sizes),
    )


@main.command()
def profiles() -> None:
    """List the built-in observatory profiles."""
    table = Table(title="built-in observatory profiles")
    for column in ("name", "telescope", "instruments", "detectors", "detector size"):
        table.add_column(column)
    for name in builtin_profiles():
        table.add_row(*_profile_row(name, load_profile(name)))
    _console().print(table)
