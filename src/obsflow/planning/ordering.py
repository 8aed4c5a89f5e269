"""Improving the order of a plan: local search on the travel between observations.

The scheduler first chooses *what* runs (greedily, priorities first: see
:mod:`obsflow.planning.scheduler`); :func:`improve_order` then reorders that
same set so the telescope travels less.  It is a first-improvement local
search with two kinds of moves, both classic for travelling-salesman tours:

* 2-opt: reverse a stretch of the sequence (``a b c d`` -> ``a c b d``);
* or-opt: move a stretch of one to four observations (forward or reversed)
  elsewhere in the sequence — a target's filters travel together.

:func:`order_runs` then chooses the order *inside* each run of consecutive
observations of one target (its filters) exactly, by dynamic programming over
the runs: the wheel's path through a target's filters and the step from one
target's last filter to the next one's first are optimised together, the
targets' order (the slew) untouched.  :func:`kick_search` repeats both from
random "double bridge" kicks (an iterated local search) and keeps the best;
:func:`anneal` is a stronger search (simulated annealing over the same moves,
which may take a costlier step to leave a local optimum).  :func:`pareto`
keeps the plans no other plan beats on every measure.
:func:`path_lower_bound` bounds from below what any ordering can cost (a
Held-Karp bound), so a result can be judged against it.

A move is taken only when it lowers the total travel cost by more than
``tol`` *and* ``feasible`` accepts the whole new sequence (the caller
re-times it against windows, visibility and constraints), so the result is
never costlier than the input and every observation stays placeable.  The
travel between two consecutive observations is given by ``cost(a, b)``
(symmetric; the first observation costs nothing: there is no ``None`` start
here).  Pure functions of sequences (and cost matrices): no time, no profile.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from itertools import permutations
from random import Random
from typing import TypeVar

import numpy as np

__all__ = ["anneal", "improve_order", "kick_search", "order_runs", "pareto", "path_lower_bound",
           "tour_cost"]

T = TypeVar("T")


def tour_cost(order: Sequence[T], cost: Callable[[T, T], float]) -> float:
    """Sum of ``cost`` between consecutive elements of ``order``."""
    return sum(cost(a, b) for a, b in zip(order, order[1:], strict=False))


def improve_order(order: Sequence[T], cost: Callable[[T, T], float],
                  feasible: Callable[[list[T]], bool], max_checks: int = 20000,
                  tol: float = 1e-9) -> list[T]:
    """A reordering of ``order`` with lower (or equal) :func:`tour_cost`, every intermediate
    sequence accepted by ``feasible`` (module docstring).

    Stops when no 2-opt or or-opt move improves the cost, or after
    ``max_checks`` calls of ``feasible`` (each re-times the whole plan).  ``cost`` is
    evaluated once per ordered pair (n² calls) and looked up after that.
    """
    items = list(order)
    n = len(items)
    table = [[cost(a, b) for b in items] for a in items]  # each pair once: lookups below
    seq = list(range(n))  # positions into items
    checks = 0

    def c(i: int, j: int) -> float:  # cost between positions i and j; -1 and n are the ends
        return 0.0 if i < 0 or j < 0 or i >= n or j >= n else table[seq[i]][seq[j]]

    def pair(a: int | None, b: int | None) -> float:
        return 0.0 if a is None or b is None else table[a][b]

    def attempt(candidate: list[int]) -> bool:
        nonlocal seq, checks
        checks += 1
        if feasible([items[k] for k in candidate]):
            seq = candidate
            return True
        return False

    improved = True
    while improved and checks < max_checks:
        improved = False
        # 2-opt: reverse seq[i..j]
        for i in range(n - 1):
            for j in range(i + 1, n):
                delta = c(i - 1, j) + c(i, j + 1) - c(i - 1, i) - c(j, j + 1)
                if delta < -tol and attempt(seq[:i] + seq[i:j + 1][::-1] + seq[j + 1:]):
                    improved = True
                if checks >= max_checks:
                    return [items[k] for k in seq]
        # or-opt: move seq[i..i+m-1] (forward or reversed) before position k of the rest
        for m in (1, 2, 3, 4):
            for i in range(n - m + 1):
                seg = seq[i:i + m]
                rest = seq[:i] + seq[i + m:]
                gain = c(i - 1, i) + c(i + m - 1, i + m) - c(i - 1, i + m)
                for k in range(len(rest) + 1):
                    if k == i:
                        continue
                    a = rest[k - 1] if k > 0 else None
                    b = rest[k] if k < len(rest) else None
                    base = pair(a, b)
                    for s in (seg, seg[::-1]) if m > 1 else (seg,):
                        add = pair(a, s[0]) + pair(s[-1], b) - base
                        if add - gain < -tol and attempt(rest[:k] + s + rest[k:]):
                            improved = True
                            break
                    else:
                        continue
                    break  # seq changed: the positions of this loop are stale
                if checks >= max_checks:
                    return [items[k] for k in seq]
    return [items[k] for k in seq]


def order_runs(order: Sequence[T], group: Callable[[T], Hashable],
               cost: Callable[[T, T], float], max_run: int = 6) -> list[T]:
    """``order`` with the elements inside each run of consecutive equal ``group`` keys
    permuted so that :func:`tour_cost` is lowest; the runs themselves keep their order.

    Exact (dynamic programming over the runs, the state being the run's last element):
    every permutation of a run of at most ``max_run`` elements is tried (a longer run keeps
    its order or is reversed).  Ties keep the earlier permutation, the input's own first,
    so an already optimal sequence comes back unchanged.
    """
    runs: list[list[T]] = []
    for x in order:
        if runs and group(runs[-1][0]) == group(x):
            runs[-1].append(x)
        else:
            runs.append([x])
    # best[i]: (cost so far, sequence) for each choice of the current run's arrangement
    best: list[tuple[float, list[T]]] = [(0.0, [])]
    for run in runs:
        options = (list(permutations(run)) if len(run) <= max_run
                   else [tuple(run), tuple(run[::-1])])
        nxt: list[tuple[float, list[T]]] = []
        for perm in options:
            inner = tour_cost(perm, cost)
            cands = [(c + (cost(seq[-1], perm[0]) if seq else 0.0) + inner, seq)
                     for c, seq in best]
            c, seq = min(cands, key=lambda cs: cs[0])
            nxt.append((c, seq + list(perm)))
        best = nxt
    return min(best, key=lambda cs: cs[0])[1]


def kick_search(order: Sequence[T], cost: Callable[[T, T], float],
                feasible: Callable[[list[T]], bool], improve: Callable[[list[T]], list[T]],
                kicks: int = 30, seed: int = 0, tol: float = 1e-9) -> list[T]:
    """Iterated local search from ``order`` (already a local optimum of ``improve``).

    ``kicks`` times: cut the best sequence at three random places and swap the two middle
    stretches (a "double bridge", which 2-opt and or-opt cannot undo one step at a time),
    give it to ``improve`` if ``feasible`` accepts it, and keep the result when it costs
    less than the best.  Deterministic for a ``seed``; never costlier than ``order``."""
    best, best_cost = list(order), tour_cost(order, cost)
    if len(best) < 4:
        return best
    rng = Random(seed)
    for _ in range(kicks):
        i, j, k = sorted(rng.sample(range(1, len(best)), 3))
        cand = best[:i] + best[j:k] + best[i:j] + best[k:]
        if not feasible(cand):
            continue
        cand = improve(cand)
        c = tour_cost(cand, cost)
        if c < best_cost - tol:
            best, best_cost = cand, c
    return best


def anneal(order: Sequence[T], cost: Callable[[T, T], float],
           feasible: Callable[[list[T]], bool], iters: int | None = None, seed: int = 0,
           spare: Sequence[T] = (), exchangeable: Callable[[T, T], bool] | None = None,
           tol: float = 1e-9) -> list[T]:
    """Simulated annealing on the order of ``order``: the cheapest feasible sequence seen.

    Each iteration draws a 2-opt move (reverse a stretch), an or-opt move (a stretch of one
    to four elements, maybe reversed, moved elsewhere) or, when ``spare`` is given, an
    exchange (an element of the sequence replaced in place by one of ``spare`` for which
    ``exchangeable(inside, outside)`` holds; the one taken out becomes spare).  Its change of
    :func:`tour_cost` is computed from the cost table, and the move is taken when it is
    cheaper or, with probability ``exp(-change / temperature)``, costlier, *and*
    ``feasible`` accepts the whole new sequence.  The temperature falls geometrically from
    a fifth of the mean cost between consecutive elements of ``order`` to a thousandth of
    that over ``iters`` iterations (default ``1000 n``).  The result has as many elements
    as ``order``; deterministic for a ``seed``; never costlier than ``order`` (returned
    unchanged when nothing cheaper was found)."""
    items = list(order) + list(spare)
    n = len(order)
    if n < 4:
        return list(order)
    table = [[cost(a, b) for b in items] for a in items]
    seq = list(range(n))
    pool = list(range(n, len(items)))
    swaps = ({i: [j for j in range(len(items)) if j != i and exchangeable(items[i], items[j])]
              for i in range(len(items))} if exchangeable is not None and pool else {})
    current = sum(table[a][b] for a, b in zip(seq, seq[1:], strict=False))
    best, best_cost = list(seq), current
    t_hot = 0.2 * current / (n - 1)
    if not t_hot > 0:
        return list(order)
    iters = 1000 * n if iters is None else iters
    cool = 1e-3 ** (1.0 / max(iters, 1))
    temperature = t_hot
    uniform = Random(seed).random  # integers drawn as int(uniform() * k): randrange is slow
    p_swap = 0.2 if any(swaps.get(i) for i in range(n)) else 0.0

    def c(s: list[int], i: int, j: int) -> float:
        return 0.0 if i < 0 or j >= n else table[s[i]][s[j]]

    for _ in range(iters):
        temperature *= cool
        r = uniform()
        if r < p_swap:  # exchange seq[i] for a spare element
            i = int(uniform() * n)
            outs = [j for j in swaps.get(seq[i], ()) if j in pool]
            if not outs:
                continue
            j = outs[int(uniform() * len(outs))]
            old = seq[i]
            delta = ((table[seq[i - 1]][j] - table[seq[i - 1]][old] if i > 0 else 0.0)
                     + (table[j][seq[i + 1]] - table[old][seq[i + 1]] if i + 1 < n else 0.0))
            kind = 0
        elif r < p_swap + (1 - p_swap) / 2:  # 2-opt: reverse seq[i..j]
            i, j = int(uniform() * n), int(uniform() * (n - 1))
            i, j = (i, j + (j >= i)) if j >= i else (j, i)
            delta = c(seq, i - 1, j) + c(seq, i, j + 1) - c(seq, i - 1, i) - c(seq, j, j + 1)
            kind = 1
        else:  # or-opt: seq[i:i+m] (reversed or not) before rest[k]
            m = 1 + int(uniform() * min(4, n - 1))
            i = int(uniform() * (n - m + 1))
            k = int(uniform() * (n - m + 1))
            if k == i:
                continue
            seg = seq[i:i + m][::-1] if m > 1 and uniform() < 0.5 else seq[i:i + m]
            rest = seq[:i] + seq[i + m:]
            gain = c(seq, i - 1, i) + c(seq, i + m - 1, i + m) - c(seq, i - 1, i + m)
            a = rest[k - 1] if k > 0 else None
            b = rest[k] if k < len(rest) else None
            add = ((table[a][seg[0]] if a is not None else 0.0)
                   + (table[seg[-1]][b] if b is not None else 0.0)
                   - (table[a][b] if a is not None and b is not None else 0.0))
            delta = add - gain
            kind = 2
        if delta > tol and uniform() >= math.exp(-delta / temperature):
            continue
        if kind == 0:
            cand = seq[:i] + [j] + seq[i + 1:]
        elif kind == 1:
            cand = seq[:i] + seq[i:j + 1][::-1] + seq[j + 1:]
        else:
            cand = rest[:k] + seg + rest[k:]
        if not feasible([items[x] for x in cand]):
            continue
        if kind == 0:
            pool[pool.index(j)] = old
        seq, current = cand, current + delta
        if current < best_cost - tol:
            best, best_cost = list(seq), current
    return [items[x] for x in best]


def pareto(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the points no other point beats: none is at most as large in every
    coordinate and smaller in one (duplicates: the first is kept)."""
    keep: list[int] = []
    for i, p in enumerate(points):
        beaten = any(all(q_ <= p_ for q_, p_ in zip(q, p, strict=True)) and
                     (any(q_ < p_ for q_, p_ in zip(q, p, strict=True)) or j < i)
                     for j, q in enumerate(points) if j != i)
        if not beaten:
            keep.append(i)
    return keep


def path_lower_bound(cost: np.ndarray, upper: float, iters: int = 400) -> float:
    """A lower bound on the cheapest Hamiltonian path through ``cost`` (symmetric, n x n):
    no ordering of the n elements has a lower :func:`tour_cost`.

    The path is a tour through one extra node joined to every node at no cost; any tour is
    a 1-tree (a spanning tree of the other nodes plus two edges of the extra node), so for any
    node penalties ``pi`` the cheapest 1-tree under ``cost + pi_i + pi_j`` less ``2 sum pi`` is
    a bound (Held and Karp 1970).  ``pi`` follows the subgradient (node degree - 2) with
    Polyak steps towards ``upper`` (a known path's cost, which only sets the step size); the
    best bound seen is returned, valid whatever the iteration did."""
    from scipy.sparse.csgraph import minimum_spanning_tree

    n = cost.shape[0]
    if n < 2:
        return 0.0
    full = np.zeros((n + 1, n + 1))
    full[1:, 1:] = cost  # node 0: the extra node (the path's two ends)
    pi = np.zeros(n + 1)
    best, alpha, stall = -np.inf, 2.0, 0
    for _ in range(iters):
        d = full + pi[:, None] + pi[None, :]
        shift = 1.0 + float(np.abs(d).max())  # positive weights: csgraph drops zeros
        sub = d[1:, 1:] + shift
        np.fill_diagonal(sub, 0.0)
        tree = minimum_spanning_tree(sub).toarray()
        ends = np.argsort(d[0, 1:])[:2] + 1
        value = float(tree.sum() - (n - 1) * shift + d[0, ends].sum() - 2 * pi.sum())
        if value > best + 1e-9:
            best, stall = value, 0
        else:
            stall += 1
            if stall > 20:
                alpha, stall = alpha / 2, 0
        degree = np.zeros(n + 1)
        degree[1:] = ((tree + tree.T) > 0).sum(axis=1)
        degree[0] = 2
        degree[ends] += 1
        g = degree - 2
        if not g.any() or alpha < 1e-4:
            break
        pi += alpha * max(upper - value, 1e-3) / float(g @ g) * g
    return best
