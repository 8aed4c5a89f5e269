"""The reference-file registry: delivery to the site database, and the records calibration uses.

``deliver_batch`` validates files (:func:`obsflow.refdata.validate.read_record`),
copies each into the site's refs folder under a new, unique name
``<stem>_<yyyymmddThhmmss>_<sha256[:8]>.fits`` (never overwriting anything),
records it with its sha256 and delivery time, and makes the next numbered
reference context (:mod:`obsflow.refdata.contexts`): one delivery, one
context, however many files.  Nothing is ever deleted or replaced: a newer
delivery supersedes an older one through the selection rules
(:mod:`obsflow.refdata.select`), and both stay on record.

:class:`SiteRefs` gives calibration the files of one context of a site (the
operational one by default); :class:`FolderRefs` offers the same records
for a plain folder of reference files (a simulation's ``refs/``), so
calibration can run without a site.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from obsflow.db import make_engine
from obsflow.exceptions import ReferenceFileError
from obsflow.fileio import atomic_path, sha256_file
from obsflow.profiles import Profile
from obsflow.refdata.contexts import (
    RefContext,
    create_context,
    ensure_backfill,
    load_context,
    operational_context,
)
from obsflow.refdata.tables import ReferenceFile
from obsflow.refdata.validate import RefRecord, read_record

__all__ = ["Delivery", "FolderRefs", "ReferenceFile", "SiteRefs", "deliver", "deliver_batch",
           "is_delivered"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """What one delivery did: the files it registered and the context it made."""

    records: tuple[RefRecord, ...]
    context: RefContext


def is_delivered(session: Session, path: Path) -> bool:
    """Whether a file with the content of ``path`` (same sha256) is registered."""
    sha = sha256_file(path)
    return session.scalar(select(ReferenceFile.id).where(ReferenceFile.sha256 == sha)) is not None


def _check(session: Session, paths: Sequence[Path],
           profile: Profile) -> list[tuple[Path, RefRecord]]:
    """Validate every file and refuse content delivered before (or twice in ``paths``)."""
    checked: list[tuple[Path, RefRecord]] = []
    seen: dict[str, Path] = {}
    for path in map(Path, paths):
        sha = sha256_file(path)
        rec = read_record(path, profile, sha)
        earlier = session.scalars(select(ReferenceFile).where(ReferenceFile.sha256 == sha)).first()
        if earlier is not None:
            raise ReferenceFileError(f"{path}: identical content already delivered as "
                                     f"{earlier.stored_name} on {earlier.delivered:%Y-%m-%d %H:%M}")
        if sha in seen:
            raise ReferenceFileError(f"{path}: identical content to {seen[sha]} in the same "
                                     "delivery")
        seen[sha] = path
        checked.append((path, rec))
    return checked


def _register(session: Session, refs_dir: Path, path: Path, rec: RefRecord,
              when: datetime) -> ReferenceFile:
    """Copy the checked file ``path`` into ``refs_dir`` and add its row (flushed)."""
    stored = f"{path.stem}_{when:%Y%m%dT%H%M%S}_{rec.sha256[:8]}.fits"
    target = refs_dir / stored
    if target.exists():
        raise ReferenceFileError(f"{target} exists already; refusing to overwrite it")
    with atomic_path(target) as tmp:
        shutil.copyfile(path, tmp)
    row = ReferenceFile(reftype=rec.reftype, telescope=rec.telescope, instrument=rec.instrument,
                        detector=rec.detector, filter=rec.filter, readpatt=rec.readpatt,
                        subarray=rec.subarray, useafter=rec.useafter, delivered=when,
                        original_name=path.name, stored_name=stored, sha256=rec.sha256,
                        pedigree=rec.pedigree, description=rec.description[:1024])
    session.add(row)
    session.flush()
    return row


def deliver_batch(session: Session, refs_dir: Path, paths: Sequence[Path], profile: Profile,
                  *, description: str = "", now: datetime | None = None) -> Delivery:
    """Deliver ``paths`` as one delivery: register each file, then make one new context.

    Every file is validated, and checked against the registry, before any
    is copied: an invalid or already delivered file stops the delivery
    before anything is written.  The caller commits ``session``.

    Parameters
    ----------
    session : Session
        Open session on the site database.
    refs_dir : Path
        The site's refs folder.
    paths : sequence of Path
        Reference files to deliver (at least one).
    profile : Profile
        The site's observatory profile (validation).
    description : str, optional
        Recorded with the context (default: the delivered file names).
    now : datetime, optional
        Delivery time (default: now, UTC).

    Returns
    -------
    Delivery
        The registered files and the new context.

    Raises
    ------
    ReferenceFileError
        A file is invalid, its content (sha256) was delivered before or
        appears twice, or ``paths`` is empty.
    """
    if not paths:
        raise ReferenceFileError("no reference file given: a delivery needs at least one")
    checked = _check(session, paths, profile)
    when = (now or datetime.now(UTC)).replace(tzinfo=None, microsecond=0)
    ensure_backfill(session, when)
    rows = [_register(session, Path(refs_dir), path, rec, when) for path, rec in checked]
    text = description or "delivered " + ", ".join(path.name for path, _ in checked)
    number = create_context(session, text, when).number
    context = load_context(session, number, refs_dir=refs_dir)
    return Delivery(tuple(r.record(Path(refs_dir)) for r in rows), context)


def deliver(session: Session, refs_dir: Path, path: Path, profile: Profile,
            now: datetime | None = None) -> RefRecord:
    """Deliver one file (a delivery of its own: it makes a new context); see :func:`deliver_batch`.

    The caller commits ``session``.

    Raises
    ------
    ReferenceFileError
        The file is invalid (see :func:`read_record`) or the same content
        (sha256) was delivered before.
    """
    return deliver_batch(session, refs_dir, [path], profile, now=now).records[0]


class SiteRefs:
    """The reference files of one context of a site (database rows + the refs folder).

    Parameters
    ----------
    database_url : str
        The site database.
    refs_dir : Path
        The site's refs folder.
    context : int, optional
        Context number; None (default) for the operational context, resolved
        each time :meth:`records` is called.

    Attributes
    ----------
    context_number : int or None
        The context the last :meth:`records` (or :meth:`context`) call used;
        None before, or when the site has no reference file at all.
    """

    def __init__(self, database_url: str, refs_dir: Path, context: int | None = None) -> None:
        self.database_url, self.refs_dir = database_url, Path(refs_dir)
        self.requested = context
        self.context_number: int | None = None

    def context(self) -> RefContext | None:
        """Load the context (requested, else operational); None if the site has no files yet.

        Raises
        ------
        ContextNotFoundError
            The requested context does not exist.
        """
        engine = make_engine(self.database_url)
        try:
            try:
                found = self._load(engine)
            except IntegrityError:  # another process made the backfill context meanwhile
                found = self._load(engine)
        finally:
            engine.dispose()
        self.context_number = found.number if found is not None else None
        return found

    def _load(self, engine: Engine) -> RefContext | None:
        with Session(engine) as session, session.begin():
            if self.requested is not None:
                return load_context(session, self.requested, refs_dir=self.refs_dir)
            if session.scalar(select(ReferenceFile.id).limit(1)) is None:
                return None
            return operational_context(session, refs_dir=self.refs_dir)

    def records(self) -> list[RefRecord]:
        """The files of the context (see :meth:`context`); empty if the site has none."""
        found = self.context()
        return list(found.records) if found is not None else []

    def sha256_of(self, record: RefRecord) -> str:
        """The sha256 of a record's file, as registered at delivery."""
        return record.sha256


