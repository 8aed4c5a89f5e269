"""Non-science telemetry: observation-log records, engineering samples, ephemeris files.

Pure parsing of decoded packets (or file bytes) into plain rows; the ledger
writes them.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from astropy.table import Table

from obsflow.models.missiontime import mjd_utc
from obsflow.profiles import Profile
from obsflow.telemetry import PacketTable

__all__ = ["engineering_rows", "ephemeris_rows", "observation_log_rows"]

_EPHEM_COLUMNS = ("mjd_utc", "x_km", "y_km", "z_km", "vx_km_s", "vy_km_s", "vz_km_s")


def observation_log_rows(packets: PacketTable) -> list[dict[str, Any]]:
    """Decode the JSON records of CRC-good housekeeping packets.

    Returns dicts with ``exposure_id``, ``apid``, ``status``,
    ``packets_expected``, ``rows_per_packet`` and ``meta`` (the ExposureMeta
    fields).  A record that is not valid JSON raises ``ValueError`` naming
    the packet's byte offset.
    """
    rows = []
    for i in np.flatnonzero(packets.crc_ok):
        try:
            record = json.loads(packets.payload(int(i)).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{packets.source}: byte offset {int(packets.offset[i])}: "
                             f"observation-log record is not JSON: {exc}") from exc
        if record.get("record") != "exposure":
            continue
        meta = {k: v for k, v in record.items()
                if k not in ("record", "apid", "packets_expected", "rows_per_packet")}
        rows.append({"exposure_id": int(record["exposure_id"]), "apid": int(record["apid"]),
                     "status": str(record["status"]),
                     "packets_expected": int(record["packets_expected"]),
                     "rows_per_packet": int(record["rows_per_packet"]), "meta": meta})
    return rows


def engineering_rows(packets: PacketTable, profile: Profile) -> list[dict[str, Any]]:
    """(mjd_utc, channel, value) rows of CRC-good engineering packets."""
    good = packets.select(packets.crc_ok)
    channels = profile.engineering.channels
    if not len(good):
        return []
    payload = good.payloads()
    if payload.shape[1] != 4 * len(channels):
        raise ValueError(f"{packets.source}: engineering packets carry {payload.shape[1]} bytes, "
                         f"expected {4 * len(channels)} (float32 x {len(channels)} channels)")
    values = payload.view(">f4").astype(np.float64)
    mjd = mjd_utc(good.time_seconds(), profile.mission.time_epoch_tai)
    return [{"mjd_utc": float(t), "channel": ch, "value": float(v)}
            for t, row in zip(mjd, values, strict=True) for ch, v in zip(channels, row, strict=True)]


def ephemeris_rows(data: bytes, source: str) -> list[dict[str, float]]:
    """Rows of an ephemeris ECSV file; ``ValueError`` naming the file when malformed."""
    try:
        table = Table.read(data.decode("utf-8"), format="ascii.ecsv")
    except Exception as exc:  # astropy raises many kinds for bad ECSV
        raise ValueError(f"{source}: not a readable ECSV ephemeris: {exc}") from exc
    missing = [c for c in _EPHEM_COLUMNS if c not in table.colnames]
    if missing:
        raise ValueError(f"{source}: ephemeris lacks columns {missing}; expected {_EPHEM_COLUMNS}")
    return [{c: float(row[c]) for c in _EPHEM_COLUMNS} for row in table]
