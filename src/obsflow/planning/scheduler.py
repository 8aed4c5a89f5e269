"""The scheduler: approved programs -> a time-ordered observing plan.

An *observation* is one target in one filter: its dither points of
``nints`` integrations of ``ngroups`` groups (:func:`observations`).  It may
run when its target is visible over the whole observation (sampled on a
grid of ``step_days``; an interval counts only if the grid samples on both
sides of it are visible), inside one of its time windows, at a V3 position
angle allowed both by the Sun (``roll_tolerance_deg`` about the nominal)
and by its ``pa_range``.

The schedule is built forward in time, greedily: at the current time and
pointing, every remaining observation that could start after its slew and
filter move is a candidate; the highest priority wins, and among equal
priorities the one reached soonest (slew settle and time, filter-wheel
steps), so that a target's filters follow each other in wheel order and
nearby targets follow each other.  When nothing can start, the clock moves to
the next grid time at which something could (idle time).  Times are MJD UTC,
angles degrees, durations seconds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from obsflow.exceptions import PlanningError
from obsflow.fileio import atomic_path
from obsflow.planning.ordering import (
    anneal,
    improve_order,
    kick_search,
    order_runs,
    pareto,
    tour_cost,
)
from obsflow.planning.visibility import (
    allowed_pa,
    allowed_pa_ranges,
    nominal_pa_v3,
    pa_allowed,
    planning_of,
    visible,
)
from obsflow.profiles import Planning, Profile
from obsflow.proposals.program import Program

__all__ = ["KEPT", "STATUSES", "WHEEL_WEIGHTS", "Observation", "Schedule", "Scheduled",
           "balanced", "default_cycle", "filter_steps", "next_exact_cap", "observations",
           "plan_measures",
           "program_info", "reschedule",
           "read_schedule", "schedule", "separation_deg", "slew_seconds", "travel_cost",
           "write_schedule"]

_DAY_S = 86400.0


@dataclass(frozen=True)
class Observation:
    """One target in one filter, all its dithers; ``key`` is ``program:target:filter``."""

    key: str
    program: str
    target: str
    ra: float
    dec: float
    filter: str
    readpatt: str
    ngroups: int
    nints: int
    dither: int
    subarray: str
    duration_s: float
    priority: int
    windows: tuple[tuple[float, float], ...] = ()
    pa_range: tuple[float, float] | None = None


@dataclass(frozen=True)
class Scheduled:
    """An observation placed in time: start/end MJD UTC, V3 PA, the slew and wheel steps
    before it and the time they took (``move_s``: slew and wheel turn at once)."""

    observation: Observation
    start: float
    end: float
    pa_v3: float
    slew_deg: float
    filter_steps: int
    move_s: float = 0.0


@dataclass
class Schedule:
    """A plan: what runs when, what could not be placed (with the reason), and its span;
    ``programs`` describes each program by id (``pi``, ``title``, ``exclusive_months``: see
    :func:`program_info`) for whoever observes the plan."""

    start: float
    end: float
    scheduled: list[Scheduled] = field(default_factory=list)
    unscheduled: list[tuple[Observation, str]] = field(default_factory=list)
    programs: dict[str, dict[str, Any]] = field(default_factory=dict)
    profile: str = ""
    """The profile's mission name (read from a plan file; written from the profile)."""
    alternatives: list[list[Scheduled]] = field(default_factory=list)
    """The other plans the improvement step found that no plan beats on both slew angle and
    wheel steps (the Pareto frontier, :func:`schedule`), the chosen one excluded; not
    written to the plan file."""

    def report(self) -> dict[str, float]:
        """Scheduled fraction, total slew (deg), filter moves and steps, hours of science,
        slews/wheel moves and idle time from the plan's start to its last observation's end."""
        n = len(self.scheduled) + len(self.unscheduled)
        science = sum(s.observation.duration_s for s in self.scheduled) / 3600.0
        span = (self.scheduled[-1].end - self.start) * 24.0 if self.scheduled else 0.0
        moving = sum(s.move_s for s in self.scheduled) / 3600.0
        return {"observations": n, "scheduled": len(self.scheduled),
                "scheduled_fraction": len(self.scheduled) / n if n else 0.0,
                "total_slew_deg": sum(s.slew_deg for s in self.scheduled),
                "filter_moves": sum(1 for s in self.scheduled if s.filter_steps > 0),
                "filter_steps": sum(s.filter_steps for s in self.scheduled),
                "science_hours": science, "move_hours": moving, "span_hours": span,
                "idle_hours": span - science - moving}


