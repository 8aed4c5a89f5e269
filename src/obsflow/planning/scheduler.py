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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from obsflow.exceptions import PlanningError
from obsflow.fileio import atomic_path
from obsflow.planning.ordering import improve_order, kick_search, order_runs, tour_cost
from obsflow.planning.visibility import allowed_pa, nominal_pa_v3, pa_allowed, planning_of, visible
from obsflow.profiles import Planning, Profile
from obsflow.proposals.program import Program

__all__ = ["KEPT", "STATUSES", "Observation", "Schedule", "Scheduled", "default_cycle",
           "filter_steps", "observations", "program_info", "reschedule",
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

    def next_start(self, o: Observation, after: float) -> float | None:
        """The first grid time after ``after`` from which ``o`` may be feasible (None: never)."""
        k = int(math.floor((after - self.start) / self.step)) + 1
        ok = np.flatnonzero(self.ok[o.key][max(k, 0):])
        return None if not ok.size else float(self.mjd[ok[0] + max(k, 0)])


def _overlap(lo: float, hi: float, wanted: tuple[float, float]) -> bool:
    a, b = wanted
    width = (b - a) % 360.0
    return pa_allowed(lo, hi, a) or pa_allowed(a, a + width, lo)


def _choose_pa(profile: Profile, o: Observation, mjd: float) -> float | None:
    """The V3 PA for ``o`` at ``mjd``: the nominal one, or nearest to it within ``pa_range``."""
    lo, hi = allowed_pa(profile, o.ra, o.dec, mjd)
    nominal = (lo + hi) / 2.0 % 360.0 if hi - lo < 360 else 0.0
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
            pa = _choose_pa(profile, o, t0)
            if pa is not None:
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
    if improve and len(out.scheduled) > 2:
        out.scheduled, out.unscheduled = _improved(out.scheduled, out.unscheduled, grid,
                                                   profile, start, end, wheel_step_cost_s)
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
              end: float) -> tuple[float, float | None] | None:
    """The earliest start (and its V3 PA) of ``o`` at or after MJD ``ready`` that ends by
    ``end`` inside its visibility, windows and PA constraint (None: there is none).

    Feasibility is constant inside a grid cell but for the end sample and the windows, so
    the candidates are ``ready``, then the next window's start while outside its windows,
    else the next grid time where ``o`` is visible.  The PA is computed only for an observation with a ``pa_range`` (the
    nominal one is always allowed: None is returned for it, see :func:`_timed`)."""
    t: float | None = ready
    opens = sorted(a for a, _ in o.windows)
    while t is not None and t + o.duration_s / _DAY_S <= end:
        if grid.feasible(o, t, t + o.duration_s / _DAY_S):
            pa = None if o.pa_range is None else _choose_pa(profile, o, t)
            if o.pa_range is None or pa is not None:
                return t, pa
        if opens and not any(a <= t < b for a, b in o.windows):
            t = next((a for a in opens if a > t), None)  # outside its windows: the next one
        else:
            t = grid.next_start(o, t)
    return None


def _timed(order: list[Observation], grid: _Grid, profile: Profile, start: float,
           end: float) -> list[Scheduled] | None:
    """``order`` placed as early as possible one after the other from ``start`` (None if one
    of them no longer fits)."""
    plan = planning_of(profile)
    wheel = [f.name for f in profile.instruments[0].filters]
    out: list[Scheduled] = []
    t, prev = start, None
    for o in order:
        slew = 0.0 if prev is None else separation_deg(prev.ra, prev.dec, o.ra, o.dec)
        steps = filter_steps(wheel, None if prev is None else prev.filter, o.filter)
        move = max(slew_seconds(plan, slew), steps * plan.filter_step_s)
        placed = _earliest(grid, profile, o, t + move / _DAY_S, end)
        if placed is None:
            return None
        t0, pa = placed
        out.append(Scheduled(o, t0, t0 + o.duration_s / _DAY_S, math.nan if pa is None else pa,
                             slew, steps, move))
        t, prev = t0 + o.duration_s / _DAY_S, o
    return out


def _improved(greedy: list[Scheduled], left: list[tuple[Observation, str]], grid: _Grid,
              profile: Profile, start: float, end: float, step_s: float | None = None
              ) -> tuple[list[Scheduled], list[tuple[Observation, str]]]:
    """The improvement step: ``greedy``'s plan made cheaper in :func:`travel_cost` without
    placing fewer observations or changing the priorities of what is placed.

    1. :func:`~obsflow.planning.ordering.improve_order` reorders the greedy's observations,
       :func:`~obsflow.planning.ordering.order_runs` puts each target's filters in their
       cheapest order given the targets' order (the first filter of a visit the last of the
       previous one where that helps), alternately until neither improves ("polish"); then
       :func:`~obsflow.planning.ordering.kick_search` polishes again from 30 double-bridge
       kicks (seeded: the same plan every run) and keeps the cheapest;
    2. each placed observation may be exchanged for an unplaced one of the same priority
       (inserted where it costs least) when the plan still fits and gets cheaper, then the
       order is improved again.
    Every candidate is re-timed as early as possible (:func:`_timed`) and must end by the
    greedy plan's last end (the plan may not get longer: a cheaper order that waits days for
    a window is no better); the greedy plan is returned unchanged unless the result fits and
    costs less."""
    plan = planning_of(profile)
    wheel = [f.name for f in profile.instruments[0].filters]
    order = [s.observation for s in greedy]

    def cost(a: Observation, b: Observation) -> float:
        return travel_cost(plan, wheel, a, b, step_s)

    end = min(end, greedy[-1].end)  # no later than the greedy plan: no idle time added

    def fits(seq: list[Observation]) -> bool:
        return _timed(seq, grid, profile, start, end) is not None

    def polish(seq: list[Observation]) -> list[Observation]:
        """Local search on the order, then each target's filters in their best order, until
        neither improves (each step feasible, never costlier)."""
        seq = improve_order(seq, cost, fits)
        while True:
            runs = order_runs(seq, lambda o: (o.ra, o.dec), cost)
            if not tour_cost(runs, cost) < tour_cost(seq, cost) - 1e-9 or not fits(runs):
                return seq
            seq = improve_order(runs, cost, fits)

    if not fits(order):
        return greedy, left
    best = kick_search(polish(order), cost, fits, polish)
    spare = [o for o, why in left if why.startswith("no time")]
    for out_o in list(best):
        for in_o in [o for o in spare if o.priority == out_o.priority]:
            rest = [o for o in best if o is not out_o]
            here = tour_cost(best, cost)
            tries = sorted(range(len(rest) + 1),
                           key=lambda k: tour_cost(rest[max(k - 1, 0):k] + [in_o] + rest[k:k + 1],
                                                   cost))
            for k in tries[:3]:
                cand = rest[:k] + [in_o] + rest[k:]
                if tour_cost(cand, cost) < here and fits(cand):
                    best = polish(cand)
                    spare = [o for o in spare if o is not in_o] + [out_o]
                    break
            else:
                continue
            break
    if tour_cost(best, cost) >= tour_cost(order, cost):
        return greedy, left
    timed = _timed(best, grid, profile, start, end)
    if timed is None:
        return greedy, left
    placed = {o.key for o in best}
    left = [(o, why) for o, why in left if o.key not in placed]
    left += [(o, "no time left in the plan inside its windows") for o in order
             if o.key not in placed]
    return [s if not math.isnan(s.pa_v3) else replace(s, pa_v3=_choose_pa(profile, s.observation,
                                                                             s.start) or 0.0)
            for s in timed], left


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
