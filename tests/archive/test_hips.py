"""The archive's HiPS (:mod:`obsflow.archive.hips`) and the search page's sky map.

The HiPS is checked against the HiPS 1.0 standard's properties and, with
astropy-healpix as the independent reference, against the sky: the known
bright source of the public images lands in the tile and tile pixel that
HEALPix gives for its position, and the proprietary image's source is in
no tile.  Then over HTTP (tiles, 404s, the page's Content-Security-Policy)
and in headless Chromium (Aladin Lite loads nothing from outside
127.0.0.1, draws one outline per result, a click goes to the card).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS
from astropy_healpix import HEALPix
from PIL import Image
from tests.archive.conftest import LiveSite, live_server, live_site, make_archive
from tests.archive.factories import meta, write_product

from obsflow.archive.api import ApiSettings, create_app
from obsflow.archive.context import Archive
from obsflow.archive.hips import (
    ALLSKY_ORDER,
    ALLSKY_TILE,
    TILE_WIDTH,
    allsky_image,
    build_hips,
    hips_order,
    hips_sources,
    moc_cells,
    read_properties,
    site_hips_dir,
    tile_path,
)
from obsflow.archive.register import register_product, register_program
from obsflow.archive.web import routers
from obsflow.archive.web.skymap import MAP_CSP
from obsflow.exceptions import HipsError

NOW = datetime(2026, 6, 1)
LATER = datetime(2028, 1, 1)  # the proprietary program's data are public by then
SKYMAP_SCREENSHOT = Path(tempfile.gettempdir()) / "obsflow-skymap.png"
CAL = {"program": "03456", "ra_v1": 80.49, "dec_v1": -69.5, "target": "CAL-FIELD"}
STAR_XY = (9.5, 13.5)
"""Centre (x, y, 0-based pixels) of the bright 4x4 block every factory image has."""


@dataclass
class HipsSite(LiveSite):
    root: Path
    """The site folder (its HiPS in ``site_hips_dir(root)``), served at ``url``."""


def _programs_and_products(archive: Archive, folder: Path) -> dict[str, Path]:
    register_program(archive, "03456", exclusive_months=0)
    register_program(archive, "01234", exclusive_months=12)
    files = {band: write_product(folder, meta(**CAL, filter=band, exposure=n), seed=n)
             for n, band in enumerate("JH", start=1)}
    # proprietary until 2026-08: 36 arcsec north of the public field, in the same tiles
    files["secret"] = write_product(folder, meta(ra_v1=80.49, dec_v1=-69.49,
                                                 target="CAL-FIELD", exposure=3), seed=3)
    return files


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HipsSite]:
    root = tmp_path_factory.mktemp("hips")
    settings = ApiSettings(clock=lambda: NOW, bad_token_limit=1000, hips_dir=site_hips_dir(root))
    with live_site(f"sqlite:///{root / 'db.sqlite'}", root, settings, people=False,
                   files=lambda archive: _programs_and_products(archive, root / "in"),
                   routers=routers()) as live:
        assert build_hips(live.archive, root, now=NOW) is not None  # served as it is built
        yield HipsSite(**vars(live), root=root)


def _star(path: Path) -> tuple[float, float]:
    """(ra, dec) degrees of the bright block of a factory image, from its own WCS."""
    with fits.open(path) as hdul:
        sky = WCS(hdul["SCI"].header).pixel_to_world(*STAR_XY)
    return float(sky.ra.deg), float(sky.dec.deg)


def _tile_pixel(ra: float, dec: float, order: int) -> tuple[int, int, int]:
    """(tile, row, column) of (ra, dec) in a HiPS of PNG tiles at ``order``: the HEALPix
    nested index at ``order + log2(TILE_WIDTH)`` split into its tile (the high bits) and
    its place in the tile (the low bits de-interleaved: even bits the row from the top,
    odd bits the column)."""
    depth = TILE_WIDTH.bit_length() - 1
    hp = HEALPix(nside=2 ** (order + depth), order="nested")
    index = int(hp.lonlat_to_healpix(ra * u.deg, dec * u.deg))
    inner = index & (4**depth - 1)
    row = sum(((inner >> (2 * b)) & 1) << b for b in range(depth))
    column = sum(((inner >> (2 * b + 1)) & 1) << b for b in range(depth))
    return index >> (2 * depth), row, column


def test_properties_follow_the_hips_standard(site: HipsSite) -> None:
    hips = site_hips_dir(site.root)
    props = read_properties(hips)
    required = {"creator_did", "obs_title", "dataproduct_type", "hips_version",
                "hips_release_date", "hips_status", "hips_tile_format", "hips_order",
                "hips_frame", "hips_tile_width"}  # HiPS 1.0 section 4.4 (mandatory + tiles)
    assert required <= props.keys()
    order = hips_order(0.5 / 3600)  # the factory images' 0.5 arcsec pixels
    assert order == 10  # tiles of 512 pixels of 0.4 arcsec
    assert props["hips_order"] == str(order) and props["hips_tile_format"] == "png"
    assert props["hips_frame"] == "equatorial" and props["dataproduct_type"] == "image"
    assert props["hips_tile_width"] == str(TILE_WIDTH) and props["creator_did"].startswith("ivo://")
    assert abs(float(props["hips_initial_ra"]) - 80.49) < 0.01
    assert "CAL-FIELD (cal)" in props["obs_description"]
    assert not (hips / "index.html").exists()  # reproject's page loads Aladin from a CDN
    with Image.open(hips / f"Norder{ALLSKY_ORDER}" / "Allsky.png") as allsky:
        assert allsky.size == (27 * ALLSKY_TILE, 29 * ALLSKY_TILE)


def test_moc_lists_the_deepest_tiles_in_normal_form(site: HipsSite) -> None:
    # four siblings become their parent, recursively; a lone cell stays at its order
    assert moc_cells(2, [0, 1, 2, 3, 17]).tolist() == [4 * 4 + 0, 4 * 16 + 17]
    assert moc_cells(1, range(48)).tolist() == list(range(4, 16))  # the whole sky at order 0
    hips = site_hips_dir(site.root)
    with fits.open(hips / "Moc.fits") as hdul:
        header, uniq = hdul[1].header, hdul[1].data["UNIQ"]
    assert (header["PIXTYPE"], header["ORDERING"], header["COORDSYS"]) == ("HEALPIX", "NUNIQ",
                                                                           "C")
    tiles = sorted(int(p.stem[4:]) for p in hips.glob("Norder10/Dir*/Npix*.png"))
    assert uniq.tolist() == moc_cells(10, tiles).tolist() and len(tiles) >= 1


def test_allsky_places_tile_n_at_column_n_mod_27(tmp_path: Path) -> None:
    tile = tmp_path / tile_path(ALLSKY_ORDER, 100)
    tile.parent.mkdir(parents=True)
    Image.new("RGBA", (TILE_WIDTH, TILE_WIDTH), (200, 200, 200, 255)).save(tile)
    sky = np.asarray(allsky_image(tmp_path))
    x, y = (100 % 27) * ALLSKY_TILE, (100 // 27) * ALLSKY_TILE  # HiPS 1.0 section 4.3.2
    assert (sky[y:y + ALLSKY_TILE, x:x + ALLSKY_TILE] == (200, 200, 200, 255)).all()
    assert sky[..., 3].sum() == 255 * ALLSKY_TILE**2  # nothing else


def test_bright_source_lands_in_its_healpix_pixel(site: HipsSite) -> None:
    hips = site_hips_dir(site.root)
    ra, dec = _star(site.files["J"])
    tile, row, column = _tile_pixel(ra, dec, 10)
    with Image.open(hips / tile_path(10, tile)) as image:
        pixels = np.asarray(image.convert("RGBA"))
    grey, alpha = pixels[..., 0].astype(float), pixels[..., 3]
    assert alpha[row, column] == 255 and grey[row, column] >= 200
    assert np.median(grey[alpha > 0]) < 128  # the background is not washed out
    # every order down to 0 holds the field in the parent tiles
    for order in range(10):
        assert (hips / tile_path(order, tile >> (2 * (10 - order)))).is_file(), order


def test_proprietary_images_never_contribute(site: HipsSite) -> None:
    assert {s.product_id for s in hips_sources(site.archive, NOW)} == {site.ids["J"],
                                                                       site.ids["H"]}
    ra, dec = _star(site.files["secret"])
    tile, row, column = _tile_pixel(ra, dec, 10)
    path = site_hips_dir(site.root) / tile_path(10, tile)
    if path.is_file():
        with Image.open(path) as image:
            assert np.asarray(image.convert("RGBA"))[row, column, 3] == 0
    # once released it is a source like the others (so the check above could fail)
    assert site.ids["secret"] in {s.product_id for s in hips_sources(site.archive, LATER)}


def test_a_targets_mosaics_replace_its_images(tmp_path: Path) -> None:
    archive = make_archive(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "store")
    try:
        register_program(archive, "03456", exclusive_months=0)
        assert build_hips(archive, tmp_path, now=NOW) is None  # nothing public yet
        assert not site_hips_dir(tmp_path).exists()
        cal = register_product(archive, write_product(tmp_path / "in", meta(**CAL))).product_id
        assert [s.product_id for s in hips_sources(archive, NOW)] == [cal]
        i2d = register_product(archive, write_product(tmp_path / "in", meta(**CAL),
                                                      kind="i2d")).product_id
        other = register_product(archive, write_product(
            tmp_path / "in", meta(**{**CAL, "target": "OTHER", "ra_v1": 10.0}, exposure=2))
        ).product_id
        assert {s.product_id for s in hips_sources(archive, NOW)} == {i2d, other}
    finally:
        archive.close()


def test_a_rebuild_replaces_the_hips_whole(site: HipsSite) -> None:
    before = site_hips_dir(site.root).resolve()
    tiles = sorted(p.relative_to(before) for p in before.rglob("*.png"))
    (site.root / "hips-builds" / "crashed").mkdir()  # a build cut short
    again = build_hips(site.archive, site.root, now=NOW)
    assert again is not None and again.path.resolve() != before
    assert site_hips_dir(site.root).is_symlink()
    assert site_hips_dir(site.root).resolve() == again.path.resolve()
    # old and crashed builds gone (the lock that keeps two builds apart stays)
    assert sorted(os.listdir(site.root / "hips-builds")) == [".lock", again.path.name]
    assert sorted(p.relative_to(again.path) for p in again.path.rglob("*.png")) == tiles
    assert again.tiles == len(tiles) - 1  # every tile but Allsky


def test_hips_and_aladin_served(site: HipsSite) -> None:
    server = site.url
    ra, dec = _star(site.files["J"])
    tile, _, _ = _tile_pixel(ra, dec, 10)
    got = httpx.get(f"{server}/hips/{tile_path(10, tile)}")
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert got.content[:8] == b"\x89PNG\r\n\x1a\n"
    props = httpx.get(f"{server}/hips/properties")
    assert props.status_code == 200 and "hips_order" in props.text
    assert httpx.get(f"{server}/hips/Norder3/Allsky.png").status_code == 200
    for missing in (tile_path(10, tile + 1), "Norder99/Dir0/Npix1.png", "../db.sqlite",
                    "Norder10/Dir0/Npix1.fits", "%2e%2e/db.sqlite"):
        assert httpx.get(f"{server}/hips/{missing}").status_code == 404, missing
    js = httpx.get(f"{server}/static/aladin-lite/aladin.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{server}/static/aladin-lite/COPYING").text.startswith(
        "                    GNU GENERAL PUBLIC LICENSE")
    assert httpx.get(f"{server}/static/../hips.py").status_code == 404
    page = httpx.get(f"{server}/search", params={"target": "cal"})
    assert page.headers["content-security-policy"] == MAP_CSP
    assert 'id="skymap" data-hips="yes" data-count="2"' in page.text
    # the caption counts what is drawn against the heading's count, and says why one is not
    assert '<h2 id="result-count">3 observations</h2>' in page.text
    assert ("with the outlines of 2 of the 3 observations of this page; 1 proprietary "
            "observation listed by its metadata only has no outline (the position is not "
            "public); click an outline") in page.text
    assert site.ids["secret"].split("_ssd1")[0] not in page.text.split('id="footprints-data"')[1]
    assert "http" not in page.text.split('id="footprints-data"')[1].split("</script>")[0]


def test_search_page_without_hips_says_so(site: HipsSite) -> None:
    app = create_app(site.archive, ApiSettings(clock=lambda: NOW), routers=routers())
    with live_server(app) as url:
        page = httpx.get(f"{url}/search", params={"target": "cal"}).text
        assert 'data-hips="no"' in page and "no sky image (HiPS) yet" in page
        assert ("the outlines of 2 of the 3 observations of this page are drawn on a blank "
                "sky; 1 proprietary observation listed") in page
        assert httpx.get(f"{url}/hips/properties").status_code == 404


_WATCH = """
window.obsflowViolations = [];
document.addEventListener('securitypolicyviolation',
  e => window.obsflowViolations.push(e.blockedURI + ' ' + e.violatedDirective));
