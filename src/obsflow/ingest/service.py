"""The ingest loop: poll, archive, parse, account, assemble.

:func:`ingest_once` does one pass over the incoming folder and the ledger;
:func:`watch` repeats it every ``ingest.poll_seconds``.  Each step is safe to
interrupt anywhere and re-run (see :mod:`obsflow.ingest.rawstore` and
:mod:`obsflow.ingest.ledger`).
"""

from __future__ import annotations

import logging
import mmap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, exists, select

from obsflow.config import SiteConfig
from obsflow.db import make_engine
from obsflow.ingest import tables  # noqa: F401  (registers the ledger tables)
from obsflow.ingest.assemble import Assembled, assemble_exposure, due_exposures
from obsflow.ingest.ledger import record_file
from obsflow.ingest.locking import transaction
from obsflow.ingest.parse import parse_file
from obsflow.ingest.rawstore import (
    archive_file,
    quarantine,
    ready_files,
    recover,
    scan_incoming,
)
from obsflow.ingest.tables import RawFile
from obsflow.owners import process_id
from obsflow.profiles import Profile

__all__ = ["IngestReport", "ingest_once", "pending_work", "watch"]

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


@dataclass
class IngestReport:
    """What one pass did."""

    archived: list[str] = field(default_factory=list)
    redelivered: list[str] = field(default_factory=list)
    parsed: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    assembled: list[Assembled] = field(default_factory=list)
    unassemblable: list[str] = field(default_factory=list)
    """Parsed files holding packets of APIDs the profile does not define."""
    refused: list[str] = field(default_factory=list)
    """Incoming entries not taken (links, folders, FIFOs): ``"<name>: <why>"``."""
    settling: list[str] = field(default_factory=list)
    """Incoming files left for a later pass: modified less than ``settle_seconds`` ago."""
    settle_wait: float = 0.0
    """Seconds until the youngest settling file has been unchanged for ``settle_seconds``."""


def pending_work(cfg: SiteConfig, engine: Engine) -> bool:
    """True when an ingest pass has something to do: settled files in incoming, raw files
    archived but not parsed, or exposures due for assembly (the job layer asks this)."""
    if ready_files(cfg.incoming_dir, cfg.ingest.settle_seconds, time.time()):
        return True
    with transaction(engine) as session:
        if session.scalar(select(exists().where(RawFile.state.in_(("archiving", "archived"))))):
            return True
    return bool(due_exposures(engine, cfg.ingest.partial_deadline_hours))


def _parse_one(engine: Engine, cfg: SiteConfig, profile: Profile, file_id: int,
               data: bytes | mmap.mmap | None, report: IngestReport) -> None:
    with transaction(engine) as session:
        row = session.get(RawFile, file_id)
        assert row is not None
        name, kind, raw_path = row.name, row.kind, row.raw_path
    if data is None:
        data = (cfg.raw_dir / raw_path).read_bytes()
    try:
        content = parse_file(data, name, kind, profile)
    except ValueError as exc:
        quarantine(engine, file_id, cfg.raw_dir, cfg.quarantine_dir, str(exc))
        report.quarantined.append(name)
        log.info("quarantined %s: %s", name, exc)  # the CLI reports it (exit status 3)
        return
    record_file(engine, file_id, content)
    report.parsed.append(name)
    if content.unknown_apids:
        report.unassemblable.append(name)
        log.info("%s: packets of APIDs %s are not in the profile; never assembled", name,
                    sorted(content.unknown_apids))


def _take(engine: Engine, cfg: SiteConfig, profile: Profile, path: Path, owner: str,
          report: IngestReport) -> None:
    """Archive one incoming file and parse it (its bytes are released on return)."""
    taken = archive_file(engine, path, cfg.raw_dir, owner)
    if taken is None:
        return
    if taken.data is None:
        report.redelivered.append(path.name)
        return
    report.archived.append(path.name)
    _parse_one(engine, cfg, profile, taken.raw_file_id, taken.data, report)


def _settle_wait(settling: list[Path], settle_seconds: float) -> float:
    """Seconds until every file of ``settling`` has been unchanged for ``settle_seconds``."""
    now = time.time()
    wait = 0.0
    for path in settling:
        try:
            wait = max(wait, path.stat().st_mtime + settle_seconds - now)
        except FileNotFoundError:
            continue
    return max(wait, 0.0)


def ingest_once(cfg: SiteConfig, *, engine: Engine | None = None,
                progress: Progress | None = None, assemble: bool = True) -> IngestReport:
    """One pass: parse what is archived, take ready incoming files, assemble what is due.

    Files archived but not parsed (a crash) are parsed first, in arrival
    order, so an interrupted run ends exactly like an uninterrupted one.
    """
    own_engine = engine is None
    engine = engine or make_engine(cfg.database_url)
    profile = cfg.load_profile()
    report = IngestReport()
    tick = progress or (lambda stage, done, total: None)
    try:
        recover(engine, cfg.incoming_dir, cfg.raw_dir)
        with transaction(engine) as session:
            pending = session.execute(select(RawFile.id).where(RawFile.state == "archived")
                                      .order_by(RawFile.id)).scalars().all()
        for file_id in pending:
            _parse_one(engine, cfg, profile, file_id, None, report)
        scan = scan_incoming(cfg.incoming_dir, cfg.ingest.settle_seconds, time.time())
        files = scan.ready
        report.settling = [path.name for path in scan.settling]
        report.settle_wait = _settle_wait(scan.settling, cfg.ingest.settle_seconds)
        for path, why in scan.refused:
            report.refused.append(f"{path.name}: {why}")
            log.info("refused %s: %s", path, why)
        owner = process_id()
        for k, path in enumerate(files):
            tick("files", k, len(files))
            _take(engine, cfg, profile, path, owner, report)
        tick("files", len(files), len(files))
        if assemble:
            due = due_exposures(engine, cfg.ingest.partial_deadline_hours)
            for k, (exposure_id, partial) in enumerate(due):
                tick("exposures", k, len(due))
                done = assemble_exposure(engine, cfg, profile, exposure_id, partial)
                if done is not None:
                    report.assembled.append(done)
            tick("exposures", len(due), len(due))
    finally:
        if own_engine:
            engine.dispose()
    return report


def watch(cfg: SiteConfig, *, stop: Callable[[], bool] | None = None,
          on_report: Callable[[IngestReport], None] | None = None) -> None:
    """Repeat :func:`ingest_once` every ``poll_seconds`` until ``stop()`` is true."""
    engine = make_engine(cfg.database_url)
    try:
        while not (stop and stop()):
            report = ingest_once(cfg, engine=engine)
            if on_report:
                on_report(report)
            time.sleep(cfg.ingest.poll_seconds)
    finally:
        engine.dispose()
