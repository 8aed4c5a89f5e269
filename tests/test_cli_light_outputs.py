"""The light commands print exactly what they printed before they read with plain SQL.

``obsflow status``, ``jobs``, ``refs contexts`` and ``refs best`` read the site
through :mod:`obsflow.dbread` (:mod:`sqlite3` on SQLite, SQLAlchemy Core on
PostgreSQL) and ``refs best`` reads the product's headers in pure Python.
Their outputs on a site with fixed content (:func:`fill_site`: raw files, a
quarantined one, packets of an unknown APID, an exposure with gaps, jobs in
every state, two reference contexts and a pin) are compared, on both
backends, with the files under ``tests/data/cli_light/``, written by the
ORM-and-astropy implementation (commit 751b878) from the same content::

    PYTHONPATH=<old src>:. python tests/test_cli_light_outputs.py tests/data/cli_light
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import tomli_w
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from obsflow.cli import main
from obsflow.db import SiteInfo, make_engine
from obsflow.ingest.tables import (
    ApidContinuity,
    ExposureLedger,
    ObservationLog,
    PacketRange,
    RawFile,
)
from obsflow.orchestrate.tables import Job
from obsflow.refdata.tables import RefContextFile, RefContextRow, ReferenceFile
from obsflow.site import init_site

GOLDEN = Path(__file__).parent / "data" / "cli_light"

T0 = datetime(2026, 3, 1, 12, 0, 0)


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _files(session: Session) -> None:
    rows = [("d001.ccsds", "parsed", None, 1, 5000, 40, 0, 0),
            ("d002.ccsds", "parsed", None, 2, 7000, 55, 1, 16),
            ("junk.ccsds", "quarantined", "junk.ccsds: no valid CCSDS packet in 18 bytes", 1, 18,
             0, 0, 18),
            ("eph.ecsv", "archived", None, 1, 300, 0, 0, 0)]
    for i, (name, state, reason, deliveries, size, packets, crc, skipped) in enumerate(rows, 1):
        session.add(RawFile(id=i, name=name, sha256=f"{i:064x}", size=size, kind="packets",
                            raw_path=f"2026/{name}", state=state, reason=reason,
                            deliveries=deliveries, received_at=_at(i), packets=packets,
                            crc_failures=crc, skipped_bytes=skipped))
    session.flush()
    for file_id, apid, packets, missing, dup, ooo in [(1, 32, 30, 2, 0, 1), (1, 64, 10, 0, 0, 0),
                                                      (2, 32, 40, 0, 1, 0), (2, 1025, 15, 0, 0, 0),
                                                      (2, 1280, 0, 0, 0, 0)]:
        session.add(ApidContinuity(raw_file_id=file_id, apid=apid, packets=packets,
                                   first_count=0, last_count=packets, missing=missing,
                                   duplicates=dup, out_of_order=ooo))


def _ledger(session: Session) -> None:
    for exposure_id, expected, received, state in [(101, 30, 30, "complete"),
                                                   (102, 40, 31, "waiting")]:
        session.add(ObservationLog(exposure_id=exposure_id, apid=32, status="executed",
                                   packets_expected=expected, rows_per_packet=4,
                                   basename=f"01234001001_{exposure_id:05d}_ssd1",
                                   meta={"program": "1234"}, raw_file_id=1))
        session.add(ExposureLedger(exposure_id=exposure_id, apid=32, expected=expected,
                                   received=received, state=state, first_seen=_at(1),
                                   updated=_at(2), packet_size=100))
    session.flush()
    for exposure_id, first, last in [(101, 0, 29), (102, 0, 9), (102, 13, 29), (102, 35, 38)]:
        session.add(PacketRange(exposure_id=exposure_id, first=first, last=last, raw_file_id=1,
                                offset=first * 100, packet_size=100))


def _jobs(session: Session) -> None:
    specs = [("ingest", "ingest:d001", "done", {"file": "incoming/d001.ccsds"}, {"n": 1}, None),
             ("calibrate", "calibrate:a", "done",
              {"product": "products/x/01234001001_00101_ssd1_uncal.fits"}, {"rate": "r"}, None),
             ("calibrate", "calibrate:b", "failed",
              {"product": "products/x/01234001001_00102_ssd1_uncal.fits"}, None,
              "CalibrationError: " + "a long reason " * 12),
             ("program", "program:1234", "pending", {"program": "1234"}, None, None),
             ("register", "register:a", "running", {"product": "p/a_cal.fits"}, None, None)]
    for i, (kind, key, state, inputs, outputs, error) in enumerate(specs, 1):
        started = _at(10 + i) if state != "pending" else None
        finished = _at(10 + i + 0.25) if state in ("done", "failed") else None
        session.add(Job(id=i, kind=kind, key=key, state=state, inputs=inputs, outputs=outputs,
                        parent_id=1 if i > 1 else None, attempts=3 if state == "failed" else 1,
                        max_attempts=3, created=_at(10), started=started, finished=finished,
                        error=error, priority=0))


def _refs(session: Session) -> None:
    names = []
    for i, (reftype, filt, useafter) in enumerate([("DARK", "ANY", "2026-01-01T00:00:00"),
                                                   ("FLAT", "J", "2026-01-01T00:00:00"),
                                                   ("DARK", "ANY", "2026-02-01T00:00:00")], 1):
        name = f"obsflow-s_ssd1_{reftype.lower()}_{i:04d}.fits"
        names.append(name)
        session.add(ReferenceFile(id=i, reftype=reftype, telescope="OBSFLOW-S",
                                  instrument="SSCAM", detector="SSD1", filter=filt,
                                  readpatt="ANY", subarray="FULL", useafter=useafter,
                                  delivered=_at(20 + i), original_name=name, stored_name=name,
                                  sha256=f"{i:064x}", pedigree="SIMULATION",
                                  description=f"file {i}"))
    session.flush()
    session.add(RefContextRow(number=1, created=_at(21), parent=None,
                              description="first light", rules_version="sha256:0123456789abcdef",
                              n_files=2))
    session.add(RefContextRow(number=2, created=_at(23), parent=1,
                              description="a later dark, with a description longer than sixty "
                                          "characters that the table cuts",
                              rules_version="sha256:0123456789abcdef", n_files=3))
    session.flush()
    for context, file_ids in ((1, (1, 2)), (2, (1, 2, 3))):
        session.add_all([RefContextFile(context=context, file_id=f) for f in file_ids])
    session.add(SiteInfo(key="refs.pinned_context", value="1"))


def fill_site(engine: Engine) -> None:
    """Write the fixed content every compared output is made from."""
    with Session(engine) as session, session.begin():
        _files(session)
        _ledger(session)
        _jobs(session)
        _refs(session)


def make_site(root: Path, db_url: str | None) -> Path:
    """A smallsat site at ``root`` (database ``db_url``, default SQLite) holding
    :func:`fill_site`'s content, a refused link in incoming/, and a product; the product."""
    init_site(root, profile="smallsat", env={})
    if db_url is not None:
        path = root / "obsflow.toml"
        import tomllib

        data = tomllib.loads(path.read_text())
        data["database"] = {"url": db_url}
        path.write_text(tomli_w.dumps(data))
        init_site(root, env={})
    engine = make_engine(db_url or f"sqlite:///{root / 'obsflow.db'}")
    try:
        fill_site(engine)
    finally:
        engine.dispose()
    (root / "incoming" / "a_link").symlink_to("/nonexistent/target")
    from tests.refdata.factories import meta, write_product

    product_dir = root.parent / "product"
    product_dir.mkdir(exist_ok=True)
    return write_product(product_dir, meta(expstart=61130.5, filter="J"))


