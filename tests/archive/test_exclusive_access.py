"""Exclusive access: no route of the archive tells a value only proprietary data has, beyond
what the site's access policy makes public.

A live server on 127.0.0.1 (SQLite and PostgreSQL) holds a public program
and a proprietary one whose data has its own program id, PI, title, target,
filter, sky position, dates, runs, software, recipe, step parameters,
products (ids, UUIDs, checksums, files), a mosaic's source catalog and lineage (a
proprietary mosaic made from a public product).  Every route of the app —
enumerated from its route table, so a new route fails
:func:`test_every_route_is_walked` until it is added to :func:`_walk` — is
requested with public ids, with the proprietary ids and with queries aimed
at the proprietary values, by four callers:

* ``anonymous``;
* ``bob_token`` and ``bob_cookie``: a member of another program, with an
  API token and with a web session cookie;
* ``alice``: a member of the proprietary program (token and cookie), the
  control: her walk must find every proprietary value, which proves the
  walk reaches them and the scan would see them.

For everyone but alice no body or header (HTML, JSON, VOTable, FITS and
image bytes) contains a proprietary value, except one the request itself
carried (a 404 names the id asked for); hidden products, previews and
catalogs answer 404; and every count, option list and facet (search
totals, the filter menu, VOTable rows, MAXREC overflow)
equals the public one.

The site runs under each access policy.  Under ``hidden`` (SQLite and
PostgreSQL) that rule holds for every value.  Under ``metadata``
(PostgreSQL) the web search lists the proprietary observations by their
program, target, instrument, filter, times and release date: those values
(:data:`TOLD_UNDER_METADATA`) may be told, and the search counts and the
filter menu include the proprietary observations; every other value
(product ids, files, checksums, positions, PI, title, runs, provenance)
must still never appear.
"""

from __future__ import annotations

import io
import re
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus, urlencode

import httpx
import pytest
from astropy.io.votable import parse_single_table
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import select
from tests.archive.conftest import live_server, make_archive
from tests.archive.factories import meta, write_light_curve, write_product
from tests.conftest import fresh_database

from obsflow.archive import vo, web
from obsflow.archive.api import ApiSettings, create_app
from obsflow.archive.context import Archive
from obsflow.archive.hips import build_hips, site_hips_dir
from obsflow.archive.register import register_product, register_program
from obsflow.archive.schema import Exposure, Product, Program
from obsflow.archive.users import SESSION_COOKIE, add_user, create_token
from obsflow.archive.vo.obscore import COLUMNS
from obsflow.models.identity import ProductRef
from obsflow.models.metadata import ExposureMeta
from obsflow.models.provenance import Provenance, StepRecord

NOW = datetime(2026, 6, 1)
PUBLIC, SECRET, OTHER = "03456", "97531", "05678"
SECRET_TARGET, SECRET_FILTER = "HIDDEN-NEBULA-7", "ZSECRET"
SECRET_POS = (222.2222, 33.3333)
PUBLIC_POS = (80.49, -69.5)
SECRET_START = 61100.25
"""MJD of the proprietary exposures (2026-03-01; released 2027-03-01 with 12 months)."""

PUBLIC_FIELDS: dict[str, Any] = {
    "program": PUBLIC, "target": "OPEN-FIELD", "ra_v1": PUBLIC_POS[0],
    "dec_v1": PUBLIC_POS[1], "pi_name": "P. Ublic", "title": "Open sky survey"}
TOLD_UNDER_METADATA = {SECRET, SECRET_TARGET, SECRET_FILTER, "61100.25", "2027-03-01"}
"""The proprietary values the ``metadata`` policy lists (program, target, filter, start
time, release date)."""

SITES = [("sqlite", "hidden"), ("postgresql", "hidden"), ("postgresql", "metadata")]
"""(database backend, access policy) of each site the walk runs against."""

SECRET_FIELDS: dict[str, Any] = {
    "program": SECRET, "target": SECRET_TARGET, "ra_v1": SECRET_POS[0],
    "dec_v1": SECRET_POS[1], "pi_name": "Dr. Hidden Person", "title": "Secret survey of nebulae",
    "expstart": SECRET_START, "expmid": SECRET_START + 0.005, "expend": SECRET_START + 0.01}


# -- the site ----------------------------------------------------------------------------------

