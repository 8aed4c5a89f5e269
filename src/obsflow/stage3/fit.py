"""Fit a linear correction between matched positions, with iterative sigma clipping.

Positions are tangent-plane coordinates (xi, eta) in arcseconds (see
:mod:`obsflow.stage3.tangent`).  A correction maps a source position ``p``
to ``matrix @ p + shift``; rotations and scales are about the plane's
origin (the tangent point).  The modes (tweakreg's names):

``shift``    translation only;
``rshift``   rotation + translation;
``rscale``   rotation + one scale + translation;
``general``  any 2x2 matrix + translation (6 parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from obsflow.exceptions import AlignmentError, UnknownOptionError

__all__ = ["MODES", "LinearFit", "compose", "fit_linear", "identity_fit"]

MODES = ("shift", "rshift", "rscale", "general")
"""Fit geometries, from fewest to most parameters."""

_MIN_POINTS = {"shift": 1, "rshift": 2, "rscale": 2, "general": 3}


@dataclass(frozen=True)
class LinearFit:
    """A fitted correction ``p -> matrix @ p + shift`` and how well it fits.

    Attributes
    ----------
    mode : str
        One of :data:`MODES`.
    matrix : numpy.ndarray
        (2, 2) float64 linear part.
    shift : numpy.ndarray
        (2,) float64 translation, arcsec.
    rms_mas : float
        Root-mean-square 2-D residual of the points kept, milliarcseconds.
    n_matches : int
        Pairs given to the fit.
    used : numpy.ndarray
        (N,) bool, the pairs kept after clipping.
    """

    mode: str
    matrix: np.ndarray
    shift: np.ndarray
    rms_mas: float
    n_matches: int
    used: np.ndarray

    @property
    def n_used(self) -> int:
        """Pairs kept after clipping."""
        return int(self.used.sum())

    @property
    def rotation_arcsec(self) -> float:
        """Rotation angle from +xi (east) towards +eta (north), arcsec (both axes' mean).

        A pointing whose true PA_V3 is larger by r than the header's is
        corrected by a rotation of -r.
        """
        m = self.matrix
        return float(np.rad2deg(np.arctan2(m[1, 0] - m[0, 1], m[0, 0] + m[1, 1])) * 3600.0)

    @property
    def scale(self) -> float:
        """Mean linear scale, sqrt(|det matrix|)."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix))))

    def apply(self, xy: np.ndarray) -> np.ndarray:
        """Corrected positions of ``xy`` (N, 2), arcsec."""
        return np.asarray(xy, np.float64) @ self.matrix.T + self.shift


def identity_fit(mode: str = "shift") -> LinearFit:
    """The correction that changes nothing."""
    return LinearFit(mode, np.eye(2), np.zeros(2), 0.0, 0, np.zeros(0, bool))


def compose(outer: LinearFit, inner: LinearFit) -> LinearFit:
    """``outer`` applied after ``inner`` (statistics are ``outer``'s)."""
    return LinearFit(outer.mode, outer.matrix @ inner.matrix,
                     outer.matrix @ inner.shift + outer.shift, outer.rms_mas, outer.n_matches,
                     outer.used)


def _solve(src: np.ndarray, ref: np.ndarray, w: np.ndarray, mode: str) -> tuple[np.ndarray,
                                                                               np.ndarray]:
    """Weighted least-squares (matrix, shift) of ``ref ~ matrix @ src + shift``."""
    wn = w / w.sum()
    ms, mr = wn @ src, wn @ ref
    if mode == "shift":
        return np.eye(2), mr - ms
    s, r = src - ms, ref - mr
    if mode == "general":
        a = s * np.sqrt(wn)[:, None]
        matrix = np.linalg.lstsq(a, r * np.sqrt(wn)[:, None], rcond=None)[0].T
    else:
        norm = wn @ (s**2).sum(axis=1)
        if norm <= 0:
            raise AlignmentError("alignment: all matched positions coincide; cannot fit "
                                 f"a {mode} correction")
        a = wn @ (s[:, 0] * r[:, 0] + s[:, 1] * r[:, 1]) / norm
        b = wn @ (s[:, 0] * r[:, 1] - s[:, 1] * r[:, 0]) / norm
        if mode == "rshift":
            h = np.hypot(a, b)
            a, b = a / h, b / h
        matrix = np.array([[a, -b], [b, a]])
    return matrix, mr - matrix @ ms


def fit_linear(src: np.ndarray, ref: np.ndarray, mode: str = "rshift",
               weights: np.ndarray | None = None, clip_sigma: float = 3.0,
               max_iterations: int = 3) -> LinearFit:
    """Fit ``ref ~ matrix @ src + shift`` with iterative sigma clipping.

    Parameters
    ----------
    src, ref : numpy.ndarray
        (N, 2) matched positions, arcsec (source and reference).
    mode : str
        One of :data:`MODES`.
    weights : numpy.ndarray, optional
        (N,) positive weights (e.g. 1 / sigma^2); equal when None.
    clip_sigma : float
        After each fit, pairs kept whose 2-D residual is not below
        ``clip_sigma`` times the RMS residual of the pairs kept are dropped
        for good (tweakwcs's rule); 0 or less: no clipping.
    max_iterations : int
        Clipping rounds at most (stops earlier when nothing changes).

    Returns
    -------
    LinearFit

    Raises
    ------
    AlignmentError
        Fewer pairs than the mode needs, or all positions equal.
    UnknownOptionError
        ``mode`` is not one of :data:`MODES`.
    """
    if mode not in MODES:
        raise UnknownOptionError("fit mode", mode, list(MODES))
    src, ref = np.asarray(src, np.float64), np.asarray(ref, np.float64)
    n = src.shape[0]
    w = np.ones(n) if weights is None else np.asarray(weights, np.float64)
    if n < _MIN_POINTS[mode]:
        raise AlignmentError(f"alignment: a {mode} fit needs at least {_MIN_POINTS[mode]} "
                             f"matched stars, got {n}")
    used = np.ones(n, bool)
    matrix, shift = _solve(src, ref, w, mode)
    for _ in range(max(0, max_iterations) if clip_sigma > 0 else 0):
        resid = np.hypot(*(ref - (src @ matrix.T + shift)).T)
        keep = used & (resid < clip_sigma * np.sqrt(np.mean(resid[used] ** 2)))
        if keep.sum() < _MIN_POINTS[mode] or np.array_equal(keep, used):
            break
        used = keep
        matrix, shift = _solve(src[used], ref[used], w[used], mode)
    resid = np.hypot(*(ref - (src @ matrix.T + shift)).T)
    rms_mas = float(np.sqrt(np.mean(resid[used] ** 2)) * 1000.0)
    return LinearFit(mode, matrix, shift, rms_mas, n, used)