def observations(programs: list[Program], profile: Profile) -> list[Observation]:
    """Every (target, filter) of ``programs`` as an :class:`Observation`, durations from the profile.

    Duration: per dither point, ``nints * (frames + 1)`` frame times (the
    simulator's exposure length, resets included) plus the visit overhead.
    """
    inst = profile.instruments[0]
    plan = planning_of(profile)
    out = []
    for prog in programs:
        for t in prog.targets:
            readout, sub = inst.readout(t.readpatt), inst.subarray(t.subarray)
            frames = t.ngroups * (readout.nframes + readout.groupgap) - readout.groupgap
            exposure = t.nints * (frames + 1) * sub.frame_time_s
            ra, dec = t.position
            for f in t.filters:
                out.append(Observation(
                    f"{prog.program.id}:{t.name}:{f}", prog.program.id, t.name, ra, dec, f,
                    t.readpatt, t.ngroups, t.nints, t.dither, t.subarray,
                    t.dither * (exposure + plan.visit_overhead_s), prog.priority(t),
                    tuple(t.window_mjd()), t.pa_range))
    keys = [o.key for o in out]
    if len(set(keys)) != len(keys):
        raise PlanningError("two programs share an id, target and filter: "
                            f"{sorted({k for k in keys if keys.count(k) > 1})}")
    return out


def program_info(programs: list[Program], profile: Profile) -> dict[str, dict[str, Any]]:
    """PI, title and exclusive-access months (the profile's default when not given) by id."""
    default = profile.mission.default_exclusive_access_months
    return {p.program.id: {"pi": p.program.pi, "title": p.program.title,
                           "exclusive_months": (p.program.exclusive_months
                                                if p.program.exclusive_months is not None
                                                else default)} for p in programs}


