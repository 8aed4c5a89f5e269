"""Each point source's own aperture correction, from where its inputs' pixels fell on it.

The catalog's total flux is the largest aperture's flux over the share of a
point source's light that aperture holds.  The PSF model's encircled energy
(:func:`obsflow.stage3.psfmodel.encircled_energy`) is that share averaged
over where a source falls within the pixels; one source's share differs
from it by its own pixel phases on its inputs and on the mosaic grid (an
undersampled star most: 0.27% relative scatter on the Webb-like profile,
skewed, so the median star is 0.07% below the average and the brightest
stars' median flux pull -0.65 sigma; docs/benchmarks.md).

Those phases are known: the source's position on every input (through its
aligned WCS), which of the input's pixels the drizzle used, each input's
weight, the kernel and the grid.  So the share is computed for each source
(:func:`own_encircled_energy`): the PSF model (the optics' Moffat) is
integrated over each input pixel about the source (Gauss-Legendre,
:data:`NODES` per axis), drizzled onto the mosaic's grid by the same kernel
code the mosaic went through (:func:`obsflow.stage3.kernels.add_image`,
every source's stamps side by side on one canvas, one call per input, each
stamp's pixel map the local affine map of the input onto the grid), and
summed within the aperture at the catalog's aperture centre with exact pixel
overlaps, as the catalog sums the mosaic.

Pure functions of arrays and WCSs; :func:`input_stamps` cuts the pixels the
drizzle used about each source out of an input's DQ and SCI (a band of rows
at a time, as :mod:`obsflow.stage3.positions` reads them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.wcs import WCS
from photutils.aperture import CircularAperture, aperture_photometry

from obsflow.exceptions import CatalogError
from obsflow.stage3.kernels import KERNELS, SLOTS, add_image, reach
from obsflow.stage3.psfmodel import MOFFAT_BETA, _moffat_alpha

__all__ = ["NODES", "InputSampling", "own_encircled_energy", "pixel_light", "sampling_half"]

NODES = 6
"""Gauss-Legendre nodes per pixel axis of the pixel-integrated Moffat (its pixel integrals
within 1e-6 of the flux for a FWHM of 0.6 input pixels and more)."""


@dataclass(frozen=True)
class InputSampling:
    """Where one input's pixels fell about each source, as its drizzle used them.

    Attributes
    ----------
    wcs : astropy.wcs.WCS
        The input's aligned WCS (its pixels to the sky).
    weight : float
        Its drizzle weight (relative to the other inputs'; a per-pixel weight map's
        median over its good pixels).
    origin : numpy.ndarray
        (n, 2) int: input pixel (x, y) of each source's stamp's first pixel; stamps are
        ``(2 * half + 1)`` pixels square (``half`` from the shape of ``good``).
    good : numpy.ndarray
        (n, size, size) bool: the stamp's pixels the drizzle used (weight > 0; False off
        the input).  A source the input does not hold has no True pixel.
    """

    wcs: WCS
    weight: float
    origin: np.ndarray
    good: np.ndarray


def sampling_half(radius: float, kernel: str, pixfrac: float, out_per_in: float) -> int:
    """Half-size (input pixels) of a stamp whose drizzled light covers an aperture of
    ``radius`` mosaic pixels about its centre, for ``kernel`` at ``pixfrac`` and an input
    pixel of ``out_per_in`` mosaic pixels (its light beyond that never reaches the
    aperture)."""
    ratio = 1.0 / out_per_in
    return int(math.ceil((radius + reach(kernel, pixfrac, ratio) + 1.0) / out_per_in)) + 1


def _gauss_legendre(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample offsets (pixels from the first pixel's centre) and weights (summing to 1 in
    each pixel) of :data:`NODES` nodes in each of ``size`` consecutive pixels."""
    nodes, weights = np.polynomial.legendre.leggauss(NODES)
    return ((np.arange(size)[:, None] + 0.5 * nodes[None, :]).ravel(),
            np.tile(0.5 * weights, size))


SOURCES_AT_ONCE = 256
"""Sources drizzled onto one canvas (its accumulators: 20 bytes per canvas pixel, ~3.7 MiB
for 256 sources of 27 x 27 px blocks)."""

_CHUNK = 64
"""Sources whose stamps are integrated at once (their sample grids: ~_CHUNK x 8 MiB at 13 px
stamps)."""


