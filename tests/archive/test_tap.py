"""TAP beyond the basics, on a live server, on SQLite and PostgreSQL with the same answers:
STILTS taplint, ADQL 2.1 core, TAP_SCHEMA, async UWS jobs and the examples document.

The site is the one of ``test_vo.py``: public products cal_j / cal_h / cal_k
(filters J, H, K; level 2), ramp (J, level 1 cube, no WCS), wrap (J, level
2, target ``Wrap O'Field``), and program 01234's proprietary ``secret``
(alice's).
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET

import httpx
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io.votable import parse_single_table
from tests.archive.test_vo import CAL, DEEP, VoSite, vo  # noqa: F401 - the module's site

from obsflow.archive.vo.tap_examples import EXAMPLES
from obsflow.archive.vo.tap_tables import TABLES

PUBLIC = {"cal_j", "cal_h", "cal_k", "ramp", "wrap"}

TAPLINT_STAGES = "TMV TME TMS TMC CPV CAP AVV QGE QPO QAS UWS MDQ OBS EXA"
"""Every taplint stage but LOC (ObsLocTAP: this archive publishes no observation plans) and
UPL (table upload is not offered, and the capabilities say so); docs/archive.md."""


def _sync(site: VoSite, query: str, user: str | None = None, **extra: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {site.tokens[user]}"} if user else {}
    return httpx.post(site.url + "/vo/tap/sync", headers=headers, timeout=60,
                      data={"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query, **extra})


def _rows(site: VoSite, query: str, user: str | None = None) -> list[tuple[object, ...]]:
    r = _sync(site, query, user)
    assert r.status_code == 200, r.text
    table = parse_single_table(io.BytesIO(r.content)).to_table()
    return [tuple(_plain(row[name]) for name in table.colnames) for row in table]


def _plain(value: object) -> object:
    if np.ma.is_masked(value):
        return None
    if isinstance(value, np.floating):
        return round(float(value), 6)
    if isinstance(value, np.integer):
        return int(value)
    return str(value) if isinstance(value, str | np.str_) else value


# -- taplint -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def taplint(vo: VoSite) -> str:  # noqa: F811
    """taplint's report on this site (run once per backend)."""
    stilts = shutil.which("stilts")
    assert stilts, "STILTS is missing: `make test` installs it (.ci/stilts.sh)"
    result = subprocess.run([stilts, "taplint", f"tapurl={vo.url}/vo/tap", "report=EFW",
                             f"stages={TAPLINT_STAGES}", "maxrepeat=3"],
                            capture_output=True, text=True, timeout=300, check=False)
    return result.stdout + result.stderr


def test_taplint_finds_no_error_and_no_failure(taplint: str) -> None:
    totals = re.search(r"Totals: Errors: (\d+); Warnings: (\d+); Failures: (\d+)", taplint)
    assert totals, taplint
    errors = [line for line in taplint.splitlines() if line.startswith(("E-", "F-"))]
    assert (int(totals[1]), int(totals[3])) == (0, 0), "\n".join(errors)


def test_taplint_ran_the_obscore_and_async_stages(taplint: str) -> None:
    for section in ("OBS: Test implementation of ObsCore", "QAS: Make ADQL queries in async",
                    "UWS: Test asynchronous", "TMS: Check content of tables metadata from "
                    "TAP_SCHEMA", "EXA: Check content of examples"):
        assert f"Section {section}" in taplint