def separation_deg(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    """Great-circle angle between two positions, degrees (haversine: exact 0 for one position)."""
    a1, d1, a2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    h = math.sin((d2 - d1) / 2) ** 2 + math.cos(d1) * math.cos(d2) * math.sin((a2 - a1) / 2) ** 2
    return math.degrees(2 * math.asin(min(1.0, math.sqrt(h))))


def slew_seconds(plan: Planning, angle_deg: float) -> float:
    """Time of a slew of ``angle_deg``: settle plus angle over rate (0 for no slew)."""
    return 0.0 if angle_deg <= 0.0 else plan.slew_settle_s + angle_deg / plan.slew_rate_deg_s


def filter_steps(filters: list[str], a: str | None, b: str) -> int:
    """Wheel positions stepped from filter ``a`` to ``b`` (the shorter way round; 0 from None)."""
    if a is None:
        return 0
    d = abs(filters.index(a) - filters.index(b))
    return min(d, len(filters) - d)


class _Grid:
    """Each observation's feasibility on the time grid (visibility, windows, PA)."""

    def __init__(self, obs: list[Observation], profile: Profile, start: float, end: float,
                 step: float) -> None:
        self.start, self.step, self.profile = start, step, profile
        self.mjd = np.arange(start, end + 2 * step, step)
        tol = planning_of(profile).roll_tolerance_deg
        by_target: dict[tuple[float, float], np.ndarray] = {}
        nominal: dict[tuple[float, float], np.ndarray | None] = {}
        self.ok: dict[str, np.ndarray] = {}
        for o in obs:
            pos = (o.ra, o.dec)
            if pos not in by_target:
                by_target[pos] = visible(profile, o.ra, o.dec, self.mjd)
                nominal[pos] = nominal_pa_v3(o.ra, o.dec, self.mjd) if tol < 180 else None
            ok = by_target[pos].copy()
            nom = nominal[pos]
            if o.pa_range is not None and nom is not None:
                # 1 degree margin: the nominal angle moves about a degree a day
                lo = np.asarray((nom - tol + 1.0) % 360.0)
                ok &= np.array([_overlap(a, a + 2 * (tol - 1.0), o.pa_range) for a in lo])
            self.ok[o.key] = ok

    def feasible(self, o: Observation, t0: float, t1: float) -> bool:
        if o.windows and not any(a <= t0 and t1 <= b for a, b in o.windows):
            return False
        k0 = int(math.floor((t0 - self.start) / self.step))
        k1 = int(math.floor((t1 - self.start) / self.step)) + 1
        if k0 < 0 or k1 >= self.mjd.size:
            return False
        return bool(self.ok[o.key][k0:k1 + 1].all())

    def starts(self, o: Observation, end: float) -> list[tuple[float, float]]:
        """Every start time (MJD) at which ``o`` is :meth:`feasible` and ends by ``end``, as
        disjoint intervals ``(lo, hi)`` in time order: feasibility changes only where the start
        or the end crosses a grid time or a window's edge, so each stretch between two such
        times is tested once (at its middle; an interval's own ends may differ, which a
        caller rounding inwards need not know)."""
        d = o.duration_s / _DAY_S
        cuts = {*self.mjd, *(self.mjd - d), *(a for a, _ in o.windows), *(b - d for _, b in o.windows)}
        lo, hi = self.start, end - d
        edges = sorted({lo, hi, *(c for c in cuts if lo < c < hi)})
        out: list[tuple[float, float]] = []
        for a, b in zip(edges, edges[1:], strict=False):
            if not self.feasible(o, (a + b) / 2, (a + b) / 2 + d):
                continue
            if out and out[-1][1] == a:
                out[-1] = (out[-1][0], b)
            else:
                out.append((a, b))
        return out

    def next_start(self, o: Observation, after: float) -> float | None:
        """The first grid time after ``after`` from which ``o`` may be feasible (None: never)."""
        k = int(math.floor((after - self.start) / self.step)) + 1
        ok = np.flatnonzero(self.ok[o.key][max(k, 0):])
        return None if not ok.size else float(self.mjd[ok[0] + max(k, 0)])


def _overlap(lo: float, hi: float, wanted: tuple[float, float]) -> bool:
    a, b = wanted
    width = (b - a) % 360.0
    return pa_allowed(lo, hi, a) or pa_allowed(a, a + width, lo)


def _middle(lo: float | np.ndarray, hi: float | np.ndarray) -> np.ndarray:
    """The nominal PA of :func:`allowed_pa` ranges: their middle, 0 when any roll is allowed
    (degrees)."""
    return np.where(np.asarray(hi) - lo < 360, (np.asarray(lo) + hi) / 2.0 % 360.0, 0.0)


def _choose_pa(profile: Profile, o: Observation, mjd: float) -> float | None:
    """The V3 PA for ``o`` at ``mjd``: the nominal one, or nearest to it within ``pa_range``."""
    lo, hi = allowed_pa(profile, o.ra, o.dec, mjd)
    nominal = float(_middle(lo, hi))
    if o.pa_range is None:
        return nominal
    a, b = o.pa_range
    width = (b - a) % 360.0
    samples = [(a + width * k / 64.0) % 360.0 for k in range(65)]
    good = [p for p in samples if pa_allowed(lo, hi, p)]
    if not good:
        return None
    return min(good, key=lambda p: abs((p - nominal + 180.0) % 360.0 - 180.0))


@dataclass
class _State:
    t: float
    ra: float | None = None
    dec: float | None = None
    filter: str | None = None


def schedule(obs: list[Observation], profile: Profile, start: float, end: float,
             step_days: float | None = None, improve: bool = True,
             wheel_step_cost_s: float | None = None) -> Schedule:
    """Place ``obs`` between MJD ``start`` and ``end`` (module docstring); ``improve=False``
    keeps the greedy order (no local search).  ``wheel_step_cost_s``: what one wheel step
    costs the improvement step, in seconds of slew (default: the wheel's own time per step,
    the profile's ``filter_step_s``; a larger value trades slew for fewer wheel steps)."""
    if not end > start:
        raise PlanningError(f"schedule: end {end} must be after start {start} (MJD)")
    plan = planning_of(profile)
    if step_days is None:
        step_days = 1.0 / 1440.0 if profile.ephemeris.orbit == "LEO" else 0.25
    grid = _Grid(obs, profile, start, end, step_days)
    wheel = [f.name for f in profile.instruments[0].filters]
    out = Schedule(start, end)
    remaining = {o.key: o for o in obs}
    for o in obs:
        if not grid.ok[o.key].any():
            out.unscheduled.append((o, "never visible (at an allowed position angle) in the plan"))
            del remaining[o.key]
    state = _State(start)
    while remaining:
        best: tuple[Any, ...] | None = None
        for o in remaining.values():
            slew = 0.0 if state.ra is None else separation_deg(state.ra, state.dec or 0.0,
                                                               o.ra, o.dec)
            steps = filter_steps(wheel, state.filter, o.filter)
            move = max(slew_seconds(plan, slew), steps * plan.filter_step_s)
            t0 = state.t + move / _DAY_S
            t1 = t0 + o.duration_s / _DAY_S
            if t1 <= end and grid.feasible(o, t0, t1):
                key = (o.priority, move, steps, slew, o.key)
                if best is None or key < best[0]:
                    best = (key, o, t0, t1, slew, steps)
        if best is not None:
            _, o, t0, t1, slew, steps = best
            pa = math.nan if o.pa_range is None else _choose_pa(profile, o, t0)
            if pa is not None:  # nan: the nominal PA, filled in for the whole plan below
                out.scheduled.append(Scheduled(o, t0, t1, pa, slew, steps,
                                               (t0 - state.t) * _DAY_S))
                state = _State(t1, o.ra, o.dec, o.filter)
                del remaining[o.key]
                continue
        nexts = [t for o in remaining.values() if (t := grid.next_start(o, state.t)) is not None]
        if not nexts or min(nexts) >= end:
            break
        state = _State(min(nexts), state.ra, state.dec, state.filter)
    out.unscheduled += [(o, "no time left in the plan inside its windows")
                        for o in remaining.values()]
    out.scheduled = _with_pa(out.scheduled, profile)
    if improve and len(out.scheduled) > 2:
        out.scheduled, out.unscheduled, out.alternatives = _improved(
            out.scheduled, out.unscheduled, grid, profile, start, end, wheel_step_cost_s)
    return out


def travel_cost(plan: Planning, wheel: list[str], a: Observation, b: Observation,
                step_s: float | None = None) -> float:
    """Seconds the two mechanisms travel from ``a`` to ``b``: the slew (settle included) plus
    the filter wheel's steps at ``step_s`` each (default the profile's ``filter_step_s``):
    what :func:`schedule`'s improvement step minimises."""
    step = plan.filter_step_s if step_s is None else step_s
    return (slew_seconds(plan, separation_deg(a.ra, a.dec, b.ra, b.dec))
            + filter_steps(wheel, a.filter, b.filter) * step)


def _earliest(grid: _Grid, profile: Profile, o: Observation, ready: float,
              end: float, exact_pa: bool = True) -> tuple[float, float | None] | None:
    """The earliest start (and its V3 PA) of ``o`` at or after MJD ``ready`` that ends by
    ``end`` inside its visibility, windows and PA constraint (None: there is none).

    Feasibility is constant inside a grid cell but for the end sample and the windows, so
    the candidates are ``ready``, then the next window's start while outside its windows,
    else the next grid time where ``o`` is visible.  The PA is computed only for an observation with a ``pa_range`` (the
    nominal one is always allowed: None is returned for it, see :func:`_timed`).  With
    ``exact_pa=False`` the PA is left to the grid's check (the allowed range overlapping the
    ``pa_range`` with a degree's margin) and None returned: the fast check of the search."""
    t: float | None = ready
    opens = sorted(a for a, _ in o.windows)
    while t is not None and t + o.duration_s / _DAY_S <= end:
        if grid.feasible(o, t, t + o.duration_s / _DAY_S):
            pa = None if o.pa_range is None or not exact_pa else _choose_pa(profile, o, t)
            if o.pa_range is None or pa is not None or not exact_pa:
                return t, pa
        if opens and not any(a <= t < b for a, b in o.windows):
            t = next((a for a in opens if a > t), None)  # outside its windows: the next one
        else:
            t = grid.next_start(o, t)
    return None


def _timed(order: list[Observation], grid: _Grid, profile: Profile, start: float,
           end: float, prev: Observation | None = None, exact_pa: bool = True
           ) -> list[Scheduled] | None:
    """``order`` placed as early as possible one after the other from ``start`` (after
    ``prev``, if given); None if one of them no longer fits (``exact_pa``: see
    :func:`_earliest`)."""
    plan = planning_of(profile)
    wheel = [f.name for f in profile.instruments[0].filters]
    out: list[Scheduled] = []
    t = start
    for o in order:
        slew = 0.0 if prev is None else separation_deg(prev.ra, prev.dec, o.ra, o.dec)
        steps = filter_steps(wheel, None if prev is None else prev.filter, o.filter)
        move = max(slew_seconds(plan, slew), steps * plan.filter_step_s)
        placed = _earliest(grid, profile, o, t + move / _DAY_S, end, exact_pa)
        if placed is None:
            return None
        t0, pa = placed
        out.append(Scheduled(o, t0, t0 + o.duration_s / _DAY_S, math.nan if pa is None else pa,
                             slew, steps, move))
        t, prev = t0 + o.duration_s / _DAY_S, o
    return out


class _Timer:
    """:func:`_timed` of one sequence after another, re-timing only from the first element
    that differs from the last sequence that fitted (its timed prefix is kept); the search's
    fast check (``exact_pa=False``): a plan it keeps is timed again exactly."""

    def __init__(self, grid: _Grid, profile: Profile, start: float, end: float) -> None:
        self.grid, self.profile, self.start, self.end = grid, profile, start, end
        self.seq: list[Observation] = []
        self.timed: list[Scheduled] = []
        self.known: dict[tuple[str, ...], bool] = {}

    def __call__(self, seq: list[Observation]) -> list[Scheduled] | None:
        k = 0
        for a, b in zip(seq, self.seq, strict=False):
            if a is not b:
                break
            k += 1
        prev = seq[k - 1] if k else None
        t = self.timed[k - 1].end if k else self.start
        tail = _timed(seq[k:], self.grid, self.profile, t, self.end, prev, exact_pa=False)
        if tail is None:
            return None
        self.seq, self.timed = list(seq), self.timed[:k] + tail
        return self.timed

    def fits(self, seq: list[Observation]) -> bool:
        """Whether ``seq`` fits, remembered by its keys: the searches propose the same
        sequence again and again (a rejected move drawn anew, the same start searched at
        another cost), and whether it fits depends on the sequence alone."""
        key = tuple(o.key for o in seq)
        known = self.known.get(key)
        if known is None:
            known = self.known[key] = self(seq) is not None
        return known


def plan_measures(plan: Planning, wheel: list[str], order: list[Observation]
                  ) -> dict[str, float]:
    """A time-ordered sequence's travel: ``slew_deg`` (total angle), ``filter_steps`` (wheel
    positions stepped) and ``travel_s``, the seconds of both mechanisms added up (each slew
    with its settle, :func:`slew_seconds`, plus ``filter_step_s`` a step)."""
    pairs = list(zip(order, order[1:], strict=False))
    slews = [separation_deg(a.ra, a.dec, b.ra, b.dec) for a, b in pairs]
    steps = sum(filter_steps(wheel, a.filter, b.filter) for a, b in pairs)
    return {"slew_deg": sum(slews), "filter_steps": steps,
            "travel_s": sum(slew_seconds(plan, x) for x in slews) + steps * plan.filter_step_s}


def balanced(points: list[tuple[float, float]]) -> int:
    """Index of the balanced choice among (slew degrees, wheel steps) pairs: the smallest
    larger relative excess over the best of each, ``max((slew - best slew) / best slew,
    (steps - best steps) / best steps)`` (best values of at least 1 degree and 1 step), ties
    to the lower sum of the two excesses, then the first."""
    excess = _excess(points)
    return min(range(len(points)), key=lambda i: (round(max(excess[i]), 12),
                                                  round(sum(excess[i]), 12), i))


def _excess(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Each (slew, steps) pair's relative excess over the best slew and the best steps of
    ``points`` (:func:`balanced`)."""
    s0 = max(min(p[0] for p in points), 1.0)
    k0 = max(min(p[1] for p in points), 1.0)
    return [((p[0] - s0) / s0, (p[1] - k0) / k0) for p in points]


def next_exact_cap(points: list[tuple[float, int]], solved: set[int]) -> int | None:
    """The next wheel-step cap for the CP-SAT stage (:func:`_exact`), given the frontier's
    (slew degrees, wheel steps) ``points`` so far and the caps already ``solved``: the
    smallest cap K not solved yet, between the frontier's fewest and most steps, that can
    change the :func:`balanced` choice or is its own: K's step excess ``(K - k0) / k0`` at
    most the choice's larger excess ``v`` (a plan of at most K steps with less slew could
    be chosen; every cap up to the choice's own is one), or the cap just above the
    choice's (a search under a cap often ends under it).  None when none is left: a plan
    of more steps is never the balanced choice while its step excess alone exceeds
    ``v`` (nor does it change the best slew or steps the excesses are measured from,
    unless it had less slew than every plan found), so those caps are not searched."""
    if not points:
        return None
    pick = balanced([(p[0], float(p[1])) for p in points])
    v = max(_excess([(p[0], float(p[1])) for p in points])[pick])
    k0 = max(min(p[1] for p in points), 1)
    wanted = [k for k in range(min(p[1] for p in points), max(p[1] for p in points) + 1)
              if k not in solved and ((k - k0) / k0 <= v + 1e-12 or k == points[pick][1] + 1)]
    return min(wanted) if wanted else None


ANNEAL_RESTARTS = 2
"""Annealing runs per search in :func:`_search`, each from the best order so far."""

ANNEAL_MOVES = 300
"""Annealing moves per observation of each run (``anneal``'s ``iters`` = this x n; 1000 before
the CPU was measured: 300 gives frontiers as good, within the searches' seed-to-seed
scatter, in a third of the time, docs/benchmarks.md)."""

KICKS = 4
"""Double-bridge kicks at the end of each search (:func:`_search`; 10 before, same)."""

CAPS = 16
"""At most this many wheel-step caps searched by :func:`_capped`."""

WHEEL_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
"""The wheel-step costs :func:`schedule` searches with by default, in units of the profile's
slew settle time (0: the wheel's own ``filter_step_s``)."""


def _improved(greedy: list[Scheduled], left: list[tuple[Observation, str]], grid: _Grid,
              profile: Profile, start: float, end: float, step_s: float | None = None
              ) -> tuple[list[Scheduled], list[tuple[Observation, str]], list[list[Scheduled]]]:
    """The improvement step: ``greedy``'s plan made to travel less without placing fewer
    observations or changing the priorities of what is placed.

    For each wheel-step cost (``step_s`` alone if given, else every one of
    :data:`WHEEL_WEIGHTS`), a search on :func:`travel_cost` with that cost (:func:`_search`)
    gives a plan; with ``step_s`` the cheapest is returned.  By default the least slew for
    each wheel-step cap is searched too, by annealing (:func:`_capped`) and then by CP-SAT
    on the caps that can change the balanced choice (:func:`_exact`,
    :func:`next_exact_cap`), and the plans no other
    beats on both slew angle and wheel steps (the Pareto frontier) are kept, those with no
    more travel time (:func:`plan_measures`) than the greedy plan, and the :func:`balanced`
    one is returned: slew and wheel travel are both to be small, and neither is worth a
    fixed amount of the other (the wheel's 10 s a step is hardly time, but its moves are
    wear), so the plan closest, in proportion, to the best of each is taken.
    Every candidate is re-timed as early as possible (:func:`_timed`) inside the cycle
    (it may end later than the greedy plan); the greedy plan is returned unchanged unless a
    result fits and travels less.  Also returned: the other frontier plans (timed)."""
    plan = planning_of(profile)
    wheel = [f.name for f in profile.instruments[0].filters]
    order = [s.observation for s in greedy]
    timer = _Timer(grid, profile, start, end)
    if not timer.fits(order):
        return greedy, left, []
    pool = order + [o for o, why in left if why.startswith("no time")]
    travel = _Travel(pool, plan, wheel)
    steps_s = ([step_s] if step_s is not None else
               [w * plan.slew_settle_s or plan.filter_step_s for w in WHEEL_WEIGHTS])
    found: list[list[Observation]] = []
    # up the weights and down again, each search from the cheapest plan found so far under
    # its own cost: what one weight found seeds its neighbours
    for s in steps_s + steps_s[-2::-1]:
        weighted = travel.cost(s)
        seed = min([order, *found], key=lambda seq: tour_cost(seq, weighted))
        found.append(travel.search(seed, s, None, timer.fits))
    if step_s is not None:
        cost = travel.cost(step_s)
        best, others = found[0], []
        if not tour_cost(best, cost) < tour_cost(order, cost) - 1e-9:
            return greedy, left, []
    else:
        limit = plan_measures(plan, wheel, order)["travel_s"] + 1e-6

        def frontier(seqs: list[list[Observation]]) -> list[tuple[float, int, list[Observation]]]:
            measures = [plan_measures(plan, wheel, seq) for seq in seqs]
            cands = [(m["slew_deg"], int(m["filter_steps"]), seq)
                     for m, seq in zip(measures, seqs, strict=True) if m["travel_s"] <= limit]
            return [cands[i] for i in pareto([c[:2] for c in cands])]

        def next_cap(seqs: list[list[Observation]], solved: set[int]) -> int | None:
            return next_exact_cap([(c[0], c[1]) for c in frontier(seqs)], solved)

        found += _capped(found, travel, timer.fits)
        if not (front := frontier(found)):
            return greedy, left, []
        found += _exact(found, travel, grid, plan, start, end, timer.fits, next_cap)
        front = frontier(found)
        best = front[balanced([(c[0], c[1]) for c in front])][2]
        others = [c[2] for c in front if c[2] is not best]
    def exact(seq: list[Observation]) -> list[Scheduled] | None:
        return _timed(seq, grid, profile, start, end)

    alternatives = [_with_pa(t, profile) for seq in others if (t := exact(seq)) is not None]
    timed = None if best == order else exact(best)
    if timed is None:
        return greedy, left, alternatives
    placed = {o.key for o in best}
    left = [(o, why) for o, why in left if o.key not in placed]
    left += [(o, "no time left in the plan inside its windows") for o in order
             if o.key not in placed]
    return _with_pa(timed, profile), left, alternatives


def _with_pa(timed: list[Scheduled], profile: Profile) -> list[Scheduled]:
    """``timed`` with the PA of each observation without a ``pa_range`` filled in: the
    nominal V3 PA at its start (what :func:`_choose_pa` gives it), the Sun's positions of all
    of them computed at once."""
    todo = [k for k, s in enumerate(timed) if math.isnan(s.pa_v3)]
    if not todo:
        return timed
    picked = [timed[k] for k in todo]
    pas = _middle(*allowed_pa_ranges(profile, np.array([s.observation.ra for s in picked]),
                                     np.array([s.observation.dec for s in picked]),
                                     np.array([s.start for s in picked])))
    out = list(timed)
    for k, pa in zip(todo, pas, strict=True):
        out[k] = replace(timed[k], pa_v3=float(pa))
    return out


class _Travel:
    """:func:`travel_cost` between every two observations of ``pool``, computed once (each
    pair's slew seconds and wheel steps), and the searches on it remembered: a search from
    the same sequence at the same wheel-step cost and cap gives the same plan
    (:func:`_search` is deterministic), so it is run once."""

    def __init__(self, pool: list[Observation], plan: Planning, wheel: list[str]) -> None:
        self.pool, self.step_s = pool, plan.filter_step_s
        self.wheel = {(a.key, b.key): filter_steps(wheel, a.filter, b.filter)
                      for a in pool for b in pool}
        self.sep = {(a.key, b.key): separation_deg(a.ra, a.dec, b.ra, b.dec)
                    for a in pool for b in pool}
        self.slew_s = {k: slew_seconds(plan, v) for k, v in self.sep.items()}
        self.searched: dict[tuple[Any, ...], list[Observation]] = {}

    def cost(self, step_s: float | None = None) -> Callable[[Observation, Observation], float]:
        """:func:`travel_cost` with ``step_s`` seconds a wheel step (default the profile's)."""
        step = self.step_s if step_s is None else step_s
        table = {k: v + self.wheel[k] * step for k, v in self.slew_s.items()}
        return lambda a, b: table[a.key, b.key]

    def steps(self, seq: list[Observation]) -> int:
        """Wheel steps along ``seq``."""
        return sum(self.wheel[a.key, b.key] for a, b in zip(seq, seq[1:], strict=False))

    def search(self, seed: list[Observation], step_s: float | None, cap: int | None,
               fits: Callable[[list[Observation]], bool]) -> list[Observation]:
        """:func:`_search` from ``seed`` on :meth:`cost` (``step_s``), taking only orders of
        at most ``cap`` wheel steps if given (``fits`` must be the same for every call)."""
        key = (tuple(o.key for o in seed), step_s, cap)
        if key not in self.searched:
            ok = fits if cap is None else (lambda seq: self.steps(seq) <= cap and fits(seq))
            self.searched[key] = _search(seed, self.pool, ok, self.cost(step_s),
                                         stream=len(self.searched))
        return self.searched[key]


def _capped(found: list[list[Observation]], travel: _Travel,
            fits: Callable[[list[Observation]], bool], most: int = CAPS
            ) -> list[list[Observation]]:
    """The least slew for at most K wheel steps (the "epsilon-constraint" method), for up to
    ``most`` values of K between the fewest and the most steps of the plans ``found``
    (minimising slew + w x steps finds only the frontier's convex hull; this fills the
    gaps between).  Each search (:func:`_search` on :func:`travel_cost`, the wheel at its
    own time) starts from the least-slew plan found with at most K steps and takes only
    orders with at most K steps."""
    steps, own = travel.steps, travel.cost()
    counts = sorted({steps(seq) for seq in found})
    caps = list(range(counts[0] + 1, counts[-1]))
    if len(caps) > most:
        caps = [caps[round(k * (len(caps) - 1) / (most - 1))] for k in range(most)]
    out: list[list[Observation]] = []
    for cap in caps:
        within = [seq for seq in found + out if steps(seq) <= cap]
        seed = min(within, key=lambda seq: tour_cost(seq, own))
        out.append(travel.search(seed, None, cap, fits))
    return out


EXACT_WORK = 1.0
"""CP-SAT's deterministic time limit (its own unit of work) for each wheel-step cap
searched by :func:`_exact`."""


EXACT_MAX_NODES = 40
""":func:`_exact` is skipped for a larger pool of observations (its model grows as the square
of their number: on the 79 of the benchmark's 30-target case CP-SAT found no solution,
not even its hint's, within :data:`EXACT_WORK`)."""


def _exact(found: list[list[Observation]], travel: _Travel, grid: _Grid, plan: Planning,
           start: float, end: float, fits: Callable[[list[Observation]], bool],
           next_cap: Callable[[list[list[Observation]], set[int]], int | None]
           ) -> list[list[Observation]]:
    """The least slew angle for at most K wheel steps, for each cap K that ``next_cap``
    gives (from the plans so far, ``found`` and this stage's, and the caps already solved:
    :func:`next_exact_cap` in the scheduler) until it gives None, each by CP-SAT
    (:func:`obsflow.planning.exact.best_path`) from the least-slew plan found with at
    most K steps as its hint: the order (and, as the searches do, exchanges of unplaced
    observations of ``travel``'s pool of the same priority) as a travelling-salesman
    problem with time windows, every observation inside its allowed start times
    (:meth:`_Grid.starts`), after the previous one's end and the move (the slew or the
    wheel, the longer).  Times in whole seconds, rounded so that a solution fits the
    scheduler's own timing; each result is checked by ``fits`` all the same."""
    from obsflow.planning.exact import best_path

    pool = travel.pool
    if len(pool) > EXACT_MAX_NODES:
        return []
    keys = [o.key for o in pool]
    cost = np.array([[round(100.0 * travel.sep[a, b]) for b in keys] for a in keys])
    steps = np.array([[travel.wheel[a, b] for b in keys] for a in keys])
    move = np.array([[max(travel.slew_s[a, b], travel.wheel[a, b] * plan.filter_step_s)
                      for b in keys] for a in keys])
    gap = np.ceil(np.array([o.duration_s for o in pool]))[:, None] + np.ceil(move) + 1.0
    starts = [[(math.ceil((lo - start) * _DAY_S) + 1, math.floor((hi - start) * _DAY_S) - 1)
               for lo, hi in grid.starts(o, end)] for o in pool]
    starts = [[(lo, hi) for lo, hi in s if lo <= hi] for s in starts]
    index = {k: i for i, k in enumerate(keys)}
    groups = [o.priority for o in pool]
    out: list[list[Observation]] = []
    solved: set[int] = set()
    while (cap := next_cap(found + out, solved)) is not None:
        solved.add(cap)
        within = [seq for seq in found + out if travel.steps(seq) <= cap]
        if not within:
            continue
        hint = min(within, key=lambda seq: sum(travel.sep[a.key, b.key]
                                               for a, b in zip(seq, seq[1:], strict=False)))
        if not all(starts[index[o.key]] for o in hint):
            continue  # a start interval shorter than the rounding: not for whole seconds
        got = best_path(cost, steps, gap, starts, [index[o.key] for o in hint], groups=groups,
                        max_steps=cap, work=EXACT_WORK, seed=cap)
        seq = [pool[i] for i in got.order]
        if seq != hint and fits(seq):
            out.append(seq)
    return out


def _search(order: list[Observation], pool: list[Observation],
            fits: Callable[[list[Observation]], bool],
            cost: Callable[[Observation, Observation], float], stream: int = 0
            ) -> list[Observation]:
    """A cheaper feasible sequence than ``order`` under ``cost`` (never costlier), of as many
    observations of the same priorities, drawn from ``pool`` (``order``'s and others):

    1. "polish": :func:`~obsflow.planning.ordering.improve_order` (2-opt, or-opt) alternated
       with :func:`~obsflow.planning.ordering.order_runs` (each target's filters in their
       cheapest order given the targets' order) until neither improves;
    2. :data:`ANNEAL_RESTARTS` times :func:`~obsflow.planning.ordering.anneal` (simulated
       annealing of :data:`ANNEAL_MOVES` x n moves, seeded from ``stream``: the same plan every
       run, other random draws for each search of a schedule) from the best order so far, polished
       again; its moves include exchanging a placed observation for an unplaced one of the
       same priority from ``pool`` (which observations run, where time is short);
    3. :func:`~obsflow.planning.ordering.kick_search` (double-bridge kicks, each polished)."""

    def polish(seq: list[Observation]) -> list[Observation]:
        seq = improve_order(seq, cost, fits)
        while True:
            runs = order_runs(seq, lambda o: (o.ra, o.dec), cost)
            if not tour_cost(runs, cost) < tour_cost(seq, cost) - 1e-9 or not fits(runs):
                return seq
            seq = improve_order(runs, cost, fits)

    def unplaced(seq: list[Observation]) -> list[Observation]:
        placed = {o.key for o in seq}
        return [o for o in pool if o.key not in placed]

    best = polish(order)
    for run in range(ANNEAL_RESTARTS):
        seed = stream * ANNEAL_RESTARTS + run
        annealed = polish(anneal(best, cost, fits, iters=ANNEAL_MOVES * len(best), seed=seed,
                                 spare=unplaced(best),
                                 exchangeable=lambda a, b: a.priority == b.priority))
        if tour_cost(annealed, cost) < tour_cost(best, cost) - 1e-9:
            best = annealed
    return kick_search(best, cost, fits, polish, kicks=KICKS, seed=stream)


def write_schedule(path: Path, sched: Schedule, profile: Profile) -> Path:
    """Write ``sched`` as JSON (observations, times, report) atomically; returns ``path``."""
    data = {"profile": profile.mission.name, "start_mjd": sched.start, "end_mjd": sched.end,
            "report": sched.report(), "programs": sched.programs,
            "scheduled": [{**asdict(s), "observation": asdict(s.observation)}
                          for s in sched.scheduled],
            "unscheduled": [{"observation": asdict(o), "reason": r} for o, r in sched.unscheduled]}
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(data, indent=1))
    return Path(path)


def _observation(d: dict[str, Any]) -> Observation:
    d = dict(d)
    d["windows"] = tuple(tuple(w) for w in d.get("windows", ()))
    d["pa_range"] = tuple(d["pa_range"]) if d.get("pa_range") is not None else None
    return Observation(**d)


def read_schedule(path: Path) -> Schedule:
    """Read a plan written by :func:`write_schedule` (PlanningError naming the file if bad)."""
    try:
        data = json.loads(Path(path).read_text())
        sched = Schedule(float(data["start_mjd"]), float(data["end_mjd"]))
        for s in data["scheduled"]:
            sched.scheduled.append(Scheduled(_observation(s["observation"]), s["start"], s["end"],
                                             s["pa_v3"], s["slew_deg"], s["filter_steps"],
                                             s.get("move_s", 0.0)))
        sched.unscheduled = [(_observation(u["observation"]), u["reason"])
                             for u in data["unscheduled"]]
        sched.programs = {str(k): dict(v) for k, v in data.get("programs", {}).items()}
        sched.profile = str(data.get("profile", ""))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PlanningError(f"{path}: not an obsflow plan file (expected the JSON `obsflow plan` "
                            f"writes): {exc}") from exc
    return sched


def default_cycle(profile: Profile) -> tuple[float, float]:
    """A year from the mission epoch + 300 days (where the simulator's plans start), MJD UTC."""
    from astropy.time import Time

    start = float(Time(profile.mission.time_epoch_tai, scale="tai").utc.mjd) + 300.0
    return start, start + 365.0


STATUSES = ("executed", "pending", "skipped", "failed", "missed", "planned")
"""An observation's status (:func:`obsflow.planning.status.site_status` says what each means)."""

KEPT = ("executed", "pending")
"""Statuses :func:`reschedule` keeps where they ran (the others are scheduled again)."""


def reschedule(previous: Schedule, status: dict[str, str], profile: Profile,
               now: float) -> Schedule:
    """The next plan after ``previous`` ran until MJD ``now`` (skip-ahead).

    ``status`` maps observation keys to one of :data:`STATUSES` (a missing
    key counts as ``planned``).  Observations in :data:`KEPT` stay as they
    ran; the others, and every one never placed, are scheduled again from
    ``now`` to the end of ``previous``.
    """
    for key, value in status.items():
        if value not in STATUSES:
            raise PlanningError(f"status of {key}: {value!r} is not one of {', '.join(STATUSES)}")
    done = [s for s in previous.scheduled if status.get(s.observation.key) in KEPT]
    again = [s.observation for s in previous.scheduled if s not in done]
    again += [o for o, _ in previous.unscheduled]
    nxt = schedule(again, profile, max(now, previous.start), previous.end)
    nxt.start = previous.start
    nxt.programs, nxt.profile = previous.programs, previous.profile
    nxt.scheduled = done + nxt.scheduled
    return nxt
