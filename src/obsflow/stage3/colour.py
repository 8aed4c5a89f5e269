"""Colour images from three mosaics on one grid: an asinh-stretched RGB, PNG/JPEG, deep-zoom tiles.

Pure array function :func:`colour_image` and small writers.  Each channel
is put on a common footing first: its background (sigma-clipped median)
subtracted and divided by its noise (sigma-clipped standard deviation), so
a deep field and a bright field get the same treatment.  Then the
Lupton et al. (2004) stretch of the summed intensity I = (r + g + b) / 3
in units of the noise: every channel is multiplied by
asinh(I / soft) / (asinh(white / soft) x I), which keeps the colours of
bright sources (no channel clips alone) and shows the faint end on a
log-like scale.  ``black_sigma`` puts the background at a low grey (the
noise is visible, not clipped to black, not washed out); the white level
is the 99.9th percentile of the intensity unless given.  NaN or
zero-weight pixels are black.

The first channel given is red: the caller orders the mosaics by
wavelength (:func:`order_by_wavelength`), reddest first.
"""

from __future__ import annotations

import math
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.stats import sigma_clipped_stats

from obsflow.exceptions import ColourImageError
from obsflow.fileio import atomic_path

__all__ = ["ChannelShift", "ColourOptions", "TILE_SIZE", "channel_shift", "colour_image",
           "order_by_wavelength", "pyramid_levels", "write_deep_zoom", "write_image"]

TILE_SIZE = 256
"""Side of a deep-zoom tile, pixels."""


@dataclass(frozen=True)
class ColourOptions:
    """Stretch of :func:`colour_image` (intensities in units of each channel's noise).

    Attributes
    ----------
    black_sigma : float
        The background sits this many noise units above black (a low grey;
        the noise below it stays visible down to -black_sigma).
    soft_sigma : float
        Intensity where the asinh turns from linear to logarithmic.
    white_sigma : float or None
        Intensity that reaches white; None: the 99.9th percentile of the
        image's intensity, at least ``min_white_sigma`` (a bright field
        does not saturate, a deep field does not wash out).
    min_white_sigma : float
    """

    black_sigma: float = 2.0
    soft_sigma: float = 1.0
    white_sigma: float | None = None
    min_white_sigma: float = 50.0

    def __post_init__(self) -> None:
        if not (self.soft_sigma > 0 and self.black_sigma >= 0 and self.min_white_sigma > 0
                and (self.white_sigma is None or self.white_sigma > 0)):
            raise ColourImageError(f"colour stretch needs soft_sigma > 0, black_sigma >= 0 and "
                                   f"positive white levels; got {self}")


@dataclass(frozen=True)
class ChannelShift:
    """How far a channel's stars lie from the reference channel's, on one grid.

    ``dx``, ``dy`` (pixels) are to be added to the channel's positions; 0
    when fewer than ``min_matches`` stars matched (``matched`` says how many).
    """

    dx: float
    dy: float
    matched: int


def channel_shift(ref: np.ndarray, ref_weight: np.ndarray, image: np.ndarray,
                  weight: np.ndarray, fwhm_pix: tuple[float, float], search_pix: float = 8.0,
                  min_matches: int = 2, threshold_sigma: float = 5.0) -> ChannelShift:
    """The translation taking ``image``'s isolated stars onto ``ref``'s (both on one grid).

    Mosaics of different filters of a target are made by separate jobs, each
    aligned on its own; when a field has too few stars for the absolute
    alignment, each keeps its visit's pointing error (tens of
    milliarcseconds: pixels of a fine mosaic grid) and a star would show
    colour fringes.  The stars of each image
    (:func:`obsflow.stage3.detect.detect_stars`, ``threshold_sigma``, isolated) are
    matched by the offset histogram (:func:`obsflow.stage3.match.find_offset`,
    within ``search_pix``, 1-pixel bins) and mutual nearest neighbours; the
    shift is the median of the matched differences.  ``fwhm_pix``: the PSF
    FWHM of (ref, image) in grid pixels.
    """
    from photutils.utils.exceptions import NoDetectionsWarning

    from obsflow.stage3.detect import detect_stars
    from obsflow.stage3.match import find_offset, match_nearest

    stars = []
    for data, w, fwhm in ((ref, ref_weight, fwhm_pix[0]), (image, weight, fwhm_pix[1])):
        bad = ~(w > 0) | ~np.isfinite(data)
        noise = np.full(data.shape, float(np.nanstd(np.where(bad, np.nan, data))) or 1.0)
        with warnings.catch_warnings():  # a channel with no star: no shift, not a warning
            warnings.simplefilter("ignore", NoDetectionsWarning)
            found = detect_stars(data, noise, bad.astype(np.uint32), fwhm, threshold_sigma)
        stars.append(np.column_stack([found.x, found.y]))
    offset, _ = find_offset(stars[1], stars[0], search_pix, 1.0)
    i, j = match_nearest(stars[1] + offset, stars[0], 1.0)
    if i.size < min_matches:
        return ChannelShift(0.0, 0.0, int(i.size))
    d = np.median(stars[0][j] - stars[1][i], axis=0)
    return ChannelShift(float(d[0]), float(d[1]), int(i.size))


