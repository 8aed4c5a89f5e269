"""Drizzle kernels: one input image added into the output accumulators.

Compiled with numba (``@njit(cache=True, nogil=True)``).  Each kernel walks
the input pixels once and spreads every pixel's value over the output pixels
its footprint touches, with a per-overlap weight ``dow``:

========  =================================================================
square    the input pixel shrunk by ``pixfrac`` about its centre, its four
          corners mapped through the pixel map (bilinear interpolation of
          the centre map, as drizzle does), ``dow`` = exact overlap area of
          that quadrilateral with the output pixel / the quadrilateral's
          area x the input weight (so one input pixel hands out its weight
          once in total).  Boxes of 2x2 or 3x3 output pixels (the usual
          case): areas from branch-free quadrant sums
          (``_edge_quadrant``); larger boxes: signed areas accumulated
          edge by edge (``_edge_cells``).
point     all of the pixel at its centre's nearest output pixel, ``dow`` =
          input weight.
turbo     an output-axis-aligned square of side ``pixfrac / ratio`` output
          pixels, ``dow`` = overlap area x ratio^2 / pixfrac^2 x weight
          (approximate: ignores rotation).
gaussian  a Gaussian of FWHM ``pixfrac / ratio`` output pixels, truncated
          at 2.5 FWHM/2.3548 (at least 1.2/ratio) output pixels.
lanczos3  a separable Lanczos-3 of the output-pixel offsets x ratio, from a
          look-up table spaced 0.003 (``pixfrac`` unused, weights can be
          negative).
========  =================================================================

``ratio`` is the pixel-scale ratio, the side of an output pixel in input
pixels.  These are the definitions of the ``drizzle`` package's kernels
(v2.x, cdrizzlebox.c), written again here so that results agree with it to
float32 rounding (tests/test_stage3_resample.py compares them).

Accumulators, float32, side by side per output pixel in ``acc`` (oy, ox, 5)
so that one overlap touches one cache line:

* ``num`` += dow x value, ``wht`` += dow, ``var[k]`` += dow^2 x variance_k
  (k = Poisson, read noise, flat),
* ``con[plane]`` |= bit when dow > 0 (context: one bit per input).

The weighted mean is ``num / wht`` and its variance ``var[k] / wht^2``
(:func:`obsflow.stage3.resample.Resampler.finish`), the same numbers drizzle's
running average gives.  Input pixels with weight 0 or a non-finite value,
weight or pixel-map entry are skipped.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["KERNELS", "add_image", "lanczos_lut", "reach"]

KERNELS = ("square", "point", "turbo", "gaussian", "lanczos3")
"""Kernel names, in the order of their numeric codes."""

_BOX = 8
"""Initial size (per side) of the square kernel's scratch box of output pixels; it grows when an
input pixel covers more (output pixels much finer than the input's)."""

LUT_DELTA = 0.003
"""Spacing of the Lanczos look-up table, in units of input pixels."""


def lanczos_lut(order: int) -> np.ndarray:
    """Lanczos kernel sinc(x) sinc(x/order) sampled every LUT_DELTA from 0 to ``order``."""
    n = int(math.ceil(order / LUT_DELTA)) + 1
    x = np.arange(n) * LUT_DELTA
    lut = np.zeros(n)
    inside = (x <= order) & (x > 0)
    poff = np.pi * x[inside]
    r = poff / order
    lut[inside] = np.sin(poff) * np.sin(r) / (poff * r)
    lut[0] = 1.0
    return lut


@njit(cache=True, nogil=True, inline="always")
def _nint(x: float) -> int:
    """Round half away from zero (C's round())."""
    if x >= 0.0:
        return int(math.floor(x + 0.5))
    return -int(math.floor(0.5 - x))


@njit(cache=True, nogil=True, inline="always")
def _edge_cells(ov, xa, ya, xb, yb, ii0, ii1, jj0, jj1):  # type: ignore[no-untyped-def]
    """Add one polygon edge's signed areas under it to the cells of a box of output pixels.

    ``ov[jj - jj0, ii - ii0]`` gets, for each output pixel (ii, jj) of the
    box, the signed area between the edge (xa, ya) -> (xb, yb) and the
    pixel's lower side, inside the pixel: +area for an edge running towards
    +x (drizzle's ``sgarea``, summed over a clockwise polygon's edges, is
    its overlap).  The edge is clipped to each column once; within a column
    the mean of ``clamp(y - bottom, 0, 1)`` along the clipped edge is
    piecewise linear-quadratic in the row, so each row costs a few
    operations and rows above the edge end the loop.
    """
    if xb == xa:
        return
    if xb > xa:
        sgn = 1.0
        xl = xa
        yl = ya
        xh = xb
        yh = yb
    else:
        sgn = -1.0
        xl = xb
        yl = yb
        xh = xa
        yh = ya
    slope = (yh - yl) / (xh - xl)
    c0 = max(_nint(xl), ii0)
    c1 = min(_nint(xh), ii1)
    for ii in range(c0, c1 + 1):
        xlo = max(xl, ii - 0.5)
        xhi = min(xh, ii + 0.5)
        width = xhi - xlo
        if width <= 0.0:
            continue
        y1 = yl + slope * (xlo - xl)
        y2 = yl + slope * (xhi - xl)
        lo = min(y1, y2)
        hi = max(y1, y2)
        col = ii - ii0
        for jj in range(jj0, jj1 + 1):
            b = jj - 0.5
            if hi <= b:
                break
            if lo >= b + 1.0:
                ov[jj - jj0, col] += sgn * width
                continue
            ulo = lo - b
            uhi = hi - b
            if ulo >= 0.0 and uhi <= 1.0:
                mean = 0.5 * (ulo + uhi)
            else:
                a = max(ulo, 0.0)
                c = min(uhi, 1.0)
                mean = (0.5 * (c - a) * (c + a) + max(uhi - 1.0, 0.0)) / (uhi - ulo)
            ov[jj - jj0, col] += sgn * width * mean


@njit(cache=True, nogil=True, inline="always")
def _above(w1, p, q):  # type: ignore[no-untyped-def]
    """Mean of max(v, 0) x ``w1`` for v linear from ``p`` to ``q`` along a segment of width ``w1``."""
    lo = min(p, q)
    hi = max(p, q)
    a = max(hi, 0.0)
    b = max(lo, 0.0)
    cross = (lo < 0.0) and (hi > 0.0)  # (then hi - lo >= hi > 0: well conditioned)
    den = hi - lo if cross else 1.0
    return w1 * (0.5 * a * a / den if cross else 0.5 * (a + b))


@njit(cache=True, nogil=True, inline="always")
def _edge_quadrant(g, xa, ya, xb, yb, n):  # type: ignore[no-untyped-def]
    """Add one polygon edge's share of G(U, V) to ``g[U, V]`` for U, V = 1..n.

    G(U, V) is the signed area of the polygon inside the quadrant u < U,
    v < V, in box coordinates (the box's lower-left corner at 0, output
    pixel boundaries at the integers, the polygon inside [0, n]^2).  By
    Green's theorem it is the sum over the edges of the integral of
    min(v, V) dx along the part of the edge with u < U (dx signed: the
    edges running towards +x add, the others subtract).  Each term is a
    trapezoid less the part of it above V (``_above``): no data-dependent
    branch, unlike cell-by-cell clipping.  A clipped end at the edge's own
    end takes the end's exact value, so lines beyond the polygon give
    bit-identical G and the cells there exactly 0.
    """
    fwd = xb >= xa
    sgn = 1.0 if fwd else -1.0
    xl = xa if fwd else xb
    vl = ya if fwd else yb
    xh = xb if fwd else xa
    vh = yb if fwd else ya
    dx = xh - xl
    m = (vh - vl) / dx if dx > 0.0 else 0.0
    for a in range(1, n + 1):
        xc = min(max(float(a), xl), xh)
        w1 = xc - xl
        vc = vh if xc == xh else vl + m * w1
        i1 = 0.5 * w1 * (vl + vc)
        g[a, n] += sgn * i1
        for b in range(1, n):
            g[a, b] += sgn * (i1 - _above(w1, vl - b, vc - b))


@njit(cache=True, nogil=True, inline="always")
def _interp(pixmap: np.ndarray, xin: float, yin: float) -> tuple[float, float]:
    """Bilinear interpolation (linear extrapolation past the edges) of the pixel map."""
    ny = pixmap.shape[0]
    nx = pixmap.shape[1]
    i0 = int(xin)
    j0 = int(yin)
    i0 = min(max(i0, 0), nx - 2)
    j0 = min(max(j0, 0), ny - 2)
    x = xin - i0
    y = yin - j0
    x1 = 1.0 - x
    y1 = 1.0 - y
    a = x1 * y1
    b = x * y1
    c = x1 * y
    d = x * y
    xo = (pixmap[j0, i0, 0] * a + pixmap[j0, i0 + 1, 0] * b
          + pixmap[j0 + 1, i0, 0] * c + pixmap[j0 + 1, i0 + 1, 0] * d)
    yo = (pixmap[j0, i0, 1] * a + pixmap[j0, i0 + 1, 1] * b
          + pixmap[j0 + 1, i0, 1] * c + pixmap[j0 + 1, i0 + 1, 1] * d)
    return xo, yo


@njit(cache=True, nogil=True, inline="always")
def _deposit(acc, con, plane, bit, ii, jj, d, v0, v1, v2, dow):  # type: ignore[no-untyped-def]
    """Add one overlap of weight ``dow`` (float32) to the accumulators."""
    con[plane, jj, ii] |= bit & -np.int32(dow > 0.0)  # (no branch: a mispredicted one costs more)
    acc[jj, ii, 0] += dow * d
    acc[jj, ii, 1] += dow
    dow2 = dow * dow
    acc[jj, ii, 2] += dow2 * v0
    acc[jj, ii, 3] += dow2 * v1
    acc[jj, ii, 4] += dow2 * v2


@njit(cache=True, nogil=True)
def _square(data, weight, vp, vr, vf, pixmap, pixfrac, iscale,  # type: ignore[no-untyped-def]
            acc, con, plane, bit, row0, row1):
    """Square kernel on input rows [row0, row1).

    Corner k of pixel (j, i) is the bilinear interpolation of the centre map
    at ``(i + cx[k], j + cy[k])``, clockwise ``(-h,+h), (+h,+h), (+h,-h),
    (-h,-h)`` with ``h = pixfrac / 2``.  For ``pixfrac = 1`` neighbouring
    pixels share corners: they are computed once per band of rows on the
    (rows + 1, nx + 1) corner lattice.
    """
    nx = data.shape[1]
    ony = acc.shape[0]
    onx = acc.shape[1]
    iscale2 = iscale * iscale
    dh = 0.5 * pixfrac
    shared = dh == 0.5
    band = 16
    lat = np.empty((band + 1, nx + 1, 2))
    ov = np.empty((_BOX, _BOX))
    g = np.zeros((4, 4))  # G(U, V) of a box, U, V = 0..3 (row and column 0 stay 0)
    for j0 in range(row0, row1, band):
        j1 = min(j0 + band, row1)
        if shared:
            for r in range(j1 - j0 + 1):
                for i in range(nx + 1):
                    lat[r, i, 0], lat[r, i, 1] = _interp(pixmap, i - 0.5, j0 + r - 0.5)
        for j in range(j0, j1):
            r = j - j0
            for i in range(nx):
                w_in = weight[j, i]
                if not w_in > 0.0:
                    continue
                d = data[j, i]
                if not math.isfinite(d):
                    continue
                if shared:
                    x0 = lat[r + 1, i, 0]
                    y0 = lat[r + 1, i, 1]
                    x1 = lat[r + 1, i + 1, 0]
                    y1 = lat[r + 1, i + 1, 1]
                    x2 = lat[r, i + 1, 0]
                    y2 = lat[r, i + 1, 1]
                    x3 = lat[r, i, 0]
                    y3 = lat[r, i, 1]
                else:
                    x0, y0 = _interp(pixmap, i - dh, j + dh)
                    x1, y1 = _interp(pixmap, i + dh, j + dh)
                    x2, y2 = _interp(pixmap, i + dh, j - dh)
                    x3, y3 = _interp(pixmap, i - dh, j - dh)
                if not (math.isfinite(x0 + x1 + x2 + x3) and math.isfinite(y0 + y1 + y2 + y3)):
                    continue
                jaco = 0.5 * ((x1 - x3) * (y0 - y2) - (x0 - x2) * (y1 - y3))
                if jaco == 0.0:
                    continue
                w = w_in / jaco
                d = d * iscale
                v0 = vp[j, i] * iscale2
                v1 = vr[j, i] * iscale2
                v2 = vf[j, i] * iscale2
                ia = _nint(min(min(x0, x1), min(x2, x3)))
                ib = _nint(max(max(x0, x1), max(x2, x3)))
                ja = _nint(min(min(y0, y1), min(y2, y3)))
                jb = _nint(max(max(y0, y1), max(y2, y3)))
                if ib - ia <= 2 and jb - ja <= 2:
                    # the usual case (output pixels no finer than ~2/3 of the input's): areas
                    # from the quadrant sums G of a 2x2 or 3x3 box, without branches
                    n = 2 if (ib - ia <= 1 and jb - ja <= 1) else 3
                    ox = ia - 0.5
                    oy = ja - 0.5
                    for a in range(1, n + 1):
                        for b in range(1, n + 1):
                            g[a, b] = 0.0
                    if n == 2:
                        _edge_quadrant(g, x0 - ox, y0 - oy, x1 - ox, y1 - oy, 2)
                        _edge_quadrant(g, x1 - ox, y1 - oy, x2 - ox, y2 - oy, 2)
                        _edge_quadrant(g, x2 - ox, y2 - oy, x3 - ox, y3 - oy, 2)
                        _edge_quadrant(g, x3 - ox, y3 - oy, x0 - ox, y0 - oy, 2)
                    else:
                        _edge_quadrant(g, x0 - ox, y0 - oy, x1 - ox, y1 - oy, 3)
                        _edge_quadrant(g, x1 - ox, y1 - oy, x2 - ox, y2 - oy, 3)
                        _edge_quadrant(g, x2 - ox, y2 - oy, x3 - ox, y3 - oy, 3)
                        _edge_quadrant(g, x3 - ox, y3 - oy, x0 - ox, y0 - oy, 3)
                    # an empty cell's area is a rounding residue of a difference of G values:
                    # anything below 1e-12 of the pixel's area is no overlap
                    tol = 1e-12 * abs(g[n, n])
                    for b in range(n):
                        jj = ja + b
                        if jj < 0 or jj >= ony:
                            continue
                        for a in range(n):
                            ii = ia + a
                            dover = (g[a + 1, b + 1] - g[a, b + 1]) - (g[a + 1, b] - g[a, b])
                            if abs(dover) > tol and 0 <= ii < onx:
                                dow = np.float32(dover * w)
                                if dow != 0.0:
                                    _deposit(acc, con, plane, bit, ii, jj, d, v0, v1, v2, dow)
                    continue
                jj0 = max(ja, 0)
                jj1 = min(jb, ony - 1)
                ii0 = max(ia, 0)
                ii1 = min(ib, onx - 1)
                nr = jj1 - jj0 + 1
                nc = ii1 - ii0 + 1
                if nr <= 0 or nc <= 0:
                    continue
                if nr > ov.shape[0] or nc > ov.shape[1]:
                    ov = np.empty((max(nr, ov.shape[0]), max(nc, ov.shape[1])))
                for r2 in range(nr):
                    for c2 in range(nc):
                        ov[r2, c2] = 0.0
                _edge_cells(ov, x0, y0, x1, y1, ii0, ii1, jj0, jj1)
                _edge_cells(ov, x1, y1, x2, y2, ii0, ii1, jj0, jj1)
                _edge_cells(ov, x2, y2, x3, y3, ii0, ii1, jj0, jj1)
                _edge_cells(ov, x3, y3, x0, y0, ii0, ii1, jj0, jj1)
                for r2 in range(nr):
                    for c2 in range(nc):
                        dover = ov[r2, c2]
                        if dover != 0.0:
                            dow = np.float32(dover * w)
                            if dow != 0.0:
                                _deposit(acc, con, plane, bit, ii0 + c2, jj0 + r2, d, v0, v1, v2, dow)


@njit(cache=True, nogil=True)
def _centred(data, weight, vp, vr, vf, pixmap, pixfrac, iscale, ratio, code, lut,  # type: ignore[no-untyped-def]
             acc, con, plane, bit, row0, row1):
    """Kernels placed on the mapped pixel centre: point (1), turbo (2), gaussian (3), lanczos (4)."""
    ny, nx = data.shape
    ony = acc.shape[0]
    onx = acc.shape[1]
    iscale2 = iscale * iscale
    # turbo
    pfo_t = pixfrac / ratio / 2.0
    scale_t = ratio * ratio / (pixfrac * pixfrac)
    # gaussian
    pfo_g = max(2.5 * pixfrac / 2.3548 / ratio, 1.2 / ratio)
    efac = (2.3548 * 2.3548) * ratio * ratio / (pixfrac * pixfrac) / 2.0
    es = efac / math.pi
    # lanczos
    order = 3.0
    pfo_l = order / ratio
    sdp = ratio / LUT_DELTA
    nlut = lut.shape[0]
    for j in range(row0, row1):
        for i in range(nx):
            w = weight[j, i]
            if not w > 0.0:
                continue
            d = data[j, i]
            ox = pixmap[j, i, 0]
            oy = pixmap[j, i, 1]
            if not (math.isfinite(d) and math.isfinite(ox) and math.isfinite(oy)):
                continue
            d = d * iscale
            v0 = vp[j, i] * iscale2
            v1 = vr[j, i] * iscale2
            v2 = vf[j, i] * iscale2
            if code == 1:
                ii = _nint(ox)
                jj = _nint(oy)
                if 0 <= ii < onx and 0 <= jj < ony:
                    _deposit(acc, con, plane, bit, ii, jj, d, v0, v1, v2, np.float32(w))
            elif code == 2:
                xxi = ox - pfo_t
                xxa = ox + pfo_t
                yyi = oy - pfo_t
                yya = oy + pfo_t
                for jj in range(max(_nint(yyi), 0), min(_nint(yya), ony - 1) + 1):
                    dy = min(yya, jj + 0.5) - max(yyi, jj - 0.5)
                    if dy <= 0.0:
                        continue
                    for ii in range(max(_nint(xxi), 0), min(_nint(xxa), onx - 1) + 1):
                        dx = min(xxa, ii + 0.5) - max(xxi, ii - 0.5)
                        if dx > 0.0:
                            dow = np.float32(dx * dy * scale_t * w)
                            if dow != 0.0:
                                _deposit(acc, con, plane, bit, ii, jj, d, v0, v1, v2, dow)
            elif code == 3:
                for jj in range(max(_nint(oy - pfo_g), 0), min(_nint(oy + pfo_g), ony - 1) + 1):
                    ddy = oy - jj
                    for ii in range(max(_nint(ox - pfo_g), 0), min(_nint(ox + pfo_g), onx - 1) + 1):
                        ddx = ox - ii
                        dover = es * math.exp(-(ddx * ddx + ddy * ddy) * efac)
                        dow = np.float32(np.float32(dover) * w)
                        if dow != 0.0:
                            _deposit(acc, con, plane, bit, ii, jj, d, v0, v1, v2, dow)
            else:
                for jj in range(max(int(math.floor(oy - pfo_l)) + 1, 0),
                                min(int(math.floor(oy + pfo_l)), ony - 1) + 1):
                    iy = _nint(abs((oy - jj) * sdp))
                    if iy >= nlut:
                        continue
                    for ii in range(max(int(math.floor(ox - pfo_l)) + 1, 0),
                                    min(int(math.floor(ox + pfo_l)), onx - 1) + 1):
                        ix = _nint(abs((ox - ii) * sdp))
                        if ix >= nlut:
                            continue
                        dow = np.float32(lut[ix] * lut[iy] * w)
                        if dow != 0.0:
                            _deposit(acc, con, plane, bit, ii, jj, d, v0, v1, v2, dow)


_LUT3 = lanczos_lut(3)


def reach(kernel: str, pixfrac: float, ratio: float) -> float:
    """How far (output pixels) an input pixel's kernel reaches from its mapped centre, at most."""
    if kernel == "gaussian":
        return max(2.5 * pixfrac / 2.3548 / ratio, 1.2 / ratio) + 1.0
    if kernel == "lanczos3":
        return 3.0 / ratio + 1.0
    return 0.75 / ratio + 1.0  # half the diagonal of a pixel, and the rounding to whole pixels


def add_image(kernel: str, data: np.ndarray, weight: np.ndarray,
              variances: tuple[np.ndarray, np.ndarray, np.ndarray], pixmap: np.ndarray,
              pixfrac: float, iscale: float, ratio: float,
              acc: np.ndarray, con: np.ndarray, plane: int, bit: int,
              rows: tuple[int, int] | None = None) -> None:
    """Add input rows ``rows`` (default all) into the accumulators with the named kernel.

    ``data``, ``weight`` (ny, nx) float32; ``variances`` three (ny, nx) float32
    arrays (VAR_POISSON, VAR_RNOISE, VAR_FLAT; zeros for absent ones);
    ``pixmap`` (ny, nx, 2) float64 output (x, y) of each input pixel centre;
    ``acc`` (oy, ox, 5) float32 (num, wht, three variance sums); ``con``
    (planes, oy, ox) int32; ``bit`` this input's context bit (0 to 2^31).
    Arguments are checked by the caller (:class:`obsflow.stage3.resample.Resampler`).
    Releases the GIL: row bands whose outputs do not overlap can run in threads.
    """
    bit32 = np.int32(np.uint32(bit).view(np.int32))
    # drizzle keeps iscale and the scale ratio as C floats: round them the same way
    iscale = float(np.float32(iscale))
    ratio = float(np.float32(ratio))
    row0, row1 = (0, data.shape[0]) if rows is None else rows
    if kernel == "square":
        _square(data, weight, *variances, pixmap, float(pixfrac), iscale,
                acc, con, plane, bit32, row0, row1)
    else:
        code = KERNELS.index(kernel)
        _centred(data, weight, *variances, pixmap, float(pixfrac), iscale, ratio,
                 code, _LUT3, acc, con, plane, bit32, row0, row1)
