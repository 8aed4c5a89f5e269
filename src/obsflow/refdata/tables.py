"""The reference-data tables of the site database.

``reference_files``
    one row per delivered file (never updated or deleted);
``ref_contexts``
    one row per numbered reference context: an immutable snapshot of the
    active reference files and the version of the selection rules;
``ref_context_files``
    the files of each context (context number, reference file id).

Rows of the two context tables are never updated or deleted: the ORM
refuses it (:class:`~obsflow.exceptions.RefContextError` on flush).  Which
context is *pinned* lives in ``site_info`` (key :data:`PIN_KEY`).  The
tables are created by the site's schema history (:mod:`obsflow.migrations`,
revisions 0002 and 0004).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Integer, String, event
from sqlalchemy.orm import Mapped, mapped_column

from obsflow.db import Base
from obsflow.exceptions import RefContextError
from obsflow.refdata.contextread import PIN_KEY  # defined with the reads of the pin
from obsflow.refdata.records import RefRecord

__all__ = ["PIN_KEY", "RefContextFile", "RefContextRow", "ReferenceFile"]


class ReferenceFile(Base):
    """One delivered reference file (a row is never updated or deleted)."""

    __tablename__ = "reference_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    reftype: Mapped[str] = mapped_column(String(32), index=True)
    telescope: Mapped[str] = mapped_column(String(64))
    instrument: Mapped[str] = mapped_column(String(64))
    detector: Mapped[str] = mapped_column(String(64))
    filter: Mapped[str] = mapped_column(String(64))
    readpatt: Mapped[str] = mapped_column(String(64))
    subarray: Mapped[str] = mapped_column(String(64))
    useafter: Mapped[str] = mapped_column(String(32))
    delivered: Mapped[datetime] = mapped_column(DateTime)
    original_name: Mapped[str] = mapped_column(String(255))
    stored_name: Mapped[str] = mapped_column(String(255), unique=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    pedigree: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(1024))

    def record(self, folder: Path) -> RefRecord:
        """The file as the selection rules see it, at ``folder / stored_name``."""
        return RefRecord(self.reftype, self.telescope, self.instrument, self.detector,
                         self.filter, self.readpatt, self.subarray, self.useafter,
                         self.delivered.isoformat(timespec="seconds"), self.stored_name,
                         folder / self.stored_name, self.sha256, self.pedigree,
                         self.description)


class RefContextRow(Base):
    """One numbered reference context (created once, never changed).

    ``parent`` is the context that was newest when this one was made (None
    for context 1); ``rules_version`` identifies the selection rules
    (:data:`obsflow.refdata.select.RULES_VERSION`); ``n_files`` counts its
    rows in ``ref_context_files``.
    """

    __tablename__ = "ref_contexts"

    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    created: Mapped[datetime] = mapped_column(DateTime)
    parent: Mapped[int | None] = mapped_column(Integer, ForeignKey("ref_contexts.number"),
                                               nullable=True)
    description: Mapped[str] = mapped_column(String(1024))
    rules_version: Mapped[str] = mapped_column(String(80))
    n_files: Mapped[int] = mapped_column(Integer)


class RefContextFile(Base):
    """One reference file of one context."""

    __tablename__ = "ref_context_files"

    context: Mapped[int] = mapped_column(Integer, ForeignKey("ref_contexts.number"),
                                         primary_key=True)
    file_id: Mapped[int] = mapped_column(Integer, ForeignKey("reference_files.id"),
                                         primary_key=True, index=True)


@event.listens_for(RefContextRow, "before_update")
@event.listens_for(RefContextRow, "before_delete")
@event.listens_for(RefContextFile, "before_update")
@event.listens_for(RefContextFile, "before_delete")
def _refuse_change(_mapper: Any, _connection: Any, target: Any) -> None:
    """Refuse, at flush, any change to a context row (contexts are immutable)."""
    name = getattr(target, "number", None) or getattr(target, "context", "?")
    raise RefContextError(f"reference contexts are immutable: refusing to change or delete "
                          f"{type(target).__name__} of context {name}; deliver files to make "
                          "a new context")

