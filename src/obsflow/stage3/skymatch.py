"""Sky matching: one additive sky level per image, so that overlapping images agree.

Model: image ``i`` = scene + ``s_i`` + noise, in surface brightness (SCI
units, MJy/sr).  The scene is the same sky in every image; the ``s_i`` differ
(zodiacal light changes with time, detector offsets, stray light).  A mosaic
of images whose levels differ shows seams and biases the outlier median, so
stage 3 finds the levels before it combines (the JWST ``skymatch`` step).

``match``: for every pair of images that overlap, the difference of their
levels ``d_ij`` is the sigma-clipped median, over the overlap, of ``v_i - v_j``
at the same sky positions (the scene cancels, sources included; what does
not cancel, misaligned star cores or a cosmic ray, is clipped).  The levels
solve ``min sum_ij w_ij (s_i - s_j - d_ij)**2`` (``w_ij`` the number of
overlap pixels used), one free constant per group of images connected by
overlaps, fixed so that the lowest level of each group is 0: relative levels.

``global``: each image's own sigma-clipped median, the lowest of them added
to every image (one level for all).

``global+match`` (the default): the relative levels plus one global level,
the lowest clipped median of the images after their relative levels are
removed.  The level to subtract from image ``i`` is then its sky, so the
darkest overlap ends at 0 with no seam.

Pure functions of arrays and WCSs; recording the levels in the products
(:func:`sky_keywords`) is the caller's.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from astropy.wcs import WCS

from obsflow.calibrate.image import clipped_stats
from obsflow.exceptions import ConfigError
from obsflow.models.dq import NO_SCIENCE, flagged

__all__ = ["METHODS", "SkyImage", "SkyMatch", "SkySource", "match_sky", "pair_difference", "sky_keywords"]

METHODS = ("match", "global", "global+match")



@dataclass(frozen=True)
class SkyImage:
    """One image for sky matching: SCI (ny, nx) surface brightness, its DQ and celestial WCS."""

    sci: np.ndarray
    dq: np.ndarray
    wcs: WCS


@dataclass(frozen=True)
class SkyMatch:
    """Result of :func:`match_sky`.

    Attributes
    ----------
    levels : ndarray (n,)
        The sky level of each image, SCI units: what to subtract.
    relative : ndarray (n,)
        The ``match`` part (0 for the lowest image of each connected group;
        all 0 for ``global``).
    global_level : float
        The ``global`` part (0 for ``match``).
    pairs : list of (i, j, d_ij, n_ij)
        The overlapping pairs used: level difference ``s_i - s_j`` and the
        number of overlap pixels it came from.
    """

    levels: np.ndarray
    relative: np.ndarray
    global_level: float
    pairs: list[tuple[int, int, float, int]]
    method: str


class SkySource(Protocol):
    """What :func:`match_sky` reads of an image: a :class:`SkyImage`, or any object whose
    ``sci`` and ``dq`` give the arrays when asked (e.g. memory-mapped afresh each time, so
    only the pair being compared is mapped)."""

    @property
    def sci(self) -> np.ndarray: ...

    @property
    def dq(self) -> np.ndarray: ...

    @property
    def wcs(self) -> WCS: ...


def _good(sci: np.ndarray, dq: np.ndarray) -> np.ndarray:
    return np.isfinite(sci) & ~flagged(dq, NO_SCIENCE)


def pair_difference(a: SkySource, b: SkySource, step: int = 2, sigma: float = 3.0,
                    min_pixels: int = 200) -> tuple[float, int] | None:
    """Sky difference ``level(a) - level(b)`` over their overlap, and the pixels used.

    Every ``step``-th pixel of ``a`` (in both axes) is mapped through the
    WCSs onto ``b`` (nearest pixel); where both are good the difference is
    taken; the result is its sigma-clipped median.  None if fewer than
    ``min_pixels`` overlap pixels remain.
    """
    a_sci, a_dq, b_sci, b_dq = a.sci, a.dq, b.sci, b.dq  # (each asked once)
    ny, nx = a_sci.shape
    y, x = np.mgrid[0:ny:step, 0:nx:step]
    y, x = y.ravel(), x.ravel()
    keep = _good(a_sci, a_dq)[y, x]
    y, x = y[keep], x[keep]
    if y.size == 0:
        return None
    world = a.wcs.pixel_to_world_values(x.astype(np.float64), y.astype(np.float64))
    with warnings.catch_warnings():  # far outside a distorted (SIP) b, the inversion gives
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)  # NaN: not inside
        xb, yb = b.wcs.all_world2pix(*world, 0, quiet=True)
    xb, yb = np.rint(xb), np.rint(yb)
    inside = (xb >= 0) & (xb < b_sci.shape[1]) & (yb >= 0) & (yb < b_sci.shape[0])
    xb, yb, y, x = xb[inside].astype(np.intp), yb[inside].astype(np.intp), y[inside], x[inside]
    both = _good(b_sci, b_dq)[yb, xb]
    if int(both.sum()) < min_pixels:
        return None
    diff = a_sci[y[both], x[both]].astype(np.float64) - b_sci[yb[both], xb[both]]
    median, _, kept = clipped_stats(diff, sigma)
    return median, kept


def _relative_levels(n: int, pairs: list[tuple[int, int, float, int]]) -> np.ndarray:
    """Least-squares levels from pair differences, lowest of each connected group at 0."""
    group = np.arange(n)
    for i, j, _, _ in pairs:  # union the overlapping images (tiny n: a plain relabel)
        gi, gj = group[i], group[j]
        group[group == gj] = gi
    rows, rhs = [], []
    for i, j, d, count in pairs:
        row = np.zeros(n)
        row[i], row[j] = 1.0, -1.0
        w = np.sqrt(count)
        rows.append(row * w)
        rhs.append(d * w)
    for g in np.unique(group):  # one constraint per group: its levels sum to 0
        rows.append((group == g).astype(np.float64))
        rhs.append(0.0)
    levels = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    for g in np.unique(group):
        members = group == g
        levels[members] -= levels[members].min()
    return levels


def match_sky(images: Sequence[SkySource], method: str = "global+match", step: int = 2,
              sigma: float = 3.0, min_pixels: int = 200) -> SkyMatch:
    """The sky level of each image (module docstring for the methods).

    Parameters
    ----------
    images : sequence of SkyImage (or SkySource)
        The exposures to combine (one filter), SCI in surface brightness.
    method : {"global+match", "match", "global"}
    step : int
        Sample every ``step``-th pixel in each axis for the overlaps (1: all).
    sigma : float
        Clipping of the differences and of the global sky, in standard deviations.
    min_pixels : int
        Overlaps with fewer good pixels do not count as overlaps.

    Raises
    ------
    ConfigError
        Unknown method, or no image.
    """
    if method not in METHODS:
        raise ConfigError(f"sky matching method {method!r}: expected one of {', '.join(METHODS)}")
    if not images:
        raise ConfigError("sky matching needs at least one image")
    n = len(images)
    pairs: list[tuple[int, int, float, int]] = []
    relative = np.zeros(n)
    if method != "global":
        for i in range(n):
            for j in range(i + 1, n):
                found = pair_difference(images[i], images[j], step, sigma, min_pixels)
                if found is not None:
                    pairs.append((i, j, found[0], found[1]))
        relative = _relative_levels(n, pairs)
    global_level = 0.0
    if method != "match":
        skies = []
        for image, rel in zip(images, relative, strict=True):
            sci = image.sci[::step, ::step]
            values = sci[_good(sci, image.dq[::step, ::step])]
            del sci
            if values.size:
                skies.append(clipped_stats(values.astype(np.float64) - rel, sigma)[0])
        global_level = min(skies) if skies else 0.0
    return SkyMatch(relative + global_level, relative, float(global_level), pairs, method)


def sky_keywords(level: float, method: str, subtracted: bool) -> dict[str, tuple[object, str]]:
    """Header keywords recording an image's sky level (the JWST ``meta.background`` ones)."""
    return {"BKGLEVEL": (float(level), "sky level from sky matching, SCI units"),
            "BKGMETH": (method, "sky matching method"),
            "BKGSUB": (bool(subtracted), "sky level subtracted from SCI")}
