"""DataLink ``{links}`` on a live server, followed by pyvo from TAP and SIA2 results (both
backends), with exclusive access: the site of ``test_versions.py`` (three versions of a public
``cal``, program 01234's proprietary ``cal`` and mosaics made from both programs)."""

from __future__ import annotations

import hashlib
import io

import httpx
import pyvo
import requests
from astropy.io.votable import parse_single_table
from tests.archive.test_versions import Site, site  # noqa: F401 - the module's site

from obsflow.archive.vo.datalink import DATALINK_TYPE


def _links(site: Site, ident: str, user: str | None = None) -> dict[str, list[dict[str, str]]]:  # noqa: F811
    r = site.get("/vo/datalink/links", user, params={"ID": ident})
    assert r.status_code == 200 and r.headers["content-type"].startswith(DATALINK_TYPE), r.text
    table = parse_single_table(io.BytesIO(r.content)).to_table()
    out: dict[str, list[dict[str, str]]] = {}
    for row in table:
        out.setdefault(str(row["semantics"]), []).append(
            {name: str(row[name]) for name in table.colnames})
    return out


def _ids_of(rows: list[dict[str, str]]) -> set[str]:
    return {row["access_url"].split("/api/products/")[1].split("/")[0] for row in rows}


def test_pyvo_follows_the_service_descriptor_of_tap_results(site: Site) -> None:  # noqa: F811
    ids = site.made.ids
    result = site.tap().run_sync("SELECT obs_publisher_did, product_id FROM ivoa.ObsCore "
                                 f"WHERE product_id = '{ids['cal_v3']}'")
    links = next(result.iter_datalinks())
    this = list(links.bysemantics("#this", include_narrower=False))
    assert len(this) == 1
    data = httpx.get(this[0].access_url, timeout=30).content
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(
        site.made.files["cal_v3"].read_bytes()).hexdigest()
    got = {s: {r.access_url.split("/api/products/")[1].split("/")[0]
               for r in links.bysemantics(s, include_narrower=False)} for s in ("#progenitor", "#derivation", "#auxiliary")}
    assert got == {"#progenitor": {ids["rate"]}, "#derivation": {ids["public_i2d"]},
                   "#auxiliary": {ids["cal_v1"], ids["cal_v2"]}}
    assert {r.content_type for r in links.bysemantics("#preview", include_narrower=False)} == {"image/png", "image/jpeg"}
    assert len(list(links.bysemantics("#provenance", include_narrower=False))) == 1


def test_pyvo_follows_the_service_descriptor_of_sia2_results(site: Site) -> None:  # noqa: F811
    from tests.archive.factories import PUBLIC_CAL

    sia = pyvo.dal.SIA2Service(site.url + "/vo/sia2", session=requests.Session())
    rows = sia.search(pos=(PUBLIC_CAL["ra_v1"], PUBLIC_CAL["dec_v1"], 0.01), calib_level=2)
    record = next(r for r in rows if r["product_id"] == site.made.ids["cal_v3"])
    this = next(record.getdatalink().bysemantics("#this", include_narrower=False))
    assert this.access_url == record.access_url


def test_links_name_only_what_the_caller_may_see(site: Site) -> None:  # noqa: F811
    ids = site.made.ids
    public = _links(site, ids["public_i2d"])  # made from a public and a proprietary cal
    assert _ids_of(public["#progenitor"]) == {ids["cal_v3"]}
    alice = _links(site, ids["public_i2d"], "alice")
    assert _ids_of(alice["#progenitor"]) == {ids["cal_v3"], ids["secret_v2"]}
    for user in (None, "bob"):
        hidden = _links(site, ids["secret_v2"], user)
        missing = _links(site, "01234001001_00005_ssd1_cal_v9", user)
        assert set(hidden) == set(missing) == {"#this"}
        assert hidden["#this"][0]["error_message"].startswith("NotFoundFault: no product")
        assert hidden["#this"][0]["access_url"] in ("", "--")
        derived = _links(site, ids["cal_v2"], user)  # secret_i2d was made from it: hidden
        assert ids["secret_i2d"] not in _ids_of(derived.get("#derivation", []))
    mine = _links(site, ids["secret_v2"], "alice")
    assert _ids_of(mine["#this"]) == {ids["secret_v2"]}
    assert _ids_of(mine["#auxiliary"]) == {ids["secret_v1"]}


def test_links_need_an_id(site: Site) -> None:  # noqa: F811
    r = site.get("/vo/datalink/links")
    assert r.status_code == 400 and "ID" in r.text
