"""Stage-2 image calibration: flat field, photometric calibration, background estimate.

Pure array functions on rate images (ny, nx): ``sci`` in DN/s with its
``err`` (DN/s), variances (DN/s)**2 and ``dq`` (uint32).  The WCS comes from
:func:`obsflow.models.pointing.detector_wcs` (the one place that computes it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from obsflow.exceptions import CalibrationError
from obsflow.models.dq import DQ

__all__ = ["Background", "ImageArrays", "apply_flat", "apply_photom", "clipped_stats",
           "estimate_background"]


@dataclass(frozen=True)
class ImageArrays:
    """A calibrated image's arrays, all (ny, nx): SCI, ERR, VAR_POISSON, VAR_RNOISE float32, DQ uint32."""

    sci: np.ndarray
    err: np.ndarray
    var_poisson: np.ndarray
    var_rnoise: np.ndarray
    dq: np.ndarray


def apply_flat(img: ImageArrays, flat: np.ndarray) -> ImageArrays:
    """Divide by the flat field (DN response, nominal 1); new arrays.

    Pixels where the flat is not finite or <= 0 get NO_FLAT_FIELD | DO_NOT_USE
    and NaN science; errors scale by 1/flat, variances by 1/flat**2.
    """
    bad = ~np.isfinite(flat) | (flat <= 0)
    f = np.where(bad, 1.0, flat).astype(np.float32)
    dq = img.dq.copy()
    dq[bad] |= np.uint32(DQ.NO_FLAT_FIELD | DQ.DO_NOT_USE)
    sci = img.sci / f
    sci[bad] = np.nan
    return ImageArrays(sci, img.err / f, img.var_poisson / f**2, img.var_rnoise / f**2, dq)


def apply_photom(img: ImageArrays, photmjsr: float) -> ImageArrays:
    """Convert DN/s to MJy/sr by ``photmjsr`` (MJy/sr per DN/s); new arrays."""
    if not (np.isfinite(photmjsr) and photmjsr > 0):
        raise CalibrationError(f"PHOTMJSR must be a positive number, got {photmjsr}")
    p = np.float32(photmjsr)
    return replace(img, sci=img.sci * p, err=img.err * p, var_poisson=img.var_poisson * p * p,
                   var_rnoise=img.var_rnoise * p * p)


@dataclass(frozen=True)
class Background:
    """Sigma-clipped sky level and scatter (image units) and the pixels used."""

    level: float
    rms: float
    npixels: int


def clipped_stats(values: np.ndarray, sigma: float = 3.0, maxiters: int = 5
                  ) -> tuple[float, float, int]:
    """Sigma-clipped median and standard deviation of ``values`` (1-D, finite), and how
    many values were kept.

    The same iteration as astropy's ``sigma_clipped_stats`` (median centre,
    population standard deviation, keep ``median - sigma std <= x <= median +
    sigma std`` of the values still kept, until nothing changes or
    ``maxiters``), computed on the sorted values: what remains after each
    pass is a contiguous run of them, so each pass is a median lookup, one
    standard deviation and two binary searches instead of a full copy and
    median (4 M pixels: about 0.1 s instead of 0.4 s; tests compare both).
    """
    ordered = np.sort(values).astype(np.float64)
    centre = _median_of_sorted(ordered)
    ordered -= centre  # values about 0: the one-pass variance loses no precision
    lo, hi = 0, ordered.size
    for _ in range(maxiters):
        run = ordered[lo:hi]
        median, std = _median_of_sorted(run), _std(run)
        new_lo = max(lo, int(np.searchsorted(ordered, median - sigma * std, "left")))
        new_hi = min(hi, int(np.searchsorted(ordered, median + sigma * std, "right")))
        if (new_lo, new_hi) == (lo, hi) or new_hi <= new_lo:
            break
        lo, hi = new_lo, new_hi
    run = ordered[lo:hi]
    return _median_of_sorted(run) + centre, _std(run), hi - lo


def _std(run: np.ndarray) -> float:
    """Population standard deviation of float64 values about 0, from their sum and sum of
    squares (one pass each; relative error about 1e-16 (mean / std)**2)."""
    mean = float(np.add.reduce(run)) / run.size
    return float(np.sqrt(max(float(np.dot(run, run)) / run.size - mean * mean, 0.0)))


def _median_of_sorted(run: np.ndarray) -> float:
    mid = run.size // 2
    return float(run[mid]) if run.size % 2 else (float(run[mid - 1]) + float(run[mid])) / 2.0


def estimate_background(sci: np.ndarray, dq: np.ndarray, sigma: float = 3.0) -> Background:
    """Sigma-clipped median and standard deviation of the good pixels (DQ == 0, finite)
    (:func:`clipped_stats`, 5 iterations at most).

    Raises
    ------
    CalibrationError
        No good pixel at all.
    """
    good = (dq == 0) & np.isfinite(sci)
    if not good.any():
        raise CalibrationError("no good pixel to estimate the background from")
    median, std, _ = clipped_stats(sci[good], sigma)
    return Background(median, std, int(good.sum()))
