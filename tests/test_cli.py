"""Tests of the ``obsflow`` command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from obsflow import __version__
from obsflow.cli import main
from obsflow.config import CONFIG_FILENAME, load_config
from obsflow.exceptions import SiteError


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A runner whose environment has no OBSFLOW_* variables from the developer's shell."""
    for name in list(os.environ):
        if name.startswith("OBSFLOW_"):
            monkeypatch.delenv(name)
    return CliRunner()


def _subcommands() -> list[str]:
    return sorted(main.commands)


def test_help(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in _subcommands():
        assert name in result.output


@pytest.mark.parametrize("name", _subcommands())
def test_subcommand_help(runner: CliRunner, name: str) -> None:
    result = runner.invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: main {name}" in result.output


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_init_creates_site(runner: CliRunner, tmp_path: Path) -> None:
    root = tmp_path / "site"
    result = runner.invoke(main, ["init", str(root), "--profile", "smallsat"])
    assert result.exit_code == 0, result.output
    assert "created" in result.output and "kept" not in result.output
    for name in ("incoming", "raw", "products", "refs", "quarantine", "logs"):
        assert (root / name).is_dir()
    assert (root / "obsflow.db").is_file()
    assert load_config(root, env={}).profile.name == "smallsat"


def test_init_twice_reports_kept(runner: CliRunner, tmp_path: Path) -> None:
    assert runner.invoke(main, ["init", str(tmp_path)]).exit_code == 0
    result = runner.invoke(main, ["init", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "kept" in result.output and "created" not in result.output


def test_init_force_reports_rewritten(runner: CliRunner, tmp_path: Path) -> None:
    assert runner.invoke(main, ["init", str(tmp_path)]).exit_code == 0
    result = runner.invoke(main, ["init", str(tmp_path), "--force"])
    assert result.exit_code == 0, result.output
    assert "rewritten" in result.output


def test_init_default_dir_from_obsflow_home(runner: CliRunner, tmp_path: Path) -> None:
    root = tmp_path / "home-site"
    result = runner.invoke(main, ["init"], env={"OBSFLOW_HOME": str(root)})
    assert result.exit_code == 0, result.output
    assert (root / CONFIG_FILENAME).is_file()


def test_init_default_dir_is_cwd_obsflow_site(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(main, ["init"]).exit_code == 0
    assert (tmp_path / "obsflow-site" / CONFIG_FILENAME).is_file()


def test_profiles_lists_builtins(runner: CliRunner) -> None:
    result = runner.invoke(main, ["profiles"])
    assert result.exit_code == 0, result.output
    for text in ("webb_like", "smallsat", "OBSFLOW-W", "WIRCAM", "2048x2048", "256x256"):
        assert text in result.output


def test_obsflow_error_is_one_line_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["init", str(tmp_path), "--profile", "hubble"])
    assert result.exit_code == 2
    assert (
        result.stderr
        == "error: unknown profile 'hubble'; allowed: <path>.toml, smallsat, webb_like\n"
    )
    assert "Traceback" not in result.output


def test_bad_env_override_is_one_line_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["init", str(tmp_path)], env={"OBSFLOW_SERVER__PROT": "1"})
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: environment variable OBSFLOW_SERVER__PROT")
    assert "allowed: host, port" in lines[0]


def test_error_handler_covers_any_subcommand(runner: CliRunner) -> None:
    """A subcommand added later gets the same handling (the group does it)."""

    @click.command()
    def broken() -> None:
        raise SiteError("no obsflow site at /x; run `obsflow init /x`")

    main.add_command(broken)
    try:
        result = runner.invoke(main, ["broken"])
    finally:
        main.commands.pop("broken")
    assert result.exit_code == 2
    assert result.stderr == "error: no obsflow site at /x; run `obsflow init /x`\n"


def test_other_errors_are_not_swallowed(runner: CliRunner) -> None:
    @click.command()
    def crash() -> None:
        raise RuntimeError("bug")

    main.add_command(crash)
    try:
        result = runner.invoke(main, ["crash"])
    finally:
        main.commands.pop("crash")
    assert result.exit_code == 1
    assert isinstance(result.exception, RuntimeError)


def test_python_dash_m_obsflow(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBSFLOW_")}
    done = subprocess.run(
        [sys.executable, "-m", "obsflow", "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Usage: obsflow" in done.stdout
    assert "init" in done.stdout
    failed = subprocess.run(
        [sys.executable, "-m", "obsflow", "init", str(tmp_path), "--profile", "nope"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert failed.returncode == 2
    assert failed.stderr.startswith("error: unknown profile 'nope'")
    assert len(failed.stderr.splitlines()) == 1