# -- ADQL 2.1 core: the same answers on both databases ---------------------------------------
ADQL_CASES = [
    ("SELECT DISTINCT filter FROM ivoa.ObsCore ORDER BY filter", [("H",), ("J",), ("K",)]),
    ("SELECT TOP 2 obs_id FROM ivoa.ObsCore ORDER BY t_min DESC, obs_id",
     [("03456001001_00003_ssd1",), ("03456001001_00002_ssd1",)]),
    ("SELECT filter, COUNT(*) AS n FROM ivoa.ObsCore GROUP BY filter HAVING COUNT(*) > 1",
     [("J", 3)]),
    ("SELECT COUNT(*), MIN(calib_level), MAX(t_min) - MIN(t_min) AS span FROM ivoa.ObsCore",
     [(5, 1, 20.0)]),
    ("SELECT calib_level, AVG(t_exptime) AS mean_s, SUM(calib_level) AS total "
     "FROM ivoa.ObsCore GROUP BY calib_level ORDER BY 1", [(1, 864.0, 1), (2, 864.0, 8)]),
    ('SELECT o."filter" AS f, o.calib_level * 10 + 1 AS code FROM ivoa.ObsCore AS o '
     "WHERE o.target_name = 'CAL-FIELD' AND o.calib_level = 2 ORDER BY f",
     [("H", 21), ("J", 21), ("K", 21)]),
    ("SELECT i.obs_id FROM ivoa.ObsCore AS i WHERE i.filter IN ('H', 'K') ORDER BY i.obs_id",
     [("03456001001_00002_ssd1",), ("03456001001_00003_ssd1",)]),
    ("SELECT LOWER(target_name) AS t, UPPER(filter) || '-band' AS band FROM ivoa.ObsCore "
     "WHERE target_name LIKE 'Wrap%'", [("wrap o'field", "J-band")]),
    ("SELECT filter FROM ivoa.ObsCore WHERE target_name ILIKE 'wrap%'", [("J",)]),
    ("SELECT COUNT(*) FROM ivoa.ObsCore WHERE obs_id IN (SELECT obs_id FROM ivoa.ObsCore "
     "WHERE dataproduct_type = 'cube')", [(1,)]),
    ("SELECT COUNT(*) FROM ivoa.ObsCore AS a WHERE EXISTS (SELECT * FROM ivoa.ObsCore AS b "
     "WHERE b.t_min > a.t_min)", [(4,)]),
    ("SELECT a.filter, b.filter AS later FROM ivoa.ObsCore AS a JOIN ivoa.ObsCore AS b "
     "ON a.t_min + 10 = b.t_min WHERE a.calib_level = 2 AND b.calib_level = 2 "
     "ORDER BY 1", [("H", "K"), ("J", "H"), ("J", "H")]),
    ("SELECT t.table_name, COUNT(c.column_name) AS n FROM TAP_SCHEMA.tables AS t "
     "LEFT OUTER JOIN TAP_SCHEMA.columns AS c ON c.table_name = t.table_name "
     "GROUP BY t.table_name ORDER BY t.table_name",
     [(t.name, len(t.columns)) for t in sorted(TABLES, key=lambda t: t.name)]),
    ("SELECT COUNT(*) FROM ivoa.ObsCore WHERE 1 = CONTAINS(POINT('ICRS', s_ra, s_dec), "
     f"CIRCLE('ICRS', {CAL[0]}, {CAL[1]}, 0.05))", [(4,)]),
    ("SELECT COUNT(*) FROM ivoa.ObsCore WHERE CONTAINS(POINT('ICRS', s_ra, s_dec), "
     f"CIRCLE('ICRS', {CAL[0]}, {CAL[1]}, 0.05)) = 0", [(1,)]),
    ("SELECT COUNT(*) FROM ivoa.ObsCore WHERE 1 = CONTAINS(POINT('ICRS', s_ra, s_dec), "
     "BOX('ICRS', 0.0, 10.0, 0.2, 0.2))", [(1,)]),
    ("SELECT COUNT(*) FROM ivoa.ObsCore WHERE CONTAINS(POINT('ICRS', s_ra, s_dec), "
     f"POLYGON('ICRS', {CAL[0] - 0.1}, {CAL[1] - 0.05}, {CAL[0] + 0.1}, {CAL[1] - 0.05}, "
     f"{CAL[0]}, {CAL[1] + 0.05})) = 1", [(4,)]),
    # footprints are 16 arcsec squares around CAL; the ramp (no WCS) is a point at CAL
    ("SELECT filter FROM ivoa.ObsCore WHERE 1 = INTERSECTS(s_region, CIRCLE('ICRS', "
     f"{CAL[0]}, {CAL[1] + 0.003}, 0.001)) ORDER BY filter", [("H",), ("J",), ("K",)]),
    ("SELECT COUNT(*) FROM ivoa.ObsCore WHERE INTERSECTS(CIRCLE('ICRS', "
     f"{CAL[0]}, {CAL[1]}, 0.001), s_region) = 1", [(4,)]),
    ("SELECT COUNT(*) FROM ivoa.ObsCore WHERE CONTAINS(CIRCLE('ICRS', 0.02, 10.0, 0.0001), "
     "s_region) = 1", [(1,)]),
    ("SELECT TOP 1 filter, DISTANCE(POINT('ICRS', s_ra, s_dec), POINT('ICRS', 0.0, 10.0)) "
     "AS d FROM ivoa.ObsCore ORDER BY d", [("J", 0.019696)]),
    ("SELECT COUNT(*) FROM ivoa.ObsCore WHERE DISTANCE(POINT('ICRS', s_ra, s_dec), "
     f"POINT('ICRS', {CAL[0]}, {CAL[1]})) < 1", [(4,)]),
    ("SELECT ROUND(s_dec, 1) AS dec1, ABS(s_dec) > 60 AS ignored FROM ivoa.ObsCore", None),
]


