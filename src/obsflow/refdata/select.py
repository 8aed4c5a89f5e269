"""The one place that decides which reference file applies to an exposure ("best refs").

For each reference type, a candidate must match the exposure's

1. telescope, instrument and detector exactly;
2. filter, when the file names one (``ANY`` matches every filter; FLAT
   files always name one);
3. readout pattern, when the file names one (``ANY`` matches all);
4. subarray: the exposure's own subarray, or ``FULL`` (a full-frame file is
   cut to the subarray window); an exact subarray match beats ``FULL``;
5. USEAFTER not later than the exposure start (EXPSTART).

Among the candidates left, the best is the one with the latest USEAFTER;
equal USEAFTERs go to the latest delivery (then the file name, so the
choice is always deterministic).  :func:`best_reference` returns the choice
and, for every file considered, why it was or was not chosen.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from astropy.time import Time

from obsflow.models.metadata import ExposureMeta
from obsflow.refdata.validate import ANY, RefRecord

__all__ = ["Selection", "best_reference", "exposure_start_iso"]


@dataclass(frozen=True)
class Selection:
    """The chosen file of one reference type (None if nothing matched) and every verdict."""

    reftype: str
    chosen: RefRecord | None
    verdicts: list[tuple[RefRecord, str]] = field(default_factory=list)


def exposure_start_iso(meta: ExposureMeta) -> str:
    """EXPSTART (MJD UTC) as an ISO UTC string, seconds precision."""
    return str(Time(meta.expstart, format="mjd", scale="utc").isot)[:19]


def _mismatch(rec: RefRecord, meta: ExposureMeta, start: str) -> str:
    for what, mine, theirs in (("telescope", rec.telescope, meta.telescope),
                               ("instrument", rec.instrument, meta.instrument),
                               ("detector", rec.detector, meta.detector)):
        if mine != theirs:
            return f"{what} {mine} != {theirs}"
    if rec.filter != ANY and rec.filter != meta.filter:
        return f"filter {rec.filter} != {meta.filter}"
    if rec.readpatt != ANY and rec.readpatt != meta.readpatt:
        return f"readout pattern {rec.readpatt} != {meta.readpatt}"
    if rec.subarray not in ("FULL", meta.subarray):
        return f"subarray {rec.subarray} != {meta.subarray}"
    if rec.useafter > start:
        return f"USEAFTER {rec.useafter} is after the exposure start {start}"
    return ""


def best_reference(records: Iterable[RefRecord], meta: ExposureMeta, reftype: str) -> Selection:
    """Choose the reference file of ``reftype`` for the exposure ``meta`` (rules above)."""
    start = exposure_start_iso(meta)
    verdicts: list[tuple[RefRecord, str]] = []
    matching: list[RefRecord] = []
    for rec in records:
        if rec.reftype != reftype:
            continue
        why = _mismatch(rec, meta, start)
        verdicts.append((rec, f"rejected: {why}" if why else ""))
        if not why:
            matching.append(rec)
    if not matching:
        return Selection(reftype, None, verdicts)

    def rank(r: RefRecord) -> tuple[bool, str, str, str]:
        return (r.subarray == meta.subarray, r.useafter, r.delivered, r.name)

    chosen = max(matching, key=rank)
    out = []
    for rec, verdict in verdicts:
        if verdict:
            out.append((rec, verdict))
        elif rec is chosen:
            out.append((rec, f"chosen: latest USEAFTER {rec.useafter} <= {start}"
                             + (f", delivered {rec.delivered}" if rec.delivered else "")))
        else:
            out.append((rec, "superseded: an exact-subarray match, later USEAFTER or later "
                             "delivery wins"))
    return Selection(reftype, chosen, out)
