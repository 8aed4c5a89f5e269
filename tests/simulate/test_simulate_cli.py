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


def test_cli_simulate_tso_writes_one_time_series(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from astropy.table import Table

    out = tmp_path / "sim"
    result = CliRunner().invoke(main, ["simulate", "--out", str(out), "--subarray", "64",
                                       "--tso", "20", "--level1"])
    assert result.exit_code == 0, result.output
    (truth,) = (out / "truth").glob("*_tso.ecsv")
    table = Table.read(truth)
    assert len(table) == 20 and set(table.meta["transit"]) == {"t0", "depth", "duration",
                                                               "impact", "u1", "u2"}
    (uncal,) = (out / "level1").glob("*_uncal.fits")
    from obsflow.models.level1 import read_uncal

    assert read_uncal(uncal).data.shape == (20, 6, 64, 64)
    assert list((out / "downlink").glob("*_ephem.ecsv"))
    plan = json.loads((out / "truth" / "plan.json").read_text())
    assert [p["target"] for p in plan["programs"]] == ["TRANSIT-HOST-1"]


def test_cli_tso_with_exposures_is_a_usage_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(main, ["simulate", "--out", str(tmp_path / "sim"), "--tso", "5",
                                       "--exposures", "2"])
    assert result.exit_code == 2
    assert "--tso plans its one exposure" in result.output
