"""The side-neighbour rule of a pair's median (:func:`obsflow.stage3.outlier.ray_sides`) on
hand-made scenes: a ray's four sides are flagged, a star's slope is left alone.

With two inputs every median is the lower of a pair and every pixel has the core's derivative
allowance, so the side neighbours of a ray (5% of its charge each) on a star's slope stay
below their thresholds.  The scene here is one input's pixels and its blot built independently
of the code under test: a Moffat star (pixel integrals) at one sub-pixel phase, and as the blot
the lower of that image and the other exposure's pixels (the same star at another phase)
linearly interpolated to this input's pixel centres -- the smoothing a resample of the other
exposure brings.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from obsflow.exceptions import OutlierError
from obsflow.simulate.sky import moffat_stamp
from obsflow.stage3.outlier import flag_outliers, ray_sides

HALF = 15
SIDES = ((0, 1), (0, -1), (1, 0), (-1, 0))


def star_pair(shift: tuple[float, float], fwhm: float = 1.0, flux: float = 3e3
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(data, err, blot) of a (31, 31) input: sky 0.3, a star at (+0.2, +0.1) px from the
    centre pixel; the blot is the lower of the data and the other exposure (its star ``shift``
    px further) interpolated back; err from read noise 0.05 and Poisson (gain 20)."""
    data = flux * moffat_stamp(0.2, 0.1, HALF, fwhm) + 0.3
    other = flux * moffat_stamp(0.2 + shift[0], 0.1 + shift[1], HALF, fwhm) + 0.3
    back = ndimage.shift(other, (-shift[1], -shift[0]), order=1, mode="nearest")
    err = np.sqrt(0.05**2 + data / 20.0)
    return data.astype(np.float32), err.astype(np.float32), np.minimum(data, back).astype(np.float32)


def add_ray(data: np.ndarray, err: np.ndarray, y: int, x: int, amp: float) -> np.ndarray:
    """``data`` with a ray of ``amp`` ERR at (y, x) and 5% of it in each side neighbour."""
    out = data.copy()
    charge = amp * err[y, x]
    out[y, x] += charge
    for dy, dx in SIDES:
        out[y + dy, x + dx] += 0.05 * charge
    return out


def test_a_rays_sides_are_flagged_when_three_of_four_stand_above() -> None:
    """On a flat sky of ERR 1: a 100-ERR ray puts 5 ERR in each side; one side pulled down by
    noise to 3.5 ERR still has all four flagged; two pulled down, none."""
    excess = np.zeros((9, 9), np.float32)
    err = np.ones((9, 9), np.float32)
    excess[4, 4] = 100.0
    for dy, dx in SIDES:
        excess[4 + dy, 4 + dx] = 5.0
    centre = np.zeros((9, 9), bool)
    centre[4, 4] = True
    sides = np.zeros((9, 9), bool)
    for dy, dx in SIDES:
        sides[4 + dy, 4 + dx] = True
    assert np.array_equal(ray_sides(excess, err, centre, 4.0), sides)
    excess[4, 5] = 3.5
    assert np.array_equal(ray_sides(excess, err, centre, 4.0), sides)
    assert not ray_sides(excess, err * 2.0, centre, 4.0).any()  # 2.5 ERR: none above
    excess[5, 4] = 3.5
    assert not ray_sides(excess, err, centre, 4.0).any()
    # a side above the centre is no spread of a ray hitting the centre: it does not count
    excess[5, 4] = 120.0
    assert not ray_sides(excess, err, centre, 4.0).any()
    excess[5, 4] = 99.0
    assert np.array_equal(ray_sides(excess, err, centre, 4.0), sides)
    # a side that may not be used neither counts nor is returned
    excess[5, 4] = 5.0
    valid = np.ones((9, 9), bool)
    valid[4, 3] = False
    assert not ray_sides(excess, err, centre, 4.0, valid).any()  # 2 of the 3 usable left
    excess[4, 5] = 5.0
    assert np.array_equal(ray_sides(excess, err, centre, 4.0, valid), sides & valid)
    # a ray in the image's corner: its two sides off the image do not count
    corner = np.zeros((9, 9), bool)
    corner[0, 0] = True
    assert not ray_sides(np.full((9, 9), 50.0, np.float32), err, corner, 4.0).any()


