"""Pixel maps: where each input pixel centre lands on the output grid.

A pixel map is a (ny, nx, 2) float64 array: ``pmap[j, i] = (x, y)``, the
0-based output pixel coordinates of input pixel (column i, row j) -- the
layout the ``drizzle`` package uses.

:func:`exact_pixel_map` runs the full WCS chain (input pixel -> sky ->
output pixel, distortion included) on every pixel: for a 2048 x 2048
detector that is 4 M sky positions and, in the JWST pipeline with gwcs,
most of the resample step's time (jwst issue 9440).  :func:`pixel_map` runs
it only on a coarse lattice (every ``step`` pixels plus the last row and
column) and fills the rest by bilinear interpolation in compiled code.  The
interpolation error is bounded by ``step^2 / 8`` times the map's second
derivative; a gnomonic-to-gnomonic map is a projective transformation whose
second derivative over a 2048-pixel detector is ~1e-8 pixel/pixel^2, so
with ``step = 32`` the error is far below 1e-3 output pixel
(tests/test_stage3_pixmap.py measures it against the exact map on both
profiles' geometries and a rotated, rescaled grid; the bound the tests hold
it to is 1e-3 pixel, 1/100 of the 0.1-pixel budget of the alignment).
:func:`max_map_error` measures it for any pair of WCS.
"""

from __future__ import annotations

import copy

import numpy as np
from astropy.wcs import WCS
from numba import njit

from obsflow.exceptions import ResampleError

__all__ = ["DEFAULT_STEP", "LatticeMap", "exact_pixel_map", "fill_rows", "max_map_error", "pixel_map",
           "scale_ratio"]

DEFAULT_STEP = 32
"""Lattice spacing of :func:`pixel_map`, input pixels."""


def _transform(wcs_in: WCS, wcs_out: WCS, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ra, dec = wcs_in.pixel_to_world_values(x, y)
    ox, oy = wcs_out.world_to_pixel_values(ra, dec)
    return np.asarray(ox, dtype=np.float64), np.asarray(oy, dtype=np.float64)


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    ny, nx = (int(shape[0]), int(shape[1]))
    if ny < 2 or nx < 2:
        raise ResampleError(f"pixel map: input shape must be at least 2 x 2 pixels, got {shape}")
    return ny, nx


def exact_pixel_map(wcs_in: WCS, shape: tuple[int, int], wcs_out: WCS) -> np.ndarray:
    """The full WCS transform of every input pixel centre, (ny, nx, 2) float64."""
    ny, nx = _check_shape(shape)
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)
    ox, oy = _transform(wcs_in, wcs_out, x.ravel(), y.ravel())
    return np.dstack([ox.reshape(ny, nx), oy.reshape(ny, nx)])


def _nodes(n: int, step: int) -> np.ndarray:
    nodes = np.arange(0, n, step, dtype=np.float64)
    if nodes[-1] != n - 1:
        nodes = np.append(nodes, float(n - 1))
    return nodes


@njit(cache=True, nogil=True)
def _cells(g, n):  # type: ignore[no-untyped-def]
    """For pixels 0..n-1 of one axis with lattice nodes ``g``: the lattice interval ``k`` of
    each (``g[k] <= p <= g[k + 1]``) and its fraction ``(p - g[k]) / (g[k + 1] - g[k])`` of the
    way across (int64 and float64 arrays of n)."""
    m = g.shape[0]
    cell = np.empty(n, dtype=np.int64)
    frac = np.empty(n)
    k = 0
    for p in range(n):
        while k < m - 2 and p > g[k + 1]:
            k += 1
        cell[p] = k
        frac[p] = (p - g[k]) / (g[k + 1] - g[k])
    return cell, frac


@njit(cache=True, nogil=True)
def fill_rows(lattice, row0, row1, out):  # type: ignore[no-untyped-def]
    """``out[r]`` = the output (x, y) of input row ``row0 + r`` for rows [row0, row1), by
    bilinear interpolation of a :attr:`LatticeMap.lattice` (``out`` at least (row1 - row0,
    nx, 2) float64): per row the lattice columns are interpolated to the row (``len(gx)``
    values) and their differences taken once, then each pixel is one multiply-add per
    coordinate between its two columns, less the lattice's offset."""
    iy, ty, coarse, ix, tx, x0, y0 = lattice
    mx = coarse.shape[1]
    crow = np.empty((mx, 2))
    drow = np.empty((mx, 2))
    for j in range(row0, row1):
        k = iy[j]
        t = ty[j]
        for m in range(mx):
            for c in range(2):
                crow[m, c] = coarse[k, m, c] + t * (coarse[k + 1, m, c] - coarse[k, m, c])
        for m in range(mx - 1):
            for c in range(2):
                drow[m, c] = crow[m + 1, c] - crow[m, c]
        r = j - row0
        for i in range(ix.shape[0]):
            m = ix[i]
            s = tx[i]
            out[r, i, 0] = crow[m, 0] + s * drow[m, 0] - x0
            out[r, i, 1] = crow[m, 1] + s * drow[m, 1] - y0


