"""Colour images through the site: three filters' mosaics -> one ``_clr.png`` in the archive.

A small webb_like SUB64 downlink of the deep field in three filters (two
dithers each, as the demo observes it) is run by the site's own jobs: three
``image3`` mosaics, then one ``colour`` job.  The program has 12 months of
exclusive access: alice (a member) sees the colour image, an anonymous
visitor does not.  The last test reprocesses the program: new mosaic
versions make a new colour image version.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from astropy.table import Table
from PIL import Image
from scipy.ndimage import gaussian_filter
from sqlalchemy import select
from tests.archive.conftest import live_server
from tests.archive.test_web import _IMAGES_LOADED, _driver
from tests.orchestrate.conftest import jobs_of, make_site

from obsflow.archive import vo, web
from obsflow.archive.api import ApiSettings, create_app
from obsflow.archive.context import Archive
from obsflow.archive.register import register_program
from obsflow.archive.schema import Exposure, Product, ProductInput
from obsflow.archive.users import SESSION_COOKIE, add_user
from obsflow.config import SiteConfig
from obsflow.db import make_engine
from obsflow.orchestrate import run_site
from obsflow.orchestrate.worker import policy_of
from obsflow.reprocess.campaign import start_campaign
from obsflow.reprocess.plan import PlanCriteria, plan_reprocessing
from obsflow.simulate.run import SimOptions, SimResult, simulate
from obsflow.simulate.sky import SceneOptions
from obsflow.stage3.colour import colour_image
from obsflow.stage3.colour_job import PNG_PRODUCT_KEY, common_channels, dzi_path
from obsflow.stage3.product import read_i2d

NOW = datetime(2026, 12, 1)  # before the 12 months of exclusive access end
OPTIONS = SimOptions(seed=5, profile="webb_like", exposures=6, subarray="SUB64", dumps=2,
                     colour_filters=3, dither_points=2,
                     scene=SceneOptions(star_density=2000.0, galaxy_density=60.0,
                                        star_mag=(16.0, 23.0)))
"""The deep field in three filters, two dithers each (as the demo observes it), its scene a
rich star field so that a SUB64 mosaic's catalog has sources."""


@dataclasses.dataclass
class Site:
    cfg: SiteConfig
    sim: SimResult
    url: str
    cookie: str
    program: str

    def get(self, path: str, member: bool = False) -> httpx.Response:
        cookies = {SESSION_COOKIE: self.cookie} if member else {}
        return httpx.get(self.url + path, cookies=cookies, timeout=30)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    sim = simulate(tmp_path_factory.mktemp("colour-sim"), OPTIONS)
    cfg = make_site(tmp_path_factory.mktemp("colour-site") / "site", sim)
    program = sim.plan.exposures[0].program
    archive = Archive.from_site(cfg)
    with archive.session() as session, session.begin():
        add_user(session, "alice", password="alice-pw")
    register_program(archive, program, exclusive_months=12, members=["alice"])
    summary = run_site(cfg)
    assert summary.total("failed") == 0, summary.counts
    app = create_app(archive, ApiSettings(clock=lambda: NOW),
                     routers=[*vo.routers(), *web.routers()])
    with live_server(app) as url:
        login = httpx.post(url + "/login", data={"name": "alice", "password": "alice-pw"})
        assert login.status_code == 303, login.text
        yield Site(cfg, sim, url, login.cookies[SESSION_COOKIE], program)
    archive.close()


def _colour(site: Site, latest: bool = True) -> tuple[Product, Exposure, list[Product]]:
    with Archive.from_site(site.cfg) as archive, archive.session() as session:
        rows = session.execute(select(Product, Exposure).join(
            Exposure, Exposure.id == Product.exposure_id).where(
            Product.kind == "clr", Product.is_latest.is_(latest))).all()
        assert len(rows) == 1, rows
        product, exposure = rows[0]
        inputs = session.scalars(select(Product).join(
            ProductInput, ProductInput.input_pk == Product.id).where(
            ProductInput.product_pk == product.id)).all()
        session.expunge_all()
    return product, exposure, list(inputs)


