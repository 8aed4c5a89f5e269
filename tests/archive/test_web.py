"""The web pages: plain HTTP checks, then real headless Chromium (Debian's) through Selenium.

Chromium and chromedriver come from Debian (``.ci/chromium.sh``, run by
``make test``); this test installs nothing and fails, never skips, when
they are missing.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from tests.archive.conftest import live_server, live_site
from tests.archive.factories import (
    LONG_VALUE,
    VersionedSite,
    meta,
    register_versions,
    write_product,
)

from obsflow.archive.api import ApiSettings, create_app
from obsflow.archive.context import Archive
from obsflow.archive.policy import mjd_to_datetime
from obsflow.archive.register import register_program
from obsflow.archive.users import SESSION_COOKIE, add_user, create_token
from obsflow.archive.web import routers
from obsflow.archive.web.auth import safe_next
from obsflow.archive.web.bulk import MAX_SCRIPT_PRODUCTS

NOW = datetime(2026, 6, 1)
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SCREENSHOT = Path(tempfile.gettempdir()) / "obsflow-gallery.png"
VERSIONS_SCREENSHOT = Path(tempfile.gettempdir()) / "obsflow-versions.png"


@dataclass
class WebSite:
    url: str
    ids: dict[str, str]
    alice_token: str


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebSite]:
    folder = tmp_path_factory.mktemp("web")

    def people(archive: Archive) -> dict[str, Path]:
        with archive.session() as session, session.begin():
            add_user(session, "alice", password="alice-pw")
            add_user(session, "bob", password="bob-pw")
        register_program(archive, "01234", pi_name="A. Rivera", exclusive_months=12,
                         members=["alice"])
        register_program(archive, "03456", exclusive_months=0)
        return files

    cal = {"program": "03456", "ra_v1": 80.49, "dec_v1": -69.5, "target": "CAL-FIELD"}
    files = {"secret": write_product(folder / "in", meta(), seed=1)}
    for n, band in enumerate("JHK", start=1):
        files[band] = write_product(folder / "in", meta(**cal, filter=band, exposure=n), seed=n)
    files["other"] = write_product(folder / "in", meta(program="03456", ra_v1=150.1,
                                                       dec_v1=2.2, target="COSMOS", exposure=9))
    for kind in ("uncal", "rate"):  # exposure J: three products, one card
        files[f"J_{kind}"] = write_product(folder / "in", meta(**cal, filter="J", exposure=1),
                                           kind=kind, seed=1)
    with live_site(f"sqlite:///{folder / 'web.db'}", folder,
                   ApiSettings(clock=lambda: NOW, bad_token_limit=1000), files=people,
                   people=False, routers=routers()) as live:
        with live.archive.session() as session, session.begin():
            token = create_token(session, "alice")
        yield WebSite(live.url, live.ids, token)


def test_pages_over_http(web: WebSite) -> None:
    page = httpx.get(web.url + "/")
    assert page.status_code == 200 and "CAL-FIELD" in page.text
    assert web.ids["secret"] not in page.text
    assert httpx.get(f"{web.url}/products/{web.ids['secret']}").status_code == 404
    assert httpx.get(f"{web.url}/products/..%2F..%2Fetc%2Fpasswd").status_code == 404
    bad = httpx.get(web.url + "/search", params={"ra": "abc", "dec": "1"})
    assert bad.status_code == 400 and "RA must be a number" in bad.text
    xss = httpx.get(web.url + "/search", params={"target": "<script>alert(1)</script>"})
    assert xss.status_code == 200 and "<script>alert(1)" not in xss.text
    wrong = httpx.post(web.url + "/login", data={"name": "alice", "password": "nope"})
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
    good = httpx.post(web.url + "/login", data={"name": "alice", "password": "alice-pw",
                                                "next": "//evil.example/"})
    assert good.status_code == 303 and good.headers["location"] == "/"
    cookie = good.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and SESSION_COOKIE in cookie
    stale = httpx.get(web.url + "/", cookies={SESSION_COOKIE: "obf_" + "x" * 43})
    assert stale.status_code == 200 and 'Max-Age=0' in stale.headers.get("set-cookie", "")
    assert safe_next("/search?x=1") == "/search?x=1" and safe_next("https://x/") == "/"


def _observations(html: str) -> list[str]:
    """The ``data-obs`` (observations shown with their products) of a results page, in order."""
    return re.findall(r'<article class="obs" data-obs="([^"]+)"', html)


def _products_of(html: str, obs_id: str) -> list[str]:
    card = html.split(f'data-obs="{obs_id}"', 1)[1].split("</article>", 1)[0]
    return re.findall(r'<tr data-product="([^"]+)"', card)


def test_search_lists_observations_with_their_products(web: WebSite) -> None:
    ids = web.ids
    page = httpx.get(web.url + "/search", params={"target": "cal-field"}).text
    obs = _observations(page)
    assert len(obs) == 3 == len(set(obs))  # exposure J once, not once per product
    assert _products_of(page, obs[0]) == [ids["J_uncal"], ids["J_rate"], ids["J"]]
    assert [len(_products_of(page, o)) for o in obs[1:]] == [1, 1]
    # filters: program, instrument, filter, level, dates (and they combine)
    day = mjd_to_datetime(61000.0).date()  # every exposure starts then
    before = day.replace(day=day.day - 1).isoformat()
    cases = [({"program": "03456"}, 4), ({"filter": "H"}, 1), ({"level": "1"}, 1),
             ({"instrument": "SSCAM", "program": "03456"}, 4), ({"target": "cOsMo"}, 1),
             ({"target": "CAL", "filter": "K"}, 1), ({"date_from": day.isoformat()}, 4),
             ({"date_to": before}, 0), ({"date_from": before, "date_to": before}, 0), ({"target": "nothing-like-it"}, 0)]
    for params, count in cases:
        got = httpx.get(web.url + "/search", params=params).text
        assert len(_observations(got)) == count, params
    api = httpx.get(web.url + "/api/search", params={"target": "cal-fi"}).json()  # the API too
    assert api["total"] == 5 and {r["target_name"] for r in api["results"]} == {"CAL-FIELD"}
    level1 = httpx.get(web.url + "/search", params={"level": "1"}).text
    assert re.findall(r'<tr data-product="([^"]+)"', level1) == [ids["J_uncal"]]
    bad = httpx.get(web.url + "/search", params={"level": "9"})
    assert bad.status_code == 400 and "level must be one of 1, 2a, 2b, 3" in bad.text
    # product ids break only after an underscore
    assert f'{ids["J"].split("_")[0]}_<wbr>' in page and "overflow-wrap: normal" in page


def test_metadata_policy_lists_proprietary_observations_without_their_data(web: WebSite) -> None:
    secret = web.ids["secret"]
    anonymous = httpx.get(web.url + "/search", params={"target": "deep"}).text
    assert _observations(anonymous) == []
    locked = anonymous.split('data-locked="01234"', 1)[1].split("</article>", 1)[0]
    day = mjd_to_datetime(61000.0).date().isoformat()
    for told in ("DEEP-FIELD-1", " J ", "SSCAM", "01234", "proprietary until 2026-11-",
                 f"{day} "):
        assert told in locked, told
    for private in (secret, secret.rsplit("_", 2)[0], "53.16", "-27.78", "A. Rivera",
                    "/api/products/", "/products/"):
        assert private not in anonymous, private
    # menus name the proprietary filter, program and target; queries on values that are
    # not public metadata (position, level) never match a proprietary observation
    form = httpx.get(web.url + "/search").text
    assert '<option value="01234"' in form and '<option value="DEEP-FIELD-1">' in form
    for params in ({"ra": "53.16", "dec": "-27.78", "radius": "0.1"}, {"level": "2b"},
                   {"target": "deep", "level": "2b"}):
        page = httpx.get(web.url + "/search", params=params).text
        assert "data-locked" not in page and secret not in page, params
    everything = httpx.get(web.url + "/search?target=").text  # submitted empty: every one
    assert len(_observations(everything)) == 4 and everything.count("data-locked=") == 1
    gallery = httpx.get(web.url + "/").text
    assert "1 proprietary observation is in the archive too" in gallery
    assert "proprietary-note" not in httpx.get(web.url + "/", cookies=_login(web.url, "alice")).text
    alice = httpx.get(web.url + "/search", params={"target": "deep"},
                      headers={"Authorization": f"Bearer {web.alice_token}"})
    # (the web pages know the session cookie only: a token changes nothing there)
    assert "data-locked" in alice.text
    cookies = _login(web.url, "alice")
    mine = httpx.get(web.url + "/search", params={"target": "deep"}, cookies=cookies).text
    assert "data-locked" not in mine and _products_of(mine, _observations(mine)[0]) == [secret]


def test_download_script_fetches_and_checks_what_the_visitor_may_have(
        web: WebSite, tmp_path: Path) -> None:
    ids = web.ids
    asked = [ids["J"], ids["J_rate"], ids["secret"], "no-such-product"]
    answer = httpx.get(web.url + "/download/script", params={"id": asked})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/x-shellscript")
    script = answer.text
    assert ids["secret"] not in script and "no-such-product" not in script
    assert "2 selected product(s) are not available to you" in script
    (tmp_path / "get.sh").write_text(script)
    run = subprocess.run(["sh", "get.sh"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert "downloaded 2 file(s)" in run.stdout
    assert len(list(tmp_path.glob("*.fits"))) == 2
    sha = re.search(r" ([0-9a-f]{64})$", script, re.M)
    assert sha is not None  # a file that does not match its sha256 fails the script
    (tmp_path / "bad.sh").write_text(script.replace(sha.group(1), "0" * 64))
    bad = subprocess.run(["sh", "bad.sh"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, check=False)
    assert bad.returncode != 0 and "FAILED" in bad.stdout + bad.stderr
    # alice: her proprietary product is in her script, and fetched with her token
    mine = httpx.get(web.url + "/download/script", params={"id": [ids["secret"]]},
                     cookies=_login(web.url, "alice")).text
    assert ids["secret"] in mine
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "get.sh").write_text(mine)
    refused = subprocess.run(["sh", "get.sh"], cwd=tmp_path / "mine", capture_output=True,
                             text=True, timeout=60, check=False)
    assert refused.returncode != 0  # no token: the server says 404, curl fails
    env = {**os.environ, "OBSFLOW_TOKEN": web.alice_token}
    fetched = subprocess.run(["sh", "get.sh"], cwd=tmp_path / "mine", capture_output=True,
                             text=True, timeout=60, check=False, env=env)
    assert fetched.returncode == 0 and "downloaded 1 file(s)" in fetched.stdout, fetched.stderr
    too_many = httpx.get(web.url + "/download/script",
                         params={"id": [f"p{i}" for i in range(MAX_SCRIPT_PRODUCTS + 1)]})
    assert too_many.status_code == 400
    for wrong in ("../etc/passwd", "a\n", "x" * 97, "a\x00b"):
        refused = httpx.get(web.url + "/download/script", params={"id": [ids["J"], wrong]})
        assert refused.status_code == 400 and "is not a product id" in refused.text, wrong


def test_product_page_readable_values_header_and_exposure_products(web: WebSite) -> None:
    ids = web.ids
    page = httpx.get(f"{web.url}/products/{ids['J_rate']}").text
    table = page.split('id="metadata"', 1)[1].split("</table>", 1)[0]
    start = mjd_to_datetime(61000.0).strftime("%Y-%m-%d %H:%M:%S UTC")
    for text in ("05h 21m 57.60s", "-69° 30′ 00.0″", "(80.490000°)", " µm (centre ",
                 f"{start}  (MJD 61000.000000)", "′ (", "″) across", "864.0 s"):
        assert text in table, text
    assert "e-06" not in table and "0.00" not in table.split("Field of view", 1)[1][:40]
    header = page.split('id="fits-header"', 1)[1]
    assert "SIMPLE  =                    T" in header and "EXTNAME = &#39;SCI" in header
    siblings = re.findall(r'data-sibling="([^"]+)"', page)
    assert siblings == [ids["J_uncal"], ids["J_rate"], ids["J"]]
    # the secret product's page (and so its header) is alice's only
    assert httpx.get(f"{web.url}/products/{ids['secret']}").status_code == 404
    mine = httpx.get(f"{web.url}/products/{ids['secret']}", cookies=_login(web.url, "alice"))
    assert "EXTNAME = &#39;SCI" in mine.text


def _driver(profile: Path, *extra: str):  # type: ignore[no-untyped-def]
    """Headless Chromium with its profile in ``profile`` and ``extra`` flags."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: run `bash .ci/chromium.sh` (make test does)",
                    pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1280,1000",
                 f"--user-data-dir={profile}", *extra):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


