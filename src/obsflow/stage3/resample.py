"""Resample (drizzle) calibrated images onto a common grid: the ``_i2d`` arrays.

Model
-----
Inputs are ``_cal`` images in surface brightness (MJy/sr) with variances
VAR_POISSON, VAR_RNOISE (and VAR_FLAT when known) in (MJy/sr)^2.  Each input
is added on its own (:meth:`Resampler.add`) into accumulators the size of
the output, so memory is the output arrays plus the one input being added
(never the whole stack).  Every input pixel spreads over the output pixels
its kernel footprint touches (:mod:`obsflow.stage3.kernels`) with weight
``dow`` = (its share of the kernel) x (the input pixel's weight):

* SCI = sum(dow x value) / sum(dow), the weighted mean surface brightness;
* WHT = sum(dow);
* VAR_k = sum(dow^2 x var_k) / sum(dow)^2 (the variance of that weighted
  mean for independent input pixels -- the JWST pipeline's propagation,
  drizzle's ``data2`` with squared weights), ERR = sqrt(VAR_POISSON +
  VAR_RNOISE + VAR_FLAT);
* CON: bit ``k % 32`` of plane ``k // 32`` is set where input ``k``
  contributed with a positive weight.

Weights (:func:`input_weight`): ``"ivm"`` = 1 / VAR_RNOISE (inverse variance
of the read noise, as the JWST pipeline does, so bright sources do not
down-weight themselves), ``"ivm-med"`` = 1 / the median VAR_RNOISE of the
input's good pixels (one weight per input: noise-aware between exposures,
but a star's core, whose read-noise variance is larger because fewer groups
were fitted before saturation, is not down-weighted against its wings,
which with an undersampled PSF loses flux: about 4.5% on bright webb_like
stars with ``"ivm"``), ``"exptime"`` = the exposure time; 0 for pixels
with a bad DQ bit (DO_NOT_USE, NON_SCIENCE, REFERENCE_PIXEL by default), a non-finite value
or a non-positive read-noise variance.  Output pixels no input reaches have
WHT = 0, CON = 0 and NaN in SCI, ERR and the variances.

Flux conservation
-----------------
Values stay surface brightness.  The flux of a region is sum(SB x Omega) over
its pixels, Omega the solid angle of a pixel.  With the square kernel an
input pixel's weight is split in proportion to the area of its mapped
footprint falling in each output pixel, so for one input covering the output
sum_out(SB_out Omega_out) = sum_in(SB_in x J_in x Omega_out) =
sum_in(SB_in Omega_in), J_in the input pixel's area in output pixels: the
total flux is conserved exactly whatever the two pixel scales (and with
several inputs the result is their weighted mean).  This holds when SB_in
was calibrated with each input pixel's true solid angle, as stage 2's photom
does on distorted detectors (it divides by the relative pixel area, the
correction whose absence made JWST mosaics ~3% bright, jwst issue 7290): not
here.  Point, turbo, Gaussian and Lanczos kernels do not
follow the pixel's shape and conserve flux only approximately (drizzle
warns about the last two).
"""

from __future__ import annotations

import dataclasses
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.wcs import WCS

from obsflow.exceptions import ResampleError
from obsflow.models.dq import NO_SCIENCE
from obsflow.stage3.kernels import CTX, KERNELS, SLOTS, add_image, reach
from obsflow.stage3.pixmap import LatticeMap, scale_ratio

__all__ = ["BAD_BITS", "I2DArrays", "Resampler", "input_weight", "spill_planes", "weight_level"]

BAD_BITS = int(NO_SCIENCE)
"""DQ bits that exclude an input pixel from the mosaic: the JWST default good_bits complement,
and the reference pixels (their SCI is not sky: ~0 after the reference-pixel correction)."""

WEIGHT_TYPES = ("ivm", "ivm-med", "exptime")

BAND_ROWS = 256
"""Input rows :meth:`Resampler.add_mapped` maps and adds at a time."""


