"""Preview images: asinh-stretched PNG and JPEG, thumbnails, and the previews of images already drawn.

Pure image functions (array in, bytes out); :mod:`obsflow.archive.register`
decides which products get previews and writes them to the store.
A 2-D ``SCI`` image is shown as is; a 4-D ramp cube (Level 1) as the last
group minus the first of integration 0 (the signal collected in between).
Images are flipped so that north-up FITS images look north-up on screen
(FITS row 1 is the bottom row).  An image larger than :data:`PREVIEW_SIZE`
is block-averaged down by an integer factor first (a full-frame 2048x2048
product previews at 1024x1024): the FITS file is the data, a preview is for
the eye, and rendering it stays a small part of registering a product.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from obsflow.exceptions import ProductFileError

__all__ = ["IMAGE_SUFFIXES", "PREVIEW_KINDS", "PREVIEW_SIZE", "STRETCH_HIGH_PERCENT",
           "STRETCH_LOW_SIGMA", "STRETCH_MIN_RANGE", "THUMB_SIZE", "Rendered",
           "background_noise", "block_mean", "image_previews", "preview_array", "render_previews",
           "stretch"]

PREVIEW_SIZE = 1024
"""Longest side of a PNG/JPEG preview at most, pixels (larger images are block-averaged)."""

THUMB_SIZE = 256
"""Longest side of a thumbnail, pixels."""

PREVIEW_KINDS = {"png": "image/png", "jpeg": "image/jpeg", "thumb": "image/jpeg"}
"""Preview kinds and their media types."""

IMAGE_SUFFIXES = {"png": ".png", "jpeg": ".jpg", "thumb": ".thumb.jpg"}
"""Store-key suffix of each rendered image kind (previews)."""

STRETCH_HIGH_PERCENT = 99.99
"""Percentile of the pixels shown white (at least :data:`STRETCH_MIN_RANGE` noise sigmas)."""

STRETCH_MIN_RANGE = 20.0
"""Smallest white level above the background, in noise sigmas (a field of pure noise)."""

STRETCH_LOW_SIGMA = 2.0
"""Black level below the background, in noise sigmas."""

_STATS_SAMPLE = 250_000


@dataclass(frozen=True)
class Rendered:
    """One encoded preview image."""

    kind: str
    data: bytes
    width: int
    height: int


def preview_array(sci: np.ndarray) -> np.ndarray:
    """The 2-D float image to preview from a SCI array (2-D image or 4-D ramp cube)."""
    if sci.ndim == 2:
        return np.asarray(sci, dtype=np.float64)
    if sci.ndim == 4 and sci.shape[1] >= 1:
        cube = np.asarray(sci[0], dtype=np.float64)
        return cube[-1] - cube[0]
    raise ProductFileError(f"cannot preview a SCI array of shape {sci.shape}: expected 2-D or 4-D")


def block_mean(image: np.ndarray, max_side: int = PREVIEW_SIZE) -> np.ndarray:
    """``image`` averaged over square blocks so that its longest side is at most ``max_side``.

    The block size is the smallest integer that fits; rows and columns left
    over at the top and right edges are dropped.  Non-finite pixels are left
    out of their block's mean (a block with none finite is NaN).  An image
    that already fits is returned as is.
    """
    factor = -(-max(image.shape) // max_side)
    if factor <= 1:
        return image
    ny, nx = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    crop = np.asarray(image[:ny, :nx], np.float64)
    finite = np.isfinite(crop)
    values = crop if finite.all() else np.where(finite, crop, 0.0)
    sums = np.zeros((ny // factor, nx // factor))
    counts = np.zeros(sums.shape)
    for dy in range(factor):  # factor**2 strided additions: no reduction over a 4-D view
        for dx in range(factor):
            sums += values[dy::factor, dx::factor]
            counts += finite[dy::factor, dx::factor]
    return np.divide(sums, counts, out=np.full(sums.shape, np.nan), where=counts > 0)


def _sample(image: np.ndarray) -> np.ndarray:
    """The finite pixels of ``image``, at most about :data:`_STATS_SAMPLE` (a regular subsample)."""
    values = image[np.isfinite(image)]
    return values[::max(1, values.size // _STATS_SAMPLE)]


def background_noise(image: np.ndarray) -> tuple[float, float]:
    """Robust (background, noise sigma) of ``image``: sigma-clipped median and MAD sigma.

    Finite pixels only (a regular subsample of a large image); a sigma of 0
    (a flat image) becomes 1 so that stretches stay defined.  Image units.
    """
    # imported here: astropy.stats is a heavy import that light commands must not pay
    from astropy.stats import sigma_clipped_stats

    _, median, sigma = sigma_clipped_stats(_sample(image), sigma=3.0, maxiters=5,
                                           stdfunc="mad_std")
    sigma = float(sigma) if np.isfinite(sigma) and sigma > 0 else 1.0
    return float(median), sigma


def stretch(image: np.ndarray) -> np.ndarray:
    """Asinh stretch on a robust background and noise, to 0..255 uint8 (NaNs become 0).

    Black is the background minus :data:`STRETCH_LOW_SIGMA` noise sigmas;
    white the :data:`STRETCH_HIGH_PERCENT` percentile, or at least
    :data:`STRETCH_MIN_RANGE` sigmas above the background; in between
    ``asinh((x - black) / sigma)`` scaled to 0..1.  The softening of one
    sigma keeps the noise of the background in the grey range, neither
    clipped to black nor washed out to white, on deep fields and bright
    crowded ones alike; the asinh compresses bright stars so that only the
    brightest saturate.
    """
    finite = np.isfinite(image)
    if not finite.any():
        return np.zeros(image.shape, np.uint8)
    background, sigma = background_noise(image)
    black = background - STRETCH_LOW_SIGMA * sigma
    white = max(float(np.percentile(_sample(image), STRETCH_HIGH_PERCENT)),
                background + STRETCH_MIN_RANGE * sigma)
    above = np.clip(np.where(finite, image, black) - black, 0.0, None)
    scaled = np.arcsinh(above / sigma) / np.arcsinh((white - black) / sigma)
    return np.asarray(np.round(np.clip(scaled, 0.0, 1.0) * 255.0), dtype=np.uint8)


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "PNG":
        image.save(buffer, format="PNG")
    else:
        image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _encode_all(image: Image.Image) -> list[Rendered]:
    thumb = image.copy()
    thumb.thumbnail((THUMB_SIZE, THUMB_SIZE))
    out = [Rendered("png", _encode(image, "PNG"), *image.size),
           Rendered("jpeg", _encode(image, "JPEG"), *image.size),
           Rendered("thumb", _encode(thumb, "JPEG"), *thumb.size)]
    return out


def render_previews(sci: np.ndarray) -> list[Rendered]:
    """PNG, JPEG and thumbnail (JPEG) of a SCI array."""
    pixels = stretch(block_mean(preview_array(sci)))[::-1]
    return _encode_all(Image.fromarray(np.ascontiguousarray(pixels)))


def image_previews(data: bytes, name: str) -> list[Rendered]:
    """PNG, JPEG and thumbnail (JPEG) of an image already drawn (a light curve's plot).

    ``ProductFileError`` naming ``name`` when ``data`` is not an image PIL reads.
    """
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, ValueError) as exc:
        raise ProductFileError(f"{name}: not a readable image ({exc})") from exc
    return _encode_all(image.convert("RGB"))
