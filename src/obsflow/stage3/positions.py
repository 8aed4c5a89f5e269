"""Sky positions of a mosaic's point sources measured on its inputs.

A star of about one pixel FWHM drizzled from a few dithers is not symmetric
about its centre in the mosaic: each input samples it at its own pixel
phase, and drizzle spreads those samples by its kernel.  A centroid measured
on the mosaic (windowed, or a fit of any one symmetric model) scatters by
~0.05 px per star on the Webb-like profile's undersampled subarrays.  The
inputs do not have that problem: on each, a fit of the pixel-integrated PSF
(:func:`obsflow.stage3.detect.refine_centroids`, the model alignment uses)
is free of pixel-phase bias.  So a point source's position is measured on
every aligned input that holds it unmasked, taken to the sky through that
input's aligned WCS and averaged in the mosaic's own (tangent-plane) pixel
grid; what remains is the alignment's error and the noise of the fits.

Pure functions of arrays and WCSs; :class:`InputPositions` accumulates one
input at a time (a caller reads each input, adds it and drops it).
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple, Protocol

import numpy as np
from astropy.wcs import WCS

from obsflow.models.dq import NO_SCIENCE, flagged
from obsflow.stage3.apcorr import InputSampling
from obsflow.stage3.detect import refine_centroids, stamp_half

__all__ = ["InputPositions", "OnInput", "combine_in_grid", "measure_on_input"]

OUTLIER_PIX = 0.5
"""An input's position farther than this from the median of three or more inputs
(mosaic pixels) is left out of the mean: a fit pulled by something the outlier
step did not flag."""

_BAND_ROWS = 256
"""Rows of an input read at a time (plus the stamps' margin)."""


class RowBands(Protocol):
    """A 2-d image read a band of rows at a time: ``shape`` and ``[r0:r1]`` slicing."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, rows: slice) -> Any: ...


class OnInput(NamedTuple):
    """What :func:`measure_on_input` finds about n sources on one input."""

    ra: np.ndarray
    """(n,) sky position measured there, degrees (NaN where not measured)."""
    dec: np.ndarray
    """(n,) degrees."""
    origin: np.ndarray
    """(n, 2) int: input pixel (x, y) of each source's stamp's first pixel."""
    good: np.ndarray
    """(n, 2 half + 1, 2 half + 1) bool: the stamp's pixels a drizzle uses (not NO_SCIENCE,
    SCI finite; False off the input)."""


def measure_on_input(sci: RowBands, dq: RowBands, wcs: WCS, ra: np.ndarray,
                     dec: np.ndarray, fwhm_pix: float, half: int = 0) -> OnInput:
    """Sky positions (degrees) of the sources near (``ra``, ``dec``) degrees measured on one
    input: its SCI (any flux unit; a local pedestal is fitted), its DQ (NO_SCIENCE pixels
    masked) and its aligned WCS; ``fwhm_pix`` the PSF's FWHM in the input's pixels.  NaN for
    a source outside the input, within 2 FWHM of its edge, with a masked pixel in its
    stamp, or whose fit did not converge.  With ``half`` > 0, also which pixels of a stamp
    ``2 half + 1`` pixels square about each source (centred on its nearest pixel) a drizzle
    of the input uses (:mod:`obsflow.stage3.apcorr` models the source's light through them).

    ``sci`` and ``dq`` are 2-d arrays or anything that reads a band of rows when sliced
    ``[r0:r1]`` (an astropy ``Section`` of a file opened without a memory map): only the
    bands :data:`_BAND_ROWS` rows tall holding sources are read, one at a time, with the
    stamps' margin above and below, so an input's file is never held whole."""
    ra = np.asarray(ra, np.float64)
    dec = np.asarray(dec, np.float64)
    out_ra = np.full(ra.shape, np.nan)
    out_dec = np.full(dec.shape, np.nan)
    size = 2 * half + 1
    origin = np.zeros(ra.shape + (2,), np.int64)
    good = np.zeros(ra.shape + (size, size), bool)
    if ra.size == 0:
        return OnInput(out_ra, out_dec, origin, good)
    x, y = wcs.world_to_pixel_values(ra, dec)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ny, nx = sci.shape
    edge = 2.0 * max(fwhm_pix, 1.0)
    finite = np.isfinite(x) & np.isfinite(y)
    inside = finite & (x > edge) & (x < nx - 1 - edge) & (y > edge) & (y < ny - 1 - edge)
    origin[finite] = np.column_stack([np.rint(x[finite]), np.rint(y[finite])]) - half
    sampled = (finite & (origin[:, 0] > -size) & (origin[:, 0] < nx) & (origin[:, 1] > -size)
               & (origin[:, 1] < ny)) if half > 0 else np.zeros(ra.shape, bool)
    fx = np.full(ra.shape, np.nan)
    fy = np.full(ra.shape, np.nan)
    margin = max(stamp_half(fwhm_pix), half + 1)
    band_of = np.full(ra.shape, -1, np.int64)  # the band of each source's stamp centre row
    read = inside | sampled
    band_of[read] = np.clip(np.rint(y[read]), 0, ny - 1).astype(np.int64) // _BAND_ROWS
    for band in np.unique(band_of[read]):
        lo = max(0, int(band) * _BAND_ROWS - margin)
        hi = min(ny, (int(band) + 1) * _BAND_ROWS + margin)
        rows = np.asarray(sci[lo:hi])
        bad = flagged(np.asarray(dq[lo:hi]), NO_SCIENCE)
        bad |= ~np.isfinite(rows)
        these = np.flatnonzero((band_of == band) & inside)
        if these.size:
            bx, by = refine_centroids(rows, bad, x[these], y[these] - lo, fwhm_pix)
            fx[these], fy[these] = bx, by + lo
        for k in np.flatnonzero((band_of == band) & sampled):
            _cut(good[k], ~bad, int(origin[k, 0]), int(origin[k, 1]) - lo)
    ok = np.isfinite(fx) & np.isfinite(fy)
    sky_ra, sky_dec = wcs.pixel_to_world_values(np.where(ok, fx, 0.0), np.where(ok, fy, 0.0))
    out_ra[ok] = np.asarray(sky_ra)[ok]
    out_dec[ok] = np.asarray(sky_dec)[ok]
    return OnInput(out_ra, out_dec, origin, good)


def _cut(stamp: np.ndarray, image: np.ndarray, x0: int, y0: int) -> None:
    """Copy the part of ``image`` under ``stamp`` placed with its first pixel at (``x0``,
    ``y0``) of ``image`` into ``stamp`` (the rest of ``stamp`` left as it is)."""
    ny, nx = image.shape
    h, w = stamp.shape
    ya, yb = max(y0, 0), min(y0 + h, ny)
    xa, xb = max(x0, 0), min(x0 + w, nx)
    if ya < yb and xa < xb:
        stamp[ya - y0:yb - y0, xa - x0:xb - x0] = image[ya:yb, xa:xb]


def combine_in_grid(x_each: np.ndarray, y_each: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each source's mean of its inputs' positions ``x_each``, ``y_each`` ((inputs, sources)
    mosaic pixels, NaN where an input did not measure it), leaving out inputs farther than
    :data:`OUTLIER_PIX` from the median when three or more measured it: (x, y, inputs used),
    NaN and 0 where none did."""
    x_each = np.asarray(x_each, np.float64)
    y_each = np.asarray(y_each, np.float64)
    good = np.isfinite(x_each) & np.isfinite(y_each)
    count = good.sum(axis=0)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "All-NaN slice": no input measured it
        xm = np.nanmedian(np.where(good, x_each, np.nan), axis=0)
        ym = np.nanmedian(np.where(good, y_each, np.nan), axis=0)
        far = np.hypot(x_each - xm, y_each - ym) > OUTLIER_PIX
    good &= ~(far & (count >= 3)[None, :])
    used = good.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = np.where(good, x_each, 0.0).sum(axis=0) / used
        y = np.where(good, y_each, 0.0).sum(axis=0) / used
    return np.where(used > 0, x, np.nan), np.where(used > 0, y, np.nan), used


class InputPositions:
    """Positions of sources at (``ra``, ``dec``) degrees measured input by input
    (:meth:`add`) and combined in the mosaic grid ``grid`` (:meth:`finish`); with ``half`` >
    0 also each input's sampling of them (:attr:`samplings`, stamps ``2 half + 1`` pixels
    square, for :func:`obsflow.stage3.apcorr.own_encircled_energy`)."""

    def __init__(self, ra: np.ndarray, dec: np.ndarray, grid: WCS, half: int = 0) -> None:
        self.ra = np.asarray(ra, np.float64)
        self.dec = np.asarray(dec, np.float64)
        self.grid = grid
        self.half = int(half)
        self.samplings: list[InputSampling] = []
        self._x: list[np.ndarray] = []
        self._y: list[np.ndarray] = []

    def add(self, sci: RowBands, dq: RowBands, wcs: WCS, fwhm_pix: float,
            weight: float = 1.0) -> None:
        """Measure the sources on one input (see :func:`measure_on_input`); ``weight`` its
        drizzle weight (:attr:`obsflow.stage3.apcorr.InputSampling.weight`)."""
        found = measure_on_input(sci, dq, wcs, self.ra, self.dec, fwhm_pix, self.half)
        ok = np.isfinite(found.ra)
        x, y = self.grid.world_to_pixel_values(np.where(ok, found.ra, self.ra),
                                               np.where(ok, found.dec, self.dec))
        self._x.append(np.where(ok, x, np.nan))
        self._y.append(np.where(ok, y, np.nan))
        if self.half > 0:
            self.samplings.append(InputSampling(wcs, float(weight), found.origin, found.good))

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y) in the grid's 0-based pixels and the number of inputs used per source
        (NaN, NaN, 0 where no input measured it)."""
        if not self._x:
            nan = np.full(self.ra.shape, np.nan)
            return nan, nan.copy(), np.zeros(self.ra.shape, np.int64)
        return combine_in_grid(np.array(self._x), np.array(self._y))
