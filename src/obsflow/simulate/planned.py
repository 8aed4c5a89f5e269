"""Observing a plan file (``obsflow simulate --plan PLAN``) instead of the built-in plan.

The plan is what ``obsflow plan make`` wrote (:mod:`obsflow.planning.scheduler`).
Each scheduled observation (one target in one filter) becomes its dither
points' exposures at the plan's times, V3 position angle, readout pattern,
groups, integrations and subarray: dither point ``k`` (0-based) starts at
``start + k * (exposure + visit_overhead_s)``, exactly the scheduler's
duration model, so every exposure lies inside its scheduled slot.  A target
named like one of the simulator's fields (``DEEP-FIELD-1``, ``CLUSTER-7``,
``CAL-FIELD``), or placed at its centre, gets that field's scene.  Each
program's observations are numbered in key order (``program:target:filter``),
so a rescheduled observation keeps its number.

Skip-ahead: ``failures`` scheduled observations (drawn with the seed;
default one in eight, none for fewer than eight) are skipped or failed as a
whole, alternately: no science data, their exposures in the observation log
with that status.  :func:`observe_plan` also gives every scheduled
observation's status by key, which ``simulate`` writes as
``truth/status.json``: the truth that ``obsflow plan status --site`` and
``obsflow plan make --after`` (reading the site's observation log and
archive, :mod:`obsflow.planning.status`) are tested against.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from astropy.time import Time

from obsflow.exceptions import SimulationError
from obsflow.models.metadata import ExposureMeta
from obsflow.planning.scheduler import Schedule, read_schedule
from obsflow.profiles import Profile
from obsflow.proposals.program import FIELDS
from obsflow.simulate.plan import (
    SCENES,
    Plan,
    Pointed,
    Program,
    Target,
    pointed_exposure,
    true_pointing,
)
from obsflow.simulate.sky import SceneOptions

__all__ = ["observe_plan"]

_DAY_S = 86400.0


def _target(name: str, ra: float, dec: float) -> Target:
    scene = SCENES.get(name)
    if scene is None:
        scene = next((SCENES[f] for f, pos in FIELDS.items()
                      if f in SCENES and np.allclose(pos, (ra, dec), atol=1e-6)), SceneOptions())
    return Target(name, ra, dec, scene)


def _statuses(keys: list[str], failures: int | None, seed: int) -> dict[str, str]:
    """Every key's status: ``failures`` of them (default ``len // 8``) skipped/failed."""
    n = len(keys) // 8 if failures is None else failures
    if not 0 <= n <= len(keys):
        raise SimulationError(f"--plan-failures: expected 0 to {len(keys)} (the plan's scheduled "
                              f"observations), got {n}")
    picks = sorted(np.random.default_rng([seed, 103]).choice(len(keys), n, replace=False))
    status = dict.fromkeys(keys, "executed")
    for j, i in enumerate(picks):
        status[keys[int(i)]] = "skipped" if j % 2 == 0 else "failed"
    return status


def observe_plan(profile: Profile, path: Path, seed: int,
                 failures: int | None = None) -> tuple[Plan, dict[str, str]]:
    """The simulator's :class:`Plan` of plan file ``path``, and each observation's status.

    Raises SimulationError naming the file if it was made for another profile,
    schedules nothing, or names a target twice at different positions.
    """
    sched: Schedule = read_schedule(path)
    if sched.profile != profile.mission.name:
        raise SimulationError(f"{path}: a plan for profile {sched.profile!r}; expected one for "
                              f"{profile.mission.name!r} (obsflow plan make --profile)")
    if not sched.scheduled:
        raise SimulationError(f"{path}: the plan schedules no observation")
    inst = profile.instruments[0]
    status = _statuses([s.observation.key for s in sched.scheduled], failures, seed)
    targets: dict[str, Target] = {}
    programs: dict[str, Program] = {}
    number: dict[str, int] = {}
    for o in sorted((s.observation for s in sched.scheduled), key=lambda o: o.key):
        number[o.key] = sum(k.startswith(o.program + ":") for k in number) + 1
        t = targets.setdefault(o.target, _target(o.target, o.ra, o.dec))
        if (t.ra, t.dec) != (o.ra, o.dec):
            raise SimulationError(f"{path}: target {o.target} at two positions: "
                                  f"({t.ra}, {t.dec}) and ({o.ra}, {o.dec})")
        info = sched.programs.get(o.program, {})
        programs.setdefault(o.program, Program(
            o.program, str(info.get("pi", "")), str(info.get("title", "")),
            int(info.get("exclusive_months", profile.mission.default_exclusive_access_months)),
            o.target, 1, o.readpatt, o.ngroups, o.nints, o.dither))
    exposures: list[ExposureMeta] = []
    for s in sched.scheduled:
        o = s.observation
        prog = programs[o.program]
        sub = inst.subarray(o.subarray)
        for d in range(o.dither):  # each dither point: its exposure, then the overhead
            begin = s.start + d * o.duration_s / o.dither / _DAY_S
            metas = pointed_exposure(
                profile, inst, sub,
                Pointed(o.program, prog.pi_name, prog.title, targets[o.target], number[o.key],
                        d + 1, o.filter, o.readpatt, o.ngroups, o.nints, d + 1, o.dither,
                        s.pa_v3),
                Time(begin, format="mjd", scale="utc"), len(exposures) + 1)
            exposures += [dataclasses.replace(m, status=status[o.key]) for m in metas]
    pointing = true_pointing(exposures, profile, np.random.default_rng([seed, 102]))
    first = sched.scheduled[0]
    start = Time(first.start - first.move_s / _DAY_S, format="mjd", scale="utc")
    end = Time(sched.scheduled[-1].end, format="mjd", scale="utc")
    return (Plan(list(programs.values()), list(targets.values()), exposures, start.isot,
                 end.isot, pointing), status)

