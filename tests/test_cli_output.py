"""Command output people copy values from is never cut (piped or on a terminal)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rich.table import Table

from obsflow.cli_console import OutputConsole, output_console


def test_piped_table_keeps_every_long_value_whole(tmp_path: Path) -> None:
    site = tmp_path / ("a-rather-long-folder-name-for-a-site-" * 3) / "site"
    out = subprocess.run([sys.executable, "-m", "obsflow", "init", str(site)],
                         capture_output=True, text=True, check=True).stdout
    assert str(site / "incoming") in out
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) > 120  # not wrapped at 80 columns


def test_terminal_table_folds_long_values_instead_of_cutting_them() -> None:
    value = "jw01234001001_01101_00001_nrca1_cal_" + "x" * 60 + ".fits"
    table = Table(title="products")
    table.add_column("product")
    table.add_column("size")
    table.add_row(value, "12")
    console = OutputConsole(width=50, record=True, force_terminal=True, highlight=False)
    console.print(table)
    text = console.export_text()
    assert "…" not in text
    assert "".join(line.strip("│ ").split("│")[0].strip() for line in text.splitlines()
                   if "│" in line and "product" not in line) .startswith(value)


def test_output_console_is_unlimited_when_not_a_terminal() -> None:
    console = output_console()  # pytest captures stdout: not a terminal
    assert console.width >= 10_000


def test_piped_section_rules_stay_short() -> None:
    """A rule (the demo's section titles) is a line, not PIPED_WIDTH characters, when piped."""
    import io

    from obsflow.cli_console import RULE_WIDTH, output_console

    console = output_console()
    console.file = io.StringIO()
    console.rule("first contacts")
    lines = console.file.getvalue().splitlines()
    assert len(lines) == 1 and "first contacts" in lines[0]
    assert len(lines[0]) <= RULE_WIDTH
