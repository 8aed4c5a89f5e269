"""``obsflow refs deliver FILE...`` and ``obsflow refs best PRODUCT``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

from obsflow.config import SiteConfig, default_site_root
from obsflow.db import make_engine
from obsflow.models.level1 import read_uncal
from obsflow.refdata.registry import ReferenceFile, SiteRefs, deliver
from obsflow.refdata.select import best_reference, exposure_start_iso
from obsflow.refdata.validate import REFTYPES
from obsflow.site import open_site

__all__ = ["refs_group", "site_option"]

site_option = click.option("--site", "site_dir", type=click.Path(path_type=Path), default=None,
                           help="Site folder (default $OBSFLOW_HOME or ./obsflow-site).")


def open_site_option(site_dir: Path | None) -> SiteConfig:
    """The site named by ``--site``, $OBSFLOW_HOME or ./obsflow-site (it must exist)."""
    return open_site(site_dir or default_site_root())


@click.group("refs")
def refs_group() -> None:
    """Reference files: deliver them to the site registry, see which one applies."""


@refs_group.command("deliver")
@site_option
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def deliver_cmd(site_dir: Path | None, files: tuple[Path, ...]) -> None:
    """Validate reference FILES and add them to the site's registry (never overwriting)."""
    cfg = open_site_option(site_dir)
    profile = cfg.load_profile()
    engine = make_engine(cfg.database_url)
    table = Table(title=f"delivered to {cfg.refs_dir}")
    for column in ("file", "REFTYPE", "detector", "filter", "USEAFTER", "stored as", "sha256"):
        table.add_column(column)
    try:
        ReferenceFile.metadata.create_all(engine, tables=[ReferenceFile.__table__])  # type: ignore[list-item]
        with Session(engine) as session, session.begin():
            for path in files:
                rec = deliver(session, cfg.refs_dir, path, profile)
                table.add_row(path.name, rec.reftype, rec.detector, rec.filter, rec.useafter,
                              rec.name, rec.sha256[:12])
    finally:
        engine.dispose()
    Console(highlight=False).print(table)


@refs_group.command("best")
@site_option
@click.argument("product", type=click.Path(exists=True, path_type=Path))
def best_cmd(site_dir: Path | None, product: Path) -> None:
    """Print the reference file of each type chosen for PRODUCT, and why."""
    cfg = open_site_option(site_dir)
    meta = read_uncal(product).meta
    records = SiteRefs(cfg.database_url, cfg.refs_dir).records()
    table = Table(title=f"best references for {product.name} ({meta.instrument} {meta.detector} "
                        f"{meta.filter} {meta.readpatt} {meta.subarray}, start "
                        f"{exposure_start_iso(meta)})")
    for column in ("REFTYPE", "chosen", "why"):
        table.add_column(column)
    for reftype in sorted(REFTYPES):
        sel = best_reference(records, meta, reftype)
        if sel.chosen is None:
            reasons = "; ".join(f"{r.name}: {v}" for r, v in sel.verdicts) or "no file of this type"
            table.add_row(reftype, "[red]none[/red]", reasons)
            continue
        why = next(v for r, v in sel.verdicts if r is sel.chosen)
        others = len(sel.verdicts) - 1
        table.add_row(reftype, sel.chosen.name, why + (f" ({others} other candidates)" if others
                                                       else ""))
    Console(highlight=False).print(table)