@dataclass
class AccessSite:
    """The live server, the callers' credentials, and what is public and what is not."""

    url: str
    app: FastAPI
    policy: str
    public_ids: list[str]
    secret_ids: list[str]
    mosaic_ids: list[str]
    """The current ``_i2d`` of each program (public first), each with a source catalog."""
    secrets: list[str]
    public_filters: list[str]
    public_latest: int
    public_versions: int
    public_rows: list[tuple[str, int]]
    """(dataproduct_type, calib_level) of every latest public product."""
    public_observations: int
    secret_observations: int
    secret_filter_observations: int
    """Proprietary exposures, all and in :data:`SECRET_FILTER`."""
    all_filters: list[str]
    authority: str
    callers: dict[str, dict[str, str]] = field(default_factory=dict)
    alice_jobs: tuple[str, str] = ("", "")
    """Async TAP jobs of alice: one completed (its result holds her program's rows), one
    the walk deletes."""


def _product(archive: Archive, folder: Path, m: ExposureMeta, kind: str,
             provenance: Provenance | None = None, inputs: tuple[ProductRef, ...] = (),
             ) -> ProductRef:
    """Write and register one product (with its reference and provenance when given)."""
    made = None
    ref = ProductRef(kind, m.data_id, provenance.run if provenance else "prompt-1")
    if provenance is not None:
        made = (ref, Provenance(provenance.run, provenance.software, provenance.recipe,
                                provenance.context, inputs=inputs, steps=provenance.steps))
    path = write_product(folder / f"{kind}-{ref.run}", m, kind=kind,
                         seed=m.exposure, made=made)
    register_product(archive, path, now=NOW - timedelta(days=30))
    return ref


def _register(archive: Archive, folder: Path) -> None:
    public = Provenance("prompt-1", "0.2.0", "image2", 3,
                        steps=(StepRecord("flat_field", "COMPLETE", {"apply": True}),))
    rerun = Provenance("campaign-2", "0.2.1", "image2", 4,
                       steps=(StepRecord("flat_field", "COMPLETE", {"apply": False}),))
    hidden = Provenance("run-hidden-42", "9.7.5-hidden", "hidden-recipe", 42,
                        steps=(StepRecord("flat_field", "COMPLETE",
                                          {"note": "hidden-param-value-314"}),))
    hidden_rerun = Provenance("run-hidden-43", "9.7.6-hidden", "hidden-recipe", 43)
    mosaic = Provenance("run-hidden-44", "9.7.5-hidden", "hidden-image3", 42,
                        steps=(StepRecord("resample", "COMPLETE", {"kernel": "hidden-kernel"}),))

    ramp = meta(**PUBLIC_FIELDS, exposure=1)
    _product(archive, folder, ramp, "uncal")
    rate = _product(archive, folder, ramp, "rate", public)
    _product(archive, folder, ramp, "cal", public, (rate,))
    cal = _product(archive, folder, ramp, "cal", rerun, (rate,))
    for n, band in ((2, "H"), (3, "K")):
        _product(archive, folder, meta(**PUBLIC_FIELDS, exposure=n, filter=band), "cal", public)
    _product(archive, folder, meta(**PUBLIC_FIELDS, exposure=8), "i2d", public, (cal,))

    secret = meta(**SECRET_FIELDS, exposure=1, filter=SECRET_FILTER)
    _product(archive, folder, secret, "cal", hidden)
    secret_cal = _product(archive, folder, secret, "cal", hidden_rerun)
    for n, band in ((2, "J"), (3, "H")):
        _product(archive, folder, meta(**SECRET_FIELDS, exposure=n, filter=band), "cal", hidden)
    # made from a public product: the public product's lineage must not name it
    _product(archive, folder, meta(**SECRET_FIELDS, exposure=9), "i2d", mosaic,
             (cal, secret_cal))
    # light curves (ECSV, not FITS): hidden with their exposure's data
    for m, prov, source in ((ramp, public, rate), (secret, hidden, secret_cal)):
        ref = ProductRef("phot", m.data_id, prov.run)
        path = write_light_curve(folder / f"phot-{prov.run}", ref, Provenance(
            prov.run, prov.software, "tso_photometry", prov.context, inputs=(source,),
            steps=prov.steps))
        register_product(archive, path, now=NOW - timedelta(days=30))


def _secret_values(archive: Archive) -> list[str]:
    """Every value the proprietary program's data has and the public data has not."""
    values = {SECRET, SECRET_TARGET, SECRET_FILTER, SECRET_FIELDS["pi_name"],
              SECRET_FIELDS["title"], "run-hidden-42", "run-hidden-43", "run-hidden-44",
              "9.7.5-hidden", "9.7.6-hidden", "hidden-recipe", "hidden-image3",
              "hidden-param-value-314", "hidden-kernel", "hidden-catalog-value-271", "222.222", "61100.25", "2027-03-01"}
    with archive.session() as session:
        rows = session.execute(select(Product, Exposure)
                               .join(Exposure, Product.exposure_id == Exposure.id)
                               .where(Exposure.program == SECRET)).all()
        for product, exposure in rows:
            values |= {product.product_id, product.uuid, product.sha256, product.filename,
                       exposure.obs_id, exposure.s_region}
    return sorted(values)