def input_weight(sci: np.ndarray, dq: np.ndarray | None, var_rnoise: np.ndarray | None,
                 kind: str = "ivm", exptime: float | None = None,
                 bad_bits: int = BAD_BITS) -> np.ndarray:
    """Per-pixel drizzle weight of one input, float32 (see the module docstring).

    ``kind="ivm"`` and ``"ivm-med"`` need ``var_rnoise`` ((MJy/sr)^2; weight in
    its inverse, per pixel or its median over the good pixels), ``kind="exptime"``
    needs ``exptime`` (seconds).
    """
    if kind == "ivm-med":
        w = input_weight(sci, dq, var_rnoise, "ivm", bad_bits=bad_bits)
        good = w > 0
        if not good.any():
            return w
        level = float(np.median(1.0 / w[good]))
        return np.where(good, np.float32(1.0 / level), np.float32(0.0)).astype(np.float32)
    if kind == "ivm":
        if var_rnoise is None or var_rnoise.shape != sci.shape:
            raise ResampleError(f"ivm weights need VAR_RNOISE of shape {sci.shape}, got "
                                f"{None if var_rnoise is None else var_rnoise.shape}")
        w = np.zeros(sci.shape, np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(np.float32(1.0), var_rnoise, out=w, where=var_rnoise > 0)
    elif kind == "exptime":
        if exptime is None or not exptime > 0:
            raise ResampleError(f"exptime weights need a positive exposure time, got {exptime}")
        w = np.full(sci.shape, exptime, dtype=np.float32)
    else:
        raise ResampleError(f"weight type must be one of {WEIGHT_TYPES}, got {kind!r}")
    w[~np.isfinite(sci) | ~np.isfinite(w)] = 0.0
    if dq is not None:
        if dq.shape != sci.shape:
            raise ResampleError(f"DQ shape {dq.shape} differs from SCI shape {sci.shape}")
        w[(dq & bad_bits) != 0] = 0.0
    return w


def weight_level(weight: np.ndarray) -> float:
    """An input's typical drizzle weight: the median of its positive weights on every fourth
    pixel of every fourth row (exact for ``ivm-med`` and ``exptime`` weights, which are one
    level wherever positive); 0 for an input with none."""
    sample = weight[::4, ::4]
    positive = sample[sample > 0]
    if positive.size == 0:
        positive = weight[weight > 0]
    return float(np.median(positive)) if positive.size else 0.0


VARIANCES = ("VAR_POISSON", "VAR_RNOISE", "VAR_FLAT")


def _variance(name: str, v: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """``v`` as contiguous float32 after checking its shape (None stays None)."""
    if v is None:
        return None
    if v.shape != shape:
        raise ResampleError(f"resample input {name} shape {v.shape} differs from SCI {shape}")
    return np.ascontiguousarray(v, dtype=np.float32)


@dataclass
class I2DArrays:
    """The arrays of an ``_i2d`` mosaic (all (ny, nx); SCI, ERR MJy/sr, variances (MJy/sr)^2).

    SCI, WHT, the variances and, up to 32 inputs, CON are views into the
    resampler's accumulator block (not contiguous); ``np.ascontiguousarray``
    them one at a time to write.
    """

    sci: np.ndarray
    err: np.ndarray
    wht: np.ndarray
    con: np.ndarray
    var_poisson: np.ndarray
    var_rnoise: np.ndarray
    var_flat: np.ndarray
    wcs: WCS
    n_inputs: int


def spill_planes(arrays: I2DArrays, folder: Path) -> I2DArrays:
    """``arrays`` with its three variances and CON written to ``.npy`` files in ``folder`` and
    memory-mapped back (read-only), SCI and WHT as contiguous copies and ERR as it is: once
    the caller drops ``arrays`` (and the resampler), the accumulator block (which holds
    CON's last plane) is freed, 4 of the mosaic's 7 image-sized arrays (what the source catalog
    does not read) wait on disk until the ``_i2d`` is written.  Values are unchanged."""
    spilled = {}
    for name in ("var_poisson", "var_rnoise", "var_flat", "con"):
        path = folder / f"{name}.npy"
        np.save(path, getattr(arrays, name))  # (a strided view is written in chunks, not copied)
        spilled[name] = np.load(path, mmap_mode="r")
    return dataclasses.replace(arrays, sci=np.ascontiguousarray(arrays.sci),
                               wht=np.ascontiguousarray(arrays.wht), **spilled)


_FLOAT32_TINY = float(np.finfo(np.float32).tiny)

TINY_WHT = float(np.sqrt(_FLOAT32_TINY))
"""Below this output weight (~1.1e-19) the squared weights summed for the variances fall
under float32's smallest normal number: such a pixel (the far tail of a narrow gaussian
kernel, weight ~1e-20 of its neighbours') keeps its SCI and WHT but gets NaN variances
and ERR, not a variance rounded to zero; so does a variance whose sum of w² var is
subnormal (digits lost) at a larger weight."""


class Resampler:
    """Accumulates inputs one at a time onto one output grid.

    Parameters
    ----------
    grid
        Output WCS with ``pixel_shape`` set (:func:`obsflow.stage3.grid.output_grid`).
    kernel
        One of ``square``, ``point``, ``turbo``, ``gaussian``, ``lanczos3``.
    pixfrac
        Linear size of the kernel relative to an input pixel, (0, 1]
        (ignored by ``point`` and ``lanczos3``).
    threads
        Threads adding one input: its rows are cut into bands tall enough
        that bands two apart never reach the same output pixel; even bands
        run side by side, then odd ones (the kernels release the GIL), so
        the result is the same as with one thread up to float32 summation
        order.
    """

    def __init__(self, grid: WCS, kernel: str = "square", pixfrac: float = 1.0,
                 threads: int = 1) -> None:
        if kernel not in KERNELS:
            raise ResampleError(f"resample kernel must be one of {KERNELS}, got {kernel!r}")
        if not 0.0 < pixfrac <= 1.0:
            raise ResampleError(f"pixfrac must be in (0, 1], got {pixfrac}")
        if grid.pixel_shape is None:
            raise ResampleError("output grid WCS has no pixel_shape (use stage3.grid.output_grid)")
        nx, ny = grid.pixel_shape
        self.grid = grid
        self.shape = (int(ny), int(nx))
        self.kernel = kernel
        self.pixfrac = float(pixfrac)
        if threads < 1:
            raise ResampleError(f"resample threads must be >= 1, got {threads}")
        self.threads = int(threads)
        # num, wht, var_poisson, var_rnoise, var_flat and the context word of the 32 inputs
        # being added (int32 bits) per output pixel, side by side: one cache line per overlap
        self._acc: np.ndarray | None = np.zeros(self.shape + (SLOTS,), dtype=np.float32)
        self._planes: list[np.ndarray] = []
        """CON planes of the inputs before the current 32, int32 (ny, nx) each."""
        self.n_inputs = 0

    def add(self, sci: np.ndarray, weight: np.ndarray, pixmap: np.ndarray, *,
            var_poisson: np.ndarray | None = None, var_rnoise: np.ndarray | None = None,
            var_flat: np.ndarray | None = None, iscale: float = 1.0,
            ratio: float | None = None) -> None:
        """Add one input (its SCI, weight map and pixel map; variances optional, else 0).

        ``iscale`` multiplies the values (variances by its square); 1 for
        surface brightness.  ``ratio`` is the output pixel side in input
        pixels (kernel size of turbo, gaussian, lanczos3), by default
        measured from the pixel map at the image centre.
        """
        if self._acc is None:
            raise ResampleError("resampler already finished; make a new one")
        shape = sci.shape
        if sci.ndim != 2 or weight.shape != shape or pixmap.shape != shape + (2,):
            raise ResampleError(f"resample input: SCI {shape}, weight {weight.shape} and pixel map "
                                f"{pixmap.shape} must be (ny, nx), (ny, nx) and (ny, nx, 2)")
        variances = self._variances(shape, var_poisson, var_rnoise, var_flat)
        if ratio is None:
            ratio = scale_ratio(pixmap)
        self._add_block(sci, weight, variances, pixmap, iscale, ratio, (0, shape[0]),
                        bit=self._context_bit())
        self.n_inputs += 1

    def add_mapped(self, sci: np.ndarray, weight: np.ndarray, mapper: LatticeMap, *,
                   var_poisson: np.ndarray | None = None, var_rnoise: np.ndarray | None = None,
                   var_flat: np.ndarray | None = None, iscale: float = 1.0,
                   ratio: float | None = None, band_rows: int = BAND_ROWS) -> None:
        """:meth:`add` with the pixel map made from ``mapper``'s lattice
        (:class:`~obsflow.stage3.pixmap.LatticeMap`), never whole: the input is walked
        ``band_rows`` input rows at a time (each band with one row above and below), and within
        a band the compiled kernel call makes the map of ``kernels.CHUNK`` rows at a time into
        one buffer that stays in cache (the square kernel's chunks with one map row above and
        below, so its corner interpolation sees the rows it sees in the whole map): the same
        sums bit for bit as :meth:`add` with :func:`~obsflow.stage3.pixmap.pixel_map`, with no
        map array per band (the whole input's would be 64 MiB at 2048 x 2048).  Absent
        variances are zero bands, not zero images, and arrays not in native float32 (a FITS
        file's big-endian ``>f4``) are converted a band at a time, not copied whole.
        ``ratio``: as in :meth:`add` (default ``mapper.scale_ratio()``).
        """
        if self._acc is None:
            raise ResampleError("resampler already finished; make a new one")
        shape = sci.shape
        if sci.ndim != 2 or weight.shape != shape or mapper.shape != shape:
            raise ResampleError(f"resample input: SCI {shape}, weight {weight.shape} and pixel "
                                f"map {mapper.shape} must be one (ny, nx)")
        if band_rows < 1:
            raise ResampleError(f"resample band_rows must be >= 1, got {band_rows}")
        for name, v in zip(VARIANCES, (var_poisson, var_rnoise, var_flat), strict=True):
            if v is not None and v.shape != shape:
                raise ResampleError(f"resample input {name} shape {v.shape} differs from SCI "
                                    f"{shape}")
        given = (var_poisson, var_rnoise, var_flat)  # (as given: converted a band at a time)
        if ratio is None:
            ratio = mapper.scale_ratio()
        ny = shape[0]
        zero = np.zeros((min(ny, band_rows + 2), shape[1]), np.float32)
        bit = self._context_bit()
        starts = range(0, ny, band_rows)
        # with threads, the bands themselves run side by side (even ones, then odd ones) when
        # they are tall enough that bands two apart never reach one output pixel: one pool per
        # input, not one per band (whose start and barriers cost more than the kernel's time
        # on a 256-row band), each thread converting only its own band
        banded = self.threads > 1 and len(starts) >= 4 and band_rows >= self._band_height(ratio)

        def one(r0: int) -> None:
            r1 = min(ny, r0 + band_rows)
            lo, hi = max(0, r0 - 1), min(ny, r1 + 1)
            bands = tuple(zero[:hi - lo] if v is None else np.ascontiguousarray(v[lo:hi], np.float32)
                          for v in given)
            self._add_block(sci[lo:hi], weight[lo:hi], bands, mapper.lattice, iscale, ratio,
                            (r0 - lo, r1 - lo), first=lo, bit=bit, threads=1 if banded else None)

        if banded:
            with ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="drizzle") as pool:
                for parity in (0, 1):
                    list(pool.map(one, starts[parity::2]))
        else:
            for r0 in starts:
                one(r0)
        self.n_inputs += 1

    @staticmethod
    def _variances(shape: tuple[int, ...], *given: np.ndarray | None) -> tuple[np.ndarray, ...]:
        # absent: zeros (calloc: pages only mapped when read, to the shared zero page); the same
        # array type as a given variance, so each kernel is compiled once
        return tuple(np.zeros(shape, dtype=np.float32) if v is None else v
                     for v in (_variance(name, v, shape)
                               for name, v in zip(VARIANCES, given, strict=True)))

    def _context_bit(self) -> int:
        """Input ``self.n_inputs``'s bit in the context word (its plane set up: a new 32
        inputs' plane word starts at 0, the previous plane kept aside).  Called once per input,
        before any of its rows are added."""
        if self._acc is None:
            raise ResampleError("resampler already finished; make a new one")
        plane, bit = divmod(self.n_inputs, 32)
        while len(self._planes) < plane:
            ctx = self._acc.view(np.int32)[..., CTX]
            self._planes.append(ctx.copy())
            ctx[...] = 0
        return 1 << bit

    def _band_height(self, ratio: float) -> int:
        """Input rows between two bands that may run at once: twice the kernel's reach, in input
        pixels (``ratio`` of them per output pixel), with room for distortion."""
        return max(32, math.ceil(3.0 * reach(self.kernel, self.pixfrac, ratio) * ratio) + 2)

    def _add_block(self, sci: np.ndarray, weight: np.ndarray,
                   variances: tuple[np.ndarray, ...], positions: np.ndarray | tuple[object, ...],
                   iscale: float, ratio: float, rows: tuple[int, int],
                   first: int | None = None, *, bit: int, threads: int | None = None) -> None:
        """Rows ``rows`` of these arrays into the accumulators with context ``bit``
        (:meth:`_context_bit`; ``positions`` and ``first`` as in
        :func:`obsflow.stage3.kernels.add_image`), on ``threads`` (default ``self.threads``)."""
        if self._acc is None:
            raise ResampleError("resampler already finished; make a new one")
        args = (self.kernel, np.ascontiguousarray(sci, dtype=np.float32),
                np.ascontiguousarray(weight, dtype=np.float32),
                (variances[0], variances[1], variances[2]),
                positions if first is not None else np.ascontiguousarray(positions, dtype=np.float64),
                self.pixfrac, iscale, ratio, self._acc, bit)
        row0, row1 = rows
        height = self._band_height(ratio)
        if (threads or self.threads) == 1 or row1 - row0 < 4 * height:
            add_image(*args, rows=rows, first=first)
        else:
            bands = [(r, min(r + height, row1)) for r in range(row0, row1, height)]
            with ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="drizzle") as pool:
                for parity in (0, 1):
                    list(pool.map(lambda rows: add_image(*args, rows=rows, first=first), bands[parity::2]))

    def finish(self) -> I2DArrays:
        """The mosaic arrays (in place in the accumulators; the resampler cannot be added to after)."""
        if self._acc is None:
            raise ResampleError("resampler already finished")
        acc, self._acc = self._acc, None
        wht = acc[..., 1]
        covered = wht > 0
        faint = covered & (wht < TINY_WHT)
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(acc[..., 0], wht, out=acc[..., 0])
            for k in (2, 3, 4):  # sum(w² var) / WHT / WHT: no WHT² to underflow, no temporary
                lost = faint | ((acc[..., k] > 0) & (acc[..., k] < _FLOAT32_TINY))
                np.divide(acc[..., k], wht, out=acc[..., k])
                np.divide(acc[..., k], wht, out=acc[..., k])
                acc[..., k][lost] = np.nan
        for k in (0, 2, 3, 4):
            acc[..., k][~covered] = np.nan
        err = np.sqrt(acc[..., 2] + acc[..., 3] + acc[..., 4])
        last = acc.view(np.int32)[..., CTX]
        con = np.stack(self._planes + [last]) if self._planes else last[np.newaxis]
        self._planes = []
        return I2DArrays(sci=acc[..., 0], err=err, wht=wht, con=con,
                         var_poisson=acc[..., 2], var_rnoise=acc[..., 3], var_flat=acc[..., 4],
                         wcs=self.grid, n_inputs=self.n_inputs)