def test_one_colour_image_linked_to_the_three_mosaics_red_longest(site: Site) -> None:
    product, exposure, inputs = _colour(site)
    assert (product.level, product.calib_level, product.content_type) == ("3", 3, "image/png")
    assert sorted(i.kind for i in inputs) == ["i2d"] * 3 and all(i.is_latest for i in inputs)
    prov = json.loads(product.provenance)
    order = [r["uuid"] for r in prov["inputs"]]
    with Archive.from_site(site.cfg) as archive, archive.session() as session:
        filters = [session.scalar(select(Exposure.filter).join(
            Product, Product.exposure_id == Exposure.id).where(Product.uuid == u))
            for u in order]
    assert filters == ["F277W", "F200W", "F150W"]  # red, green, blue: wavelength order
    assert exposure.filter == "F277W/F200W/F150W" and exposure.detector == "RGB"
    assert [j.kind for j in jobs_of(site.cfg)].count("colour") == 1
    path = site.cfg.products_dir / product.path
    assert dzi_path(path).is_file() and (path.parent / f"{path.stem}_files").is_dir()
    with Image.open(path) as png:
        assert json.loads(png.text[PNG_PRODUCT_KEY])["uuid"] == product.uuid


def test_channels_are_the_mosaics_on_one_grid_in_wavelength_order(site: Site) -> None:
    product, _, _ = _colour(site)
    prov = json.loads(product.provenance)
    with Archive.from_site(site.cfg) as archive, archive.session() as session:
        paths = [session.scalar(select(Product.path).where(Product.uuid == r["uuid"]))
                 for r in prov["inputs"]]
    mosaics = [read_i2d(site.cfg.products_dir / str(p)) for p in paths]
    step = next(params for name, _, params in prov["steps"] if name == "resample")
    shifts = [step["shifts_pix"][m.meta.filter] for m in mosaics]
    assert shifts[0] == [0.0, 0.0]  # registered on the red mosaic
    scis, whts, grid = common_channels(mosaics, shifts=[tuple(s) for s in shifts])
    assert all(s.shape == scis[0].shape for s in scis)
    with Image.open(site.cfg.products_dir / product.path) as png:
        pixels = np.asarray(png.convert("RGB"))
    assert pixels.shape[:2] == scis[0].shape
    # (the shifts are rounded to 0.001 px in the provenance: equal up to a few levels)
    again = colour_image(*scis, weights=(whts[0], whts[1], whts[2]))
    assert np.abs(pixels.astype(int) - again).max() <= 3 and np.mean(pixels == again) > 0.9
    # each channel is its own mosaic: its colour (the channel less the pixel's grey) follows
    # that mosaic's departure from the mean of the three (each in units of its own noise), not
    # another's; where the image shows colour (pixels near the sky fade to grey by design)
    covered = np.all([w > 0 for w in whts], axis=0)
    coloured = covered & (np.ptp(pixels[::-1], axis=-1) >= 8)
    assert coloured.sum() > 50
    z = [(s[coloured] - np.median(s[coloured])) / np.std(s[coloured]) for s in scis]
    shown = pixels[::-1][coloured].astype(float)
    for channel in range(3):
        corr = [np.corrcoef(shown[:, channel] - shown.mean(axis=1), zk - np.mean(z, axis=0))[0, 1]
                for zk in z]
        assert int(np.argmax(corr)) == channel, corr
    # the same sources land on the same output pixels in every channel: the brightest
    # source of the three summed (smoothed over the PSF) peaks within a pixel of the same
    # place in each channel
    smooth = [gaussian_filter(np.where(covered, s, 0.0), 1.5) for s in scis]
    total = np.where(covered, sum(smooth), -np.inf)
    y0, x0 = np.unravel_index(np.argmax(total), total.shape)
    for channel in smooth:
        box = channel[y0 - 4:y0 + 5, x0 - 4:x0 + 5]
        dy, dx = np.unravel_index(np.argmax(box), box.shape)
        assert abs(dy - 4) <= 1 and abs(dx - 4) <= 1, (y0, x0, dy, dx)
    # and the grid is where the red mosaic is: its centre maps to the same sky position
    ra, dec = grid.pixel_to_world_values(*(np.array(grid.pixel_shape) - 1) / 2)
    x, y = mosaics[0].wcs.celestial.world_to_pixel_values(ra, dec)
    ny, nx = mosaics[0].sci.shape
    assert 0 <= x < nx and 0 <= y < ny