ROOT_CHARS = 160
"""Length of the site root's path: tables are as wide as the paths they list, so the
outputs compare only with the root at a path as long as the golden files' one."""


def site_root(base: Path) -> Path:
    """A site folder under ``base`` whose path is :data:`ROOT_CHARS` characters long."""
    base = base.resolve()
    return base / ("s" * (ROOT_CHARS - len(str(base)) - 1))


COMMANDS: dict[str, list[str]] = {
    "status": ["status"],
    "status_json": ["status", "--json"],
    "jobs": ["jobs"],
    "jobs_json": ["jobs", "--json"],
    "jobs_failed_calibrate": ["jobs", "--state", "failed", "--kind", "calibrate", "--limit", "1"],
    "refs_contexts": ["refs", "contexts"],
    "refs_best": ["refs", "best", "{product}"],
    "refs_best_context_2": ["refs", "best", "--context", "2", "{product}"],
}
"""Name of the golden file -> the command (``{product}``: the product's path)."""


def run(args: list[str], root: Path, product: Path) -> str:
    """The output of ``obsflow ARGS --site ROOT``, the site root written ``<SITE>``."""
    argv = [a.format(product=product) for a in args]
    result = CliRunner().invoke(main, [*argv, "--site", str(root)])
    assert result.exit_code == 0, result.output
    return result.output.replace(str(root), "<SITE>")


@pytest.fixture(params=["sqlite", "postgresql"])
def light_site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    from tests.conftest import fresh_database

    with fresh_database(request.param, tmp_path) as url:
        root = site_root(tmp_path)
        yield root, make_site(root, url if request.param == "postgresql" else None)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_output_is_the_orm_implementations(light_site: tuple[Path, Path], name: str) -> None:
    root, product = light_site
    expected = (GOLDEN / f"{name}.txt").read_text()
    assert run(COMMANDS[name], root, product) == expected


def test_golden_content_shows_every_case() -> None:
    status = (GOLDEN / "status.txt").read_text()
    assert "quarantined files" in status and "unassemblable packets" in status
    assert "refused in incoming" in status and "9 packets in 1 exposures" in status
    assert "pinned, operational" in (GOLDEN / "refs_contexts.txt").read_text()
    best = (GOLDEN / "refs_best_context_2.txt").read_text()
    assert "obsflow-s_ssd1_dark_0003.fits" in best and "none" in best


def write_golden(folder: Path) -> None:
    """Write every command's output on a fresh SQLite site into ``folder``."""
    import tempfile

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = site_root(Path(tmp))
        product = make_site(root, None)
        for name, args in COMMANDS.items():
            (folder / f"{name}.txt").write_text(run(args, root, product))


if __name__ == "__main__":
    write_golden(Path(sys.argv[1]))
