"""The background of a mosaic under its sources, its noise and the noise's pixel correlation.

Pure array functions.  The background is photutils'
:class:`~photutils.background.Background2D` (sigma-clipped median per box, a
3x3 median filter over the boxes, bicubic interpolation) computed with the
sources masked.  A plain clipped median per box is biased high under the
halo of a bright star or the disk of a galaxy: their faint outskirts lie
within the noise, so clipping keeps them.  So the mask is built in passes:
detect on the smoothed, background-subtracted image at a low threshold
(``mask_nsigma``), then dilate every segment by a radius that grows with
its size (``dilate`` x its equivalent radius, at least the PSF FWHM): a
Moffat halo (surface brightness ~ r^-5) at twice the radius where it
crossed the threshold is 32 times fainter.  Boxes with more than half of
their pixels masked are left out and filled from their neighbours.

Drizzled mosaics have correlated noise (each input pixel spreads over
several output pixels), so the sum of N pixels varies more than N times a
pixel's variance.  :func:`noise_correlation` measures the correlation
coefficients of the normalised background residuals at lags up to a few
pixels; :func:`aperture_variance_factor` turns them into the factor by
which the variance of an aperture sum exceeds the sum of its pixels'
variances.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from astropy.stats import SigmaClip, mad_std
from astropy.utils.exceptions import AstropyUserWarning
from photutils.aperture import CircularAperture, aperture_photometry
from photutils.background import Background2D, MedianBackground, StdBackgroundRMS
from photutils.segmentation import detect_sources, make_2dgaussian_kernel
from scipy.ndimage import distance_transform_edt, maximum_filter
from scipy.signal import fftconvolve

from obsflow.exceptions import CatalogError

__all__ = ["BackgroundMap", "aperture_variance_factor", "dilated_source_mask",
           "empty_aperture_factor", "estimate_background", "noise_correlation",
           "relative_noise", "significant_segments", "smooth", "smoothing_kernel"]


@dataclass(frozen=True)
class BackgroundMap:
    """A mosaic's background (all maps (ny, nx), image units, e.g. MJy/sr, the image's float
    dtype: float32 for a float32 mosaic).

    Attributes
    ----------
    level : numpy.ndarray
        Background surface brightness.
    rms : numpy.ndarray
        Pixel-to-pixel noise of the background (1 sigma per pixel).
    level_err_factor : float
        ``level_err`` over ``rms`` (the median of a box of correlated pixels).
    source_mask : numpy.ndarray
        bool, the dilated source mask the final pass used.
    box_pix : int
        Box side, pixels.
    smooth_ratio : float
        Noise of the smoothed image over the noise of a pixel (measured).
    correlation : numpy.ndarray
        (2L+1, 2L+1) correlation coefficients of the noise at lags -L..L (centre 1).
    """

    level: np.ndarray
    rms: np.ndarray
    level_err_factor: float
    source_mask: np.ndarray
    box_pix: int
    smooth_ratio: float
    correlation: np.ndarray

    @property
    def level_err(self) -> np.ndarray:
        """1-sigma error of ``level`` itself (``rms x level_err_factor``; a new array)."""
        return self.rms * self.rms.dtype.type(self.level_err_factor)


def smoothing_kernel(fwhm_pix: float) -> np.ndarray:
    """Unit-sum 2-D Gaussian detection kernel of the PSF's FWHM (at least 1.5 pixels)."""
    fwhm = max(float(fwhm_pix), 1.5)
    size = 2 * int(math.ceil(1.5 * fwhm)) + 1
    kernel = make_2dgaussian_kernel(fwhm, size=size)
    return np.asarray(kernel.array, np.float64)


SMOOTH_BAND_ROWS = 256
"""Output rows :func:`smooth` convolves at a time (each with the kernel's half height above and
below): the FFT's padded complex arrays stay a band's size, not the image's."""