@pytest.mark.parametrize(("query", "expected"), ADQL_CASES)
def test_adql_core_same_answers_on_both_backends(vo: VoSite, query: str,  # noqa: F811
                                                 expected: list[tuple[object, ...]] | None
                                                 ) -> None:
    if expected is None:  # not ADQL: a comparison is not a value
        r = _sync(vo, query)
        assert r.status_code == 400 and b'value="ERROR"' in r.content
        return
    got = _rows(vo, query)
    assert got == expected


def test_geometry_agrees_with_astropy(vo: VoSite) -> None:  # noqa: F811
    """DISTANCE of every public product against astropy's separation."""
    rows = _rows(vo, "SELECT s_ra, s_dec, DISTANCE(POINT('ICRS', s_ra, s_dec), "
                     f"POINT('ICRS', {CAL[0]}, {CAL[1]})) AS d FROM ivoa.ObsCore")
    assert len(rows) == 5
    for ra, dec, d in rows:
        truth = SkyCoord(ra * u.deg, dec * u.deg).separation(SkyCoord(*CAL, unit="deg")).deg
        assert d == pytest.approx(truth, abs=2e-6)


def test_hidden_rows_stay_hidden_in_every_new_form(vo: VoSite) -> None:  # noqa: F811
    deep = f"CIRCLE('ICRS', {DEEP[0]}, {DEEP[1]}, 0.1)"
    for query in (f"SELECT COUNT(*) FROM ivoa.ObsCore WHERE 1 = CONTAINS(POINT('ICRS', s_ra, "
                  f"s_dec), {deep})",
                  f"SELECT COUNT(*) FROM ivoa.ObsCore WHERE INTERSECTS(s_region, {deep}) = 1",
                  "SELECT COUNT(*) FROM ivoa.ObsCore WHERE proposal_id = '01234'",
                  "SELECT COUNT(*) FROM ivoa.ObsCore AS a JOIN ivoa.ObsCore AS b "
                  "ON a.obs_id = b.obs_id WHERE b.proposal_id = '01234'",
                  "SELECT COUNT(*) FROM (SELECT proposal_id FROM ivoa.ObsCore) AS s "
                  "WHERE s.proposal_id = '01234'",
                  # an error on a hidden row's values would tell it exists
                  "SELECT COUNT(*) FROM ivoa.ObsCore WHERE 1 / (s_dec + 27.78) > -1e9 "
                  "AND proposal_id = '01234'"):
        assert _rows(vo, query) == [(0,)], query
        assert _rows(vo, query, "bob") == [(0,)], query
    assert _rows(vo, "SELECT COUNT(*) FROM ivoa.ObsCore WHERE proposal_id = '01234'",
                 "alice") == [(1,)]
    values = _rows(vo, "SELECT * FROM TAP_SCHEMA.columns")
    assert not any("01234" in str(v) or "DEEP" in str(v) for row in values for v in row)


@pytest.mark.parametrize("query", [
    "SELECT obs_id FROM ivoa.ObsCore AS o JOIN users AS u ON 1 = 1",
    "SELECT obs_id FROM ivoa.ObsCore WHERE obs_id IN (SELECT name FROM users)",
    "SELECT pg_read_file('/etc/passwd') FROM ivoa.ObsCore",
    "SELECT obs_id FROM ivoa.ObsCore WHERE obsflow_hpx > 0",
    "SELECT obs_id FROM ivoa.ObsCore AS a, ivoa.ObsCore AS b",
    "SELECT POINT('ICRS', s_ra, s_dec) FROM ivoa.ObsCore",
    "SELECT obs_id FROM ivoa.ObsCore WHERE CONTAINS(POINT('ICRS', s_ra, s_dec), "
    "CIRCLE('ICRS', 1, 2, 3)) = 2",
    "SELECT obs_id FROM ivoa.ObsCore UNION SELECT obs_id FROM ivoa.ObsCore",
])
def test_refused_adql_answers_a_votable_error(vo: VoSite, query: str) -> None:  # noqa: F811
    r = _sync(vo, query)
    assert r.status_code == 400, (query, r.text)
    assert b'value="ERROR"' in r.content and b"<TR>" not in r.content


# -- TAP_SCHEMA, /tables, examples -------------------------------------------------------------
def test_tap_schema_matches_tables_document(vo: VoSite) -> None:  # noqa: F811
    doc = ET.fromstring(httpx.get(vo.url + "/vo/tap/tables", timeout=30).content)
    listed = {(t.findtext("name"), c.findtext("name")) for t in doc.iter("table")
              for c in t.iter("column")}
    schema = set(_rows(vo, 'SELECT table_name, column_name FROM TAP_SCHEMA.columns'))
    assert listed == schema and ("ivoa.ObsCore", "s_region") in schema
    xtype = _rows(vo, "SELECT xtype, datatype FROM TAP_SCHEMA.columns WHERE "
                      "column_name = 's_region'")
    assert xtype == [("adql:REGION", "char")]
    assert _rows(vo, 'SELECT "size" FROM TAP_SCHEMA.columns WHERE column_name = \'obs_id\'') \
        == [(None,)]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.id)
