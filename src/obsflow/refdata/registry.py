"""The reference-file registry: a table on the site database and the delivery procedure.

``deliver`` validates a file (:func:`obsflow.refdata.validate.read_record`),
copies it into the site's refs folder under a new, unique name
``<stem>_<yyyymmddThhmmss>_<sha256[:8]>.fits`` (never overwriting anything),
and records it with its sha256 and delivery time.  Nothing is ever deleted
or replaced: a newer delivery supersedes an older one through the selection
rules (:mod:`obsflow.refdata.select`), and both stay on record.

:class:`FolderRefs` offers the same records for a plain folder of reference
files (a simulation's ``refs/``), so calibration can run without a site.
"""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import DateTime, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from obsflow.db import Base, make_engine
from obsflow.fileio import atomic_path, sha256_file
from obsflow.profiles import Profile
from obsflow.refdata.validate import ReferenceFileError, RefRecord, read_record

__all__ = ["FolderRefs", "ReferenceFile", "SiteRefs", "deliver"]

logger = logging.getLogger(__name__)


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
        return RefRecord(self.reftype, self.telescope, self.instrument, self.detector,
                         self.filter, self.readpatt, self.subarray, self.useafter,
                         self.delivered.isoformat(timespec="seconds"), self.stored_name,
                         folder / self.stored_name, self.sha256, self.pedigree,
                         self.description)


def deliver(session: Session, refs_dir: Path, path: Path, profile: Profile,
            now: datetime | None = None) -> RefRecord:
    """Validate ``path``, copy it into ``refs_dir`` under a unique name and register it.

    The caller commits ``session``.

    Raises
    ------
    ReferenceFileError
        The file is invalid (see :func:`read_record`) or the same content
        (sha256) was delivered before.
    """
    sha = sha256_file(path)
    rec = read_record(path, profile, sha)
    earlier = session.scalars(select(ReferenceFile).where(ReferenceFile.sha256 == sha)).first()
    if earlier is not None:
        raise ReferenceFileError(f"{path}: identical content already delivered as "
                                 f"{earlier.stored_name} on {earlier.delivered:%Y-%m-%d %H:%M}")
    when = (now or datetime.now(UTC)).replace(tzinfo=None, microsecond=0)
    stored = f"{Path(path).stem}_{when:%Y%m%dT%H%M%S}_{sha[:8]}.fits"
    target = Path(refs_dir) / stored
    if target.exists():
        raise ReferenceFileError(f"{target} exists already; refusing to overwrite it")
    with atomic_path(target) as tmp:
        shutil.copyfile(path, tmp)
    row = ReferenceFile(reftype=rec.reftype, telescope=rec.telescope, instrument=rec.instrument,
                        detector=rec.detector, filter=rec.filter, readpatt=rec.readpatt,
                        subarray=rec.subarray, useafter=rec.useafter, delivered=when,
                        original_name=Path(path).name, stored_name=stored, sha256=sha,
                        pedigree=rec.pedigree, description=rec.description[:1024])
    session.add(row)
    session.flush()
    return row.record(Path(refs_dir))


class SiteRefs:
    """Registered reference files of a site (database rows + the refs folder)."""

    def __init__(self, database_url: str, refs_dir: Path) -> None:
        self.database_url, self.refs_dir = database_url, Path(refs_dir)

    def records(self) -> list[RefRecord]:
        engine = make_engine(self.database_url)
        try:
            Base.metadata.create_all(engine, tables=[ReferenceFile.__table__])  # type: ignore[list-item]
            with Session(engine) as session:
                rows = session.scalars(select(ReferenceFile)).all()
                return [r.record(self.refs_dir) for r in rows]
        finally:
            engine.dispose()


class FolderRefs:
    """Every valid reference file in a folder, unregistered (sha256 left empty: computed on use)."""

    def __init__(self, folder: Path, profile: Profile) -> None:
        self.folder, self.profile = Path(folder), profile

    def records(self) -> list[RefRecord]:
        out = []
        for path in sorted(self.folder.glob("*.fits")):
            try:
                out.append(read_record(path, self.profile))
            except ReferenceFileError as exc:
                logger.warning("not a usable reference file, ignored: %s", exc)
        return out
