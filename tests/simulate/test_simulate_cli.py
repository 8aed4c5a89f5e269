"""`obsflow simulate` on the command line."""

from __future__ import annotations

import json

from click.testing import CliRunner

from obsflow.cli import main


def test_cli_simulate_writes_a_downlink(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "sim"
    result = CliRunner().invoke(main, ["simulate", "--out", str(out), "--seed", "2", "--profile",
                                       "smallsat", "--exposures", "2", "--faults", "all"])
    assert result.exit_code == 0, result.output
    assert len(list((out / "downlink").glob("*.ccsds"))) >= 3
    assert list((out / "downlink").glob("*_retx.ccsds"))
    assert len(list((out / "truth").glob("*_truth.fits"))) == 2
    assert list((out / "refs").glob("*.fits"))
    assert not (out / "level1").exists()
    manifest = json.loads((out / "truth" / "downlink.json").read_text())
    assert manifest["seed"] == 2 and manifest["profile"] == "smallsat"
    assert "reorder" in manifest["faults"]
    assert "downlink files" in result.output


def test_cli_exposures_with_hours_is_a_usage_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "sim"
    result = CliRunner().invoke(main, ["simulate", "--out", str(out), "--profile", "smallsat",
                                       "--exposures", "2", "--hours", "1"])
    assert result.exit_code == 2
    assert "--exposures or --hours" in result.output
    assert not out.exists()


def test_cli_unknown_fault_is_reported(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(main, ["simulate", "--out", str(tmp_path / "sim"), "--profile",
                                       "smallsat", "--exposures", "1", "--faults", "meteor"])
    assert result.exit_code != 0
    assert "meteor" in result.output and "bitflip" in result.output
