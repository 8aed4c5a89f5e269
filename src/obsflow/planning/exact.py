"""The order of a plan as a small travelling-salesman problem with time windows, solved
by constraint programming (OR-tools' CP-SAT).

The local searches of :mod:`obsflow.planning.ordering` find good orders quickly but
may stop short of the best one; :func:`best_path` takes such an order as a *hint* and
lets CP-SAT look for a cheaper one (or prove there is none) within a fixed amount of
deterministic work.  The model, with node 0 a depot (the plan's start and end):

* a literal per arc i -> j, and ``AddCircuit`` over them: the chosen arcs make one tour
  through the depot, i.e. a path through the observations; an observation outside the
  hint may be left out (its self-loop), one inside it too when ``groups`` allows an
  exchange, but each group keeps the hint's number of observations;
* an integer start time per observation (seconds from the plan's start) whose domain is
  the union of its allowed start intervals (visibility, windows, the cycle's end: the
  caller computes them), and arc i -> j implies ``start_j >= start_i + gap_ij`` (the
  observation's duration plus the move to the next one);
* the objective: the sum of ``arc_cost`` over the chosen arcs; optionally at most
  ``max_steps`` of ``arc_steps`` (the wheel steps) over them.

Everything is in integers (the caller rounds durations and moves up and the allowed
intervals inwards, so a solution is feasible in the caller's own continuous timing,
which should still check it).  Deterministic: one worker, a fixed seed and a limit on
CP-SAT's *deterministic* time (its own measure of work, the same on any machine and at
any load), never the wall clock.  Pure function of arrays; OR-tools is imported on use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from obsflow.exceptions import PlanningError

__all__ = ["PathResult", "best_path"]


@dataclass(frozen=True)
class PathResult:
    """What :func:`best_path` found: ``order`` (node indices, the hint when nothing cheaper
    was found), its ``cost`` (sum of ``arc_cost``), whether it is proven ``optimal`` for
    the model, and CP-SAT's ``bound`` on the cost (no feasible order costs less)."""

    order: list[int]
    cost: int
    optimal: bool
    bound: float


def _path_cost(order: Sequence[int], table: np.ndarray) -> int:
    return int(sum(int(table[a, b]) for a, b in zip(order, order[1:], strict=False)))


