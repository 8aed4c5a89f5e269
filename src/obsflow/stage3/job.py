"""The ``image3`` job: stage 3 of imaging, from an association's registered ``_cal`` to the archive.

Enqueued (:func:`image3_specs`) by the job that registered a ``_cal`` — the
``register`` job of fresh data, the ``reprocess`` job of a campaign that
remade one — when that ``_cal`` completes its association
(:func:`obsflow.stage3.association.complete_association`: every executed
product the observation log plans for the observation and filter has a
current ``_cal``).  A campaign waits until none of its items still to run
remakes a member, so it fires once with all the new versions.  The job key
is ``image3:<member digest>``: one job per member set, so a new version of
any member makes a new job and a new mosaic version.

The job:

1. returns at once if the mosaic of that member set is registered already
   (a re-run after a crash never rewrites a catalogued file) or a member is
   no longer current (a newer set has, or will have, its own job);
2. picks the ASTROCAT reference file of the site's operational context for
   the first member (none: relative alignment only, recorded as
   ``ALN_REF = RELATIVE ONLY``);
3. makes the ``_crf`` products and the ``_i2d``
   (:func:`obsflow.stage3.mosaic.make_mosaic`, options from the job inputs'
   ``options``) and registers the ``_crf`` products (each linked to its
   ``_cal``) then, in one transaction, the ``_i2d`` (linked to every
   ``_crf``), its segmentation map ``_segm`` and source catalog ``_cat``
   (each linked to the ``_i2d`` and every ``_crf``): the mosaic gets its own
   archive row (``obs_id`` its basename, shared by the ``_segm`` and
   ``_cat``) whose release date is the last member's end plus the program's
   exclusive-access period, so they are hidden exactly as long as any of the
   inputs is;
4. enqueues the ``colour`` job of the target when its program and target
   now have current mosaics in three filters
   (:func:`obsflow.stage3.colour_job.colour_specs`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from obsflow.models.identity import ProductRef
    from obsflow.models.provenance import RefFileUse
    from obsflow.models.reffiles import AstrometricCatalog
    from obsflow.orchestrate.handlers import JobContext, Result
    from obsflow.orchestrate.jobs import JobSpec
    from obsflow.stage3.association import Association

__all__ = ["image3_specs", "make_image3", "site_astrocat"]


def image3_specs(engine: Engine, cals: list[ProductRef], priority: int = 0,
                 campaign: int | None = None) -> list[JobSpec]:
    """The ``image3`` jobs the registration of ``cals`` completes (module docstring).

    ``campaign`` (its id) holds the job back while an item of that campaign
    that remakes a member is still to run.
    """
    from obsflow.orchestrate.jobs import JobSpec
    from obsflow.stage3.association import complete_association

    specs: dict[str, JobSpec] = {}
    for ref in cals:
        if ref.kind != "cal":
            continue
        asn = complete_association(engine, ref)
        if asn is None or asn.digest in specs:
            continue
        if campaign is not None and _campaign_pending(engine, campaign, asn):
            continue
        specs[asn.digest] = JobSpec("image3", f"image3:{asn.digest}",
                                    {"association": asn.as_dict(), "run": ref.run}, priority)
    return list(specs.values())


def _campaign_pending(engine: Engine, campaign: int, asn: Association) -> bool:
    """True while an item of ``campaign`` remaking a member of ``asn`` has not finished."""
    from obsflow.archive.schema import Exposure, Product
    from obsflow.reprocess.tables import CampaignItem

    members = [m.ref.data_id.basename for m in asn.members]
    with Session(engine) as session:
        return session.scalar(select(CampaignItem.id).join(
            Product, Product.id == CampaignItem.source_pk).join(
            Exposure, Exposure.id == Product.exposure_id).where(
            CampaignItem.campaign_id == campaign, Exposure.obs_id.in_(members),
            CampaignItem.state.in_(("pending", "running"))).limit(1)) is not None


def site_astrocat(ctx: JobContext, asn: Association
                  ) -> tuple[AstrometricCatalog, RefFileUse] | None:
    """The ASTROCAT file of the site's operational context for ``asn`` (None if there is none)."""
    from obsflow.models.level2 import read_cal
    from obsflow.models.provenance import RefFileUse
    from obsflow.models.reffiles import read_astrocat
    from obsflow.refdata.registry import SiteRefs
    from obsflow.refdata.select import best_reference

    refs = SiteRefs(ctx.cfg.database_url, ctx.cfg.refs_dir)
    meta = read_cal(ctx.cfg.products_dir / asn.members[0].path).meta
    chosen = best_reference(refs.records(), meta, "ASTROCAT").chosen
    if chosen is None:
        return None
    return read_astrocat(chosen.path), RefFileUse("ASTROCAT", chosen.name,
                                                  refs.sha256_of(chosen))


def make_image3(ctx: JobContext, inputs: dict[str, Any]) -> Result:
    """The ``image3`` job of the association ``inputs`` describe (module docstring)."""
    from obsflow.archive.register import Registration, register_outputs, with_site_formats
    from obsflow.archive.schema import Product
    from obsflow.orchestrate.handlers import Result, archive_of
    from obsflow.stage3.association import Association
    from obsflow.stage3.colour_job import colour_specs
    from obsflow.stage3.mosaic import Image3Options, make_mosaic, mosaic_ref

    started = time.perf_counter()
    asn = Association.from_dict(inputs["association"], f"image3 job {inputs.get('run')}")
    run = str(inputs["run"])
    ref = mosaic_ref(asn, run)
    uuids = [m.ref.uuid for m in asn.members]
    with Session(ctx.engine) as session:
        done = session.scalar(select(Product.product_id).where(Product.uuid == ref.uuid))
        current = set(session.scalars(select(Product.uuid).where(
            Product.uuid.in_(uuids), Product.is_latest.is_(True))))
    if done is not None:
        return Result({"product_id": done, "created": False})
    if len(current) != len(uuids):
        return Result({"superseded": True, "asn_id": asn.asn_id})
    options = Image3Options.from_dict(dict(inputs.get("options") or {}))
    made = make_mosaic(asn, ctx.cfg.products_dir, ctx.cfg.load_profile(), run,
                       site_astrocat(ctx, asn), options)
    archive = archive_of(ctx)
    formats, kinds = ctx.cfg.products.formats, ctx.cfg.products.asdf_kinds
    register_outputs(archive, [with_site_formats(Registration(
        c.path, c.ref, c.provenance, c.sha256, c.size), formats, kinds) for c in made.crfs])
    m = made.mosaic
    # the mosaic, its segmentation map and catalog in one transaction: never one without the others
    record = register_outputs(archive, [with_site_formats(Registration(
        p.path, p.ref, p.provenance, p.sha256, p.size), formats, kinds)
        for p in (m, *made.catalog)])[0]
    children = colour_specs(ctx.engine, m.ref)
    return Result({"product_id": record.product_id, "product": m.ref.relpath(),
                   "created": record.created, "asn_id": asn.asn_id,
                   "members": len(asn.members), "crf": [c.ref.relpath() for c in made.crfs],
                   "catalog": [c.ref.relpath() for c in made.catalog],
                   "steps_seconds": made.seconds,
                   "seconds": round(time.perf_counter() - started, 3)}, children)