def test_colour_image_is_seen_only_by_who_may_see_all_three_mosaics(site: Site) -> None:
    product, exposure, inputs = _colour(site)
    with Archive.from_site(site.cfg) as archive, archive.session() as session:
        releases = session.scalars(select(Exposure.release_date).join(
            Product, Product.exposure_id == Exposure.id).where(
            Product.id.in_([i.id for i in inputs]))).all()
    assert exposure.release_date == max(releases) > NOW
    pid = product.product_id
    assert site.get(f"/api/products/{pid}").status_code == 404
    assert site.get(f"/api/products/{pid}/preview?kind=png").status_code == 404
    assert pid not in site.get("/").text
    assert site.get(f"/api/products/{pid}", member=True).status_code == 200
    png = site.get(f"/api/products/{pid}/preview?kind=png", member=True)
    assert png.status_code == 200 and Image.open(io.BytesIO(png.content)).mode == "RGB"
    gallery = site.get("/", member=True).text
    assert f"/products/{pid}" in gallery and "colour image" in gallery


def test_deep_zoom_pyramid_is_served_to_who_may_see_the_colour_image(site: Site) -> None:
    import math
    import xml.etree.ElementTree as ET

    product, _, inputs = _colour(site)
    pid = product.product_id
    dzi = site.get(f"/api/products/{pid}/deepzoom.dzi", member=True)
    assert dzi.status_code == 200 and dzi.headers["content-type"] == "application/xml"
    root = ET.fromstring(dzi.content)
    ns = {"dz": "http://schemas.microsoft.com/deepzoom/2008"}
    size = root.find("dz:Size", ns)
    assert size is not None
    width, height = int(size.get("Width", 0)), int(size.get("Height", 0))
    with Image.open(site.cfg.products_dir / product.path) as png:
        assert (width, height) == png.size
    tile_size, overlap = int(root.get("TileSize", 0)), int(root.get("Overlap", 0))
    top = math.ceil(math.log2(max(width, height)))
    last = site.get(f"/api/products/{pid}/deepzoom_files/{top}/0_0.jpg", member=True)
    assert last.status_code == 200 and last.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(last.content)) as tile:
        assert tile.format == "JPEG"
        assert tile.size == (min(width, tile_size + overlap), min(height, tile_size + overlap))
    point = site.get(f"/api/products/{pid}/deepzoom_files/0/0_0.jpg", member=True)
    assert point.status_code == 200 and Image.open(io.BytesIO(point.content)).size == (1, 1)
    # exclusive access: an anonymous visitor sees neither the descriptor nor a tile
    assert site.get(f"/api/products/{pid}/deepzoom.dzi").status_code == 404
    assert site.get(f"/api/products/{pid}/deepzoom_files/{top}/0_0.jpg").status_code == 404
    # no tile outside the pyramid, no other file name, no deep zoom of another kind
    for part in (f"{top + 1}/0_0.jpg", f"{top}/999_0.jpg", f"{top}/0_0.png", "0/..%2F..%2Fx.jpg",
                 "-1/0_0.jpg"):
        assert site.get(f"/api/products/{pid}/deepzoom_files/{part}",
                        member=True).status_code == 404, part
    mosaic = site.get(f"/api/products/{inputs[0].product_id}/deepzoom.dzi", member=True)
    assert mosaic.status_code == 404 and "only colour images" in mosaic.text
    page = site.get(f"/products/{pid}", member=True).text
    assert f'data-dzi="/api/products/{pid}/deepzoom.dzi"' in page
    assert 'id="deepzoom"' not in site.get(f"/products/{inputs[0].product_id}", member=True).text


