"""Reading reference contexts back: plain SQL through a :class:`~obsflow.dbread.SiteReader`.

The one place contexts are read: ``obsflow refs contexts`` and ``refs best``
read through :mod:`sqlite3` on a SQLite site (no SQLAlchemy, no astropy), and
:func:`obsflow.refdata.contexts.load_context` reads through the same
functions on its session's connection.  Writing contexts (delivery, backfill,
pinning) stays in :mod:`obsflow.refdata.contexts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from obsflow.dbread import SiteReader, as_datetime
from obsflow.exceptions import ContextNotFoundError
from obsflow.refdata.records import RefRecord

__all__ = ["PIN_KEY", "ContextSummary", "RefContext", "list_contexts", "needs_backfill",
           "newest_number", "pinned_number", "range_text", "read_context"]

PIN_KEY = "refs.pinned_context"
"""``site_info`` key holding the pinned context number (absent: the newest is operational)."""


@dataclass(frozen=True)
class RefContext:
    """One reference context, as loaded (immutable).

    ``records`` are the context's files, ordered by delivery (registry id);
    ``file_ids[i]`` is the ``reference_files`` id of ``records[i]``.
    ``created`` is naive UTC.
    """

    number: int
    created: datetime
    parent: int | None
    description: str
    rules_version: str
    records: tuple[RefRecord, ...]
    file_ids: tuple[int, ...]

    @property
    def n_files(self) -> int:
        """How many reference files the context holds."""
        return len(self.records)


@dataclass(frozen=True)
class ContextSummary:
    """One line of the context list: no records, counts only."""

    number: int
    created: datetime
    parent: int | None
    description: str
    rules_version: str
    n_files: int
    added: int


_ADDED = """
SELECT child.context, COUNT(*) FROM ref_context_files child
JOIN ref_contexts ctx ON ctx.number = child.context
LEFT OUTER JOIN ref_context_files parent
  ON parent.context = ctx.parent AND parent.file_id = child.file_id
WHERE parent.file_id IS NULL GROUP BY child.context
"""

_FILES = """
SELECT f.id, f.reftype, f.telescope, f.instrument, f.detector, f."filter", f.readpatt,
       f.subarray, f.useafter, f.delivered, f.stored_name, f.sha256, f.pedigree, f.description
FROM reference_files f JOIN ref_context_files c ON c.file_id = f.id
WHERE c.context = :number ORDER BY f.id
"""


def newest_number(db: SiteReader) -> int | None:
    """The newest context's number, or None when there is none."""
    number = db.scalar("SELECT MAX(number) FROM ref_contexts")
    return int(number) if number is not None else None


def needs_backfill(db: SiteReader) -> bool:
    """Files are registered but no context holds them yet (a site older than contexts)."""
    return newest_number(db) is None and bool(db.scalar("SELECT COUNT(*) FROM reference_files"))


def pinned_number(db: SiteReader) -> int | None:
    """The pinned context number, or None when the newest context is operational."""
    value = db.scalar("SELECT value FROM site_info WHERE key = :key", {"key": PIN_KEY})
    return int(value) if value is not None else None


def range_text(db: SiteReader) -> str:
    """Which context numbers exist, in words (for error messages)."""
    newest = newest_number(db)
    if newest is None:
        return "there are no reference contexts yet (deliver reference files first)"
    return f"contexts are numbered 1 to {newest}"


def list_contexts(db: SiteReader) -> list[ContextSummary]:
    """Every context, oldest first, with how many files each added to its parent."""
    added = {int(number): int(count) for number, count in db.rows(_ADDED)}
    rows = db.rows("SELECT number, created, parent, description, rules_version, n_files "
                   "FROM ref_contexts ORDER BY number")
    return [ContextSummary(int(n), _created(c), p, d, r, int(k), added.get(int(n), 0))
            for n, c, p, d, r, k in rows]


def _created(value: object) -> datetime:
    created = as_datetime(value)
    assert created is not None  # the column is NOT NULL
    return created


def _record(row: tuple[Any, ...], folder: Path) -> RefRecord:
    """A row of ``_FILES`` as a record whose file is in ``folder``."""
    (_, reftype, telescope, instrument, detector, filt, readpatt, subarray, useafter, delivered,
     name, sha256, pedigree, description) = row
    return RefRecord(reftype, telescope, instrument, detector, filt, readpatt, subarray, useafter,
                     _created(delivered).isoformat(timespec="seconds"), name, folder / name,
                     sha256, pedigree, description)


def read_context(db: SiteReader, number: int | None = None, *,
                 refs_dir: Path | None = None) -> RefContext:
    """The context ``number`` with its records (None: the newest); see
    :func:`obsflow.refdata.contexts.load_context`, which backfills first.

    Raises
    ------
    ContextNotFoundError
        No such context (the message names the range), or no context at all.
    """
    if number is None:
        number = newest_number(db)
    rows = db.rows("SELECT number, created, parent, description, rules_version FROM ref_contexts "
                   "WHERE number = :number", {"number": number}) if number is not None else []
    if not rows:
        which = f" {number}" if number is not None else ""
        raise ContextNotFoundError(f"no reference context{which}: {range_text(db)}")
    n, created, parent, description, rules = rows[0]
    folder = Path(refs_dir) if refs_dir is not None else Path()
    files = db.rows(_FILES, {"number": n})
    records = tuple(_record(f, folder) for f in files)
    return RefContext(int(n), _created(created), parent, description, rules, records,
                      tuple(int(f[0]) for f in files))
