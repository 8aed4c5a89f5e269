"""``obsflow ingest``, ``obsflow status`` and ``obsflow accounting gaps`` from the command line."""

from __future__ import annotations

import json

from click.testing import CliRunner

from obsflow.cli import main

from .conftest import deliver, dump_files


def test_ingest_status_and_gaps_commands(downlink, site_factory, tmp_path) -> None:
    cfg = site_factory()
    files = deliver(dump_files(downlink, retransmission=False), cfg.incoming_dir)
    runner = CliRunner()
    result = runner.invoke(main, ["ingest", "--once", "--site", str(cfg.root)])
    assert result.exit_code == 0, result.output
    assert f"archived {len(files)}," in result.output

    result = runner.invoke(main, ["status", "--json", "--site", str(cfg.root)])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["files"]["total"] == len(files)
    assert status["open_gaps"]["packets"] > 0
    assert status["exposures"]["waiting"] == status["open_gaps"]["exposures"]

    request = tmp_path / "request.json"
    result = runner.invoke(main, ["accounting", "gaps", "--site", str(cfg.root),
                                  "--request", str(request)])
    assert result.exit_code == 0, result.output
    body = json.loads(request.read_text())
    assert body["request"] == "retransmission"
    assert body["packets_missing"] == status["open_gaps"]["packets"]
    assert all(e["missing_ranges"] for e in body["exposures"])

    result = runner.invoke(main, ["status", "--site", str(cfg.root)])
    assert result.exit_code == 0 and "open gaps" in result.output


def test_gaps_on_a_site_missing_nothing_writes_no_request(tmp_path) -> None:
    from obsflow.site import init_site

    cfg = init_site(tmp_path / "site", env={})
    request = tmp_path / "request.json"
    result = CliRunner().invoke(main, ["accounting", "gaps", "--site", str(cfg.root),
                                       "--request", str(request)])
    assert result.exit_code == 0, result.output
    assert "nothing is missing" in result.output
    assert not request.exists() and not list(cfg.logs_dir.glob("retransmission-*.json"))


def test_commands_on_a_missing_site_fail_clearly(tmp_path) -> None:
    result = CliRunner().invoke(main, ["status", "--site", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "obsflow init" in result.output
