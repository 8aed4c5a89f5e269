"""Colour images from three mosaics on one grid: an asinh-stretched RGB, PNG/JPEG, deep-zoom tiles.

Pure array function :func:`colour_image` and small writers.  Each channel
is put on a common footing first (:func:`channel_background`): its
background — a sigma-clipped median, plus each row's clipped median of what
is left on the sky, which takes out the row-banded (1/f) noise a detector
leaves in its mosaics — subtracted, and divided by its noise (the clipped
MAD standard deviation), so a deep field and a crowded field get the same
treatment.  Black is ``black_sigma`` (1) noise units below the background,
so the sky's noise sits in the darkest greys rather than at a visible grey
where three channels' independent noise shows as coloured speckle.  Then
the Lupton et al. (2004) stretch of the mean intensity I of the three:
every channel times asinh(I / soft) / (asinh(white / soft) x I), soft
``soft_sigma`` (3) noise units above black, which keeps the colours of
bright sources (no channel clips alone) and shows the faint end on a
log-like scale; a pixel less than ``colour_sigma`` above the background is
drawn towards neutral grey in proportion (noise has no colour to show).
The white level is the 99.9th percentile of the intensity unless given.
NaN or zero-weight pixels are black.

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
from scipy.ndimage import binary_dilation, gaussian_filter

from obsflow.exceptions import ColourImageError
from obsflow.fileio import atomic_path

__all__ = ["ChannelShift", "ColourOptions", "TILE_SIZE", "channel_background", "channel_shift",
           "colour_image",
           "order_by_wavelength", "pyramid_levels", "write_deep_zoom", "write_image"]

TILE_SIZE = 256
"""Side of a deep-zoom tile, pixels."""


@dataclass(frozen=True)
class ColourOptions:
    """Stretch of :func:`colour_image` (intensities in units of each channel's noise).

    Attributes
    ----------
    black_sigma : float
        Black is this many noise units below the background: the sky sits
        in the darkest greys with its noise just visible.
    soft_sigma : float
        Intensity above black where the asinh turns from linear to
        logarithmic.
    colour_sigma : float
        Pixels whose mean intensity is less than this above the background
        fade towards neutral grey (in proportion); brighter ones keep their
        colour.
    white_sigma : float or None
        Intensity that reaches white; None: the 99.9th percentile of the
        image's intensity, at least ``min_white_sigma`` (a bright field
        does not saturate, a deep field does not wash out).
    min_white_sigma : float
    row_background : bool
        Subtract each row's own background (row-banded noise) as well.
    """

    black_sigma: float = 1.0
    soft_sigma: float = 3.0
    colour_sigma: float = 2.0
    white_sigma: float | None = None
    min_white_sigma: float = 50.0
    row_background: bool = True

    def __post_init__(self) -> None:
        if not (self.soft_sigma > 0 and self.black_sigma >= 0 and self.min_white_sigma > 0
                and self.colour_sigma >= 0
                and (self.white_sigma is None or self.white_sigma > 0)):
            raise ColourImageError(f"colour stretch needs soft_sigma > 0, black_sigma >= 0, "
                                   f"colour_sigma >= 0 and positive white levels; got {self}")


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


_MIN_ROW_PIXELS = 8
"""Sky pixels a row needs for its own background level (fewer: the global level)."""


def _row_offsets(residual: np.ndarray, sky: np.ndarray) -> np.ndarray:
    """Each row's median of ``residual`` over its ``sky`` pixels (0 with fewer than 8)."""
    count = sky.sum(axis=1)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows without sky: all NaN
        offsets = np.nanmedian(np.where(sky, residual, np.nan), axis=1)
    return np.where(count >= _MIN_ROW_PIXELS, offsets, 0.0)


def channel_background(image: np.ndarray, good: np.ndarray, rows: bool = True
                       ) -> tuple[np.ndarray, float]:
    """Background level (ny, 1) or (1, 1) and noise (one value) of one channel, its units.

    The level is the sigma-clipped (3 sigma) median of the good pixels; with
    ``rows`` each row adds the median of its pixels within 3 noise of that
    level (stars and galaxies out), when it has at least 8 of them: the
    row-banded noise of a detector's readout.  The noise is the clipped
    MAD standard deviation, measured after the row levels are out.
    """
    values = image[good]
    if values.size < 10:
        return np.zeros((1, 1)), 1.0
    _, median, std = sigma_clipped_stats(values, sigma=3.0, maxiters=10, stdfunc="mad_std")
    std = float(std) if std > 0 else 1.0
    level = np.full((1, 1), float(median))
    if rows:
        # twice: the second time without the faint sources the first level shows (smoothed
        # residual above 1 noise of the smoothed image, grown by 2 px), which would otherwise
        # raise the level of the rows they cross
        sky = good & (np.abs(image - median) < 3.0 * std)
        for _ in range(2):
            level = median + _row_offsets(image - median, sky)[:, None]
            smoothed = gaussian_filter(np.where(good, image - level, 0.0), 1.5)
            _, _, noise = sigma_clipped_stats(smoothed[good], sigma=3.0, stdfunc="mad_std")
            sky = good & ~binary_dilation(smoothed > max(float(noise), 1e-30), iterations=2)
        residual = (image - level)[good]
        _, _, std = sigma_clipped_stats(residual, sigma=3.0, maxiters=10, stdfunc="mad_std")
        std = float(std) if std > 0 else 1.0
    return level, std


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
    norm = []
    for p in planes:
        level, sigma = channel_background(p, good, opts.row_background)
        norm.append(np.where(good, (p - level) / sigma, 0.0))
    black = opts.black_sigma
    mean = (norm[0] + norm[1] + norm[2]) / 3.0
    intensity = np.maximum(mean + black, 0.0)
    white = opts.white_sigma
    if white is None:
        inside = mean[good]
        white = max(float(np.percentile(inside, 99.9)) if inside.size else 0.0,
                    opts.min_white_sigma)
    soft = opts.soft_sigma
    top = math.asinh((white + black) / soft)
    # noise has no colour: below colour_sigma above the background, towards neutral grey
    chroma = np.clip(mean / opts.colour_sigma, 0.0, 1.0) if opts.colour_sigma > 0 else 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        # Lupton: every channel times f(I) / I, f the asinh stretch of the intensity
        factor = np.where(intensity > 0, np.arcsinh(intensity / soft) / (top * intensity), 0.0)
    channels = [intensity + chroma * (np.maximum(n + black, 0.0) - intensity) for n in norm]
    rgb = np.stack([c * factor for c in channels], axis=-1)
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
