"""Match two lists of positions in a tangent plane: an offset search, then nearest neighbours.

Positions are (N, 2) arrays in arcsec.  :func:`find_offset` finds the
translation that lines up the most pairs: every (reference - source)
difference within ``search_radius`` goes into a 2-D histogram of bin
``tolerance``; the peak of the histogram summed over 3x3 bins wins and the
mean difference around it is the offset.  It finds offsets of many
tolerances (pointing errors of tens of mas or a few pixels) among spurious
sources on either side.  :func:`match_nearest` then pairs each source with
its nearest reference within ``tolerance`` when that reference's nearest
source is the same (mutual nearest neighbours, one-to-one).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["find_offset", "match_nearest"]


def find_offset(src: np.ndarray, ref: np.ndarray, search_radius: float,
                tolerance: float) -> tuple[np.ndarray, int]:
    """The translation (2,) arcsec taking ``src`` onto ``ref`` and the pairs that support it.

    Parameters
    ----------
    src, ref : numpy.ndarray
        (N, 2) and (M, 2) positions, arcsec.
    search_radius : float
        Largest offset considered, arcsec.
    tolerance : float
        Histogram bin (the position agreement expected after the shift), arcsec.

    Returns
    -------
    offset : numpy.ndarray
        (2,) float64, to be added to ``src``; zeros when no pair was found.
    support : int
        Number of differences in the winning 3x3 bins.
    """
    src, ref = np.asarray(src, np.float64), np.asarray(ref, np.float64)
    if src.shape[0] == 0 or ref.shape[0] == 0:
        return np.zeros(2), 0
    pairs = cKDTree(src).query_ball_tree(cKDTree(ref), search_radius)
    i = np.repeat(np.arange(src.shape[0]), [len(p) for p in pairs])
    j = np.fromiter((k for p in pairs for k in p), np.int64, count=i.size)
    if i.size == 0:
        return np.zeros(2), 0
    diff = ref[j] - src[i]
    nbin = int(np.ceil(search_radius / tolerance))
    edges = np.linspace(-nbin * tolerance, nbin * tolerance, 2 * nbin + 1)
    hist, _, _ = np.histogram2d(diff[:, 0], diff[:, 1], bins=(edges, edges))
    padded = np.pad(hist, 1)
    summed = np.zeros_like(hist)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            summed += padded[1 + dy:1 + dy + hist.shape[0], 1 + dx:1 + dx + hist.shape[1]]
    bx, by = np.unravel_index(int(np.argmax(summed)), summed.shape)
    centre = np.array([edges[bx] + edges[bx + 1], edges[by] + edges[by + 1]]) / 2
    near = np.all(np.abs(diff - centre) <= 1.5 * tolerance, axis=1)
    return diff[near].mean(axis=0), int(near.sum())


def match_nearest(src: np.ndarray, ref: np.ndarray,
                  tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Mutual nearest neighbours closer than ``tolerance``: index arrays (into src, into ref)."""
    src, ref = np.asarray(src, np.float64), np.asarray(ref, np.float64)
    if src.shape[0] == 0 or ref.shape[0] == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    d, j = cKDTree(ref).query(src, distance_upper_bound=tolerance)
    ok = np.isfinite(d)
    i, j = np.flatnonzero(ok), j[ok]
    _, back = cKDTree(src).query(ref[j])
    mutual = back == i
    return i[mutual].astype(np.int64), j[mutual].astype(np.int64)
