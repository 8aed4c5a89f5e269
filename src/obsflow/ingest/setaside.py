"""What ingest set aside instead of processing, and why.

Three kinds of downlink data never become products, and an operator must
hear of each:

* *quarantined* raw files: archived, but unparseable (no valid packet, a
  bad ephemeris, no packet of the profile's APIDs, an observation log of
  another telescope), linked into ``quarantine/`` with the reason;
* *unassemblable* packets: archived and counted in a parsed file, but of an
  APID the site's profile does not define (another telescope's data mixed
  into a dump), so no exposure is ever assembled from them;
* *refused* incoming entries: symbolic links, folders, FIFOs, sockets or
  devices in ``incoming/``, which ingest never takes (they stay in place).

:func:`set_aside` reads all three (the ledger and the incoming folder);
``obsflow ingest`` and ``obsflow run`` compare it before and after their
work and exit with status 3 when something new was set aside,
``obsflow status`` lists it all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from obsflow.config import SiteConfig
from obsflow.dbread import SiteReader, reading
from obsflow.ingest.incoming import scan_incoming
from obsflow.telemetry.apids import IDLE_APID, apid_kinds

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from obsflow.profiles import Profile

__all__ = ["SetAside", "set_aside"]


@dataclass(frozen=True)
class SetAside:
    """Everything set aside at one moment (see the module docstring).

    Attributes
    ----------
    quarantined : list of (raw file id, name, reason)
    unassemblable : list of (raw file id, name, {APID: packets})
        Packets (CRC-good) of APIDs the profile does not define, per parsed file.
    refused : list of (path, reason)
        Incoming entries ingest will not take.
    """

    quarantined: list[tuple[int, str, str]]
    unassemblable: list[tuple[int, str, dict[int, int]]]
    refused: list[tuple[Path, str]]
    profile: str

    def lines(self) -> dict[str, str]:
        """One line per item, keyed so that two snapshots can be compared."""
        out = {f"quarantined:{i}": f"quarantined {name}: {reason.removeprefix(f'{name}: ')}"
               for i, name, reason in self.quarantined}
        for i, name, counts in self.unassemblable:
            found = ", ".join(f"{n} packets of APID {a}" for a, n in sorted(counts.items()))
            out[f"unassemblable:{i}"] = (f"unassemblable {name}: {found}; expected the APIDs of "
                                         f"profile {self.profile} (never assembled)")
        for path, reason in self.refused:
            out[f"refused:{path.name}"] = f"refused {path}: {reason}"
        return out

    def as_dict(self) -> dict[str, list[dict[str, object]]]:
        """JSON-able form (``obsflow status --json``)."""
        return {
            "quarantined": [{"name": n, "reason": r} for _, n, r in self.quarantined],
            "unassemblable": [{"name": n, "apid": a, "packets": k}
                              for _, n, c in self.unassemblable for a, k in sorted(c.items())],
            "refused": [{"path": str(p), "reason": r} for p, r in self.refused],
        }


_QUARANTINED = "SELECT id, name, reason FROM raw_files WHERE state = 'quarantined' ORDER BY id"
_PER_APID = ("SELECT f.id, f.name, c.apid, c.packets FROM apid_continuity c "
             "JOIN raw_files f ON f.id = c.raw_file_id WHERE c.packets > 0 ORDER BY f.id, c.apid")


def set_aside(db: SiteReader | Engine, cfg: SiteConfig, profile: Profile) -> SetAside:
    """What the site's ledger and incoming folder hold that will never become a product."""
    known = {*apid_kinds(profile), IDLE_APID}
    with reading(db) as reader:
        quarantined = [(int(i), name, reason or "") for i, name, reason
                       in reader.rows(_QUARANTINED)]
        rows = reader.rows(_PER_APID)
    files: dict[int, tuple[str, dict[int, int]]] = {}
    for file_id, name, apid, packets in rows:
        if int(apid) not in known:  # APIDs the profile does not define
            files.setdefault(int(file_id), (name, {}))[1][int(apid)] = int(packets)
    unassemblable = [(i, name, counts) for i, (name, counts) in files.items()]
    refused = scan_incoming(cfg.incoming_dir, cfg.ingest.settle_seconds, time.time()).refused
    return SetAside(quarantined, unassemblable, refused, profile.mission.name)