@pytest.fixture(scope="module", params=SITES, ids=["-".join(s) for s in SITES])
def site(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[AccessSite]:
    backend, policy = request.param
    folder = tmp_path_factory.mktemp("access")
    with fresh_database(backend, folder) as url:
        yield from _site(url, policy, folder)


def _site(db_url: str, policy: str, folder: Path) -> Iterator[AccessSite]:
    archive = make_archive(db_url, folder / "store", access_policy=policy)
    with archive.session() as session, session.begin():
        for name in ("alice", "bob"):
            add_user(session, name, password=f"{name}-pw")
    register_program(archive, PUBLIC, pi_name=PUBLIC_FIELDS["pi_name"],
                     title=PUBLIC_FIELDS["title"], exclusive_months=0)
    register_program(archive, SECRET, pi_name=SECRET_FIELDS["pi_name"],
                     title=SECRET_FIELDS["title"], exclusive_months=12, members=["alice"])
    for other in (OTHER, *(f"056{n:02d}" for n in range(80, 100))):
        # bob is a member of many programs: the policy's condition grows costlier
        register_program(archive, other, exclusive_months=12, members=["bob"])
    _register(archive, folder / "in")
    with archive.session() as session, session.begin():
        tokens = {name: create_token(session, name) for name in ("alice", "bob")}
    with archive.session() as session:
        products = session.execute(select(Product.product_id, Product.is_latest, Exposure.program)
                                   .join(Exposure, Product.exposure_id == Exposure.id)
                                   .order_by(Product.id)).all()
        public_rows = [(t, c) for t, c in session.execute(
            select(Product.dataproduct_type, Product.calib_level)
            .join(Exposure, Product.exposure_id == Exposure.id)
            .where(Exposure.program == PUBLIC, Product.is_latest.is_(True)))]
        mosaics = session.execute(select(Product.product_id, Product.path, Exposure.program)
                                  .join(Exposure, Product.exposure_id == Exposure.id)
                                  .where(Product.kind == "i2d")
                                  .order_by(Exposure.program != PUBLIC)).all()
        assert session.scalar(select(Program.title).where(Program.program == SECRET))
        public_filters = sorted(set(session.scalars(
            select(Exposure.filter).where(Exposure.program == PUBLIC))))
        exposures = session.execute(select(Exposure.program, Exposure.filter)).all()
    for _, path, program in mosaics:  # a source catalog beside each mosaic, as stage 3 writes
        catalog = "# %ECSV 1.0\n# ---\n# datatype:\n# - {name: label, datatype: int64}\n"
        catalog += "# - {name: note, datatype: string}\nlabel note\n1 " + (
            "hidden-catalog-value-271" if program == SECRET else "open-catalog-value") + "\n"
        archive.settings.store.put_bytes(catalog.encode(), path[:-len("i2d.fits")] + "cat.ecsv")
    assert build_hips(archive, folder, now=NOW) is not None  # the sky map's, public only
    app = create_app(archive, ApiSettings(clock=lambda: NOW, bad_token_limit=100_000,
                                          hips_dir=site_hips_dir(folder)),
                     routers=[*vo.routers(), *web.routers()])
    with live_server(app) as url:
        secrets = _secret_values(archive)
        if policy == "metadata":
            secrets = [v for v in secrets if v not in TOLD_UNDER_METADATA]
        access = AccessSite(
            url, app, policy, public_ids=[p for p, _, g in products if g == PUBLIC],
            secret_ids=[p for p, _, g in products if g == SECRET],
            mosaic_ids=[pid for pid, _, _ in mosaics],
            secrets=secrets, public_filters=public_filters,
            public_latest=sum(1 for _, latest, g in products if g == PUBLIC and latest),
            public_versions=sum(1 for _, _, g in products if g == PUBLIC),
            public_rows=public_rows, authority=archive.settings.authority,
            public_observations=sum(1 for g, _ in exposures if g == PUBLIC),
            secret_observations=sum(1 for g, _ in exposures if g == SECRET),
            secret_filter_observations=sum(1 for g, f in exposures
                                           if g == SECRET and f == SECRET_FILTER),
            all_filters=sorted({f for _, f in exposures}))
        assert len(access.mosaic_ids) == 2
        cookies = {name: _login(url, name) for name in ("alice", "bob")}
        access.callers = {
            "anonymous": {},
            "bob_token": {"Authorization": f"Bearer {tokens['bob']}"},
            "bob_cookie": {"Cookie": f"{SESSION_COOKIE}={cookies['bob']}"},
            "alice": {"Authorization": f"Bearer {tokens['alice']}",
                      "Cookie": f"{SESSION_COOKIE}={cookies['alice']}"},
        }
        access.alice_jobs = (_alice_job(url, tokens["alice"], run=True),
                             _alice_job(url, tokens["alice"], run=False))
        yield access
    archive.close()


def _alice_job(url: str, token: str, run: bool) -> str:
    """An async TAP job of alice over her program's rows (COMPLETED when ``run``); its id."""
    headers = {"Authorization": f"Bearer {token}"}
    query = f"SELECT * FROM ivoa.ObsCore WHERE proposal_id = '{SECRET}'"
    r = httpx.post(url + "/vo/tap/async", headers=headers,
                   data={"LANG": "ADQL", "QUERY": query, "PHASE": "RUN" if run else "PENDING"})
    assert r.status_code == 303, r.text
    job = r.headers["location"]
    while run and (phase := httpx.get(job + "/phase", headers=headers).text) != "COMPLETED":
        assert phase in ("QUEUED", "EXECUTING"), phase
        time.sleep(0.05)
    return job.rsplit("/", 1)[1]


def _login(url: str, name: str) -> str:
    answer = httpx.post(url + "/login", data={"name": name, "password": f"{name}-pw"})
    assert answer.status_code == 303, answer.text
    return answer.cookies[SESSION_COOKIE]


# -- the walk ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Call:
    """One request of the walk: the route it exercises and what the answer must satisfy.

    ``hidden``: it names proprietary data, so anyone but alice gets 404.
    ``check(response, alice)``: an assertion on counts, lists or facets.
    """

    method: str
    route: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    data: dict[str, str] | None = None
    hidden: bool = False
    check: Callable[[httpx.Response, bool], None] | None = None

    @property
    def asked(self) -> str:
        """Everything the request itself says (its URL and form), decoded."""
        return unquote_plus(self.path + "?" + urlencode(self.params)
                            + "&" + urlencode(self.data or {}))


def _total(expected: int) -> Callable[[httpx.Response, bool], None]:
    def check(response: httpx.Response, alice: bool) -> None:
        assert response.status_code == 200, response.text
        if not alice:
            assert response.json()["total"] == expected
    return check


def _rows(expected: int | None, overflow: bool = False) -> Callable[[httpx.Response, bool], None]:
    """A VOTable answer with ``expected`` rows (None: any), QUERY_STATUS as ``overflow`` says."""
    def check(response: httpx.Response, alice: bool) -> None:
        if alice:  # (the division probes fail for her: she sees the row)
            return
        assert response.status_code == 200, response.text[:500]
        table = parse_single_table(io.BytesIO(response.content)).to_table()
        if expected is not None:
            assert len(table) == expected
        status = "OVERFLOW" if overflow else "OK"
        assert f'name="QUERY_STATUS" value="{status}"' in response.text
    return check


def _html_count(expected: int) -> Callable[[httpx.Response, bool], None]:
    """A web search answering ``expected`` observations."""
    def check(response: httpx.Response, alice: bool) -> None:
        assert response.status_code == 200, response.text[:500]
        found = re.search(r'id="result-count">(\d+) observation', response.text)
        assert found is not None
        if not alice:
            assert int(found.group(1)) == expected
    return check


def _filter_menu(site: AccessSite) -> Callable[[httpx.Response, bool], None]:
    def check(response: httpx.Response, alice: bool) -> None:
        assert response.status_code == 200
        menu = response.text.split('<select name="filter">', 1)[1].split("</select>", 1)[0]
        options = re.findall(r'<option value="([^"]*)"', menu)
        if alice:
            assert SECRET_FILTER in options
        elif site.policy == "metadata":
            assert options == ["", *site.all_filters]
        else:
            assert options == ["", *site.public_filters]
    return check


def _script(secret: bool) -> Callable[[httpx.Response, bool], None]:
    """A download script: the product asked for is in it, unless it is ``secret`` (then only
    alice gets it)."""
    def check(response: httpx.Response, alice: bool) -> None:
        assert response.status_code == 200
        assert ("fetch " in response.text) == (alice or not secret), response.text
    return check


def _zip(secret: bool) -> Callable[[httpx.Response, bool], None]:
    """A zip download: the product asked for is in it, unless it is ``secret`` (then only
    alice gets its file; the others get the README and the manifest only)."""
    def check(response: httpx.Response, alice: bool) -> None:
        assert response.status_code == 200
        names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
        assert names[:2] == ["README.txt", "MANIFEST.sha256"]
        assert len(names) == (3 if alice or not secret else 2), names
    return check


def _api_calls(site: AccessSite) -> list[Call]:
    pub, sec = site.public_ids, site.secret_ids
    n, every = site.public_latest, site.public_versions
    probes = [{"program": SECRET}, {"target": SECRET_TARGET}, {"filter": SECRET_FILTER},
              {"ra": str(SECRET_POS[0]), "dec": str(SECRET_POS[1]), "radius": "1"},
              {"t_min": "61099", "t_max": "61101"}, {"t_min": "61050"}]
    calls = [Call("GET", "/api/health", "/api/health"),
             Call("GET", "/api/whoami", "/api/whoami"),
             Call("GET", "/api/search", "/api/search", check=_total(n)),
             Call("GET", "/api/search", "/api/search", {"all_versions": "true"},
                  check=_total(every)),
             Call("GET", "/api/search", "/api/search", {"page_size": "1", "page": "2"},
                  check=_total(n))]
    calls += [Call("GET", "/api/search", "/api/search", {**p, "all_versions": "true"},
                   check=_total(0)) for p in probes]
    calls += [Call("GET", "/api/search", "/api/search", p)
              for p in ({"program": PUBLIC}, {"level": "2b"}, {"level": "3"}, {"kind": "i2d"},
                        {"filter": "J"}, {"instrument": "SSCAM"}, {"target": "OPEN-FIELD"})]
    product = "/api/products/{product_id}"
    for pid in pub + sec:
        hidden = pid in sec
        calls += [Call("GET", product, f"/api/products/{pid}", hidden=hidden),
                  Call("GET", product + "/download", f"/api/products/{pid}/download",
                       hidden=hidden)]
        calls += [Call("GET", product + "/preview", f"/api/products/{pid}/preview",
                       {"kind": kind}, hidden=hidden) for kind in ("png", "jpeg", "thumb")]
    # deep zoom: only colour images have one (their access is tested with a real one in
    # tests/stage3/test_colour_site.py); here every caller, alice too, gets 404
    for pid in (pub[0], sec[0]):
        calls += [Call("GET", product + "/deepzoom.dzi", f"/api/products/{pid}/deepzoom.dzi",
                       check=_not_found),
                  Call("GET", product + "/deepzoom_files/{level}/{tile}",
                       f"/api/products/{pid}/deepzoom_files/0/0_0.jpg", check=_not_found)]
    diff = "/api/products/{product_id}/diff/{other_product_id}"
    for a, b in ((pub[2], pub[3]), (pub[3], pub[2]), (pub[3], sec[-1]), (sec[0], sec[1]),
                 (sec[0], pub[2])):
        calls.append(Call("GET", diff, f"/api/products/{a}/diff/{b}", hidden=b in sec or a in sec))
    return calls


def _not_found(response: httpx.Response, alice: bool) -> None:
    assert response.status_code == 404, (response.status_code, response.text[:200])


def _tap(query: str, check: Callable[[httpx.Response, bool], None] | None = None,
         method: str = "GET", **extra: str) -> Call:
    params = {"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query, **extra}
    if method == "POST":
        return Call("POST", "/vo/tap/sync", "/vo/tap/sync", data=params, check=check)
    return Call("GET", "/vo/tap/sync", "/vo/tap/sync", params, check=check)


def _vo_calls(site: AccessSite) -> list[Call]:
    n = site.public_latest
    table = "FROM ivoa.ObsCore"
    cone = (f"CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', {SECRET_POS[0]}, "
            f"{SECRET_POS[1]}, 1)) = 1")
    calls = [_tap(f"SELECT * {table}", _rows(n)),
             _tap(f"SELECT * {table}", _rows(n), method="POST"),
             _tap(f"SELECT TOP 1 obs_id {table}", _rows(1)),
             _tap(f"SELECT obs_id {table}", _rows(0, overflow=True), MAXREC="0")]
    # one query per column: every value of the column, sorted (a DISTINCT by hand)
    calls += [_tap(f"SELECT {c.name} {table} ORDER BY {c.name}", _rows(n)) for c in COLUMNS]
    probes = [f"proposal_id = '{SECRET}'", f"target_name = '{SECRET_TARGET}'",
              "filter LIKE 'Z%'", "t_min > 61050", "t_min BETWEEN 61099 AND 61101",
              "obs_release_date > '2026-12-01'", cone, "s_ra > 200", "proposal_pi LIKE 'Dr%'",
              "proposal_title LIKE '%ecret%'", f"filter IN ('{SECRET_FILTER}', 'Q')",
              # arithmetic that fails (division by zero) only on a proprietary row: the
              # database must never evaluate it there, or the error tells the row exists
              f"1 / (t_min - {SECRET_START}) > 0",
              f"s_ra / (t_min - {SECRET_START}) > 0 OR t_min > 61050"]
    calls += [_tap(f"SELECT * {table} WHERE {where}", _rows(0)) for where in probes]
    calls += [_tap(f"SELECT obs_id {table} WHERE {where}", _rows(0),
                   MAXREC="0") for where in probes[:4]]
    sia = "/vo/sia2/query"
    rows = [(t, c) for t, c in site.public_rows if t != "timeseries"]  # SIA: images, cubes
    n = len(rows)
    assert n == site.public_latest - 1  # (the public light curve: TAP only)
    facets = [({}, n), ({"COLLECTION": "OBSFLOW-S"}, n), ({"INSTRUMENT": "SSCAM"}, n),
              ({"FACILITY": "OBSFLOW-S"}, n), ({"FORMAT": "application/fits"}, n),
              ({"POS": f"CIRCLE {PUBLIC_POS[0]} {PUBLIC_POS[1]} 1"}, n),
              ({"DPTYPE": "image"}, sum(1 for t, _ in rows if t == "image")),
              ({"DPTYPE": "cube"}, sum(1 for t, _ in rows if t == "cube")),
              ({"DPTYPE": "timeseries"}, 0), ({"FORMAT": "text/x-ecsv"}, 0)]
    facets += [({"CALIB": str(level)}, sum(1 for _, c in rows if c == level)) for level in (1, 2, 3)]
    calls += [Call("GET", sia, sia, p, check=_rows(count)) for p, count in facets]
    calls += [Call("GET", sia, sia, p, check=_rows(0))
              for p in ({"POS": f"CIRCLE {SECRET_POS[0]} {SECRET_POS[1]} 1"},
                        {"POS": "RANGE 200 250 20 50"}, {"TARGET": SECRET_TARGET},
                        {"TIME": "61099 61101"},
                        {"ID": f"ivo://{site.authority}/obsflow?{site.secret_ids[-1]}"},
                        {"TARGET": SECRET_TARGET, "MAXREC": "0"})]
    calls += [Call("GET", sia, sia, {"MAXREC": "0"}, check=_rows(0, overflow=True)),
              Call("POST", sia, sia, data={"TARGET": SECRET_TARGET}, check=_rows(0)),
              Call("POST", sia, sia, data={}, check=_rows(n))]
    links = "/vo/datalink/links"
    for pid in site.public_ids + site.secret_ids:  # a hidden product's links: NotFoundFault
        did = f"ivo://{site.authority}/obsflow?{pid}"
        calls += [Call("GET", links, links, {"ID": did}, check=_links(pid in site.secret_ids)),
                  Call("POST", links, links, data={"ID": pid},
                       check=_links(pid in site.secret_ids))]
    for service in ("sia2", "tap", "datalink"):
        calls += [Call("GET", f"/vo/{service}/{doc}", f"/vo/{service}/{doc}")
                  for doc in ("capabilities", "availability")]
    calls += [Call("GET", "/vo/tap/tables", "/vo/tap/tables"),
              Call("GET", "/vo/tap/examples", "/vo/tap/examples")]
    return calls + _async_calls(site)


def _links(hidden: bool) -> Callable[[httpx.Response, bool], None]:
    """A DataLink answer: the product's ``#this`` for who may see it, else NotFoundFault."""
    def check(response: httpx.Response, alice: bool) -> None:
        assert response.status_code == 200, response.text
        table = parse_single_table(io.BytesIO(response.content)).to_table()
        errors = [str(e) for e in table["error_message"] if str(e) not in ("", "--")]
        if hidden and not alice:
            assert len(table) == 1 and errors[0].startswith("NotFoundFault"), errors
        else:
            assert not errors and "#this" in [str(s) for s in table["semantics"]]
    return check


def _status(status: int) -> Callable[[httpx.Response, bool], None]:
    """Everyone gets ``status``."""
    def check(response: httpx.Response, alice: bool) -> None:
        assert response.status_code == status, response.text
    return check


def _owner_only(status: int) -> Callable[[httpx.Response, bool], None]:
    """alice (the job's owner) gets ``status``; anyone else 404."""
    def check(response: httpx.Response, alice: bool) -> None:
        assert response.status_code == (status if alice else 404), response.text
    return check


def _job_list(site: AccessSite) -> Callable[[httpx.Response, bool], None]:
    """The job list names alice's jobs to her only (others see just their own)."""
    def check(response: httpx.Response, alice: bool) -> None:
        assert response.status_code == 200
        assert (site.alice_jobs[0] in response.text) == alice, response.text
    return check


def _async_calls(site: AccessSite) -> list[Call]:
    """Every UWS route, on alice's jobs: found only by her (a job's query, parameters and
    result tell her program's values)."""
    done, doomed = site.alice_jobs
    base = "/vo/tap/async"
    job = base + "/{job_id}"
    calls = [Call("POST", base, base, data={"QUERY": "SELECT obs_id FROM ivoa.ObsCore"},
                  check=_status(303)),
             Call("GET", base, base, check=_job_list(site)),
             Call("GET", job, f"{base}/{done}", hidden=True),
             Call("POST", job, f"{base}/{done}", data={"PHASE": "RUN"}, check=_owner_only(303))]
    for name in ("phase", "executionduration", "destruction", "quote", "owner", "parameters",
                 "error", "results", "results/result"):
        status = 404 if name == "error" else 200  # (the job did not fail)
        calls.append(Call("GET", f"{job}/{name}", f"{base}/{done}/{name}",
                          check=_owner_only(status)))
    for name, value in (("phase", "RUN"), ("executionduration", "5"),
                        ("destruction", "2999-01-01T00:00:00Z")):
        calls.append(Call("POST", f"{job}/{name}", f"{base}/{done}/{name}",
                          data={name.upper(): value}, check=_owner_only(303)))
    calls += [Call("POST", f"{job}/parameters", f"{base}/{doomed}/parameters",
                   data={"MAXREC": "5"}, check=_owner_only(303)),
              Call("DELETE", job, f"{base}/{doomed}", check=_owner_only(303))]
    return calls


def _catalog_table(secret: bool) -> Callable[[httpx.Response, bool], None]:
    """A mosaic's catalog: the ECSV, when the caller may see the mosaic."""
    def check(response: httpx.Response, alice: bool) -> None:
        if alice or not secret:
            assert response.status_code == 200 and "catalog-value" in response.text
    return check


def _web_calls(site: AccessSite) -> list[Call]:
    page = "/products/{product_id}"
    calls = [Call("GET", "/", "/"),
             Call("GET", "/search", "/search", check=_filter_menu(site)),
             Call("GET", "/search", "/search", {"filter": "J"}, check=_filter_menu(site)),
             Call("GET", "/search", "/search", {"target": "OPEN-FIELD"},
                  check=_html_count(site.public_observations))]
    told = site.policy == "metadata"  # proprietary observations listed by public metadata
    every, in_filter = site.secret_observations, site.secret_filter_observations
    probes = [({"filter": SECRET_FILTER}, in_filter if told else 0),
              ({"target": SECRET_TARGET}, every if told else 0),
              ({"target": SECRET_TARGET.lower()[3:]}, every if told else 0),
              ({"program": SECRET}, every if told else 0),
              ({"date_from": "2026-02-28", "date_to": "2026-03-02"}, every if told else 0),
              # never matched on what is not public metadata: position, level
              ({"ra": str(SECRET_POS[0]), "dec": str(SECRET_POS[1]), "radius": "1"}, 0),
              ({"target": SECRET_TARGET, "level": "2b"}, 0)]
    calls += [Call("GET", "/search", "/search", p, check=_html_count(n)) for p, n in probes]
    script = "/download/script"
    calls += [Call("GET", script, script, {"id": pid}, check=_script(pid in site.secret_ids))
              for pid in (site.public_ids[0], site.secret_ids[0])]
    zipped = "/api/download/zip"
    calls += [Call("GET", zipped, zipped, {"id": pid}, check=_zip(pid in site.secret_ids))
              for pid in (site.public_ids[0], site.secret_ids[0])]
    for pid in site.public_ids + site.secret_ids:
        calls.append(Call("GET", page, f"/products/{pid}", hidden=pid in site.secret_ids))
    catalog = "/products/{product_id}/catalog.ecsv"
    calls += [Call("GET", catalog, f"/products/{pid}/catalog.ecsv", hidden=pid in site.secret_ids,
                   check=_catalog_table(pid in site.secret_ids))
              for pid in site.mosaic_ids]
    calls += [Call("GET", page, f"/products/{site.public_ids[3]}",
                   {"compare": site.public_ids[2]}),
              Call("GET", page, f"/products/{site.public_ids[3]}",
                   {"compare": site.secret_ids[0]}),
              Call("GET", "/login", "/login", {"next": "/search"}),
              # the sky map: the HiPS of public images (served to all) and its script
              Call("GET", "/hips/{name:path}", "/hips/properties"),
              Call("GET", "/hips/{name:path}", "/hips/Norder3/Allsky.png"),
              Call("GET", "/static/{name:path}", "/static/skymap.js"),
              Call("POST", "/login", "/login", data={"name": "bob", "password": "wrong"}),
              Call("POST", "/login", "/login", data={"name": "bob", "password": "bob-pw"})]
    return calls


def _service_calls() -> list[Call]:
    return [Call("GET", path, path) for path in ("/openapi.json", "/docs", "/redoc",
                                                 "/docs/oauth2-redirect")]


def _walk(site: AccessSite) -> list[Call]:
    """Every request of the walk; ``POST /logout`` last (it ends the caller's session)."""
    return [*_service_calls(), *_api_calls(site), *_vo_calls(site), *_web_calls(site),
            Call("POST", "/logout", "/logout")]


def _routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route of the app, HEAD aside (it follows GET)."""
    return {(method, context.path) for context in iter_route_contexts(app.routes)
            for method in (context.methods or ()) if method != "HEAD"}


# -- the tests ---------------------------------------------------------------------------------

def test_every_route_is_walked(site: AccessSite) -> None:
    walked = {(call.method, call.route) for call in _walk(site)}
    assert _routes(site.app) - walked == set(), "routes the access walk does not exercise"
    assert walked - _routes(site.app) == set(), "the walk names routes the app does not have"
    schema = httpx.get(site.url + "/openapi.json").json()
    documented = {(m.upper(), p) for p, ops in schema["paths"].items() for m in ops}
    assert documented - {(m, p) for m, p in walked} <= {("HEAD", p) for _, p in documented}


def _send(client: httpx.Client, call: Call, headers: dict[str, str],
          method: str | None = None) -> httpx.Response:
    client.cookies.clear()  # each request carries exactly the caller's credentials
    return client.request(method or call.method, call.path, params=call.params or None,
                          data=call.data, headers=headers)


def _leaks(response: httpx.Response, secrets: list[str], asked: str) -> list[str]:
    """The secret values in the body and headers of ``response`` the request did not carry."""
    text = response.content.decode("latin-1") + "\n" + "\n".join(
        f"{k}: {v}" for k, v in response.headers.items())
    return [s for s in secrets if s in text and s not in asked]


@pytest.mark.parametrize("caller", ["anonymous", "bob_token", "bob_cookie"])
def test_nothing_proprietary_is_told_to_others(site: AccessSite, caller: str) -> None:
    headers = site.callers[caller]
    problems: list[str] = []
    with httpx.Client(base_url=site.url, timeout=60) as client:
        heads = set()
        for call in _walk(site):
            methods = [call.method]
            if call.method == "GET" and call.route not in heads:
                heads.add(call.route)
                methods.append("HEAD")
            for method in methods:
                response = _send(client, call, headers, method)
                where = f"{method} {call.path} {call.params or call.data or ''}"
                if response.status_code >= 500:
                    problems.append(f"{where}: {response.status_code}")
                leaks = _leaks(response, site.secrets, call.asked)
                if leaks:
                    problems.append(f"{where}: tells {leaks}")
                if method == "HEAD":
                    continue
                if call.hidden and response.status_code != 404:
                    problems.append(f"{where}: {response.status_code}, expected 404")
                if call.check is not None:
                    try:
                        call.check(response, False)
                    except AssertionError as exc:
                        problems.append(f"{where}: {exc}")
    assert not problems, "\n".join(problems)


def test_the_walk_reaches_every_proprietary_value(site: AccessSite) -> None:
    """The control: the program's member sees every value the others must not."""
    seen: set[str] = set()
    with httpx.Client(base_url=site.url, timeout=60) as client:
        for call in _walk(site):
            response = _send(client, call, site.callers["alice"])
            assert response.status_code < 500, f"{call.path}: {response.status_code}"
            if call.hidden:
                assert response.status_code == 200, f"{call.path}: {response.status_code}"
            if call.check is not None:
                call.check(response, True)
            seen |= set(_leaks(response, site.secrets, call.asked))
    assert set(site.secrets) - seen == set()