_IMAGES_LOADED = ("return Array.from(document.images).every("
                  "i => i.complete && i.naturalWidth > 0) && document.images.length")
_THUMBS_LOADED = ("const t = Array.from(document.querySelectorAll('article.obs img'));"
                  "return t.every(i => i.complete && i.naturalWidth > 0) && t.length")
"""The results' thumbnails loaded (the sky map's controls are images too)."""


def _cards(driver) -> set[str]:  # type: ignore[no-untyped-def]
    return {e.get_attribute("data-product") for e in
            driver.find_elements("css selector", "[data-product]")}


def test_browser_gallery_search_and_login(web: WebSite, tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _driver(tmp_path / "profile")
    try:
        wait = WebDriverWait(driver, 20)
        driver.get(web.url + "/")
        assert wait.until(lambda d: d.execute_script(_IMAGES_LOADED)) >= 4  # the four public cards (no colour image: no mosaics)
        driver.save_screenshot(str(SCREENSHOT))
        public = {web.ids[k] for k in ("J", "H", "K", "other")}
        assert _cards(driver) == public
        driver.get(web.url + "/search")
        driver.find_element("name", "target").send_keys("cal-field")  # any case, any part
        driver.find_element("id", "search-button").click()
        wait.until(lambda d: d.find_elements("id", "result-count"))
        assert driver.find_element("id", "result-count").text == "3 observations"
        cal_field = {web.ids[k] for k in ("J", "H", "K", "J_uncal", "J_rate")}
        assert _cards(driver) == cal_field
        assert len(driver.find_elements("css selector", "article.obs[data-obs]")) == 3
        driver.get(f"{web.url}/search?target=CAL")
        assert _cards(driver) == cal_field
        driver.get(f"{web.url}/search?ra=53.16&dec=-27.78&radius=0.1")
        assert driver.find_element("id", "result-count").text == "0 observations"
        driver.get(f"{web.url}/products/{web.ids['secret']}")
        assert "Not found" in driver.find_element("tag name", "h1").text
        driver.get(web.url + "/login")
        driver.find_element("id", "name").send_keys("alice")
        driver.find_element("id", "password").send_keys("alice-pw")
        driver.find_element("id", "login-button").click()
        wait.until(lambda d: d.find_elements("id", "whoami"))
        assert driver.find_element("id", "whoami").text == "alice"
        assert wait.until(lambda d: d.execute_script(_IMAGES_LOADED)) >= 5
        assert _cards(driver) == public | {web.ids["secret"]}
        driver.get(f"{web.url}/products/{web.ids['secret']}")
        assert web.ids["secret"] in driver.find_element("id", "product-id").text
        assert "DEEP-FIELD-1" in driver.find_element("id", "metadata").text
        assert driver.execute_script(_IMAGES_LOADED) == 1
        href = driver.find_element("id", "download").get_attribute("href")
        assert href.endswith(f"/api/products/{web.ids['secret']}/download")
        driver.find_element("id", "logout").click()
        wait.until(lambda d: d.find_elements("id", "login-link"))
        assert _cards(driver) == public
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)


