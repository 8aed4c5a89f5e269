"""The scheduler: no observation outside its window or constraints (property test), priorities,
slews and filter moves, skip-ahead rescheduling, plan files."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from obsflow.exceptions import PlanningError
from obsflow.planning.ordering import (
    anneal,
    improve_order,
    kick_search,
    order_runs,
    pareto,
    path_lower_bound,
    tour_cost,
)
from obsflow.planning.scheduler import (
    Observation,
    Schedule,
    balanced,
    filter_steps,
    next_exact_cap,
    observations,
    read_schedule,
    reschedule,
    schedule,
    separation_deg,
    travel_cost,
    write_schedule,
)
from obsflow.planning.visibility import allowed_pa, pa_allowed, visible
from obsflow.profiles import load_profile
from obsflow.proposals.program import Program

PROFILE = load_profile("webb_like")
START = 61400.0
WHEEL = [f.name for f in PROFILE.instruments[0].filters]


def _program(draw: st.DrawFn, pid: int) -> Program:
    targets = []
    for k in range(draw(st.integers(1, 3))):
        target = {"name": f"T{pid}{k}", "ra": draw(st.floats(0, 359.9)),
                  "dec": draw(st.floats(-89, 89)),
                  "filters": draw(st.lists(st.sampled_from(WHEEL), min_size=1, max_size=4,
                                           unique=True)),
                  "readpatt": draw(st.sampled_from(["RAPID", "MEDIUM8", "DEEP8"])),
                  "ngroups": draw(st.integers(2, 10)), "dither": draw(st.integers(1, 4)),
                  "priority": draw(st.integers(1, 3))}
        if draw(st.booleans()):
            a = START + draw(st.floats(0, 20))
            target["windows"] = [(f"{_iso(a)}", f"{_iso(a + draw(st.floats(0.2, 8)))}")]
        if draw(st.booleans()):
            lo = draw(st.floats(0, 359))
            target["pa_range"] = (lo, (lo + draw(st.floats(10, 200))) % 360)
        targets.append(target)
    return Program.model_validate({"program": {"id": f"{10000 + pid}", "pi": "P", "title": "t"},
                                   "targets": targets})


def _iso(mjd: float) -> str:
    from astropy.time import Time

    return str(Time(mjd, format="mjd").isot)


@st.composite
def programs(draw: st.DrawFn) -> list[Program]:
    return [_program(draw, p) for p in range(draw(st.integers(1, 4)))]


def _check_constraints(sched_obs: list, end: float) -> None:  # type: ignore[type-arg]
    previous = START
    for s in sched_obs:
        o = s.observation
        assert START <= s.start and s.end <= end and s.start >= previous - 1e-9
        assert s.end - s.start == pytest.approx(o.duration_s / 86400.0)
        previous = s.end
        mid = (s.start + s.end) / 2
        assert visible(PROFILE, o.ra, o.dec, np.array([s.start, mid, s.end])).all(), o.key
        if o.windows:
            assert any(a <= s.start and s.end <= b for a, b in o.windows), o.key
        lo, hi = allowed_pa(PROFILE, o.ra, o.dec, s.start)
        assert pa_allowed(lo, hi, s.pa_v3), (o.key, s.pa_v3, lo, hi)
        if o.pa_range is None:  # the nominal PA, the middle of the allowed range at its start
            assert s.pa_v3 == pytest.approx((lo + hi) / 2.0 % 360.0, abs=1e-9), o.key
        if o.pa_range is not None:
            a, b = o.pa_range
            assert pa_allowed(a, a + (b - a) % 360.0, s.pa_v3), (o.key, s.pa_v3, o.pa_range)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_no_observation_outside_its_window_or_constraints(progs: list[Program]) -> None:
    end = START + 30.0
    obs = observations(progs, PROFILE)
    sched = schedule(obs, PROFILE, START, end)
    assert len(sched.scheduled) + len(sched.unscheduled) == len(obs)
    assert len({s.observation.key for s in sched.scheduled}) == len(sched.scheduled)
    _check_constraints(sched.scheduled, end)
    for s, nxt in zip(sched.scheduled, sched.scheduled[1:], strict=False):
        a, b = s.observation, nxt.observation
        assert nxt.slew_deg == pytest.approx(separation_deg(a.ra, a.dec, b.ra, b.dec))
        assert nxt.filter_steps == filter_steps(WHEEL, a.filter, b.filter)


def _obs(key: str, ra: float, dec: float, filt: str, priority: int, hours: float) -> Observation:
    return Observation(key, "10000", key, ra, dec, filt, "RAPID", 2, 1, 1, "FULL",
                       hours * 3600.0, priority)


def test_priorities_win_when_time_is_short() -> None:
    # the ecliptic pole is always visible: 3 hours of time, four 1-hour observations
    pole = (270.0, 66.56)
    obs = [_obs(f"p{k}", *pole, "F150W", p, 1.0) for k, p in enumerate((3, 1, 2, 3))]
    sched = schedule(obs, PROFILE, START, START + 3.2 / 24)
    assert sorted(s.observation.priority for s in sched.scheduled) == [1, 2, 3]
    assert [o.priority for o, _ in sched.unscheduled] == [3]


def test_a_targets_filters_follow_each_other_in_wheel_order() -> None:
    near = [(270.0, 66.56), (272.0, 66.0)]
    obs = [_obs(f"{t}{f}", *near[t], f, 1, 0.5) for t in (0, 1) for f in ("F444W", "F150W",
                                                                            "F277W")]
    sched = schedule(obs, PROFILE, START, START + 5)
    order = [(s.observation.ra, s.observation.filter) for s in sched.scheduled]
    assert len(order) == 6
    assert sum(s.slew_deg > 0 for s in sched.scheduled) == 1  # one slew between the targets
    assert sum(s.filter_steps for s in sched.scheduled) <= 4


def test_skip_ahead_reschedules_failed_and_skipped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pole = (270.0, 66.56)
    obs = [_obs(f"o{k}", *pole, WHEEL[k % 4], 1, 1.0) for k in range(5)]
    first = schedule(obs, PROFILE, START, START + 2)
    assert len(first.scheduled) == 5
    path = write_schedule(tmp_path / "plan.json", first, PROFILE)
    assert read_schedule(path).scheduled == first.scheduled
    now = first.scheduled[2].end
    order = [s.observation.key for s in first.scheduled]
    status = dict(zip(order, ("executed", "failed", "skipped"), strict=False))
    nxt = reschedule(first, status, PROFILE, now)
    assert nxt.scheduled[0] == first.scheduled[0]  # executed: kept as it ran
    again = {s.observation.key: s.start for s in nxt.scheduled[1:]}
    assert set(again) == set(order[1:]) and min(again.values()) >= now
    with pytest.raises(PlanningError, match="not one of executed, pending, skipped, failed"):
        reschedule(first, {"o1": "lost"}, PROFILE, now)


def test_never_visible_is_reported() -> None:
    from astropy.coordinates import get_body
    from astropy.time import Time

    sun = get_body("sun", Time(START + 1, format="mjd"))
    o = _obs("anti", (sun.ra.deg + 180) % 360, -sun.dec.deg, "F150W", 1, 1.0)
    sched = schedule([o], PROFILE, START, START + 2)
    assert not sched.scheduled and "never visible" in sched.unscheduled[0][1]


def test_bad_plan_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "plan.json"
    bad.write_text("{}")
    with pytest.raises(PlanningError, match="plan.json: not an obsflow plan file"):
        read_schedule(bad)


def _travel(sched: Schedule) -> float:
    plan = PROFILE.planning
    assert plan is not None
    order = [s.observation for s in sched.scheduled]
    return tour_cost(order, lambda a, b: travel_cost(plan, WHEEL, a, b))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_the_improvement_step_never_costs_more_nor_breaks_a_window(progs: list[Program]) -> None:
    """Against the greedy plan it starts from: the same number of observations with the same
    priorities, travel (slew + wheel seconds) never higher, and every observation inside its
    visibility, windows and PA constraints and the cycle (it may end later than the greedy
    plan); so is every alternative plan of the frontier, none of which beats the chosen one
    on both slew and wheel steps."""
    end = START + 10.0
    obs = observations(progs, PROFILE)
    greedy = schedule(obs, PROFILE, START, end, improve=False)
    better = schedule(obs, PROFILE, START, end)
    assert sorted(s.observation.priority for s in better.scheduled) == sorted(
        s.observation.priority for s in greedy.scheduled)
    assert len(better.scheduled) + len(better.unscheduled) == len(obs)
    assert _travel(better) <= _travel(greedy) + 1e-6
    _check_constraints(better.scheduled, end)
    chosen = _slew_steps(better.scheduled)
    for alt in better.alternatives:
        assert sorted(s.observation.priority for s in alt) == sorted(
            s.observation.priority for s in greedy.scheduled)
        assert len({s.observation.key for s in alt}) == len(alt)
        _check_constraints(alt, end)
        slew, steps = _slew_steps(alt)
        assert not (slew <= chosen[0] + 1e-9 and steps <= chosen[1]
                    and (slew < chosen[0] - 1e-9 or steps < chosen[1])), (chosen, slew, steps)


def _slew_steps(plan: list) -> tuple[float, int]:  # type: ignore[type-arg]
    order = [s.observation for s in plan]
    pairs = list(zip(order, order[1:], strict=False))
    return (sum(separation_deg(a.ra, a.dec, b.ra, b.dec) for a, b in pairs),
            sum(filter_steps(WHEEL, a.filter, b.filter) for a, b in pairs))


def test_the_improvement_step_shortens_a_zigzag() -> None:
    """Targets on a great circle visited greedily by priority zigzag; the improvement visits
    them in order along it (one pass: the minimum slew) and keeps them all."""
    ras = [0, 8, 2, 6, 4, 10]  # priorities 1..3 in pairs: the greedy order jumps back and forth
    obs = [_obs(f"z{k}", 270.0 + ra, 66.56, "F150W", 1 + k // 2, 1.0)
           for k, ra in enumerate(ras)]
    greedy = schedule(obs, PROFILE, START, START + 1, improve=False)
    better = schedule(obs, PROFILE, START, START + 1)
    assert len(better.scheduled) == len(greedy.scheduled) == 6
    path = [s.observation.ra for s in better.scheduled]
    assert path in (sorted(path), sorted(path, reverse=True))
    ends = separation_deg(270.0, 66.56, 280.0, 66.56)
    assert sum(s.slew_deg for s in better.scheduled) == pytest.approx(
        sum(separation_deg(a, 66.56, b, 66.56) for a, b in zip(sorted(path), sorted(path)[1:],
                                                                strict=False)))
    assert sum(s.slew_deg for s in better.scheduled) >= ends - 1e-9
    assert sum(s.slew_deg for s in greedy.scheduled) > sum(s.slew_deg for s in better.scheduled)


def test_improve_order_keeps_every_step_feasible() -> None:
    """Points on a line: the tour becomes monotone (the optimum) unless a constraint forbids
    it ('c' before 'a'); the cost never rises and the constraint holds."""
    x = {"a": 0.0, "b": 5.0, "c": 1.0, "d": 4.0, "e": 2.0}

    def cost(p: str, q: str) -> float:
        return abs(x[p] - x[q])

    free = improve_order(list("abcde"), cost, lambda seq: True)
    assert tour_cost(free, cost) == pytest.approx(5.0)
    kept = improve_order(list("cbade"), cost, lambda seq: seq.index("c") < seq.index("a"))
    assert kept.index("c") < kept.index("a")
    assert tour_cost(kept, cost) <= tour_cost(list("cbade"), cost)
    assert sorted(kept) == list("abcde")


def _wheel_cost(p: tuple[str, int], q: tuple[str, int]) -> float:
    """Items are (target, wheel position of 4): 100 per slew plus the wheel's steps."""
    d = abs(p[1] - q[1])
    return 100.0 * (p[0] != q[0]) + min(d, 4 - d)


