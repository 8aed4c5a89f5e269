"""Campaigns on a site that ran the real chain: exactly the plan remade, once, in its own run."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.time import Time
from sqlalchemy import select
from sqlalchemy.orm import Session

from obsflow.archive.schema import Exposure, Product, ProductInput
from obsflow.config import SiteConfig
from obsflow.db import make_engine
from obsflow.models import Provenance
from obsflow.orchestrate import run_site
from obsflow.orchestrate.jobs import policy_of
from obsflow.refdata.registry import deliver_batch
from obsflow.reprocess.campaign import campaign_status, cancel_campaign, start_campaign
from obsflow.reprocess.plan import PlanCriteria, plan_reprocessing

from .conftest import EXPOSURE_KINDS, all_versions, current

KINDS = ("rate", "rateints", "cal")


def _new_dark(cfg: SiteConfig, tmp: Path) -> tuple[int, str, str, set[str]]:
    """Deliver a dark for one readout pattern, USEAFTER the middle of its exposures.

    Returns the new context, the file's name, and the obs_ids it should affect (by the rule:
    that readout pattern, exposure start at or after USEAFTER).
    """
    engine = make_engine(cfg.database_url)
    try:
        with Session(engine) as session:
            exposures = list(session.scalars(select(Exposure).order_by(Exposure.t_min)))
        readpatt = Counter(e.readpatt for e in exposures).most_common(1)[0][0]
        same = [e for e in exposures if e.readpatt == readpatt]
        assert len(same) >= 3 and len(same) < len(exposures)  # readout and time both split
        start = str(Time(same[len(same) // 2].t_min, format="mjd", scale="utc").isot)[:19]
        expected = {e.obs_id for e in same if str(Time(e.t_min, format="mjd",
                                                       scale="utc").isot)[:19] >= start}
        source = next((cfg.refs_dir).glob("*_dark_*.fits"))
        path = tmp / "obsflow-w_wra1_dark_better.fits"
        with fits.open(source) as hdul:
            hdul[0].header["USEAFTER"], hdul[0].header["READPATT"] = start, readpatt
            hdul["SCI"].data = hdul["SCI"].data * np.float32(0.5)
            hdul.writeto(path, checksum=True)
        with Session(engine) as session, session.begin():
            delivery = deliver_batch(session, cfg.refs_dir, [path], cfg.load_profile(),
                                     description="a better dark")
        return delivery.context.number, delivery.records[0].name, readpatt, expected
    finally:
        engine.dispose()


def test_campaign_remakes_exactly_the_plan_once(processed: SiteConfig, tmp_path: Path) -> None:
    cfg = processed
    before = current(cfg)
    context, dark, readpatt, expected = _new_dark(cfg, tmp_path)
    engine = make_engine(cfg.database_url)
    try:
        plan = plan_reprocessing(engine, PlanCriteria(context=context))
        planned = {(p.obs_id, p.kind) for p in plan.products if p.kind in EXPOSURE_KINDS}
        assert planned == {(o, k) for o in expected for k in KINDS}
        downstream = Counter(p.kind for p in plan.products if p.kind not in EXPOSURE_KINDS)
        # stage 3: the members' crf, the mosaic, its catalog and segmentation map
        assert downstream["i2d"] >= 1 and set(downstream) <= {"crf", "i2d", "cat", "segm"}
        name = start_campaign(engine, plan, policy_of(cfg), name="better-dark")
        summary = run_site(cfg)
        assert summary.total("failed") == 0
        status = campaign_status(engine, name)
        assert status.state == "done" and status.counts == {"done": len(expected)}
        assert status.context == context and status.failed == []
        assert status.change["rate"]["median_change"] > 0  # half the dark: rates go up
        after = current(cfg)
        for key, row in after.items():
            if key in planned:
                prov = Provenance.from_json(row.provenance)
                assert (row.version, row.run, row.ref_context) == (2, name, context)
                assert prov.reference_names()["DARK"] == dark and prov.context == context
                assert row.path.startswith(f"{name}/")
                assert (cfg.products_dir / row.path).is_file()
            else:
                assert row.id == before[key].id  # nothing else got a new version
        versions = all_versions(cfg)
        assert len(versions) == len(before) + len(planned)
        assert max(v for _, _, v, _ in versions) == 2
        with Session(engine) as session:  # lineage both ways
            for obs_id in expected:
                rate, uncal = after[(obs_id, "rate")], after[(obs_id, "uncal")]
                made_from = session.scalars(select(ProductInput.input_pk).where(
                    ProductInput.product_pk == rate.id)).all()
                assert made_from == [uncal.id]
                made = session.scalars(select(Product.version).join(
                    ProductInput, ProductInput.product_pk == Product.id).where(
                    ProductInput.input_pk == uncal.id, Product.kind == "rate")).all()
                assert sorted(made) == [1, 2]
        run_site(cfg)  # again: nothing more
        assert all_versions(cfg) == versions
        assert plan_reprocessing(engine, PlanCriteria(context=context)).products == []
    finally:
        engine.dispose()


def _arrays(path: Path) -> dict[str, bytes]:
    with fits.open(path) as hdul:
        return {h.name: h.data.tobytes() for h in hdul[1:] if h.name in ("SCI", "ERR", "DQ")}


def test_same_context_and_software_give_identical_arrays(processed_sqlite: SiteConfig) -> None:
    cfg = processed_sqlite
    before = current(cfg)
    engine = make_engine(cfg.database_url)
    try:
        plan = plan_reprocessing(engine, PlanCriteria(recipe="image", context=1, kind="cal"))
        assert plan.products and {p.kind for p in plan.products} <= {"cal", "crf", "i2d", "cat",
                                                                     "segm"}
        start_campaign(engine, plan, policy_of(cfg), name="again")
        assert run_site(cfg).total("failed") == 0
    finally:
        engine.dispose()
    after = current(cfg)
    remade = [k for k in after if after[k].run == "again"]
    assert sorted(remade) == sorted((p.obs_id, p.kind) for p in plan.products
                                    if p.kind in EXPOSURE_KINDS)
    for key in remade:
        old, new = before[key], after[key]
        assert new.version == old.version + 1 and new.sha256 != old.sha256
        assert _arrays(cfg.products_dir / new.path) == _arrays(cfg.products_dir / old.path)
    assert not any(p.kind != "cal" for k, p in after.items() if p.run == "again")


def test_cancelled_campaign_leaves_nothing_half_done(processed_sqlite: SiteConfig) -> None:
    cfg = processed_sqlite
    versions = all_versions(cfg)
    engine = make_engine(cfg.database_url)
    try:
        plan = plan_reprocessing(engine, PlanCriteria(software="0.0.1"))
        name = start_campaign(engine, plan, policy_of(cfg), name="cancel-me")
        assert cancel_campaign(engine, name) == len({p.exposure_pk for p in plan.products
                                                     if p.kind in EXPOSURE_KINDS})
        run_site(cfg)
        status = campaign_status(engine, name)
    finally:
        engine.dispose()
    assert status.state == "cancelled" and set(status.counts) == {"cancelled"}
    assert all_versions(cfg) == versions
    assert not (cfg.products_dir / name).exists()


def _run_process(cfg: SiteConfig) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "obsflow", "run", "--site", str(cfg.root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_killed_campaign_resumes_and_remakes_each_product_once(
        processed_sqlite: SiteConfig) -> None:
    cfg = processed_sqlite
    before = current(cfg)
    engine = make_engine(cfg.database_url)
    try:
        plan = plan_reprocessing(engine, PlanCriteria(recipe="image"))
        name = start_campaign(engine, plan, policy_of(cfg), name="killed")
        rng = random.Random(11)
        for _ in range(3):  # SIGKILL the orchestrator (and so its pool) at random moments
            proc = _run_process(cfg)
            time.sleep(rng.uniform(1.5, 5.0))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        final = subprocess.run([sys.executable, "-m", "obsflow", "run", "--site",
                                str(cfg.root)], capture_output=True, text=True, timeout=300,
                               check=False)
        assert final.returncode == 0, final.stderr
        status = campaign_status(engine, name)
    finally:
        engine.dispose()
    assert status.state == "done" and status.counts == {"done": len(before) // 4}
    after = current(cfg)
    planned = {(p.obs_id, p.kind) for p in plan.products if p.kind in EXPOSURE_KINDS}
    assert {k for k, p in after.items() if p.run == name} == planned
    versions = all_versions(cfg)
    assert sorted((o, k) for o, k, v, _ in versions if v == 2) == sorted(planned)
    assert max(v for _, _, v, _ in versions) == 2  # each planned product remade exactly once
    on_disk = sorted(p.relative_to(cfg.products_dir).as_posix()
                     for p in (cfg.products_dir / name).rglob("*") if p.is_file()
                     and p.name.rsplit("_", 1)[-1].split(".")[0] in EXPOSURE_KINDS)
    assert on_disk == sorted(after[k].path for k in planned)  # no orphan, no stray .part


def test_campaign_items_become_htcondor_nodes(processed_sqlite: SiteConfig) -> None:
    """With the HTCondor executor a campaign's items are DAG nodes; one runs by hand."""
    import re
    import tomllib

    import tomli_w

    from obsflow.config import load_config

    cfg = processed_sqlite
    engine = make_engine(cfg.database_url)
    try:
        plan = plan_reprocessing(engine, PlanCriteria(recipe="image", kind="rate"))
        name = start_campaign(engine, plan, policy_of(cfg), name="condor")
    finally:
        engine.dispose()
    path = cfg.root / "obsflow.toml"
    data = tomllib.loads(path.read_text())
    data["executor"]["kind"] = "htcondor"
    path.write_text(tomli_w.dumps(data))
    cfg = load_config(cfg.root, env={})
    summary = run_site(cfg)
    assert summary.workflow is not None
    dag = summary.workflow.dag_file.read_text()
    nodes = re.findall(r"^JOB (\S+) reprocess\.sub$", dag, re.MULTILINE)
    assert len(nodes) == len(summary.workflow.job_ids) == len({p.exposure_pk
                                                               for p in plan.products})
    node_vars = dict(re.findall(r'(\w+)="([^"]*)"', next(
        line for line in dag.splitlines() if line.startswith(f"VARS {nodes[0]} "))))
    ran = subprocess.run([sys.executable, "-m", "obsflow.orchestrate.worker", "--site",
                          str(cfg.root), "--job", node_vars["job_id"], "--token",
                          node_vars["token"]], capture_output=True, text=True, timeout=180,
                         check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    engine = make_engine(cfg.database_url)
    try:
        assert campaign_status(engine, name).counts == {"done": 1, "running": len(nodes) - 1}
    finally:
        engine.dispose()
    assert sum(p.run == name for p in current(cfg).values()) == 1


def test_item_killed_after_registering_is_not_remade(processed_sqlite: SiteConfig) -> None:
    """An item whose outputs are registered but not yet marked done (a kill in between)
    records them when run again and leaves their files untouched."""
    from sqlalchemy import update

    from obsflow.orchestrate.handlers import JobContext, run_handler
    from obsflow.orchestrate.tables import Job
    from obsflow.reprocess.tables import CampaignItem

    cfg = processed_sqlite
    engine = make_engine(cfg.database_url)
    try:
        plan = plan_reprocessing(engine, PlanCriteria(recipe="image", kind="rate"))
        name = start_campaign(engine, plan, policy_of(cfg), name="resume")
        assert run_site(cfg).total("failed") == 0
        made = {k: p for k, p in current(cfg).items() if p.run == name}
        stamps = {k: (cfg.products_dir / p.path).stat().st_mtime_ns for k, p in made.items()}
        with Session(engine) as session, session.begin():
            item = session.scalars(select(CampaignItem).limit(1)).one()
            session.execute(update(CampaignItem).where(CampaignItem.id == item.id)
                            .values(state="pending"))
            inputs = session.get(Job, item.job_id).inputs  # type: ignore[union-attr]
        result = run_handler("reprocess", JobContext(cfg, engine), inputs)
        assert result.outputs["resumed"] is True and len(result.outputs["products"]) == 1
        assert campaign_status(engine, name).counts == {"done": len(made)}
    finally:
        engine.dispose()
    versions = all_versions(cfg)
    assert len(versions) == len(set(versions)) and max(v for _, _, v, _ in versions) == 2
    assert {k: (cfg.products_dir / p.path).stat().st_mtime_ns for k, p in made.items()} == stamps