# -- versions, provenance, changes and lineage on the product page -----------------------------

@dataclass
class VersionsWeb:
    url: str
    made: VersionedSite


@pytest.fixture(scope="module")
def versions_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VersionsWeb]:
    folder = tmp_path_factory.mktemp("versions-web")
    with live_site(f"sqlite:///{folder / 'web.db'}", folder,
                   ApiSettings(clock=lambda: NOW, bad_token_limit=1000), routers=routers()) as live:
        yield VersionsWeb(live.url, register_versions(live.archive, folder / "in"))


def _login(url: str, name: str) -> dict[str, str]:
    r = httpx.post(url + "/login", data={"name": name, "password": f"{name}-pw"})
    assert r.status_code == 303
    return {SESSION_COOKIE: r.cookies[SESSION_COOKIE]}


def test_product_page_hides_other_programs_versions_and_links(versions_web: VersionsWeb) -> None:
    ids, uuids = versions_web.made.ids, versions_web.made.uuids
    secret = [ids[k] for k in ("secret_v1", "secret_v2", "secret_i2d")]
    secret += [uuids[k] for k in ("secret_v1", "secret_v2", "secret_i2d")]
    for cookies in ({}, _login(versions_web.url, "bob")):
        for key in ("cal_v2", "public_i2d", "rate"):
            page = httpx.get(f"{versions_web.url}/products/{ids[key]}", cookies=cookies)
            assert page.status_code == 200 and not [s for s in secret if s in page.text]
        compare = httpx.get(f"{versions_web.url}/products/{ids['cal_v1']}",
                            params={"compare": ids["secret_v1"]}, cookies=cookies)
        assert "to compare with" in compare.text and uuids["secret_v1"] not in compare.text
        hidden = httpx.get(f"{versions_web.url}/products/{ids['secret_v1']}", cookies=cookies)
        assert hidden.status_code == 404
    page = httpx.get(f"{versions_web.url}/products/{ids['cal_v3']}")
    assert LONG_VALUE in page.text  # the whole value, not cut
    alice = httpx.get(f"{versions_web.url}/products/{ids['cal_v2']}",
                      cookies=_login(versions_web.url, "alice"))
    assert ids["secret_i2d"] in alice.text


