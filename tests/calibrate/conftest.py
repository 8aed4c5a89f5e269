"""Synthetic ramp factories for the calibration tests (no files, exact truth)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from obsflow.models.dq import DQ


@dataclass
class SyntheticRamps:
    """Ramps with known truth: rates in DN/s, cosmic rays as (int, group, y, x, DN)."""

    data: np.ndarray
    groupdq: np.ndarray
    rate: np.ndarray
    read_noise: np.ndarray
    gain: np.ndarray
    frame_time: float
    group_time: float
    nframes: int
    groupgap: int
    hits: list[tuple[int, int, int, int, float]] = field(default_factory=list)
    saturation: float = np.inf

    @property
    def readout(self) -> dict[str, float]:
        return {"frame_time": self.frame_time, "group_time": self.group_time,
                "nframes": self.nframes, "groupgap": self.groupgap}


def make_ramps(shape: tuple[int, int, int, int], *, seed: int = 1, rate: float | np.ndarray = 5.0,
               read_noise: float = 5.0, gain: float = 2.0, nframes: int = 1, groupgap: int = 0,
               frame_time: float = 10.0, cr_fraction: float = 0.0,
               cr_dn: tuple[float, float] = (50.0, 2000.0),
               saturation: float = np.inf) -> SyntheticRamps:
    """Frame-by-frame Poisson ramps averaged into groups, with read noise and cosmic rays.

    Cosmic rays land between frames; a hit is reported at the first group whose
    average contains all of its charge only if it lands between groups
    (``groupgap`` frames or the group boundary), which is what the tests use.
    """
    rng = np.random.default_rng(seed)
    nints, ngroups, ny, nx = shape
    rates = np.broadcast_to(np.asarray(rate, np.float64), (ny, nx))
    lam = rates * gain * frame_time
    data = np.empty(shape, np.float32)
    hits: list[tuple[int, int, int, int, float]] = []
    for i in range(nints):
        charge = np.zeros((ny, nx))
        ncr = rng.binomial(ny * nx, cr_fraction)
        cr_y, cr_x = rng.integers(0, ny, ncr), rng.integers(0, nx, ncr)
        cr_g = rng.integers(1, ngroups, ncr) if ngroups > 1 else np.zeros(ncr, int)
        cr_q = np.exp(rng.uniform(np.log(cr_dn[0]), np.log(cr_dn[1]), ncr))
        for g in range(ngroups):
            if g:
                charge += rng.poisson(lam * groupgap) if groupgap else 0.0
                for k in np.flatnonzero(cr_g == g):
                    charge[cr_y[k], cr_x[k]] += cr_q[k] * gain
                    hits.append((i, g, int(cr_y[k]), int(cr_x[k]), float(cr_q[k])))
            acc = np.zeros((ny, nx))
            for _ in range(nframes):
                charge += rng.poisson(lam)
                acc += charge
            data[i, g] = (acc / nframes / gain).astype(np.float32)
    data += rng.normal(0, read_noise / np.sqrt(nframes), shape).astype(np.float32)
    groupdq = np.zeros(shape, np.uint8)
    if np.isfinite(saturation):
        groupdq[data >= saturation] = DQ.SATURATED | DQ.DO_NOT_USE
        # saturation is sticky: once saturated, every later group is too
        groupdq = np.maximum.accumulate(groupdq, axis=1)
    return SyntheticRamps(data, groupdq, rates.astype(np.float32),
                          np.full((ny, nx), read_noise, np.float32),
                          np.full((ny, nx), gain, np.float32), frame_time,
                          frame_time * (nframes + groupgap), nframes, groupgap, hits, saturation)


@pytest.fixture(scope="session")
def clean_ramps() -> SyntheticRamps:
    """512x512 pixels, one integration of 10 groups, a range of rates, no cosmic rays."""
    rate = np.geomspace(0.05, 200.0, 512 * 512).reshape(512, 512)
    return make_ramps((1, 10, 512, 512), seed=11, rate=rate, read_noise=6.0, gain=2.0)


@pytest.fixture(scope="session")
def cr_ramps() -> SyntheticRamps:
    """512x512 pixels, 2 integrations of 10 groups, 1% of pixels hit per integration."""
    return make_ramps((2, 10, 512, 512), seed=12, rate=3.0, read_noise=6.0, gain=2.0,
                      cr_fraction=0.01, cr_dn=(30.0, 5000.0))
