"""From proposal to archive: propose -> etc -> plan -> simulate --plan -> ingest -> calibrate ->
archive, then skip-ahead from the site's observation log and archive.

Two smallsat programs on 64x64 subarrays (a deep field in J and K sized by the
ETC, a calibration field in H), planned over a day, observed by the simulator
with one observation skipped; the site's chain runs on SQLite.  The archive must
hold exactly the executed observations' exposures (program, target, filter,
dither points, the plan's start times and position angle) and the programs'
PI, title and exclusive-access months; ``obsflow plan status --site`` must
read from the site's records the statuses the simulator drew (its truth only
checks them: pending after ingest alone, executed once archived) and the next
plan must schedule the skipped observation again after ``--now`` while
keeping the executed ones.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import select
from tests.orchestrate.conftest import make_site

from obsflow.archive.context import Archive
from obsflow.archive.schema import Exposure, Program
from obsflow.cli import main
from obsflow.config import SiteConfig
from obsflow.db import make_engine
from obsflow.demo import _record_programs, plan_examples
from obsflow.exceptions import SimulationError
from obsflow.ingest.service import ingest_once
from obsflow.orchestrate import run_site
from obsflow.planning.scheduler import Schedule, Scheduled, read_schedule
from obsflow.planning.status import site_status
from obsflow.planning.visibility import visible
from obsflow.profiles import load_profile
from obsflow.proposals import example_programs, load_program
from obsflow.simulate.planned import observe_plan
from obsflow.simulate.run import SimResult

DEEP = """[program]
id = "01234"
pi = "A. Rivera"
title = "A deep field in two filters"
exclusive_months = 0
priority = 1

[[targets]]
name = "DEEP-FIELD-1"
field = "DEEP-FIELD-1"
filters = ["J", "K"]
readpatt = "SHALLOW4"
ngroups = {ngroups}
nints = {nints}
dither = 2
subarray = "SUB64"
"""
CAL = """[program]
id = "02345"
pi = "K. Osei"
title = "A calibration field"
exclusive_months = 12
priority = 2