def _texts(driver, css: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.text for e in driver.find_elements("css selector", css)]


def test_browser_versions_changes_and_lineage(versions_web: VersionsWeb, tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    ids, url = versions_web.made.ids, versions_web.url
    driver = _driver(tmp_path / "profile")
    try:
        wait = WebDriverWait(driver, 20)
        driver.get(f"{url}/products/{ids['cal_v2']}")
        driver.set_window_size(1280, 2600)
        driver.save_screenshot(str(VERSIONS_SCREENSHOT))
        rows = driver.find_elements("css selector", "#versions tbody tr")
        assert [r.get_attribute("data-version") for r in rows] == \
            [ids["cal_v1"], ids["cal_v2"], ids["cal_v3"]]
        assert ["current" in r.text for r in rows] == [False, False, True]
        superseded = driver.find_element("css selector", "#superseded a")
        assert superseded.get_attribute("href").endswith(f"/products/{ids['cal_v3']}")
        assert "campaign-2" in rows[1].text and "0.2.1" in rows[1].text
        assert ids["cal_v1"] in driver.find_element("css selector", "#diff h2").text
        changes = _texts(driver, "#diff li")
        assert [c for c in changes if c.startswith("flat replaced: flat_0001.fits → "
                                                   "flat_0002.fits (sha256 ")] != []
        assert "area removed: area_0001.fits" in changes
        assert "photom.mode changed: \"fast\" → \"exact\"" in changes
        assert "software: 0.2.0 → 0.2.1" in changes and "step skymatch added" in changes
        assert _texts(driver, "#lineage-outputs li") == ["nothing (yet)"]
        assert len(driver.find_elements("css selector", "#references tbody tr")) == 3
        assert "SKIPPED: one exposure" in driver.find_element("id", "steps").text
        driver.find_element("css selector", "#lineage-inputs a").click()
        wait.until(lambda d: ids["rate"] in d.find_element("id", "product-id").text)
        assert _texts(driver, "#lineage-outputs a") == \
            [ids["cal_v1"], ids["cal_v2"], ids["cal_v3"]]
        driver.find_element("link text", ids["cal_v3"]).click()
        wait.until(lambda d: ids["cal_v3"] in d.find_element("id", "product-id").text)
        assert driver.find_elements("id", "superseded") == []
        rows = driver.find_elements("css selector", "#versions tbody tr")
        rows[0].find_element("css selector", "a.compare").click()
        wait.until(lambda d: ids["cal_v1"] in d.find_element("css selector", "#diff h2").text)
        assert len(driver.find_elements("css selector", "#references tbody tr")) == 60
        assert _texts(driver, "#lineage-outputs a") == [ids["public_i2d"]]
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)


