"""Continuity of 14-bit CCSDS packet sequence counts (one APID at a time).

Counts wrap from 16383 to 0. They are unwrapped in arrival order with the
nearest-modulo rule: each step is taken as the signed difference of smallest
magnitude, ``((c[i] - c[i-1] + 8192) % 16384) - 8192``. So 16383 -> 0 is a
step of +1 (a wrap), while 100 -> 98 is a step of -2 (an out-of-order
arrival), not a jump of 16382. Gaps of 8192 or more packets between two
consecutive arrivals cannot be told apart from out-of-order arrivals and are
misread; that many lost packets in a row is a problem to catch elsewhere.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from obsflow.exceptions import TelemetryError, TelemetryTypeError
from obsflow.telemetry.packets import SEQUENCE_COUNT_MODULUS

__all__ = ["SequenceContinuity", "continuity", "sequence_gaps", "unwrap_sequence"]

_HALF = SEQUENCE_COUNT_MODULUS // 2


def _counts(seq_count: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Validate 14-bit counts; returns a 1-D int64 copy."""
    c = np.asarray(seq_count)
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    if c.dtype.kind not in "ui":
        raise TelemetryTypeError(f"sequence counts must be integers, got dtype {c.dtype}")
    c = c.astype(np.int64).reshape(-1)
    if c.min() < 0 or c.max() >= SEQUENCE_COUNT_MODULUS:
        raise TelemetryError(f"sequence counts must lie in 0..{SEQUENCE_COUNT_MODULUS - 1}")
    return c


def _nearest_step(delta: npt.NDArray[np.int64] | np.int64) -> npt.NDArray[np.int64]:
    """Signed step of smallest magnitude congruent to ``delta`` modulo 16384."""
    return np.asarray(((delta + _HALF) % SEQUENCE_COUNT_MODULUS) - _HALF, dtype=np.int64)


def unwrap_sequence(seq_count: npt.ArrayLike, start: int | None = None) -> npt.NDArray[np.int64]:
    """Unwrap 14-bit sequence counts, in arrival order, into int64 counts.

    Parameters
    ----------
    seq_count : array_like
        Shape (N,), integers in 0 .. 16383, in arrival order, one APID.
    start : int, optional
        Unwrapped value near which the first count lies: the first output is
        the value congruent to ``seq_count[0]`` modulo 16384 nearest to
        ``start`` (ties resolve downwards). Pass the last unwrapped count of
        the previous chunk to continue across chunks. Default: the first
        count is kept as is (0 .. 16383).

    Returns
    -------
    numpy.ndarray
        Shape (N,), int64: ``out % 16384 == seq_count`` and each step
        ``out[i] - out[i-1]`` lies in -8192 .. 8191.
    """
    c = _counts(seq_count)
    if c.size == 0:
        return c
    first = c[0] if start is None else int(start) + int(_nearest_step(np.int64(c[0] - start)))
    out = np.empty_like(c)
    out[0] = first
    np.cumsum(_nearest_step(np.diff(c)), out=out[1:])
    out[1:] += first
    return out


def _gaps(unique_sorted: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """(K, 2) (first_missing, last_missing) ranges between sorted unique counts."""
    if unique_sorted.size < 2:
        return np.zeros((0, 2), dtype=np.int64)
    jump = np.flatnonzero(np.diff(unique_sorted) > 1)
    return np.column_stack([unique_sorted[jump] + 1, unique_sorted[jump + 1] - 1]).astype(np.int64)


def sequence_gaps(seq_count: npt.ArrayLike, start: int | None = None) -> npt.NDArray[np.int64]:
    """Ranges of sequence counts never received.

    Parameters
    ----------
    seq_count : array_like
        Shape (N,), 14-bit counts in arrival order (one APID).
    start : int, optional
        As for :func:`unwrap_sequence`.

    Returns
    -------
    numpy.ndarray
        Shape (K, 2), int64: inclusive (first_missing, last_missing) ranges in
        unwrapped counts, ascending, between the lowest and highest count
        received. A late (out-of-order) packet fills its gap.
    """
    return _gaps(np.unique(unwrap_sequence(seq_count, start)))


@dataclasses.dataclass(frozen=True, eq=False)
class SequenceContinuity:
    """Continuity summary of one APID's sequence counts.

    Attributes
    ----------
    unwrapped : numpy.ndarray
        (N,) int64 unwrapped counts in arrival order.
    gaps : numpy.ndarray
        (K, 2) int64 inclusive (first_missing, last_missing) ranges.
    duplicates : numpy.ndarray
        (D,) int64 arrival indices of packets whose unwrapped count had
        already been received.
    out_of_order : numpy.ndarray
        (M,) int64 arrival indices of first-time counts lower than a count
        received before them.
    """

    unwrapped: npt.NDArray[np.int64]
    gaps: npt.NDArray[np.int64]
    duplicates: npt.NDArray[np.int64]
    out_of_order: npt.NDArray[np.int64]

    @property
    def n_packets(self) -> int:
        """Number of packets received."""
        return int(self.unwrapped.size)

    @property
    def n_missing(self) -> int:
        """Number of counts missing between the lowest and highest received."""
        return int((self.gaps[:, 1] - self.gaps[:, 0] + 1).sum())

    @property
    def n_duplicates(self) -> int:
        """Number of packets repeating an already received count."""
        return int(self.duplicates.size)

    @property
    def n_out_of_order(self) -> int:
        """Number of packets that arrived after a higher count."""
        return int(self.out_of_order.size)

    @property
    def ok(self) -> bool:
        """True when nothing is missing, duplicated or out of order."""
        return self.n_missing == 0 and self.n_duplicates == 0 and self.n_out_of_order == 0


def continuity(seq_count: npt.ArrayLike, start: int | None = None) -> SequenceContinuity:
    """Missing, duplicated and out-of-order packets of one APID.

    Parameters
    ----------
    seq_count : array_like
        Shape (N,), 14-bit counts in arrival order (one APID).
    start : int, optional
        As for :func:`unwrap_sequence`.

    Returns
    -------
    SequenceContinuity
    """
    u = unwrap_sequence(seq_count, start)
    unique, first_index = np.unique(u, return_index=True)
    seen_before = np.ones(u.size, dtype=bool)
    seen_before[first_index] = False
    running_max = np.maximum.accumulate(u) if u.size else u
    lower = np.zeros(u.size, dtype=bool)
    lower[1:] = u[1:] < running_max[:-1]
    return SequenceContinuity(
        unwrapped=u,
        gaps=_gaps(unique),
        duplicates=np.flatnonzero(seen_before).astype(np.int64),
        out_of_order=np.flatnonzero(lower & ~seen_before).astype(np.int64),
    )