def pixel_light(dx: np.ndarray, dy: np.ndarray, jac: np.ndarray, size: int, fwhm_pix: float,
                beta: float = MOFFAT_BETA) -> np.ndarray:
    """Each input pixel's share of a unit-flux point source's light, on (n, size, size) stamps.

    The optics' Moffat (``fwhm_pix`` mosaic pixels: fixed on the sky, not in the input's
    distorted pixels) integrated over each input pixel's footprint on the mosaic grid
    (Gauss-Legendre nodes in the input pixel, mapped by ``jac``).  ``dx``, ``dy`` (n,): the
    stamp's first pixel centre from the source, input pixels; ``jac`` (n, 2, 2): d(mosaic x,
    y) / d(input x, y) about the source."""
    grid, w = _gauss_legendre(size)
    alpha = _moffat_alpha(fwhm_pix, beta)
    norm = (beta - 1.0) / (math.pi * alpha**2)
    weights = w[:, None] * w[None, :]
    n = len(dx)
    out = np.empty((n, size, size))
    for c0 in range(0, n, _CHUNK):
        c = slice(c0, min(n, c0 + _CHUNK))
        ex = grid[None, :] + np.asarray(dx, np.float64)[c, None]  # (m, S) input px
        ey = grid[None, :] + np.asarray(dy, np.float64)[c, None]
        j = jac[c]
        u = j[:, 0, 0, None, None] * ex[:, None, :] + j[:, 0, 1, None, None] * ey[:, :, None]
        v = j[:, 1, 0, None, None] * ex[:, None, :] + j[:, 1, 1, None, None] * ey[:, :, None]
        u *= u
        v *= v
        u += v
        del v
        u /= alpha**2
        u += 1.0
        u **= -beta  # (m, S, S): the Moffat at each node, per mosaic pixel^2
        u *= weights
        area = np.abs(j[:, 0, 0] * j[:, 1, 1] - j[:, 0, 1] * j[:, 1, 0])
        m = u.shape[0]
        out[c] = (u.reshape(m, size, NODES, size, NODES).sum(axis=(2, 4))
                  * (norm * area)[:, None, None])
    return out