def order_by_wavelength(items: list[tuple[float, np.ndarray]]) -> list[np.ndarray]:
    """Three (wavelength, image) pairs as [red, green, blue]: the reddest filter is red."""
    if len(items) != 3:
        raise ColourImageError(f"a colour image needs three filters, got {len(items)}")
    return [img for _, img in sorted(items, key=lambda it: -it[0])]


def _normalise(image: np.ndarray, good: np.ndarray) -> np.ndarray:
    values = image[good]
    if values.size < 10:
        return np.zeros(image.shape)
    _, median, std = sigma_clipped_stats(values, sigma=3.0, maxiters=10)
    std = float(std) if std > 0 else 1.0
    return np.where(good, (image - median) / std, 0.0)


def colour_image(red: np.ndarray, green: np.ndarray, blue: np.ndarray,
                 weights: tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None] = (None, None, None),
                 options: ColourOptions | None = None) -> np.ndarray:
    """RGB uint8 image (ny, nx, 3), row 0 at the top (north up for a north-up grid).

    ``red``, ``green``, ``blue`` are (ny, nx) mosaics on one grid (any
    surface-brightness unit each); ``weights`` optional (ny, nx) maps, 0
    where a channel has no data.  A pixel missing in any channel is black.
    """
    opts = options or ColourOptions()
    planes = [np.asarray(a, np.float64) for a in (red, green, blue)]
    shape = planes[0].shape
    if len(shape) != 2 or any(p.shape != shape for p in planes):
        raise ColourImageError(f"colour image: three 2-D mosaics of one shape needed, got "
                               f"{[p.shape for p in planes]}")
    good = np.ones(shape, bool)
    for p, w in zip(planes, weights, strict=True):
        good &= np.isfinite(p)
        if w is not None:
            if w.shape != shape:
                raise ColourImageError(f"colour image: weight shape {w.shape} differs from {shape}")
            good &= w > 0
    norm = [_normalise(p, good) for p in planes]
    offset = opts.black_sigma
    shifted = [np.maximum(n + offset, 0.0) for n in norm]
    intensity = (shifted[0] + shifted[1] + shifted[2]) / 3.0
    white = opts.white_sigma
    if white is None:
        inside = intensity[good]
        white = max(float(np.percentile(inside, 99.9)) if inside.size else 0.0,
                    opts.min_white_sigma)
    soft = opts.soft_sigma
    top = math.asinh((white + offset) / soft)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Lupton: every channel times f(I) / I, f the asinh stretch of the intensity
        factor = np.where(intensity > 0, np.arcsinh(intensity / soft) / (top * intensity), 0.0)
    rgb = np.stack([s * factor for s in shifted], axis=-1)
    # a pixel whose brightest channel passes 1 keeps its colour: divide by that channel
    peak = np.maximum(rgb.max(axis=-1, keepdims=True), 1.0)
    rgb = rgb / peak
    rgb[~good] = 0.0
    out = np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.ascontiguousarray(out[::-1])  # FITS row 0 is the bottom row


