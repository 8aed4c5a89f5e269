"""Small compiled helpers shared by the stage-1 kernels (private)."""

from __future__ import annotations

import functools

import numpy as np
from numba import njit

from obsflow.exceptions import CalibrationError
from obsflow.models.dq import DQ

__all__ = ["DNU_U8", "JUMP_U8", "MAX_NETWORK", "SAT_U8", "as_pixel_map", "median_of", "nan_median_sorted", "select_inplace",
           "sort_columns", "sort_inplace", "sorting_network"]

DNU_U8 = np.uint8(DQ.DO_NOT_USE)
SAT_U8 = np.uint8(DQ.SATURATED)
JUMP_U8 = np.uint8(DQ.JUMP_DET)
"""Group-DQ bits as the uint8 scalars the kernels compare with (see :class:`DQ`)."""


@njit(cache=True, nogil=True)
def sort_inplace(a: np.ndarray, n: int) -> None:  # pragma: no cover - compiled
    """Insertion sort of ``a[:n]`` (tiny arrays: the groups of one pixel)."""
    for i in range(1, n):
        v = a[i]
        j = i - 1
        while j >= 0 and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


@njit(cache=True, nogil=True)
def nan_median_sorted(a: np.ndarray, n: int) -> float:  # pragma: no cover - compiled
    """Median of the sorted finite values ``a[:n]`` (mean of the middle two); NaN if n == 0."""
    if n == 0:
        return np.nan
    h = n >> 1
    if n & 1:
        return a[h]
    return 0.5 * (a[h] + a[h - 1])


def as_pixel_map(value: float | np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    """A scalar or (ny, nx) array as a read-only float32 (ny, nx) view (no copy of the caller's)."""
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim == 0:
        return np.broadcast_to(arr, shape)
    if arr.shape != shape:
        raise CalibrationError(f"{name} must be a scalar or shape {shape}, got {arr.shape}")
    return arr


MAX_NETWORK = 64
"""Largest number of values sorted with a sorting network across a row (above: per pixel)."""


@functools.lru_cache(maxsize=64)
def sorting_network(n: int) -> np.ndarray:
    """Comparator pairs ``(i, j)``, ``i < j``, of Batcher's odd-even merge sort for ``n`` values.

    Built for the next power of two; comparators touching an index ``>= n``
    are dropped (they would compare with a ``+inf`` pad and never move it).
    Returned as a read-only int64 array of shape (ncomparators, 2).
    """
    size = 1
    while size < n:
        size *= 2
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    a, b = i + j, i + j + k
                    if a // (2 * p) == b // (2 * p) and b < n:
                        pairs.append((a, b))
            k //= 2
        p *= 2
    out = np.array(pairs, np.int64).reshape(-1, 2)
    out.flags.writeable = False
    return out


@njit(cache=True, nogil=True)
def sort_columns(buf: np.ndarray, pairs: np.ndarray) -> None:  # pragma: no cover - compiled
    """Sort every column of ``buf`` (n, nx) in place with the comparator ``pairs``.

    Branch-free min/max over the contiguous row axis, so the compiler
    vectorizes it: one sort of all pixels of a detector row at once.
    """
    nx = buf.shape[1]
    for p in range(pairs.shape[0]):
        ra = buf[pairs[p, 0]]
        rb = buf[pairs[p, 1]]
        for x in range(nx):
            u = ra[x]
            v = rb[x]
            ra[x] = min(u, v)
            rb[x] = max(u, v)


@njit(cache=True, nogil=True)
def select_inplace(a: np.ndarray, n: int, k: int) -> float:  # pragma: no cover - compiled
    """Partially order ``a[:n]`` so that ``a[k]`` is its k-th smallest (0-based); return it.

    Hoare's selection: ``a[:k] <= a[k] <= a[k+1:n]`` afterwards, O(n) expected.
    """
    lo, hi = 0, n - 1
    while lo < hi:
        pivot = a[(lo + hi) >> 1]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return a[k]


@njit(cache=True, nogil=True)
def median_of(a: np.ndarray, n: int) -> float:  # pragma: no cover - compiled
    """Median of ``a[:n]`` (reorders it); NaN if ``n == 0``.  Small n: insertion sort."""
    if n == 0:
        return np.nan
    if n <= 24:
        sort_inplace(a, n)
        return nan_median_sorted(a, n)
    h = n >> 1
    upper = select_inplace(a, n, h)
    if n & 1:
        return upper
    lower = a[0]
    for j in range(1, h):
        lower = max(lower, a[j])
    return 0.5 * (lower + upper)
