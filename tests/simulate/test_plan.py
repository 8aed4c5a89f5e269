"""The observing plan: programs, ids, times, hours budget, subarrays."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.time import Time

from obsflow.exceptions import UnknownOptionError
from obsflow.profiles import load_profile
from obsflow.simulate.plan import PlanOptions, make_plan, resolve_subarray
from obsflow.simulate.run import SimOptions, simulate


@pytest.mark.parametrize(("profile", "subarray"), [("smallsat", "FULL"), ("webb_like", "FULL"),
                                                   ("webb_like", "SUB160")])
def test_plan_programs_ids_and_times(profile: str, subarray: str) -> None:
    prof = load_profile(profile)
    plan = make_plan(prof, PlanOptions(seed=2, exposures=14, subarray=subarray))
    inst = prof.instruments[0]
    assert any(p.exclusive_months == 0 for p in plan.programs)
    assert any(p.exclusive_months > 0 for p in plan.programs)
    assert {t.name for t in plan.targets} == {p.target for p in plan.programs}
    exps = plan.exposures
    ndet = len(inst.detectors) if subarray == "FULL" else 1
    assert len(exps) == 14 * ndet
    ids = [e.exposure_id for e in exps]
    assert len(set(ids)) == len(ids) and ids == sorted(ids)
    assert len({e.basename for e in exps}) == len(exps)
    starts = np.array([e.expstart for e in exps])
    ends = np.array([e.expend for e in exps])
    assert np.all(ends > starts)
    assert np.all(np.diff(starts) >= 0)
    # pointings (one per ndet products) follow one another without overlap
    pointing_starts, pointing_ends = starts[::ndet], ends[::ndet]
    assert np.all(pointing_starts[1:] >= pointing_ends[:-1])
    assert np.all(np.isclose(starts.reshape(-1, ndet), pointing_starts[:, None], rtol=0, atol=1e-9))
    start = Time(plan.start_utc).mjd
    assert starts[0] >= start and Time(plan.end_utc).mjd >= ends.max()
    sub = inst.subarray(subarray)
    for e in exps:
        readout = inst.readout(e.readpatt)
        assert (e.nframes, e.groupgap) == (readout.nframes, readout.groupgap)
        assert 1 <= e.ngroups <= readout.max_ngroups
        assert (e.subsize1, e.subsize2, e.substrt1, e.substrt2) == (sub.nx, sub.ny, sub.xstart,
                                                                    sub.ystart)
        assert e.frame_time == sub.frame_time_s
        assert e.group_time == pytest.approx((e.nframes + e.groupgap) * e.frame_time)
        assert (e.expend - e.expstart) * 86400 == pytest.approx(e.exposure_duration, abs=1e-3)
        assert e.expstart < e.expmid < e.expend
        assert e.filter in {f.name for f in inst.filters}
        assert e.status in {"executed", "skipped", "failed"}
    assert {e.status for e in exps} - {"executed"}   # a real observation log has some


def test_plan_is_deterministic_in_the_seed() -> None:
    prof = load_profile("smallsat")
    a = make_plan(prof, PlanOptions(seed=5, exposures=8))
    b = make_plan(prof, PlanOptions(seed=5, exposures=8))
    c = make_plan(prof, PlanOptions(seed=6, exposures=8))
    assert a.to_dict() == b.to_dict()
    assert a.to_dict() != c.to_dict()


def test_default_is_six_exposures() -> None:
    plan = make_plan(load_profile("smallsat"), PlanOptions(seed=1))
    assert len(plan.exposures) == 6


@pytest.mark.parametrize("hours", [0.5, 2.0, 5.0])
def test_hours_fill_at_most_that_many_hours(hours: float) -> None:
    prof = load_profile("smallsat")
    plan = make_plan(prof, PlanOptions(seed=3, hours=hours))
    assert plan.exposures
    start = Time(plan.start_utc).mjd
    last_end = max(e.expend for e in plan.exposures)
    assert (last_end - start) * 24 <= hours + 1e-9
    # more hours, more exposures
    longer = make_plan(prof, PlanOptions(seed=3, hours=hours * 2))
    assert len(longer.exposures) > len(plan.exposures)


def test_exposures_and_hours_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        make_plan(load_profile("smallsat"), PlanOptions(seed=1, exposures=2, hours=1.0))


def test_unknown_subarray_raises_with_the_allowed_names(tmp_path) -> None:  # type: ignore[no-untyped-def]
    prof = load_profile("smallsat")
    with pytest.raises(UnknownOptionError) as info:
        make_plan(prof, PlanOptions(seed=1, subarray="SUB999"))
    assert set(info.value.allowed) == {"FULL", "SUB64"}
    with pytest.raises(UnknownOptionError, match="SUB64"):
        resolve_subarray(prof.instruments[0], "SUB999")
    assert resolve_subarray(prof.instruments[0], "64") == "SUB64"
    assert resolve_subarray(prof.instruments[0], "sub64") == "SUB64"
    assert resolve_subarray(prof.instruments[0], "256") == "FULL"
    with pytest.raises(UnknownOptionError, match="SUB999"):
        simulate(tmp_path / "out", SimOptions(profile="smallsat", subarray="SUB999"))
    assert not (tmp_path / "out").exists()