def test_examples_run(vo: VoSite, example: object) -> None:  # noqa: F811
    rows = _rows(vo, example.query)  # type: ignore[attr-defined]
    assert rows, example


def test_examples_document_lists_every_example(vo: VoSite) -> None:  # noqa: F811
    r = httpx.get(vo.url + "/vo/tap/examples", timeout=30)
    assert r.status_code == 200
    doc = ET.fromstring(r.content)
    queries = [e.text for e in doc.iter("{http://www.w3.org/1999/xhtml}pre")
               if e.get("property") == "query"]
    assert queries == [e.query for e in EXAMPLES]


# -- async (UWS) -------------------------------------------------------------------------------
UWS = "{http://www.ivoa.net/xml/UWS/v1.0}"


def _job(client: httpx.Client, url: str) -> ET.Element:
    r = client.get(url, params={"WAIT": "5"})
    assert r.status_code == 200, r.text
    return ET.fromstring(r.content)


def test_async_job_lifecycle_and_owner_only(vo: VoSite) -> None:  # noqa: F811
    with (httpx.Client(headers={"Authorization": f"Bearer {vo.tokens['alice']}"},
                       timeout=30) as alice,
          httpx.Client(headers={"Authorization": f"Bearer {vo.tokens['bob']}"},
                       timeout=30) as bob, httpx.Client(timeout=30) as anonymous):
        _async_lifecycle(vo, alice, bob, anonymous)


def _async_lifecycle(vo: VoSite, alice: httpx.Client, bob: httpx.Client,  # noqa: F811
                     anonymous: httpx.Client) -> None:
    query = "SELECT obs_id FROM ivoa.ObsCore WHERE proposal_id = '01234'"
    r = alice.post(vo.url + "/vo/tap/async", data={"REQUEST": "doQuery", "LANG": "ADQL",
                                                   "QUERY": query})
    assert r.status_code == 303
    job_url = r.headers["location"]
    assert _job(alice, job_url).findtext(UWS + "phase") == "PENDING"
    for client in (bob, anonymous):  # another user, anonymous: no such job
        assert client.get(job_url).status_code == 404
        assert client.post(job_url + "/phase", data={"PHASE": "RUN"}).status_code == 404
        listed = ET.fromstring(client.get(vo.url + "/vo/tap/async").content)
        assert not list(listed.iter(UWS + "jobref"))
    assert alice.post(job_url + "/phase", data={"PHASE": "RUN"}).status_code == 303
    deadline = time.monotonic() + 30
    while (phase := alice.get(job_url + "/phase").text) != "COMPLETED":
        assert phase in ("QUEUED", "EXECUTING") and time.monotonic() < deadline, phase
        time.sleep(0.05)
    table = parse_single_table(io.BytesIO(alice.get(job_url + "/results/result").content))
    assert [str(v) for v in table.array["obs_id"]] == ["01234001001_00001_ssd1"]
    assert bob.get(job_url + "/results/result").status_code == 404
    listed = ET.fromstring(alice.get(vo.url + "/vo/tap/async").content)
    assert job_url.rsplit("/", 1)[1] in {j.get("id") for j in listed.iter(UWS + "jobref")}
    assert alice.delete(job_url).status_code == 303
    assert alice.get(job_url).status_code == 404


def test_async_bad_query_ends_in_error_with_a_document(vo: VoSite) -> None:  # noqa: F811
    with httpx.Client(timeout=30) as client:
        _async_error(vo, client)


def _async_error(vo: VoSite, client: httpx.Client) -> None:  # noqa: F811
    r = client.post(vo.url + "/vo/tap/async", data={"LANG": "ADQL", "PHASE": "RUN",
                                                    "QUERY": "SELECT nothing FROM nowhere"})
    job_url = r.headers["location"]
    deadline = time.monotonic() + 30
    while (job := _job(client, job_url)).findtext(UWS + "phase") != "ERROR":
        assert time.monotonic() < deadline
    assert "nowhere" in (job.findtext(f"{UWS}errorSummary/{UWS}message") or "")
    error = client.get(job_url + "/error")
    assert error.status_code == 200 and b'value="ERROR"' in error.content
    assert client.post(job_url, data={"ACTION": "DELETE"}).status_code == 303