"""


def test_browser_sky_map(site: HipsSite, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait
    from tests.archive.test_web import _driver

    driver = _driver(tmp_path / "profile", "--enable-unsafe-swiftshader")
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _WATCH})
        driver.get(site.url + "/search?target=cal")
        wait = WebDriverWait(driver, 20)
        wait.until(lambda d: d.execute_script(
            "return document.getElementById('skymap').dataset.ready === 'yes'"))
        count = driver.execute_script("return obsflowSkyMap.overlay.overlayItems.length")
        # one outline per result shown with its data; none for the proprietary one listed
        assert count == 2 == len(driver.find_elements("css selector", "article[data-obs]"))
        assert len(driver.find_elements("css selector", "article[data-locked]")) == 1
        tiles = "performance.getEntriesByType('resource').map(e => e.name)"
        wait.until(lambda d: any("/hips/Norder10/" in n for n in d.execute_script(
            f"return {tiles}")))
        names = driver.execute_script(f"return {tiles}")
        assert all(n.startswith(site.url + "/") for n in names), names
        assert driver.execute_script("return window.obsflowViolations") == []
        driver.save_screenshot(str(SKYMAP_SCREENSHOT))
        # a click on an outline's edge goes to its observation's card
        x, y = driver.execute_script("""
            const a = obsflowSkyMap.aladin, p = obsflowSkyMap.overlay.overlayItems[0];
            const [x0, y0] = a.world2pix(...p.raDecArray[0]), [x1, y1] = a.world2pix(...p.raDecArray[1]);
            const box = document.getElementById('skymap').getBoundingClientRect();
            return [(x0 + x1) / 2 - box.width / 2, (y0 + y1) / 2 - box.height / 2];""")
        box = driver.find_element("id", "skymap")
        ActionChains(driver).move_to_element_with_offset(box, int(x), int(y)).click().perform()
        wait.until(lambda d: d.execute_script("return location.hash").startswith("#obs-"))
        obs = driver.execute_script("return location.hash")[len("#obs-"):]
        assert obs in {e.get_attribute("data-obs") for e in
                       driver.find_elements("css selector", "article.obs")}
    finally:
        driver.quit()


def test_hips_command(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from obsflow.cli import main
    from obsflow.site import init_site

    root = tmp_path / "site"
    init_site(root, profile="smallsat")
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, [*args, "--site", str(root)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert "no public image" in run("archive", "hips")
    run("archive", "program", "add", "03456", "--exclusive-months", "0")
    run("archive", "add", str(write_product(tmp_path / "in", meta(**CAL))))
    said = run("archive", "hips")
    assert "1 images of CAL-FIELD, order 10" in said and str(site_hips_dir(root)) in said
    assert read_properties(site_hips_dir(root))["hips_order"] == "10"


def test_an_image_without_celestial_wcs_is_named(tmp_path: Path) -> None:
    archive = make_archive(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "store")
    try:
        register_program(archive, "03456", exclusive_months=0)
        path = write_product(tmp_path / "in", meta(**CAL))
        with fits.open(path, mode="update") as hdul:
            for key in ("CTYPE1", "CTYPE2"):
                del hdul["SCI"].header[key]
            hdul["SCI"].add_checksum()
        product = register_product(archive, path).product_id
        with pytest.raises(HipsError, match=f"{product}: SCI is not a 2-D image with a "
                                            "celestial WCS"):
            build_hips(archive, tmp_path, now=NOW)
        assert not site_hips_dir(tmp_path).exists()
        assert os.listdir(tmp_path / "hips-builds") == [".lock"]  # nothing half-written left
    finally:
        archive.close()
