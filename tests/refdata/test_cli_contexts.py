"""``obsflow refs deliver|contexts|best|diff|pin`` on a real site (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from click.testing import CliRunner, Result
from tests.refdata.factories import meta, variant, write_product

from obsflow.cli import main
from obsflow.config import SiteConfig
from obsflow.demo import _deliver_refs


def _run(site: SiteConfig, *args: str) -> Result:
    runner = CliRunner()
    return runner.invoke(main, ["refs", args[0], "--site", str(site.root), *args[1:]],
                         env={"COLUMNS": "400"})


def _ok(site: SiteConfig, *args: str) -> str:
    result = _run(site, *args)
    assert result.exit_code == 0, result.output
    return result.output


def _chosen_dark(output: str) -> str:
    match = re.search(r"^.*DARK\s*│\s*(\S+)", output, re.MULTILINE)
    assert match is not None, output
    return match.group(1)


def _deliver_three(site: SiteConfig, base_refs: dict[str, Path], tmp_path: Path) -> None:
    ssd1 = [str(p) for k, p in base_refs.items() if k.startswith("ssd1_")]
    out = _ok(site, "deliver", "--description", "SSD1 first light", *ssd1)
    assert f"reference context 1: {len(ssd1)} files ({len(ssd1)} new)" in out
    march = variant(base_refs["ssd1_dark"], tmp_path / "dark_march.fits",
                    USEAFTER="2026-03-01T00:00:00")
    assert "reference context 2:" in _ok(site, "deliver", str(march))
    ssd2 = [str(p) for k, p in base_refs.items() if k.startswith("ssd2_")]
    assert "reference context 3:" in _ok(site, "deliver", *ssd2)


def test_contexts_best_and_pin(site: SiteConfig, base_refs: dict[str, Path],
                               tmp_path: Path) -> None:
    _deliver_three(site, base_refs, tmp_path)
    listing = _ok(site, "contexts")
    rows = {int(m.group(1)): m.group(0) for m in re.finditer(r"^│\s*(\d+)\s*│.*$", listing,
                                                             re.MULTILINE)}
    assert sorted(rows) == [1, 2, 3]
    assert "SSD1 first light" in rows[1] and "+1 " in rows[2]
    assert "operational, newest" in rows[3] and "operational" not in rows[2]
    product = write_product(tmp_path, meta())  # SSD1, 2026-06-28
    in_1 = _ok(site, "best", "--context", "1", str(product))
    in_2 = _ok(site, "best", "--context", "2", str(product))
    assert "in reference context 1" in in_1 and "in reference context 2" in in_2
    assert _chosen_dark(in_1).startswith("obsflow-s_ssd1_dark")
    assert _chosen_dark(in_2).startswith("dark_march")
    assert "in reference context 3" in _ok(site, "best", str(product))  # operational
    assert "operational reference context: 1 (pinned)" in _ok(site, "pin", "1")
    default = _ok(site, "best", str(product))
    assert "in reference context 1" in default and _chosen_dark(default) == _chosen_dark(in_1)
    listing = _ok(site, "contexts")
    assert re.search(r"^│\s*1\s*│.*pinned, operational", listing, re.MULTILINE)
    assert re.search(r"^│\s*3\s*│.*│\s*newest\s*│", listing, re.MULTILINE)
    out = _ok(site, "pin", "--newest")
    assert "the newest (3); was pinned 1" in out
    assert "in reference context 3" in _ok(site, "best", str(product))


def test_diff_and_errors(site: SiteConfig, base_refs: dict[str, Path], tmp_path: Path) -> None:
    empty = _run(site, "contexts")
    assert empty.exit_code == 0 and "no reference context yet" in empty.output
    _deliver_three(site, base_refs, tmp_path)
    data = json.loads(_ok(site, "diff", "--json", "1", "2"))
    assert (data["old"], data["new"]) == (1, 2) and data["rules"]["changed"] is False
    assert data["removed"] == [] and len(data["added"]) == 1
    assert [(c["kind"], c["reftype"], c["useafter"]) for c in data["changes"]] == [
        ("added", "DARK", "2026-03-01T00:00:00")]
    assert data["changes"][0]["new"] == data["added"][0]
    table = _ok(site, "diff", "1", "3")
    assert "reference context 1 -> 3" in table and "selection rules unchanged" in table
    assert len(re.findall(r"│\s*added\s*│", table)) == 1 + sum(k.startswith("ssd2_")
                                                                for k in base_refs)
    for args, message in ((("pin", "9"), "cannot pin reference context 9: contexts are "
                                          "numbered 1 to 3"),
                          (("best", "--context", "7",  # a Level-1 product: it is read first
                            str(write_product(tmp_path, meta()))),
                           "no reference context 7"),
                          (("diff", "0", "2"), "no reference context 0")):
        result = _run(site, *args)
        assert result.exit_code == 2 and message in result.output, result.output
    neither = _run(site, "pin")
    assert neither.exit_code == 2 and "give a context NUMBER or --newest" in neither.output
    again = _run(site, "deliver", str(base_refs["ssd2_gain"]))
    assert again.exit_code == 2 and "already delivered" in again.output
    assert re.search(r"^│\s*3\s*│.*operational, newest", _ok(site, "contexts"), re.MULTILINE)


def test_demo_delivers_one_batch(site: SiteConfig, base_refs: dict[str, Path],
                                 tmp_path: Path) -> None:
    folder = base_refs["ssd1_dark"].parent
    n = len(list(folder.glob("*.fits")))
    assert _deliver_refs(site, folder) == n
    assert _deliver_refs(site, folder) == 0  # a second demo run delivers nothing new
    later = tmp_path / "later"
    later.mkdir()
    variant(base_refs["ssd1_gain"], later / "extra.fits", DESCRIP="extra")
    shutil.copy(base_refs["ssd1_dark"], later / "dark.fits")
    assert _deliver_refs(site, later) == 1  # only the file not delivered yet
    rows = re.findall(r"^│\s*(\d+)\s*│[^│]*│\s*(\d+)\s*│\s*\+(\d+)", _ok(site, "contexts"),
                      re.MULTILINE)
    assert rows == [("1", str(n), str(n)), ("2", str(n + 1), "1")]
