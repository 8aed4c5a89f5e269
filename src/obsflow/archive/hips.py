"""The archive's HiPS: a Hierarchical Progressive Survey of its public images.

The web search page draws footprints over this HiPS (Aladin Lite, served
from the archive itself), so the sky view needs no network.  It is built
from the public level-3 mosaics (``_i2d``) of each target, or, for a target
without a mosaic, from its public calibrated images (``_cal``); only the
latest version of each product, and only what an anonymous visitor may see
now (the HiPS is served to everyone: a proprietary image never contributes).

For each target the images are co-added (``reproject_and_coadd``) onto one
gnomonic grid at their finest pixel scale (coarsened so the grid has at
most :data:`MAX_GRID_PIXELS` pixels: memory stays bounded), stretched like
the previews (:func:`obsflow.archive.previews.stretch`), written as a PNG
with AVM sky coordinates and cut into tiles by ``reproject_to_hips``; the
targets' HiPS are then merged (``coadd_hips``, the later on top where they
overlap) and given a HiPS 1.0 ``properties`` file and a ``Norder3/Allsky.png``.

Every target is cut at one HEALPix order, the finest any input needs
(tiles of :data:`TILE_WIDTH` pixels no coarser than its pixels), at most
:data:`MAX_ORDER`.  A build goes into a new folder under ``hips-builds/``
and the link ``hips`` is switched to it at the end (``os.replace`` of a
symbolic link: atomic), so a half-written HiPS is never served and a
crashed build is simply re-run (stale builds are removed by the next one).
"""

from __future__ import annotations

import fcntl
import math
import os
import shutil
import uuid
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import select

from obsflow.archive.context import Archive
from obsflow.archive.policy import ANONYMOUS, utcnow
from obsflow.archive.previews import stretch
from obsflow.archive.schema import Exposure, Product
from obsflow.archive.search import visible_products
from obsflow.config import SiteConfig
from obsflow.exceptions import HipsError

__all__ = ["ALLSKY_ORDER", "HIPS_LINK", "HipsBuild", "HipsSource", "MAX_GRID_PIXELS",
           "MAX_ORDER", "TILE_WIDTH", "allsky_image", "build_hips", "hips_order",
           "hips_sources", "moc_cells", "read_properties", "site_hips", "site_hips_dir", "tile_path"]

TILE_WIDTH = 512
"""Width and height of a tile, pixels (HiPS ``hips_tile_width``)."""

MAX_ORDER = 16
"""Deepest HEALPix order of the tiles (order 16 tiles of 512 pixels: 0.006 arcsec pixels)."""

ALLSKY_ORDER = 3
"""Order of the ``Allsky`` preview image (HiPS 1.0 section 4.3.2)."""

ALLSKY_TILE = 64
"""Width of one tile in the Allsky image, pixels."""

MAX_GRID_PIXELS = 4096 * 4096
"""Most pixels of one target's co-added grid (coarser pixels beyond)."""

HIPS_LINK = "hips"
"""Name of the site's HiPS (a symbolic link to the current build)."""

_BUILDS = "hips-builds"
_KINDS = ("i2d", "cal")
"""Image kinds that feed the HiPS, by preference (a target's mosaics, else its images)."""


@dataclass(frozen=True)
class HipsSource:
    """One image of the HiPS: product id, store key and target."""

    product_id: str
    key: str
    target: str
    kind: str


@dataclass(frozen=True)
class HipsBuild:
    """What :func:`build_hips` made: the HiPS folder, its order, its sources and tiles."""

    path: Path
    order: int
    sources: tuple[HipsSource, ...]
    tiles: int


def site_hips_dir(root: Path) -> Path:
    """The HiPS of the site at ``root`` (a link to the current build; may not exist)."""
    return root / HIPS_LINK


def tile_path(order: int, npix: int, ext: str = "png") -> str:
    """The path of a tile in a HiPS, e.g. ``Norder12/Dir10000/Npix12345.png`` (HiPS 1.0:
    folders of 10000 tiles)."""
    return f"Norder{order}/Dir{(npix // 10000) * 10000}/Npix{npix}.{ext}"


def hips_sources(archive: Archive, now: datetime | None = None) -> list[HipsSource]:
    """The images the HiPS is made of: per target, the latest public ``_i2d`` mosaics, or
    its latest public ``_cal`` images when it has no mosaic (public: visible to an
    anonymous visitor at ``now``)."""
    stmt = (visible_products(ANONYMOUS, now or utcnow())
            .where(Product.is_latest.is_(True), Product.kind.in_(_KINDS))
            .order_by(Exposure.target_name, Product.product_id))
    with archive.session() as session:
        rows = [HipsSource(p.product_id, p.path, e.target_name, p.kind)
                for p, e in session.execute(stmt)]
    by_target: dict[str, list[HipsSource]] = {}
    for row in rows:
        by_target.setdefault(row.target, []).append(row)
    chosen: list[HipsSource] = []
    for items in by_target.values():
        kind = next(k for k in _KINDS if any(s.kind == k for s in items))
        chosen.extend(s for s in items if s.kind == kind)
    return chosen


