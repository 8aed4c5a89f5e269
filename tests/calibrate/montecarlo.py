"""Brute-force frame-by-frame Monte Carlo ramps: the truth for the noise tests.

Independent of obsflow's simulator (which draws group averages from their
moments) and of the code under test: every frame of every group is drawn,
photons as Poisson increments per frame, read noise per frame, the group
value the on-board average of its ``nframes`` frames, ``groupgap`` frames
read and dropped between groups.  Cosmic rays land between two groups (in
the dropped frames or just before a group's first frame), so their whole
charge first appears at a known group.  Vectorised over pixels: one numpy
draw per frame.

Scenes are small images of true rates (e-/s) with the kinds of structure a
detector sees: a smooth sky, independent rates per pixel, undersampled
stars (PSF core about 2 pixels FWHM) on a sky, and hot pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PATTERNS: dict[str, tuple[int, int]] = {
    "RAPID": (1, 0), "BRIGHT1": (1, 1), "BRIGHT2": (2, 0), "SHALLOW2": (2, 3),
    "SHALLOW4": (4, 1), "MEDIUM2": (2, 8), "MEDIUM8": (8, 2), "DEEP2": (2, 18),
    "DEEP8": (8, 12)}
"""NIRCam-like readout patterns: (nframes averaged per group, groupgap frames dropped)."""

FRAME_TIME = 10.737
"""Full-frame frame time, s (NIRCam-like)."""

READ_NOISE_E = 9.2
"""Single-read noise, e- (13 e- CDS)."""

GAIN = 2.0
"""e-/DN."""


@dataclass
class FrameRamps:
    """Group averages (DN) from the frame-by-frame draw, with their truth.

    ``data`` is (1, ngroups, ny, nx) float32; ``rate`` the true count rate
    (DN/s); ``hits`` cosmic rays as (group, y, x, DN) with the group where
    their charge first appears.
    """

    data: np.ndarray
    rate: np.ndarray
    read_noise: np.ndarray
    gain: np.ndarray
    frame_time: float
    group_time: float
    nframes: int
    groupgap: int
    hits: list[tuple[int, int, int, float]]

    @property
    def readout(self) -> dict[str, float]:
        return {"frame_time": self.frame_time, "group_time": self.group_time,
                "nframes": self.nframes, "groupgap": self.groupgap}

    @property
    def groupdq(self) -> np.ndarray:
        return np.zeros(self.data.shape, np.uint8)


def scene(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """True rates, e-/s, of a scene ``kind`` (smooth, random, stars, hot)."""
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    sky = 0.3 * (1.0 + 0.3 * np.sin(yy / ny * 3.0) * np.cos(xx / nx * 2.0))
    if kind == "smooth":
        return sky
    if kind == "random":  # unrelated neighbours: log-uniform 0.05 to 300 e-/s
        return np.exp(rng.uniform(np.log(0.05), np.log(300.0), shape))
    if kind == "stars":  # undersampled point sources: Gaussian cores, sigma 0.85 px (2 px FWHM)
        rate = sky.copy()
        nstar = ny * nx // 40
        cy, cx = rng.uniform(0, ny, nstar), rng.uniform(0, nx, nstar)
        flux = np.exp(rng.uniform(np.log(5.0), np.log(3000.0), nstar))
        for y0, x0, f in zip(cy, cx, flux, strict=True):
            ys, xs = slice(max(int(y0) - 4, 0), int(y0) + 5), slice(max(int(x0) - 4, 0), int(x0) + 5)
            rate[ys, xs] += f / (2 * np.pi * 0.85**2) * np.exp(
                -((yy[ys, xs] - y0) ** 2 + (xx[ys, xs] - x0) ** 2) / (2 * 0.85**2))
        return rate
    if kind == "hot":  # 5% hot and warm pixels, 10 to 1000 times the sky
        rate = sky.copy()
        hot = rng.random(shape) < 0.05
        rate[hot] *= np.exp(rng.uniform(np.log(10.0), np.log(1000.0), hot.sum()))
        return rate
    raise ValueError(f"unknown scene {kind!r}")


def frame_ramps(rate_e: np.ndarray, ngroups: int, pattern: str, *, seed: int,
                hits: list[tuple[int, int, int, float]] | None = None,
                read_noise_e: float = READ_NOISE_E, gain: float = GAIN,
                frame_time: float = FRAME_TIME) -> FrameRamps:
    """Draw one integration frame by frame.

    Parameters
    ----------
    rate_e : ndarray (ny, nx)
        True photon rates, e-/s.
    ngroups : int
        Groups in the integration.
    pattern : str
        Readout pattern, a key of :data:`PATTERNS`.
    seed : int
        Random seed.
    hits : list of (group, y, x, DN), optional
        Cosmic rays: ``DN`` of charge deposited just before the first frame
        of ``group`` (>= 1).
    """
    nframes, groupgap = PATTERNS[pattern]
    rng = np.random.default_rng(seed)
    ny, nx = rate_e.shape
    mean_per_frame = rate_e * frame_time
    charge = np.zeros((ny, nx))
    data = np.empty((1, ngroups, ny, nx), np.float32)
    by_group: dict[int, list[tuple[int, int, float]]] = {}
    for g, y, x, dn in hits or []:
        by_group.setdefault(g, []).append((y, x, dn))
    for g in range(ngroups):
        if g:
            for _ in range(groupgap):  # frames read and dropped
                charge += rng.poisson(mean_per_frame)
        for y, x, dn in by_group.get(g, []):
            charge[y, x] += dn * gain
        acc = np.zeros((ny, nx))
        for _ in range(nframes):
            charge += rng.poisson(mean_per_frame)
            acc += charge + rng.normal(0.0, read_noise_e, (ny, nx))
        data[0, g] = acc / (nframes * gain)
    return FrameRamps(data, (rate_e / gain).astype(np.float32),
                      np.full((ny, nx), read_noise_e / gain, np.float32),
                      np.full((ny, nx), gain, np.float32), frame_time,
                      frame_time * (nframes + groupgap), nframes, groupgap,
                      list(hits or []))
