"""14-bit sequence count unwrapping and continuity (wrap-around, duplicates, reordering)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from obsflow.telemetry import continuity, sequence_gaps, unwrap_sequence


def test_wrap_around_is_continuous() -> None:
    # A set-based check on raw counts (as ccsdspy does) reports 2..16381 missing here.
    counts = [16381, 16382, 16383, 0, 1, 2]
    assert unwrap_sequence(counts).tolist() == [16381, 16382, 16383, 16384, 16385, 16386]
    result = continuity(counts)
    assert result.ok
    assert result.n_missing == 0 and result.n_out_of_order == 0 and result.n_duplicates == 0


def test_several_wraps() -> None:
    counts = np.arange(50_000) % 16384
    assert unwrap_sequence(counts).tolist() == list(range(50_000))
    assert continuity(counts).ok


def test_gap_across_wrap() -> None:
    counts = [16380, 16381, 2, 3]  # 16382, 16383, 0, 1 lost
    result = continuity(counts)
    assert result.gaps.tolist() == [[16382, 16385]]
    assert result.n_missing == 4
    assert sequence_gaps(counts).tolist() == [[16382, 16385]]


def test_duplicates_are_not_missing_or_reordered() -> None:
    # ccsdspy only notices that the array is unsorted; duplicates go unreported.
    counts = [10, 11, 11, 12, 10, 13]
    result = continuity(counts)
    assert result.duplicates.tolist() == [2, 4]
    assert result.n_duplicates == 2
    assert result.n_missing == 0
    assert result.n_out_of_order == 0
    assert not result.ok


def test_duplicate_across_wrap() -> None:
    counts = [16383, 0, 16383, 1]
    result = continuity(counts)
    assert result.unwrapped.tolist() == [16383, 16384, 16383, 16385]
    assert result.duplicates.tolist() == [2]
    assert result.n_missing == 0


def test_out_of_order_backward_step_is_not_a_wrap() -> None:
    counts = [100, 101, 103, 102, 104]
    result = continuity(counts)
    assert result.unwrapped.tolist() == [100, 101, 103, 102, 104]
    assert result.out_of_order.tolist() == [3]
    assert result.n_missing == 0 and result.n_duplicates == 0


def test_out_of_order_across_wrap() -> None:
    counts = [16382, 0, 16383, 1]
    result = continuity(counts)
    assert result.unwrapped.tolist() == [16382, 16384, 16383, 16385]
    assert result.out_of_order.tolist() == [2]
    assert result.n_missing == 0


def test_start_continues_a_previous_chunk() -> None:
    assert unwrap_sequence([0, 1], start=16383).tolist() == [16384, 16385]
    assert unwrap_sequence([5, 6], start=3 * 16384).tolist() == [3 * 16384 + 5, 3 * 16384 + 6]
    assert unwrap_sequence([16383], start=0).tolist() == [-1]


def test_empty_and_invalid() -> None:
    assert unwrap_sequence([]).size == 0
    assert continuity([]).ok and continuity([]).n_packets == 0
    assert continuity([7]).ok
    with pytest.raises(ValueError):
        unwrap_sequence([16384])
    with pytest.raises(ValueError):
        unwrap_sequence([-1])
    with pytest.raises(TypeError):
        unwrap_sequence([1.5])


def test_does_not_modify_input() -> None:
    counts = np.array([5, 4, 3], dtype=np.uint16)
    continuity(counts)
    assert counts.tolist() == [5, 4, 3]


@st.composite
def arrivals(draw: st.DrawFn) -> list[int]:
    """True (unwrapped) counts in arrival order, with losses, repeats and local swaps."""
    start = draw(st.integers(0, 3 * 16384))
    n = draw(st.integers(1, 300))
    steps = draw(st.lists(st.integers(1, 3000), min_size=n - 1, max_size=n - 1))
    true = np.concatenate([[start], start + np.cumsum(steps, dtype=np.int64)]).tolist()
    for _ in range(draw(st.integers(0, 5))):  # duplicates
        i = draw(st.integers(0, len(true) - 1))
        true.insert(i + 1, true[i])
    for _ in range(draw(st.integers(0, 5))):  # swaps of neighbours
        i = draw(st.integers(0, max(0, len(true) - 2)))
        true[i : i + 2] = true[i : i + 2][::-1]
    return true


@settings(max_examples=100, deadline=None)
@given(arrivals())
def test_property_unwrap_and_continuity(true: list[int]) -> None:
    counts = np.array(true) % 16384
    got = unwrap_sequence(counts, start=true[0])
    assert got.tolist() == true
    assert unwrap_sequence(counts).tolist() == [t - (true[0] - true[0] % 16384) for t in true]
    result = continuity(counts, start=true[0])
    received = set(true)
    assert result.n_missing == max(true) - min(true) + 1 - len(received)
    gaps = result.gaps.tolist()
    for a, b in gaps:  # every gap is maximal and holds nothing received
        assert a <= b and a - 1 in received and b + 1 in received
        assert not any(a <= t <= b for t in received)
    assert sum(b - a + 1 for a, b in gaps) == result.n_missing
    seen: set[int] = set()
    dups, late = [], []
    for i, t in enumerate(true):
        if t in seen:
            dups.append(i)
        elif seen and t < max(seen):
            late.append(i)
        seen.add(t)
    assert result.duplicates.tolist() == dups
    assert result.out_of_order.tolist() == late
