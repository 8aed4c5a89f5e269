"""Visibility windows and position angles against an independent astropy computation."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord, get_body
from astropy.time import Time

from obsflow.exceptions import PlanningError
from obsflow.planning.visibility import allowed_pa, nominal_pa_v3, visible, windows
from obsflow.profiles import load_profile

START, END = 61300.0, 61665.0


def _astropy_sun_angle(ra: float, dec: float, mjd: np.ndarray) -> np.ndarray:
    """The Sun's separation from the target as astropy's frames compute it (GCRS)."""
    sun = get_body("sun", Time(mjd, format="mjd", scale="utc"))
    return np.asarray(sun.separation(SkyCoord(ra * u.deg, dec * u.deg), origin_mismatch="ignore").deg)


@pytest.mark.parametrize(("ra", "dec"), [(53.16, -27.78), (201.7, -47.48), (80.49, -69.5),
                                         (270.0, 66.56), (10.0, 5.0)])
def test_windows_match_the_sun_angle(ra: float, dec: float) -> None:
    prof = load_profile("webb_like")
    lo, hi = prof.planning.sun_angle_deg  # type: ignore[union-attr]
    wins = windows(prof, ra, dec, START, END)
    mjd = np.arange(START, END, 0.5)
    angle = _astropy_sun_angle(ra, dec, mjd)
    truth = (angle >= lo) & (angle <= hi)
    inside = np.zeros(mjd.size, bool)
    for w in wins:
        inside |= (mjd >= w.start) & (mjd <= w.end)
    # agree everywhere but within one 0.25-day sample of a window edge
    edge = np.zeros(mjd.size, bool)
    for w in wins:
        edge |= (np.abs(mjd - w.start) < 0.25) | (np.abs(mjd - w.end) < 0.25)
    assert np.array_equal(inside[~edge], truth[~edge])
    assert truth.any()


def test_ecliptic_pole_is_always_visible_and_the_anti_sun_never() -> None:
    prof = load_profile("webb_like")
    assert [(w.start, w.end) for w in windows(prof, 270.0, 66.56, START, END)] == [(START, END)]
    mjd = np.arange(START, END, 30.0)
    sun = get_body("sun", Time(mjd, format="mjd"))
    anti = [bool(visible(prof, (s.ra.deg + 180) % 360, -s.dec.deg, np.array([m]))[0])
            for s, m in zip(sun, mjd, strict=True)]
    assert not any(anti)


def test_position_angle_follows_the_sun() -> None:
    prof = load_profile("webb_like")
    ra, dec, mjd = 53.16, -27.78, 61400.0
    target = SkyCoord(ra * u.deg, dec * u.deg)
    sun = get_body("sun", Time(mjd, format="mjd"))
    expected = (target.position_angle(SkyCoord(sun.ra, sun.dec)).deg + 180.0) % 360.0
    assert nominal_pa_v3(ra, dec, np.array([mjd]))[0] == pytest.approx(expected, abs=0.05)
    lo, hi = allowed_pa(prof, ra, dec, mjd)
    assert hi - lo == pytest.approx(10.0) and (lo + 5.0) % 360 == pytest.approx(expected, abs=0.05)
    assert allowed_pa(load_profile("smallsat"), ra, dec, mjd) == (0.0, 360.0)


def test_low_earth_orbit_occults_targets_each_orbit() -> None:
    prof = load_profile("smallsat")
    wins = windows(prof, 270.0, 66.56, 61400.0, 61400.5)
    assert len(wins) >= 4  # ~95-minute orbits: the Earth hides the target part of each
    gaps = [b.start - a.end for a, b in zip(wins, wins[1:], strict=False)]
    assert all(0.005 < g < 0.066 for g in gaps)


def test_bad_interval_is_refused() -> None:
    with pytest.raises(PlanningError, match="must be after start"):
        windows(load_profile("webb_like"), 0.0, 0.0, 61400.0, 61300.0)