def test_order_runs_is_the_exact_optimum_over_each_runs_order() -> None:
    """Against brute force over every permutation inside every run: the same (lowest) cost,
    the runs in their order with their own elements."""
    from itertools import permutations, product

    rng = np.random.default_rng(3)
    for _ in range(20):
        runs = [[(t, int(f)) for f in rng.choice(4, int(rng.integers(1, 4)), replace=False)]
                for t in "abcd"]
        seq = [x for run in runs for x in run]
        got = order_runs(seq, lambda x: x[0], _wheel_cost)
        best = min(tour_cost([x for r in perm for x in r], _wheel_cost)
                   for perm in product(*(permutations(r) for r in runs)))
        assert tour_cost(got, _wheel_cost) == pytest.approx(best)
        assert [x[0] for x in got] == [x[0] for x in seq] and sorted(got) == sorted(seq)
    # a visit that can start in the filter the previous one ended in does
    seq = [("a", 0), ("a", 3), ("b", 0), ("b", 1)]
    assert order_runs(seq, lambda x: x[0], _wheel_cost) == [("a", 3), ("a", 0), ("b", 0), ("b", 1)]


def test_kick_search_never_costs_more_and_keeps_constraints() -> None:
    """Iterated local search from a local optimum: a permutation of it, no costlier, every
    accepted sequence feasible ('c' before 'a'), the same result for the same seed."""
    x = {k: v for k, v in zip("abcdefgh", (0.0, 7.0, 1.0, 5.0, 2.0, 6.0, 3.0, 4.0),
                                strict=True)}

    def cost(p: str, q: str) -> float:
        return abs(x[p] - x[q]) ** 0.5  # concave: 2-opt/or-opt alone stop in local optima

    def ok(seq: list[str]) -> bool:
        return seq.index("c") < seq.index("a")

    start = improve_order(list("cbhadgfe"), cost, ok)
    found = kick_search(start, cost, ok, lambda s: improve_order(s, cost, ok), kicks=40)
    assert sorted(found) == sorted(start) and ok(found)
    assert tour_cost(found, cost) <= tour_cost(start, cost) + 1e-12
    assert found == kick_search(start, cost, ok, lambda s: improve_order(s, cost, ok), kicks=40)


