"""Reading the ledger back: accounting status and the retransmission request.

Plain SQL through a :class:`~obsflow.dbread.SiteReader` (``obsflow status``
reads a SQLite site with :mod:`sqlite3`, importing no SQLAlchemy); each
function also takes a SQLAlchemy engine (read through SQLAlchemy Core).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from obsflow.dbread import SiteReader, as_datetime, reading, utcnow

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["accounting_status", "gap_report", "retransmission_request"]

_FILES = ("SELECT name, state, reason, received_at, deliveries, size, packets, crc_failures, "
          "skipped_bytes FROM raw_files ORDER BY id")
_PER_APID = ("SELECT apid, SUM(packets), SUM(missing), SUM(duplicates), SUM(out_of_order) "
             "FROM apid_continuity GROUP BY apid ORDER BY apid")
_GAPS = ("SELECT l.exposure_id, o.basename, l.apid, l.expected, l.received, l.state "
         "FROM ledger_exposures l LEFT OUTER JOIN observation_log o "
         "ON o.exposure_id = l.exposure_id WHERE l.expected > l.received ORDER BY l.exposure_id")
_RANGES = ('SELECT "first", "last" FROM ledger_packet_ranges WHERE exposure_id = :exposure '
           "ORDER BY id")


def accounting_status(db: SiteReader | Engine, now: datetime | None = None) -> dict[str, Any]:
    """Counts for ``obsflow status`` (JSON-able)."""
    now = now or utcnow()
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with reading(db) as reader:
        files = reader.rows(_FILES)
        states = {state: int(n) for state, n in reader.rows(
            "SELECT state, COUNT(*) FROM ledger_exposures GROUP BY state")}
        per_apid = reader.rows(_PER_APID)
        gaps = gap_report(reader)
    received = [as_datetime(f[3]) for f in files]
    return {
        "files": {
            "total": len(files),
            "today": sum(r is not None and r >= day for r in received),
            "redeliveries": sum(int(f[4]) - 1 for f in files),
            "by_state": {s: sum(f[1] == s for f in files)
                         for s in ("archiving", "archived", "parsed", "quarantined")},
            "bytes": sum(int(f[5]) for f in files),
        },
        "packets": {"total": sum(int(f[6]) for f in files),
                    "crc_failures": sum(int(f[7]) for f in files),
                    "skipped_bytes": sum(int(f[8]) for f in files)},
        "exposures": {s: int(states.get(s, 0)) for s in ("complete", "partial", "waiting", "skipped")},
        "open_gaps": {"exposures": len(gaps), "packets": sum(g["packets_missing"] for g in gaps)},
        "quarantined": [{"name": f[0], "reason": f[2]} for f in files if f[1] == "quarantined"],
        "sequence_counts": [{"apid": int(a), "packets": int(p), "missing_within_files": int(m),
                             "duplicates_within_files": int(d), "out_of_order": int(o)}
                            for a, p, m, d, o in per_apid],
    }


def gap_report(db: SiteReader | Engine) -> list[dict[str, Any]]:
    """Missing packet ranges of every exposure expecting more than it received."""
    out: list[dict[str, Any]] = []
    with reading(db) as reader:
        rows = reader.rows(_GAPS)
        if not rows:
            return out
        import numpy as np  # only with gaps to report: `obsflow status` starts without numpy

        from obsflow.ingest.accounting import gap_ranges

        for exposure_id, basename, apid, expected, received, state in rows:
            ranges = reader.rows(_RANGES, {"exposure": exposure_id})
            gaps = gap_ranges(int(expected), np.array(ranges, np.int64).reshape(-1, 2))
            out.append({"exposure_id": int(exposure_id), "basename": basename,
                        "apid": int(apid), "expected": int(expected),
                        "received": int(received),
                        "packets_missing": int((gaps[:, 1] - gaps[:, 0] + 1).sum()),
                        "missing_ranges": gaps.tolist(), "state": state})
    return out


def retransmission_request(db: SiteReader | Engine, site: str) -> dict[str, Any]:
    """The machine-readable request for flight operations (``obsflow accounting gaps``)."""
    gaps = gap_report(db)
    return {"request": "retransmission", "site": site,
            "generated_utc": utcnow().isoformat(timespec="seconds") + "Z",
            "valid_until_utc": (utcnow() + timedelta(days=7)).isoformat(timespec="seconds") + "Z",
            "exposures": [{k: g[k] for k in ("exposure_id", "basename", "apid", "missing_ranges",
                                             "packets_missing")} for g in gaps],
            "packets_missing": sum(g["packets_missing"] for g in gaps)}
