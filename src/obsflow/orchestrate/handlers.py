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
calibrate  the Level-1 product: ``ref``,         register the Level-1 product,
           ``product`` (relative to the products   then stage 1 + 2 into the run
           folder), ``version``, ``exposure_id``,  :data:`PROMPT_RUN`; one
           ``sha256``, ``size``, ``provenance``    ``register`` child per output
register   one output: ``ref``, ``product``,       register it in the archive
           ``sha256``, ``size``, ``provenance``    (linked to its input); a
                                                   time series's ``_rateints``
                                                   gets a ``lightcurve`` child,
                                                   a ``_cal`` completing its
                                                   association an ``image3`` one
lightcurve the ``_rateints`` of a time series      stage 3: photometry with the
           (as ``register``)                       ingested ephemeris, transit
                                                   fit, ``_phot.ecsv`` + PNG,
                                                   registered (level 3)
image3     ``association`` (the file's content),  stage 3 of imaging: align,
           ``run``, optional ``options``           skymatch, resample; ``_crf``
                                                   + ``_i2d`` registered
                                                   (:mod:`obsflow.stage3.job`);
                                                   a ``colour`` child when the
                                                   target then has mosaics in
                                                   three filters
colour     ``mosaics`` (red, green, blue), ``run``  the colour image of three
                                                   mosaics on one grid, PNG +
                                                   deep zoom, registered
                                                   (:mod:`obsflow.stage3.colour_job`)
reprocess  ``campaign``, ``item``, ``run``,        remake one exposure's planned
           ``context``, ``kinds``, ``source``      products in a campaign's run
           (the Level-1 product), ``replaces``     (:mod:`obsflow.reprocess.campaign`)
noop       ``seconds``                             sleep (measures executor overhead)
========== ======================================= ===============================

Jobs carry product references (:class:`~obsflow.models.ProductRef`), never
re-derive identity from file names, and hand each file's sha256 (computed
by its writer) along, so nothing is hashed twice.  Handlers are idempotent:
every file is written under a temporary name and renamed, outputs get
name-based UUIDs (a re-run writes the same files), and the archive returns
the existing record for a UUID it holds, so a re-run after a crash is always
safe.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

if TYPE_CHECKING:
    from obsflow.archive.context import Archive
    from obsflow.archive.register import Registration

from obsflow.config import SiteConfig
from obsflow.exceptions import UnknownOptionError
from obsflow.models.identity import ProductRef
from obsflow.models.provenance import Provenance
from obsflow.orchestrate.jobs import JobSpec

__all__ = ["ARCHIVED_KINDS", "HANDLERS", "PROMPT_RUN", "TIME_SERIES_RECIPE", "JobContext",
           "Result", "archive_of", "calibrate_spec", "lightcurve_specs", "program_spec",
           "registration_of", "registration_inputs", "run_handler", "site_registration_inputs"]

PROMPT_RUN = "prompt"
"""The run fresh data are calibrated into (``products/prompt/...``)."""

ARCHIVED_KINDS = ("uncal", "rate", "rateints", "cal")
"""Products archived per exposure: the Level-1 input (registered by the calibrate job
itself, before its outputs link to it) and each output (a ``register`` job each); a
time series also gets its light curve, ``phot`` (a ``lightcurve`` job)."""

TIME_SERIES_RECIPE = "timeseries"
"""The calibration recipe of time-series exposures: their ``_rateints`` get a light curve."""


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


def calibrate_key_prefix(basename: str) -> str:
    """The start of the keys of every calibrate job of one exposure (``<key prefix><version>``)."""
    return f"calibrate:{basename}:v"


def calibrate_spec(payload: dict[str, Any]) -> JobSpec:
    """The calibrate job of one Level-1 product version (``payload`` of its event)."""
    ref = ProductRef.from_dict(payload["ref"])
    inputs = {k: payload[k] for k in ("product", "version", "exposure_id", "ref", "sha256",
                                      "size", "provenance")}
    return JobSpec("calibrate", f"{calibrate_key_prefix(ref.data_id.basename)}"
                                f"{int(payload['version'])}", inputs)