def test_a_visit_starts_in_the_filter_the_previous_one_ended_in() -> None:
    """Two targets far apart, F444W+F150W (adjacent on the wheel: one step) and
    F150W+F200W: one slew, and the wheel steps only inside the visits (2 steps), the second
    visit starting in the first one's last filter."""
    obs = [_obs("A444", 270.0, 66.56, "F444W", 1, 0.5), _obs("A150", 270.0, 66.56, "F150W", 1, 0.5),
           _obs("B150", 300.0, 60.0, "F150W", 1, 0.5), _obs("B200", 300.0, 60.0, "F200W", 1, 0.5)]
    sched = schedule(obs, PROFILE, START, START + 2)
    assert len(sched.scheduled) == 4
    assert sum(s.slew_deg > 0 for s in sched.scheduled) == 1
    assert sum(s.filter_steps for s in sched.scheduled) == 2
    keys = [s.observation.key for s in sched.scheduled]
    assert keys in (["A444", "A150", "B150", "B200"], ["B200", "B150", "A150", "A444"])


def test_a_costlier_wheel_step_trades_slew_for_wheel_steps() -> None:
    """Two nearby targets in the same two far-apart filters (F150W, F277W: two steps), and a
    third observation whose window opens later (time to spare before it): at the wheel's own
    10 s per step each target is one visit (4 steps between them); when a step costs as much
    as a slew's settle, the plan observes both targets in one filter, then both in the other
    (2 steps, one slew more), still inside every window."""
    obs = [_obs(f"{t}{f}", 270.0 + t, 66.56, f, 1, 0.5) for t in (0, 1)
           for f in ("F150W", "F277W")]
    obs.append(replace(_obs("late", 280.0, 66.56, "F277W", 1, 0.5),
                       windows=((START + 0.5, START + 1.0),)))
    cheap = schedule(obs, PROFILE, START, START + 2)
    dear = schedule(obs, PROFILE, START, START + 2, wheel_step_cost_s=300.0)
    assert len(cheap.scheduled) == len(dear.scheduled) == 5
    steps = [sum(s.filter_steps for s in p.scheduled) for p in (cheap, dear)]
    slews = [sum(s.slew_deg > 0 for s in p.scheduled) for p in (cheap, dear)]
    assert steps == [4, 2] and slews[1] == slews[0] + 1, (steps, slews)
    assert dear.scheduled[-1].end <= cheap.scheduled[-1].end + 1e-9
    _check_constraints(dear.scheduled, START + 2)


