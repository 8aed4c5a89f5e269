"""A quick look at a downlink folder: what the packets say, before any ingest.

Decodes every ``*.ccsds`` file tolerantly with the project's codec and counts,
per APID, packets, CRC failures, skipped bytes, sequence-count gaps and
duplicates, and which science exposures appear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from obsflow.profiles import Profile
from obsflow.telemetry import apid_kinds, continuity, decode_file

__all__ = ["ApidSummary", "summarize_downlink"]


@dataclass
class ApidSummary:
    """Counts for one APID across all files of a downlink folder."""

    apid: int
    kind: str
    packets: int = 0
    crc_failures: int = 0
    missing: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    exposures: set[int] = field(default_factory=set)


def summarize_downlink(folder: Path, profile: Profile) -> tuple[dict[int, ApidSummary], int, int]:
    """Per-APID summaries, total files and total skipped bytes of ``folder``."""
    kinds = {a: k.value for a, k in apid_kinds(profile).items()}
    kinds |= {a: f"science {d}" for a, (_, d) in profile.science_apids().items()}
    summaries: dict[int, ApidSummary] = {}
    seqs: dict[int, list[np.ndarray]] = {}
    files = sorted(Path(folder).glob("*.ccsds"))
    skipped = 0
    for path in files:
        table = decode_file(path, tolerant=True)
        skipped += sum(s.nbytes for s in table.skipped)
        for apid, sub in table.split_by_apid().items():
            s = summaries.setdefault(apid, ApidSummary(apid, kinds.get(apid, "unknown")))
            s.packets += len(sub)
            s.crc_failures += int((~sub.crc_ok).sum())
            good = sub.select(sub.crc_ok)
            s.exposures |= set(np.unique(good.exposure_id[good.exposure_id > 0]).tolist())
            seqs.setdefault(apid, []).append(good.seq_count)
    for apid, parts in seqs.items():
        report = continuity(np.concatenate(parts))
        summaries[apid].missing = report.n_missing
        summaries[apid].duplicates = report.n_duplicates
        summaries[apid].out_of_order = report.n_out_of_order
    return summaries, len(files), skipped
