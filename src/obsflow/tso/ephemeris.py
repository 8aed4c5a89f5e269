"""The observatory's ephemeris as ingest stored it (table ``ephemeris``), for a time range."""

from __future__ import annotations

from astropy.table import Table
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from obsflow.exceptions import ProductFileError
from obsflow.ingest.tables import EphemerisPoint

__all__ = ["ingested_ephemeris"]

_COLUMNS = ("mjd_utc", "x_km", "y_km", "z_km", "vx_km_s", "vy_km_s", "vz_km_s")


def ingested_ephemeris(engine: Engine, start_mjd: float, end_mjd: float,
                       margin_days: float = 0.05) -> Table:
    """Ephemeris rows from ``start_mjd - margin`` to ``end_mjd + margin`` (MJD UTC), by time.

    ``ProductFileError`` when the site holds none there (ingest the ephemeris file first).
    """
    with Session(engine) as session:
        rows = session.execute(
            select(*(getattr(EphemerisPoint, c) for c in _COLUMNS))
            .where(EphemerisPoint.mjd_utc >= start_mjd - margin_days,
                   EphemerisPoint.mjd_utc <= end_mjd + margin_days)
            .order_by(EphemerisPoint.mjd_utc)).all()
    if not rows:
        raise ProductFileError(f"site database: no ephemeris between MJD {start_mjd:.5f} and "
                               f"{end_mjd:.5f} UTC; expected ingest to have stored the "
                               f"observatory's ephemeris file")
    return Table(rows=[tuple(r) for r in rows], names=_COLUMNS)