def test_path_lower_bound_never_exceeds_the_optimum() -> None:
    """Against brute force over every ordering of 3-6 points (slew-like distances plus
    wheel-like steps, zero-cost pairs included): never above the cheapest path, and close
    to it (the bound is what bench_plan's verdicts rest on)."""
    from itertools import permutations

    rng = np.random.default_rng(0)
    gaps = []
    for _ in range(15):
        n = int(rng.integers(3, 7))
        xy = rng.uniform(0, 10, (n, 2))
        xy[rng.integers(0, n)] = xy[0]  # two elements at one place: a zero-distance pair
        f = rng.integers(0, 4, n)
        d = np.abs(f[:, None] - f[None, :])
        cost = np.hypot(*(xy[:, None] - xy[None]).transpose(2, 0, 1)) + 5.0 * np.minimum(d, 4 - d)
        best = min(sum(cost[a, b] for a, b in zip(p, p[1:], strict=False))
                   for p in permutations(range(n)))
        bound = path_lower_bound(cost, 1.1 * best)
        assert bound <= best + 1e-6
        gaps.append(1 - bound / best if best else 0.0)
    assert np.median(gaps) < 0.05


def _plane(n: int, seed: int) -> tuple[list[int], object]:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 10, (n, 2))
    return list(range(n)), lambda a, b: float(np.hypot(*(xy[a] - xy[b])))


