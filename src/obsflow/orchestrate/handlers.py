"""What each job kind does.  A handler runs inside a worker and returns outputs and children.

========== ======================================= ===============================
kind       inputs                                  does
========== ======================================= ===============================
ingest     ``{}``                                  one :func:`obsflow.ingest.ingest_once`
                                                   pass (archive, parse, assemble);
                                                   assembled exposures become
                                                   ``exposure_ready`` events
program    ``program, pi_name, title,              create the program in the archive
           exclusive_months`` (None: keep /        (or complete its PI and title)
           profile default)
calibrate  ``product`` (relative to the products   stage 1 + 2 of one Level-1
           folder), ``version``, ``exposure_id``   product into ``level2/``;
                                                   one ``register`` child per output
register   ``product`` (relative)                  register one product in the archive
noop       ``seconds``                             sleep (measures executor overhead)
========== ======================================= ===============================

Handlers are idempotent: every file is written under a temporary name and
renamed, the archive returns the existing record for the same bytes, so a
re-run after a crash is always safe.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from astropy.io import fits
from sqlalchemy import Engine

if TYPE_CHECKING:
    from obsflow.archive.context import Archive

from obsflow.config import SiteConfig
from obsflow.exceptions import UnknownOptionError
from obsflow.orchestrate.jobs import JobSpec

__all__ = ["HANDLERS", "JobContext", "Result", "calibrate_spec", "program_spec", "run_handler"]

LEVEL2_FOLDER = "level2"
"""Sub-folder of the products folder where calibrated products are written."""

ARCHIVED_SUFFIXES = ("_uncal.fits", "_rate.fits", "_rateints.fits", "_cal.fits")
"""Products registered in the archive: the Level-1 input and every calibrated output."""


@dataclass(frozen=True)
class JobContext:
    """What a handler gets: the site configuration and an engine on its database."""

    cfg: SiteConfig
    engine: Engine


@dataclass
class Result:
    """What a handler returns: JSON-able outputs and the jobs to enqueue next."""

    outputs: dict[str, Any] = field(default_factory=dict)
    children: list[JobSpec] = field(default_factory=list)


def calibrate_spec(product: str, version: int, exposure_id: int) -> JobSpec:
    """The calibrate job of one Level-1 product version."""
    return JobSpec("calibrate", f"calibrate:{product}:v{version}",
                   {"product": product, "version": version, "exposure_id": exposure_id})


def register_spec(product: str, sha_hint: str, program: str) -> JobSpec:
    """The register job of one product file (``sha_hint`` tells versions apart).

    Register jobs run in parallel: ``register_product`` retries a registration
    that collided with a concurrent one.  ``program`` is recorded for the log.
    """
    return JobSpec("register", f"register:{product}:{sha_hint}",
                   {"product": product, "program": program})


def program_spec(program: str, pi_name: str, title: str,
                 exclusive_months: int | None) -> JobSpec:
    """The job that records a program in the archive."""
    return JobSpec("program", f"program:{program}",
                   {"program": program, "pi_name": pi_name, "title": title,
                    "exclusive_months": exclusive_months})


def _archive(ctx: JobContext) -> Archive:
    """The site's archive on the job's engine, without re-running migrations.

    :meth:`Archive.from_site` checks the Alembic revision on every call
    (~0.4 s); the orchestrator ran it once at start, so a job takes the
    settings only.
    """
    from obsflow.archive.context import Archive, ArchiveSettings
    from obsflow.archive.store import ProductStore

    cfg = ctx.cfg
    profile = cfg.load_profile()
    settings = ArchiveSettings(
        store=ProductStore(cfg.archive.store_url or cfg.products_dir),
        default_exclusive_months=profile.mission.default_exclusive_access_months,
        profile=profile, authority=f"{cfg.site.name or 'obsflow'}.obsflow")
    return Archive(ctx.engine, settings)


def _ingest(ctx: JobContext, inputs: dict[str, Any]) -> Result:
    from obsflow.ingest.service import ingest_once

    report = ingest_once(ctx.cfg, engine=ctx.engine)
    return Result({"archived": report.archived, "redelivered": report.redelivered,
                   "quarantined": report.quarantined,
                   "assembled": [str(a.path.name) for a in report.assembled]})


def _program(ctx: JobContext, inputs: dict[str, Any]) -> Result:
    from obsflow.archive.register import register_program
    from obsflow.archive.schema import Program

    archive = _archive(ctx)
    with archive.session() as session:
        row = session.get(Program, inputs["program"])
        known = row.exclusive_months if row is not None else None
    months = inputs.get("exclusive_months")
    if months is None:
        months = known if known is not None else archive.settings.default_exclusive_months
    register_program(archive, inputs["program"], pi_name=inputs.get("pi_name", ""),
                     title=inputs.get("title", ""), exclusive_months=int(months))
    return Result({"program": inputs["program"], "exclusive_months": int(months)})


def _level1_path(cfg: SiteConfig, product: str, version: int) -> Path | None:
    """The file holding ``version`` of a Level-1 product, or None if it was superseded."""
    path = cfg.products_dir / product
    if not path.is_file():
        raise FileNotFoundError(f"Level-1 product {path} does not exist")
    found = int(fits.getval(path, "PRODVER", 0, default=version))
    if found == version:
        return path
    if found > version:
        return None
    raise ValueError(f"{path} holds version {found}, older than the requested {version}")


def _calibrate(ctx: JobContext, inputs: dict[str, Any]) -> Result:
    from obsflow.calibrate.pipeline import calibrate_product
    from obsflow.fileio import sha256_file
    from obsflow.refdata.registry import SiteRefs

    cfg = ctx.cfg
    path = _level1_path(cfg, inputs["product"], int(inputs["version"]))
    if path is None:
        return Result({"superseded": True, "products": []})
    out_dir = cfg.products_dir / LEVEL2_FOLDER
    out_dir.mkdir(parents=True, exist_ok=True)
    written = calibrate_product(path, SiteRefs(cfg.database_url, cfg.refs_dir),
                                cfg.load_profile(), out_dir=out_dir)
    products = [str(p.relative_to(cfg.products_dir)) for p in written]
    program = str(fits.getval(path, "PROGRAM", 0))
    level1 = str(path.relative_to(cfg.products_dir))
    children = [register_spec(rel, sha256_file(cfg.products_dir / rel)[:16], program)
                for rel in [level1, *products] if rel.endswith(ARCHIVED_SUFFIXES)]
    return Result({"products": products}, children)


def _register(ctx: JobContext, inputs: dict[str, Any]) -> Result:
    from obsflow.archive.register import register_product

    record = register_product(_archive(ctx), ctx.cfg.products_dir / inputs["product"])
    return Result({"product_id": record.product_id, "version": record.version,
                   "created": record.created, "store_key": record.store_key})


def _noop(ctx: JobContext, inputs: dict[str, Any]) -> Result:
    time.sleep(float(inputs.get("seconds", 0.0)))
    return Result({})


HANDLERS: dict[str, Callable[[JobContext, dict[str, Any]], Result]] = {
    "ingest": _ingest,
    "program": _program,
    "calibrate": _calibrate,
    "register": _register,
    "noop": _noop,
}
"""Job kind -> handler."""


def run_handler(kind: str, ctx: JobContext, inputs: dict[str, Any]) -> Result:
    """Run the handler of ``kind``."""
    if kind not in HANDLERS:
        raise UnknownOptionError("job kind", kind, HANDLERS)
    return HANDLERS[kind](ctx, inputs)
