"""``obsflow refs``: deliver, best, contexts, diff and pin.

* ``obsflow refs deliver FILE... [--description TEXT]``: one delivery, one new context;
* ``obsflow refs best PRODUCT [--context N]``: the file of each type chosen, and why;
* ``obsflow refs contexts``: the numbered contexts, the operational one marked;
* ``obsflow refs diff N M [--json]``: what changed from context N to M;
* ``obsflow refs pin N`` / ``obsflow refs pin --newest``: fix the operational
  context, or let it follow the newest again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from obsflow.cli_console import output_console
from obsflow.config import SiteConfig, default_site_root
from obsflow.dbread import SiteReader, open_reader
from obsflow.site import open_site

if TYPE_CHECKING:
    # `refs contexts` and `refs best` read through obsflow.dbread: no SQLAlchemy on SQLite
    from sqlalchemy.orm import Session

    from obsflow.models.metadata import ExposureMeta
    from obsflow.refdata.compare import ContextDiff
    from obsflow.refdata.contexts import RefContext

__all__ = ["refs_group", "site_option"]

site_option = click.option("--site", "site_dir", type=click.Path(path_type=Path), default=None,
                           help="Site folder (default $OBSFLOW_HOME or ./obsflow-site).")


def open_site_option(site_dir: Path | None) -> SiteConfig:
    """The site named by ``--site``, $OBSFLOW_HOME or ./obsflow-site (it must exist)."""
    return open_site(site_dir or default_site_root())


@contextmanager
def _transaction(cfg: SiteConfig) -> Iterator[Session]:
    """A session on the site database, in one transaction (the commands that write)."""
    from sqlalchemy.orm import Session

    from obsflow.db import make_engine

    engine = make_engine(cfg.database_url)
    try:
        with Session(engine) as session, session.begin():
            yield session
    finally:
        engine.dispose()


@contextmanager
def _reader(cfg: SiteConfig) -> Iterator[SiteReader]:
    """A reader of the site database (:mod:`obsflow.dbread`), context 1 made first on a site
    whose files were delivered before contexts existed (a write, through the ORM)."""
    from obsflow.refdata.contextread import needs_backfill

    with open_reader(cfg.database_url) as db:
        backfill = needs_backfill(db)
    if backfill:
        from obsflow.refdata.contexts import ensure_backfill

        with _transaction(cfg) as session:
            ensure_backfill(session)
    with open_reader(cfg.database_url) as db:
        yield db


def _console() -> Console:
    return output_console()


@click.group("refs")
def refs_group() -> None:
    """Reference files: deliver them, see which one applies, manage the numbered contexts."""


@refs_group.command("deliver")
@site_option
@click.option("--description", default="", help="What this delivery is (kept with its context).")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def deliver_cmd(site_dir: Path | None, description: str, files: tuple[Path, ...]) -> None:
    """Validate reference FILES and add them to the registry as one delivery (one new context)."""
    from obsflow.refdata.registry import deliver_batch

    cfg = open_site_option(site_dir)
    profile = cfg.load_profile()
    table = Table(title=f"delivered to {cfg.refs_dir}")
    for column in ("file", "REFTYPE", "detector", "filter", "USEAFTER", "stored as", "sha256"):
        table.add_column(column)
    with _transaction(cfg) as session:
        done = deliver_batch(session, cfg.refs_dir, list(files), profile,
                             description=description)
    for path, rec in zip(files, done.records, strict=True):
        table.add_row(path.name, rec.reftype, rec.detector, rec.filter, rec.useafter,
                      rec.name, rec.sha256[:12])
    console = _console()
    console.print(table)
    console.print(f"reference context {done.context.number}: {done.context.n_files} files "
                  f"({len(done.records)} new)")


def _best_table(context: RefContext, product: Path, meta: ExposureMeta) -> Table:
    from obsflow.refdata.rules import REFTYPES, best_reference, exposure_start_iso

    table = Table(title=f"best references for {product.name} ({meta.instrument} {meta.detector} "
                        f"{meta.filter} {meta.readpatt} {meta.subarray}, start "
                        f"{exposure_start_iso(meta)}) in reference context {context.number}")
    for column in ("REFTYPE", "chosen", "why"):
        table.add_column(column)
    for reftype in sorted(REFTYPES):
        sel = best_reference(context.records, meta, reftype)
        if sel.chosen is None:
            reasons = "; ".join(f"{r.name}: {v}" for r, v in sel.verdicts) or "no file of this type"
            table.add_row(reftype, "[red]none[/red]", reasons)
            continue
        why = next(v for r, v in sel.verdicts if r is sel.chosen)
        others = len(sel.verdicts) - 1
        table.add_row(reftype, sel.chosen.name, why + (f" ({others} other candidates)" if others
                                                       else ""))
    return table


@refs_group.command("best")
@site_option
@click.option("--context", "number", type=int, default=None,
              help="Reference context number (default: the operational context).")
@click.argument("product", type=click.Path(exists=True, path_type=Path))
def best_cmd(site_dir: Path | None, number: int | None, product: Path) -> None:
    """Print the reference file of each type chosen for PRODUCT, and why."""
    from obsflow.models.level1headers import level1_meta
    from obsflow.refdata.contextread import pinned_number, read_context

    cfg = open_site_option(site_dir)
    meta = level1_meta(product)  # its headers in pure Python, when plainly a Level-1 product's
    if meta is None:  # else astropy reads it: a bad product is reported before anything else
        from obsflow.models.level1 import read_uncal

        meta = read_uncal(product).meta
    with _reader(cfg) as db:
        context = read_context(db, pinned_number(db) if number is None else number,
                               refs_dir=cfg.refs_dir)
    _console().print(_best_table(context, product, meta))


@refs_group.command("contexts")
@site_option
def contexts_cmd(site_dir: Path | None) -> None:
    """List the reference contexts; mark the pinned, operational and newest ones."""
    from obsflow.refdata.contextread import list_contexts, pinned_number

    cfg = open_site_option(site_dir)
    with _reader(cfg) as db:
        rows = list_contexts(db)
        pinned = pinned_number(db)
    table = Table(title=f"reference contexts of {cfg.root}")
    for column in ("context", "created (UTC)", "files", "added", "rules"):
        table.add_column(column)
    table.add_column("description", max_width=60, no_wrap=True, overflow="ellipsis")
    table.add_column("")
    newest = rows[-1].number if rows else None
    operational = pinned if pinned is not None else newest
    for r in rows:
        marks = [m for m, on in (("pinned", r.number == pinned),
                                 ("operational", r.number == operational),
                                 ("newest", r.number == newest)) if on]
        table.add_row(str(r.number), f"{r.created:%Y-%m-%d %H:%M:%S}", str(r.n_files),
                      f"+{r.added}", r.rules_version, r.description,
                      ", ".join(marks))
    console = _console()
    console.print(table)
    if not rows:
        console.print("no reference context yet: `obsflow refs deliver FILE...` makes context 1")


def _diff_table(diff: ContextDiff) -> Table:
    table = Table(title=f"reference context {diff.old} -> {diff.new}: {len(diff.added)} file(s) "
                        f"added, {len(diff.removed)} removed")
    for column in ("REFTYPE", "change", "detector", "filter", "readpatt", "subarray",
                   "USEAFTER", f"in {diff.old}", f"in {diff.new}"):
        table.add_column(column)
    for change in diff.changes:
        r = change.record
        table.add_row(r.reftype, change.kind, r.detector, r.filter, r.readpatt, r.subarray,
                      r.useafter, change.old.name if change.old else "-",
                      change.new.name if change.new else "-")
    return table


@refs_group.command("diff")
@site_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.argument("old", type=int)
@click.argument("new", type=int)
def diff_cmd(site_dir: Path | None, as_json: bool, old: int, new: int) -> None:
    """Show what changed from reference context OLD to NEW: files per type, and the rules."""
    from obsflow.refdata.compare import diff_contexts
    from obsflow.refdata.contexts import load_context

    cfg = open_site_option(site_dir)
    with _transaction(cfg) as session:
        diff = diff_contexts(load_context(session, old), load_context(session, new))
    if as_json:
        click.echo(json.dumps(diff.as_dict(), indent=2))
        return
    console = _console()
    console.print(_diff_table(diff))
    if diff.rules_changed:
        console.print(f"selection rules changed: {diff.old_rules} -> {diff.new_rules}")
    else:
        console.print(f"selection rules unchanged ({diff.new_rules})")


@refs_group.command("pin")
@site_option
@click.option("--newest", is_flag=True,
              help="Remove the pin: the newest context is operational (the default).")
@click.argument("number", type=int, required=False)
def pin_cmd(site_dir: Path | None, newest: bool, number: int | None) -> None:
    """Make context NUMBER the operational one (calibration of new data uses it)."""
    from obsflow.refdata.contexts import operational_context, pin_context

    if newest == (number is not None):
        raise click.UsageError("give a context NUMBER or --newest (one of them)")
    cfg = open_site_option(site_dir)
    with _transaction(cfg) as session:
        before = pin_context(session, number)
        now = operational_context(session).number
    was = f"pinned {before}" if before is not None else "the newest"
    if number is None:
        _console().print(f"operational reference context: the newest ({now}); was {was}")
    else:
        _console().print(f"operational reference context: {number} (pinned); was {was}")