def test_anneal_finds_the_brute_force_optimum_and_keeps_every_constraint() -> None:
    """Random points in a plane, some orders forbidden (element 2 before element 0): the
    annealed order is never costlier than its start, always allowed, reproducible for a
    seed, and on these small cases as cheap as the best allowed order (brute force)."""
    from itertools import permutations

    def ok(seq: list[int]) -> bool:
        return seq.index(2) < seq.index(0)

    hits = 0
    for seed in range(6):
        items, cost = _plane(7, seed)
        start = [2, 0, 1, 3, 4, 5, 6]
        found = anneal(start, cost, ok, iters=20000, seed=seed)
        assert sorted(found) == items and ok(found)
        assert tour_cost(found, cost) <= tour_cost(start, cost) + 1e-9
        assert found == anneal(start, cost, ok, iters=20000, seed=seed)
        best = min(tour_cost(p, cost) for p in permutations(items) if ok(list(p)))
        hits += tour_cost(found, cost) <= best + 1e-9
    assert hits >= 5, hits


def test_anneal_exchanges_only_exchangeable_elements() -> None:
    """Eight points in a sequence and four spare ones, exchangeable only within a "priority"
    class: the result has eight distinct elements from both, the same classes, and costs
    less when a spare point shortens the path (the far points of class 0 are replaced by the
    spare near ones)."""
    pts = {k: (float(k), 0.0) for k in range(8)}
    pts.update({8: (1.5, 0.2), 9: (2.5, 0.2), 10: (3.5, 50.0), 11: (4.5, 60.0)})
    pts[1], pts[3] = (1.0, 40.0), (3.0, -40.0)  # two far detours of class 0
    cls = {k: 0 if k in (1, 3, 8, 9) else 1 for k in pts}

    def cost(a: int, b: int) -> float:
        return float(np.hypot(pts[a][0] - pts[b][0], pts[a][1] - pts[b][1]))

    start = list(range(8))
    found = anneal(start, cost, lambda seq: True, iters=20000, seed=1, spare=[8, 9, 10, 11],
                   exchangeable=lambda a, b: cls[a] == cls[b])
    assert len(found) == 8 and len(set(found)) == 8
    assert sorted(cls[k] for k in found) == sorted(cls[k] for k in start)
    assert {8, 9} <= set(found) and not {1, 3, 10, 11} & set(found)
    assert tour_cost(found, cost) < tour_cost(start, cost)


def test_pareto_and_balanced() -> None:
    pts = [(10.0, 5.0), (12.0, 3.0), (11.0, 6.0), (20.0, 1.0), (10.0, 5.0), (30.0, 1.0)]
    assert pareto(pts) == [0, 1, 3]
    # relative excess over the best slew (10) and steps (1): (0, 4), (0.2, 2), (1.0, 0)
    assert balanced([pts[i] for i in (0, 1, 3)]) == 2
    # best slew 10, best steps 2: (0, 2), (0.1, 0.5), (1.0, 0)
    assert balanced([(10.0, 6.0), (11.0, 3.0), (20.0, 2.0)]) == 1
    assert balanced([(5.0, 0.0)]) == 0


def _offered(points: list[tuple[float, int]]) -> list[int]:
    """The caps :func:`next_exact_cap` offers, one after the other, the frontier unchanged."""
    solved: list[int] = []
    while (cap := next_exact_cap(points, set(solved))) is not None:
        solved.append(cap)
    return solved


def test_next_exact_cap_on_a_known_frontier() -> None:
    # seed 1's annealing frontier: best slew 287, fewest steps 12; the balanced plan is
    # 365/15 (excesses 0.272 and 0.25), so caps 12-15 and the one above it, 16 (its step
    # excess 0.333 alone exceeds 0.272), smallest first; 17-19 never
    points = [(287.0, 19), (312.0, 17), (365.0, 15), (369.0, 14), (419.0, 13), (424.0, 12)]
    assert _offered(points) == [12, 13, 14, 15, 16]
    # a slew-limited choice: 40/6 (excesses 1.0 and 0.2) opens every cap up to 10 (step
    # excess 1.0), not 11 or 12
    assert _offered([(20.0, 12), (40.0, 6), (100.0, 5)]) == [5, 6, 7, 8, 9, 10]
    assert _offered([(5.0, 3)]) == [3] and next_exact_cap([], set()) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(1.0, 1000.0), st.integers(0, 30)), min_size=1,
                max_size=12),
       st.integers(0, 40), st.floats(0.0, 2000.0))
