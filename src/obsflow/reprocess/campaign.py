"""Reprocessing campaigns: a plan turned into a named run of jobs, its status and its report.

:func:`start_campaign` records the campaign and its run, groups the plan's
products by exposure (one item each: remake the exposure's products of the
planned kinds from its current Level-1 product) and enqueues one
``reprocess`` job per item at a priority below fresh data, so new downlinks
are processed first while a campaign runs.  The jobs go through the same job
layer and executors as everything else (``obsflow run`` or ``obsflow
reprocess run`` drives them), with its retries, leases and crash recovery.

:func:`run_item` (the job's handler) calibrates into the campaign's run with
the campaign's reference context, keeps the planned kinds, and registers them
in ONE catalog transaction that also makes them current: an exposure is
never left half switched.  Outputs have name-based UUIDs, so an item killed
after its registration and run again finds them registered and only records
that it is done: every planned product is reprocessed exactly once.

:func:`cancel_campaign` stops a campaign: pending items are cancelled, a
running item checks before it registers and discards its files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.io import fits
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from obsflow import __version__
from obsflow.archive.policy import utcnow
from obsflow.archive.register import ensure_run
from obsflow.archive.schema import Exposure, Product, Run
from obsflow.exceptions import CampaignError
from obsflow.models.identity import DataId, ProductRef, check_run_name
from obsflow.models.provenance import Provenance
from obsflow.orchestrate.jobs import JobSpec, RetryPolicy, enqueue
from obsflow.orchestrate.tables import Job
from obsflow.reprocess.plan import REPROCESSABLE_KINDS, Plan
from obsflow.reprocess.tables import Campaign, CampaignItem

if TYPE_CHECKING:
    from obsflow.config import SiteConfig
    from obsflow.orchestrate.handlers import JobContext, Result

__all__ = ["CAMPAIGN_PRIORITY", "CampaignStatus", "cancel_campaign",
           "campaign_status", "retry_campaign", "run_item", "start_campaign"]

CAMPAIGN_PRIORITY = -10
"""Job priority of campaign items (fresh data: 0; higher is claimed first)."""

DOWNSTREAM_KINDS = ("i2d", "cat", "segm", "clr")
"""Planned kinds that are no campaign item of their own (made by the jobs their inputs'
new versions enqueue)."""


@dataclass(frozen=True)
class CampaignStatus:
    """Where a campaign stands: counts of items by state, failures, timing, science change."""

    name: str
    state: str
    context: int | None
    created: str
    finished: str | None
    counts: dict[str, int]
    failed: list[dict[str, Any]]
    seconds: float | None
    change: dict[str, dict[str, float]]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dict(self.__dict__)


def _source(session: Session, exposure_pk: int) -> Product | None:
    return session.scalar(select(Product).where(
        Product.exposure_id == exposure_pk, Product.kind == "uncal", Product.is_latest.is_(True)))


def _ref_of(row: Product, exposure: Exposure) -> ProductRef:
    data_id = DataId(exposure.program, exposure.observation, exposure.visit, exposure.exposure,
                     exposure.detector)
    return ProductRef(row.kind, data_id, row.run, row.uuid)


def _source_inputs(row: Product, exposure: Exposure) -> dict[str, Any]:
    from obsflow.orchestrate.handlers import registration_inputs

    return registration_inputs(_ref_of(row, exposure), row.path, row.sha256, row.size,
                               Provenance.from_json(row.provenance))


def _context_number(session: Session, plan: Plan) -> int | None:
    if plan.context is not None:
        return plan.context
    from obsflow.refdata.contexts import operational_context

    return operational_context(session).number


def start_campaign(engine: Engine, plan: Plan, policy: RetryPolicy, *,
                   name: str | None = None) -> str:
    """Record a campaign for ``plan`` and enqueue its items; return the run name.

    Raises
    ------
    CampaignError
        The plan is empty, or the run name is taken.
    ValueError
        ``name`` is not a valid run name.
    """
    if not plan.products:
        raise CampaignError("the plan holds no product: nothing to reprocess")
    name = check_run_name(name or f"reprocess-{utcnow():%Y%m%dT%H%M%S}")
    with Session(engine) as session, session.begin():
        if session.get(Run, name) is not None:
            raise CampaignError(f"run {name!r} exists already; choose another --name")
        ensure_run(session, name, "campaign", f"reprocessing: {plan.criteria.as_dict()}")
        campaign = Campaign(run=name, state="running", priority=CAMPAIGN_PRIORITY,
                            ref_context=_context_number(session, plan),
                            software_version=__version__, criteria=plan.criteria.as_dict(),
                            created=utcnow())
        session.add(campaign)
        session.flush()
        for exposure_pk, products in _by_exposure(plan).items():
            _add_item(session, campaign, exposure_pk, products, policy)
    return name


def _by_exposure(plan: Plan) -> dict[int, list[Any]]:
    """The plan's products by exposure; a mosaic's (``i2d``: made from many exposures) is
    no item: the ``image3`` job its remade ``_cal`` members enqueue remakes it."""
    out: dict[int, list[Any]] = {}
    for product in plan.products:
        if product.kind not in DOWNSTREAM_KINDS:
            out.setdefault(product.exposure_pk, []).append(product)
    return out


def _add_item(session: Session, campaign: Campaign, exposure_pk: int, products: list[Any],
              policy: RetryPolicy) -> None:
    exposure = session.get(Exposure, exposure_pk)
    source = _source(session, exposure_pk)
    kinds = sorted({p.kind for p in products})
    reasons = {p.kind: p.reasons for p in products}
    if source is None or exposure is None:
        session.add(CampaignItem(campaign_id=campaign.id, source_pk=products[0].pk, kinds=kinds,
                                 reasons=reasons, state="failed",
                                 error="no current Level-1 product of this exposure in the "
                                       "archive to remake it from"))
        return
    item = CampaignItem(campaign_id=campaign.id, source_pk=source.id, kinds=kinds,
                        reasons=reasons, state="pending")
    session.add(item)
    session.flush()
    inputs = {"campaign": campaign.id, "item": item.id, "run": campaign.run,
              "context": campaign.ref_context, "kinds": kinds,
              "replaces": {p.kind: p.pk for p in products},
              "source": _source_inputs(source, exposure)}
    job = enqueue(session, JobSpec("reprocess", f"reprocess:{campaign.run}:{item.id}", inputs,
                                   priority=campaign.priority), policy)
    item.job_id = None if job is None else job.id


# -- the job ------------------------------------------------------------------------------------

def _item_state(engine: Engine, item_id: int) -> tuple[str, str]:
    with Session(engine) as session:
        item = session.get(CampaignItem, item_id)
        if item is None:
            raise CampaignError(f"campaign item {item_id} does not exist")
        campaign = session.get(Campaign, item.campaign_id)
        assert campaign is not None
        return campaign.state, item.state


def _finish_item(engine: Engine, item_id: int, state: str, outputs: dict[str, Any]) -> None:
    with Session(engine) as session, session.begin():
        session.execute(update(CampaignItem).where(CampaignItem.id == item_id)
                        .values(state=state, outputs=outputs))


def _sci_change(old_path: Any, new_path: Any) -> dict[str, float]:
    """Median and median absolute change of SCI (finite pixels), in the product's units."""
    with fits.open(old_path, memmap=False) as old, fits.open(new_path, memmap=False) as new:
        a, b = np.asarray(old["SCI"].data, np.float64), np.asarray(new["SCI"].data, np.float64)
    diff = (b - a)[np.isfinite(a) & np.isfinite(b)]
    if diff.size == 0:
        return {"median_change": float("nan"), "median_abs_change": float("nan")}
    return {"median_change": float(np.median(diff)),
            "median_abs_change": float(np.median(np.abs(diff)))}


