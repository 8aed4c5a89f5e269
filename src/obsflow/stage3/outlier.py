"""Outlier detection (the calwebb_image3 ``outlier_detection`` step) for dithered images.

Method
------
1. Each input is resampled alone (:class:`~obsflow.stage3.resample.Resampler`,
   ``lanczos3``, uniform weights) onto the part of the common grid its
   pixels reach; output pixels whose weight is below ``maskpt`` x the median
   positive weight of that resample (edges, bad pixels) are left out, and
   so are their neighbours next to the footprint's edge; next to a hole
   inside the footprint (a bad input pixel) the ``square`` kernel's value
   stands in (the lanczos lobes no longer balance there, and leaving them
   out made holes in the median where rays beside static bad pixels went
   untested).  The resamples go to float32 temporary memory maps (a
   temporary folder removed at the end), never all in RAM.
2. The median image is computed in row sections of the grid: for every
   output pixel the *lower* median of the inputs that cover it (for an odd
   count the median; for an even count the lower of the two middle values),
   where at least ``min_exposures`` inputs cover it.  Where fewer (but at
   least one) cover it the grid pixel is *thin*: it keeps the lower median
   of those, for the blot's slope and peaks only (a star whose core only one
   single covers still gives its derivative to the tested pixels beside it);
   NaN where none does.  The
   lower median is the minimum of a pair: a two-value median is the pair's
   mean and would copy half of a cosmic ray into the clean exposure (which
   would then be flagged too); cosmic rays and hot pixels are positive, so
   the lower value of a pair is the clean one.  From the second pass on,
   the pixels flagged so far say where values are high: where more inputs
   have a flagged pixel within ``coincidence_radius`` of a grid pixel than
   its lower median stands (two of three: rays of two inputs on one sky
   pixel, where the median is itself a ray), the median there drops that
   many highest values; where exactly as many as it stands, one more (the
   weaker ray of such a pair often goes unflagged in the first pass: the
   median it is compared with is its own spike), but only where the lowest
   value shows no source (:func:`lower_median`'s ``high``).  Those grid
   pixels count as the lower of a pair for the cores below.
3. The median is blotted back to each input: cubic convolution of the
   median image at each input pixel's pixel-map position (NaN where one of
   the 2 x 2 grid pixels around it is NaN; not tested where one is NaN or
   thin).
4. An input pixel is an outlier where
   ``data - blot > snr1 * err + scale1 * deriv`` (``|data - blot|`` with
   ``low=True``) (``deriv`` the largest absolute difference between the
   blot and its eight neighbours, in SCI units per pixel), or where it
   passes the lower ``snr2, scale2`` thresholds and lies within ``grow``
   pixels of a pixel of the first kind.  The derivative term keeps real,
   undersampled point-source cores from being flagged: the median of
   dithered resamples is smoother than any one sampling of a sharp star, by
   an amount that scales with the local slope (jwst issue 9989).  That
   full allowance applies within ``core_radius`` of a core (a local maximum
   of the blot, a SATURATED pixel, the input's outer edge, a grid pixel
   whose median is the lower of a pair); on a star's wings and the sky the
   smaller ``wing_scale`` does (the full one let rays of 14 ERR through on
   steep wings).  Where the median is that of exactly two singles (or beside
   an untested pixel) the four side neighbours of a first-threshold outlier
   are flagged too when three of them stand more than ``snr2`` ERR above the
   blot and below the outlier (:func:`ray_sides`: a ray's charge spreads to
   all four sides; a pair's full derivative allowance hides them otherwise).

Memory: one input (with its pixel map and one single resample's
accumulators) at a time, the median image (one float32 per grid pixel) and
its kind (the lower of a pair, thin: one byte per grid pixel), a
row section of the memory-mapped resamples (``section_mb``) and one boolean
mask per input.  Inputs can be given as loaders (zero-argument callables
returning an :class:`OutlierInput`), called once per pass, so the caller
never holds all inputs either.

Units: SCI and ERR in the same units (MJy/sr for ``_cal``), variances in
their square; thresholds are multiples of ERR (``snr``) and of the local
derivative (``scale``, dimensionless).
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from astropy.wcs import WCS
from numba import njit
from scipy import ndimage

from obsflow.exceptions import OutlierError
from obsflow.models.dq import DQ
from obsflow.stage3.kernels import KERNELS, reach
from obsflow.stage3.median import (
    flagged_inputs,
    lower_median,
    lower_median_inplace,
    ranked_lower_median_inplace,
)
from obsflow.stage3.pixmap import LatticeMap
from obsflow.stage3.resample import BAD_BITS, WEIGHT_TYPES, Resampler, input_weight

__all__ = [
    "CRF_BITS",
    "OutlierInput",
    "OutlierOptions",
    "abs_deriv",
    "blot",
    "blot_mapped",
    "cores",
    "crf_dq",
    "flag_outliers",
    "flagged_inputs",
    "lower_median",
    "lower_median_inplace",
    "outlier_masks",
    "ray_sides",
    "unpack_mask",
]

log = logging.getLogger(__name__)

CRF_BITS = int(DQ.OUTLIER | DQ.DO_NOT_USE)
"""DQ bits an outlier gets in the ``_crf`` product (the JWST choice)."""


@dataclass(frozen=True)
class OutlierInput:
    """One calibrated image: SCI, ERR (same units), DQ, celestial WCS.

    ``var_rnoise`` (SCI units squared) is needed by ``ivm`` weights (without
    it ERR^2 is used); ``exptime`` (s) by ``exptime`` weights.  ``name``
    labels the input in errors and log lines.
    """

    sci: np.ndarray
    err: np.ndarray
    dq: np.ndarray
    wcs: WCS | None
    var_rnoise: np.ndarray | None = None
    exptime: float | None = None
    name: str = ""

    @classmethod
    def from_cal(cls, cal: object) -> OutlierInput:
        """From a ``_cal`` product (:class:`obsflow.models.level2.CalImage`)."""
        meta = getattr(cal, "meta", None)
        return cls(sci=cal.sci, err=cal.err, dq=cal.dq, wcs=cal.wcs,  # type: ignore[attr-defined]
                   var_rnoise=cal.var_rnoise,  # type: ignore[attr-defined]
                   name=meta.basename if meta is not None else "")


InputLike = OutlierInput | Callable[[], OutlierInput]
"""An input or a loader returning it (called once per pass; lets the caller not hold all inputs)."""


@dataclass(frozen=True)
class OutlierOptions:
    """Parameters of :func:`outlier_masks` (defaults: the JWST step's, but ``min_exposures``).

    snr
        (first, second) thresholds in units of the input's ERR.
    scale
        (first, second) multiples of the blot's local derivative added to them
        within ``core_radius`` pixels of a peak (:func:`cores`: a local
        maximum of the blot, or a SATURATED pixel), where the median of
        dithered resamples cannot follow an undersampled star.
    wing_scale
        The same multiples elsewhere (a star's wings, galaxies, the sky):
        there the blot follows the data far better (measured on both
        simulated profiles, two realizations each, ray-free: real pixels
        more than 5 ERR above the blot and 2 or more pixels from a core
        needed at most 0.37 derivatives above 5 ERR, but two pixels by a
        subarray's edge rows that are flagged with 1.2 too; at a core 0.93),
        and the full allowance let 14-ERR rays on steep wings through.
    core_radius
        Radius (pixels, square) around a core where ``scale`` applies.
    kernel, pixfrac, weight
        The single resamples' drizzle kernel, pixfrac and weight type
        (``ivm`` or ``exptime``), as in :class:`~obsflow.stage3.resample.Resampler`.
        ``lanczos3`` (not the mosaic's ``square``): its median is sharp
        enough that undersampled star cores are not flagged (with ``square``
        the blot of a 1-pixel-FWHM star falls short of its core by more
        than 1.2 derivatives).  ``exptime`` weights (uniform within an
        exposure; 1 when the input has no exposure time), not the mosaic's
        ``ivm``: a single resample's weight only tells how fully each output
        pixel is covered, and the pixel-to-pixel spread of the read noise
        (+/-20% on the simulated detectors) would make ``maskpt`` cut
        random pixels, each leaving a hole in the blot.
    maskpt
        Resampled pixels with weight below ``maskpt`` x the median positive
        weight of their resample are left out of the median.
    grow
        Radius (pixels, square) around a first-threshold outlier in which
        pixels above the second threshold are flagged too (1: the 3x3
        neighbours, the JWST rule).
    min_exposures
        Output pixels covered by fewer inputs are not compared with: their
        input pixels are not tested (their values still give the blot its
        slope and peaks, see the module docstring).  2 (the lower median of a pair is its minimum,
        see the module docstring); the JWST pipeline's median needs 3 to be
        robust.
    bad_bits
        DQ bits that keep an input pixel out (never flagged either): the
        resample's (DO_NOT_USE, NON_SCIENCE, REFERENCE_PIXEL: the simulated
        ``_cal`` border columns hold ~0 without DO_NOT_USE).
    keep_bits
        DQ bits of pixels that are used but never flagged: SATURATED (the
        cores of the brightest stars, valued from their first groups; their
        neighbours in the other exposures are often saturated and out of the
        median, which then falls short of the core).
    section_mb
        Size of one row section of the memory-mapped resamples read for the median.
    tmpdir
        Where the temporary memory maps go (default: the system's temporary folder).
    threads
        Threads of each single resample.
    passes
        Times the whole detection runs; each pass after the first remakes
        the single resamples with the pixels flagged so far replaced by the
        previous pass's blot (so a strong cosmic ray's ringing through the
        lanczos kernel, which the lower median of a pair picks up, no longer
        raises the derivative term around it and its weaker neighbours are
        found) and adds what it finds.
    coincidence_radius, coincidence_contrast
        From the second pass: radius (grid pixels, square) around an input's
        flagged pixels within which its value counts as high for the median,
        and the contrast by which the median must exceed the lowest single
        above its local floor before one more value than the flagged ones is
        dropped (:func:`lower_median`).  Rays of two inputs on the same sky
        pixel (~3e-5 per pixel with three inputs at 1e-3 rays per pixel
        each) otherwise make the lower median of three a ray; 2 px covers a
        ray's side neighbours and the single resample's spread of them.
    low
        Also flag pixels *below* the blot by the thresholds (the JWST step
        flags both signs).  Off by default: cosmic rays, hot pixels and
        snowballs are all high, while on real undersampled stars the wing
        pixels of an exposure whose sub-pixel phase puts less light there
        than the median predicts come out low (measured on the simulator's
        webb_like fields: every residual difference in the mosaic came from
        such low flags).
    """

    snr: tuple[float, float] = (5.0, 4.0)
    scale: tuple[float, float] = (1.2, 0.7)
    wing_scale: tuple[float, float] = (0.6, 0.35)
    core_radius: int = 1
    kernel: str = "lanczos3"
    pixfrac: float = 1.0
    weight: str = "exptime"
    maskpt: float = 0.7
    grow: int = 1
    min_exposures: int = 2
    bad_bits: int = BAD_BITS
    keep_bits: int = int(DQ.SATURATED)
    section_mb: float = 8.0
    tmpdir: Path | None = None
    threads: int = 1
    passes: int = 2
    low: bool = False
    coincidence_radius: int = 2
    coincidence_contrast: float = 3.0

    def __post_init__(self) -> None:
        for name in ("snr", "scale", "wing_scale"):
            pair = getattr(self, name)
            if len(pair) != 2 or not all(math.isfinite(v) and v >= 0 for v in pair):
                raise OutlierError(f"outlier option {name} must be two non-negative numbers "
                                   f"(first, second threshold), got {pair!r}")
        if self.kernel not in KERNELS:
            raise OutlierError(f"outlier option kernel must be one of {KERNELS}, got {self.kernel!r}")
        if self.weight not in WEIGHT_TYPES:
            raise OutlierError(f"outlier option weight must be one of {WEIGHT_TYPES}, got {self.weight!r}")
        if not 0.0 < self.pixfrac <= 1.0:
            raise OutlierError(f"outlier option pixfrac must be in (0, 1], got {self.pixfrac}")
        if not 0.0 <= self.maskpt <= 1.0:
            raise OutlierError(f"outlier option maskpt must be in [0, 1], got {self.maskpt}")
        if self.core_radius < 0:
            raise OutlierError(f"outlier option core_radius must be >= 0 pixels, got "
                               f"{self.core_radius}")
        if self.coincidence_radius < 0:
            raise OutlierError(f"outlier option coincidence_radius must be >= 0 pixels, got "
                               f"{self.coincidence_radius}")
        if not (math.isfinite(self.coincidence_contrast) and self.coincidence_contrast > 0):
            raise OutlierError(f"outlier option coincidence_contrast must be > 0, got "
                               f"{self.coincidence_contrast}")
        if self.grow < 0:
            raise OutlierError(f"outlier option grow must be >= 0 pixels, got {self.grow}")
        if self.min_exposures < 2:
            raise OutlierError(f"outlier option min_exposures must be >= 2 (a pixel needs another "
                               f"exposure to be compared with), got {self.min_exposures}")
        if not self.section_mb > 0:
            raise OutlierError(f"outlier option section_mb must be > 0, got {self.section_mb}")
        if self.passes < 1:
            raise OutlierError(f"outlier option passes must be >= 1, got {self.passes}")
        if self.threads < 1:
            raise OutlierError(f"outlier option threads must be >= 1, got {self.threads}")


# --- pure array functions ------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _keys(t):  # type: ignore[no-untyped-def]
    """Keys (1981) cubic convolution weights (a = -1/2) of the 4 samples around offset t in [0, 1)."""
    w0 = ((-0.5 * t + 1.0) * t - 0.5) * t
    w1 = (1.5 * t - 2.5) * t * t + 1.0
    w2 = ((-1.5 * t + 2.0) * t + 0.5) * t
    w3 = (0.5 * t - 0.5) * t * t
    return w0, w1, w2, w3


@njit(cache=True, nogil=True)
def _cubic(image, pmap):  # type: ignore[no-untyped-def]
    ny, nx = pmap.shape[0], pmap.shape[1]
    oy, ox = image.shape
    out = np.empty((ny, nx), dtype=np.float32)
    for j in range(ny):
        for i in range(nx):
            x = pmap[j, i, 0]
            y = pmap[j, i, 1]
            if not (x >= 1.0 and y >= 1.0 and x < ox - 2 and y < oy - 2):
                out[j, i] = np.nan
                continue
            x0 = int(x)
            y0 = int(y)
            wx = _keys(x - x0)
            wy = _keys(y - y0)
            v = 0.0
            for b in range(4):
                row = 0.0
                for a in range(4):
                    row += wx[a] * image[y0 - 1 + b, x0 - 1 + a]
                v += wy[b] * row
            if v != v:  # a NaN among the 16: bilinear from the inner 2 x 2 (NaN if one is NaN)
                tx = x - x0
                ty = y - y0
                v = ((1.0 - ty) * ((1.0 - tx) * image[y0, x0] + tx * image[y0, x0 + 1])
                     + ty * ((1.0 - tx) * image[y0 + 1, x0] + tx * image[y0 + 1, x0 + 1]))
            out[j, i] = v
    return out


def blot(median: np.ndarray, pmap: np.ndarray) -> np.ndarray:
    """The median image sampled at each input pixel's map position, float32 (ny, nx).

    Cubic convolution (Keys, a = -1/2: exact for quadratics, far less
    smoothing than bilinear interpolation, which matters for undersampled
    stars); bilinear where one of the 4 x 4 grid pixels around the position
    is NaN (next to a hole in the median).  ``pmap`` is the input's
    (ny, nx, 2) pixel map onto the median's grid; NaN off the grid's
    interior or where one of the 2 x 2 nearest grid pixels is NaN.
    """
    if median.ndim != 2 or pmap.ndim != 3 or pmap.shape[2] != 2:
        raise OutlierError(f"blot needs a 2-D image and an (ny, nx, 2) pixel map, got "
                           f"{median.shape} and {pmap.shape}")
    return _cubic(np.ascontiguousarray(median, dtype=np.float32),
                     np.ascontiguousarray(pmap, dtype=np.float64))


def abs_deriv(image: np.ndarray) -> np.ndarray:
    """Largest absolute difference between each pixel and its eight neighbours (units of ``image``).

    Neighbours off the image or NaN are ignored (0 if all are).
    """
    img = np.asarray(image, dtype=np.float32)
    out = np.zeros(img.shape, dtype=np.float32)
    whole, head, tail = slice(None), slice(1, None), slice(None, -1)
    # each unordered neighbour pair once: right, down, down-right, down-left
    for a, b in (((whole, head), (whole, tail)), ((head, whole), (tail, whole)),
                 ((head, head), (tail, tail)), ((head, tail), (tail, head))):
        with np.errstate(invalid="ignore"):
            d = np.abs(img[a] - img[b])
        np.fmax(out[a], d, out=out[a])
        np.fmax(out[b], d, out=out[b])
    return out


def _grow(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` dilated by a (2 radius + 1) square (a maximum filter of its bytes: the same as
    ``binary_dilation`` with that structure, in half the time)."""
    return ndimage.maximum_filter(np.ascontiguousarray(mask).view(np.uint8),
                                  size=2 * radius + 1).view(bool)


def _joined_to_edge(mask: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` joined (8-connected) to the image's edge through ``mask``."""
    labels, _ = ndimage.label(mask, np.ones((3, 3), bool))
    rim = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return np.isin(labels, rim[rim > 0])


def cores(blotted: np.ndarray, radius: int = 1, extra: np.ndarray | None = None) -> np.ndarray:
    """Input pixels within ``radius`` pixels (square) of a local peak, bool (ny, nx).

    A peak is a local maximum of the blot (not below any of its eight
    neighbours; NaN ignored) -- a star's core however faint, a galaxy's, or a
    noise bump of the sky -- or an ``extra`` pixel (the input's SATURATED
    ones).  A star's wing falls monotonically: no peak there.
    """
    finite = np.isfinite(blotted)
    b = np.where(finite, blotted, np.float32(-np.inf))
    peak = (b == ndimage.maximum_filter(b, size=3)) & finite
    del b
    if extra is not None:
        peak |= extra
    if radius == 0 or not peak.any():
        return peak
    return _grow(peak, radius)


def flag_outliers(sci: np.ndarray, err: np.ndarray, blotted: np.ndarray, usable: np.ndarray,
                  options: OutlierOptions | None = None,
                  extra_cores: np.ndarray | None = None, *,
                  untested: np.ndarray | None = None,
                  sides_at: np.ndarray | None = None) -> np.ndarray:
    """Boolean outlier mask of one input from its blotted median (see the module docstring).

    ``usable``: input pixels that may be tested (good DQ, finite values);
    pixels where the blot is NaN are not tested.  Only pixels above the blot
    are outliers unless ``options.low`` (then ``|data - blot|``).  The
    derivative's multiple is ``options.scale`` within ``options.core_radius``
    of a core (:func:`cores`; ``extra_cores`` pixels count as cores: the
    input's SATURATED ones, those whose median is the lower of a pair; so do
    the outermost usable pixels, beside the image's edge or unusable pixels
    joined to it) and
    ``options.wing_scale`` elsewhere.  ``untested`` pixels (where the median
    had fewer than ``min_exposures`` inputs) are not tested, but their blot
    counts in the derivative and the cores of the pixels beside them.

    ``sides_at`` (bool, the input's shape): where a first-threshold outlier's four side
    neighbours are flagged too when three of them stand above the blot by ``snr[1]`` ERR and
    below the outlier (:func:`ray_sides`; :func:`outlier_masks` gives the pixels whose median
    is that of exactly two inputs, where the derivative allowance of a pair's cores hides a
    ray's side neighbours, and those beside ``untested`` pixels).  Only ``usable`` sides are
    flagged (untested ones too: a ray's charge does not stop at the tested area).
    """
    opts = options or OutlierOptions()
    # a peak just beyond the input's edge is not in its blot: the edge counts as a core
    edge = _grow(_joined_to_edge(np.pad(~usable, 1, constant_values=True)), 1)[1:-1, 1:-1]
    if extra_cores is not None:
        edge |= extra_cores
    core = cores(blotted, opts.core_radius, edge)
    del edge
    deriv = abs_deriv(blotted)
    with np.errstate(invalid="ignore"):
        diff = sci - blotted
        if opts.low:
            np.abs(diff, out=diff)
        tested = usable & np.isfinite(diff) & np.isfinite(err)
        if untested is not None:
            np.greater(tested, untested, out=tested)  # tested and not untested, no temporary
        e = np.where(np.isfinite(err), err, 0.0).astype(np.float32)

        def above(level: int) -> np.ndarray:
            limit = deriv * np.float32(opts.wing_scale[level])
            np.multiply(deriv, np.float32(opts.scale[level]), out=limit, where=core)
            limit += np.float32(opts.snr[level]) * e
            return tested & (diff > limit)

        first = above(0)
        if not first.any():
            return first
        sides: tuple[np.ndarray, np.ndarray] | None = None
        if sides_at is not None:  # (row, column) arrays: no image-sized temporaries
            cy, cx = np.nonzero(first)
            at = sides_at[cy, cx]
            sides = _ray_side_pixels(diff, e, cy[at], cx[at], opts.snr[1], usable)
            del cy, cx, at
        if opts.grow == 0:
            out = first
        else:
            second = above(1)
            out = first | (second & _grow(first, opts.grow))
    if sides is not None:
        out[sides] = True
    return out


def ray_sides(excess: np.ndarray, err: np.ndarray, centres: np.ndarray, snr: float,
              valid: np.ndarray | None = None) -> np.ndarray:
    """The four side neighbours of each ``centres`` pixel where at least three of them stand
    more than ``snr`` x their ``err`` above the blot, and less than the centre does, bool
    (ny, nx).

    ``excess``: data - blot (SCI units; NaN where unknown: it does not count as above);
    ``err``: the same units; ``centres``: bool, the outliers whose sides are looked at;
    ``valid`` (bool): the only pixels that count as sides and are returned (all without).  A
    cosmic ray deposits charge in all four side neighbours of the pixel it hits (the charge
    spreads before collection, and interpixel capacitance couples the sides), so its sides
    stand above the blot together; a source the blot does not follow (an undersampled star at
    another sub-pixel phase, a slope) puts its excess on one side, and the opposite side falls
    below the blot.  Requiring three of four (the second smallest of the four excesses above
    ``snr`` ERR) keeps the one a noise draw pulls down without taking a shifted star's sides.
    A side standing higher than the centre is no spread of a ray hitting the centre (a star
    the blot does not follow: its light peaks elsewhere) and does not count.
    """
    if excess.shape != err.shape or excess.shape != centres.shape:
        raise OutlierError(f"ray_sides: excess {excess.shape}, err {err.shape} and centres "
                           f"{centres.shape} must have one shape")
    if valid is not None and valid.shape != excess.shape:
        raise OutlierError(f"ray_sides: valid {valid.shape} must have the shape of excess "
                           f"{excess.shape}")
    cy, cx = np.nonzero(centres)
    out = np.zeros(excess.shape, bool)
    out[_ray_side_pixels(excess, err, cy, cx, snr, valid)] = True
    return out


def _ray_side_pixels(excess: np.ndarray, err: np.ndarray, cy: np.ndarray, cx: np.ndarray,
                     snr: float, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`ray_sides` of the centres (``cy``, ``cx``) as (row, column) arrays of the sides."""
    ny, nx = excess.shape
    above = np.zeros(cy.size, np.intp)
    peak = excess[cy, cx]
    sides = ((0, 1), (0, -1), (1, 0), (-1, 0))
    for dy, dx in sides:
        y, x = cy + dy, cx + dx
        on = (y >= 0) & (y < ny) & (x >= 0) & (x < nx)
        y, x = y[on], x[on]
        with np.errstate(invalid="ignore"):
            side = excess[y, x]
            up = (side > np.float32(snr) * err[y, x]) & (side < peak[on])
        if valid is not None:
            up &= valid[y, x]
        above[on] += up
    keep = above >= 3
    ys, xs = [], []
    for dy, dx in sides:
        y, x = cy[keep] + dy, cx[keep] + dx
        on = (y >= 0) & (y < ny) & (x >= 0) & (x < nx)
        y, x = y[on], x[on]
        if valid is not None:
            y, x = y[valid[y, x]], x[valid[y, x]]
        ys.append(y)
        xs.append(x)
    return np.concatenate(ys), np.concatenate(xs)


def crf_dq(dq: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The ``_crf`` DQ: a copy of ``dq`` with OUTLIER | DO_NOT_USE set where ``mask`` is true.

    SCI, ERR and the variances of a ``_crf`` are those of its ``_cal``.
    """
    if dq.shape != mask.shape:
        raise OutlierError(f"outlier mask shape {mask.shape} differs from DQ shape {dq.shape}")
    out = np.array(dq, dtype=np.uint32, copy=True)
    out[mask] |= np.uint32(CRF_BITS)
    return out


# --- the step --------------------------------------------------------------------------------


@dataclass
class _Single:
    """One input's single resample on the grid box [y0:y1, x0:x1], in a memory map."""

    y0: int
    y1: int
    x0: int
    x1: int
    path: Path | None
    flags: np.ndarray | None = None
    """(2, m) int: grid (x, y) nearest each of its pixels flagged so far (pass 2 on), or None."""


def _load(item: InputLike, k: int) -> OutlierInput:
    inp = item() if callable(item) and not isinstance(item, OutlierInput) else item
    if not isinstance(inp, OutlierInput):
        raise OutlierError(f"outlier input {k}: expected an OutlierInput (or a loader returning "
                           f"one), got {type(inp).__name__}")
    return inp


def _check(inp: OutlierInput, k: int) -> str:
    label = f"outlier input {k}" + (f" ({inp.name})" if inp.name else "")
    sci = inp.sci
    if not isinstance(sci, np.ndarray) or sci.ndim != 2 or min(sci.shape) < 2:
        raise OutlierError(f"{label}: SCI must be a 2-D image of at least 2 x 2 pixels, got "
                           f"{getattr(sci, 'shape', type(sci).__name__)}")
    for name in ("err", "dq", "var_rnoise"):
        arr = getattr(inp, name)
        if arr is None and name == "var_rnoise":
            continue
        if arr is None or np.shape(arr) != sci.shape:
            raise OutlierError(f"{label}: {name.upper()} shape "
                               f"{None if arr is None else np.shape(arr)} differs from SCI {sci.shape}")
    if inp.wcs is None or not getattr(inp.wcs, "has_celestial", False):
        raise OutlierError(f"{label}: no celestial WCS (a stage-2 _cal with its WCS is expected)")
    return label


def _weight(inp: OutlierInput, opts: OutlierOptions, label: str) -> np.ndarray:
    if opts.weight == "exptime" and inp.exptime is None:
        inp = replace(inp, exptime=1.0)
    var = inp.var_rnoise
    if opts.weight in ("ivm", "ivm-med") and var is None:
        var = np.square(inp.err, dtype=np.float32)
    try:
        return input_weight(inp.sci, inp.dq, var, opts.weight, inp.exptime, opts.bad_bits)
    except Exception as exc:  # ResampleError: say which input
        raise OutlierError(f"{label}: {exc}") from exc


def _box(mapper: LatticeMap, grid_shape: tuple[int, int], pad: int
         ) -> tuple[int, int, int, int] | None:
    """Grid rows/columns [y0:y1, x0:x1] the input's pixels can reach, or None if none."""
    bounds = mapper.bounds()
    if bounds is None:
        return None
    xmin, xmax, ymin, ymax = bounds
    ny, nx = grid_shape
    x0 = max(0, int(np.floor(xmin)) - pad)
    x1 = min(nx, int(np.ceil(xmax)) + pad + 1)
    y0 = max(0, int(np.floor(ymin)) - pad)
    y1 = min(ny, int(np.ceil(ymax)) + pad + 1)
    return None if x0 >= x1 or y0 >= y1 else (y0, y1, x0, x1)


def blot_mapped(median: np.ndarray, mapper: LatticeMap, band_rows: int = 256) -> np.ndarray:
    """:func:`blot` with the pixel map made ``band_rows`` rows at a time by ``mapper`` (the
    same values; 16 bytes per pixel of one band, not of the whole input)."""
    return _blot_bands(median, None, mapper, band_rows)[0]


def _blot_bands(median: np.ndarray, kinds: np.ndarray | None, mapper: LatticeMap,
                band_rows: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """:func:`blot_mapped`, and the median's kind map (:func:`_median`, after
    :func:`_spread_thin`) at each input pixel (uint8, 0 off the grid; an empty array without
    ``kinds``): ``_PAIR`` and ``_TWO`` from its nearest grid pixel, ``_THIN`` from the first of the 2 x 2
    around its position, from the same bands of the pixel map."""
    med = np.ascontiguousarray(median, dtype=np.float32)
    ny, nx = mapper.shape
    out = np.empty((ny, nx), np.float32)
    sampled = np.zeros((0, 0) if kinds is None else (ny, nx), np.uint8)
    for r0 in range(0, ny, band_rows):
        r1 = min(ny, r0 + band_rows)
        pmap = mapper.rows(r0, r1)
        out[r0:r1] = blot(med, pmap)
        if kinds is None:
            continue
        for bit, half in ((_PAIR | _TWO, 0.5), (_THIN, 0.0)):
            with np.errstate(invalid="ignore"):  # NaN positions: off the grid
                ix = np.floor(pmap[..., 0] + half)
                iy = np.floor(pmap[..., 1] + half)
                on = (ix >= 0) & (ix < kinds.shape[1]) & (iy >= 0) & (iy < kinds.shape[0])
            sampled[r0:r1][on] |= kinds[iy[on].astype(np.intp), ix[on].astype(np.intp)] & bit
    return out, sampled


def _low_weight(wht: np.ndarray, maskpt: float) -> np.ndarray:
    """Output pixels of a single resample left out: weight not above 0 or below ``maskpt`` x
    the median positive weight."""
    positive = wht[wht > 0]
    threshold = maskpt * float(np.median(positive)) if positive.size else np.inf
    return ~(wht >= threshold) | (wht <= 0)


def _sub_grid(grid: WCS, box: tuple[int, int, int, int]) -> WCS:
    y0, y1, x0, x1 = box
    sub = grid.deepcopy()
    sub.wcs.crpix = [grid.wcs.crpix[0] - x0, grid.wcs.crpix[1] - y0]
    sub.pixel_shape = (x1 - x0, y1 - y0)
    return sub


def _single_resample(item: InputLike, k: int, grid: WCS, grid_shape: tuple[int, int],
                     opts: OutlierOptions, path: Path,
                     repair: tuple[np.ndarray, np.ndarray] | None) -> _Single:
    """Resample one input alone onto its box of the grid; low-weight pixels NaN; to a memory map.

    ``repair`` = (mask, median): the masked pixels take the blot of that
    median instead of their value (an earlier pass's outliers).  Only SCI and
    the weight are kept once the input is loaded (ERR, DQ, variances dropped).
    """
    inp = _load(item, k)
    label = _check(inp, k)
    weight = _weight(inp, opts, label)
    sci, wcs = inp.sci, inp.wcs
    del inp
    mapper = LatticeMap(wcs, sci.shape, grid)  # type: ignore[arg-type]
    flags = None
    if repair is not None:
        flagged = unpack_mask(repair[0], sci.shape)
        if flagged.any():
            sci = np.where(flagged, blot_mapped(repair[1], mapper), sci)
            fy, fx = np.nonzero(flagged)
            ra, dec = wcs.pixel_to_world_values(fx, fy)  # type: ignore[union-attr]
            gxy = np.vstack(grid.world_to_pixel_values(ra, dec))
            flags = np.floor(gxy[:, np.isfinite(gxy).all(axis=0)] + 0.5).astype(np.intp)
        del flagged
    ratio = mapper.scale_ratio()
    box = _box(mapper, grid_shape, int(math.ceil(reach(opts.kernel, opts.pixfrac, ratio))) + 1)
    if box is None:
        log.info("%s: no pixel on the output grid", label)
        return _Single(0, 0, 0, 0, None)
    y0, y1, x0, x1 = box
    pmap = mapper.shifted(x0, y0)
    sub = _sub_grid(grid, box)
    rs = Resampler(sub, kernel=opts.kernel, pixfrac=opts.pixfrac, threads=opts.threads)
    rs.add_mapped(sci, weight, pmap, ratio=ratio)
    i2d = rs.finish()
    wht = i2d.wht
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(y1 - y0, x1 - x0))
    np.copyto(mm, i2d.sci)
    missing = _low_weight(wht, opts.maskpt)
    del i2d, rs, wht
    if opts.kernel == "lanczos3":
        square = Resampler(sub, kernel="square", threads=opts.threads)
        square.add_mapped(sci, weight, pmap, ratio=ratio)
        compact = square.finish()
        low, low_missing = compact.sci, _low_weight(compact.wht, opts.maskpt)
        del compact, square, pmap, weight, sci  # (its ERR and CON planes)
        # anti-ringing: no value below the least of the square kernel's 3x3 neighbourhood
        floor = ndimage.minimum_filter(np.where(np.isfinite(low), low, np.inf), size=3)
        floor[~np.isfinite(floor)] = -np.inf
        with np.errstate(invalid="ignore"):
            np.maximum(mm, floor, out=mm)
        del floor
        # next to a missing pixel the lanczos lobes no longer balance: beside a hole inside
        # the footprint (a bad input pixel) the square kernel's value instead (missing only
        # where that one is missing too); beside the footprint's edge missing
        outside = _joined_to_edge(missing)
        edge = _grow(outside, 1)
        near = _grow(missing & ~outside, 1) & ~edge
        missing = edge | low_missing
        mm[near] = low[near]
        del low, low_missing, near, outside, edge
    mm[missing] = np.nan
    del missing
    mm.flush()
    del mm
    return _Single(y0, y1, x0, x1, path, flags)


_PAIR, _THIN, _TWO = np.uint8(1), np.uint8(2), np.uint8(4)
"""Bits of the median's kind map: the lowest of its singles (the lower of exactly two, or a rank
lowered by :func:`lower_median`'s ``high``); fewer than ``min_exposures``; exactly two singles
(where :func:`ray_sides` applies)."""


def _median(singles: list[_Single], grid_shape: tuple[int, int], opts: OutlierOptions
            ) -> tuple[np.ndarray, np.ndarray]:
    """The lower-median image of the single resamples, read in row sections, and its kind map
    (uint8, the grid's shape): ``_PAIR`` where it is the lower of exactly two singles, ``_THIN``
    where fewer than ``min_exposures`` singles (at least one) cover the grid pixel.  Thin pixels
    hold the lower median of the singles there; :func:`_one_pass` does not test input pixels
    next to them but takes the blot's slope and peaks from them.  Singles carrying the grid
    positions of their pixels flagged so far (``flags``, from the second pass) count as high
    within ``coincidence_radius`` of them (:func:`lower_median`'s ``high``); where that lowers
    the rank the kind is ``_PAIR`` too."""
    ny, nx = grid_shape
    n = len(singles)
    rows = max(1, int(opts.section_mb * 2**20 // (4 * nx * max(n, 1))))
    median = np.full(grid_shape, np.nan, dtype=np.float32)
    kinds = np.zeros(grid_shape, dtype=np.uint8)
    maps = [np.load(s.path, mmap_mode="r") if s.path is not None else None for s in singles]
    high = None
    if any(s.flags is not None for s in singles):
        high = flagged_inputs([s.flags for s in singles], grid_shape, opts.coincidence_radius)
    halo = 0 if high is None else 2  # rows above and below a section: the 5 x 5 floor
    n_lowered = 0
    for r0 in range(0, ny, rows):
        r1 = min(ny, r0 + rows)
        h0, h1 = max(0, r0 - halo), min(ny, r1 + halo)
        live = [(s, m) for s, m in zip(singles, maps, strict=True)
                if m is not None and s.y0 < h1 and s.y1 > h0]
        if not live:
            continue
        stack = np.full((len(live), h1 - h0, nx), np.nan, dtype=np.float32)
        for k, (s, m) in enumerate(live):
            a, b = max(h0, s.y0), min(h1, s.y1)
            stack[k, a - h0:b - h0, s.x0:s.x1] = m[a - s.y0:b - s.y0]
        inner = slice(r0 - h0, r1 - h0)
        count = np.count_nonzero(np.isfinite(stack[:, inner]), axis=0)
        kinds[r0:r1][count == 2] = _PAIR | _TWO
        kinds[r0:r1][(count >= 1) & (count < opts.min_exposures)] |= _THIN
        del count
        value, lowered = ranked_lower_median_inplace(
            stack, 1, None if high is None else high[h0:h1], opts.coincidence_contrast)
        median[r0:r1] = value[inner]
        if lowered is not None:
            kinds[r0:r1][lowered[inner]] |= _PAIR
            n_lowered += int(np.count_nonzero(lowered[inner]))
        del stack, lowered, value
    if high is not None:
        log.info("median: %d grid pixels where inputs flagged so far lowered its rank",
                 n_lowered)
    del maps, high
    return median, kinds


def _spread_thin(kinds: np.ndarray, band_rows: int = 512) -> None:
    """Set ``_THIN`` in ``kinds`` (in place) where any of the 2 x 2 grid pixels from it up and
    right is thin, so that sampling it at an input pixel's floored position tells whether one
    of its four nearest grid pixels is (row bands: no grid-sized temporaries; the last row and
    column keep their own: the blot is NaN there)."""
    ny = kinds.shape[0]
    for r0 in range(0, ny - 1, band_rows):
        r1 = min(ny - 1, r0 + band_rows)
        t = kinds[r0:r1 + 1] & _THIN
        kinds[r0:r1, :-1] |= t[:-1, :-1] | t[1:, :-1] | t[:-1, 1:] | t[1:, 1:]


def outlier_masks(inputs: Sequence[InputLike], grid: WCS,
                  options: OutlierOptions | None = None, *,
                  packed: bool = False) -> list[np.ndarray]:
    """Boolean outlier mask of every input (True: flag OUTLIER | DO_NOT_USE), in input order.

    ``packed``: each mask as ``np.packbits`` of its flattened pixels instead (8 pixels a byte;
    :func:`unpack_mask` restores it), so a caller holding every input's mask holds an eighth.

    ``inputs``: :class:`OutlierInput` objects or loaders returning them (each
    loader is called twice, once per pass, and its result dropped after use);
    ``grid``: the mosaic's output WCS with ``pixel_shape``
    (:func:`obsflow.stage3.grid.output_grid`).  One input: nothing to compare
    with, every mask empty (logged).  Bad inputs raise :class:`OutlierError`
    naming the input and the field.
    """
    opts = options or OutlierOptions()
    if len(inputs) == 0:
        raise OutlierError("outlier detection needs at least one input, got none")
    if grid.pixel_shape is None:
        raise OutlierError("outlier detection: output grid WCS has no pixel_shape "
                           "(use stage3.grid.output_grid)")
    grid_shape = (int(grid.pixel_shape[1]), int(grid.pixel_shape[0]))
    if len(inputs) < opts.min_exposures:
        empty = []
        for k, item in enumerate(inputs):
            inp = _load(item, k)
            _check(inp, k)
            empty.append(np.packbits(np.zeros(inp.sci.size, bool)) if packed
                         else np.zeros(inp.sci.shape, dtype=bool))
        log.info("outlier detection: %d input(s), fewer than the %d needed to compare; "
                 "no pixel flagged", len(inputs), opts.min_exposures)
        return empty
    so_far: list[np.ndarray] | None = None  # the masks so far, 8 pixels a byte
    median: np.ndarray | None = None
    for step in range(1, opts.passes):
        so_far, _, median = _one_pass(inputs, grid, grid_shape, opts, so_far, median, step)
    masks, shapes, _ = _one_pass(inputs, grid, grid_shape, opts, so_far, median, opts.passes)
    return masks if packed else [unpack_mask(m, s) for m, s in zip(masks, shapes, strict=True)]


def unpack_mask(packed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A mask ``np.packbits`` packed (``outlier_masks(..., packed=True)``) back to a boolean
    array of ``shape``."""
    if packed.size * 8 < int(np.prod(shape)) or packed.size > (int(np.prod(shape)) + 7) // 8:
        raise OutlierError(f"packed mask of {packed.size} bytes does not hold shape {shape}")
    return np.unpackbits(packed, count=int(np.prod(shape))).reshape(shape).view(bool)



def _one_pass(inputs: Sequence[InputLike], grid: WCS, grid_shape: tuple[int, int],
              opts: OutlierOptions, previous: list[np.ndarray] | None,
              previous_median: np.ndarray | None, step: int
              ) -> tuple[list[np.ndarray], list[tuple[int, int]], np.ndarray]:
    """Singles (pixels flagged so far repaired), median, blot, flags (added to the previous):
    the masks packed 8 pixels a byte, their shapes, the median."""
    with tempfile.TemporaryDirectory(prefix="obsflow-outlier-", dir=opts.tmpdir) as tmp:
        singles = []
        for k, item in enumerate(inputs):
            singles.append(_single_resample(item, k, grid, grid_shape, opts,
                                            Path(tmp) / f"single_{k:04d}.npy",
                                            None if previous is None or previous_median is None
                                            else (previous[k], previous_median)))
        del previous_median
        median, kinds = _median(singles, grid_shape, opts)
    # an input pixel whose 2 x 2 nearest grid pixels include a thin one (fewer than
    # min_exposures singles) is not tested; the thin pixels still give the blot its slope and
    # its peaks beside it (a star whose core only one single covers)
    _spread_thin(kinds)
    masks, shapes = [], []
    for k, item in enumerate(inputs):
        inp = _load(item, k)
        label = _check(inp, k)
        mapper = LatticeMap(inp.wcs, inp.sci.shape, grid)  # type: ignore[arg-type]
        blotted, kinds_at = _blot_bands(median, kinds, mapper)
        with np.errstate(invalid="ignore"):
            usable = ((inp.dq & (opts.bad_bits | opts.keep_bits)) == 0) & np.isfinite(inp.sci)
        # cores as well: SATURATED pixels, and where the median is the lower of a pair (which
        # takes up a single's lanczos ringing beside a bright core)
        extra = (inp.dq & opts.keep_bits) != 0
        extra |= (kinds_at & _PAIR).view(bool)
        # ray_sides applies where the median is that of exactly two singles, and beside the
        # untested pixels (a ray's side there is never compared with a median)
        sides_at = (kinds_at & _TWO) != 0
        np.bitwise_and(kinds_at, _THIN, out=kinds_at)
        np.right_shift(kinds_at, 1, out=kinds_at)  # _THIN -> 1: the untested pixels
        untested = kinds_at.view(bool)
        del kinds_at
        sides_at |= _grow(untested, 1)
        mask = flag_outliers(inp.sci, inp.err, blotted, usable, opts, extra, untested=untested,
                             sides_at=sides_at)
        del extra, sides_at
        if previous is not None:
            mask |= unpack_mask(previous[k], mask.shape)
        tested = int(np.count_nonzero(usable & np.isfinite(blotted) & ~untested))  # type: ignore[operator]
        log.info("%s: pass %d: %d outlier pixels flagged of %d tested (%.3f%%)", label, step,
                 int(mask.sum()), tested, 100.0 * mask.sum() / max(tested, 1))
        masks.append(np.packbits(mask))
        shapes.append(mask.shape)
        del inp, blotted, mask, usable, mapper
    return masks, shapes, median
