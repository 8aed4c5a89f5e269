"""Lower medians of image stacks and the inputs known to be high (``obsflow.stage3.median``)."""

from __future__ import annotations

import numpy as np
import pytest

from obsflow.exceptions import OutlierError
from obsflow.stage3.median import flagged_inputs, lower_median


def test_lower_median() -> None:
    nan = np.nan
    stack = np.array([[1.0, 5.0, 2.0, nan], [9.0, 1.0, nan, nan], [4.0, 3.0, nan, 7.0],
                      [nan, 2.0, nan, nan]], np.float32)[:, None, :]
    out = lower_median(stack, 2)[0]
    # column 0: (1, 9, 4) -> 4; column 1: (5, 1, 3, 2) -> lower middle 2; column 2: one value -> NaN;
    # column 3: one value -> NaN
    assert out[0] == 4.0 and out[1] == 2.0 and np.isnan(out[2]) and np.isnan(out[3])
    pair = np.array([[3.0], [10.0]], np.float32)[:, None, :]
    assert lower_median(pair, 2)[0, 0] == 3.0  # a pair's lower median is its minimum
    # ``high``: values known to be high at each pixel (inputs flagged nearby); one row of images
    trio = np.array([[0, 0, 30, 0, 0, 3], [0, 40, 40, 40, 40, 10], [0, 50, 50, 50, 50, nan]],
                    np.float32)[:, None, :]
    high = np.array([[0, 1, 1, 2, 0, 1]])
    out = lower_median(trio, 1, high)[0]
    # 0: nothing known; 1: one known, the lowest flat (at its floor): one more dropped; 2: one
    # known but the lowest holds a source (30 above the floor, the median only 10 above it):
    # kept; 3: two known of three: dropped; 4: nothing known; 5: a pair, already its minimum
    assert out.tolist() == [0.0, 0.0, 40.0, 0.0, 40.0, 3.0]
    assert lower_median(trio, 1, high, contrast=0.2)[0, 2] == 30.0  # a looser contrast drops it


def test_flagged_inputs_counts_inputs_within_the_radius() -> None:
    # input 0: three adjacent flagged pixels (one input, counted once); input 1: one pixel;
    # input 2: none; input 3: one pixel off the grid
    flags = [np.array([[3, 4, 5], [2, 2, 2]]), np.array([[6], [3]]), None, np.array([[99], [0]])]
    count = flagged_inputs(flags, (8, 10), 1)
    assert count.dtype == np.uint8 and count.max() == 2
    assert count[2, 4] == 1 and count[2, 5] == 2 and count[4, 7] == 1 and count[0, 9] == 0
    assert int(count.sum()) == 15 + 9 and int((count == 2).sum()) == 4  # 5 x 3 and 3 x 3
    assert int(flagged_inputs(flags, (8, 10), 0).sum()) == 4  # radius 0: the pixels themselves


def test_high_of_another_shape_raises() -> None:
    stack = np.zeros((3, 2, 4), np.float32)
    with pytest.raises(OutlierError, match=r"high must have the shape of one plane \(2, 4\)"):
        lower_median(stack, 1, np.zeros((4, 2), np.intp))
