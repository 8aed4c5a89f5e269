"""Stage-2 image calibration: flat field, photometric calibration, background estimate.

Pure array functions on rate images (ny, nx): ``sci`` in DN/s with its
``err`` (DN/s), variances (DN/s)**2 and ``dq`` (uint32).  The WCS comes from
:func:`obsflow.models.pointing.detector_wcs` (the one place that computes it).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
from astropy.stats import sigma_clipped_stats

from obsflow.exceptions import CalibrationError
from obsflow.models.dq import DQ

__all__ = ["Background", "ImageArrays", "apply_flat", "apply_photom", "estimate_background"]


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


def estimate_background(sci: np.ndarray, dq: np.ndarray, sigma: float = 3.0) -> Background:
    """Sigma-clipped median and standard deviation of the good pixels (DQ == 0, finite).

    Raises
    ------
    CalibrationError
        No good pixel at all.
    """
    good = (dq == 0) & np.isfinite(sci)
    if not good.any():
        raise CalibrationError("no good pixel to estimate the background from")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        _, median, std = sigma_clipped_stats(sci[good], sigma=sigma, maxiters=5)
    return Background(float(median), float(std), int(good.sum()))
