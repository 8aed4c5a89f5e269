"""Engineering telemetry and ephemeris: where the observatory was and how warm.

Both are smooth analytic models plus noise, deterministic in the seed.
"""

from __future__ import annotations

import numpy as np
from astropy.table import Table

from obsflow.exceptions import UnknownOptionError
from obsflow.profiles import Profile

__all__ = ["engineering_samples", "ephemeris_table", "orbit_position_km"]

_DAY_S = 86400.0


def engineering_samples(profile: Profile, t0: float, t1: float,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Channel samples every ``period_s`` between mission seconds ``t0`` and ``t1``.

    Returns (times (N,) mission seconds, values (N, nchannels) float32 in the
    channels' units: a slow sinusoidal drift of 0.2% plus white noise).
    """
    eng = profile.engineering
    times = np.arange(np.floor(t0 / eng.period_s) * eng.period_s, t1 + eng.period_s, eng.period_s)
    nominal, noise = np.asarray(eng.nominal), np.asarray(eng.noise)
    drift = 0.002 * nominal[None, :] * np.sin(2 * np.pi * times[:, None] / (6 * 3600.0))
    values = nominal[None, :] + drift + rng.normal(0, 1, (times.size, nominal.size)) * noise
    return times, values.astype(np.float32)


def _l2(t: np.ndarray) -> np.ndarray:
    year = 365.25 * _DAY_S
    sun_angle = 2 * np.pi * t / year
    halo = 2 * np.pi * t / (180 * _DAY_S)
    r = 1.5e6 + 0.0 * t
    x = r * np.cos(sun_angle) - 2.5e5 * np.sin(halo) * np.sin(sun_angle)
    y = r * np.sin(sun_angle) + 2.5e5 * np.sin(halo) * np.cos(sun_angle)
    z = 7.0e5 * np.cos(halo)
    return np.stack([x, y, z], axis=1)


def _leo(t: np.ndarray) -> np.ndarray:
    mu, radius = 398600.4418, 6378.137 + 550.0
    n = np.sqrt(mu / radius**3)
    inc = np.deg2rad(97.5)
    u_ = n * t
    x = radius * np.cos(u_)
    y = radius * np.sin(u_) * np.cos(inc)
    z = radius * np.sin(u_) * np.sin(inc)
    return np.stack([x, y, z], axis=1)


_ORBITS = {"L2": _l2, "LEO": _leo}


def orbit_position_km(orbit: str, t: np.ndarray) -> np.ndarray:
    """Observatory position (N, 3), km, Earth-centred equatorial axes, at mission seconds ``t``.

    ``orbit`` is the profile's ``ephemeris.orbit`` (``L2`` or ``LEO``).
    """
    if orbit not in _ORBITS:
        raise UnknownOptionError("orbit", orbit, _ORBITS)
    return _ORBITS[orbit](np.atleast_1d(np.asarray(t, np.float64)))


def ephemeris_table(profile: Profile, t0: float, t1: float, epoch_mjd) -> Table:  # type: ignore[no-untyped-def]
    """Position (km) and velocity (km/s) every ``period_s`` from ``t0`` to ``t1`` mission seconds.

    ``epoch_mjd`` is a callable turning mission seconds into MJD UTC.
    Columns: ``mjd_utc``, ``x_km``, ``y_km``, ``z_km``, ``vx_km_s``, ``vy_km_s``, ``vz_km_s``
    (Earth-centred, equatorial axes).
    """
    orbit = profile.ephemeris.orbit
    if orbit not in _ORBITS:
        raise UnknownOptionError("orbit", orbit, _ORBITS)
    step = profile.ephemeris.period_s
    t = np.arange(np.floor(t0 / step) * step, t1 + 2 * step, step)
    pos = _ORBITS[orbit](t)
    vel = (_ORBITS[orbit](t + 0.5) - _ORBITS[orbit](t - 0.5))
    table = Table({"mjd_utc": epoch_mjd(t)})
    for k, axis in enumerate("xyz"):
        table[f"{axis}_km"] = pos[:, k]
    for k, axis in enumerate("xyz"):
        table[f"v{axis}_km_s"] = vel[:, k]
    return table
