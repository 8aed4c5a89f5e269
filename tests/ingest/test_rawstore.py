"""The incoming folder and the raw archive: settle, .part, re-delivery, quarantine."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from obsflow.db import make_engine
from obsflow.ingest import ingest_once
from obsflow.ingest.tables import RawFile

from .conftest import deliver, dump_files


def _all_kept_bytes(cfg) -> set[str]:  # type: ignore[no-untyped-def]
    found = set()
    for folder in (cfg.raw_dir, cfg.quarantine_dir):
        for path in folder.rglob("*"):
            if path.is_file() and not path.name.endswith(".reason.txt"):
                found.add(hashlib.sha256(path.read_bytes()).hexdigest())
    return found


def test_part_and_unsettled_files_are_left_alone(downlink, site_factory) -> None:
    cfg = site_factory(settle_seconds=30.0)
    src = dump_files(downlink)[0]
    part = cfg.incoming_dir / (src.name + ".part")
    part.write_bytes(src.read_bytes())
    fresh = cfg.incoming_dir / "fresh.ccsds"
    fresh.write_bytes(src.read_bytes()[:1000])
    settled = deliver([dump_files(downlink)[1]], cfg.incoming_dir)[0]
    report = ingest_once(cfg)
    assert report.archived == [settled.name]
    assert part.exists() and fresh.exists() and not settled.exists()
    part.rename(cfg.incoming_dir / src.name)
    old = time.time() - 100
    os.utime(cfg.incoming_dir / src.name, (old, old))
    assert ingest_once(cfg).archived == [src.name]


def test_redelivery_counted_and_same_name_other_bytes_kept(downlink, site_factory, tmp_path) -> None:
    cfg = site_factory()
    files = dump_files(downlink, retransmission=False)
    deliver(files[:1], cfg.incoming_dir)
    ingest_once(cfg)
    deliver(files[:1], cfg.incoming_dir)  # the same bytes again
    report = ingest_once(cfg)
    assert report.redelivered == [files[0].name] and report.archived == []
    other = tmp_path / files[0].name
    other.write_bytes(files[1].read_bytes())  # same name, different content
    deliver([other], cfg.incoming_dir)
    assert ingest_once(cfg).archived == [files[0].name]
    engine = make_engine(cfg.database_url)
    with Session(engine) as s:
        rows = s.execute(select(RawFile).where(RawFile.name == files[0].name)).scalars().all()
    assert len(rows) == 2
    assert sorted(r.deliveries for r in rows) == [1, 2]
    assert all((cfg.raw_dir / r.raw_path).exists() for r in rows)
    assert len(list((cfg.raw_dir / "redelivered").iterdir())) == 1
    engine.dispose()


def test_garbage_is_quarantined_with_reason_and_kept(site_factory, tmp_path: Path) -> None:
    cfg = site_factory()
    junk = tmp_path / "junk.ccsds"
    junk.write_bytes(os.urandom(5000))
    notes = tmp_path / "notes.txt"
    notes.write_text("not telemetry")
    bad_ephem = tmp_path / "x_ephem.ecsv"
    bad_ephem.write_text("# %ECSV 1.0\nnonsense\n")
    sources = [junk, notes, bad_ephem]
    deliver(sources, cfg.incoming_dir)
    report = ingest_once(cfg)
    assert sorted(report.quarantined) == sorted(p.name for p in sources)
    assert list(cfg.incoming_dir.iterdir()) == []
    kept = _all_kept_bytes(cfg)
    assert {hashlib.sha256(p.read_bytes()).hexdigest() for p in sources} <= kept
    reasons = {p.name: p.read_text() for p in cfg.quarantine_dir.glob("*.reason.txt")}
    assert any("junk.ccsds" in r and "no valid CCSDS packet" in r for r in reasons.values())
    assert any("notes.txt" in r and "unknown file type" in r for r in reasons.values())
    assert any("x_ephem.ecsv" in r for r in reasons.values())


def test_ingest_once_waits_for_a_file_just_copied_or_says_it_is_settling(downlink, site_factory) -> None:
    """`obsflow ingest --once` right after a copy: it waits for the file to settle and takes it;
    with --wait 0 it takes nothing and says how many files are settling and why."""
    from click.testing import CliRunner

    from obsflow.cli import main

    cfg = site_factory(settle_seconds=1.5)
    src = dump_files(downlink)[0]
    (cfg.incoming_dir / src.name).write_bytes(src.read_bytes())
    out = CliRunner().invoke(main, ["ingest", "--once", "--wait", "0", "--site", str(cfg.root)])
    assert "archived 0" in out.output
    assert "1 in incoming still settling" in out.output and "settle_seconds" in out.output
    t0 = time.monotonic()
    out = CliRunner().invoke(main, ["ingest", "--once", "--site", str(cfg.root)])
    assert "waiting" in out.output and "to settle" in out.output, out.output
    assert out.output.strip().splitlines()[-1].startswith("archived 1,"), out.output
    assert time.monotonic() - t0 < 30
    assert not (cfg.incoming_dir / src.name).exists()