def test_browser_gallery_shows_the_colour_image_and_the_catalog_table(site: Site,
                                                                      tmp_path: Path) -> None:
    """Headless Chromium, logged in as alice: the gallery's colour card shows the loaded
    image, its page says which mosaic is which channel, and a mosaic's page shows its source
    catalog as a table with a download link."""
    from selenium.webdriver.support.ui import WebDriverWait

    product, _, inputs = _colour(site)
    driver = _driver(tmp_path / "profile")
    try:
        wait = WebDriverWait(driver, 30)
        driver.get(site.url + "/")
        assert not driver.find_elements("css selector", ".card.colour")  # anonymous: none
        driver.get(site.url + "/login")
        driver.find_element("id", "name").send_keys("alice")
        driver.find_element("id", "password").send_keys("alice-pw")
        driver.find_element("id", "login-button").click()
        wait.until(lambda d: d.find_elements("id", "whoami"))
        driver.get(site.url + "/")
        wait.until(lambda d: d.execute_script(_IMAGES_LOADED))
        card = driver.find_element("css selector", ".card.colour")
        assert card.get_attribute("data-product") == product.product_id
        image = card.find_element("tag name", "img")
        assert driver.execute_script("return arguments[0].naturalWidth", image) > 0
        assert "F277W / F200W / F150W" in card.text
        driver.save_screenshot(str(tmp_path / "gallery.png"))
        card.click()
        wait.until(lambda d: d.find_elements("id", "colour-note"))
        assert "red / green / blue" in driver.find_element("id", "colour-note").text
        # the deep-zoom viewer opens the archive's own pyramid and draws its tiles
        viewer = driver.find_element("id", "deepzoom")
        wait.until(lambda d: viewer.get_attribute("data-state") in ("open", "failed"))
        assert viewer.get_attribute("data-state") == "open"
        wait.until(lambda d: int(viewer.get_attribute("data-tiles") or 0) >= 1)
        fetched = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        tiles = [u for u in fetched if "/deepzoom_files/" in u]
        assert tiles and all(u.startswith(site.url + "/") for u in fetched), fetched
        links = {e.text for e in driver.find_elements("css selector", "a.prov-input")}
        assert links == {i.product_id for i in inputs}
        catalogs = {i.product_id: site.cfg.products_dir / i.path.replace("_i2d.fits",
                                                                          "_cat.ecsv")
                    for i in inputs}
        rows_of = {pid: len(Table.read(path, format="ascii.ecsv")) if path.is_file() else 0
                   for pid, path in catalogs.items()}
        mosaic = max(inputs, key=lambda i: rows_of[i.product_id])
        assert rows_of[mosaic.product_id] > 0, rows_of
        driver.get(f"{site.url}/products/{mosaic.product_id}")
        wait.until(lambda d: d.find_elements("id", "catalog-table"))
        rows = driver.find_elements("css selector", "#catalog-table tbody tr")
        header = driver.find_element("css selector", "#catalog-table thead").text
        assert len(rows) == min(rows_of[mosaic.product_id], 20) and "aper_total_abmag" in header
        href = driver.find_element("id", "catalog-download").get_attribute("href")
    finally:
        driver.quit()
    ecsv = site.get(href.removeprefix(site.url), member=True)
    assert ecsv.status_code == 200 and ecsv.text.startswith("# %ECSV")
    assert site.get(href.removeprefix(site.url)).status_code == 404  # anonymous


def test_new_mosaic_versions_make_the_colour_image_affected_and_remade(site: Site) -> None:
    """(Runs last: it adds versions.)"""
    before, _, _ = _colour(site)
    engine = make_engine(site.cfg.database_url)
    try:
        plan = plan_reprocessing(engine, PlanCriteria(program=site.program, software="99.0.0"))
        affected = {p.product_id: p for p in plan.products}
        assert before.product_id in affected
        assert "input" in json.dumps(affected[before.product_id].reasons)
        run = start_campaign(engine, plan, policy_of(site.cfg), name="remake-colour")
    finally:
        engine.dispose()
    assert run_site(site.cfg).total("failed") == 0
    after, _, inputs = _colour(site)
    # (an intermediate version of new and old mosaics may come between: see colour_job)
    assert after.version > before.version and after.run == run
    assert all(i.run == run and i.is_latest for i in inputs)
