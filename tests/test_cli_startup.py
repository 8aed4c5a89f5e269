"""The CLI starts light: `obsflow --help` and the light commands import no heavy library.

Heavy modules (numpy's friends astropy, numba, scipy; alembic; the archive's
FastAPI) are imported only by the commands that use them: a subcommand's module
is loaded when it runs, a package re-exports its names lazily, and opening a site
whose schema is current needs no Alembic.  On a SQLite site the light commands
(``status``, ``jobs``, ``refs contexts``, ``refs best``) import no SQLAlchemy at
all: they read with :mod:`sqlite3` (:mod:`obsflow.dbread`), and ``refs best``
reads the product's headers without astropy.  Checked in a fresh interpreter.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from obsflow.cli import LAZY_COMMANDS, main
from obsflow.migrations import head_revision, newest_file_revision

HEAVY = ("astropy", "numba", "scipy", "alembic", "fastapi", "matplotlib", "photutils", "dask")

LIGHT_NOT = ("rich.progress", "rich.live", "rich.logging", "obsflow.profiles", "tomli_w")
"""Lighter modules a command imports only when it uses them: rich's progress bars and log
handler (`run`, `simulate`, `-v`), the observatory profile (`status` reads its APIDs;
`jobs` and `refs contexts` do not), the TOML writer (`init`)."""


def _imported_by(args: list[str]) -> dict:
    """Run `obsflow ARGS` in a new interpreter; which heavy modules it imported, its exit code."""
    code = ("import sys, json\n"
            "from obsflow.cli import main\n"
            "try:\n"
            f"    main({args!r}, standalone_mode=False)\n"
            "    status = 0\n"
            "except SystemExit as exc:\n"
            "    status = exc.code\n"
            f"print(json.dumps({{'heavy': sorted(m for m in {HEAVY!r} if m in sys.modules), "
            "'sqlalchemy': 'sqlalchemy' in sys.modules, 'numpy': 'numpy' in sys.modules, "
            "'metadata': 'importlib.metadata' in sys.modules, "
            "'postgresql': 'sqlalchemy.dialects.postgresql' in sys.modules, "
            "'rich': 'rich' in sys.modules, "
            f"'light': sorted(m for m in {LIGHT_NOT!r} if m in sys.modules), "
            "'status': status}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_help_imports_no_database_and_no_science_library() -> None:
    found = _imported_by(["--help"])
    assert found["heavy"] == [] and not found["sqlalchemy"] and not found["numpy"], found
    assert found["light"] == [] and not found["rich"], found  # rich only prints results
    assert not found["metadata"], found  # the version is read only for --version


def _uncal(folder: Path) -> Path:
    from tests.refdata.factories import meta, write_product

    folder.mkdir()
    return write_product(folder, meta())


@pytest.mark.parametrize("command", [["status"], ["jobs"], ["status", "--json"], ["jobs", "--json"],
                                     ["refs", "contexts"], ["refs", "best", "{uncal}"]])
def test_light_commands_import_no_heavy_library(tmp_path: Path, command: list[str]) -> None:
    site = tmp_path / "site"
    main(["init", str(site), "--profile", "smallsat"], standalone_mode=False)
    uncal = _uncal(tmp_path / "product")
    if command[0] == "refs":  # a context to choose from: rows as a delivery writes them
        from sqlalchemy import text

        from obsflow.db import make_engine

        engine = make_engine(f"sqlite:///{site / 'obsflow.db'}")
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO reference_files (id, reftype, telescope, instrument, detector, "
                "\"filter\", readpatt, subarray, useafter, delivered, original_name, stored_name, "
                "sha256, pedigree, description) VALUES (1, 'DARK', 'OBSFLOW-S', 'SSCAM', 'SSD1', "
                "'ANY', 'ANY', 'FULL', '2026-01-01T00:00:00', '2026-01-02 00:00:00.000000', 'd', "
                "'d.fits', 'x', '', '')"))
            conn.execute(text("INSERT INTO ref_contexts (number, created, parent, description, "
                              "rules_version, n_files) VALUES (1, '2026-01-02 00:00:00.000000', "
                              "NULL, '', 'v', 1)"))
            conn.execute(text("INSERT INTO ref_context_files (context, file_id) VALUES (1, 1)"))
        engine.dispose()
    args = [part.format(uncal=uncal) for part in command]
    found = _imported_by([*args, "--site", str(site)])
    assert found["status"] in (0, None)
    assert found["heavy"] == [], found  # no astropy: refs best reads the headers itself
    # nor numpy, nor SQLAlchemy at all on an SQLite site (sqlite3 reads it): tenths of a second
    assert not found["numpy"] and not found["sqlalchemy"], found
    profile = ["obsflow.profiles"] if command[0] == "status" else []
    assert found["light"] == profile, found


def test_a_site_whose_schema_is_not_current_is_upgraded_on_open(tmp_path: Path) -> None:
    """The fast open reads the schema revision with sqlite3 and falls back to Alembic."""
    from sqlalchemy import text

    from obsflow.db import make_engine
    from obsflow.migrations import VERSION_TABLE

    site = tmp_path / "site"
    main(["init", str(site)], standalone_mode=False)
    engine = make_engine(f"sqlite:///{site / 'obsflow.db'}")
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM site_info WHERE key = 'obsflow_version'"))
    found = _imported_by(["jobs", "--site", str(site)])
    assert found["status"] in (0, None) and found["sqlalchemy"], found  # it wrote, with the ORM
    with engine.connect() as conn:
        assert conn.execute(text("SELECT value FROM site_info WHERE key = 'obsflow_version'"
                                 )).scalar() is not None
        assert conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == (
            newest_file_revision())
    engine.dispose()


def test_version_is_the_installed_one() -> None:
    from importlib.metadata import version

    import obsflow

    out = subprocess.run([sys.executable, "-m", "obsflow", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == f"obsflow, version {version('obsflow')}" and obsflow.__version__ == version("obsflow")


def test_lazy_commands_short_help_is_the_commands_own() -> None:
    for name, (module, attribute, short) in LAZY_COMMANDS.items():
        command = getattr(importlib.import_module(module), attribute)
        assert command.name == name
        assert command.get_short_help_str(limit=10_000) == short, name


def test_help_lists_every_command_once() -> None:
    from click.testing import CliRunner

    out = CliRunner().invoke(main, ["--help"]).output
    listed = [line.split()[0] for line in out.split("Commands:")[1].splitlines()
              if line.startswith("  ") and not line.startswith("   ")]
    assert sorted(listed) == sorted(set(main.list_commands(None)))  # type: ignore[arg-type]
    assert set(LAZY_COMMANDS) <= set(listed)


def test_newest_revision_file_is_alembics_head() -> None:
    assert newest_file_revision() == head_revision()


@pytest.mark.parametrize("package", ["obsflow.ingest", "obsflow.models", "obsflow.refdata",
                                     "obsflow.orchestrate", "obsflow.telemetry"])
def test_lazy_package_exports_resolve_to_the_submodules_objects(package: str) -> None:
    mod = importlib.import_module(package)
    for name in mod.__all__:
        value = getattr(mod, name)
        assert vars(mod)[name] is value  # kept on the package after the first read
        assert not isinstance(value, types.ModuleType), name
    # importing a submodule named like a re-exported function must not hide the function
    for name in mod.__all__:
        if importlib.util.find_spec(f"{package}.{name}") is not None:
            importlib.import_module(f"{package}.{name}")
            assert not isinstance(getattr(mod, name), types.ModuleType), name
    with pytest.raises(AttributeError, match="no attribute"):
        _ = mod.no_such_name
    assert set(mod.__all__) <= set(dir(mod))