def _sci(hdul: Any, source: HipsSource) -> tuple[Any, Any]:
    """The ``SCI`` HDU of an open product and its celestial WCS (checked)."""
    from astropy.wcs import WCS, FITSFixedWarning

    if "SCI" not in hdul:
        raise HipsError(f"{source.product_id}: no SCI extension to put in the HiPS")
    hdu = hdul["SCI"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(hdu.header).celestial
    if hdu.header.get("NAXIS") != 2 or not wcs.has_celestial:
        raise HipsError(f"{source.product_id}: SCI is not a 2-D image with a celestial WCS")
    return hdu, wcs


def _read_wcs(archive: Archive, source: HipsSource) -> Any:
    """The celestial WCS of ``source``'s ``SCI`` image (its header only is read)."""
    from astropy.io import fits

    with archive.settings.store.open(source.key) as handle, fits.open(handle) as hdul:
        return _sci(hdul, source)[1]


def _read_image(archive: Archive, source: HipsSource) -> tuple[np.ndarray, Any]:
    """The ``SCI`` image (float32) of ``source`` and its celestial WCS."""
    from astropy.io import fits

    with archive.settings.store.open(source.key) as handle, fits.open(handle) as hdul:
        hdu, wcs = _sci(hdul, source)
        return np.asarray(hdu.data, dtype=np.float32), wcs


def hips_order(pixel_deg: float) -> int:
    """The HEALPix order of tiles of :data:`TILE_WIDTH` pixels no coarser than
    ``pixel_deg`` (degrees), between 3 and :data:`MAX_ORDER`.

    A tile of order ``k`` has pixels of ``sqrt(4 pi / (12 * 4**k)) / TILE_WIDTH`` radians.
    """
    tile_deg = math.degrees(math.sqrt(4 * math.pi / 12)) / TILE_WIDTH
    order = math.ceil(math.log2(tile_deg / pixel_deg)) if pixel_deg > 0 else MAX_ORDER
    return max(ALLSKY_ORDER, min(MAX_ORDER, order))


def _pixel_deg(wcs: Any) -> float:
    from astropy.wcs.utils import proj_plane_pixel_scales

    return float(np.min(proj_plane_pixel_scales(wcs)))


def _coadd(images: Sequence[tuple[np.ndarray, Any]]) -> tuple[np.ndarray, Any]:
    """The images co-added (mean) on one TAN grid at their finest pixel scale (coarser if
    the grid would exceed :data:`MAX_GRID_PIXELS`); NaN where none covers."""
    from astropy import units as u
    from reproject import reproject_interp
    from reproject.mosaicking import find_optimal_celestial_wcs, reproject_and_coadd

    wcs, shape = find_optimal_celestial_wcs(list(images), frame="icrs")
    pixels = shape[0] * shape[1]
    if pixels > MAX_GRID_PIXELS:
        scale = _pixel_deg(wcs) * math.sqrt(pixels / MAX_GRID_PIXELS) * 1.01
        wcs, shape = find_optimal_celestial_wcs(list(images), frame="icrs",
                                                resolution=scale * u.deg)
    array, footprint = reproject_and_coadd(list(images), wcs, shape_out=shape,
                                           reproject_function=reproject_interp,
                                           combine_function="mean", blank_pixel_value=np.nan)
    array[footprint == 0] = np.nan
    return array, wcs


def _write_png(path: Path, image: np.ndarray, wcs: Any) -> None:
    """``image`` (FITS orientation: row 0 at the bottom) stretched to grey, transparent
    where NaN, as a PNG carrying its WCS in AVM tags."""
    from pyavm import AVM

    grey = stretch(image)
    alpha = np.where(np.isfinite(image), 255, 0).astype(np.uint8)
    rgba = np.dstack([grey, grey, grey, alpha])[::-1]
    plain = path.with_suffix(".plain.png")
    Image.fromarray(rgba, "RGBA").save(plain)
    AVM.from_wcs(wcs, shape=image.shape).embed(str(plain), str(path))
    plain.unlink()


def _target_hips(archive: Archive, sources: Sequence[HipsSource], order: int,
                 work: Path, name: str) -> Path:
    """One target's HiPS (tiles down to order 0) in ``work/name``."""
    from reproject import reproject_interp
    from reproject.hips import reproject_to_hips

    images = [_read_image(archive, s) for s in sources]
    array, wcs = _coadd(images) if len(images) > 1 else images[0]
    png = work / f"{name}.png"
    _write_png(png, array, wcs)
    del array, images
    out = work / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no tiles at the deepest level" of a tiny image
        reproject_to_hips(str(png), coord_system_out="equatorial",
                          reproject_function=reproject_interp, output_directory=str(out),
                          level=order, tile_size=TILE_WIDTH)
    png.unlink()
    return out


def allsky_image(folder: Path) -> Image.Image:
    """The ``Allsky`` image of a HiPS of PNG tiles: its 768 order-3 tiles shrunk to
    :data:`ALLSKY_TILE` pixels, side by side in 27 columns (HiPS 1.0 section 4.3.2), tile
    ``n`` at column ``n % 27``, row ``n // 27``; transparent where there is no tile."""
    columns, count = 27, 12 * 4**ALLSKY_ORDER
    rows = math.ceil(count / columns)
    sky = Image.new("RGBA", (columns * ALLSKY_TILE, rows * ALLSKY_TILE), (0, 0, 0, 0))
    for tile in sorted((folder / f"Norder{ALLSKY_ORDER}").glob("Dir*/Npix*.png")):
        n = int(tile.stem.removeprefix("Npix"))
        with Image.open(tile) as image:
            small = image.convert("RGBA").resize((ALLSKY_TILE, ALLSKY_TILE), Image.Resampling.BOX)
        sky.paste(small, ((n % columns) * ALLSKY_TILE, (n // columns) * ALLSKY_TILE))
    return sky


def moc_cells(order: int, pixels: Iterable[int]) -> np.ndarray:
    """The MOC (IVOA MOC 1.1) of the nested HEALPix ``pixels`` at ``order``, as sorted NUNIQ
    numbers ``4 * 4**k + pixel``: every four sibling cells merged into their parent, up to
    order 0 (the normal form)."""
    cells: list[int] = []
    level = set(int(p) for p in pixels)
    for k in range(order, 0, -1):
        parents: dict[int, int] = {}
        for p in level:
            parents[p >> 2] = parents.get(p >> 2, 0) + 1
        full = {q for q, n in parents.items() if n == 4}
        cells.extend(4 * 4**k + p for p in level if p >> 2 not in full)
        level = full
    cells.extend(4 + p for p in level)
    return np.array(sorted(cells), dtype=np.int64)


def _write_moc(folder: Path, order: int) -> None:
    """``Moc.fits``: where the HiPS has tiles of ``order`` (HiPS 1.0 section 4.4.3; MOC 1.1
    FITS serialisation: a binary table of NUNIQ numbers)."""
    from astropy.io import fits

    pixels = [int(p.stem.removeprefix("Npix")) for p in folder.glob(f"Norder{order}/Dir*/Npix*.png")]
    table = fits.BinTableHDU.from_columns(
        [fits.Column(name="UNIQ", format="K", array=moc_cells(order, pixels))])
    table.header.update({"PIXTYPE": "HEALPIX", "ORDERING": "NUNIQ", "COORDSYS": "C",
                         "MOCORDER": order, "MOCTOOL": "obsflow"})
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(folder / "Moc.fits")


def read_properties(folder: Path) -> dict[str, str]:
    """The ``properties`` file of the HiPS in ``folder`` (``key = value`` lines)."""
    values = {}
    for line in (folder / "properties").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def _properties(sources: Sequence[HipsSource], order: int, centre: tuple[float, float],
                fov: float, title: str, now: datetime) -> dict[str, str]:
    """The HiPS 1.0 properties of the archive's HiPS (section 4.4)."""
    return {
        "creator_did": "ivo://obsflow.local/P/obsflow/archive",
        "obs_title": title,
        "obs_description": "Public images of the archive: "
                           + ", ".join(sorted({f"{s.target} ({s.kind})" for s in sources})),
        "dataproduct_type": "image",
        "hips_version": "1.4",
        "hips_builder": "obsflow (astropy/reproject)",
        "hips_release_date": now.strftime("%Y-%m-%dT%H:%MZ"),
        "hips_status": "public master unclonable",
        "hips_tile_format": "png",
        "hips_tile_width": str(TILE_WIDTH),
        "hips_order": str(order),
        "hips_order_min": "0",
        "hips_frame": "equatorial",
        "hips_initial_ra": f"{centre[0]:.6f}",
        "hips_initial_dec": f"{centre[1]:.6f}",
        "hips_initial_fov": f"{fov:.6f}",
    }


def _centre(archive: Archive, sources: Sequence[HipsSource]) -> tuple[tuple[float, float], float]:
    """Centre (ra, dec) of the sources' exposures and a field of view that holds them, deg."""
    from obsflow.archive.sky import angle_deg, unit_vector

    ids = [s.product_id for s in sources]
    with archive.session() as session:
        rows = session.execute(select(Exposure.s_ra, Exposure.s_dec, Exposure.s_fov)
                               .join(Product, Product.exposure_id == Exposure.id)
                               .where(Product.product_id.in_(ids))).all()
    vectors = np.array([unit_vector(ra, dec) for ra, dec, _ in rows])
    mean = vectors.sum(axis=0)
    mean /= np.linalg.norm(mean)
    ra = math.degrees(math.atan2(mean[1], mean[0])) % 360.0
    dec = math.degrees(math.asin(float(np.clip(mean[2], -1, 1))))
    reach = max(angle_deg(mean, v) + (fov or 0.0) / 2 for v, (_, _, fov) in zip(vectors, rows,
                                                                                  strict=True))
    return (ra, dec), max(2.2 * reach, 0.01)


def _link(root: Path, build: Path) -> None:
    """Point ``root/hips`` at ``build`` atomically (a new link renamed over the old)."""
    link = site_hips_dir(root)
    if link.exists() and not link.is_symlink():
        raise HipsError(f"{link} exists and is not the link obsflow makes: move it away")
    temp = root / f".{HIPS_LINK}.{uuid.uuid4().hex}.link"
    temp.symlink_to(build.relative_to(root), target_is_directory=True)
    os.replace(temp, link)


def _remove_stale(root: Path, keep: Iterable[Path]) -> None:
    """Remove the builds of ``root`` other than ``keep`` (earlier builds, crashed ones)."""
    kept = {p.resolve() for p in keep}
    for old in (root / _BUILDS).iterdir():
        if old.name != ".lock" and old.resolve() not in kept:
            shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _one_build_at_a_time(builds: Path) -> Iterator[None]:
    """Hold the lock of ``builds`` (``.lock``, ``flock``): a second build waits for the first,
    so that neither removes the other's folders as stale."""
    builds.mkdir(parents=True, exist_ok=True)
    fd = os.open(builds / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def build_hips(archive: Archive, root: Path, *, now: datetime | None = None,
               title: str = "obsflow archive") -> HipsBuild | None:
    """Build the HiPS of the archive's public images under the site folder ``root`` and
    make it the site's HiPS (``root/hips``); None (and no change) when there is no public
    image yet.

    Re-running it after new products rebuilds the whole HiPS; the previous one is served
    until the new one is complete.  Two builds of one site run one after the other.
    """
    with _one_build_at_a_time(root / _BUILDS):
        return _build(archive, root, now or utcnow(), title)


def _build(archive: Archive, root: Path, now: datetime, title: str) -> HipsBuild | None:
    from reproject.hips import coadd_hips

    sources = hips_sources(archive, now)
    if not sources:
        return None
    by_target: dict[str, list[HipsSource]] = {}
    for s in sources:
        by_target.setdefault(s.target, []).append(s)
    scales = [_pixel_deg(_read_wcs(archive, s)) for s in sources]
    order = hips_order(min(scales))
    builds = root / _BUILDS
    build = builds / f"{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    work = builds / f".work-{build.name}"
    work.mkdir()
    try:
        parts = [_target_hips(archive, items, order, work, f"t{n}")
                 for n, items in enumerate(by_target.values())]
        coadd_hips([str(p) for p in parts], str(build))
        (build / "index.html").unlink(missing_ok=True)  # reproject's page loads Aladin from a CDN
        centre, fov = _centre(archive, sources)
        props = _properties(sources, order, centre, fov, title, now)
        (build / "properties").write_text(
            "".join(f"{k:20s} = {v}\n" for k, v in props.items()))
        allsky = build / f"Norder{ALLSKY_ORDER}" / "Allsky.png"
        allsky.parent.mkdir(parents=True, exist_ok=True)
        allsky_image(build).save(allsky)
        _write_moc(build, order)
        tiles = sum(1 for _ in build.glob("Norder*/Dir*/Npix*.png"))
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _link(root, build)
    _remove_stale(root, [build])
    return HipsBuild(build, order, tuple(sources), tiles)


def site_hips(cfg: SiteConfig) -> str:
    """Build the HiPS of the site ``cfg`` (``obsflow archive hips``, the demo); say what was
    made."""
    with Archive.from_site(cfg) as arch:
        built = build_hips(arch, cfg.root)
    if built is None:
        return "no public image (i2d or cal) in the archive yet: no HiPS built"
    targets = sorted({s.target for s in built.sources})
    return (f"HiPS of the public images {site_hips_dir(cfg.root)}: {len(built.sources)} images "
            f"of {', '.join(targets)}, order {built.order}, {built.tiles} tiles (the search "
            "page's sky map)")