def _registered(engine: Engine, uuids: list[str]) -> list[str] | None:
    """Product ids of ``uuids`` when every one is registered, else None."""
    with Session(engine) as session:
        found = session.scalars(select(Product.product_id).where(Product.uuid.in_(uuids))).all()
    return list(found) if len(found) == len(uuids) else None


def _changes(engine: Engine, cfg: SiteConfig, replaces: dict[str, int],
             written: dict[str, Any]) -> dict[str, dict[str, float]]:
    with Session(engine) as session:
        paths = {k: session.get(Product, pk) for k, pk in replaces.items()}
    return {kind: _sci_change(cfg.products_dir / row.path, written[kind].path)
            for kind, row in paths.items() if row is not None and kind in written}


def _downstream_jobs(engine: Engine, product_ids: list[str], campaign: int) -> list[JobSpec]:
    """The jobs that remake what is made from the registered products ``product_ids``, at
    the campaign's priority: the ``lightcurve`` of a time series's new ``_rateints``, the
    ``image3`` mosaic a new ``_cal`` completes (once no item of the campaign remaking
    another of its members is left to run)."""
    from obsflow.orchestrate.handlers import lightcurve_specs
    from obsflow.stage3.job import image3_specs

    with Session(engine) as session:
        rows = session.execute(select(Product, Exposure).join(
            Exposure, Exposure.id == Product.exposure_id).where(
            Product.product_id.in_(product_ids),
            Product.kind.in_(("rateints", "cal")))).all()
        inputs = [(row.kind, _source_inputs(row, exposure)) for row, exposure in rows]
    specs = [spec for kind, data in inputs if kind == "rateints"
             for spec in lightcurve_specs(data, CAMPAIGN_PRIORITY)]
    cals = [ProductRef.from_dict(data["ref"]) for kind, data in inputs if kind == "cal"]
    return specs + image3_specs(engine, cals, CAMPAIGN_PRIORITY, campaign)


