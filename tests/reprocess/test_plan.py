"""Planning on a synthetic catalog, SQLite and PostgreSQL: exactly the affected products, and why.

The expected sets are built from the rule itself (detector, readout pattern,
exposure start against USEAFTER), not from the selection code; a second check
compares every product with the product-by-product selection
(:func:`obsflow.refdata.compare.affected_reftypes`, CRDS's way).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from astropy.time import Time
from click.testing import CliRunner
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from obsflow.archive.schema import Exposure, Product, ProductInput
from obsflow.cli import main
from obsflow.db import make_engine
from obsflow.exceptions import UnknownOptionError
from obsflow.migrations import init_schema
from obsflow.refdata.compare import affected_reftypes
from obsflow.refdata.contexts import load_context, newest_context
from obsflow.reprocess.plan import PlanCriteria, plan_reprocessing, recipe_reftypes
from obsflow.site import init_site

from .catalog import CatalogSpec, deliver, fill_catalog

SPEC = CatalogSpec(exposures=600)
USEAFTER = "2026-12-10T06:00:00"


@pytest.fixture(scope="module")
def catalog(module_db_url: str) -> Iterator[Engine]:
    engine = make_engine(module_db_url)
    init_schema(engine)
    fill_catalog(engine, SPEC)
    yield engine
    engine.dispose()


def _exposures(engine: Engine) -> list[Exposure]:
    with Session(engine) as session:
        return list(session.scalars(select(Exposure)))


def _start_iso(mjd: float) -> str:
    return str(Time(mjd, format="mjd", scale="utc").isot)[:19]


def _ids(plan_products: list) -> set[tuple[str, str]]:  # type: ignore[type-arg]
    return {(p.obs_id, p.kind) for p in plan_products}


def test_a_new_dark_affects_one_detector_and_readout_after_useafter(catalog: Engine) -> None:
    base = plan_reprocessing(catalog, PlanCriteria(context=1))  # what made everything
    assert base.products == [] and base.scanned == SPEC.exposures * 3 and base.context == 1
    new = deliver(catalog, [dict(reftype="DARK", detector="WRA2", useafter=USEAFTER,
                                 readpatt="BRIGHT2", tag="new")], "a better dark")
    plan = plan_reprocessing(catalog, PlanCriteria(context=new))
    expected = {(e.obs_id, kind) for e in _exposures(catalog)
                if e.detector == "WRA2" and e.readpatt == "BRIGHT2"
                and _start_iso(e.t_min) >= USEAFTER for kind in ("rate", "rateints", "cal")}
    assert 10 < len(expected) < SPEC.exposures  # the sample really splits
    assert _ids(plan.products) == expected
    for p in plan.products:
        assert p.reasons == [{"type": "reference", "reftype": "DARK",
                              "old": "syn_wra2_dark_any_any_2025-01-01t00:00:00_.fits",
                              "new": f"syn_wra2_dark_any_bright2_{USEAFTER.lower()}_new.fits"}]
    summary = plan.summary()
    assert summary["detector"] == {"WRA2": len(expected)}
    assert summary["reason"] == {"DARK": len(expected)}


def test_a_new_flat_affects_only_cal_products(catalog: Engine) -> None:
    new = deliver(catalog, [dict(reftype="FLAT", detector="WRB1", useafter="2025-06-01T00:00:00",
                                 filter="F200W", tag="flat")], "a new flat")
    plan = plan_reprocessing(catalog, PlanCriteria(context=new, kind=None))
    # products made in context 1: the dark of the previous test counts too
    flat = {(p.obs_id, p.kind) for p in plan.products
            if any(r["reftype"] == "FLAT" for r in p.reasons)}
    expected = {(e.obs_id, "cal") for e in _exposures(catalog)
                if e.detector == "WRB1" and e.filter == "F200W"}
    assert flat == expected and expected
    only_rates = plan_reprocessing(catalog, PlanCriteria(context=new, kind="rate"))
    assert all(p.kind == "rate" for p in only_rates.products)
    assert not any(r["reftype"] == "FLAT" for p in only_rates.products for r in p.reasons)


def test_bulk_plan_equals_product_by_product_selection(catalog: Engine) -> None:
    """(Tests of this module may run in any order on a shared catalog: compare 1 with the
    newest, whatever else was delivered, after delivering a few tricky files of its own.)"""
    deliver(catalog, [
        dict(reftype="READNOISE", detector="WRB2", useafter="2026-11-01T00:00:00",
             readpatt="MEDIUM8", tag="rn"),
        dict(reftype="SATURATION", detector="WRA1", useafter="2026-11-15T12:00:00", tag="s1"),
        dict(reftype="SATURATION", detector="WRA1", useafter="2026-11-15T12:00:00", tag="s2"),
        dict(reftype="PHOTOM", detector="WRB1", useafter="2030-01-01T00:00:00", tag="late")],
        "tricky: equal USEAFTERs, a file after every exposure")
    with Session(catalog) as session:
        old, new = load_context(session, 1), newest_context(session)
    plan = plan_reprocessing(catalog, PlanCriteria(context=new.number))
    got = {(p.obs_id, p.kind): {r["reftype"] for r in p.reasons} for p in plan.products}
    from tests.refdata.factories import meta as make_meta

    want = {}
    for e in _exposures(catalog):
        m = make_meta(telescope=e.facility_name, instrument=e.instrument_name,
                      detector=e.detector, filter=e.filter, readpatt=e.readpatt,
                      subarray=e.subarray, expstart=e.t_min)
        for kind in ("rate", "rateints", "cal"):
            changes = affected_reftypes(m, old, new, recipe_reftypes("image", kind))
            if changes:
                want[(e.obs_id, kind)] = {c.reftype for c in changes}
    assert got == want and want


def test_filters_software_recipe_and_downstream(catalog: Engine) -> None:
    exposures = _exposures(catalog)
    late = sorted(e.t_min for e in exposures)[SPEC.exposures // 2]
    plan = plan_reprocessing(catalog, PlanCriteria(software="9.9", since=late, kind="cal"))
    assert {p.obs_id for p in plan.products} == {e.obs_id for e in exposures if e.t_min >= late}
    assert all(p.reasons == [{"type": "software", "old": "0.1.0", "new": "9.9"}]
               for p in plan.products)
    assert plan.context is None
    assert plan_reprocessing(catalog, PlanCriteria(software="0.1.0")).products == []
    assert len(plan_reprocessing(catalog, PlanCriteria(recipe="image")).products) == \
        SPEC.exposures * 3
    assert plan_reprocessing(catalog, PlanCriteria(recipe="image", program="nope")).products == []
    with pytest.raises(UnknownOptionError, match="allowed: cal, rate, rateints"):
        PlanCriteria(kind="uncal")
    # a product made from an affected one is planned too, transitively
    with Session(catalog) as session, session.begin():
        rate, cal, other = session.scalars(select(Product).where(
            Product.kind.in_(("rate", "cal"))).order_by(Product.id).limit(3)).all()
        cal.software_version = rate.software_version = "0.1.0"
        other_cal = session.scalars(select(Product).where(
            Product.kind == "cal", Product.id > other.id).order_by(Product.id)).first()
        assert other_cal is not None
        session.add_all([ProductInput(product_pk=other.id, input_pk=rate.id),
                         ProductInput(product_pk=other_cal.id, input_pk=other.id)])
        session.execute(update(Product).where(Product.id.in_([other.id, other_cal.id]))
                        .values(software_version="2.0"))
        names = (rate.product_id, other.product_id, other_cal.product_id)
    plan = plan_reprocessing(catalog, PlanCriteria(software="2.0"))
    by_id = {p.product_id: p for p in plan.products}
    assert by_id[names[1]].reasons == [{"type": "input", "input": names[0]}]
    assert by_id[names[2]].reasons == [{"type": "input", "input": names[1]}]
    assert all(p.reasons[0]["type"] == "software" for n, p in by_id.items()
               if n not in names[1:])


def test_plan_command_json_and_table(tmp_path: Path) -> None:
    cfg = init_site(tmp_path / "site", env={})
    engine = make_engine(cfg.database_url)
    try:
        fill_catalog(engine, CatalogSpec(exposures=40))
        new = deliver(engine, [dict(reftype="GAIN", detector="WRA1", useafter="2025-02-01T00:00:00",
                                    tag="g")], "new gain")
    finally:
        engine.dispose()
    runner = CliRunner()
    out = runner.invoke(main, ["reprocess", "plan", "--site", str(cfg.root), "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["context"] == new and doc["affected"] == len(doc["products"]) > 0
    assert {p["detector"] for p in doc["products"]} == {"WRA1"}
    assert set(doc["products"][0]) >= {"product_id", "kind", "version", "reasons"}
    out = runner.invoke(main, ["reprocess", "plan", "--site", str(cfg.root), "--context", "1"])
    assert out.exit_code == 0 and "0 of 120 current products affected" in out.stdout
    out = runner.invoke(main, ["reprocess", "plan", "--site", str(cfg.root), "--since", "soon"])
    assert out.exit_code == 2 and "--since 'soon': expected an ISO date" in out.output
    out = runner.invoke(main, ["reprocess", "plan", "--site", str(cfg.root), "--context", "99"])
    assert out.exit_code == 2 and "99" in out.output

