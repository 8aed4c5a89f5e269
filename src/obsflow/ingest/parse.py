"""Turning a raw file's bytes into what it contributes to the ledger (no database here)."""

from __future__ import annotations

import mmap

import numpy as np

from obsflow.exceptions import RawFileError
from obsflow.ingest.ledger import FileContent
from obsflow.ingest.records import engineering_rows, ephemeris_rows, observation_log_rows
from obsflow.profiles import Profile
from obsflow.telemetry import PayloadKind, apid_kinds, continuity, decode
from obsflow.telemetry.packets import IDLE_APID

__all__ = ["parse_file"]


def _continuity(apid: int, seq_count: np.ndarray) -> dict[str, int]:
    """Sequence-count continuity of one APID's CRC-good packets in one file."""
    report = continuity(seq_count)
    u = report.unwrapped - (report.unwrapped[0] if report.unwrapped.size else 0)
    return {"apid": apid, "packets": report.n_packets,
            "first_count": int(u.min()) if u.size else 0, "last_count": int(u.max()) if u.size else 0,
            "missing": report.n_missing, "duplicates": report.n_duplicates,
            "out_of_order": report.n_out_of_order}


def parse_file(data: bytes | mmap.mmap, name: str, kind: str, profile: Profile) -> FileContent:
    """Parse one raw file.

    Raises
    ------
    RawFileError
        The file holds nothing obsflow can read (no valid packet, a bad
        ephemeris table, an unknown kind), no packet of an APID of
        ``profile``, or an observation-log record of another telescope,
        instrument or detector; the message names the file and, where it
        applies, the byte offset or the exposure.
    """
    if kind == "ephemeris":
        return FileContent(ephemeris=ephemeris_rows(bytes(data), name))
    if kind != "packets":
        raise RawFileError(f"{name}: unknown file type (expected .ccsds packets or .ecsv ephemeris)")
    table = decode(np.frombuffer(data, np.uint8), source=name, tolerant=True)
    if not len(table):
        raise RawFileError(f"{name}: no valid CCSDS packet in {len(data)} bytes "
                         f"({'; '.join(s.reason for s in table.skipped[:3])})")
    content = FileContent(packets=len(table), crc_failures=int((~table.crc_ok).sum()),
                          skipped_bytes=sum(s.nbytes for s in table.skipped))
    kinds = apid_kinds(profile)
    by_apid = table.split_by_apid()
    known = [int(a) for a in by_apid if int(a) in kinds]
    # CRC-good packets only: a corrupted header may carry any APID
    unknown = {int(a): int(p.crc_ok.sum()) for a, p in by_apid.items()
               if int(a) not in kinds and int(a) != IDLE_APID and p.crc_ok.any()}
    if unknown and not known:
        raise RawFileError(
            f"{name}: no packet of an APID of profile {profile.mission.name} (found "
            f"{_apid_counts(unknown)}; expected APIDs {', '.join(map(str, sorted(kinds)))}): "
            f"data of another telescope or profile?")
    content.unknown_apids = unknown
    for apid, packets in by_apid.items():
        content.continuity.append(_continuity(int(apid), packets.seq_count[packets.crc_ok]))
        carries = kinds.get(apid)
        if carries is PayloadKind.SCIENCE:
            content.science[apid] = packets
        elif carries is PayloadKind.OBSERVATION_LOG:
            content.obslog = observation_log_rows(packets)
            for row in content.obslog:
                _check_record(row, profile, name)
        elif carries is PayloadKind.ENGINEERING:
            content.engineering = engineering_rows(packets, profile)
    return content


def _apid_counts(counts: dict[int, int]) -> str:
    return ", ".join(f"{n} packets of APID {a}" for a, n in sorted(counts.items()))


def _check_record(row: dict[str, object], profile: Profile, name: str) -> None:
    """Refuse an observation-log record of another telescope, instrument or detector."""
    meta, exposure = row["meta"], row["exposure_id"]
    assert isinstance(meta, dict)
    where = f"{name}: observation-log record of exposure {exposure}"
    if meta.get("telescope") != profile.mission.telescope:
        raise RawFileError(f"{where}: telescope {meta.get('telescope')!r}; expected "
                               f"{profile.mission.telescope!r} (profile {profile.mission.name})")
    detectors = {(i.name, d.name) for i in profile.instruments for d in i.detectors}
    if (meta.get("instrument"), meta.get("detector")) not in detectors:
        raise RawFileError(
            f"{where}: instrument {meta.get('instrument')!r} detector {meta.get('detector')!r}; "
            f"expected one of {', '.join(f'{i}/{d}' for i, d in sorted(detectors))} "
            f"(profile {profile.mission.name})")