[[targets]]
name = "CAL-FIELD"
field = "CAL-FIELD"
filters = ["H"]
readpatt = "RAPID"
ngroups = 5
dither = 3
subarray = "SUB64"
"""


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@dataclass
class Chain:
    folder: Path
    plan: Schedule
    status: dict[str, str]
    etc: dict  # type: ignore[type-arg]
    sim: SimResult


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    folder = tmp_path_factory.mktemp("proposal-to-archive")
    etc = json.loads(_cli("etc", "--profile", "smallsat", "--filter", "J", "--readpatt",
                          "SHALLOW4", "--subarray", "SUB64", "--mag", "15", "--snr", "20",
                          "--json"))
    (folder / "deep.toml").write_text(DEEP.format(ngroups=etc["ngroups"], nints=etc["nints"]))
    (folder / "cal.toml").write_text(CAL)
    programs = [str(folder / "deep.toml"), str(folder / "cal.toml")]
    assert _cli("propose", "check", "--profile", "smallsat", "--days", "1", *programs).count(
        ": ok") == 2
    _cli("plan", "make", "--profile", "smallsat", "--days", "1", "--out",
         str(folder / "plan.json"), *programs)
    from obsflow.cli import _run_simulation  # the CLI's own run, without the table
    from obsflow.simulate.run import SimOptions

    sim = _run_simulation(folder / "sim", SimOptions(
        seed=2, profile="smallsat", dumps=1, plan=folder / "plan.json", plan_failures=1))
    status = json.loads((folder / "sim" / "truth" / "status.json").read_text())
    return Chain(folder, read_schedule(folder / "plan.json"), status, etc, sim)


def test_the_simulator_observes_the_plan(chain: Chain) -> None:
    assert len(chain.plan.scheduled) == 3 and not chain.plan.unscheduled
    assert sorted(chain.status.values()) == ["executed", "executed", "skipped"]
    by_key = {s.observation.key: s for s in chain.plan.scheduled}
    assert set(chain.status) == set(by_key)
    metas = chain.sim.plan.exposures
    assert len(metas) == 2 + 2 + 3  # every dither point of every observation, one detector
    for m in metas:
        s = by_key[f"{m.program}:{m.target}:{m.filter}"]
        o = s.observation
        assert (m.readpatt, m.ngroups, m.nints, m.subarray, m.dither_npoints) == (
            o.readpatt, o.ngroups, o.nints, o.subarray, o.dither)
        assert s.start - 1e-9 <= m.expstart < m.expend <= s.end + 1e-9  # inside its slot
        assert m.pa_v3 == s.pa_v3 and m.status == chain.status[o.key]
    deep = [m for m in metas if m.program == "01234"]
    assert {(m.ngroups, m.nints) for m in deep} == {(chain.etc["ngroups"], chain.etc["nints"])}
    assert abs(deep[0].exposure_duration - chain.etc["exposure_time_s"]) < 1e-6  # the ETC's


@dataclass
class Site:
    cfg: SiteConfig
    after_ingest: dict[str, str]
    """Each observation's status from the site's records after ingest alone."""


@pytest.fixture(scope="module")
def site(chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> Site:
    """The chain's downlink through a SQLite site: ingest (statuses read), then the whole
    chain (run_site)."""
    cfg = make_site(tmp_path_factory.mktemp("site") / "site", chain.sim, profile="smallsat")
    _record_programs(cfg, chain.folder / "sim" / "truth" / "plan.json")
    ingest_once(cfg)
    after_ingest = _site_status(cfg, chain.plan, max(s.end for s in chain.plan.scheduled))
    summary = run_site(cfg)
    assert summary.total("failed") == 0, summary.counts
    return Site(cfg, after_ingest)


def _site_status(cfg: SiteConfig, plan: Schedule, now: float) -> dict[str, str]:
    engine = make_engine(cfg.database_url)
    try:
        return site_status(engine, plan, now)
    finally:
        engine.dispose()


def test_the_archive_holds_the_planned_exposures(chain: Chain, site: Site) -> None:
    executed = {s.observation.key: s for s in chain.plan.scheduled
                if chain.status[s.observation.key] == "executed"}
    with Archive.from_site(site.cfg) as archive, archive.session() as session:
        everything = session.scalars(select(Exposure)).all()
        programs = {p.program: (p.pi_name, p.title, p.exclusive_months)
                    for p in session.scalars(select(Program))}
    # a mosaic (visit and exposure 0: all of them) per executed observation, beside its exposures
    rows = [e for e in everything if e.exposure > 0]
    mosaics = Counter(f"{e.program}:{e.target_name}:{e.filter}" for e in everything
                      if e.exposure == 0)
    assert mosaics == Counter(executed.keys())
    got = Counter(f"{e.program}:{e.target_name}:{e.filter}" for e in rows)
    assert got == Counter({k: s.observation.dither for k, s in executed.items()})
    for e in rows:
        s = executed[f"{e.program}:{e.target_name}:{e.filter}"]
        assert s.start - 1e-6 <= e.t_min < e.t_max <= s.end + 1e-6
        assert (e.readpatt, e.subarray) == (s.observation.readpatt, "SUB64")
    assert programs == {"01234": ("A. Rivera", "A deep field in two filters", 0),
                        "02345": ("K. Osei", "A calibration field", 12)}


def test_statuses_come_from_the_sites_records(chain: Chain, site: Site) -> None:
    """Pending while only ingested (the log says executed, nothing archived yet), executed once
    archived, skipped as the log says: the simulator's truth, read back from the site; an
    observation the site never heard of is missed once its slot is over, planned before."""
    truth = chain.status
    assert site.after_ingest == {k: "pending" if v == "executed" else v for k, v in truth.items()}
    end = max(s.end for s in chain.plan.scheduled)
    assert _site_status(site.cfg, chain.plan, end) == truth
    first = chain.plan.scheduled[0]
    ghost = Scheduled(replace(first.observation, key="01234:NOWHERE:J", target="NOWHERE"),
                      first.start, first.end, first.pa_v3, 0.0, 0)
    plan = Schedule(chain.plan.start, chain.plan.end, [*chain.plan.scheduled, ghost])
    assert _site_status(site.cfg, plan, first.end + 1e-3)["01234:NOWHERE:J"] == "missed"
    assert _site_status(site.cfg, plan, first.start)["01234:NOWHERE:J"] == "planned"
    # an exposure outside the observation's slot is another attempt: not counted for it
    moved = [replace(s, start=s.start + 1.0, end=s.end + 1.0) for s in chain.plan.scheduled]
    later = Schedule(chain.plan.start, chain.plan.end + 1.0, moved)
    assert set(_site_status(site.cfg, later, end + 2.0).values()) == {"missed"}


def test_skip_ahead_from_the_sites_records(chain: Chain, site: Site) -> None:
    plan = chain.folder / "plan.json"
    end = max(s.end for s in chain.plan.scheduled)
    from astropy.time import Time

    now = Time(end, format="mjd").isot
    shown = _cli("plan", "status", str(plan), "--site", str(site.cfg.root), "--now", now)
    skipped = next(k for k, v in chain.status.items() if v == "skipped")
    assert sum(skipped in line and line.rstrip().endswith("skipped") for line in
               shown.splitlines()) == 1
    assert shown.count(" executed\n") == 2
    _cli("plan", "make", "--profile", "smallsat", "--after", str(plan), "--site",
         str(site.cfg.root), "--now", now, "--out", str(chain.folder / "next.json"))
    nxt = read_schedule(chain.folder / "next.json")
    again = {s.observation.key: s for s in nxt.scheduled}
    assert set(again) == set(chain.status) and not nxt.unscheduled
    assert again[skipped].start >= end  # rescheduled after the skip
    for s in chain.plan.scheduled:
        if chain.status[s.observation.key] == "executed":
            assert again[s.observation.key] == s  # kept as it ran
    assert nxt.programs == chain.plan.programs and nxt.profile == "smallsat"


def test_a_plan_for_another_profile_is_refused(chain: Chain) -> None:
    with pytest.raises(SimulationError, match=r"plan.json: a plan for profile 'smallsat'; "
                                              r"expected one for 'webb_like'"):
        observe_plan(load_profile("webb_like"), chain.folder / "plan.json", seed=1)
    with pytest.raises(SimulationError, match="--plan-failures: expected 0 to 3"):
        observe_plan(load_profile("smallsat"), chain.folder / "plan.json", seed=1, failures=4)


def test_the_demo_plans_the_example_proposals(tmp_path: Path) -> None:
    """``obsflow demo --proposals``: both example programs, every observation on the demo's
    subarray, inside its target's visibility; the simulator's plan of it has every dither."""
    profile = load_profile("webb_like")
    sched = read_schedule(plan_examples(profile, "SUB320", tmp_path / "plan.json"))
    examples = [load_program(p) for p in example_programs()]
    wanted = {f"{p.program.id}:{t.name}:{f}": t.dither for p in examples for t in p.targets
              for f in t.filters}
    assert {s.observation.key for s in sched.scheduled} == set(wanted) and not sched.unscheduled
    assert {s.observation.subarray for s in sched.scheduled} == {"SUB320"}
    for s in sched.scheduled:
        assert visible(profile, s.observation.ra, s.observation.dec,
                       np.array([s.start, s.end])).all()
    assert sched.programs["02345"]["pi"] == "K. Osei"
    plan, status = observe_plan(profile, tmp_path / "plan.json", seed=1, failures=0)
    assert Counter(f"{e.program}:{e.target}:{e.filter}" for e in plan.exposures) == wanted
    assert set(status.values()) == {"executed"}
    assert {e.subsize1 for e in plan.exposures} == {320}