def smooth(data: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``data`` convolved with ``kernel`` (same shape and float dtype as ``data``, float32 for
    integer data; zero beyond the edges), in row bands of :data:`SMOOTH_BAND_ROWS`.

    Each band is ``fftconvolve``'d with the rows the kernel reaches on either side, so the
    result is the whole image's ``fftconvolve(data, kernel, mode="same")`` up to float
    rounding, with FFT arrays of one band only (memory: the output plus a few band-sized
    arrays).
    """
    if data.ndim != 2 or kernel.ndim != 2 or kernel.shape[0] % 2 != 1:
        raise CatalogError(f"smooth: a 2-D image and a 2-D kernel of odd height, got "
                           f"{data.shape} and {kernel.shape}")
    dtype = data.dtype if data.dtype.kind == "f" else np.dtype(np.float32)
    kern = np.asarray(kernel, dtype)
    out = np.empty(data.shape, dtype)
    ny = data.shape[0]
    half = kernel.shape[0] // 2
    for r0 in range(0, ny, SMOOTH_BAND_ROWS):
        r1 = min(ny, r0 + SMOOTH_BAND_ROWS)
        lo, hi = max(0, r0 - half), min(ny, r1 + half)
        band = fftconvolve(np.asarray(data[lo:hi], dtype), kern, mode="same")
        out[r0:r1] = band[r0 - lo:r1 - lo]
    return out


def _background(sci: np.ndarray, mask: np.ndarray, bad: np.ndarray, box: int) -> Background2D:
    with warnings.catch_warnings():
        # photutils warns when it fills the masked pixels of the input; it is what we ask
        warnings.simplefilter("ignore", AstropyUserWarning)
        return Background2D(np.where(bad, 0.0, sci), box, mask=mask, coverage_mask=bad,
                            fill_value=0.0, exclude_percentile=50.0, filter_size=(3, 3),
                            sigma_clip=SigmaClip(sigma=3.0, maxiters=10),
                            bkg_estimator=MedianBackground(), bkg_rms_estimator=StdBackgroundRMS())


def dilated_source_mask(segm: np.ndarray, dilate: float, min_radius: float) -> np.ndarray:
    """True within ``max(min_radius, dilate x r_eq)`` pixels of each segment (r_eq =
    sqrt(area / pi) of that segment), as a boolean map.

    Radii are rounded up to a few classes (powers of sqrt 2) and each class
    is dilated with one Euclidean distance transform.
    """
    labels = segm.ravel()
    if not labels.any():
        return np.zeros(segm.shape, bool)
    area = np.bincount(labels)
    radius = np.maximum(min_radius, dilate * np.sqrt(area / np.pi))
    radius[0] = 0.0
    cls = np.ceil(2.0 * np.log2(np.maximum(radius, 1.0))).astype(np.int64)
    out = segm > 0
    for c in np.unique(cls[1:][area[1:] > 0]):
        members = np.zeros(radius.size, bool)
        members[1:] = (cls[1:] == c) & (area[1:] > 0)
        sel = members[segm]
        if sel.any():
            _dilate_inplace(out, sel, 2.0 ** (c / 2.0))
    return out


def _dilate_inplace(out: np.ndarray, sel: np.ndarray, radius: float) -> None:
    """Set ``out`` True within Euclidean ``radius`` pixels of a True pixel of ``sel``.

    In row bands: a band's distance transform sees the rows within ``radius`` above and
    below it, which hold every selected pixel close enough, so the result is the whole
    image's ``distance_transform_edt(~sel) <= radius`` exactly, with the transform's
    integer and float64 work arrays (~40 bytes per pixel) of one band only.
    """
    ny = sel.shape[0]
    reach_rows = int(math.ceil(radius))
    rows = max(SMOOTH_BAND_ROWS, 4 * reach_rows)
    for r0 in range(0, ny, rows):
        r1 = min(ny, r0 + rows)
        lo, hi = max(0, r0 - reach_rows), min(ny, r1 + reach_rows)
        sub = sel[lo:hi]
        if sub.any():
            out[r0:r1] |= distance_transform_edt(~sub)[r0 - lo:r1 - lo] <= radius


def significant_segments(labels: np.ndarray, smoothed: np.ndarray, peak: float) -> np.ndarray:
    """``labels`` (int, 0 sky) with the segments whose maximum of ``smoothed`` is below
    ``peak`` set to 0 (a new array).

    Hysteresis: a source is found by its peak and masked down to the low
    isophote.  A mask made of every segment above a low threshold (2 sigma)
    is mostly noise: it takes the positive fluctuations out of the pixels the
    background and its noise are measured on, so the level comes out low (by
    ~0.06 sigma per pixel on the stage-3 truth fields: +0.2 sigma on a faint
    star's aperture flux), and the noise and its correlation small.
    """
    n = int(labels.max()) if labels.size else 0
    if n == 0:
        return labels.copy()
    top = np.full(n + 1, -np.inf)
    inside = labels > 0
    np.maximum.at(top, labels[inside], smoothed[inside])
    keep = top >= peak
    keep[0] = False
    return np.where(keep[labels], labels, 0).astype(labels.dtype, copy=False)


def relative_noise(err: np.ndarray, rms: np.ndarray, quiet: np.ndarray,
                   kernel: np.ndarray) -> np.ndarray:
    """Noise of the smoothed, noise-normalised image ``smooth((sci - level) / rms)`` at each
    pixel, relative to its median over the ``quiet`` pixels (float32 (ny, nx); 1 where
    ``quiet`` is empty or nothing is known).

    ``rms`` (the background's, from boxes tens of pixels wide) does not follow the
    pixel-to-pixel changes of a mosaic's depth: the edges and seams one dither covers,
    pixels an input lost, a bright source's own Poisson noise.  ERR does: a pixel of
    ``(sci - level) / rms`` has variance ``(err / rms)^2`` (up to ERR's overall scale), so
    the smoothed image's variance at a pixel is the kernel's squares convolved with it
    (the correlation between pixels, the same everywhere, cancels in the ratio).  A
    detection threshold times this map is the same significance everywhere.
    """
    ratio = np.zeros(err.shape, np.float32)
    np.divide(err, rms, out=ratio, where=(rms > 0) & np.isfinite(err))
    np.square(ratio, out=ratio)
    var = smooth(ratio, np.asarray(kernel, np.float64) ** 2)
    del ratio
    np.maximum(var, 0.0, out=var)
    typical = float(np.median(var[quiet])) if quiet.any() else 0.0
    if not typical > 0:
        return np.ones(err.shape, np.float32)
    var /= np.float32(typical)
    np.sqrt(var, out=var)
    var[var <= 0] = 1.0  # (no data around: the threshold stays the typical one)
    return var


def _shifted(a: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    """The overlapping parts of ``a`` and ``a`` shifted by (dy, dx)."""
    ny, nx = a.shape
    return (a[max(0, dy):ny + min(0, dy), max(0, dx):nx + min(0, dx)],
            a[max(0, -dy):ny + min(0, -dy), max(0, -dx):nx + min(0, -dx)])


def _limited_mask(labels: np.ndarray, bad: np.ndarray, dilate: float, min_radius: float,
                  max_masked: float) -> np.ndarray:
    """:func:`dilated_source_mask`, its dilation halved until it covers at most
    ``max_masked`` of the pixels with data (undilated segments at the least)."""
    n_good = max(int((~bad).sum()), 1)
    while True:
        mask = dilated_source_mask(labels, dilate, min_radius)
        if float((mask & ~bad).sum()) / n_good <= max_masked or dilate < 0.1:
            break
        dilate, min_radius = dilate / 2.0, min_radius / 2.0
    if float((mask & ~bad).sum()) / n_good > max_masked:
        mask = labels > 0
    return mask


def noise_correlation(z: np.ndarray, good: np.ndarray, max_lag: int = 2,
                      far_lag: int = 8) -> np.ndarray:
    """Correlation coefficients of the noise in ``z`` between pixels of ``good`` at lags
    (dy, dx) in -max_lag..max_lag, shape (2L+1, 2L+1), centre 1.

    From the structure function D(lag) = mean (z(p + lag) - z(p))^2, which a
    slowly varying residual background (a star's faint halo, a gradient) does
    not enter: rho(lag) = 1 - D(lag) / D(far), D(far) the mean over the two
    diagonal lags (``far_lag``, +-``far_lag``), where the noise is no longer
    correlated (off the rows and columns, which row noise correlates).  Residuals beyond 5 sigma are clipped first.
    """
    L = max_lag
    zz = np.clip(np.where(good, z, 0.0), -5.0, 5.0)

    def structure(dy: int, dx: int) -> float:
        a, b = _shifted(zz, dy, dx)
        ga, gb = _shifted(good, dy, dx)
        both = ga & gb
        n = int(both.sum())
        if n == 0:
            return float("nan")
        diff = np.subtract(a, b)
        np.square(diff, out=diff)
        return float(np.sum(diff, where=both, dtype=np.float64) / n)

    far = np.nanmean([structure(far_lag, far_lag), structure(far_lag, -far_lag)])
    out = np.zeros((2 * L + 1, 2 * L + 1))
    if not far > 0:
        out[L, L] = 1.0
        return out
    for dy in range(-L, L + 1):
        for dx in range(-L, L + 1):
            d = structure(dy, dx)
            out[dy + L, dx + L] = 1.0 - d / far if np.isfinite(d) else 0.0
    out[L, L] = 1.0
    return out


def aperture_variance_factor(correlation: np.ndarray, radius: float) -> float:
    """Variance of a circular aperture sum over what summing its pixels' variances gives.

    With weights w (the aperture's exact pixel overlaps) and uniform noise,
    Var = sigma^2 sum_lag rho(lag) sum_i w_i w_(i+lag), while the per-pixel
    sum is sigma^2 sum_i w_i (what photutils' aperture error is).
    """
    L = correlation.shape[0] // 2
    half = int(math.ceil(radius)) + 1
    w = CircularAperture((half, half), radius).to_mask(method="exact").to_image(
        (2 * half + 1, 2 * half + 1))
    if w is None or w.sum() <= 0:
        return 1.0
    auto = fftconvolve(w, w[::-1, ::-1], mode="full")
    c = auto.shape[0] // 2
    window = auto[c - L:c + L + 1, c - L:c + L + 1]
    return float(max(np.sum(correlation * window) / w.sum(), 1e-3))


def empty_aperture_factor(data: np.ndarray, error: np.ndarray, masked: np.ndarray,
                          radius: float, *, min_apertures: int = 50,
                          max_apertures: int = 3000) -> tuple[float, int] | None:
    """Variance of empty-aperture sums over what ERR predicts for them, and how many.

    Circular apertures of ``radius`` pixels on a grid ``radius`` + 1 apart
    (neighbours overlap a little: more of them fit between the sources, and
    the variance is still the aperture's) are kept where no pixel within
    ``radius`` + 1 of their centre is ``masked`` (no data, or a source's
    dilated segment); at most ``max_apertures`` of them (a fixed random
    draw).  Their sums of
    ``data`` (background-subtracted) scatter by what an aperture of that
    size really varies on this image: correlated noise at every lag, the
    background level's own error, and whatever the propagated ERR misses.
    The factor is that scatter squared (1.4826 x the median absolute
    deviation, robust to a faint source left in the sky) over the median of
    the apertures' ERR-summed variances.  None when fewer than
    ``min_apertures`` fit.
    """
    half = int(math.ceil(radius)) + 1
    step = int(math.ceil(radius + 1))
    ny, nx = data.shape
    if ny <= 2 * half or nx <= 2 * half:
        return None
    offsets = np.arange(-half, half + 1)
    disk = np.hypot(offsets[:, None], offsets[None, :]) <= radius + 1
    blocked = maximum_filter(masked, footprint=disk, mode="constant", cval=True)
    ys, xs = np.mgrid[half:ny - half:step, half:nx - half:step]
    free = ~blocked[ys, xs]
    del blocked
    pos = np.column_stack([xs[free], ys[free]]).astype(np.float64)
    if pos.shape[0] < min_apertures:
        return None
    if pos.shape[0] > max_apertures:
        pos = pos[np.sort(np.random.default_rng(0).choice(pos.shape[0], max_apertures,
                                                          replace=False))]
    phot = aperture_photometry(data, CircularAperture(pos, radius), error=error, method="exact")
    sums = np.asarray(phot["aperture_sum"], np.float64)
    predicted = np.asarray(phot["aperture_sum_err"], np.float64) ** 2
    scatter = 1.4826 * float(np.median(np.abs(sums - np.median(sums))))
    expected = float(np.median(predicted))
    if not (expected > 0 and np.isfinite(scatter)):
        return None
    return scatter**2 / expected, int(pos.shape[0])


def estimate_background(sci: np.ndarray, bad: np.ndarray, fwhm_pix: float, *,
                        box_pix: int | None = None, mask_nsigma: float = 2.0,
                        peak_nsigma: float = 5.0,
                        dilate: float = 1.0, passes: int = 2,
                        max_lag: int = 2, max_masked: float = 0.7) -> BackgroundMap:
    """Background, its noise and their errors under the sources (see the module docstring).

    Parameters
    ----------
    sci : numpy.ndarray
        (ny, nx) image (surface brightness, e.g. MJy/sr).
    bad : numpy.ndarray
        (ny, nx) bool, pixels without data (zero weight, NaN).
    fwhm_pix : float
        PSF FWHM (as the image shows it), pixels.
    box_pix : int, optional
        Background box side; default 12 FWHM within [32, 128] pixels, at
        most half the image's shorter side.
    mask_nsigma, dilate : float
        Source-mask threshold (sigma of the smoothed image) and dilation
        factor.
    peak_nsigma : float
        A segment above ``mask_nsigma`` is masked only when its peak reaches
        ``peak_nsigma`` (sigma of the smoothed image): a source, not a noise
        fluctuation (see :func:`significant_segments`).
    passes : int
        Mask-and-refit passes after the first, unmasked estimate.
    max_lag : int
        Largest lag of the measured noise correlation, pixels.
    max_masked : float
        Largest fraction of the pixels with data the source mask may cover:
        where dilation would cover more (a field full of bright sources),
        the dilation is halved until it does not (down to none).
    """
    if sci.ndim != 2 or bad.shape != sci.shape:
        raise CatalogError(f"background: image must be 2-D with a mask of its shape, got "
                           f"{sci.shape} and {bad.shape}")
    ny, nx = sci.shape
    if box_pix is None:
        box_pix = int(min(128, max(32, 12 * fwhm_pix)))
    box = int(max(8, min(box_pix, min(ny, nx) // 2)))
    if (~bad).sum() < box * box:
        raise CatalogError(f"background: {(~bad).sum()} pixels with data; need at least one "
                           f"{box}x{box} box")
    kernel = smoothing_kernel(fwhm_pix)
    source = np.zeros(sci.shape, bool)
    bkg = _background(sci, bad, bad, box)
    ratio = float(np.sqrt(np.sum(kernel**2)))
    for _ in range(passes):
        level = bkg.background
        smoothed = smooth(_normalised(sci, bad, level, bkg.background_rms, out=level), kernel)
        del level
        quiet = ~bad & ~source
        ratio = float(mad_std(smoothed[quiet])) if quiet.sum() > 100 else ratio
        del quiet
        npix = max(3, int(round(0.5 * math.pi * (max(fwhm_pix, 1.5) / 2.0) ** 2)))
        segm = detect_sources(smoothed, mask_nsigma * ratio, npix, mask=bad)
        labels = np.zeros(sci.shape, np.int32) if segm is None else np.asarray(segm.data)
        del segm
        labels = significant_segments(labels, smoothed, peak_nsigma * ratio)
        del smoothed
        source = _limited_mask(labels, bad, dilate, max(fwhm_pix, 1.5), max_masked)
        del labels
        bkg = _background(sci, bad | source, bad, box)
    level = bkg.background
    rms = bkg.background_rms
    del bkg
    quiet = ~bad & ~source
    z = _normalised(sci, ~quiet, level, rms, out=np.empty_like(level))
    corr = noise_correlation(z, quiet, max_lag)
    del z
    # the median of the good pixels of a box: 1.253 sigma / sqrt(N); N shrinks by the sum of the
    # correlation coefficients (correlated pixels are not independent)
    good_frac = max(float(quiet.mean()), 0.05)
    n_eff = box * box * good_frac / max(float(corr.sum()), 1.0)
    return BackgroundMap(level=level, rms=rms, level_err_factor=1.2533 / math.sqrt(n_eff),
                         source_mask=source, box_pix=box, smooth_ratio=ratio, correlation=corr)


def _normalised(sci: np.ndarray, bad: np.ndarray, level: np.ndarray, rms: np.ndarray,
                out: np.ndarray) -> np.ndarray:
    """``(sci - level) / rms`` into ``out`` (which may be ``level``), 0 where ``bad`` or where
    ``rms`` is not > 0 (a pixel whose noise is unknown counts as no signal)."""
    np.subtract(sci, level, out=out)
    ok = rms > 0
    np.divide(out, rms, out=out, where=ok)
    out[~ok] = 0.0
    out[bad] = 0.0
    return out
