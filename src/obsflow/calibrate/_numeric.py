"""Small compiled helpers shared by the stage-1 kernels (private)."""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["as_pixel_map", "nan_median_sorted", "sort_inplace"]


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
        raise ValueError(f"{name} must be a scalar or shape {shape}, got {arr.shape}")
    return arr
