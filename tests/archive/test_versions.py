"""Versions, provenance, lineage and diffs through the HTTP API and the VO endpoints.

A live uvicorn server on SQLite and PostgreSQL; the products (three
versions of a public ``cal``, two of a proprietary one, mosaics linking
the two programs) come from :func:`tests.archive.factories.register_versions`.
Every access check is made anonymously and as ``bob`` (member of another
program), against ``alice`` (member of 01234) who sees everything.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pyvo
import requests
from fastapi.routing import APIRoute
from sqlalchemy import select
from tests.archive.conftest import live_site
from tests.archive.factories import (
    LONG_VALUE,
    PUBLIC_CAL,
    VersionedSite,
    meta,
    register_versions,
    write_product,
)

from obsflow.archive.api import ApiSettings, products, search
from obsflow.archive.context import Archive
from obsflow.archive.policy import ANONYMOUS
from obsflow.archive.register import register_product, register_program
from obsflow.archive.schema import Product
from obsflow.archive.search import get_product, visible_provenance
from obsflow.archive.vo import routers
from obsflow.models.provenance import Provenance

NOW = datetime(2026, 6, 1)  # program 01234 (12 months) proprietary, 03456 public
OUTSIDERS = (None, "bob")
SECRET_KEYS = ("secret_v1", "secret_v2", "secret_i2d")


@dataclass
class Site:
    url: str
    tokens: dict[str, str]
    made: VersionedSite

    def get(self, path: str, user: str | None = None, **kw: Any) -> httpx.Response:
        headers = {} if user is None else {"Authorization": f"Bearer {self.tokens[user]}"}
        return httpx.get(self.url + path, headers=headers, timeout=30, **kw)

    def json(self, path: str, user: str | None = None, **kw: Any) -> Any:
        r = self.get(path, user, **kw)
        assert r.status_code == 200, r.text
        return r.json()

    def tap(self, user: str | None = None) -> pyvo.dal.TAPService:
        session = requests.Session()
        if user is not None:
            session.headers["Authorization"] = f"Bearer {self.tokens[user]}"
        return pyvo.dal.TAPService(self.url + "/vo/tap", session=session)


@pytest.fixture(scope="module")
def site(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("versions")
    with live_site(module_db_url, folder, ApiSettings(clock=lambda: NOW),
                   routers=routers()) as live:
        yield Site(live.url, live.tokens, register_versions(live.archive, folder / "in"))


def _ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["product_id"] for row in rows]


def test_every_version_is_listed_with_its_run_software_and_context(site: Site) -> None:
    ids = site.made.ids
    body = site.json(f"/api/products/{ids['cal_v2']}")
    versions = body["versions"]
    assert _ids(versions) == [ids["cal_v1"], ids["cal_v2"], ids["cal_v3"]]
    assert [v["version"] for v in versions] == [1, 2, 3]
    assert [v["is_latest"] for v in versions] == [False, False, True]
    assert [v["run"] for v in versions] == ["prompt-1", "campaign-2", "campaign-3"]
    assert [v["software_version"] for v in versions] == ["0.2.0", "0.2.1", "0.3.0"]
    assert [v["ref_context"] for v in versions] == [3, 5, 6]
    assert [v["created"] for v in versions] == sorted(v["created"] for v in versions)
    assert versions[0]["metadata"] == f"{site.url}/api/products/{ids['cal_v1']}"
    assert (body["run"], body["uuid"], body["ref_context"], body["is_latest"]) == \
        ("campaign-2", site.made.uuids["cal_v2"], 5, False)


def test_provenance_round_trip_file_catalog_api_is_whole(site: Site) -> None:
    from astropy.io import fits

    for key in ("rate", "cal_v1", "cal_v2", "cal_v3"):
        original = site.made.provenance[key]
        with fits.open(site.made.files[key]) as hdul:
            assert Provenance.from_hdu(hdul["PROVENANCE"]) == original
        served = site.json(f"/api/products/{site.made.ids[key]}")["provenance"]
        assert Provenance.from_dict(served) == original, key
    served = site.json(f"/api/products/{site.made.ids['cal_v3']}")["provenance"]
    assert len(served["references"]) == 60 and len(served["input_files"]) == 40
    params = served["steps"][0][2]
    assert params["note"] == LONG_VALUE and len(params["grid"]) == 500
    assert params["nested"] == {"a": {"b": [1, "two", None]}}
    assert [r[2] for r in served["references"]] == \
        [r.sha256 for r in site.made.provenance["cal_v3"].references]
    assert served["inputs"][0]["product_id"] == site.made.ids["rate"]


def test_lineage_both_ways(site: Site) -> None:
    ids = site.made.ids
    rate = site.json(f"/api/products/{ids['rate']}")
    assert rate["inputs"] == []
    assert _ids(rate["outputs"]) == [ids["cal_v1"], ids["cal_v2"], ids["cal_v3"]]
    assert [o["is_latest"] for o in rate["outputs"]] == [False, False, True]
    cal = site.json(f"/api/products/{ids['cal_v1']}")
    assert _ids(cal["inputs"]) == [ids["rate"]] and cal["outputs"] == []
    assert cal["inputs"][0]["kind"] == "rate" and cal["inputs"][0]["level"] == "2a"
    mine = site.json(f"/api/products/{ids['cal_v2']}", "alice")
    assert _ids(mine["outputs"]) == [ids["secret_i2d"]]
    mosaic = site.json(f"/api/products/{ids['public_i2d']}", "alice")
    assert sorted(_ids(mosaic["inputs"])) == sorted([ids["cal_v3"], ids["secret_v2"]])
    assert _ids(mosaic["provenance"]["inputs"]) == [ids["cal_v3"], ids["secret_v2"]]
    secret = site.json(f"/api/products/{ids['secret_v2']}", "alice")
    assert _ids(secret["outputs"]) == [ids["secret_i2d"], ids["public_i2d"]]


@pytest.mark.parametrize("user", OUTSIDERS)
def test_hidden_inputs_and_outputs_of_public_products_are_not_linked(site: Site,
                                                                     user: str | None) -> None:
    ids = site.made.ids
    assert site.json(f"/api/products/{ids['cal_v2']}", user)["outputs"] == []
    mosaic = site.json(f"/api/products/{ids['public_i2d']}", user)
    assert _ids(mosaic["inputs"]) == [ids["cal_v3"]]
    assert _ids(mosaic["provenance"]["inputs"]) == [ids["cal_v3"]]
    assert _ids(site.json(f"/api/products/{ids['cal_v3']}", user)["outputs"]) == \
        [ids["public_i2d"]]


def _diff(site: Site, a: str, b: str, user: str | None = None) -> Any:
    return site.json(f"/api/products/{site.made.ids[a]}/diff/{site.made.ids[b]}", user)


def _sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def test_diff_between_two_versions(site: Site) -> None:
    diff = _diff(site, "cal_v1", "cal_v2")
    assert (diff["from"]["product_id"], diff["to"]["product_id"]) == \
        (site.made.ids["cal_v1"], site.made.ids["cal_v2"])
    assert diff["software"] == {"from": "0.2.0", "to": "0.2.1"}
    assert diff["context"] == {"from": 3, "to": 5}
    assert diff["run"] == {"from": "prompt-1", "to": "campaign-2"}
    assert diff["recipe"] is None
    assert diff["references"] == {
        "added": [{"reftype": "distortion", "name": "distortion_0001.asdf",
                   "sha256": _sha("distortion_0001.asdf")}],
        "removed": [{"reftype": "area", "name": "area_0001.fits",
                     "sha256": _sha("area_0001.fits")}],
        "replaced": [{"reftype": "flat",
                      "from": {"name": "flat_0001.fits", "sha256": _sha("flat_0001.fits")},
                      "to": {"name": "flat_0002.fits", "sha256": _sha("flat_0002.fits")}}]}
    assert diff["steps"] == {
        "added": ["skymatch"], "removed": [], "status": [],
        "params": [{"step": "flat_field", "param": "fill", "change": "added", "to": 0.0},
                   {"step": "photom", "param": "mode", "change": "changed", "from": "fast",
                    "to": "exact"},
                   {"step": "photom", "param": "scale", "change": "removed", "from": 1.0}]}
    assert diff["inputs"] == {"added": [], "removed": []}
    assert diff["same_processing"] is False
    back = _diff(site, "cal_v2", "cal_v1")
    assert back["references"]["added"] == diff["references"]["removed"]
    assert back["steps"]["removed"] == ["skymatch"]


def test_diff_keeps_long_values_whole_and_a_product_equals_itself(site: Site) -> None:
    diff = _diff(site, "cal_v2", "cal_v3")
    note = [p for p in diff["steps"]["params"] if p["param"] == "note"]
    assert note == [{"step": "flat_field", "param": "note", "change": "added", "to": LONG_VALUE}]
    assert diff["steps"]["removed"] == ["photom", "skymatch"]
    assert len(diff["references"]["added"]) == 60 and len(diff["input_files"]["added"]) == 40
    same = _diff(site, "cal_v3", "cal_v3")
    assert same["same_processing"] is True and same["run"] is None


@pytest.mark.parametrize("user", OUTSIDERS)
def test_no_diff_with_a_hidden_product(site: Site, user: str | None) -> None:
    ids = site.made.ids
    missing = ids["secret_v1"].replace("01234", "07777")
    for a, b in ((ids["cal_v1"], ids["secret_v1"]), (ids["secret_v1"], ids["cal_v1"])):
        hidden = site.get(f"/api/products/{a}/diff/{b}", user)
        absent = site.get(f"/api/products/{a.replace(ids['secret_v1'], missing)}/diff/"
                          f"{b.replace(ids['secret_v1'], missing)}", user)
        assert hidden.status_code == absent.status_code == 404
        assert hidden.json()["error"] == absent.json()["error"].replace(missing, ids["secret_v1"])
    assert site.get(f"/api/products/{ids['cal_v1']}/diff/{ids['secret_v1']}",
                    "alice").status_code == 200
    mosaic = site.json(f"/api/products/{ids['public_i2d']}/diff/{ids['secret_i2d']}", "alice")
    assert _ids(mosaic["inputs"]["removed"]) == [ids["cal_v3"]]
    assert _ids(mosaic["inputs"]["added"]) == [ids["cal_v2"]]


def test_search_gives_current_versions_unless_all_are_asked_for(site: Site) -> None:
    ids = site.made.ids
    current = {r["product_id"] for r in site.json("/api/search", params={"kind": "cal"},
                                                  user="alice")["results"]}
    assert current == {ids["cal_v3"], ids["secret_v2"]}
    every = site.json("/api/search", "alice", params={"kind": "cal", "all_versions": "true"})
    assert {r["product_id"] for r in every["results"]} == \
        {ids[k] for k in ("cal_v1", "cal_v2", "cal_v3", "secret_v1", "secret_v2")}
    for user in OUTSIDERS:
        every = site.json("/api/search", user, params={"all_versions": "true"})
        assert {r["product_id"] for r in every["results"]} == \
            {ids[k] for k in ("rate", "cal_v1", "cal_v2", "cal_v3", "public_i2d")}


def test_old_versions_stay_downloadable(site: Site) -> None:
    for key in ("cal_v1", "cal_v2"):
        r = site.get(f"/api/products/{site.made.ids[key]}/download")
        assert r.status_code == 200
        assert r.content == site.made.files[key].read_bytes()
        assert r.headers["x-checksum-sha256"] == hashlib.sha256(r.content).hexdigest()
    for user in OUTSIDERS:
        assert site.get(f"/api/products/{site.made.ids['secret_v1']}/download",
                        user).status_code == 404
    assert site.get(f"/api/products/{site.made.ids['secret_v1']}/download",
                    "alice").status_code == 200


def test_obscore_has_one_current_row_per_dataset(site: Site) -> None:
    ids = site.made.ids
    rows = site.tap("alice").run_sync(
        "SELECT product_id, obs_id FROM ivoa.ObsCore").to_table()
    got = [str(v) for v in rows["product_id"]]
    assert sorted(got) == sorted(ids[k] for k in ("rate", "cal_v3", "secret_v2", "secret_i2d",
                                                  "public_i2d"))
    datasets = [pid.rsplit("_v", 1)[0] for pid in got]  # <obs_id>_<kind>: one row each
    assert len(set(datasets)) == len(datasets)
    assert {str(o) for o in rows["obs_id"]} == {d.rsplit("_", 1)[0] for d in datasets}
    old = site.tap("alice").run_sync(
        f"SELECT obs_id FROM ivoa.ObsCore WHERE product_id = '{ids['cal_v1']}'")
    assert len(old) == 0
    sia = pyvo.dal.SIA2Service(site.url + "/vo/sia2", session=requests.Session())
    found = [str(r["product_id"]) for r in sia.search(pos=(80.49, -69.5, 0.1))]
    assert sorted(found) == sorted(ids[k] for k in ("rate", "cal_v3", "public_i2d"))


@pytest.mark.parametrize("user", OUTSIDERS)
def test_no_response_names_a_hidden_product(site: Site, user: str | None) -> None:
    hidden = [site.made.ids[k] for k in SECRET_KEYS] + [site.made.uuids[k] for k in SECRET_KEYS]
    ids = site.made.ids
    texts = [site.get(f"/api/products/{ids[k]}", user).text
             for k in ("rate", "cal_v1", "cal_v2", "cal_v3", "public_i2d")]
    texts += [site.get(f"/api/products/{ids[a]}/diff/{ids[b]}", user).text
              for a, b in (("public_i2d", "cal_v3"), ("cal_v3", "public_i2d"))]
    texts.append(site.get("/api/search", user, params={"all_versions": "true"}).text)
    texts.append(str(site.tap(user).run_sync("SELECT * FROM ivoa.ObsCore").to_table()))
    for text in texts:
        assert not [h for h in hidden if h in text]
    assert "01234" not in texts[-1]


def test_every_api_route_is_documented() -> None:
    def shape(text: str) -> str:
        return re.sub(r"\{[^}]*\}", "{}", text)

    docs = shape((Path(__file__).parents[2] / "docs" / "archive.md").read_text())
    paths = [shape(route.path) for router in (products.router, search.router)
             for route in router.routes if isinstance(route, APIRoute)]
    assert "/api/products/{}/diff/{}" in paths
    assert [p for p in paths if f"`GET {p}`" not in docs and f"`{p}`" not in docs] == []


def test_a_row_without_a_provenance_document_shows_its_columns(archive: Archive,
                                                                tmp_path: Path) -> None:
    register_program(archive, "03456", exclusive_months=0)
    record = register_product(archive, write_product(tmp_path, meta(**PUBLIC_CAL)))
    with archive.session() as session, session.begin():
        row = session.scalar(select(Product).where(Product.product_id == record.product_id))
        assert row is not None
        row.provenance, row.software_version, row.recipe = "{}", "0.1.0", "image2"
    with archive.session() as session:
        product, _ = get_product(session, record.product_id, ANONYMOUS, NOW)
        assert visible_provenance(session, product, ANONYMOUS, NOW) == {
            "run": record.run, "software": "0.1.0", "recipe": "image2", "context": None,
            "inputs": [], "references": [], "steps": [], "input_files": []}
        product.provenance = '{"run": "x"'
        with pytest.raises(ValueError):
            visible_provenance(session, product, ANONYMOUS, NOW)