class LatticeMap:
    """The interpolated pixel map of one input, made a band of rows at a time.

    The exact transform runs once on the ``step``-pixel lattice (a few
    thousand positions); :meth:`rows` fills any band of input rows from it,
    equal bit for bit to the same rows of :func:`pixel_map`, so a caller can
    walk an input in bands holding 16 bytes per pixel of one band, not of
    the whole input (64 MiB for 2048 x 2048).

    Parameters
    ----------
    wcs_in, wcs_out : astropy.wcs.WCS
        The input's and the output grid's celestial WCS.
    shape : tuple of int
        The input's (ny, nx), pixels.
    step : int
        Lattice spacing, input pixels.
    """

    def __init__(self, wcs_in: WCS, shape: tuple[int, int], wcs_out: WCS,
                 step: int = DEFAULT_STEP) -> None:
        ny, nx = _check_shape(shape)
        if step < 1:
            raise ResampleError(f"pixel map lattice step must be >= 1 pixel, got {step}")
        self.shape = (ny, nx)
        gx, gy = _nodes(nx, step), _nodes(ny, step)
        yy, xx = np.meshgrid(gy, gx, indexing="ij")
        ox, oy = _transform(wcs_in, wcs_out, xx.ravel(), yy.ravel())
        coarse = np.dstack([ox.reshape(xx.shape), oy.reshape(xx.shape)])
        self.lattice = (*_cells(gy, ny), coarse, *_cells(gx, nx), 0.0, 0.0)
        """What :func:`fill_rows` interpolates: (the lattice row interval of each input row,
        its fraction, the exact (x, y) at the lattice nodes (len(gy), len(gx), 2), the lattice
        column interval of each input column, its fraction, x and y offset subtracted)."""

    def shifted(self, x0: int, y0: int) -> LatticeMap:
        """This map with (x0, y0) subtracted from every position (onto a sub-grid whose pixel
        (0, 0) is this grid's (x0, y0)), after the interpolation: the same values as
        ``pmap[..., 0] -= x0; pmap[..., 1] -= y0`` on the whole map."""
        out = copy.copy(self)
        out.lattice = (*self.lattice[:5], float(int(x0)), float(int(y0)))
        return out

    def bounds(self, band_rows: int = 256) -> tuple[float, float, float, float] | None:
        """(x min, x max, y min, y max) over the finite positions of the whole map, made a
        band at a time; None when none is finite."""
        lo = np.array([np.inf, np.inf])
        hi = np.array([-np.inf, -np.inf])
        ny = self.shape[0]
        for r0 in range(0, ny, band_rows):
            band = self.rows(r0, min(ny, r0 + band_rows)).reshape(-1, 2)
            band = band[np.isfinite(band).all(axis=1)]
            if band.size:
                lo = np.minimum(lo, band.min(axis=0))
                hi = np.maximum(hi, band.max(axis=0))
        return None if not np.isfinite(lo).all() else (lo[0], hi[0], lo[1], hi[1])

    def rows(self, row0: int, row1: int) -> np.ndarray:
        """(row1 - row0, nx, 2) float64 output (x, y) of the input pixels of rows [row0, row1)."""
        ny, nx = self.shape
        if not 0 <= row0 < row1 <= ny:
            raise ResampleError(f"pixel map rows [{row0}, {row1}) outside the input's 0..{ny}")
        out = np.empty((row1 - row0, nx, 2))
        fill_rows(self.lattice, row0, row1, out)
        return out

    def scale_ratio(self) -> float:
        """:func:`scale_ratio` of the whole map (computed on the three rows about its centre)."""
        ny = self.shape[0]
        j = ny // 2
        return scale_ratio(self.rows(max(j - 1, 0), min(j + 1, ny - 1) + 1))


def pixel_map(wcs_in: WCS, shape: tuple[int, int], wcs_out: WCS, step: int = DEFAULT_STEP) -> np.ndarray:
    """The pixel map from the exact transform on a ``step``-pixel lattice, interpolated (see module)."""
    mapper = LatticeMap(wcs_in, shape, wcs_out, step)
    return mapper.rows(0, mapper.shape[0])


def max_map_error(wcs_in: WCS, shape: tuple[int, int], wcs_out: WCS, pmap: np.ndarray,
                  sample: int = 7) -> float:
    """Largest distance (output pixels) between ``pmap`` and the exact transform.

    Checked at every ``sample``-th input pixel in both axes (a prime, so the
    points fall all over the interpolation cells), plus the last row and column.
    """
    ny, nx = _check_shape(shape)
    ys = np.union1d(np.arange(0, ny, sample), [ny - 1])
    xs = np.union1d(np.arange(0, nx, sample), [nx - 1])
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    ox, oy = _transform(wcs_in, wcs_out, xx.ravel().astype(float), yy.ravel().astype(float))
    got = pmap[yy.ravel(), xx.ravel()]
    return float(np.max(np.hypot(got[:, 0] - ox, got[:, 1] - oy)))


def scale_ratio(pmap: np.ndarray) -> float:
    """Side of an output pixel in input pixels at the map's centre (drizzle's ``pixel_scale_ratio``).

    1 / sqrt(|det J|) with J the map's Jacobian, by central differences.
    """
    ny, nx = pmap.shape[:2]
    j, i = ny // 2, nx // 2
    j0, j1 = max(j - 1, 0), min(j + 1, ny - 1)
    i0, i1 = max(i - 1, 0), min(i + 1, nx - 1)
    dx = (pmap[j, i1] - pmap[j, i0]) / (i1 - i0)
    dy = (pmap[j1, i] - pmap[j0, i]) / (j1 - j0)
    det = abs(dx[0] * dy[1] - dx[1] * dy[0])
    if not det > 0:
        raise ResampleError("pixel map is degenerate at the image centre (zero Jacobian)")
    return float(1.0 / np.sqrt(det))
