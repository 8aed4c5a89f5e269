"""Linearity correction equals numpy's polynomial evaluation, for scalar and per-pixel coefficients."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.polynomial import polynomial

from obsflow.calibrate.corrections import correct_linearity_inplace, linearize
from obsflow.exceptions import CalibrationError


def test_linearity_scalar_and_per_pixel_coefficients() -> None:
    rng = np.random.default_rng(2)
    data = rng.uniform(0, 60000, (2, 4, 6, 5)).astype(np.float32)
    scalar = np.array([0.0, 1.0, 2e-6, -1e-11, 3e-17], ">f8")  # as read from a FITS file
    expect = polynomial.polyval(data.astype(np.float64), scalar.astype(np.float64))
    np.testing.assert_allclose(linearize(data, scalar), expect, rtol=2e-6)
    maps = scalar[:, None, None] * rng.uniform(0.9, 1.1, (5, 6, 5))
    expect = np.empty(data.shape)
    for y in range(6):
        for x in range(5):
            expect[:, :, y, x] = polynomial.polyval(data[:, :, y, x].astype(np.float64), maps[:, y, x])
    strided = np.asfortranarray(data)  # any memory layout is corrected in place
    correct_linearity_inplace(strided, maps)
    np.testing.assert_allclose(strided, expect, rtol=2e-6)
    with pytest.raises(CalibrationError, match=r"linearity coefficients of shape \(5, 3, 3\)"):
        correct_linearity_inplace(data, maps[:, :3, :3])
