"""Level-0 raw archive: claim an incoming file, checksum it, move it in, never lose it.

The order of operations makes every crash safe to re-run:

1. *claim* the incoming file in the database (one process wins);
2. read it once, computing its sha256;
3. a file whose bytes are already registered is a re-delivery: it is
   counted and moved to ``raw/redelivered/`` (kept, never deleted);
4. otherwise a ``raw_files`` row is committed in state ``archiving`` with the
   final raw path, the file is renamed there, and the row becomes
   ``archived`` — :func:`recover` finishes either half after a crash.

Quarantine never moves a raw file: it hard-links (or copies) it into the
quarantine folder beside a ``.reason.txt``, and marks the row.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError

from obsflow.ingest.incoming import IncomingScan, scan_incoming
from obsflow.ingest.locking import utcnow, writer
from obsflow.ingest.tables import Claim, RawFile
from obsflow.owners import owner_alive

__all__ = ["IncomingScan", "Taken", "archive_file", "quarantine", "ready_files", "recover",
           "scan_incoming"]

def ready_files(incoming: Path, settle_seconds: float, now: float) -> list[Path]:
    """Regular files in ``incoming`` ready to take, oldest first (:func:`scan_incoming`)."""
    return scan_incoming(incoming, settle_seconds, now).ready


def _claim(engine: Engine, key: str, owner: str) -> bool:
    """Try to claim ``key``; steal a claim whose owner process is gone."""
    try:
        with writer(engine) as session:
            session.add(Claim(key=key, owner=owner, claimed_at=utcnow()))
        return True
    except IntegrityError:
        pass
    with writer(engine) as session:
        claim = session.get(Claim, key)
        if claim is None or claim.owner == owner:
            return claim is not None
        if owner_alive(claim.owner):
            return False
        result = session.execute(update(Claim).where(Claim.key == key, Claim.owner == claim.owner)
                                 .values(owner=owner, claimed_at=utcnow()))
        return bool(result.rowcount)  # type: ignore[attr-defined]


def _release(engine: Engine, key: str) -> None:
    with writer(engine) as session:
        session.execute(delete(Claim).where(Claim.key == key))


def _kind(name: str) -> str:
    if name.endswith(".ecsv"):
        return "ephemeris"
    return "packets" if name.endswith((".ccsds", ".pkt", ".bin", ".dat")) else "unknown"


def _map(path: Path) -> bytes | mmap.mmap | None:
    """The file's bytes, memory-mapped read-only (no copy; stays valid after a rename).

    None when ``path`` is no longer a regular file (replaced by a link, a
    FIFO or a folder since the scan): it is opened without following a link
    and without blocking, so the next scan reports it instead.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
            return None
        raise
    with open(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size == 0:
            return b""
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


@dataclass(frozen=True)
class Taken:
    """An incoming file now in the raw archive: its row id and its bytes."""

    raw_file_id: int
    data: bytes | mmap.mmap | None  # None for a re-delivery (nothing new to parse)


def archive_file(engine: Engine, path: Path, raw_dir: Path, owner: str) -> Taken | None:
    """Claim, checksum and archive one incoming file; ``None`` if another process has it."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    key = f"{path.name}|{st.st_size}|{st.st_mtime_ns}"
    if not _claim(engine, key, owner):
        return None
    try:
        try:
            data = _map(path)
        except FileNotFoundError:
            return None  # taken and finished by another process meanwhile
        if data is None:
            return None  # not a regular file any more: the next scan refuses it
        sha = hashlib.sha256(data).hexdigest()
        with writer(engine) as session:
            known = session.execute(select(RawFile).where(RawFile.sha256 == sha)).scalar_one_or_none()
            if known is not None:
                known.deliveries += 1
                target = raw_dir / "redelivered" / f"{utcnow():%Y%m%dT%H%M%S%f}_{path.name}"
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
                return Taken(known.id, None)
            rel = f"{utcnow():%Y/%m/%d}/{sha[:16]}_{path.name}"
            row = RawFile(name=path.name, sha256=sha, size=len(data), kind=_kind(path.name),
                          raw_path=rel, state="archiving", received_at=utcnow())
            session.add(row)
        _move_into_archive(engine, row, path, raw_dir)
        return Taken(row.id, data)
    finally:
        _release(engine, key)


def _move_into_archive(engine: Engine, row: RawFile, source: Path, raw_dir: Path) -> None:
    target = raw_dir / row.raw_path
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    with writer(engine) as session:
        session.execute(update(RawFile).where(RawFile.id == row.id).values(state="archived"))


def recover(engine: Engine, incoming: Path, raw_dir: Path) -> int:
    """Finish archiving interrupted by a crash; drop claims of dead processes. Returns rows fixed."""
    fixed = 0
    with writer(engine) as session:
        for claim in session.execute(select(Claim)).scalars().all():
            if not owner_alive(claim.owner):
                session.delete(claim)
        ids = session.execute(select(RawFile.id).where(RawFile.state == "archiving")).scalars().all()
    for row_id in ids:
        with writer(engine) as session:
            row = session.get(RawFile, row_id)
            assert row is not None
            target, source = raw_dir / row.raw_path, incoming / row.name
            if target.exists():
                row.state = "archived"
            elif source.exists() and hashlib.sha256(source.read_bytes()).hexdigest() == row.sha256:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
                row.state = "archived"
            else:
                row.state, row.reason = "quarantined", "file vanished while being archived"
        fixed += 1
    return fixed


def quarantine(engine: Engine, row_id: int, raw_dir: Path, quarantine_dir: Path,
               reason: str) -> None:
    """Mark a raw file unparseable and link it into the quarantine folder with the reason."""
    with writer(engine) as session:
        row = session.get(RawFile, row_id)
        assert row is not None
        row.state, row.reason, row.parsed_at = "quarantined", reason, utcnow()
        source = raw_dir / row.raw_path
        target = quarantine_dir / f"{row.sha256[:16]}_{row.name}"
        quarantine_dir.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            try:
                os.link(source, target)
            except OSError:
                shutil.copy2(source, target)
        target.with_name(target.name + ".reason.txt").write_text(reason + "\n")
