"""Writing one parsed raw file into the accounting ledger, in one transaction.

Everything a file contributes — observation-log records, engineering
samples, per-exposure packet ranges, duplicate and CRC counts, the file's
own state — is committed together or not at all, so a crash mid-file
leaves the file ``archived`` and the next run parses it again without
counting anything twice.  Writers serialise on the one-row ``ledger_lock``
table (a write lock on SQLite, a row lock on PostgreSQL).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from obsflow.ingest.accounting import coverage, new_packets, packet_runs
from obsflow.ingest.locking import insert_ignore, utcnow, writer
from obsflow.ingest.tables import (
    ApidContinuity,
    EngineeringSample,
    EphemerisPoint,
    ExposureLedger,
    ObservationLog,
    PacketRange,
    RawFile,
)
from obsflow.telemetry import PacketTable

__all__ = ["FileContent", "record_file"]


@dataclass
class FileContent:
    """What one raw file contributes, ready to record (built by the parser)."""

    science: dict[int, PacketTable] = field(default_factory=dict)  # apid -> packets
    obslog: list[dict[str, Any]] = field(default_factory=list)
    engineering: list[dict[str, Any]] = field(default_factory=list)
    ephemeris: list[dict[str, float]] = field(default_factory=list)
    continuity: list[dict[str, int]] = field(default_factory=list)
    packets: int = 0
    crc_failures: int = 0
    skipped_bytes: int = 0
    unknown_apids: dict[int, int] = field(default_factory=dict)  # apid -> packets, never assembled


def _ledger_row(session: Session, exposure_id: int, apid: int) -> ExposureLedger:
    row = session.get(ExposureLedger, exposure_id)
    if row is None:
        now = utcnow()
        log = session.get(ObservationLog, exposure_id)
        row = ExposureLedger(exposure_id=exposure_id, apid=apid, received=0, duplicates=0,
                             crc_failures=0, state="waiting", first_seen=now, updated=now,
                             expected=log.packets_expected if log else None,
                             product_version=0, product_received=0)
        session.add(row)
        session.flush()
    return row


def _received_mask(session: Session, exposure_id: int, size: int) -> np.ndarray:
    ranges = session.execute(select(PacketRange.first, PacketRange.last)
                             .where(PacketRange.exposure_id == exposure_id)).all()
    return coverage(np.array(ranges, np.int64).reshape(-1, 2), size)


def _record_exposure(session: Session, file_id: int, apid: int, exposure_id: int,
                     packets: PacketTable) -> None:
    row = _ledger_row(session, exposure_id, apid)
    good = packets.select(packets.crc_ok)
    row.crc_failures += int((~packets.crc_ok).sum())
    if len(good):
        size = int(max(row.expected or 0, int(good.packet_index.max()) + 1))
        fresh = new_packets(good.packet_index, _received_mask(session, exposure_id, size))
        row.duplicates += int((~fresh).sum())
        row.received += int(fresh.sum())
        row.packet_size = int(good.length[0])
        runs = packet_runs(good.packet_index[fresh], good.offset[fresh], good.length[fresh])
        session.add_all([PacketRange(exposure_id=exposure_id, first=int(a), last=int(b),
                                     raw_file_id=file_id, offset=int(o), packet_size=int(s))
                         for a, b, o, s in runs])
    row.updated = utcnow()


def _record_obslog(session: Session, file_id: int, rows: list[dict[str, Any]]) -> None:
    for rec in rows:
        if session.get(ObservationLog, rec["exposure_id"]) is not None:
            continue
        basename = _basename(rec["meta"])
        session.add(ObservationLog(raw_file_id=file_id, basename=basename, **rec))
        ledger = session.get(ExposureLedger, rec["exposure_id"])
        if ledger is not None and ledger.expected is None:
            ledger.expected = rec["packets_expected"]
        if ledger is None and rec["status"] != "executed":
            now = utcnow()
            session.add(ExposureLedger(exposure_id=rec["exposure_id"], apid=rec["apid"],
                                       expected=0, received=0, duplicates=0, crc_failures=0,
                                       state="skipped", first_seen=now, updated=now,
                                       product_version=0, product_received=0))
    session.flush()


def _basename(meta: dict[str, Any]) -> str:
    from obsflow.models.metadata import product_basename

    return product_basename(meta["program"], meta["observation"], meta["visit"],
                            meta["exposure"], meta["detector"])


def record_file(engine: Engine, file_id: int, content: FileContent) -> None:
    """Commit everything ``content`` says about raw file ``file_id``, atomically."""
    with writer(engine) as session:
        raw = session.get(RawFile, file_id)
        if raw is None or raw.state == "parsed":
            return  # already recorded (re-run after a crash past the commit)
        _record_obslog(session, file_id, content.obslog)
        insert_ignore(session, EngineeringSample.__table__, content.engineering)
        insert_ignore(session, EphemerisPoint.__table__, content.ephemeris)
        insert_ignore(session, ApidContinuity.__table__,
                       [{"raw_file_id": file_id, **c} for c in content.continuity])
        for apid, packets in content.science.items():
            exp_ids = packets.exposure_id
            trusted = set(np.unique(exp_ids[packets.crc_ok]).tolist())
            for exposure_id in np.unique(exp_ids).tolist():
                # a CRC failure's header is not vouched for: attribute it only to an
                # exposure known from good packets or the observation log
                known = (session.get(ExposureLedger, exposure_id) is not None
                         or session.get(ObservationLog, exposure_id) is not None)
                if exposure_id in trusted or known:
                    _record_exposure(session, file_id, apid, int(exposure_id),
                                     packets.select(exp_ids == exposure_id))
        raw.state, raw.parsed_at = "parsed", utcnow()
        raw.packets, raw.crc_failures = content.packets, content.crc_failures
        raw.skipped_bytes = content.skipped_bytes
