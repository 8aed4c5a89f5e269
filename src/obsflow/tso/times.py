"""When each integration was taken: MJD UTC and barycentric (BJD TDB) mid-times.

An integration's mid-time is the mean of its first and last group's mean
read time.  Reads follow the exposure's start (``EXPSTART``, MJD UTC): each
integration is one reset frame plus ``ngroups * (nframes + groupgap) -
groupgap`` frames of ``TFRAME`` seconds; group ``g``'s last read is frame
``g (nframes + groupgap) + nframes`` after the reset, its mean read
``(nframes - 1) / 2`` frames earlier.

The barycentric time adds the light travel time (Roemer delay, as
:meth:`astropy.time.Time.light_travel_time` computes it) from the
observatory to the solar-system barycentre along the target's direction:
``n . (r_earth + r_obs) / c`` with ``r_earth`` the Earth's barycentric
position (:func:`astropy.coordinates.get_body_barycentric`, at the TDB
time) and ``r_obs`` the observatory's Earth-centred position.  Written out
rather than through ``light_travel_time(location=...)``, which needs the
observatory as an Earth-fixed (ITRS) location and so Earth-orientation
(IERS) tables for the date, unavailable offline and for future dates; the
GCRS position needs no rotation.  The tests compare it with
``light_travel_time`` itself.  The ephemeris (Earth-centred equatorial positions in
km, columns ``mjd_utc``, ``x_km``, ``y_km``, ``z_km``, as the simulator
writes and ingest stores) is interpolated linearly to each time (positions
every 600 s along an orbit at L2 are off by far less than the 300 km that
one millisecond of light covers).
"""

from __future__ import annotations

import numpy as np
from astropy import constants
from astropy import units as u
from astropy.coordinates import SkyCoord, get_body_barycentric
from astropy.table import Table
from astropy.time import Time

from obsflow.exceptions import ProductFileError
from obsflow.models.metadata import ExposureMeta

__all__ = ["barycentric_tdb", "integration_mid_utc", "observatory_gcrs_km"]


def integration_mid_utc(meta: ExposureMeta) -> Time:
    """Mid-time of every integration of ``meta``, a UTC :class:`~astropy.time.Time` (nints,)."""
    period = meta.nframes + meta.groupgap
    frames = meta.ngroups * period - meta.groupgap
    first = meta.nframes - (meta.nframes - 1) / 2
    last = (meta.ngroups - 1) * period + meta.nframes - (meta.nframes - 1) / 2
    offset_frames = np.arange(meta.nints) * (frames + 1) + 1 + (first + last) / 2
    start = Time(meta.expstart, format="mjd", scale="utc")
    return start + offset_frames * meta.frame_time * u.s


def observatory_gcrs_km(ephemeris: Table, times: Time, source: str = "ephemeris") -> np.ndarray:
    """Observatory positions (n, 3), km, Earth-centred equatorial, interpolated at ``times``.

    ``ProductFileError`` naming ``source`` when a column is missing or a time
    falls outside the ephemeris.
    """
    missing = [c for c in ("mjd_utc", "x_km", "y_km", "z_km") if c not in ephemeris.colnames]
    if missing:
        raise ProductFileError(f"{source}: ephemeris lacks columns {missing}")
    grid = np.asarray(ephemeris["mjd_utc"], np.float64)
    order = np.argsort(grid)
    grid = grid[order]
    mjd = np.atleast_1d(times.utc.mjd)
    if mjd.size and (mjd.min() < grid[0] or mjd.max() > grid[-1]):
        raise ProductFileError(
            f"{source}: ephemeris covers MJD {grid[0]:.6f}..{grid[-1]:.6f} UTC, "
            f"expected it to cover {mjd.min():.6f}..{mjd.max():.6f}")
    return np.stack([np.interp(mjd, grid, np.asarray(ephemeris[c], np.float64)[order])
                     for c in ("x_km", "y_km", "z_km")], axis=1)


def barycentric_tdb(times: Time, ra_deg: float, dec_deg: float, ephemeris: Table,
                    source: str = "ephemeris") -> Time:
    """Barycentric (TDB) times of arrival at the observatory of light from (ra, dec) ICRS."""
    utc = Time(np.atleast_1d(times.utc.jd1), np.atleast_1d(times.utc.jd2), format="jd", scale="utc")
    tdb = utc.tdb
    observer = get_body_barycentric("earth", tdb).xyz.to_value(u.km)  # (3, n)
    observer = observer + observatory_gcrs_km(ephemeris, utc, source).T
    direction = SkyCoord(ra_deg * u.deg, dec_deg * u.deg, frame="icrs").cartesian.xyz.value
    delay_s = direction @ observer / constants.c.to_value(u.km / u.s)
    return tdb + delay_s * u.s
