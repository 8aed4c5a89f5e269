"""Cosmic-ray hits: when, where and how much charge.

Primary hits arrive as a Poisson process at ``rate_per_cm2_s`` over the
detector area; each deposits a lognormal charge, mostly in one pixel with a
little in its four neighbours; a small fraction are "snowballs" spreading
tens of thousands of electrons over a disk.  The result is a table of
*per-pixel deposits* so the truth can say exactly which pixel got how much,
when.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from obsflow.profiles import CosmicRays

__all__ = ["Deposits", "ReadoutTiming", "sample_deposits"]

_NEIGHBOUR_SHARE = 0.04


@dataclass(frozen=True)
class ReadoutTiming:
    """Frame timing of one integration.

    ``nframes`` frames averaged per group, ``groupgap`` frames dropped between
    groups, ``frame_time`` seconds per frame.  Reads are numbered from 1 (the
    first frame read after reset).
    """

    ngroups: int
    nframes: int
    groupgap: int
    frame_time: float

    @property
    def frames(self) -> int:
        """Frames from reset to the last read of the integration."""
        return self.ngroups * (self.nframes + self.groupgap) - self.groupgap

    def group_of_frame(self, frame: np.ndarray) -> np.ndarray:
        """Group (0-based) whose average first contains charge arriving before read ``frame``."""
        period = self.nframes + self.groupgap
        return np.maximum(0, -((self.nframes - frame) // period)).astype(np.int64)

    def last_read(self, group: int) -> int:
        """1-based frame index of the last read of ``group``."""
        return group * (self.nframes + self.groupgap) + self.nframes


@dataclass(frozen=True)
class Deposits:
    """Per-pixel cosmic-ray deposits, all arrays (N,).

    ``hit`` id of the primary event, ``integration``, ``frame`` (1-based read
    before which the charge arrived), ``group`` (first group showing it),
    ``y``, ``x`` (pixel, 0-based in the array simulated), ``charge`` (e-).
    """

    hit: np.ndarray
    integration: np.ndarray
    frame: np.ndarray
    group: np.ndarray
    y: np.ndarray
    x: np.ndarray
    charge: np.ndarray

    def __len__(self) -> int:
        return len(self.hit)


def _snowball(rng: np.random.Generator, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r:r + 1, -r:r + 1]
    inside = dx**2 + dy**2 <= radius**2
    total = rng.uniform(5e4, 3e5)
    weight = np.exp(-(dx[inside] ** 2 + dy[inside] ** 2) / (radius**2))
    return dy[inside], dx[inside], total * weight / weight.sum()


def sample_deposits(cr: CosmicRays, shape: tuple[int, int], nints: int, timing: ReadoutTiming,
                    sensitive: np.ndarray, rng: np.random.Generator) -> Deposits:
    """Draw the deposits of one exposure on an array of ``shape`` (ny, nx).

    Only pixels where ``sensitive`` is True collect charge (reference and dead
    pixels do not); deposits elsewhere are dropped from the result.
    """
    ny, nx = shape
    pix_cm2 = (cr.pixel_pitch_um * 1e-4) ** 2
    t_int = timing.frames * timing.frame_time
    parts: list[tuple[np.ndarray, ...]] = []
    hit0 = 0
    for i in range(nints):
        n = rng.poisson(cr.rate_per_cm2_s * pix_cm2 * ny * nx * t_int)
        frame = rng.integers(1, timing.frames + 1, n)
        y, x = rng.integers(0, ny, n), rng.integers(0, nx, n)
        charge = cr.charge_median_e * 10 ** rng.normal(0, cr.charge_sigma_dex, n)
        snow = rng.uniform(0, 1, n) < cr.snowball_fraction
        ids = np.arange(hit0, hit0 + n)
        hit0 += n
        core = np.where(snow, 0.0, charge * (1 - 4 * _NEIGHBOUR_SHARE))
        hits, ys, xs, qs = [ids], [y], [x], [core]
        for ddy, ddx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            hits.append(ids)
            ys.append(y + ddy)
            xs.append(x + ddx)
            qs.append(np.where(snow, 0.0, charge * _NEIGHBOUR_SHARE))
        for j in np.flatnonzero(snow):
            dy, dx, q = _snowball(rng, rng.uniform(*cr.snowball_radius_px))
            hits.append(np.full(len(q), ids[j]))
            ys.append(y[j] + dy)
            xs.append(x[j] + dx)
            qs.append(q)
        hit_a, y_a, x_a, q_a = (np.concatenate(a) for a in (hits, ys, xs, qs))
        frame_a = frame[hit_a - ids[0]] if n else np.zeros(0, np.int64)
        parts.append((hit_a, np.full(len(hit_a), i), frame_a, y_a, x_a, q_a))
    hit, integ, frame, y, x, q = (np.concatenate([p[k] for p in parts]) for k in range(6))
    ok = (y >= 0) & (y < ny) & (x >= 0) & (x < nx) & (q > 0)
    ok[ok] &= sensitive[y[ok], x[ok]]
    order = np.lexsort((x[ok], y[ok], frame[ok], integ[ok]))
    sel = np.flatnonzero(ok)[order]
    fr = frame[sel].astype(np.int64)
    return Deposits(hit[sel].astype(np.int64), integ[sel].astype(np.int64), fr,
                    timing.group_of_frame(fr), y[sel].astype(np.int64), x[sel].astype(np.int64),
                    q[sel].astype(np.float64))
