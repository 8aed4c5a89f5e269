"""Program files: the examples pass, bad ones fail with one line naming file, field, expected."""

from __future__ import annotations

from pathlib import Path

import pytest
from astropy.time import Time
from click.testing import CliRunner

from obsflow.cli import main
from obsflow.exceptions import ProposalError
from obsflow.planning.scheduler import default_cycle, read_schedule
from obsflow.profiles import load_profile
from obsflow.proposals import check_program, example_programs, load_program
from obsflow.site import init_site

PROF = load_profile("webb_like")
GOOD = """
[program]
id = "05678"
pi = "T. Ester"
title = "t"

[[targets]]
name = "NEP"
ra = 270.0
dec = 66.56
filters = ["F150W"]
readpatt = "RAPID"
ngroups = 4
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prog.toml"
    path.write_text(text)
    return path


def test_examples_pass() -> None:
    assert len(example_programs()) == 2
    for path in example_programs():
        notes = check_program(load_program(path), PROF, default_cycle(PROF), path.name)
        assert notes and "visible" in notes[0]


@pytest.mark.parametrize(("change", "message"), [
    (('filters = ["F150W"]', 'filters = ["F999W"]'),
     "prog.toml: targets[0] (NEP): unknown filter 'F999W'; allowed: F150W, F200W"),
    (("ngroups = 4", "ngroups = 40"), "targets[0] (NEP).ngroups: RAPID allows at most 10 groups, got 40"),
    (('id = "05678"', 'id = "5678"'), "prog.toml: program.id: String should match pattern"),
    (("dec = 66.56", "dec = 96.0"), "prog.toml: targets[0].dec: Input should be less than or equal to 90"),
    (("ra = 270.0\n", ""), "targets[0]: Value error, give ra and dec"),
    (('readpatt = "RAPID"', 'readpatt = "RAPID"\ncolour = 3'), "targets[0].colour: Extra inputs are not permitted"),
    (("ngroups = 4", 'ngroups = 4\nwindows = [["2020-01-01", "2020-02-01"]]'),
     "targets[0] (NEP).windows: no window overlaps the cycle"),
])
def test_bad_programs(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    path = _write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ProposalError) as info:
        check_program(load_program(path), PROF, default_cycle(PROF), str(path))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_never_visible_target(tmp_path: Path) -> None:
    # the Sun's neighbourhood over a 3-day cycle
    from astropy.coordinates import get_body
    from astropy.time import Time

    start = default_cycle(PROF)[0]
    sun = get_body("sun", Time(start + 1, format="mjd"))
    text = GOOD.replace("ra = 270.0", f"ra = {sun.ra.deg:.3f}").replace(
        "dec = 66.56", f"dec = {sun.dec.deg:.3f}")
    path = _write(tmp_path, text)
    with pytest.raises(ProposalError, match=r"targets\[0\] \(NEP\): never visible"):
        check_program(load_program(path), PROF, (start, start + 3), str(path))


def test_cli_check_make_status(tmp_path: Path) -> None:
    runner = CliRunner()
    examples = [str(p) for p in example_programs()]
    res = runner.invoke(main, ["propose", "check", *examples])
    assert res.exit_code == 0 and res.output.count(": ok") == 2, res.output
    bad = _write(tmp_path, GOOD.replace("ngroups = 4", "ngroups = 40"))
    res = runner.invoke(main, ["propose", "check", str(bad)])
    assert res.exit_code == 2 and "allows at most 10 groups" in res.output
    plan = tmp_path / "plan.json"
    res = runner.invoke(main, ["plan", "make", "--out", str(plan), *examples])
    assert res.exit_code == 0 and "scheduled 5/5" in res.output, res.output
    # a site that has heard nothing: planned before the slots, missed after them
    site = str(init_site(tmp_path / "site", profile="webb_like", env={}).root)
    sched = read_schedule(plan)
    before, after = (Time(t, format="mjd").isot for t in (sched.start,
                                                           sched.scheduled[-1].end + 0.01))
    res = runner.invoke(main, ["plan", "status", str(plan), "--site", site, "--now", before])
    assert res.exit_code == 0 and res.output.count(" planned\n") == 5, res.output
    res = runner.invoke(main, ["plan", "status", str(plan), "--site", site, "--now", after])
    assert res.exit_code == 0 and res.output.count(" missed\n") == 5, res.output
    res = runner.invoke(main, ["plan", "make", "--out", str(tmp_path / "next.json"), "--after",
                               str(plan), "--site", site, "--now", "2026-10-29"])
    assert res.exit_code == 0 and "scheduled 5/5" in res.output, res.output
    res = runner.invoke(main, ["plan", "status", str(plan), "--site", site, "--now", "noon"])
    assert res.exit_code == 2 and "--now: 'noon' is not an ISO date/time" in res.output
    res = runner.invoke(main, ["plan", "visibility", "--ra", "53.16", "--dec", "-27.78"])
    assert res.exit_code == 0 and "PA_V3" in res.output