def own_encircled_energy(grid: WCS, centre: np.ndarray, aperture: np.ndarray, radius: float,
                         fwhm_pix: float, inputs: list[InputSampling], kernel: str = "square",
                         pixfrac: float = 1.0, beta: float = MOFFAT_BETA) -> np.ndarray:
    """Each point source's share of its light within ``radius`` mosaic pixels of its
    aperture centre, drizzled from its own inputs.

    Parameters
    ----------
    grid : astropy.wcs.WCS
        The mosaic's WCS.
    centre, aperture : numpy.ndarray
        (n, 2) mosaic pixels (x, y): each source's position and its aperture's centre.
    radius : float
        Aperture radius, mosaic pixels.
    fwhm_pix : float
        FWHM of the optics' Moffat, mosaic pixels (``MosaicPSF.fwhm_pix``).
    inputs : list of InputSampling
        Every input's sampling of the same n sources (stamps of one size).
    kernel, pixfrac : str, float
        The drizzle's kernel and pixfrac.

    Returns
    -------
    numpy.ndarray
        (n,) shares in (0, 1); NaN for a source no input's used pixel reaches.
    """
    centre = np.asarray(centre, np.float64).reshape(-1, 2)
    aperture = np.asarray(aperture, np.float64).reshape(-1, 2)
    n = centre.shape[0]
    if aperture.shape != centre.shape:
        raise CatalogError(f"own aperture correction: {n} source centres but "
                           f"{aperture.shape[0]} aperture centres")
    if kernel not in KERNELS:
        raise CatalogError(f"own aperture correction: kernel must be one of {KERNELS}, "
                           f"got {kernel!r}")
    if n == 0 or not inputs:
        return np.full(n, np.nan)
    size = inputs[0].good.shape[-1]
    for s in inputs:
        if s.good.shape != (n, size, size) or s.origin.shape != (n, 2):
            raise CatalogError(f"own aperture correction: an input's stamps are "
                               f"{s.good.shape} with origins {s.origin.shape}; expected "
                               f"({n}, {size}, {size}) and ({n}, 2)")
    if n > SOURCES_AT_ONCE:  # (the canvas of a few hundred sources at a time: a few MiB)
        return np.concatenate([
            own_encircled_energy(grid, centre[a:a + SOURCES_AT_ONCE],
                                 aperture[a:a + SOURCES_AT_ONCE], radius, fwhm_pix,
                                 [InputSampling(s.wcs, s.weight, s.origin[a:a + SOURCES_AT_ONCE],
                                                s.good[a:a + SOURCES_AT_ONCE]) for s in inputs],
                                 kernel, pixfrac, beta)
            for a in range(0, n, SOURCES_AT_ONCE)])
    ra, dec = grid.pixel_to_world_values(centre[:, 0], centre[:, 1])
    # each input's affine map about each source: its position there and d(grid)/d(input)
    maps = []
    span = 0.0
    for s in inputs:
        x, y = (np.asarray(v, np.float64) for v in s.wcs.world_to_pixel_values(ra, dec))
        px = np.concatenate([x, x + 1.0, x])
        py = np.concatenate([y, y, y + 1.0])
        gx, gy = (np.asarray(v, np.float64).reshape(3, n) for v in
                  grid.world_to_pixel_values(*s.wcs.pixel_to_world_values(px, py)))
        jac = np.stack([np.stack([gx[1] - gx[0], gx[2] - gx[0]], -1),
                        np.stack([gy[1] - gy[0], gy[2] - gy[0]], -1)], 1)  # (n, 2, 2)
        maps.append((x, y, jac))
        ok = np.isfinite(jac).all(axis=(1, 2))
        if ok.any():
            span = max(span, float(np.abs(jac[ok]).sum(axis=2).max()))
    # one block of the canvas per source: its wide stamps' extent on the grid (span: grid
    # pixels per input pixel along a row or column, rotation included) plus the kernel's reach
    extent = 0.5 * (size + 3) * span + reach(kernel, pixfrac, 1.0 / max(span, 1e-3)) + 2.0
    block = 2 * int(math.ceil(extent)) + 1
    base = np.rint(centre).astype(np.int64) - block // 2  # grid pixel of each block's [0, 0]
    base[~np.isfinite(centre).all(axis=1)] = 0
    shift = np.column_stack([-base[:, 0], -base[:, 1] + block * np.arange(n)]).astype(np.float64)
    acc = np.zeros((n * block, block, SLOTS), np.float32)
    # stamps drawn one pixel wider on every side with no weight there: the square kernel
    # interpolates the pixel map between neighbouring rows for its drops' corners, and a
    # stamp's own (affine) map must be on both sides of each used pixel
    wide = size + 2
    zeros = np.zeros((n * wide, wide), np.float32)
    offsets = np.arange(wide, dtype=np.float64)
    for s, (x, y, jac) in zip(inputs, maps, strict=True):
        ok = (np.isfinite(x) & np.isfinite(y) & np.isfinite(jac).all(axis=(1, 2))
              & s.good.any(axis=(1, 2)) & np.isfinite(centre).all(axis=1))
        if not ok.any() or not s.weight > 0:
            continue
        # the wide stamp's first pixel from the source, input pixels
        dx = s.origin[:, 0] - 1.0 - np.where(ok, x, 0.0)
        dy = s.origin[:, 1] - 1.0 - np.where(ok, y, 0.0)
        jac = np.where(ok[:, None, None], jac, 1.0)
        light = pixel_light(dx, dy, jac, wide, fwhm_pix, beta)
        area = np.abs(jac[:, 0, 0] * jac[:, 1, 1] - jac[:, 0, 1] * jac[:, 1, 0])
        data = (light / np.where(ok, area, 1.0)[:, None, None]).astype(np.float32)
        weight = np.zeros((n, wide, wide), np.float32)
        weight[:, 1:-1, 1:-1] = np.where(s.good & ok[:, None, None], np.float32(s.weight),
                                         np.float32(0.0))
        # grid position of each stamp pixel centre, moved onto the source's block
        ex = dx[:, None] + offsets[None, :]
        ey = dy[:, None] + offsets[None, :]
        pmap = np.empty((n, wide, wide, 2), np.float64)
        for k in (0, 1):
            pmap[..., k] = (centre[:, k, None, None] + shift[:, k, None, None]
                            + jac[:, k, 0, None, None] * ex[:, None, :]
                            + jac[:, k, 1, None, None] * ey[:, :, None])
        pmap[~ok] = -1.0e6  # (no weight there: nothing deposited)
        ratio = 1.0 / math.sqrt(float(np.median(area[ok])))
        add_image(kernel, data.reshape(n * wide, wide), weight.reshape(n * wide, wide),
                  (zeros, zeros, zeros), pmap.reshape(n * wide, wide, 2), pixfrac, 1.0, ratio,
                  acc, 1)
    wht = acc[..., 1]
    image = np.zeros(wht.shape, np.float64)
    np.divide(acc[..., 0], wht, out=image, where=wht > 0)
    where = aperture + shift
    usable = np.isfinite(where).all(axis=1) & (wht.reshape(n, block, block).max(axis=(1, 2)) > 0)
    sums = np.asarray(aperture_photometry(
        image, CircularAperture(np.where(usable[:, None], where, 0.0), radius),
        method="exact")["aperture_sum"], np.float64)
    return np.where(usable, sums, np.nan)