def test_caps_not_offered_cannot_change_the_balanced_choice(
        raw: list[tuple[float, int]], cap: int, slew: float) -> None:
    """A plan of K steps, K a cap :func:`next_exact_cap` does not offer (inside the
    frontier's range), with no less slew than the frontier's best, is never the balanced
    choice and does not change it; every cap up to the choice's own is offered."""
    points = [raw[i] for i in pareto([(x, float(k)) for x, k in raw])]
    offered = _offered(points)
    assert len(offered) == len(set(offered)) and offered == sorted(offered)
    pick = balanced([(x, float(k)) for x, k in points])
    lo, hi = min(k for _, k in points), max(k for _, k in points)
    assert set(range(lo, points[pick][1] + 1)) <= set(offered) <= set(range(lo, hi + 1))
    if lo <= cap <= hi and cap not in offered:
        extra = (max(slew, min(x for x, _ in points)), cap)
        grown = [(x, float(k)) for x, k in [*points, extra]]
        assert grown[balanced(grown)] == (points[pick][0], float(points[pick][1]))


def test_the_default_offers_a_frontier_and_picks_the_balanced_plan() -> None:
    """Six targets a few degrees apart in two far-apart filters (F150W, F277W), priorities
    that make the greedy pass observe every target in F150W, then every one in F277W, and
    zigzag: the improvement step offers plans from least slew to fewest wheel steps, none
    beaten on both by another, the chosen one the balanced one, no more travel time than
    the greedy plan, and with fewer wheel steps than the least-travel-time plan (the wheel
    at its own 10 s a step)."""
    ras = [0, 8, 2, 6, 4, 10]
    obs = [_obs(f"z{k}{f}", 270.0 + ra, 66.56, f, 1 + 3 * (f == "F277W") + k // 2, 0.5)
           for k, ra in enumerate(ras) for f in ("F150W", "F277W")]
    greedy = schedule(obs, PROFILE, START, START + 1, improve=False)
    sched = schedule(obs, PROFILE, START, START + 1)
    least = schedule(obs, PROFILE, START, START + 1,
                     wheel_step_cost_s=PROFILE.planning.filter_step_s)
    plans = [sched.scheduled, *sched.alternatives]
    assert all(len(p) == 12 for p in plans) and len(least.scheduled) == 12
    points = [_slew_steps(p) for p in plans]
    assert sched.alternatives and len(pareto(points)) == len(points)
    assert balanced(points) == 0
    assert _slew_steps(sched.scheduled)[1] < _slew_steps(least.scheduled)[1]
    assert _travel(sched) <= _travel(greedy) + 1e-6
    for p in plans:
        _check_constraints(p, START + 1)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.randoms(use_true_random=False))
def test_remembered_fits_and_costs_equal_fresh_ones(progs: list[Program], rng) -> None:  # type: ignore[no-untyped-def]
    """The search's memory changes nothing: whether a sequence fits, asked again in any order
    after others, is what a fresh re-timing of it from the cycle's start says; each pair's
    remembered travel cost equals :func:`travel_cost`; a search asked twice is run once."""
    from obsflow.planning.scheduler import _Grid, _timed, _Timer, _Travel

    end = START + 10.0
    obs = observations(progs, PROFILE)
    grid = _Grid(obs, PROFILE, START, end, 0.25)
    timer = _Timer(grid, PROFILE, START, end)
    seqs = [rng.sample(obs, len(obs)) for _ in range(5)]
    for seq in [*seqs, *seqs[::-1], *seqs]:
        fresh = _timed(seq, grid, PROFILE, START, end, exact_pa=False) is not None
        assert timer.fits(seq) == fresh
    plan = PROFILE.planning
    assert plan is not None
    travel = _Travel(obs, plan, WHEEL)
    for step in (None, 600.0):
        cost = travel.cost(step)
        for a in obs:
            for b in obs:
                assert cost(a, b) == travel_cost(plan, WHEEL, a, b, step)
    calls = []
    def fits(seq: list[Observation]) -> bool:
        calls.append(1)
        return timer.fits(seq)
    first = travel.search(seqs[0], 300.0, None, fits)
    n = len(calls)
    assert travel.search(list(seqs[0]), 300.0, None, fits) is first and len(calls) == n
