"""Mission time: seconds (TAI) since the profile's epoch, as packets carry it."""

from __future__ import annotations

import numpy as np
from astropy import units as u
from astropy.time import Time

__all__ = ["mission_seconds", "mjd_utc"]


def mission_seconds(mjd_utc: float | np.ndarray, epoch_tai: str) -> np.ndarray:
    """MJD (UTC) -> seconds since ``epoch_tai`` (ISO, TAI scale), float64."""
    epoch = Time(epoch_tai, scale="tai")
    t = Time(np.asarray(mjd_utc, np.float64), format="mjd", scale="utc")
    return np.asarray((t - epoch).to_value(u.s), np.float64)


def mjd_utc(seconds: float | np.ndarray, epoch_tai: str) -> np.ndarray:
    """Seconds since ``epoch_tai`` (TAI) -> MJD (UTC), float64."""
    epoch = Time(epoch_tai, scale="tai")
    return np.asarray((epoch + np.asarray(seconds, np.float64) * u.s).utc.mjd, np.float64)
