"""SIA v2 and TAP with pyvo as the client, on a live uvicorn server, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import pyvo
import requests
from astropy.io.votable import parse_single_table
from astropy.time import Time
from pyvo.dal.exceptions import DALQueryError
from tests.archive.conftest import fitsverify, live_server, live_site, make_archive
from tests.archive.factories import meta, write_product

from obsflow.archive.api import ApiSettings, create_app
from obsflow.archive.register import register_product, register_program
from obsflow.archive.vo import routers
from obsflow.archive.vo.obscore import COLUMNS
from obsflow.profiles import load_profile

NOW = datetime(2026, 6, 1)  # program 01234 (12 months) still proprietary, 03456 public
DEEP = (53.16, -27.78)
CAL = (80.49, -69.5)
J_BAND, H_BAND = (1.2e-6, 1.3e-6), (1.55e-6, 1.7e-6)
MANDATORY = [c.name for c in COLUMNS][:31]


@dataclass
class VoSite:
    url: str
    tokens: dict[str, str]
    ids: dict[str, str]
    files: dict[str, Path]

    def session(self, user: str | None = None) -> requests.Session:
        s = requests.Session()
        if user is not None:
            s.headers["Authorization"] = f"Bearer {self.tokens[user]}"
        return s

    def sia2(self, user: str | None = None) -> pyvo.dal.SIA2Service:
        return pyvo.dal.SIA2Service(self.url + "/vo/sia2", session=self.session(user))

    def tap(self, user: str | None = None) -> pyvo.dal.TAPService:
        return pyvo.dal.TAPService(self.url + "/vo/tap", session=self.session(user))


def _files(folder: Path) -> dict[str, Path]:
    cal = {"program": "03456", "ra_v1": CAL[0], "dec_v1": CAL[1], "target_ra": CAL[0],
           "target_dec": CAL[1], "target": "CAL-FIELD"}
    return {
        "secret": write_product(folder, meta()),
        "cal_j": write_product(folder, meta(**cal, filter="J")),
        "cal_h": write_product(folder, meta(**cal, filter="H", exposure=2, expstart=61010.0,
                                            expmid=61010.005, expend=61010.01)),
        "cal_k": write_product(folder, meta(**cal, filter="K", exposure=3, expstart=61020.0,
                                            expmid=61020.005, expend=61020.01)),
        "ramp": write_product(folder, meta(**cal, filter="J", exposure=4), kind="uncal"),
        "wrap": write_product(folder, meta(program="03456", ra_v1=0.02, dec_v1=10.0,
                                           target="Wrap O'Field", exposure=5)),
    }


@pytest.fixture(scope="module")
def vo(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VoSite]:
    folder = tmp_path_factory.mktemp("vo")
    with live_site(module_db_url, folder, ApiSettings(clock=lambda: NOW, bad_token_limit=1000),
                   files=_files(folder / "in"), routers=routers()) as live:
        yield VoSite(live.url, live.tokens, live.ids, live.files)


def _ids(results: pyvo.dal.DALResults) -> set[str]:
    return {str(rec["product_id"]) for rec in results}


def test_sia2_cone_band_time_and_record_accessors(vo: VoSite, tmp_path: Path) -> None:
    sia = vo.sia2()
    cone = sia.search(pos=(*CAL, 0.05))
    assert _ids(cone) == {vo.ids[k] for k in ("cal_j", "cal_h", "cal_k", "ramp")}
    assert set(MANDATORY) <= set(cone.fieldnames)
    assert _ids(sia.search(pos=(*CAL, 0.05), band=H_BAND)) == {vo.ids["cal_h"]}
    late = sia.search(pos=(*CAL, 0.05), time=(Time(61009.0, format="mjd"), Time(61030.0, format="mjd")))
    assert _ids(late) == {vo.ids["cal_h"], vo.ids["cal_k"]}
    ramp = sia.search(pos=(*CAL, 0.05), calib_level=1, data_type="cube",
                      instrument="SSCAM", collection="OBSFLOW-S")
    assert _ids(ramp) == {vo.ids["ramp"]}
    rec = next(iter(sia.search(pos=(*CAL, 0.05), band=J_BAND, calib_level=2)))
    assert rec.obs_id == vo.files["cal_j"].name.removesuffix("_cal.fits")
    assert rec.dataproduct_type == "image" and rec.calib_level == 2
    assert rec.s_ra.to_value("deg") == pytest.approx(CAL[0], abs=1e-3)
    assert rec.em_min.to_value("m") < 1.25e-6 < rec.em_max.to_value("m")
    assert rec.access_format == "application/fits" and rec.target_name == "CAL-FIELD"
    url = rec.getdataurl()
    assert url == rec.access_url == f"{vo.url}/api/products/{vo.ids['cal_j']}/download"
    data = httpx.get(url, timeout=30).content
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(
        vo.files["cal_j"].read_bytes()).hexdigest()
    (tmp_path / "got.fits").write_bytes(data)
    fitsverify(tmp_path / "got.fits")


def test_sia2_range_polygon_and_or_of_values(vo: VoSite) -> None:
    sia = vo.sia2()
    assert _ids(sia.search(pos=(359.0, 360.0, 9.0, 11.0))) == set()
    wrap = httpx.get(vo.url + "/vo/sia2/query", params={"POS": "RANGE 359.5 0.5 9 11"})
    assert {r["product_id"] for r in parse_single_table(_io(wrap)).to_table()} == {vo.ids["wrap"]}
    square = (CAL[0] - 0.1, CAL[1] - 0.05, CAL[0] + 0.1, CAL[1] - 0.05,
              CAL[0] + 0.1, CAL[1] + 0.05, CAL[0] - 0.1, CAL[1] + 0.05)
    assert len(sia.search(pos=square)) == 4
    clockwise = tuple(v for pair in reversed(list(zip(square[0::2], square[1::2], strict=True)))
                      for v in pair)
    assert len(sia.search(pos=clockwise)) == 4
    both = httpx.get(vo.url + "/vo/sia2/query",
                     params=[("pos", f"CIRCLE {CAL[0]} {CAL[1]} 0.05"),
                             ("POS", "CIRCLE 0.02 10.0 0.05"), ("band", " ".join(map(str, J_BAND))),
                             ("BAND", " ".join(map(str, H_BAND))), ("CALIB", "2")])
    assert both.status_code == 200, both.text
    got = {r["product_id"] for r in parse_single_table(_io(both)).to_table()}
    assert got == {vo.ids["cal_j"], vo.ids["cal_h"], vo.ids["wrap"]}


def _io(response: httpx.Response) -> object:
    import io

    return io.BytesIO(response.content)


def test_sia2_proprietary_rows_only_with_the_token(vo: VoSite) -> None:
    assert len(vo.sia2().search(pos=(*DEEP, 0.05))) == 0
    assert _ids(vo.sia2("alice").search(pos=(*DEEP, 0.05))) == {vo.ids["secret"]}
    assert len(vo.sia2("bob").search(pos=(*DEEP, 0.05))) == 0
    bad = pyvo.dal.SIA2Service(vo.url + "/vo/sia2", session=_bearer("obf_" + "x" * 43))
    with pytest.raises(DALQueryError, match="unknown token"):
        bad.search(pos=(*DEEP, 0.05))
    r = httpx.get(vo.url + "/vo/sia2/query", params={"POS": f"CIRCLE {DEEP[0]} {DEEP[1]} 1"},
                  headers={"Authorization": "Bearer nonsense"})
    assert r.status_code == 401 and b'value="ERROR"' in r.content


def _bearer(token: str) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"
    return s


@pytest.mark.parametrize("params", [
    {"POS": "CIRCLE 10 20"}, {"POS": "CIRCLE 10 95 1"}, {"POS": "CIRCLE a b c"},
    {"POS": "BOX 1 2 3 4"}, {"POS": "POLYGON 0 0 10 0 10 10 5 1 0 10"},
    {"BAND": "2e-6 1e-6"}, {"TIME": "nan 5"}, {"CALIB": "two"}, {"MAXREC": "-1"},
    {"RESPONSEFORMAT": "application/json"}, {"POS": "CIRCLE 10 20 1 '; DROP TABLE products; --"},
])
def test_sia2_bad_parameters_answer_a_votable_error(vo: VoSite, params: dict[str, str]) -> None:
    r = httpx.get(vo.url + "/vo/sia2/query", params=params, timeout=30)
    assert r.status_code == 400 and r.headers["content-type"].startswith(
        "application/x-votable+xml")
    assert b'name="QUERY_STATUS" value="ERROR"' in r.content and b"<TR>" not in r.content


def test_tap_contains_order_top_and_accessors(vo: VoSite) -> None:
    tap = vo.tap()
    cone = (f"SELECT product_id, obs_id, access_url, t_min FROM ivoa.ObsCore WHERE "
            f"CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', {CAL[0]}, {CAL[1]}, 0.05)) = 1")
    rows = tap.run_sync(cone + " ORDER BY t_min DESC")
    assert [str(r["product_id"]) for r in rows][:1] == [vo.ids["cal_k"]] and len(rows) == 4
    top = tap.run_sync("SELECT TOP 2 product_id FROM ivoa.obscore WHERE calib_level = 2 "
                       "ORDER BY t_min ASC, product_id")
    assert [str(r["product_id"]) for r in top] == [vo.ids["cal_j"], vo.ids["wrap"]]
    rec = tap.run_sync(cone + " AND filter = 'H'")[0]
    assert rec.getdataurl() == f"{vo.url}/api/products/{vo.ids['cal_h']}/download"
    star = tap.run_sync("SELECT * FROM ivoa.ObsCore WHERE obs_collection = 'OBSFLOW-S'")
    assert set(MANDATORY) <= set(star.fieldnames) and len(star) == 5


@pytest.mark.parametrize(("where", "keys"), [
    ("target_name LIKE 'CAL%' AND calib_level = 2", {"cal_j", "cal_h", "cal_k"}),
    ("target_name LIKE 'cal%'", set()),  # LIKE is case-sensitive on both backends
    ("target_name = 'Wrap O''Field'", {"wrap"}),
    ("filter IN ('H', 'K') OR dataproduct_type = 'cube'", {"cal_h", "cal_k", "ramp"}),
    ("t_min BETWEEN 61005 AND 61025 AND NOT filter = 'K'", {"cal_h"}),
    ("NOT (calib_level = 2) AND (t_max - t_min) * 86400 > 100", {"ramp"}),
    ("CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', 0.0, 10.0, 0.1)) = 0 "
     "AND em_min < 1.3e-6 AND calib_level >= 2", {"cal_j"}),
    ("s_xel1 = 32 AND s_xel2 = 32 AND obs_release_date < '2025-11-25' AND s_dec < -60", {"cal_j", "ramp"}),
    ("obs_id = '' OR 1=1 --' AND proposal_id = '01234'",  # valid ADQL: still only public rows
     {"cal_j", "cal_h", "cal_k", "ramp", "wrap"}),
])
def test_tap_where_clauses(vo: VoSite, where: str, keys: set[str]) -> None:
    rows = vo.tap().run_sync(f"SELECT product_id FROM ivoa.ObsCore WHERE {where}")
    assert _ids(rows) == {vo.ids[k] for k in keys}


def test_tap_proprietary_rows_only_with_the_token(vo: VoSite) -> None:
    adql = ("SELECT obs_id, product_id FROM ivoa.ObsCore WHERE CONTAINS(POINT('ICRS', s_ra, "
            f"s_dec), CIRCLE('ICRS', {DEEP[0]}, {DEEP[1]}, 0.1)) = 1")
    assert len(vo.tap().run_sync(adql)) == 0
    assert len(vo.tap().run_sync("SELECT obs_id FROM ivoa.ObsCore WHERE proposal_id = '01234'")) == 0
    assert _ids(vo.tap("alice").run_sync(adql)) == {vo.ids["secret"]}
    assert len(vo.tap("bob").run_sync(adql)) == 0


@pytest.mark.parametrize("adql", [
    "SELECT FROM ivoa.ObsCore",
    "SELECT obs_id FROM users",
    "SELECT token_hash FROM ivoa.ObsCore",
    "SELECT obs_id FROM ivoa.ObsCore; DROP TABLE products",
    "SELECT obs_id FROM ivoa.ObsCore WHERE obs_id = 1",
    "SELECT obs_id FROM ivoa.ObsCore WHERE sqlite_version() = '3'",
    "SELECT obs_id FROM ivoa.ObsCore WHERE obs_id IN (SELECT obs_id FROM exposures)",
    "SELECT obs_id FROM ivoa.ObsCore UNION SELECT name FROM users",
    "SELECT obs_id FROM ivoa.ObsCore o JOIN products p ON 1 = 1",
    "SELECT obs_id FROM ivoa.ObsCore WHERE CONTAINS(POINT('GALACTIC', s_ra, s_dec), "
    "CIRCLE('ICRS', 1, 2, 3)) = 1",
    "SELECT obs_id FROM ivoa.ObsCore WHERE CONTAINS(POINT('ICRS', s_ra, s_dec), "
    "CIRCLE('ICRS', 1, 2, -3)) = 1",
    "SELECT obs_id, obs_id FROM ivoa.ObsCore",
    "SELECT obs_id FROM ivoa.ObsCore WHERE " + "(" * 80 + "s_ra > 1" + ")" * 80,
    "SELECT obs_id FROM ivoa.ObsCore WHERE s_ra > 1e999",
    "SELECT obs_id FROM ivoa.ObsCore WHERE obs_release_date < 'yesterday'",
])
def test_tap_bad_and_hostile_adql_answers_a_votable_error(vo: VoSite, adql: str) -> None:
    with pytest.raises(DALQueryError):
        vo.tap("bob").run_sync(adql)
    r = httpx.post(vo.url + "/vo/tap/sync", data={"REQUEST": "doQuery", "LANG": "ADQL",
                                                  "QUERY": adql}, timeout=30)
    assert r.status_code == 400, r.text
    assert b'value="ERROR"' in r.content and b"<TR>" not in r.content


def test_tap_protocol_parameters(vo: VoSite) -> None:
    query = "SELECT obs_id FROM ivoa.ObsCore WHERE calib_level = 2"
    r = httpx.post(vo.url + "/vo/tap/sync", data={"request": "doQuery", "lang": "ADQL",
                                                  "Query": query, "format": "votable"})
    assert r.status_code == 200 and len(parse_single_table(_io(r)).to_table()) == 4
    r = httpx.get(vo.url + "/vo/tap/sync", params={"REQUEST": "doQuery", "LANG": "ADQL",
                                                   "QUERY": query, "MAXREC": "2"})
    assert b'value="OVERFLOW"' in r.content
    assert len(vo.tap().run_sync(query, maxrec=1)) == 1
    for bad in ({"LANG": "PQL"}, {"REQUEST": "getCapabilities"}, {"FORMAT": "csv"}, {}):
        params = {"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query, **bad}
        if not bad:
            del params["QUERY"]
        r = httpx.post(vo.url + "/vo/tap/sync", data=params)
        assert r.status_code == 400 and b'value="ERROR"' in r.content, bad


def test_vosi_documents(vo: VoSite) -> None:
    tap = vo.tap()
    table = tap.tables["ivoa.ObsCore"]
    columns = {c.name: c for c in table.columns}
    assert set(MANDATORY) <= set(columns)
    assert columns["access_url"].utype == "obscore:Access.Reference"
    assert columns["s_ra"].ucd == "pos.eq.ra" and columns["s_ra"].unit == "deg"
    standards = {cap.standardid for cap in tap.capabilities}
    assert "ivo://ivoa.net/std/TAP" in standards
    sia = vo.sia2()
    assert sia.query_ep == vo.url + "/vo/sia2/query"
    for service in ("sia2", "tap"):
        r = httpx.get(f"{vo.url}/vo/{service}/availability")
        assert r.status_code == 200 and b"<vosi:available>true</vosi:available>" in r.content
    r = httpx.get(vo.url + "/vo/sia2/capabilities", headers={"Host": "archive.example:8443"})
    assert b"http://archive.example:8443/vo/sia2/query" in r.content


def test_sia2_post_and_rate_limited_bad_tokens_answer_votables(tmp_path: Path) -> None:
    archive = make_archive(f"sqlite:///{tmp_path / 'vo.db'}", tmp_path / "store")
    register_product(archive, write_product(tmp_path / "in", meta(program="03456")))
    register_program(archive, "03456", exclusive_months=0)
    app = create_app(archive, ApiSettings(clock=lambda: NOW, bad_token_limit=2),
                     routers=routers())
    try:
        with live_server(app) as url:
            ok = httpx.post(url + "/vo/sia2/query", data={"pos": f"CIRCLE {DEEP[0]} {DEEP[1]} 1"})
            assert ok.status_code == 200 and len(parse_single_table(_io(ok)).to_table()) == 1
            bad = {"Authorization": "Bearer obf_" + "y" * 43}
            codes = [httpx.get(url + "/vo/tap/sync", headers=bad,
                               params={"QUERY": "SELECT obs_id FROM ivoa.ObsCore"}).status_code
                     for _ in range(3)]
            assert codes == [401, 401, 429]
            last = httpx.get(url + "/vo/sia2/query", headers=bad, params={"POS": "CIRCLE 1 1 1"})
            assert last.status_code == 429 and b'value="ERROR"' in last.content
    finally:
        archive.close()


def test_sia2_and_api_select_by_footprint_not_centre(vo: VoSite) -> None:
    # the cal field's footprints are 16" squares (32 pixels of 0.5"): a 5" circle 12" east of
    # their centre overlaps them but holds no centre (nor the ramp's position)
    ra = CAL[0] + 12 / 3600 / math.cos(math.radians(CAL[1]))
    footprint = {vo.ids[k] for k in ("cal_j", "cal_h", "cal_k")}
    assert _ids(vo.sia2().search(pos=(ra, CAL[1], 5 / 3600))) == footprint
    api = httpx.get(vo.url + "/api/search", params={"ra": ra, "dec": CAL[1], "radius": 5 / 3600})
    assert {r["product_id"] for r in api.json()["results"]} == footprint
    centre = vo.tap().run_sync("SELECT product_id FROM ivoa.ObsCore WHERE CONTAINS(POINT('ICRS', "
                               f"s_ra, s_dec), CIRCLE('ICRS', {ra}, {CAL[1]}, {5 / 3600})) = 1")
    assert _ids(centre) == set()
    assert _ids(vo.sia2().search(pos=(ra + 8 / 3600, CAL[1], 5 / 3600))) == set()


def test_obscore_sampling_and_band_columns(vo: VoSite) -> None:
    band = load_profile("smallsat").instrument("SSCAM").filter("J")
    rows = {str(r["product_id"]): r for r in vo.sia2().search(pos=(*CAL, 0.05), band=J_BAND)}
    cal, ramp = rows[vo.ids["cal_j"]], rows[vo.ids["ramp"]]
    assert (cal["s_xel1"], cal["s_xel2"], cal["t_xel"], cal["pol_xel"]) == (32, 32, 1, 0)
    assert cal["t_resolution"] == pytest.approx(864.0)
    assert (ramp["s_xel1"], ramp["s_xel2"], ramp["t_xel"]) == (32, 32, 3)  # 1 x 3 groups
    assert ramp["t_resolution"] == pytest.approx(1.0)  # TGROUP
    assert cal["em_res_power"] == pytest.approx(band.pivot_um / band.width_um)
    region = str(cal["s_region"]).split()
    assert region[:2] == ["POLYGON", "ICRS"] and len(region) == 10
    assert str(ramp["s_region"]).startswith("POSITION ICRS")