# -- observations, bulk selection and the product page in the browser --------------------------

SEARCH_SCREENSHOT = Path(tempfile.gettempdir()) / "obsflow-search.png"
PRODUCT_SCREENSHOT = Path(tempfile.gettempdir()) / "obsflow-product.png"

_BREAKS = """
const bad = [];
let wrapped = 0;
for (const el of document.querySelectorAll('.pid')) {
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  let prevTop = null, prevChar = null, lines = 1;
  while (walker.nextNode()) {
    const node = walker.currentNode;
    for (let i = 0; i < node.length; i++) {
      const range = document.createRange();
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      const rects = range.getClientRects();
      if (!rects.length) continue;
      if (prevTop !== null && rects[0].top > prevTop + 2) {
        lines += 1;
        if (prevChar !== '_') bad.push(el.textContent + ' broken after ' + prevChar);
      }
      prevTop = rects[0].top;
      prevChar = node.data[i];
    }
  }
  if (lines > 1) wrapped += 1;
}
return [bad, wrapped];
"""


_FETCH_ZIP = """
const form = document.getElementById('bulk-form');
const button = document.getElementById('zip-button');
const url = button.formAction + '?' + new URLSearchParams(new FormData(form));
return fetch(url).then(async (r) => {
  const digest = await crypto.subtle.digest('SHA-256', await r.arrayBuffer());
  const hex = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0'));
  return [r.status, r.headers.get('content-type'), hex.join('')];
});
"""


