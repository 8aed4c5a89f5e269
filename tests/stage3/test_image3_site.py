"""Stage 3 of imaging through the site: ``obsflow run`` -> ``_crf`` + ``_i2d`` in the archive.

The orchestrator tests' small webb_like SUB64 downlink (6 planned exposures,
dithered) is ingested, calibrated, associated and mosaicked by the site's
own jobs on each database backend; the archive is served by a real uvicorn
on 127.0.0.1.  The program is given 12 months of exclusive access, so its
mosaics are proprietary: alice (a member) sees them, an anonymous visitor
does not.  The site writes its ``_cal`` and ``_i2d`` products in pure ASDF
too (``[products] formats = ["fits", "asdf"]``).  SUB64 holds too few stars to align on: the job records the
alignment as skipped (the science of the mosaic is tested on richer fields
in test_mosaic.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from astropy.io import fits
from astropy.io.votable import parse_single_table
from astropy.table import Table
from sqlalchemy import func, select
from tests.archive.conftest import live_server
from tests.orchestrate.conftest import SIM_OPTIONS, jobs_of, make_site

from obsflow.archive import vo, web
from obsflow.archive.api import ApiSettings, create_app
from obsflow.archive.context import Archive
from obsflow.archive.register import register_program
from obsflow.archive.schema import Exposure, Product, ProductFile, ProductInput
from obsflow.archive.users import SESSION_COOKIE, add_user, create_token
from obsflow.config import SiteConfig
from obsflow.db import make_engine
from obsflow.fileio import sha256_file
from obsflow.orchestrate import run_site
from obsflow.orchestrate.handlers import JobContext, run_handler
from obsflow.orchestrate.worker import policy_of
from obsflow.reprocess.campaign import start_campaign
from obsflow.reprocess.plan import PlanCriteria, plan_reprocessing
from obsflow.simulate.run import SimResult, simulate
from obsflow.stage3.association import read_association
from obsflow.stage3.mosaic import asn_path, beside

NOW = datetime(2026, 12, 1)  # before the 12 months of exclusive access end


@dataclasses.dataclass
class Site:
    cfg: SiteConfig
    sim: SimResult
    url: str
    token: str
    cookie: str
    program: str
    i2d_ids: list[str]

    def get(self, path: str, member: bool = False, **kw: object) -> httpx.Response:
        headers = ({"Authorization": f"Bearer {self.token}",
                    "Cookie": f"{SESSION_COOKIE}={self.cookie}"} if member else {})
        return httpx.get(self.url + path, headers=headers, timeout=30, **kw)  # type: ignore[arg-type]


def _expected_associations(sim: SimResult) -> Counter[tuple[str, int, str]]:
    """(program, observation, filter) -> executed products, from the simulator's plan."""
    return Counter((e.program, e.observation, e.filter) for e in sim.plan.exposures
                   if e.status == "executed")


@pytest.fixture(scope="session")
def downlink(tmp_path_factory: pytest.TempPathFactory) -> SimResult:
    """The orchestrator tests' downlink (webb_like SUB64, 6 planned exposures, dithered)."""
    return simulate(tmp_path_factory.mktemp("image3-sim"), SIM_OPTIONS)