def best_path(arc_cost: np.ndarray, arc_steps: np.ndarray, gap_s: np.ndarray,
              starts: Sequence[Sequence[tuple[int, int]]], hint: Sequence[int], *,
              groups: Sequence[int] | None = None, max_steps: int | None = None,
              work: float = 2.0, seed: int = 0) -> PathResult:
    """The cheapest order of the observations ``hint`` visits (or as many of each group),
    each starting inside its allowed intervals (module docstring).

    ``arc_cost`` (n x n integers): what going from i to j costs (e.g. centidegrees of
    slew, plus wheel steps at some weight); ``arc_steps`` (n x n integers): the wheel
    steps from i to j, capped at ``max_steps`` in total if given; ``gap_s`` (n x n
    integers, seconds): the least time from i's start to j's start when j follows i;
    ``starts[i]``: the allowed start times of i, seconds from the plan's start, as closed
    integer intervals (an observation with none is never placed); ``hint``: a feasible
    order (node indices) to start from and to return unless a cheaper one is found;
    ``groups[i]``: exchange class of node i (default: none, the hint's nodes exactly);
    ``work``: CP-SAT's deterministic time limit (its own unit, about seconds of one core);
    ``seed``: its random seed.  Never returns an order costlier than the hint, nor one
    breaking the cap when the hint keeps it."""
    from ortools.sat.python import cp_model
    from ortools.util.python.sorted_interval_list import Domain

    cost = np.asarray(arc_cost, dtype=np.int64)
    steps = np.asarray(arc_steps, dtype=np.int64)
    gap = np.asarray(gap_s, dtype=np.int64)
    n = cost.shape[0]
    hint = [int(i) for i in hint]
    if cost.shape != (n, n) or steps.shape != (n, n) or gap.shape != (n, n) or len(starts) != n:
        raise PlanningError(f"best_path: arc_cost {cost.shape}, arc_steps {steps.shape}, "
                            f"gap_s {gap.shape} and starts ({len(starts)}) must describe "
                            "the same n nodes")
    if len(set(hint)) != len(hint) or not all(0 <= i < n for i in hint):
        raise PlanningError(f"best_path: the hint must visit distinct nodes of 0..{n - 1}")
    hint_cost = _path_cost(hint, cost)
    if len(hint) < 3:
        return PathResult(hint, hint_cost, True, float(hint_cost))
    inside = set(hint)
    if groups is None:
        nodes = list(hint)
    else:
        kinds = {groups[i] for i in hint}
        nodes = [i for i in range(n) if i in inside or (groups[i] in kinds and starts[i])]
    model = cp_model.CpModel()
    horizon = max(hi for i in nodes for _, hi in starts[i])
    start = {}
    for i in nodes:
        if not starts[i]:
            raise PlanningError(f"best_path: node {i} of the hint has no allowed start")
        dom = Domain.from_intervals([[int(lo), int(hi)] for lo, hi in starts[i]])
        start[i] = model.new_int_var_from_domain(dom, f"t{i}")
    arcs: list[tuple[int, int, cp_model.IntVar]] = []
    lit: dict[tuple[int, int], cp_model.IntVar] = {}
    visit: dict[int, cp_model.IntVar] = {}
    for i in nodes:  # node k + 1 of the circuit is nodes[k]; 0 is the depot
        first, last = model.new_bool_var(f"s{i}"), model.new_bool_var(f"e{i}")
        arcs += [(0, nodes.index(i) + 1, first), (nodes.index(i) + 1, 0, last)]
        lit[-1, i], lit[i, -1] = first, last
        if groups is not None:
            skip = model.new_bool_var(f"skip{i}")
            arcs.append((nodes.index(i) + 1, nodes.index(i) + 1, skip))
            visit[i] = skip
    for i in nodes:
        for j in nodes:
            if i == j:
                continue
            x = model.new_bool_var(f"x{i}_{j}")
            arcs.append((nodes.index(i) + 1, nodes.index(j) + 1, x))
            lit[i, j] = x
            # j after i: no earlier than i's start, its duration and the move
            model.add(start[j] >= start[i] + int(gap[i, j])).only_enforce_if(x)
    model.add_circuit(arcs)
    if groups is not None:
        for kind in {groups[i] for i in hint}:
            want = sum(1 for i in hint if groups[i] == kind)
            model.add(sum(1 - visit[i] for i in nodes if groups[i] == kind) == want)
    pairs = [(i, j) for (i, j) in lit if i >= 0 and j >= 0]
    # redundant, for the relaxation (the big-M links of the start times give it little): the
    # gaps along the path add up to no more than the latest start of the last observation
    # less the earliest start of the first (idle time only adds to them)
    earliest = {i: min(lo for lo, _ in starts[i]) for i in nodes}
    latest = {i: max(hi for _, hi in starts[i]) for i in nodes}
    model.add(sum(int(gap[i, j]) * lit[i, j] for i, j in pairs)
              + sum(earliest[i] * lit[-1, i] for i in nodes)
              <= sum(latest[i] * lit[i, -1] for i in nodes))
    if max_steps is not None:
        model.add(sum(int(steps[i, j]) * lit[i, j] for i, j in pairs) <= int(max_steps))
    model.minimize(sum(int(cost[i, j]) * lit[i, j] for i, j in pairs))
    # the hint, with the earliest start times it implies (within the model's own timing)
    used = set(zip(hint, hint[1:], strict=False)) | {(-1, hint[0]), (hint[-1], -1)}
    for key, x in lit.items():
        model.add_hint(x, key in used)
    for i, skip in visit.items():
        model.add_hint(skip, i not in inside)
    t = 0
    for k, i in enumerate(hint):
        if k:
            t += int(gap[hint[k - 1], i])
        t = next((max(t, lo) for lo, hi in sorted(starts[i]) if hi >= t), horizon)
        model.add_hint(start[i], t)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = seed
    solver.parameters.max_deterministic_time = work
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return PathResult(hint, hint_cost, False, float("-inf"))
    order, node = [], -1
    while True:
        node = next(j for (i, j), x in lit.items() if i == node and solver.boolean_value(x))
        if node == -1:
            break
        order.append(node)
    found = _path_cost(order, cost)
    optimal = status == cp_model.OPTIMAL
    keeps_cap = max_steps is None or _path_cost(order, steps) <= max_steps
    if found < hint_cost and keeps_cap:
        return PathResult(order, found, optimal, solver.best_objective_bound)
    return PathResult(hint, hint_cost, optimal and found == hint_cost,
                      solver.best_objective_bound)
