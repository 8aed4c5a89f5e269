"""Packet accounting as pure array functions: runs, duplicates, gaps.

All indices are ``packet_index`` values within one exposure (0-based).
Ranges are inclusive ``(first, last)`` pairs, int64 arrays of shape (R, 2).
"""

from __future__ import annotations

import numpy as np

__all__ = ["coverage", "gap_ranges", "new_packets", "packet_runs", "ranges_from_mask"]


def coverage(ranges: np.ndarray, size: int) -> np.ndarray:
    """Boolean mask (size,) of the packet indices covered by ``ranges`` (R, 2+)."""
    mask = np.zeros(size, bool)
    if len(ranges):
        delta = np.zeros(size + 1, np.int64)
        np.add.at(delta, np.asarray(ranges)[:, 0], 1)
        np.add.at(delta, np.asarray(ranges)[:, 1] + 1, -1)
        mask = np.cumsum(delta[:-1]) > 0
    return mask


def ranges_from_mask(mask: np.ndarray) -> np.ndarray:
    """Inclusive (first, last) ranges (R, 2) of the True runs of a boolean mask."""
    padded = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return edges.reshape(-1, 2) - np.array([0, 1])


def gap_ranges(expected: int, received: np.ndarray) -> np.ndarray:
    """Missing packet ranges (G, 2) of an exposure expecting ``expected`` packets."""
    return ranges_from_mask(~coverage(received, expected)) if expected > 0 else np.zeros((0, 2), np.int64)


def new_packets(packet_index: np.ndarray, already: np.ndarray) -> np.ndarray:
    """Mask (N,) of packets seen for the first time: not in ``already`` and first in this batch.

    Parameters
    ----------
    packet_index : (N,) int
        Indices of CRC-good packets in arrival order.
    already : (M,) bool
        Packets received before (index -> True); indices beyond M count as new.
    """
    idx = np.asarray(packet_index, np.int64)
    first = np.zeros(idx.size, bool)
    _, where = np.unique(idx, return_index=True)
    first[where] = True
    inside = idx < already.size
    seen = np.zeros(idx.size, bool)
    seen[inside] = already[idx[inside]]
    return first & ~seen


def packet_runs(packet_index: np.ndarray, offset: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Runs of consecutive packet indices lying back to back in one file.

    Parameters
    ----------
    packet_index, offset, size : (N,) int
        Unique packets of one exposure in one file: index, byte offset in the
        file, packet size in bytes.

    Returns
    -------
    (R, 4) int64
        ``first``, ``last`` (inclusive packet indices), byte ``offset`` of
        packet ``first`` and the packet ``size`` shared by the run.
    """
    if not len(packet_index):
        return np.zeros((0, 4), np.int64)
    order = np.argsort(packet_index, kind="stable")
    idx = np.asarray(packet_index, np.int64)[order]
    off = np.asarray(offset, np.int64)[order]
    sz = np.asarray(size, np.int64)[order]
    brk = (np.diff(idx) != 1) | (np.diff(off) != sz[:-1]) | (np.diff(sz) != 0)
    starts = np.concatenate([[0], np.flatnonzero(brk) + 1])
    stops = np.concatenate([starts[1:], [idx.size]]) - 1
    return np.stack([idx[starts], idx[stops], off[starts], sz[starts]], axis=1)