def registration_inputs(ref: ProductRef, relpath: str, sha256: str, size: int,
                        provenance: Provenance,
                        files: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """A product as JSON-able job inputs (see :func:`registration_of`); ``files``: its
    other files as ``{"format", "product" (path in the products folder), "sha256",
    "size"}`` (:func:`site_registration_inputs` makes them)."""
    inputs = {"ref": ref.as_dict(), "product": relpath, "sha256": sha256, "size": size,
              "provenance": provenance.as_dict()}
    if files:
        inputs["files"] = list(files)
    return inputs


def site_registration_inputs(cfg: SiteConfig, registration: Registration) -> dict[str, Any]:
    """The job inputs of a product a job just wrote into the products folder, with the
    files of the other formats the site writes (written now: see
    :func:`obsflow.archive.register.with_site_formats`)."""
    from obsflow.archive.register import with_site_formats

    reg = with_site_formats(registration, cfg.products.formats, cfg.products.asdf_kinds)
    root = cfg.products_dir
    return registration_inputs(
        reg.ref, str(reg.path.relative_to(root)), reg.sha256, reg.size, reg.provenance,
        [{"format": f.format, "product": str(f.path.relative_to(root)), "sha256": f.sha256,
          "size": f.size} for f in reg.files])


def registration_of(cfg: SiteConfig, inputs: dict[str, Any]) -> Registration:
    """The :class:`~obsflow.archive.register.Registration` job inputs describe."""
    from obsflow.archive.register import OtherFile, Registration

    files = tuple(OtherFile(str(f["format"]), cfg.products_dir / f["product"], str(f["sha256"]),
                            int(f["size"])) for f in inputs.get("files", ()))
    return Registration(cfg.products_dir / inputs["product"], ProductRef.from_dict(inputs["ref"]),
                        Provenance.from_dict(inputs["provenance"]), str(inputs["sha256"]),
                        int(inputs["size"]), files)


def register_spec(inputs: dict[str, Any]) -> JobSpec:
    """The register job of one product (keyed by its UUID).

    Register jobs run in parallel: registration retries a transaction that
    collided with a concurrent one.
    """
    return JobSpec("register", f"register:{inputs['ref']['uuid']}", inputs)


def lightcurve_specs(inputs: dict[str, Any], priority: int = 0) -> list[JobSpec]:
    """The ``lightcurve`` job of a registered product (``inputs`` as :func:`registration_inputs`
    makes them), keyed by its UUID: one for a time series's ``_rateints``, else none."""
    if (inputs["ref"]["kind"] != "rateints"
            or inputs["provenance"].get("recipe") != TIME_SERIES_RECIPE):
        return []
    return [JobSpec("lightcurve", f"lightcurve:{inputs['ref']['uuid']}", inputs, priority)]


def program_spec(program: str, pi_name: str, title: str,
                 exclusive_months: int | None) -> JobSpec:
    """The job that records a program in the archive."""
    return JobSpec("program", f"program:{program}",
                   {"program": program, "pi_name": pi_name, "title": title,
                    "exclusive_months": exclusive_months})


def archive_of(ctx: JobContext) -> Archive:
    """The site's archive on the job's engine, without re-running migrations.

    :meth:`Archive.from_site` checks the Alembic revision on every call
    (~0.4 s); the orchestrator ran it once at start, so a job takes the
    settings only.
    """
    from obsflow.archive.context import Archive, ArchiveSettings

    return Archive(ctx.engine, ArchiveSettings.of_site(ctx.cfg))


def _ingest(ctx: JobContext, inputs: dict[str, Any]) -> Result:
    from obsflow.ingest import ingest_once

    report = ingest_once(ctx.cfg, engine=ctx.engine)
    return Result({"archived": report.archived, "redelivered": report.redelivered,
                   "quarantined": report.quarantined,
                   "assembled": [str(a.path.name) for a in report.assembled]})


def _program(ctx: JobContext, inputs: dict[str, Any]) -> Result:
    from obsflow.archive.register import register_program
    from obsflow.archive.schema import Program

    archive = archive_of(ctx)
    with archive.session() as session:
        row = session.get(Program, inputs["program"])
        known = row.exclusive_months if row is not None else None
    months = inputs.get("exclusive_months")
    if months is None:
        months = known if known is not None else archive.settings.default_exclusive_months
    register_program(archive, inputs["program"], pi_name=inputs.get("pi_name", ""),
                     title=inputs.get("title", ""), exclusive_months=int(months))
    return Result({"program": inputs["program"], "exclusive_months": int(months)})


def _calibrate(ctx: JobContext, inputs: dict[str, Any]) -> Result:
    from obsflow.archive.register import Registration, register_outputs, with_site_formats
    from obsflow.calibrate.pipeline import CalibrationOptions, calibrate_product, in_runs
    from obsflow.ingest import current_level1_version
    from obsflow.refdata.registry import SiteRefs

    cfg = ctx.cfg
    if current_level1_version(ctx.engine, int(inputs["exposure_id"])) > int(inputs["version"]):
        return Result({"superseded": True, "products": []})
    level1 = registration_of(cfg, inputs)
    # the assembly wrote the FITS only: its ASDF form now, if the site wants it
    level1 = with_site_formats(level1, cfg.products.formats, cfg.products.asdf_kinds)
    started = time.perf_counter()
    register_outputs(archive_of(ctx), [level1])  # the input first: outputs link to it
    registered = time.perf_counter()
    options = CalibrationOptions(run=PROMPT_RUN, place=in_runs(cfg.products_dir))
    written = calibrate_product(level1.path, SiteRefs(cfg.database_url, cfg.refs_dir),
                                cfg.load_profile(), options)
    children = [register_spec(site_registration_inputs(cfg, Registration(
        p.path, p.ref, p.provenance, p.sha256, p.size))) for p in written]
    return Result({"products": [p.ref.relpath() for p in written],
                   "register_input_seconds": round(registered - started, 4),
                   "calibrate_seconds": round(time.perf_counter() - registered, 4)}, children)


def _register(ctx: JobContext, inputs: dict[str, Any]) -> Result:
    from obsflow.archive.register import register_outputs
    from obsflow.stage3.job import image3_specs

    registration = registration_of(ctx.cfg, inputs)
    record = register_outputs(archive_of(ctx), [registration])[0]
    return Result({"product_id": record.product_id, "version": record.version,
                   "created": record.created, "store_key": record.store_key},
                  lightcurve_specs(inputs) + image3_specs(ctx.engine, [registration.ref]))


def _lightcurve(ctx: JobContext, inputs: dict[str, Any]) -> Result:
    from obsflow.tso.job import make_light_curve

    return make_light_curve(ctx, inputs)


def _image3(ctx: JobContext, inputs: dict[str, Any]) -> Result:
    from obsflow.stage3.job import make_image3

    return make_image3(ctx, inputs)


def _colour(ctx: JobContext, inputs: dict[str, Any]) -> Result:
    from obsflow.stage3.colour_job import make_colour

    return make_colour(ctx, inputs)


def _reprocess(ctx: JobContext, inputs: dict[str, Any]) -> Result:
    from obsflow.reprocess.campaign import run_item

    return run_item(ctx, inputs)


def _noop(ctx: JobContext, inputs: dict[str, Any]) -> Result:
    time.sleep(float(inputs.get("seconds", 0.0)))
    return Result({})


HANDLERS: dict[str, Callable[[JobContext, dict[str, Any]], Result]] = {
    "ingest": _ingest,
    "program": _program,
    "calibrate": _calibrate,
    "register": _register,
    "lightcurve": _lightcurve,
    "image3": _image3,
    "colour": _colour,
    "reprocess": _reprocess,
    "noop": _noop,
}
"""Job kind -> handler."""


def run_handler(kind: str, ctx: JobContext, inputs: dict[str, Any]) -> Result:
    """Run the handler of ``kind``."""
    if kind not in HANDLERS:
        raise UnknownOptionError("job kind", kind, HANDLERS)
    return HANDLERS[kind](ctx, inputs)