def write_image(path: Path, rgb: np.ndarray, quality: int = 90,
                text: dict[str, str] | None = None) -> Path:
    """Write an RGB uint8 image as PNG or JPEG (by ``path``'s suffix) atomically.

    ``text``: PNG text chunks (key -> value; a PNG product's reference and
    provenance), ignored for JPEG.
    """
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    path = Path(path)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower())
    if fmt is None:
        raise ColourImageError(f"{path.name}: colour image suffix must be .png, .jpg or .jpeg")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ColourImageError(f"{path.name}: expected a (ny, nx, 3) uint8 image, got "
                               f"{rgb.shape} {rgb.dtype}")
    image = Image.fromarray(np.ascontiguousarray(rgb))
    with atomic_path(path) as tmp:
        if fmt == "PNG":
            info = PngInfo()
            for key, value in (text or {}).items():
                info.add_itxt(key, value)
            image.save(tmp, format="PNG", pnginfo=info)
        else:
            image.save(tmp, format="JPEG", quality=quality)
    return path


def pyramid_levels(width: int, height: int) -> int:
    """Number of deep-zoom levels: level L has the image halved (max_level - L) times
    (rounding up), from 1x1 (level 0) to full size (the last)."""
    return int(math.ceil(math.log2(max(width, height, 1)))) + 1


def write_deep_zoom(folder: Path, name: str, rgb: np.ndarray, tile_size: int = TILE_SIZE,
                    overlap: int = 1, quality: int = 85) -> Path:
    """Write a Deep Zoom Image pyramid: ``folder/<name>.dzi`` (XML descriptor) and
    ``folder/<name>_files/<level>/<col>_<row>.jpg`` tiles.

    Level L (0 .. max) is the image scaled by 2^(L - max) (sizes rounded
    up; each level is the one above halved with a box filter); its tiles
    are ``tile_size`` pixels plus ``overlap`` pixels shared with each
    neighbour, as OpenSeadragon reads them.  The tile folder is written
    under a temporary name and renamed into place, then the descriptor
    (atomically): a descriptor never points at a half-written pyramid.
    Returns the descriptor's path.
    """
    from PIL import Image

    if tile_size < 16 or overlap < 0 or overlap >= tile_size // 2:
        raise ColourImageError(f"deep zoom: tile size {tile_size} must be >= 16 and overlap "
                               f"{overlap} in [0, tile_size / 2)")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ColourImageError(f"deep zoom: expected a (ny, nx, 3) uint8 image, got {rgb.shape}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    height, width = rgb.shape[:2]
    top = pyramid_levels(width, height) - 1
    final = folder / f"{name}_files"
    tmp = folder / f".{name}_files.part"
    if tmp.exists():
        shutil.rmtree(tmp)
    image = Image.fromarray(np.ascontiguousarray(rgb))
    for level in range(top, -1, -1):
        w = max(1, math.ceil(width / 2 ** (top - level)))
        h = max(1, math.ceil(height / 2 ** (top - level)))
        if image.size != (w, h):
            image = image.resize((w, h), Image.Resampling.BOX)
        out = tmp / str(level)
        out.mkdir(parents=True)
        for col in range(math.ceil(w / tile_size)):
            for row in range(math.ceil(h / tile_size)):
                x0 = max(0, col * tile_size - overlap)
                y0 = max(0, row * tile_size - overlap)
                x1 = min(w, (col + 1) * tile_size + overlap)
                y1 = min(h, (row + 1) * tile_size + overlap)
                image.crop((x0, y0, x1, y1)).save(out / f"{col}_{row}.jpg", format="JPEG",
                                                  quality=quality)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    descriptor = folder / f"{name}.dzi"
    xml = ('<?xml version="1.0" encoding="UTF-8"?>\n'
           '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" '
           f'Format="jpg" Overlap="{overlap}" TileSize="{tile_size}">\n'
           f'  <Size Width="{width}" Height="{height}"/>\n</Image>\n')
    with atomic_path(descriptor) as t:
        t.write_text(xml)
    return descriptor
