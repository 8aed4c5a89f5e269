"""Data ingest cannot use is never silent: quarantined, unassemblable, refused (both databases).

``obsflow ingest`` exits with status 3 and one line per item when its pass
set something aside, 0 when it did not; ``obsflow status`` lists it all.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from obsflow.cli import main
from obsflow.ingest import ingest_once
from obsflow.ingest.cli import SET_ASIDE_EXIT_CODE
from obsflow.telemetry.packets import encode_packets, secondary_headers

from .conftest import make_site


def _packets(apid: int, payloads: list[bytes]) -> bytes:
    n = len(payloads)
    width = max(len(p) for p in payloads)
    body = np.frombuffer(b"".join(p.ljust(width) for p in payloads), np.uint8).reshape(n, width)
    sec = secondary_headers(np.arange(n, dtype=float), 0, 0, 0, np.arange(n))
    return encode_packets(apid, np.arange(n), sec, body).tobytes()


def _drop(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    past = time.time() - 100
    os.utime(path, (past, past))
    return path


NOTE = json.dumps({"record": "note", "text": "housekeeping of this site"}).encode()


def _ingest(root: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["ingest", "--site", str(root)],
                                env={"OBSFLOW_HOME": ""})
    assert "Traceback" not in result.output
    return result.exit_code, result.stderr.splitlines()


def _status(root: Path) -> dict:  # type: ignore[type-arg]
    result = CliRunner().invoke(main, ["status", "--json", "--site", str(root)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_unknown_apids_in_a_parsed_file_are_unassemblable(tmp_path: Path, db_url: str) -> None:
    cfg = make_site(tmp_path / "site", db_url, profile="smallsat")
    mixed = _packets(65, [NOTE] * 3) + _packets(1025, [b"\0" * 64] * 8)
    _drop(cfg.incoming_dir / "mixed.ccsds", mixed)
    code, lines = _ingest(cfg.root)
    assert code == SET_ASIDE_EXIT_CODE
    assert lines[0] == ("set aside: unassemblable mixed.ccsds: 8 packets of APID 1025; expected "
                        "the APIDs of profile smallsat (never assembled)")
    assert "exit status 3" in lines[-1] and len(lines) == 2
    assert _status(cfg.root)["unassemblable"] == [{"name": "mixed.ccsds", "apid": 1025,
                                                   "packets": 8}]
    assert _ingest(cfg.root) == (0, [])  # nothing new set aside: a quiet pass exits 0


def test_foreign_files_are_quarantined_with_the_reason(tmp_path: Path, db_url: str) -> None:
    cfg = make_site(tmp_path / "site", db_url, profile="smallsat")
    record = {"record": "exposure", "exposure_id": 9, "status": "executed", "apid": 32,
              "packets_expected": 4, "rows_per_packet": 2, "telescope": "OBSFLOW-W",
              "instrument": "WIRCAM", "detector": "WRA1"}
    _drop(cfg.incoming_dir / "webb-log.ccsds", _packets(65, [json.dumps(record).encode()]))
    _drop(cfg.incoming_dir / "webb-science.ccsds", _packets(1025, [b"\0" * 64] * 4))
    report = ingest_once(cfg)
    assert sorted(report.quarantined) == ["webb-log.ccsds", "webb-science.ccsds"]
    reasons = {q["name"]: q["reason"] for q in _status(cfg.root)["quarantined"]}
    assert ("observation-log record of exposure 9: telescope 'OBSFLOW-W'; expected 'OBSFLOW-S'"
            in reasons["webb-log.ccsds"])
    assert "found 4 packets of APID 1025; expected APIDs 32, 64, 65" in reasons[
        "webb-science.ccsds"]
    assert sorted(p.name.split("_", 1)[1] for p in cfg.quarantine_dir.glob("*.ccsds")) == [
        "webb-log.ccsds", "webb-science.ccsds"]
    assert len(list(cfg.quarantine_dir.glob("*.reason.txt"))) == 2


def test_refused_entries_are_reported_on_every_pass(tmp_path: Path, db_url: str) -> None:
    cfg = make_site(tmp_path / "site", db_url, profile="smallsat")
    os.symlink("/etc/hostname", cfg.incoming_dir / "link.ccsds")
    os.mkfifo(cfg.incoming_dir / "pipe.ccsds")
    for _ in range(2):  # still there: still reported, still exit 3
        code, lines = _ingest(cfg.root)
        assert code == SET_ASIDE_EXIT_CODE
        assert any("link.ccsds: a symbolic link (to /etc/hostname); expected a regular file"
                   in line for line in lines)
        assert any("pipe.ccsds: a named pipe (FIFO)" in line for line in lines)
    assert list((cfg.raw_dir).rglob("*.ccsds")) == []
    os.remove(cfg.incoming_dir / "link.ccsds")
    os.remove(cfg.incoming_dir / "pipe.ccsds")
    assert _ingest(cfg.root) == (0, [])
