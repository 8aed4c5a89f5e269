"""Benchmark of reprocessing: planning at catalog scale, and a campaign's per-product overhead.

Run: ``.venv/bin/python benchmarks/bench_reprocess.py [--products 1000000] [--sample 3000]
[--exposures 8] [--skip-campaign]``

1. Planning.  A synthetic catalog (``tests/reprocess/catalog.py``: rows only, 4
   detectors, 3 readout patterns, 3 filters over 100 days; each exposure has
   an ``uncal``, ``rate``, ``rateints`` and ``cal``) of ``--products`` products
   in a SQLite file; a new DARK for one detector and readout pattern is
   delivered with USEAFTER in the middle, and ``plan_reprocessing`` plans
   against the new context, timed on one core.  Anchor, from CRDS's own
   documentation: an "affected datasets" run scanned about 19,600 datasets in
   about 66 s.  The plan is checked against the product-by-product selection
   (``affected_reftypes``, CRDS's way) on a random sample of exposures.
2. Campaign overhead.  A webb_like SUB320 downlink (as the demo's) is run
   through the chain, then a campaign remakes every product (``--recipe
   image``).  Each item's job time (``job_attempts``) is set beside the time
   ``calibrate_product`` alone takes on the same Level-1 file with the same
   references, measured in the same process right after: the difference is
   what a campaign adds per exposure (reading the plan, registration of the
   outputs in one transaction, the science-change statistics, bookkeeping).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the synthetic catalog lives with the tests

CRDS_DATASETS, CRDS_SECONDS = 19_600, 66.0


def bench_plan(products: int, sample: int) -> None:
    from tests.reprocess.catalog import CatalogSpec, deliver, fill_catalog

    from obsflow.db import make_engine
    from obsflow.migrations import init_schema
    from obsflow.reprocess.plan import PlanCriteria, plan_reprocessing

    folder = Path(tempfile.mkdtemp(prefix="bench-plan-"))
    engine = make_engine(f"sqlite:///{folder / 'catalog.db'}")
    try:
        init_schema(engine)
        exposures = products // 4
        started = time.perf_counter()
        fill_catalog(engine, CatalogSpec(exposures=exposures))
        new = deliver(engine, [dict(reftype="DARK", detector="WRA2", readpatt="BRIGHT2",
                                    useafter="2026-12-10T06:00:00", tag="bench")], "bench")
        print(f"catalog: {exposures * 4:,} products ({exposures:,} exposures) made in "
              f"{time.perf_counter() - started:.1f} s")
        plan = plan_reprocessing(engine, PlanCriteria(context=new))
        rate = plan.scanned / plan.seconds
        crds = CRDS_DATASETS / CRDS_SECONDS
        print(f"plan: {plan.scanned:,} current calibrated products scanned, "
              f"{len(plan.products):,} affected, in {plan.seconds:.2f} s "
              f"({rate:,.0f} products/s; target: 1,000,000 products in <= 10 s)")
        print(f"anchor CRDS affected datasets: {CRDS_DATASETS:,} in {CRDS_SECONDS:.0f} s "
              f"({crds:,.0f} datasets/s) -> obsflow {rate / crds:,.0f}x")
        _check_sample(engine, plan, new, sample)
    finally:
        engine.dispose()
        shutil.rmtree(folder, ignore_errors=True)


def _check_sample(engine: object, plan: object, new: int, sample: int) -> None:
    from sqlalchemy import select
    from sqlalchemy.orm import Session
    from tests.refdata.factories import meta

    from obsflow.archive.schema import Exposure
    from obsflow.refdata.compare import affected_reftypes
    from obsflow.refdata.contexts import load_context
    from obsflow.reprocess.plan import recipe_reftypes

    got = {(p.obs_id, p.kind) for p in plan.products}  # type: ignore[attr-defined]
    with Session(engine) as session:  # type: ignore[arg-type]
        old, newer = load_context(session, 1), load_context(session, new)
        ids = session.scalars(select(Exposure.id)).all()
        chosen = random.Random(3).sample(list(ids), min(sample, len(ids)))
        rows = session.scalars(select(Exposure).where(Exposure.id.in_(chosen))).all()
    started, agree = time.perf_counter(), 0
    for e in rows:
        m = meta(telescope=e.facility_name, instrument=e.instrument_name, detector=e.detector,
                 filter=e.filter, readpatt=e.readpatt, subarray=e.subarray, expstart=e.t_min)
        for kind in ("rate", "rateints", "cal"):
            one = bool(affected_reftypes(m, old, newer, recipe_reftypes("image", kind)))
            agree += one == ((e.obs_id, kind) in got)
    seconds = time.perf_counter() - started
    checked = 3 * len(rows)
    print(f"product-by-product check on {checked:,} sampled products: {agree:,} agree "
          f"({'same answer' if agree == checked else 'DIFFERENT'}); that way took "
          f"{seconds / checked * 1e3:.2f} ms a product")


def bench_campaign(exposures: int) -> None:
    from sqlalchemy import select
    from sqlalchemy.orm import Session
    from tests.orchestrate.conftest import make_site

    from obsflow.archive.schema import Product
    from obsflow.calibrate.pipeline import CalibrationOptions, calibrate_product
    from obsflow.db import make_engine
    from obsflow.orchestrate import run_site
    from obsflow.orchestrate.tables import Job, JobAttempt
    from obsflow.orchestrate.worker import policy_of
    from obsflow.refdata.registry import SiteRefs
    from obsflow.reprocess.campaign import start_campaign
    from obsflow.reprocess.plan import PlanCriteria, plan_reprocessing
    from obsflow.reprocess.tables import CampaignItem
    from obsflow.simulate.run import SimOptions, simulate

    folder = Path(tempfile.mkdtemp(prefix="bench-campaign-"))
    try:
        sim = simulate(folder / "sim", SimOptions(seed=2, profile="webb_like",
                                                  exposures=exposures, subarray="SUB320"))
        cfg = make_site(folder / "site", sim)
        run_site(cfg)
        engine = make_engine(cfg.database_url)
        plan = plan_reprocessing(engine, PlanCriteria(recipe="image"))
        start_campaign(engine, plan, policy_of(cfg), name="bench")
        started = time.perf_counter()
        run_site(cfg, workers=1)
        wall = time.perf_counter() - started
        with Session(engine) as session:
            items = session.execute(select(CampaignItem.source_pk, JobAttempt.seconds).join(
                Job, Job.id == CampaignItem.job_id).join(
                JobAttempt, JobAttempt.job_id == Job.id).where(JobAttempt.outcome == "ok")).all()
            sources = {pk: session.get(Product, pk).path for pk, _ in items}  # type: ignore
        refs = SiteRefs(cfg.database_url, cfg.refs_dir, 1)
        pure = []
        for pk, _ in items:
            out = folder / "pure" / str(pk)
            t = time.perf_counter()
            calibrate_product(cfg.products_dir / sources[pk], refs, cfg.load_profile(),
                              CalibrationOptions(run="pure", place=lambda r, o=out: o / r.filename))
            pure.append(time.perf_counter() - t)
        engine.dispose()
        job = sum(s for _, s in items) / len(items)
        alone = sum(pure) / len(pure)
        per_product = (job - alone) / 3
        print(f"campaign: {len(items)} exposures ({3 * len(items)} products) in {wall:.1f} s "
              f"on 1 worker; a job {job:.3f} s, calibrate_product alone {alone:.3f} s")
        print(f"overhead per exposure {job - alone:+.3f} s ({(job - alone) / alone:+.1%} of "
              f"calibrating), {per_product:+.3f} s per product")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=1000, help="exposures checked one by one")
    parser.add_argument("--exposures", type=int, default=8)
    parser.add_argument("--skip-campaign", action="store_true")
    args = parser.parse_args()
    bench_plan(args.products, args.sample)
    if not args.skip_campaign:
        bench_campaign(args.exposures)


if __name__ == "__main__":
    main()
