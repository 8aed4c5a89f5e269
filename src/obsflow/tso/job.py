"""The ``lightcurve`` job: stage 3 of a time series, from its registered ``_rateints`` to the archive.

Enqueued by the job that registered a time series's ``_rateints`` (the
``register`` job of fresh data, the ``reprocess`` job of a campaign that
remade it), keyed by that product's UUID, so every version of a
``_rateints`` gets its light curve once.  The job:

1. returns at once if the ``phot`` product of that ``_rateints`` is
   registered already (a re-run after a crash never rewrites a catalogued
   file), or if the ``_rateints`` is no longer its exposure's current
   version (a newer one has, or will have, its own light curve);
2. reads the ``_rateints`` and the observatory's ephemeris ingest stored for
   the exposure's time span (:func:`obsflow.tso.ephemeris.ingested_ephemeris`;
   none there is an error, retried with the job's backoff: the ephemeris may
   arrive after the data);
3. makes the product (:func:`obsflow.tso.product.make_phot`: photometry,
   transit fit, PNG, ECSV, each written atomically, at the ``_rateints``'s
   run's place) and registers it (:func:`obsflow.archive.register.register_outputs`),
   linked to the ``_rateints``; it joins the exposure's row, so it is hidden
   exactly as long as the exposure's data are.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from obsflow.exceptions import ArchiveError, ProductFileError

if TYPE_CHECKING:
    from obsflow.orchestrate.handlers import JobContext, Result

__all__ = ["make_light_curve"]


def make_light_curve(ctx: JobContext, inputs: dict[str, Any]) -> Result:
    """The ``lightcurve`` job of the ``_rateints`` ``inputs`` describe (module docstring)."""
    from obsflow.archive.register import Registration, register_outputs
    from obsflow.archive.schema import Product
    from obsflow.models.level2 import read_rateints
    from obsflow.orchestrate.handlers import Result, archive_of, registration_of
    from obsflow.tso.ephemeris import ingested_ephemeris
    from obsflow.tso.product import make_phot, phot_ref

    started = time.perf_counter()
    source = registration_of(ctx.cfg, inputs)
    ref = phot_ref(source.ref)
    with Session(ctx.engine) as session:
        rows = {uuid: (product_id, bool(latest)) for uuid, product_id, latest in session.execute(
            select(Product.uuid, Product.product_id, Product.is_latest)
            .where(Product.uuid.in_((source.ref.uuid, ref.uuid))))}
    if ref.uuid in rows:
        return Result({"product_id": rows[ref.uuid][0], "created": False})
    if source.ref.uuid not in rows:
        raise ArchiveError(f"{source.path.name}: _rateints {source.ref.uuid} is not registered; "
                           "its light curve waits for it")
    if not rows[source.ref.uuid][1]:
        return Result({"superseded": True, "rateints": rows[source.ref.uuid][0]})
    rateints = read_rateints(source.path)
    if rateints.ref != source.ref:
        raise ProductFileError(f"{source.path}: holds product {rateints.ref.uuid}, the job "
                               f"expected {source.ref.uuid}")
    meta = rateints.meta
    ephemeris = ingested_ephemeris(ctx.engine, meta.expstart, meta.expend)
    made = make_phot(rateints, ephemeris, ctx.cfg.products_dir,
                     ephemeris_source="site database (ingested ephemeris)",
                     source=source.path.name)
    record = register_outputs(archive_of(ctx), [
        Registration(made.path, made.ref, made.provenance, made.sha256, made.size)])[0]
    fit = made.fit
    return Result({"product_id": record.product_id, "product": made.ref.relpath(),
                   "created": record.created, "integrations": meta.nints,
                   "transit_fit": fit["status"], "depth": fit.get("depth"),
                   "depth_err": fit.get("depth_err"),
                   "seconds": round(time.perf_counter() - started, 3)})
