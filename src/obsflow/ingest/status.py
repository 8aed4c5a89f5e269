"""Reading the ledger back: accounting status and the retransmission request."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from obsflow.ingest.locking import transaction, utcnow
from obsflow.ingest.tables import (
    ApidContinuity,
    ExposureLedger,
    ObservationLog,
    PacketRange,
    RawFile,
)

__all__ = ["accounting_status", "gap_report", "retransmission_request"]


def accounting_status(engine: Engine, now: datetime | None = None) -> dict[str, Any]:
    """Counts for ``obsflow status`` (JSON-able)."""
    now = now or utcnow()
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with transaction(engine) as session:
        files = session.execute(select(RawFile)).scalars().all()
        states = dict(session.execute(select(ExposureLedger.state, func.count())
                                      .group_by(ExposureLedger.state)).all())
        per_apid = session.execute(
            select(ApidContinuity.apid, func.sum(ApidContinuity.packets),
                   func.sum(ApidContinuity.missing), func.sum(ApidContinuity.duplicates),
                   func.sum(ApidContinuity.out_of_order))
            .group_by(ApidContinuity.apid).order_by(ApidContinuity.apid)).all()
    gaps = gap_report(engine)
    return {
        "files": {
            "total": len(files),
            "today": sum(f.received_at >= day for f in files),
            "redeliveries": sum(f.deliveries - 1 for f in files),
            "by_state": {s: sum(f.state == s for f in files)
                         for s in ("archiving", "archived", "parsed", "quarantined")},
            "bytes": sum(f.size for f in files),
        },
        "packets": {"total": sum(f.packets for f in files),
                    "crc_failures": sum(f.crc_failures for f in files),
                    "skipped_bytes": sum(f.skipped_bytes for f in files)},
        "exposures": {s: int(states.get(s, 0)) for s in ("complete", "partial", "waiting", "skipped")},
        "open_gaps": {"exposures": len(gaps), "packets": sum(g["packets_missing"] for g in gaps)},
        "quarantined": [{"name": f.name, "reason": f.reason} for f in files
                        if f.state == "quarantined"],
        "sequence_counts": [{"apid": a, "packets": int(p), "missing_within_files": int(m),
                             "duplicates_within_files": int(d), "out_of_order": int(o)}
                            for a, p, m, d, o in per_apid],
    }


def gap_report(engine: Engine) -> list[dict[str, Any]]:
    """Missing packet ranges of every exposure expecting more than it received."""
    with transaction(engine) as session:
        rows = session.execute(
            select(ExposureLedger, ObservationLog.basename)
            .join(ObservationLog, ObservationLog.exposure_id == ExposureLedger.exposure_id,
                  isouter=True)
            .where(ExposureLedger.expected > ExposureLedger.received)
            .order_by(ExposureLedger.exposure_id)).all()
        out: list[dict[str, Any]] = []
        if not rows:
            return out
        import numpy as np  # only with gaps to report: `obsflow status` starts without numpy

        from obsflow.ingest.accounting import gap_ranges

        for ledger, basename in rows:
            ranges = session.execute(select(PacketRange.first, PacketRange.last)
                                     .where(PacketRange.exposure_id == ledger.exposure_id)).all()
            assert ledger.expected is not None
            gaps = gap_ranges(ledger.expected, np.array(ranges, np.int64).reshape(-1, 2))
            out.append({"exposure_id": ledger.exposure_id, "basename": basename,
                        "apid": ledger.apid, "expected": ledger.expected,
                        "received": ledger.received,
                        "packets_missing": int((gaps[:, 1] - gaps[:, 0] + 1).sum()),
                        "missing_ranges": gaps.tolist(), "state": ledger.state})
    return out


def retransmission_request(engine: Engine, site: str) -> dict[str, Any]:
    """The machine-readable request for flight operations (``obsflow accounting gaps``)."""
    gaps = gap_report(engine)
    return {"request": "retransmission", "site": site,
            "generated_utc": utcnow().isoformat(timespec="seconds") + "Z",
            "valid_until_utc": (utcnow() + timedelta(days=7)).isoformat(timespec="seconds") + "Z",
            "exposures": [{k: g[k] for k in ("exposure_id", "basename", "apid", "missing_ranges",
                                             "packets_missing")} for g in gaps],
            "packets_missing": sum(g["packets_missing"] for g in gaps)}
