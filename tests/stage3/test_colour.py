"""Colour images: the stretch on simulated deep and crowded scenes, channel order, deep-zoom tiles."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.stage3.test_catalog_scenes import Scene

from obsflow.exceptions import ColourImageError
from obsflow.profiles import load_profile
from obsflow.simulate.sky import SceneOptions
from obsflow.stage3.colour import (
    ColourOptions,
    colour_image,
    order_by_wavelength,
    pyramid_levels,
    write_deep_zoom,
    write_image,
)

FILTERS = ("F150W", "F200W", "F444W")


def _scenes(options: SceneOptions, shape: tuple[int, int] = (200, 200)) -> list[Scene]:
    # one sky (same seed: same catalog), three filters, one grid
    return [Scene("webb_like", f, shape, options, seed=5) for f in FILTERS]


def _pivots() -> list[float]:
    inst = load_profile("webb_like").instruments[0]
    return [inst.filter(f).pivot_um for f in FILTERS]


@pytest.mark.parametrize("kind", ["deep", "crowded"])
def test_stretch_background_neutral_dark_and_stars_not_clipped(kind: str) -> None:
    """Each channel with row-banded noise of its own (offsets of 1 sigma per row, as a
    detector's readout leaves them): the sky comes out a dark, neutral grey without bands;
    bright stars stand out and few of their pixels clip to white."""
    options = (SceneOptions(star_density=3000.0, galaxy_density=6000.0) if kind == "deep" else
               SceneOptions(star_density=0.0, galaxy_density=0.0, cluster_stars=800,
                            cluster_core_arcsec=2.0, star_mag=(18.0, 26.0)))
    scenes = _scenes(options)
    rng = np.random.default_rng(3)
    bands = rng.normal(0.0, 1.0, (3, scenes[0].sci.shape[0], 1))  # sigma, per channel and row
    banded = [s.sci + b * np.median(s.err) for s, b in zip(scenes, bands, strict=True)]
    red, green, blue = order_by_wavelength([(p, b) for p, b in zip(_pivots(), banded,
                                                                  strict=True)])
    rgb = colour_image(red, green, blue)
    assert rgb.shape == (200, 200, 3) and rgb.dtype == np.uint8
    grey = rgb.mean(axis=-1)
    sky = scenes[0].sources[::-1] < 0.5 * np.median(scenes[0].err)  # sky pixels, flipped like rgb
    background = float(np.median(grey[sky]))
    # colour of the sky: each channel's departure from the pixel's grey
    chroma = float(np.median(np.abs(rgb[sky] - grey[sky][:, None])))
    use = sky.sum(axis=1) > 20
    band = bands.mean(axis=0)[::-1, 0][use]  # each row's mean offset, flipped like rgb

    def banding(image: np.ndarray) -> float:
        """Grey levels per sigma of row offset: the slope of the rows' sky greys against the
        rows' injected offsets."""
        grey_rows = np.array([image[r][sky[r]].mean() for r in np.flatnonzero(use)])
        return float(np.polyfit(band, grey_rows, 1)[0])

    rows = banding(grey)
    kept = banding(colour_image(red, green, blue,
                                options=ColourOptions(row_background=False)).mean(axis=-1))
    white = np.all(rgb == 255, axis=-1)
    stars = scenes[0].sources[::-1] > 50 * np.median(scenes[0].err)
    print(f"{kind}: background grey {background:.1f}, sky chroma {chroma:.1f}, banding "
          f"{rows:.2f} grey levels per sigma ({kept:.2f} without row levels); white pixels {np.mean(white):.4f}, of stars "
          f"{np.mean(white[stars]):.3f}")
    assert 5 <= background <= 40  # dark grey: the noise just visible
    assert chroma <= 3.0  # neutral (a 1-sigma colour speckle would be ~10 levels)
    assert abs(rows) < 0.15 * kept  # the bands are there, and taken out
    assert stars.sum() > 20
    assert np.median(grey[stars]) > background + 60
    assert np.mean(white[stars]) < 0.2
    assert np.mean(white) < 0.002


def test_reddest_filter_is_red() -> None:
    ny, nx = 64, 64
    rng = np.random.default_rng(1)
    images = [rng.normal(1.0, 0.1, (ny, nx)) for _ in range(3)]
    images[2][30:34, 30:34] += 100.0  # a source bright only in F444W
    red, green, blue = order_by_wavelength(list(zip(_pivots(), images, strict=True)))
    rgb = colour_image(red, green, blue).astype(int)
    pix = rgb[ny - 1 - 31, 31]
    assert pix[0] > 200 and pix[0] > pix[1] + 100 and pix[0] > pix[2] + 100


def test_missing_data_is_black() -> None:
    rng = np.random.default_rng(2)
    images = [rng.normal(1.0, 0.1, (50, 60)) for _ in range(3)]
    images[0][:, :10] = np.nan
    wht = np.ones((50, 60))
    wht[40:, :] = 0
    rgb = colour_image(*images, weights=(None, wht, None))
    assert np.all(rgb[::-1][:, :10] == 0) and np.all(rgb[::-1][40:] == 0)
    # black is 1 sigma below the sky: the sky pixels above that (84%) are not black
    assert np.mean(rgb[::-1][:40, 10:].max(axis=-1) > 0) > 0.75
    with pytest.raises(ColourImageError, match="three 2-D mosaics of one shape"):
        colour_image(images[0], images[1], images[2][:, :5])


def test_png_and_jpeg(tmp_path: Path) -> None:
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[..., 0] = 200
    for name in ("c.png", "c.jpg"):
        path = write_image(tmp_path / name, rgb)
        with Image.open(path) as im:
            assert im.size == (40, 30) and im.mode == "RGB"
            assert abs(int(np.asarray(im)[15, 20, 0]) - 200) <= 2
    with pytest.raises(ColourImageError, match="suffix"):
        write_image(tmp_path / "c.gif", rgb)


def test_deep_zoom_pyramid(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    height, width = 700, 1000
    rgb = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    rgb[:] = np.uint8(0)
    rgb[:, :, 0] = (np.arange(width)[None, :] * 255 // width).astype(np.uint8)
    rgb[:, :, 1] = (np.arange(height)[:, None] * 255 // height).astype(np.uint8)
    dzi = write_deep_zoom(tmp_path, "m", rgb, tile_size=256, overlap=1)
    text = dzi.read_text()
    assert re.search(r'TileSize="256"', text) and re.search(r'Overlap="1"', text)
    assert re.search(r'Width="1000" Height="700"', text)
    levels = pyramid_levels(width, height)
    assert levels == 11  # 1x1 up to 1000 wide: ceil(log2 1000) + 1
    files = tmp_path / "m_files"
    assert sorted(int(p.name) for p in files.iterdir()) == list(range(levels))
    for level in range(levels):
        w = -(-width // 2 ** (levels - 1 - level))
        h = -(-height // 2 ** (levels - 1 - level))
        cols, rows = -(-w // 256), -(-h // 256)
        tiles = list((files / str(level)).glob("*.jpg"))
        assert len(tiles) == cols * rows, level
        # tile sizes: 256 plus the overlap on each side that has a neighbour
        with Image.open(files / str(level) / "0_0.jpg") as im:
            assert im.size == (min(w, 256 + (1 if cols > 1 else 0)),
                               min(h, 256 + (1 if rows > 1 else 0)))
    # full-resolution middle tile: overlap on both sides
    with Image.open(files / "10" / "1_1.jpg") as im:
        assert im.size == (258, 258)
    # level 8 (the image / 4, 250x175) is one tile: the image downsampled
    with Image.open(files / "8" / "0_0.jpg") as im:
        small = np.asarray(im).astype(float)
    assert small.shape == (175, 250, 3)
    expected = rgb[:700, :1000].reshape(175, 4, 250, 4, 3).mean(axis=(1, 3))
    assert np.abs(small - expected).mean() < 3.0
    # level 0 is a single 1x1 pixel of the mean colour
    with Image.open(files / "0" / "0_0.jpg") as im:
        assert im.size == (1, 1)
    assert not list(tmp_path.glob(".*"))


def test_channel_shift_registers_a_filter_on_another_filters_stars() -> None:
    """Two filters of one sparse star field (same catalog, one grid), the second moved by a
    known shift as a visit's pointing error would: the shift found undoes it within 0.1 px,
    and a field with no star gives no shift."""
    from scipy.ndimage import shift as move

    from obsflow.stage3.colour import channel_shift

    options = SceneOptions(star_density=3000.0, galaxy_density=0.0, star_mag=(18.0, 22.0))
    red, blue = (Scene("webb_like", f, (160, 160), options, seed=7) for f in ("F444W", "F150W"))
    assert len(red.truth) > 5
    moved = move(blue.sci, (-2.6, 1.7), order=3, mode="nearest")  # (dy, dx): stars go there
    fwhm = (red.psf.blurred_fwhm_pix, blue.psf.blurred_fwhm_pix)
    found = channel_shift(red.sci, red.wht, moved, blue.wht, fwhm)
    assert found.matched >= 3
    assert abs(found.dx - (-1.7)) < 0.1 and abs(found.dy - 2.6) < 0.1, found
    noise = np.random.default_rng(1).normal(size=(160, 160))
    none = channel_shift(noise, np.ones_like(noise), noise[::-1], np.ones_like(noise), fwhm)
    assert (none.dx, none.dy) == (0.0, 0.0) and none.matched < 2