@pytest.fixture(scope="module")
def site(module_db_url: str, downlink: SimResult,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    cfg = make_site(tmp_path_factory.mktemp("image3-site") / "site", downlink,
                    None if module_db_url.startswith("sqlite") else module_db_url,
                    formats=("fits", "asdf"))
    program = downlink.plan.exposures[0].program
    archive = Archive.from_site(cfg)
    with archive.session() as session, session.begin():
        add_user(session, "alice", password="alice-pw")
    for prog in sorted({e.program for e in downlink.plan.exposures}):
        register_program(archive, prog, exclusive_months=12,
                         members=["alice"] if prog == program else [])
    with archive.session() as session, session.begin():
        token = create_token(session, "alice")
    summary = run_site(cfg)
    assert summary.total("failed") == 0, summary.counts
    with archive.session() as session:
        ids = list(session.scalars(select(Product.product_id).where(
            Product.kind == "i2d", Product.product_id.startswith(program))))
    app = create_app(archive, ApiSettings(clock=lambda: NOW),
                     routers=[*vo.routers(), *web.routers()])
    with live_server(app) as url:
        login = httpx.post(url + "/login", data={"name": "alice", "password": "alice-pw"})
        assert login.status_code == 303, login.text
        yield Site(cfg, downlink, url, token, login.cookies[SESSION_COOKIE], program, ids)
    archive.close()


def test_one_mosaic_per_observation_and_filter_linked_to_its_members(site: Site) -> None:
    expected = _expected_associations(site.sim)
    jobs = Counter((j.kind, j.state) for j in jobs_of(site.cfg))
    assert jobs[("image3", "done")] == len(expected) and jobs[("image3", "failed")] == 0
    with Archive.from_site(site.cfg) as archive, archive.session() as session:
        mosaics = session.execute(select(Product, Exposure).join(
            Exposure, Exposure.id == Product.exposure_id).where(Product.kind == "i2d")).all()
        assert Counter((e.program, e.observation, e.filter) for _, e in mosaics) == Counter(
            dict.fromkeys(expected, 1))
        for product, exposure in mosaics:
            assert (product.level, product.calib_level, product.run) == ("3", 3, "prompt")
            assert (exposure.visit, exposure.exposure, exposure.detector) == (0, 0,
                                                                              exposure.filter)
            crfs = session.scalars(select(Product).join(
                ProductInput, ProductInput.input_pk == Product.id).where(
                ProductInput.product_pk == product.id)).all()
            assert {c.kind for c in crfs} == {"crf"}
            assert len(crfs) == expected[(exposure.program, exposure.observation,
                                          exposure.filter)]
            cals = session.scalars(select(Product).join(
                ProductInput, ProductInput.input_pk == Product.id).where(
                ProductInput.product_pk.in_([c.id for c in crfs]))).all()
            assert {c.kind for c in cals} == {"cal"} and all(c.is_latest for c in cals)
            path = site.cfg.products_dir / product.path
            asn = read_association(asn_path(path))
            assert {m.ref.uuid for m in asn.members} == {c.uuid for c in cals}
            with fits.open(path) as hdul:
                assert hdul[0].header["NINPUTS"] == len(cals)
                steps = {name: status for name, status, _ in json.loads(
                    product.provenance)["steps"]}
                assert list(steps) == ["tweakreg", "skymatch", "resample", "source_catalog"]
                if steps["source_catalog"] == "COMPLETE":
                    assert beside(path, "cat.ecsv").is_file() and beside(path, "segm.fits").is_file()
                assert hdul[0].header["S_TWEAKR"] == steps["tweakreg"].split(":")[0]
                assert hdul["CON"].data.max() == 2 ** len(cals) - 1
                assert np.isfinite(hdul["SCI"].data[hdul["WHT"].data > 0]).all()
            # the mosaic's release date: the last member's end + the program's 12 months
            ends = session.scalars(select(Exposure.release_date).where(
                Exposure.obs_id.in_([m.ref.data_id.basename for m in asn.members]))).all()
            assert exposure.release_date == max(ends) > NOW


def _obscore_mosaics(site: Site, member: bool) -> list[str]:
    query = "SELECT obs_publisher_did, calib_level FROM ivoa.obscore WHERE calib_level = 3"
    answer = site.get("/vo/tap/sync", member=member,
                      params={"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query})
    assert answer.status_code == 200, answer.text[:300]
    rows = parse_single_table(io.BytesIO(answer.content)).to_table()
    return [str(v) for v in rows["obs_publisher_did"] if "_i2d" in str(v)]


def test_a_proprietary_mosaic_is_seen_by_members_only(site: Site) -> None:
    assert site.i2d_ids
    for product_id in site.i2d_ids:
        for path in (f"/products/{product_id}", f"/api/products/{product_id}",
                     f"/api/products/{product_id}/download",
                     f"/api/products/{product_id}/preview"):
            assert site.get(path).status_code == 404, path
            assert site.get(path, member=True).status_code == 200, path
        page = site.get(f"/products/{product_id}", member=True).text
        assert f"/api/products/{product_id}/preview" in page
    mine = site.get("/api/search", member=True, params={"kind": "i2d"}).json()
    assert set(site.i2d_ids) <= {r["product_id"] for r in mine["results"]}
    assert all(r["calib_level"] == 3 for r in mine["results"])
    anonymous = site.get("/api/search", params={"kind": "i2d"}).json()
    assert anonymous["total"] == 0
    assert _obscore_mosaics(site, member=False) == []
    assert len(_obscore_mosaics(site, member=True)) >= len(site.i2d_ids)
    download = site.get(f"/api/products/{site.i2d_ids[0]}/download", member=True)
    with fits.open(io.BytesIO(download.content)) as hdul:
        assert [h.name for h in hdul][1:8] == ["SCI", "ERR", "WHT", "CON", "VAR_POISSON",
                                               "VAR_RNOISE", "VAR_FLAT"]


def test_the_asdf_form_is_a_second_file_of_each_cal_and_i2d(site: Site) -> None:
    """With ``formats = ["fits", "asdf"]`` every _cal and _i2d has its pure ASDF form as a
    second file of the same product (own sha256, application/asdf), downloadable over the
    live server by whoever may download the FITS, and it opens with asdf and stdatamodels
    with the FITS file's arrays; other kinds have none."""
    import asdf
    from stdatamodels.jwst import datamodels

    with Archive.from_site(site.cfg) as archive, archive.session() as session:
        rows = session.execute(select(Product, ProductFile).outerjoin(
            ProductFile, ProductFile.product_pk == Product.id)).all()
    with_asdf = {p.product_id: (p, f) for p, f in rows if f is not None}
    assert {p.kind for p, _ in with_asdf.values()} == {"cal", "i2d"}
    assert all((f is not None) == (p.kind in ("cal", "i2d")) for p, f in rows)
    for product, other in with_asdf.values():
        assert (other.format, other.content_type) == ("asdf", "application/asdf")
        assert other.filename == product.filename.replace(".fits", ".asdf")
        assert other.path == product.path.replace(".fits", ".asdf")
        assert other.sha256 == sha256_file(site.cfg.products_dir / other.path) != product.sha256
    mine = [i for i in site.i2d_ids if i in with_asdf]
    cal = next(p for p, _ in with_asdf.values() if p.kind == "cal"
               and p.product_id.startswith(site.program))
    for product_id in [*mine, cal.product_id]:
        product, other = with_asdf[product_id]
        path = f"/api/products/{product_id}/download"
        assert site.get(path, params={"format": "asdf"}).status_code == 404  # proprietary
        answer = site.get(path, member=True, params={"format": "asdf"})
        assert answer.status_code == 200, answer.text[:200]
        assert answer.headers["content-type"] == "application/asdf"
        assert answer.headers["x-checksum-sha256"] == other.sha256
        assert hashlib.sha256(answer.content).hexdigest() == other.sha256
        assert f'filename="{other.filename}"' in answer.headers["content-disposition"]
        ranged = httpx.get(site.url + path, params={"format": "asdf"}, timeout=30,
                           headers={"Authorization": f"Bearer {site.token}",
                                    "Range": "bytes=0-4"})
        assert (ranged.status_code, ranged.content) == (206, b"#ASDF")
        meta = site.get(f"/api/products/{product_id}", member=True).json()
        assert [(f["format"], f["sha256"], f["size"], f["content_type"]) for f in meta["files"]
                ] == [("asdf", other.sha256, other.size, "application/asdf")]
        assert httpx.get(meta["files"][0]["download"], timeout=30, headers={
            "Authorization": f"Bearer {site.token}"}).content == answer.content
        with fits.open(site.cfg.products_dir / product.path) as hdul:
            arrays = {("data" if h.name == "SCI" else h.name.lower()): np.asarray(h.data)
                      for h in hdul[1:] if h.is_image and h.data is not None}
        with asdf.open(io.BytesIO(answer.content)) as af:
            assert set(arrays) <= set(af.tree)
            for key, value in arrays.items():
                np.testing.assert_array_equal(af.tree[key], value)
        local = site.cfg.products_dir / other.path
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the mission's own instrument names
            with datamodels.open(local) as model:
                assert type(model).__name__ == "ImageModel"
                np.testing.assert_array_equal(model.data, arrays["data"])
    rate = next(p for p, f in rows if p.kind == "rate" and p.product_id.startswith(site.program))
    missing = site.get(f"/api/products/{rate.product_id}/download", member=True,
                       params={"format": "asdf"})
    assert missing.status_code == 404 and "no asdf file" in missing.text
    bad = site.get(f"/api/products/{rate.product_id}/download", member=True,
                   params={"format": "hdf5"})
    assert bad.status_code == 422


def test_the_asdf_file_is_on_the_page_in_datalink_the_script_and_the_zip(site: Site) -> None:
    """The product page links the ASDF file, DataLink gives it as a second ``#this``
    (application/asdf), and the bulk script and zip fetch it with its sha256 next to the
    FITS file; an anonymous visitor gets none of it for the proprietary mosaic."""
    product_id = site.i2d_ids[0]
    with Archive.from_site(site.cfg) as archive, archive.session() as session:
        product = session.scalar(select(Product).where(Product.product_id == product_id))
        assert product is not None
        other = session.get(ProductFile, (product.id, "asdf"))
        assert other is not None
    asdf_url = f"/api/products/{product_id}/download?format=asdf"
    page = site.get(f"/products/{product_id}", member=True).text
    assert f'href="{asdf_url}"' in page and other.sha256 in page
    links = site.get("/vo/datalink/links", member=True, params={"ID": product_id})
    table = parse_single_table(io.BytesIO(links.content)).to_table()
    this = {(str(r["access_url"]), str(r["content_type"]), int(r["content_length"]))
            for r in table if r["semantics"] == "#this"}
    assert this == {(f"{site.url}/api/products/{product_id}/download", "application/fits",
                     product.size), (site.url + asdf_url, "application/asdf", other.size)}
    script = site.get("/download/script", member=True, params={"id": product_id}).text
    assert f"fetch {site.url}{asdf_url!r} {other.filename} {other.sha256}".replace(
        "'", "") in script.replace("'", "")
    assert f"{product.filename} {product.sha256}" in script
    anonymous = site.get("/download/script", params={"id": product_id}).text
    assert other.filename not in anonymous and "1 selected product(s)" in anonymous
    answer = site.get("/api/download/zip", member=True, params={"id": product_id})
    assert answer.status_code == 200
    with zipfile.ZipFile(io.BytesIO(answer.content)) as bundle:
        manifest = bundle.read("MANIFEST.sha256").decode()
        assert f"{other.sha256}  {other.filename}" in manifest
        assert f"{product.sha256}  {product.filename}" in manifest
        assert hashlib.sha256(bundle.read(other.filename)).hexdigest() == other.sha256
    assert site.get("/api/download/zip", params={"id": product_id}).status_code in (401, 200)
    assert other.filename not in site.get("/api/download/zip",
                                          params={"id": product_id}).content.decode("latin-1")


def _catalog_products(site: Site) -> list[tuple[Product, Product, Product, list[str]]]:
    """(i2d, its _segm, its _cat, the i2d's crf UUIDs) of every current mosaic of the site whose
    catalog step completed."""
    out = []
    with Archive.from_site(site.cfg) as archive, archive.session() as session:
        for mosaic in session.scalars(select(Product).where(Product.kind == "i2d",
                                                            Product.is_latest.is_(True))):
            steps = {n: s for n, s, _ in json.loads(mosaic.provenance)["steps"]}
            if steps["source_catalog"] != "COMPLETE":
                continue
            same = {p.kind: p for p in session.scalars(select(Product).where(
                Product.exposure_id == mosaic.exposure_id, Product.is_latest.is_(True)))}
            crfs = [r["uuid"] for r in json.loads(mosaic.provenance)["inputs"]]
            out.append((mosaic, same["segm"], same["cat"], crfs))
    return out


def test_the_catalog_and_segmentation_map_are_products_of_the_mosaic(site: Site) -> None:
    """``_cat`` (ECSV, ObsCore measurements) and ``_segm`` (JWST SegmentationMapModel) are
    level-3 products in the mosaic's row, linked to the mosaic and its crfs, listed on its
    page, searchable, in ObsCore, and hidden exactly like the mosaic."""
    from tests.jwst_models import open_as_jwst

    found = _catalog_products(site)
    assert len(found) >= 1
    sources = 0
    with Archive.from_site(site.cfg) as archive, archive.session() as session:
        for mosaic, segm, cat, crfs in found:
            for product, kind in ((segm, "segm"), (cat, "cat")):
                assert (product.kind, product.level, product.calib_level) == (kind, "3", 3)
                assert (product.run, product.version) == (mosaic.run, mosaic.version)
                inputs = set(session.scalars(select(Product.uuid).join(
                    ProductInput, ProductInput.input_pk == Product.id).where(
                    ProductInput.product_pk == product.id)))
                assert inputs == {mosaic.uuid, *crfs}
            assert (cat.dataproduct_type, cat.content_type) == ("measurements", "text/x-ecsv")
            assert (segm.dataproduct_type, segm.content_type) == ("image", "application/fits")
            path = site.cfg.products_dir / mosaic.path
            assert site.cfg.products_dir / cat.path == beside(path, "cat.ecsv")
            table = Table.read(beside(path, "cat.ecsv"), format="ascii.ecsv")
            assert table.meta["product"]["uuid"] == cat.uuid
            sources += len(table)
            name, warnings = open_as_jwst(beside(path, "segm.fits"))
            assert (name, warnings) == ("SegmentationMapModel", [])
            with fits.open(beside(path, "segm.fits")) as hdul:
                labels = hdul["SCI"].data
                assert labels.dtype == np.uint32
                assert labels.shape == fits.getdata(path, "SCI").shape
                assert set(np.unique(labels)) - {0} == set(table["label"])
                assert hdul[0].header["PRODUUID"] == segm.uuid
    # the SUB64 fields hold nothing detectable (alice's one true source is a 26 mag galaxy,
    # no mosaic pixel above 2.9 sigma): the catalogs are empty.  Until 2026-12-02 alice's had
    # two detections, both noise at the mosaic's low-weight edges (flags EDGE, LOW_WEIGHT),
    # which the catalog of that day (hysteresis mask, threshold following ERR) no longer
    # makes on the same mosaic (docs/stage3.md)
    assert sources == 0
    mosaic, segm, cat, _ = next(f for f in found if f[0].product_id.startswith(site.program))
    page = site.get(f"/products/{mosaic.product_id}", member=True).text
    assert f'data-sibling="{segm.product_id}"' in page
    assert f'data-sibling="{cat.product_id}"' in page
    for product in (segm, cat):
        for path in (f"/products/{product.product_id}", f"/api/products/{product.product_id}",
                     f"/api/products/{product.product_id}/download"):
            assert site.get(path).status_code == 404, path
            assert site.get(path, member=True).status_code == 200, path
    download = site.get(f"/api/products/{cat.product_id}/download", member=True)
    assert download.headers["content-type"].startswith("text/x-ecsv")
    assert download.content == beside(site.cfg.products_dir / mosaic.path, "cat.ecsv").read_bytes()
    for kind in ("cat", "segm"):
        mine = site.get("/api/search", member=True, params={"kind": kind}).json()
        assert {r["product_id"] for r in mine["results"]} >= {
            p.product_id for f in found for p in f[1:3] if p.kind == kind
            and p.product_id.startswith(site.program)}
        assert site.get("/api/search", params={"kind": kind}).json()["total"] == 0
    query = ("SELECT obs_publisher_did FROM ivoa.obscore WHERE dataproduct_type = 'measurements'"
             " AND calib_level = 3")
    rows = {}
    for member in (False, True):
        answer = site.get("/vo/tap/sync", member=member,
                          params={"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query})
        assert answer.status_code == 200, answer.text[:300]
        table = parse_single_table(io.BytesIO(answer.content)).to_table()
        rows[member] = [str(v) for v in table["obs_publisher_did"]]
    assert rows[False] == []
    assert any(cat.product_id in did for did in rows[True]), rows[True]


def test_running_again_changes_nothing(site: Site) -> None:
    with Archive.from_site(site.cfg) as archive, archive.session() as session:
        before = session.execute(select(Product.product_id, Product.sha256)
                                 .order_by(Product.id)).all()
    assert run_site(site.cfg).total("failed") == 0
    job = next(j for j in jobs_of(site.cfg) if j.kind == "image3")
    engine = make_engine(site.cfg.database_url)
    try:  # the job itself again, as after a crash between its registration and its commit
        result = run_handler("image3", JobContext(site.cfg, engine), job.inputs)
    finally:
        engine.dispose()
    assert result.outputs["created"] is False
    with Archive.from_site(site.cfg) as archive, archive.session() as session:
        after = session.execute(select(Product.product_id, Product.sha256)
                                .order_by(Product.id)).all()
    assert after == before


NOTEBOOK = Path(__file__).parents[2] / "docs" / "archive_tour.ipynb"


def _printed(cells: list[Any]) -> str:
    """What the executed cells printed (their stdout)."""
    return "".join(out.get("text", "") for cell in cells for out in cell.get("outputs", [])
                   if out.get("output_type") == "stream" and out.get("name") == "stdout")


def test_the_archive_tour_notebook_runs_against_the_live_site(site: Site,
                                                              tmp_path: Path) -> None:
    """docs/archive_tour.ipynb, executed by a Jupyter kernel against this site as alice (her
    token in OBSFLOW_TOKEN): a cell that raises fails the test (nbclient's
    CellExecutionError); what it prints is checked against the archive's own files."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") and cell.get("execution_count") is None
               for cell in notebook.cells if cell.cell_type == "code")  # committed stripped
    client = NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env={**os.environ, "OBSFLOW_URL": site.url, "OBSFLOW_TOKEN": site.token,
                        "MPLBACKEND": "module://matplotlib_inline.backend_inline"})
    printed = _printed(notebook.cells)
    with Archive.from_site(site.cfg) as archive, archive.session() as session:
        rows = session.scalar(select(func.count()).select_from(Product).join(
            Exposure, Product.exposure_id == Exposure.id).where(
            Exposure.program == site.program, Product.is_latest, Product.calib_level >= 2,
            Product.dataproduct_type == "image", Product.content_type == "application/fits"))
        mosaic = re.search(r"downloaded (\S+): \d+ bytes, checksum OK, SCI shape \((\d+), "
                           r"(\d+)\)", printed)
        assert mosaic is not None, printed
        assert mosaic.group(1) in site.i2d_ids  # alice's mosaic, not the other program's
        key = session.scalars(select(Product.path).where(
            Product.product_id == mosaic.group(1))).one()
        store = archive.settings.store
        shape = fits.getdata(store.local_path(key), "SCI").shape
        catalog = Table.read(store.local_path(str(beside(Path(key), "cat.ecsv"))))
    assert rows is not None and rows > len(site.i2d_ids)
    assert f"rows found: {rows}\n" in printed
    assert (int(mosaic.group(2)), int(mosaic.group(3))) == shape
    assert f"catalog sources: {len(catalog)}\n" in printed  # (0 here: see above)
    plots = [out for cell in notebook.cells for out in cell.get("outputs", [])
             if "image/png" in out.get("data", {})]
    assert len(plots) == 1


def test_a_campaign_that_remakes_the_members_remakes_the_mosaic(site: Site) -> None:
    """(Runs last: it adds versions.)  A software campaign over one program plans its cal
    products and, downstream, the crf and i2d; the campaign's new cals make one new mosaic
    version per association, in the campaign's run, linked to the new crfs."""
    engine = make_engine(site.cfg.database_url)
    try:
        plan = plan_reprocessing(engine, PlanCriteria(program=site.program,
                                                      software="99.0.0"))
        kinds = Counter(p.kind for p in plan.products)
        assert kinds["i2d"] == len(site.i2d_ids) and kinds["crf"] == kinds["cal"], [
            (p.product_id, p.kind, p.reasons) for p in plan.products]
        assert kinds["cat"] == kinds["segm"] <= kinds["i2d"]
        run = start_campaign(engine, plan, policy_of(site.cfg), name="remake-image3")
    finally:
        engine.dispose()
    assert run_site(site.cfg).total("failed") == 0
    with Archive.from_site(site.cfg) as archive, archive.session() as session:
        mosaics = session.scalars(select(Product).where(
            Product.kind == "i2d", Product.product_id.startswith(site.program),
            Product.is_latest.is_(True))).all()
        assert len(mosaics) == len(site.i2d_ids)
        for mosaic in mosaics:
            assert mosaic.run == run and mosaic.version == 2
            prov = json.loads(mosaic.provenance)
            crfs = session.scalars(select(Product).where(
                Product.uuid.in_([r["uuid"] for r in prov["inputs"]]))).all()
            assert crfs and all(c.run == run and c.is_latest for c in crfs)
    for mosaic, segm, cat, _ in _catalog_products(site):
        if mosaic.product_id.startswith(site.program):  # remade with the mosaic, linked to it
            assert (segm.run, segm.version, cat.run, cat.version) == (run, 2, run, 2)
            assert json.loads(cat.provenance)["inputs"][0]["uuid"] == mosaic.uuid
