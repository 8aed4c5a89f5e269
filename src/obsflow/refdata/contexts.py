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

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from obsflow import dbread
from obsflow.db import SiteInfo
from obsflow.exceptions import ContextNotFoundError, RefContextError
from obsflow.refdata import contextread
from obsflow.refdata.contextread import ContextSummary, RefContext
from obsflow.refdata.tables import PIN_KEY, RefContextFile, RefContextRow, ReferenceFile

__all__ = ["BACKFILL_DESCRIPTION", "ContextSummary", "RefContext", "create_context",
           "ensure_backfill", "list_contexts", "load_context", "newest_context",
           "operational_context", "pin_context", "pinned_number"]

BACKFILL_DESCRIPTION = "every reference file delivered before reference contexts existed"
"""Description of the context 1 made for a site that had files but no contexts."""


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
    from obsflow.refdata.rules import RULES_VERSION

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


def _reader(session: Session) -> dbread.SiteReader:
    """A reader in the session's transaction (it sees what the session flushed)."""
    return dbread.EngineReader(session.connection())


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
    return contextread.read_context(_reader(session), number, refs_dir=refs_dir)


def newest_context(session: Session, *, refs_dir: Path | None = None) -> RefContext:
    """The newest context (see :func:`load_context`)."""
    return load_context(session, None, refs_dir=refs_dir)


def pinned_number(session: Session) -> int | None:
    """The pinned context number, or None when the newest context is operational."""
    return contextread.pinned_number(_reader(session))


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
                                   f"{contextread.range_text(_reader(session))}")
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


def list_contexts(session: Session) -> list[ContextSummary]:
    """Every context, oldest first, with how many files each added to its parent
    (:func:`obsflow.refdata.contextread.list_contexts`, after the backfill)."""
    ensure_backfill(session)
    return contextread.list_contexts(_reader(session))
