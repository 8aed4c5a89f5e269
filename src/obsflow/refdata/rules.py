"""The one place that decides which reference file applies to an exposure ("best refs").

For each reference type, a candidate must match the exposure's

1. telescope and instrument exactly, and the detector (a file whose
   DETECTOR is ``ANY``, the astrometric catalog, matches every detector);
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

:func:`obsflow.refdata.select.bulk_select` applies the same rules to many
products at once; it gives the same answer as :func:`best_reference`
product by product.  This module imports neither numpy nor astropy (``obsflow
refs best`` starts fast); :func:`exposure_start_iso` converts EXPSTART in pure
Python, as astropy does (a test compares them).  The rules are summed up in
:data:`RULES`, and :data:`RULES_VERSION` (its sha256) identifies them in
every reference context: change a rule here, update :data:`RULES`, and the
next context records the new version.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING

from obsflow.refdata.records import ANY, REFTYPES, RefRecord

if TYPE_CHECKING:
    from obsflow.models.metadata import ExposureMeta

__all__ = ["REFTYPES", "RULES", "RULES_VERSION", "Selection", "best_reference", "exposure_start_iso",
           "mjd_utc_iso"]


RULES: tuple[str, ...] = (
    "telescope and instrument match exactly; detector matches, or the file's DETECTOR is ANY",
    "filter matches, or the file's FILTER is ANY",
    "readout pattern matches, or the file's READPATT is ANY",
    "subarray is the exposure's or FULL; an exact subarray match beats FULL",
    "USEAFTER <= EXPSTART (ISO UTC, seconds)",
    "latest USEAFTER wins; ties: latest delivery, then the file name",
)
"""The selection rules in words; their sha256 is :data:`RULES_VERSION`."""

RULES_VERSION = "sha256:" + hashlib.sha256("\n".join(RULES).encode()).hexdigest()[:16]
"""Identifies the selection rules in force (recorded in every reference context)."""


@dataclass(frozen=True)
class Selection:
    """The chosen file of one reference type (None if nothing matched) and every verdict."""

    reftype: str
    chosen: RefRecord | None
    verdicts: list[tuple[RefRecord, str]] = field(default_factory=list)


_MJD_ZERO = datetime(1858, 11, 17)
"""The calendar date of MJD 0 (midnight UTC)."""

_MJD_1972 = 41317
"""MJD of 1972-01-01: UTC days before it were not 86,400 SI seconds long."""

_MS_PER_DAY = 86_400_000


def mjd_utc_iso(mjd: float) -> str:
    """An MJD (UTC) as ISO ``YYYY-MM-DDThh:mm:ss``: astropy's ``Time(mjd, format="mjd",
    scale="utc").isot`` (rounded to the millisecond) cut to seconds.

    Computed exactly in pure Python (the day fraction of the binary value,
    rounded half up to the millisecond, as ERFA's ``d2dtf`` does) on days of
    86,400 s; a day that may hold a leap second (the last day of a month), a
    date before 1972 or outside years 1-9999 is converted by astropy itself.
    """
    day = math.floor(mjd) if math.isfinite(mjd) else None
    if day is not None and _MJD_1972 <= day < 2_973_484:  # 9999-12-31
        date = _MJD_ZERO + timedelta(days=day)
        if (date + timedelta(days=1)).day != 1:
            ms = math.floor((Fraction(mjd) - day) * _MS_PER_DAY + Fraction(1, 2))
            return (date + timedelta(milliseconds=ms)).isoformat(timespec="seconds")
    from astropy.time import Time

    return str(Time(mjd, format="mjd", scale="utc").isot)[:19]


def exposure_start_iso(meta: ExposureMeta) -> str:
    """EXPSTART (MJD UTC) as an ISO UTC string, seconds precision (:func:`mjd_utc_iso`)."""
    return mjd_utc_iso(meta.expstart)


def _mismatch(rec: RefRecord, meta: ExposureMeta, start: str) -> str:
    for what, mine, theirs in (("telescope", rec.telescope, meta.telescope),
                               ("instrument", rec.instrument, meta.instrument),
                               ("detector", rec.detector, meta.detector)):
        if mine != theirs and not (what == "detector" and mine == ANY):
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