def test_browser_observations_bulk_selection_and_product_page(web: WebSite,
                                                               tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    ids = web.ids
    cal_field = {ids[k] for k in ("J", "H", "K", "J_uncal", "J_rate")}
    driver = _driver(tmp_path / "profile")
    try:
        wait = WebDriverWait(driver, 20)
        driver.get(f"{web.url}/search?instrument=SSCAM")
        assert wait.until(lambda d: d.execute_script(_THUMBS_LOADED)) == 4  # one per exposure
        cards = driver.find_elements("css selector", "article.obs")
        assert len(cards) == 5  # 4 public observations, 1 proprietary listed by its metadata
        locked = driver.find_element("css selector", "article.obs.locked")
        assert "DEEP-FIELD-1" in locked.text and "proprietary until 2026-11-" in locked.text
        assert locked.find_elements("css selector", "a[href^='/products/'], img") == []
        driver.save_screenshot(str(SEARCH_SCREENSHOT))
        driver.get(f"{web.url}/search?target=cal")
        driver.find_element("id", "select-all").click()
        chosen = driver.execute_script(
            "return new URLSearchParams(new FormData(document.getElementById('bulk-form')))"
            ".getAll('id')")
        assert set(chosen) == cal_field
        # the second button asks the same selection as a zip: the bytes the API streams
        status, kind, sha = driver.execute_script(_FETCH_ZIP)
        api = httpx.get(f"{web.url}/api/download/zip", params={"id": sorted(cal_field)})
        assert (status, kind) == (200, "application/zip")
        assert sha == hashlib.sha256(api.content).hexdigest()
        # product ids wrap between their parts only, even on a narrow screen
        driver.set_window_size(420, 1000)
        bad, wrapped = driver.execute_script(_BREAKS)
        assert bad == [] and wrapped > 0
        driver.set_window_size(1280, 1000)
        driver.get(f"{web.url}/products/{ids['J_rate']}")
        assert wait.until(lambda d: d.execute_script(_IMAGES_LOADED)) == 1
        metadata = driver.find_element("id", "metadata").text
        assert "µm" in metadata and "05h 21m 57.60s" in metadata and "MJD 61000" in metadata
        siblings = driver.find_elements("css selector", "#exposure-products tbody tr")
        assert [s.get_attribute("data-sibling") for s in siblings] == \
            [ids["J_uncal"], ids["J_rate"], ids["J"]]
        header = driver.find_element("css selector", "#fits-header details[open] pre")
        assert header.text.startswith("SIMPLE  =")
        driver.set_window_size(1280, 1400)
        driver.save_screenshot(str(PRODUCT_SCREENSHOT))
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)


def test_empty_archive_pages(archive: Archive) -> None:
    """An empty archive (each backend): the gallery and an empty search answer, and no page
    leaves a database transaction open (PostgreSQL would then block the schema's drop)."""
    app = create_app(archive, ApiSettings(clock=lambda: NOW), routers=routers())
    with live_server(app) as url:
        gallery = httpx.get(url + "/")
        assert gallery.status_code == 200 and 'id="empty"' in gallery.text
        assert "proprietary-note" not in gallery.text
        found = httpx.get(url + "/search", params={"target": ""})
        assert found.status_code == 200 and 'id="result-count">0 observations' in found.text
    assert archive.engine.pool.checkedout() == 0
