"""The CP-SAT order (planning.exact.best_path) and the grid's start intervals it is given:
every window kept (checked by an independent re-timing), never worse than its hint, the
brute-force optimum when it says optimal, the wheel cap, exchanges, determinism."""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest

from obsflow.exceptions import PlanningError
from obsflow.planning.exact import best_path
from obsflow.planning.scheduler import Observation, _Grid, observations, schedule
from obsflow.planning.visibility import visible
from obsflow.profiles import load_profile
from obsflow.proposals.program import Program

PROFILE = load_profile("webb_like")
START = 61400.0


def _instance(seed: int, n: int = 7) -> dict:  # type: ignore[type-arg]
    """A random path problem: points on a line (cost |x_i - x_j|), random wheel steps,
    durations and moves, and one or two allowed start intervals per node, one of them
    around the time a random order reaches it (so that order, the hint, is feasible)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 100, n)
    cost = np.rint(np.abs(x[:, None] - x[None, :]) * 10).astype(int)
    steps = rng.integers(0, 3, (n, n))
    steps = steps + steps.T
    np.fill_diagonal(steps, 0)
    dur = rng.integers(50, 200, n)
    gap = dur[:, None] + cost // 5 + 10
    hint = [int(i) for i in rng.permutation(n)]
    t, starts = 0, [[] for _ in range(n)]
    for k, i in enumerate(hint):
        t += int(gap[hint[k - 1], i]) if k else 0
        t += int(rng.integers(0, 30))
        lo = int(t - rng.integers(0, 400))
        starts[i].append((max(lo, 0), int(t + rng.integers(0, 400))))
        if rng.uniform() < 0.5:  # a second, later opening
            a = int(t + rng.integers(500, 2000))
            starts[i].append((a, a + int(rng.integers(100, 1000))))
    return {"cost": cost, "steps": steps, "gap": gap, "starts": starts, "hint": hint}


def _earliest(order: list[int], gap: np.ndarray, starts: list) -> list[int] | None:  # type: ignore[type-arg]
    """Each node at its earliest allowed start after the previous one (None: one misses)."""
    out, t = [], 0
    for k, i in enumerate(order):
        if k:
            t = out[-1] + int(gap[order[k - 1], i])
        t = next((max(t, lo) for lo, hi in sorted(starts[i]) if hi >= t), None)
        if t is None:
            return None
        out.append(t)
    return out


def _cost(order: list[int], table: np.ndarray) -> int:
    return int(sum(table[a, b] for a, b in zip(order, order[1:], strict=False)))


@pytest.mark.parametrize("seed", range(12))
def test_best_path_keeps_every_window_and_is_never_worse_than_its_hint(seed: int) -> None:
    p = _instance(seed)
    assert _earliest(p["hint"], p["gap"], p["starts"]) is not None  # the hint is feasible
    got = best_path(p["cost"], p["steps"], p["gap"], p["starts"], p["hint"], seed=seed)
    assert sorted(got.order) == sorted(p["hint"])
    assert _earliest(got.order, p["gap"], p["starts"]) is not None
    assert got.cost == _cost(got.order, p["cost"]) <= _cost(p["hint"], p["cost"])
    # the brute force over every feasible order
    best = min(_cost(list(o), p["cost"]) for o in permutations(range(len(p["hint"])))
               if _earliest(list(o), p["gap"], p["starts"]) is not None)
    assert got.cost >= best
    if got.optimal:
        assert got.cost == best
    assert got.bound <= best + 1e-6


def test_best_path_reaches_the_optimum_proves_it_and_is_deterministic() -> None:
    optimal = 0
    for seed in range(6):
        p = _instance(seed)
        a = best_path(p["cost"], p["steps"], p["gap"], p["starts"], p["hint"], seed=3)
        b = best_path(p["cost"], p["steps"], p["gap"], p["starts"], p["hint"], seed=3)
        assert a == b
        optimal += a.optimal
    assert optimal == 6  # seven nodes: proven within the default work


@pytest.mark.parametrize("seed", range(6))
def test_best_path_keeps_the_wheel_cap(seed: int) -> None:
    p = _instance(seed)
    cap = _cost(p["hint"], p["steps"])
    got = best_path(p["cost"], p["steps"], p["gap"], p["starts"], p["hint"], max_steps=cap)
    assert _cost(got.order, p["steps"]) <= cap
    best = min(_cost(list(o), p["cost"]) for o in permutations(range(len(p["hint"])))
               if _earliest(list(o), p["gap"], p["starts"]) is not None
               and _cost(list(o), p["steps"]) <= cap)
    assert got.optimal and got.cost == best


def test_best_path_exchanges_within_a_group_only() -> None:
    # five nodes on a line, the hint visits 0, 1, 2 (far apart) and leaves 3 (group 0, next
    # to 0 and 1) and 4 (group 1) out: exchanging 2 for 3 is cheaper, 2 for 4 is not allowed
    x = np.array([0.0, 10.0, 100.0, 5.0, 6.0])
    cost = np.rint(np.abs(x[:, None] - x[None, :])).astype(int)
    zero = np.zeros((5, 5), int)
    starts = [[(0, 10_000)]] * 5
    got = best_path(cost, zero, zero + 1, starts, [0, 1, 2], groups=[0, 0, 0, 0, 1])
    assert sorted(got.order) == [0, 1, 3] and got.cost == 10
    fixed = best_path(cost, zero, zero + 1, starts, [0, 1, 2])  # no groups: no exchange
    assert sorted(fixed.order) == [0, 1, 2] and fixed.cost == 100


def test_best_path_rejects_a_bad_hint() -> None:
    zero = np.zeros((3, 3), int)
    with pytest.raises(PlanningError, match="distinct"):
        best_path(zero, zero, zero, [[(0, 1)]] * 3, [0, 0, 1])
    with pytest.raises(PlanningError, match="same n"):
        best_path(zero, zero, zero, [[(0, 1)]] * 2, [0, 1])


def test_grid_starts_are_where_the_grid_says_an_observation_fits() -> None:
    prog = Program.model_validate({"program": {"id": "10000", "pi": "P", "title": "t"},
                                   "targets": [{"name": "A", "ra": 80.0, "dec": -69.0,
                                                "filters": ["F150W"], "readpatt": "DEEP8",
                                                "ngroups": 10, "dither": 4,
                                                "windows": [("2026-12-24T06:00",
                                                             "2026-12-25T20:00")]},
                                               {"name": "B", "ra": 200.0, "dec": 40.0,
                                                "filters": ["F444W"], "readpatt": "MEDIUM8",
                                                "ngroups": 8, "dither": 2}]})
    obs = observations([prog], PROFILE)
    end = START + 6.0
    grid = _Grid(obs, PROFILE, START, end, 0.25)
    for o in obs:
        spans = grid.starts(o, end)
        d = o.duration_s / 86400.0
        for t in np.linspace(START, end, 4001):
            fits = t + d <= end and grid.feasible(o, t, t + d)
            inside = any(lo <= t <= hi for lo, hi in spans)
            near_edge = any(min(abs(t - lo), abs(t - hi)) < 1e-9 for lo, hi in spans)
            assert fits == inside or near_edge, (o.key, t)


def _pole_program() -> list:  # type: ignore[type-arg]
    """Five targets around the south ecliptic pole (visible all the time), two priorities,
    one in a window of a day, filters spread over the wheel."""
    targets = [{"name": f"T{k}", "ra": ra, "dec": dec, "filters": fil, "readpatt": "DEEP8",
                "ngroups": 6, "dither": 2, "priority": 1 + k % 2}
               for k, (ra, dec, fil) in enumerate([
                   (90.0, -66.5, ["F150W", "F444W"]), (95.0, -64.0, ["F200W", "F277W"]),
                   (84.0, -68.0, ["F150W", "F277W"]), (92.0, -69.0, ["F444W"]),
                   (86.0, -63.5, ["F200W", "F444W"])])]
    from astropy.time import Time

    targets[1]["windows"] = [(Time(START + 0.2, format="mjd").isot,
                              Time(START + 1.2, format="mjd").isot)]
    prog = Program.model_validate({"program": {"id": "10000", "pi": "P", "title": "t"},
                                   "targets": targets})
    return observations([prog], PROFILE)


def test_the_exact_stage_returns_fitting_plans_under_each_cap_with_less_slew() -> None:
    """Each plan of the scheduler's CP-SAT stage keeps the observations and the cap, travels
    less than the hint, fits when re-timed exactly from scratch, and is the same every run."""
    from obsflow.planning.scheduler import _exact, _timed, _Timer, _Travel, plan_measures
    from obsflow.planning.visibility import planning_of

    obs = _pole_program()
    end = START + 1.5
    greedy = schedule(obs, PROFILE, START, end, improve=False)
    order = [s.observation for s in greedy.scheduled]
    assert len(order) == len(obs)
    plan, wheel = planning_of(PROFILE), [f.name for f in PROFILE.instruments[0].filters]
    grid = _Grid(obs, PROFILE, START, end, 0.25)
    timer = _Timer(grid, PROFILE, START, end)
    travel = _Travel(order, plan, wheel)
    before = plan_measures(plan, wheel, order)
    caps = range(int(before["filter_steps"]) - 2, int(before["filter_steps"]) + 1)
    asked: list[set[int]] = []

    def next_cap(seqs: list[list[Observation]], solved: set[int]) -> int | None:
        asked.append(set(solved))
        return next((k for k in caps if k not in solved), None)

    got = _exact([order], travel, grid, plan, START, end, timer.fits, next_cap)
    assert got  # the greedy order is not the least slew under every cap
    assert asked == [set(caps[:k]) for k in range(len(caps) + 1)]  # each cap once
    again = _exact([order], _Travel(order, plan, wheel), grid, plan, START, end,
                   _Timer(grid, PROFILE, START, end).fits, next_cap)
    assert [[o.key for o in seq] for seq in again] == [[o.key for o in seq] for seq in got]
    for seq in got:
        m = plan_measures(plan, wheel, seq)
        assert sorted(o.key for o in seq) == sorted(o.key for o in order)
        assert m["filter_steps"] <= caps[-1]
        assert m["slew_deg"] < before["slew_deg"] or m["filter_steps"] < before["filter_steps"]
        timed = _timed(seq, grid, PROFILE, START, end)  # fits, exactly, from scratch
        assert timed is not None
        for s in timed:
            o = s.observation
            assert all(a <= s.start and s.end <= b for a, b in o.windows)
            assert visible(PROFILE, o.ra, o.dec, np.array([s.start, s.end])).all()
