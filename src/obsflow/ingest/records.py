"""Non-science telemetry: observation-log records, engineering samples, ephemeris files.

Pure parsing of decoded packets (or file bytes) into plain rows; the ledger
writes them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.table import Table

from obsflow.exceptions import PacketError, RawFileError
from obsflow.models.missiontime import mjd_utc
from obsflow.profiles import Profile
from obsflow.telemetry import PacketTable, decode_engineering, decode_obslog

__all__ = ["engineering_rows", "ephemeris_rows", "observation_log_rows"]

_EPHEM_COLUMNS = ("mjd_utc", "x_km", "y_km", "z_km", "vx_km_s", "vy_km_s", "vz_km_s")


def observation_log_rows(packets: PacketTable) -> list[dict[str, Any]]:
    """Decode the observation-log records of CRC-good housekeeping packets.

    Returns dicts with ``exposure_id``, ``apid``, ``status``,
    ``packets_expected``, ``rows_per_packet`` and ``meta`` (the ExposureMeta
    fields).  A malformed record (:func:`~obsflow.telemetry.decode_obslog`)
    raises :class:`~obsflow.exceptions.PacketError` naming the packet's byte offset.
    """
    rows = []
    for i in np.flatnonzero(packets.crc_ok):
        try:
            record = decode_obslog(packets.payload(int(i)))
        except ValueError as exc:
            raise PacketError(packets.source, int(packets.offset[i]), str(exc)) from exc
        if record is None:
            continue
        rows.append({"exposure_id": record.exposure_id, "apid": record.apid,
                     "status": record.status, "packets_expected": record.packets_expected,
                     "rows_per_packet": record.rows_per_packet, "meta": dict(record.meta)})
    return rows


def engineering_rows(packets: PacketTable, profile: Profile) -> list[dict[str, Any]]:
    """(mjd_utc, channel, value) rows of CRC-good engineering packets."""
    good = packets.select(packets.crc_ok)
    channels = profile.engineering.channels
    if not len(good):
        return []
    try:
        values = decode_engineering(good.payloads(), channels)
    except ValueError as exc:
        raise RawFileError(f"{packets.source}: {exc}") from exc
    mjd = mjd_utc(good.time_seconds(), profile.mission.time_epoch_tai)
    return [{"mjd_utc": float(t), "channel": ch, "value": float(v)}
            for t, row in zip(mjd, values, strict=True) for ch, v in zip(channels, row, strict=True)]


def ephemeris_rows(data: bytes, source: str) -> list[dict[str, float]]:
    """Rows of an ephemeris ECSV file; ``RawFileError`` naming the file when malformed."""
    try:
        table = Table.read(data.decode("utf-8"), format="ascii.ecsv")
    except Exception as exc:  # astropy raises many kinds for bad ECSV
        raise RawFileError(f"{source}: not a readable ECSV ephemeris: {exc}") from exc
    missing = [c for c in _EPHEM_COLUMNS if c not in table.colnames]
    if missing:
        raise RawFileError(f"{source}: ephemeris lacks columns {missing}; expected {_EPHEM_COLUMNS}")
    return [{c: float(row[c]) for c in _EPHEM_COLUMNS} for row in table]
