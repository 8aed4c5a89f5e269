"""Stage 3 of a time series through the site: ``obsflow run`` -> ``_phot.ecsv`` in the archive.

A tiny simulated transit (60 integrations of 3 groups on SUB64, the transit
over 40% of them) is ingested, calibrated and turned into its light curve by
the orchestrator's jobs on each database backend; the archive is then served
by a real uvicorn on 127.0.0.1.  The time-series program is given 12 months
of exclusive access before the run, so its light curve is proprietary:
alice (a member) sees it, an anonymous visitor does not.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime

import httpx
import numpy as np
import pytest
from astropy.io.votable import parse_single_table
from astropy.table import Table
from PIL import Image
from sqlalchemy import select
from tests.archive.conftest import live_server
from tests.orchestrate.conftest import jobs_of, make_site

from obsflow.archive import vo, web
from obsflow.archive.api import ApiSettings, create_app
from obsflow.archive.context import Archive
from obsflow.archive.register import register_program
from obsflow.archive.schema import Exposure, Product, ProductInput
from obsflow.archive.users import SESSION_COOKIE, add_user, create_token
from obsflow.config import SiteConfig
from obsflow.db import make_engine
from obsflow.orchestrate import run_site
from obsflow.orchestrate.handlers import JobContext, run_handler
from obsflow.orchestrate.jobs import policy_of
from obsflow.orchestrate.worker import main as worker_main
from obsflow.reprocess.campaign import start_campaign
from obsflow.reprocess.plan import PlanCriteria, plan_reprocessing
from obsflow.simulate.plan import TSO_PROGRAM
from obsflow.simulate.run import SimOptions, SimResult, simulate
from obsflow.simulate.tso import TsoOptions
from obsflow.tso.product import LIMB_DARKENING

TSO = TsoOptions(nints=60, ngroups=3)
PROGRAM = TSO_PROGRAM[0]
NOW = datetime(2026, 12, 1)  # (the simulated exposure ends in 2026-10; 12 months later it is public)


@pytest.fixture(scope="session")
def tso_downlink(tmp_path_factory: pytest.TempPathFactory) -> SimResult:
    return simulate(tmp_path_factory.mktemp("tso-sim"),
                    SimOptions(seed=3, subarray="SUB64", dumps=1, tso=TSO))


@dataclasses.dataclass
class Site:
    cfg: SiteConfig
    sim: SimResult
    url: str
    token: str  # alice's (a member of the program): API bearer token
    cookie: str  # and her web session
    phot_id: str
    rateints_id: str
    truth: Table

    def get(self, path: str, member: bool = False, **kw: object) -> httpx.Response:
        headers = ({"Authorization": f"Bearer {self.token}",
                    "Cookie": f"{SESSION_COOKIE}={self.cookie}"} if member else {})
        return httpx.get(self.url + path, headers=headers, timeout=30, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def site(module_db_url: str, tso_downlink: SimResult,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    cfg = make_site(tmp_path_factory.mktemp("tso-site") / "site", tso_downlink,
                    None if module_db_url.startswith("sqlite") else module_db_url)
    archive = Archive.from_site(cfg)
    with archive.session() as session, session.begin():
        add_user(session, "alice", password="alice-pw")
    register_program(archive, PROGRAM, exclusive_months=12, members=["alice"])
    with archive.session() as session, session.begin():
        token = create_token(session, "alice")
    summary = run_site(cfg)
    assert summary.total("failed") == 0, summary.counts
    with archive.session() as session:
        ids = dict(session.execute(select(Product.kind, Product.product_id)
                                   .where(Product.kind.in_(("phot", "rateints")))).all())
    truth = Table.read(next((tso_downlink.out / "truth").glob("*_tso.ecsv")))
    app = create_app(archive, ApiSettings(clock=lambda: NOW), routers=[*vo.routers(),
                                                                      *web.routers()])
    with live_server(app) as url:
        login = httpx.post(url + "/login", data={"name": "alice", "password": "alice-pw"})
        assert login.status_code == 303, login.text
        yield Site(cfg, tso_downlink, url, token, login.cookies[SESSION_COOKIE], ids["phot"],
                   ids["rateints"], truth)
    archive.close()


def test_run_makes_one_light_curve_job_and_a_level_3_product(site: Site) -> None:
    kinds = Counter((job.kind, job.state) for job in jobs_of(site.cfg))
    assert kinds[("lightcurve", "done")] == 1 and kinds[("calibrate", "done")] == 1
    with Archive.from_site(site.cfg) as archive, archive.session() as session:
        phot, exposure = session.execute(select(Product, Exposure).join(
            Exposure, Exposure.id == Product.exposure_id).where(Product.kind == "phot")).one()
        rateints = session.scalar(select(Product).where(Product.kind == "rateints"))
        assert rateints is not None
        inputs = session.scalars(select(ProductInput.input_pk)
                                 .where(ProductInput.product_pk == phot.id)).all()
        assert inputs == [rateints.id]  # lineage: made from the rateints, and only it
        assert (phot.level, phot.calib_level, phot.dataproduct_type) == ("3", 3, "timeseries")
        assert phot.content_type == "text/x-ecsv" and phot.filename.endswith("_phot.ecsv")
        assert phot.run == rateints.run == "prompt" and phot.is_latest
        path = site.cfg.products_dir / phot.path
        assert path.is_file() and path.stat().st_size == phot.size
        assert path.with_suffix(".png").is_file()
        prov = json.loads(phot.provenance)
        assert [r["uuid"] for r in prov["inputs"]] == [rateints.uuid]
        steps = {name: (status, params) for name, status, params in prov["steps"]}
        assert steps["tso_photometry"][0] == "COMPLETE"
        assert steps["tso_photometry"][1]["ephemeris"]["points"] > 2
        assert steps["tso_photometry"][1]["aperture_radius_pix"] > 0
        assert steps["transit_fit"][0] == "COMPLETE"
        assert exposure.release_date > NOW  # the exposure's exclusive access, shared


def test_product_page_shows_the_light_curve_png_to_a_member(site: Site) -> None:
    page = site.get(f"/products/{site.phot_id}", member=True)
    assert page.status_code == 200
    assert 'id="light-curve"' in page.text
    assert f"/api/products/{site.phot_id}/preview?kind=png" in page.text
    assert f"/api/products/{site.phot_id}/download" in page.text
    assert f"/products/{site.rateints_id}" in page.text  # lineage link to the input
    png = site.get(f"/api/products/{site.phot_id}/preview", member=True, params={"kind": "png"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(png.content))
    assert image.size == (800, 400)  # the light curve's figure, not a stretched image
    thumb = site.get(f"/api/products/{site.phot_id}/preview", member=True,
                     params={"kind": "thumb"})
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"


def _download(site: Site) -> Table:
    answer = site.get(f"/api/products/{site.phot_id}/download", member=True)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/x-ecsv; charset=utf-8"
    assert answer.headers["content-disposition"].endswith('_phot.ecsv"')
    meta = site.get(f"/api/products/{site.phot_id}", member=True).json()
    assert answer.headers["x-checksum-sha256"] == meta["sha256"]
    assert len(answer.content) == meta["size"]
    return Table.read(answer.text, format="ascii.ecsv")


def test_downloaded_ecsv_has_every_integration_with_utc_and_tdb_times(site: Site) -> None:
    table = _download(site)
    assert len(table) == TSO.nints
    for name in ("integration", "mjd_utc", "bjd_tdb", "flux", "flux_err", "background",
                 "x_centroid", "y_centroid"):
        assert name in table.colnames
    assert str(table["mjd_utc"].unit) == str(table["bjd_tdb"].unit) == "d"
    truth_utc = np.asarray(site.truth["mjd_utc"])
    assert np.abs(np.asarray(table["mjd_utc"]) - truth_utc).max() * 86400 < 1e-3
    delay = (np.asarray(table["bjd_tdb"]) - truth_utc) * 86400  # TDB-UTC (~69 s) + light time
    assert np.all(np.abs(delay - 69.184) < 510) and np.ptp(delay) > 0
    assert table.meta["product"]["kind"] == "phot"
    assert table.meta["provenance"]["inputs"][0]["kind"] == "rateints"
    fit = table.meta["transit_fit"]
    assert fit["status"] == "COMPLETE" and fit["limb_darkening"] == list(LIMB_DARKENING)
    assert "not the truth" in fit["note"]


def test_light_curve_shows_the_simulated_transit(site: Site) -> None:
    """Mean flux of the integrations fully in transit vs out of transit, against the truth's
    relative star flux over the same integrations, within 5 standard errors."""
    table = _download(site)
    flux = np.asarray(table["flux"])
    truth = np.asarray(site.truth["star_e_s"]) / site.truth.meta["star_e_s"]
    inside, outside = truth < 1 - 0.9 * site.truth.meta["transit"]["depth"], truth == 1
    assert inside.sum() >= 10 and outside.sum() >= 10
    drop = 1 - flux[inside].mean() / flux[outside].mean()
    expected = 1 - truth[inside].mean()
    error = np.hypot(flux[inside].std(ddof=1) / np.sqrt(inside.sum()),
                     flux[outside].std(ddof=1) / np.sqrt(outside.sum())) / flux[outside].mean()
    assert abs(drop - expected) < 5 * error and drop > 5 * error
    # 60 integrations of one realization: above 0.8 until, and 0.796 since, the simulator draws
    # faint stars exactly and webb_like has its distortion (a new noise realization)
    assert np.corrcoef(flux, truth)[0, 1] > 0.75
    fit = table.meta["transit_fit"]
    assert abs(fit["depth"] - TSO.depth) < 5 * fit["depth_err"] + 0.002


def _timeseries_rows(site: Site, member: bool) -> list[str]:
    """product_id of the ObsCore rows of time series the caller sees (TAP sync, ADQL)."""
    query = "SELECT product_id FROM ivoa.obscore WHERE dataproduct_type = 'timeseries'"
    answer = site.get("/vo/tap/sync", member=member,
                      params={"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query})
    assert answer.status_code == 200, answer.text[:300]
    return [str(v) for v in parse_single_table(io.BytesIO(answer.content)).to_table()["product_id"]]


def test_api_and_obscore_list_the_light_curve(site: Site) -> None:
    found = site.get("/api/search", member=True, params={"kind": "phot"}).json()
    assert [r["product_id"] for r in found["results"]] == [site.phot_id]
    query = ("SELECT obs_publisher_did, dataproduct_type, calib_level, access_format, "
             "access_url FROM ivoa.obscore WHERE dataproduct_type = 'timeseries'")
    answer = site.get("/vo/tap/sync", member=True,
                      params={"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query})
    assert answer.status_code == 200
    rows = parse_single_table(io.BytesIO(answer.content)).to_table()
    assert len(rows) == 1
    assert rows["calib_level"][0] == 3 and rows["access_format"][0] == "text/x-ecsv"
    assert str(rows["access_url"][0]).endswith(f"/api/products/{site.phot_id}/download")


def test_a_proprietary_light_curve_is_hidden_from_anonymous_visitors(site: Site) -> None:
    for path in (f"/products/{site.phot_id}", f"/api/products/{site.phot_id}",
                 f"/api/products/{site.phot_id}/download",
                 f"/api/products/{site.phot_id}/preview"):
        assert site.get(path).status_code == 404, path
    assert site.get("/api/search", params={"kind": "phot"}).json()["total"] == 0
    gallery = site.get("/").text
    assert site.phot_id not in gallery
    assert _timeseries_rows(site, member=False) == []
    assert _timeseries_rows(site, member=True) == [site.phot_id]
    assert site.phot_id in site.get("/", member=True).text


def test_running_again_changes_nothing(site: Site) -> None:
    """The chain run again, and the light-curve job itself run again (as after a crash
    between its registration and its job's commit): no new product, no file rewritten."""
    with Archive.from_site(site.cfg) as archive, archive.session() as session:
        before = session.execute(select(Product.product_id, Product.sha256)
                                 .order_by(Product.id)).all()
    phot = next(site.cfg.products_dir.rglob("*_phot.ecsv"))
    stamp = phot.stat().st_mtime_ns
    again = run_site(site.cfg)
    assert again.total("failed") == 0
    (job,) = [j for j in jobs_of(site.cfg) if j.kind == "lightcurve"]
    engine = make_engine(site.cfg.database_url)
    try:
        result = run_handler("lightcurve", JobContext(site.cfg, engine), job.inputs)
    finally:
        engine.dispose()
    assert result.outputs == {"product_id": site.phot_id, "created": False}
    with Archive.from_site(site.cfg) as archive, archive.session() as session:
        after = session.execute(select(Product.product_id, Product.sha256)
                                .order_by(Product.id)).all()
    assert after == before
    assert phot.stat().st_mtime_ns == stamp


def test_a_campaign_that_remakes_the_rateints_remakes_the_light_curve(site: Site) -> None:
    """(Runs last: it adds versions.)  A reprocessing campaign over the time-series recipe
    plans the rateints and, downstream of it, the light curve; the new rateints gets a new
    phot version in the campaign's run, linked to it, current, still proprietary.  The
    campaign's jobs run as an HTCondor DAG's reprocess nodes run them
    (``worker --job ID --with-children``): the light curve too, in the same node."""
    engine = make_engine(site.cfg.database_url)
    try:
        plan = plan_reprocessing(engine, PlanCriteria(recipe="timeseries"))
        planned = Counter(p.kind for p in plan.products)
        assert planned["rateints"] == 1 and planned["phot"] == 1
        assert [r["type"] for p in plan.products if p.kind == "phot" for r in p.reasons] == ["input"]
        name = start_campaign(engine, plan, policy_of(site.cfg), name="tso-again")
    finally:
        engine.dispose()
    nodes = [j.id for j in jobs_of(site.cfg) if j.kind == "reprocess" and j.state == "pending"]
    assert nodes
    for job_id in nodes:
        assert worker_main(["--site", str(site.cfg.root), "--job", str(job_id),
                            "--with-children"]) == 0
    lightcurves = [j for j in jobs_of(site.cfg) if j.kind == "lightcurve"]
    assert len(lightcurves) == 2 and {j.state for j in lightcurves} == {"done"}
    assert min(j.priority for j in lightcurves) < 0  # the campaign's, below fresh data
    with Archive.from_site(site.cfg) as archive, archive.session() as session:
        phot = session.scalar(select(Product).where(Product.kind == "phot",
                                                    Product.is_latest.is_(True)))
        rateints = session.scalar(select(Product).where(Product.kind == "rateints",
                                                        Product.is_latest.is_(True)))
        assert phot is not None and rateints is not None
        assert (phot.version, phot.run, rateints.run) == (2, name, name)
        assert session.scalars(select(ProductInput.input_pk).where(
            ProductInput.product_pk == phot.id)).all() == [rateints.id]
        new_id = phot.product_id
    assert site.get(f"/api/products/{new_id}").status_code == 404
    versions = site.get(f"/api/products/{new_id}", member=True).json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert len(Table.read(site.get(f"/api/products/{new_id}/download", member=True).text,
                          format="ascii.ecsv")) == TSO.nints