@pytest.mark.parametrize("shift", [(0.5, 0.0), (0.5, 0.5), (-0.3, 0.45)])
def test_a_rays_sides_on_a_stars_slope_are_flagged_with_two_inputs(shift: tuple[float, float]) -> None:
    """Rays of 100 ERR 3-4 px from a star (its slope): without the rule the derivative
    allowance leaves at least three of their four sides (5 ERR each) unflagged; with it all
    four are flagged, and nothing else."""
    data, err, blot = star_pair(shift)
    usable = np.ones(data.shape, bool)
    pair = np.ones(data.shape, bool)  # two inputs: every median is the lower of a pair
    for dy, dx in ((0, 3), (3, 0), (-3, 1), (0, 4), (-4, 2)):
        y, x = HALF + dy, HALF + dx
        sci = add_ray(data, err, y, x, 100.0)
        without = flag_outliers(sci, err, blot, usable, None, pair)
        with_rule = flag_outliers(sci, err, blot, usable, None, pair, sides_at=pair)
        assert without[y, x] and with_rule[y, x]
        assert sum(bool(without[y + a, x + b]) for a, b in SIDES) <= 1
        expected = np.zeros(data.shape, bool)
        expected[y, x] = True
        for a, b in SIDES:
            expected[y + a, x + b] = True
        assert np.array_equal(with_rule, expected), (dy, dx, np.argwhere(with_rule != expected))


@pytest.mark.parametrize("fwhm", [1.0, 1.4, 2.0])
@pytest.mark.parametrize("shift", [(0.5, 0.0), (0.4, 0.3), (0.5, 0.5), (-0.3, 0.45)])
def test_a_stars_slope_is_left_alone_with_two_inputs(shift: tuple[float, float], fwhm: float) -> None:
    """A star alone, two inputs at different phases: no pixel flagged with the rule (nor
    without); and every pixel of its slope (2-5 px from the peak) taken as an outlier has no
    three sides above the blot (the other exposure's phase puts the excess on one side)."""
    data, err, blot = star_pair(shift, fwhm)
    usable = np.ones(data.shape, bool)
    pair = np.ones(data.shape, bool)
    assert (data - blot > 4.0 * err).any()  # the blot does not follow the star everywhere
    assert not flag_outliers(data, err, blot, usable, None, pair, sides_at=pair).any()
    assert not flag_outliers(data, err, blot, usable, None, pair).any()
    yy, xx = np.mgrid[:data.shape[0], :data.shape[1]]
    ring = np.maximum(np.abs(yy - HALF), np.abs(xx - HALF))
    slope = (ring >= 2) & (ring <= 5)
    assert not ray_sides(data - blot, err, slope, 4.0).any()


def test_only_where_given_and_shapes_checked() -> None:
    """The rule acts only at outliers within ``sides_at`` (the median of exactly two inputs):
    a ray on a star's slope outside it keeps main's flags; shapes must agree."""
    data, err, blot = star_pair((0.5, 0.5))
    usable = np.ones(data.shape, bool)
    pair = np.ones(data.shape, bool)
    sci = add_ray(data, err, HALF, HALF + 3, 100.0)
    without = flag_outliers(sci, err, blot, usable, None, pair)
    elsewhere = np.ones(data.shape, bool)
    elsewhere[HALF - 1:HALF + 2, HALF + 2:HALF + 5] = False  # not at the ray nor its sides
    assert np.array_equal(flag_outliers(sci, err, blot, usable, None, pair, sides_at=~pair), without)
    assert np.array_equal(flag_outliers(sci, err, blot, usable, None, pair, sides_at=elsewhere),
                          without)
    # a side not usable (bad DQ) is never flagged: here the one towards the star (1.9 ERR
    # above the blot: its ERR holds the star's Poisson noise), the other three (5.6-9.4) are
    usable[HALF, HALF + 2] = False
    got = flag_outliers(sci, err, blot, usable, None, pair, sides_at=pair)
    assert got[HALF, HALF + 4] and got[HALF - 1, HALF + 3] and got[HALF + 1, HALF + 3]
    assert not got[HALF, HALF + 2]
    with pytest.raises(OutlierError, match="must have one shape"):
        ray_sides(np.zeros((3, 3)), np.ones((3, 4)), np.zeros((3, 3), bool), 4.0)