class FolderRefs:
    """Every valid reference file in a folder, unregistered.

    Each file is read (headers only) once per version (inode, size,
    modification time): calibrating many exposures with one ``FolderRefs``
    reads the folder once, and a file added or replaced is seen by the next
    :meth:`records`.  The records' sha256 is left empty; :meth:`sha256_of`
    computes it on use, once per file version.
    """

    def __init__(self, folder: Path, profile: Profile) -> None:
        self.folder, self.profile = Path(folder), profile
        self._read: dict[Path, tuple[tuple[int, int, int], RefRecord | None]] = {}
        self._hashes: dict[tuple[Path, int, int, int], str] = {}

    def records(self) -> list[RefRecord]:
        out = []
        for path in sorted(self.folder.glob("*.fits")):
            try:
                version = _version(path)
            except FileNotFoundError:
                continue
            known = self._read.get(path)
            if known is None or known[0] != version:
                try:
                    known = (version, read_record(path, self.profile))
                except ReferenceFileError as exc:
                    logger.warning("not a usable reference file, ignored: %s", exc)
                    known = (version, None)
                self._read[path] = known
            if known[1] is not None:
                out.append(known[1])
        return out

    def sha256_of(self, record: RefRecord) -> str:
        """The sha256 of a record's file (hashed once per file version)."""
        key = (record.path, *_version(record.path))
        if key not in self._hashes:
            self._hashes[key] = sha256_file(record.path)
        return self._hashes[key]


def _version(path: Path) -> tuple[int, int, int]:
    """What changes when a file is replaced or rewritten: inode, size, mtime (ns)."""
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns
