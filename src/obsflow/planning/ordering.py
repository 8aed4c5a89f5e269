"""Improving the order of a plan: local search on the travel between observations.

The scheduler first chooses *what* runs (greedily, priorities first: see
:mod:`obsflow.planning.scheduler`); :func:`improve_order` then reorders that
same set so the telescope travels less.  It is a first-improvement local
search with two kinds of moves, both classic for travelling-salesman tours:

* 2-opt: reverse a stretch of the sequence (``a b c d`` -> ``a c b d``);
* or-opt: move a stretch of one to four observations (forward or reversed)
  elsewhere in the sequence — a target's filters travel together.

A move is taken only when it lowers the total travel cost by more than
``tol`` *and* ``feasible`` accepts the whole new sequence (the caller
re-times it against windows, visibility and constraints), so the result is
never costlier than the input and every observation stays placeable.  The
travel between two consecutive observations is given by ``cost(a, b)``
(symmetric; the first observation costs nothing: there is no ``None`` start
here).  Pure functions of sequences: no time, no profile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

__all__ = ["improve_order", "tour_cost"]

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