def run_item(ctx: JobContext, inputs: dict[str, Any]) -> Result:
    """The ``reprocess`` job: remake one exposure's planned products (module docstring)."""
    from obsflow.archive.register import Registration, register_outputs, with_site_formats
    from obsflow.calibrate.pipeline import (
        CalibrationOptions,
        calibrate_product,
        in_runs,
        output_ref,
    )
    from obsflow.orchestrate.handlers import Result, archive_of, registration_of
    from obsflow.refdata.registry import SiteRefs

    cfg, engine, item_id = ctx.cfg, ctx.engine, int(inputs["item"])
    campaign_state, item_state = _item_state(engine, item_id)
    if campaign_state == "cancelled" or item_state != "pending":
        return Result({"skipped": f"campaign {campaign_state}, item {item_state}"})
    started = time.perf_counter()
    source = registration_of(cfg, inputs["source"])
    # what calibration makes; a planned light curve (phot) is remade by the lightcurve job
    # the new _rateints enqueues
    kinds = [k for k in inputs["kinds"] if k in REPROCESSABLE_KINDS]
    done = _registered(engine, [output_ref(kind, source.ref, str(inputs["run"])).uuid
                                for kind in kinds])
    if done is not None:  # killed after registering them: never remake registered files
        _finish_item(engine, item_id, "done", {"products": done, "resumed": True})
        return Result({"products": done, "resumed": True},
                      _downstream_jobs(engine, done, int(inputs["campaign"])))
    options = CalibrationOptions(run=str(inputs["run"]), place=in_runs(cfg.products_dir))
    written = calibrate_product(source.path, SiteRefs(cfg.database_url, cfg.refs_dir,
                                                      inputs["context"]),
                                cfg.load_profile(), options)
    wanted = {p.ref.kind: p for p in written if p.ref.kind in kinds}
    for product in written:
        if product.ref.kind not in wanted:
            product.path.unlink(missing_ok=True)  # made along the way, not planned
    if _item_state(engine, item_id)[0] == "cancelled":
        for product in wanted.values():
            product.path.unlink(missing_ok=True)
        _finish_item(engine, item_id, "cancelled", {})
        return Result({"cancelled": True})
    change = _changes(engine, cfg, inputs["replaces"], wanted)
    records = register_outputs(archive_of(ctx), [
        with_site_formats(Registration(p.path, p.ref, p.provenance, p.sha256, p.size),
                          cfg.products.formats, cfg.products.asdf_kinds)
        for p in wanted.values()])
    products = [r.product_id for r in records]
    outputs = {"products": products, "change": change,
               "seconds": round(time.perf_counter() - started, 3)}
    _finish_item(engine, item_id, "done", outputs)
    return Result(outputs, _downstream_jobs(engine, products, int(inputs["campaign"])))


# -- status, cancel, retry ------------------------------------------------------------------------

