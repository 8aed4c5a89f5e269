"""The pure accounting functions: runs, first-time packets, coverage and gaps."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from obsflow.ingest.accounting import (
    coverage,
    gap_ranges,
    new_packets,
    packet_runs,
    ranges_from_mask,
)


def test_runs_split_on_index_and_position() -> None:
    idx = np.array([0, 1, 2, 5, 6, 3])
    off = np.array([0, 10, 20, 30, 40, 50])
    runs = packet_runs(idx, off, np.full(6, 10))
    # 0-2 back to back; 3 sits after 6 in the file; 5-6 back to back
    assert runs.tolist() == [[0, 2, 0, 10], [3, 3, 50, 10], [5, 6, 30, 10]]


def test_new_packets_marks_duplicates_and_already_received() -> None:
    already = np.zeros(10, bool)
    already[[2, 3]] = True
    idx = np.array([1, 2, 1, 4, 12])
    assert new_packets(idx, already).tolist() == [True, False, False, True, True]


def test_gaps() -> None:
    assert gap_ranges(10, np.array([[0, 2], [5, 6]])).tolist() == [[3, 4], [7, 9]]
    assert gap_ranges(3, np.array([[0, 2]])).tolist() == []
    assert gap_ranges(4, np.zeros((0, 2), np.int64)).tolist() == [[0, 3]]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=200))
def test_mask_ranges_round_trip(bits: list[bool]) -> None:
    mask = np.array(bits)
    ranges = ranges_from_mask(mask)
    assert np.array_equal(coverage(ranges, mask.size), mask)
    assert np.all(ranges[:, 0] <= ranges[:, 1])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 60), min_size=1, max_size=120), st.integers(0, 2**31))
def test_runs_cover_exactly_the_received_packets(indices: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    idx = np.unique(np.array(indices))
    rng.shuffle(idx)
    size = 26 + 4
    off = np.arange(idx.size) * size
    runs = packet_runs(idx, off, np.full(idx.size, size))
    covered = coverage(runs[:, :2], 61)
    assert set(np.flatnonzero(covered).tolist()) == set(idx.tolist())
    for first, last, offset, _ in runs:  # every run is contiguous in the file
        pos = {int(i): int(o) for i, o in zip(idx, off, strict=True)}
        assert [pos[i] for i in range(first, last + 1)] == list(
            range(offset, offset + (last - first + 1) * size, size))
