"""Numbered, immutable reference contexts (CRDS's ``.pmap`` for an obsflow site).

Every delivery of reference files (:func:`obsflow.refdata.registry.deliver_batch`)
creates the next context: the set of every reference file delivered so far,
the version of the selection rules (:data:`obsflow.refdata.select.RULES_VERSION`)
and the context it follows (its parent).  Context 1 is the first delivery.
A context is never changed afterwards, so "calibrated with context 7" names
exactly which files could have been chosen, and under which rules.

The *operational* context, the one calibration of new data uses, is the
pinned one if a context is pinned (``obsflow refs pin N``), else the newest.

Sites whose reference files were delivered before contexts existed get
context 1, holding every such file, on first use (:func:`ensure_backfill`;
the migration ``0004_reference_contexts`` does the same).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, aliased

from obsflow.db import SiteInfo
from obsflow.exceptions import ContextNotFoundError, RefContextError
from obsflow.refdata.tables import PIN_KEY, RefContextFile, RefContextRow, ReferenceFile

if TYPE_CHECKING:
    from obsflow.refdata.validate import RefRecord

__all__ = ["BACKFILL_DESCRIPTION", "ContextSummary", "RefContext", "create_context",
           "ensure_backfill", "list_contexts", "load_context", "newest_context",
           "operational_context", "pin_context", "pinned_number"]

BACKFILL_DESCRIPTION = "every reference file delivered before reference contexts existed"
"""Description of the context 1 made for a site that had files but no contexts."""


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


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(UTC)).replace(tzinfo=None, microsecond=0)


def _newest_number(session: Session) -> int | None:
    return session.scalar(select(func.max(RefContextRow.number)))


def create_context(session: Session, description: str,
                   now: datetime | None = None) -> RefContextRow:
    """Add the next context: every reference file in the registry now (flushed, not committed).

    Parameters
    ----------
    session : Session
        Open session; the caller commits (together with the delivery).
    description : str
        What the delivery was (shown by ``obsflow refs contexts``).
    now : datetime, optional
        Creation time (default: now, UTC).

    Returns
    -------
    RefContextRow
        The new row; its number is the newest plus one (1 for the first).

    Raises
    ------
    RefContextError
        No reference file is registered (a context cannot be empty).
    """
    from obsflow.refdata.select import RULES_VERSION  # astropy time: not for listing contexts

    ids = list(session.scalars(select(ReferenceFile.id).order_by(ReferenceFile.id)))
    if not ids:
        raise RefContextError("no reference file is registered: nothing to make a context of")
    parent = _newest_number(session)
    row = RefContextRow(number=(parent or 0) + 1, created=_now(now), parent=parent,
                        description=description[:1024], rules_version=RULES_VERSION,
                        n_files=len(ids))
    session.add(row)
    session.flush()
    session.add_all([RefContextFile(context=row.number, file_id=i) for i in ids])
    session.flush()
    return row


def ensure_backfill(session: Session, now: datetime | None = None) -> int | None:
    """Make context 1 of every registered file if there are files but no context yet.

    Returns the number of the context made (1) or None when nothing was
    needed.  The caller commits.
    """
    if _newest_number(session) is not None:
        return None
    if session.scalar(select(func.count()).select_from(ReferenceFile)) == 0:
        return None
    return create_context(session, BACKFILL_DESCRIPTION, now).number


def _range_text(session: Session) -> str:
    newest = _newest_number(session)
    if newest is None:
        return "there are no reference contexts yet (deliver reference files first)"
    return f"contexts are numbered 1 to {newest}"


def load_context(session: Session, number: int | None = None, *,
                 refs_dir: Path | None = None) -> RefContext:
    """The context ``number``, with its records (None: the newest).

    Parameters
    ----------
    session : Session
        Open session (files registered before contexts existed are
        backfilled into context 1 first; the caller commits).
    number : int, optional
        Context number; None for the newest.
    refs_dir : Path, optional
        The site's refs folder: each record's ``path`` is there (default:
        the stored file name alone).

    Raises
    ------
    ContextNotFoundError
        No such context (the message names the range), or no context at all.
    """
    ensure_backfill(session)
    if number is None:
        number = _newest_number(session)
    row = session.get(RefContextRow, number) if number is not None else None
    if row is None:
        which = f" {number}" if number is not None else ""
        raise ContextNotFoundError(f"no reference context{which}: {_range_text(session)}")
    files = session.scalars(
        select(ReferenceFile).join(RefContextFile, RefContextFile.file_id == ReferenceFile.id)
        .where(RefContextFile.context == row.number).order_by(ReferenceFile.id)).all()
    folder = Path(refs_dir) if refs_dir is not None else Path()
    return RefContext(row.number, row.created, row.parent, row.description, row.rules_version,
                      tuple(f.record(folder) for f in files), tuple(f.id for f in files))


def newest_context(session: Session, *, refs_dir: Path | None = None) -> RefContext:
    """The newest context (see :func:`load_context`)."""
    return load_context(session, None, refs_dir=refs_dir)


def pinned_number(session: Session) -> int | None:
    """The pinned context number, or None when the newest context is operational."""
    row = session.get(SiteInfo, PIN_KEY)
    return int(row.value) if row is not None else None


def operational_context(session: Session, *, refs_dir: Path | None = None) -> RefContext:
    """The context calibration of new data uses: the pinned one, else the newest.

    Raises
    ------
    ContextNotFoundError
        There is no context yet (no reference file delivered).
    """
    return load_context(session, pinned_number(session), refs_dir=refs_dir)


def pin_context(session: Session, number: int | None) -> int | None:
    """Pin context ``number`` as operational, or unpin (None: the newest is operational).

    Returns the previously pinned number (None if none).  The caller commits.

    Raises
    ------
    ContextNotFoundError
        No context ``number``.
    """
    ensure_backfill(session)
    if number is not None and session.get(RefContextRow, number) is None:
        raise ContextNotFoundError(f"cannot pin reference context {number}: "
                                   f"{_range_text(session)}")
    row = session.get(SiteInfo, PIN_KEY)
    before = int(row.value) if row is not None else None
    if number is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(SiteInfo(key=PIN_KEY, value=str(number)))
    else:
        row.value = str(number)
    session.flush()
    return before


def _added_counts(session: Session) -> dict[int, int]:
    """Per context, how many of its files its parent does not hold."""
    child, parent = aliased(RefContextFile), aliased(RefContextFile)
    query = (select(child.context, func.count())
             .join(RefContextRow, RefContextRow.number == child.context)
             .outerjoin(parent, and_(parent.context == RefContextRow.parent,
                                     parent.file_id == child.file_id))
             .where(parent.file_id.is_(None)).group_by(child.context))
    return {int(number): int(count) for number, count in session.execute(query)}


def list_contexts(session: Session) -> list[ContextSummary]:
    """Every context, oldest first, with how many files each added to its parent."""
    ensure_backfill(session)
    rows = session.scalars(select(RefContextRow).order_by(RefContextRow.number)).all()
    added = _added_counts(session)
    return [ContextSummary(r.number, r.created, r.parent, r.description, r.rules_version,
                           r.n_files, added.get(r.number, 0)) for r in rows]