def _campaign(session: Session, name: str | None) -> Campaign:
    query = select(Campaign)
    query = query.where(Campaign.run == name) if name else query.order_by(Campaign.id.desc())
    found = session.scalars(query.limit(1)).first()
    if found is None:
        names = session.scalars(select(Campaign.run).order_by(Campaign.id)).all()
        raise CampaignError(f"no campaign {name!r}; campaigns: {', '.join(names) or '(none)'}"
                            if name else "no reprocessing campaign yet")
    return found


def _job_states(session: Session, items: list[CampaignItem]) -> dict[int, Job]:
    ids = [i.job_id for i in items if i.job_id is not None]
    return {j.id: j for j in session.scalars(select(Job).where(Job.id.in_(ids)))} if ids else {}


def _item_view(item: CampaignItem, job: Job | None) -> str:
    if item.state != "pending" or job is None:
        return item.state
    return {"failed": "failed", "running": "running"}.get(job.state, "pending")


def _change_summary(items: list[CampaignItem]) -> dict[str, dict[str, float]]:
    per_kind: dict[str, list[float]] = {}
    for item in items:
        for kind, change in ((item.outputs or {}).get("change") or {}).items():
            per_kind.setdefault(kind, []).append(float(change["median_change"]))
    return {kind: {"median_change": float(np.nanmedian(values)), "items": len(values)}
            for kind, values in per_kind.items()}


def campaign_status(engine: Engine, name: str | None = None) -> CampaignStatus:
    """Where campaign ``name`` (default: the newest) stands; marks it done when it is."""
    with Session(engine) as session, session.begin():
        campaign = _campaign(session, name)
        items = list(session.scalars(select(CampaignItem).where(
            CampaignItem.campaign_id == campaign.id).order_by(CampaignItem.id)))
        jobs = _job_states(session, items)
        views = [_item_view(i, jobs.get(i.job_id or -1)) for i in items]
        counts = {state: views.count(state) for state in dict.fromkeys(views)}
        if campaign.state == "running" and not {"pending", "running"} & set(views):
            campaign.state, campaign.finished = "done", utcnow()
        failed = [{"item": i.id, "kinds": i.kinds, "error": i.error or (
            jobs[i.job_id].error if i.job_id in jobs else "")} for i, v in zip(
            items, views, strict=True) if v == "failed"]
        seconds = sum(float((i.outputs or {}).get("seconds", 0.0)) for i in items)
        return CampaignStatus(campaign.run, campaign.state, campaign.ref_context,
                              campaign.created.isoformat(timespec="seconds"),
                              None if campaign.finished is None
                              else campaign.finished.isoformat(timespec="seconds"),
                              counts, failed, seconds or None, _change_summary(items))


def cancel_campaign(engine: Engine, name: str) -> int:
    """Cancel campaign ``name``: its pending items and jobs stop; return how many were cancelled."""
    now = utcnow()
    with Session(engine) as session, session.begin():
        campaign = _campaign(session, name)
        campaign.state, campaign.finished = "cancelled", now
        items = list(session.scalars(select(CampaignItem).where(
            CampaignItem.campaign_id == campaign.id, CampaignItem.state == "pending")))
        job_ids = [i.job_id for i in items if i.job_id is not None]
        if job_ids:
            session.execute(update(Job).where(Job.id.in_(job_ids), Job.state == "pending")
                            .values(state="done", finished=now, outputs={"cancelled": True}))
        running = set(session.scalars(select(Job.id).where(Job.id.in_(job_ids),
                                                           Job.state == "running")))
        for item in items:
            if item.job_id not in running:  # a running item cancels itself before registering
                item.state = "cancelled"
        return len(items)


def retry_campaign(engine: Engine, name: str, policy: RetryPolicy) -> int:
    """Put the failed items of campaign ``name`` back in the queue; return how many."""
    from obsflow.orchestrate.jobs import retry

    with Session(engine) as session:
        campaign = _campaign(session, name)
        ids = session.scalars(select(Job.id).join(CampaignItem, CampaignItem.job_id == Job.id)
                              .where(CampaignItem.campaign_id == campaign.id,
                                     Job.state == "failed")).all()
    for job_id in ids:
        retry(engine, job_id, policy)
    return len(ids)
