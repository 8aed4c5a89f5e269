"""When a target can be observed, and at which position angles.

The Sun and the Moon come from astropy's built-in solar-system ephemerides
(:func:`astropy.coordinates.get_body`, no network); the observatory's
position from the simulator's orbit model
(:func:`obsflow.simulate.environment.orbit_position_km`).  A target is
visible at a time when (the profile's ``[planning]``):

* the Sun's angle from the boresight lies in ``sun_angle_deg`` (the field
  of regard; at L2 the Sun seen from the observatory and from the Earth
  lie on one line, so the geocentric Sun is used);
* on a low Earth orbit, the boresight is at least ``earth_limb_deg`` above
  the Earth's limb (otherwise the Earth occults the target) and at least
  ``moon_angle_deg`` from the Moon.

The allowed V3 position angles at a time are the nominal one, the Sun's
position angle at the target plus 180 degrees (the sunshield faces the Sun),
within ``roll_tolerance_deg``.  Angles are in degrees, times MJD UTC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.coordinates import get_body
from astropy.time import Time

from obsflow.exceptions import PlanningError
from obsflow.models.missiontime import mission_seconds
from obsflow.profiles import Planning, Profile
from obsflow.simulate.environment import orbit_position_km

__all__ = ["Window", "allowed_pa", "allowed_pa_ranges", "nominal_pa_v3", "planning_of", "sun_angle", "visible",
           "windows"]

_EARTH_RADIUS_KM = 6378.137


@dataclass(frozen=True)
class Window:
    """A visibility window, MJD UTC (start, end)."""

    start: float
    end: float

    @property
    def days(self) -> float:
        return self.end - self.start


def planning_of(profile: Profile) -> Planning:
    """The profile's ``[planning]`` section (PlanningError naming the profile if it has none)."""
    if profile.planning is None:
        raise PlanningError(f"profile {profile.mission.name} has no [planning] section "
                            "(field of regard, slew and filter-wheel models)")
    return profile.planning


def _unit(ra: float | np.ndarray, dec: float | np.ndarray) -> np.ndarray:
    ra, dec = np.deg2rad(ra), np.deg2rad(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


def _body_xyz(name: str, mjd: np.ndarray) -> np.ndarray:
    """Geocentric position of ``name`` (N, 3) in equatorial axes, km."""
    body = get_body(name, Time(mjd, format="mjd", scale="utc"))
    return np.asarray(body.cartesian.xyz.to_value("km")).T.reshape(-1, 3)


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between direction vectors (..., 3), degrees."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.rad2deg(np.arccos(np.clip(np.sum(a * b, axis=-1), -1.0, 1.0)))


def sun_angle(ra: float, dec: float, mjd: np.ndarray) -> np.ndarray:
    """Angle between the target (ra, dec) and the Sun at each time, degrees (N,)."""
    mjd = np.atleast_1d(np.asarray(mjd, np.float64))
    return _angle(_unit(ra, dec)[None, :], _body_xyz("sun", mjd))


def visible(profile: Profile, ra: float, dec: float, mjd: np.ndarray) -> np.ndarray:
    """Whether (ra, dec) is observable at each time (module docstring), bool (N,)."""
    plan = planning_of(profile)
    mjd = np.atleast_1d(np.asarray(mjd, np.float64))
    lo, hi = plan.sun_angle_deg
    sun = sun_angle(ra, dec, mjd)
    ok = (sun >= lo) & (sun <= hi)
    if profile.ephemeris.orbit == "LEO":
        target = _unit(ra, dec)[None, :]
        sc = orbit_position_km("LEO", mission_seconds(mjd, profile.mission.time_epoch_tai))
        limb = np.rad2deg(np.arcsin(_EARTH_RADIUS_KM / np.linalg.norm(sc, axis=1)))
        ok &= _angle(target, -sc) >= limb + plan.earth_limb_deg
        if plan.moon_angle_deg > 0:
            ok &= _angle(target, _body_xyz("moon", mjd) - sc) >= plan.moon_angle_deg
    return ok


def windows(profile: Profile, ra: float, dec: float, start: float, end: float,
            step_days: float | None = None) -> list[Window]:
    """Visibility windows of (ra, dec) between MJD ``start`` and ``end``.

    Sampled every ``step_days`` (default: 0.25 day at L2, one minute on a
    low Earth orbit, where occultations last tens of minutes); a window runs
    from its first visible sample to its last.
    """
    if not end > start:
        raise PlanningError(f"visibility: end {end} must be after start {start} (MJD)")
    if step_days is None:
        step_days = 1.0 / 1440.0 if profile.ephemeris.orbit == "LEO" else 0.25
    mjd = np.arange(start, end + step_days / 2, step_days)
    ok = visible(profile, ra, dec, mjd)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], ok.astype(np.int8), [0]])))
    return [Window(float(mjd[a]), float(mjd[b - 1])) for a, b in zip(edges[::2], edges[1::2],
                                                                      strict=True)]


def nominal_pa_v3(ra: float | np.ndarray, dec: float | np.ndarray, mjd: np.ndarray
                  ) -> np.ndarray:
    """The Sun-fixed V3 position angle at (ra, dec): the Sun's position angle + 180, degrees
    (``ra``, ``dec`` one position, or one per time)."""
    sun = _body_xyz("sun", np.atleast_1d(np.asarray(mjd, np.float64)))
    sra = np.arctan2(sun[:, 1], sun[:, 0])
    sdec = np.arcsin(sun[:, 2] / np.linalg.norm(sun, axis=1))
    a, d = np.deg2rad(ra), np.deg2rad(dec)
    pa = np.arctan2(np.sin(sra - a) * np.cos(sdec),
                    np.cos(d) * np.sin(sdec) - np.sin(d) * np.cos(sdec) * np.cos(sra - a))
    return np.asarray((np.rad2deg(pa) + 180.0) % 360.0)


def allowed_pa(profile: Profile, ra: float, dec: float, mjd: float) -> tuple[float, float]:
    """The V3 position angles allowed at ``mjd``: (low, high) degrees, ``low`` in [0, 360).

    The range may wrap through 0 (``high`` > 360); (0, 360) when any roll is allowed.
    """
    low, high = allowed_pa_ranges(profile, ra, dec, np.array([mjd]))
    return float(low[0]), float(high[0])


def allowed_pa_ranges(profile: Profile, ra: float | np.ndarray, dec: float | np.ndarray,
                      mjd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`allowed_pa` at every time of ``mjd`` (``ra``, ``dec`` one position, or one per
    time), the Sun's positions computed at once: (low, high) arrays, degrees."""
    mjd = np.atleast_1d(np.asarray(mjd, np.float64))
    tol = planning_of(profile).roll_tolerance_deg
    if tol >= 180.0:
        return np.zeros(mjd.shape), np.full(mjd.shape, 360.0)
    low = (nominal_pa_v3(ra, dec, mjd) - tol) % 360.0
    return low, low + 2 * tol


def pa_allowed(low: float, high: float, pa: float) -> bool:
    """Whether ``pa`` (degrees) lies in the range (``low``, ``high``) of :func:`allowed_pa`."""
    return (pa - low) % 360.0 <= high - low
