"""The point-spread function of a mosaic, as far as aperture photometry needs it.

The profiles describe the optics' PSF by its FWHM (``psf_fwhm_pix_per_um`` x
the filter's pivot, detector pixels); the simulator draws it as a Moffat
profile with beta = 2.5.  What aperture photometry on a mosaic sees is that
profile blurred by boxes (the phase-averaged effect of each pixelisation):

* the detector pixel (side ``s_in``, mosaic pixels; ``s_in`` = input over
  output pixel scale);
* for a drizzled mosaic, the drop (``pixfrac x s_in``) and the output pixel
  averaging it (1);
* the piecewise-constant pixels that exact-overlap aperture photometry sums
  (1).

:class:`MosaicPSF` holds those numbers; :func:`encircled_energy` integrates
the blurred profile numerically (oversampled grid, separable box
convolutions, the Moffat tail beyond the grid added analytically), so the
aperture radius holding a given fraction of the light
(:func:`radius_for_energy`) and the aperture correction to total flux
(1 / encircled energy) come from the model, not from the stars measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import convolve1d

from obsflow.exceptions import CatalogError
from obsflow.profiles import Profile

__all__ = ["MOFFAT_BETA", "MosaicPSF", "encircled_energy", "radius_for_energy"]

MOFFAT_BETA = 2.5
"""Moffat index of the profiles' PSF (what :mod:`obsflow.simulate.sky` renders)."""

_OVERSAMPLE = 20


@dataclass(frozen=True)
class MosaicPSF:
    """The PSF of one mosaic for aperture photometry (lengths in mosaic pixels).

    Attributes
    ----------
    fwhm_pix : float
        FWHM of the optics' Moffat profile, mosaic pixels.
    boxes_pix : tuple of float
        Widths of the box blurs (pixelisations) the image has been through,
        mosaic pixels (see the module docstring).
    beta : float
        Moffat index.
    """

    fwhm_pix: float
    boxes_pix: tuple[float, ...] = (1.0, 1.0)
    beta: float = MOFFAT_BETA

    def __post_init__(self) -> None:
        if not (self.fwhm_pix > 0 and math.isfinite(self.fwhm_pix)):
            raise CatalogError(f"PSF FWHM must be a positive number of pixels, got {self.fwhm_pix}")
        if not self.beta > 1:
            raise CatalogError(f"Moffat beta must be > 1, got {self.beta}")
        if any(not (b >= 0) for b in self.boxes_pix):
            raise CatalogError(f"PSF box widths must be >= 0 pixels, got {self.boxes_pix}")

    @property
    def blurred_fwhm_pix(self) -> float:
        """Approximate FWHM of the blurred PSF, mosaic pixels (widths added in quadrature
        with each box's equivalent Gaussian FWHM, 2.3548 x width / sqrt(12))."""
        extra = sum((2.3548 * b) ** 2 / 12.0 for b in self.boxes_pix)
        return math.sqrt(self.fwhm_pix**2 + extra)

    @classmethod
    def for_image(cls, profile: Profile, instrument: str, filter_name: str,
                  output_scale_arcsec: float | None = None, pixfrac: float = 1.0) -> MosaicPSF:
        """The PSF of an image of ``filter_name`` taken with ``instrument``.

        ``output_scale_arcsec`` is the mosaic's pixel scale; None for a
        single detector image (a ``_cal``), whose only blurs are the
        detector pixel and the photometry's own pixels.  A drizzled mosaic
        (square kernel, ``pixfrac``) adds the drop and the output pixel.
        """
        inst = profile.instrument(instrument)
        fwhm_det = inst.psf_fwhm_pix_per_um * inst.filter(filter_name).pivot_um
        if output_scale_arcsec is None:
            return cls(fwhm_det, (1.0, 1.0))
        s_in = inst.pixel_scale_arcsec / output_scale_arcsec
        return cls(fwhm_det * s_in, (s_in, pixfrac * s_in, 1.0, 1.0))


def _moffat_alpha(fwhm: float, beta: float) -> float:
    return fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))


def _moffat_enclosed(r: np.ndarray | float, fwhm: float, beta: float) -> np.ndarray:
    alpha = _moffat_alpha(fwhm, beta)
    return 1.0 - (1.0 + np.asarray(r, np.float64) ** 2 / alpha**2) ** (1.0 - beta)


def _box_kernel(width: float, step: float) -> np.ndarray:
    """Unit-sum 1-D box of ``width`` sampled at ``step`` (fractional end samples)."""
    half = width / 2.0 / step
    n = int(math.ceil(half - 0.5))
    k = np.ones(2 * n + 1)
    edge = half - (n - 0.5)
    if n > 0:
        k[0] = k[-1] = edge
    else:
        k[0] = 1.0
    return k / k.sum()


def encircled_energy(psf: MosaicPSF, radii: np.ndarray | list[float]) -> np.ndarray:
    """Fraction of the total flux within each radius (mosaic pixels) of the blurred PSF.

    Averaged over where the source falls within a pixel (the boxes are that
    average); accurate to ~1e-4 for radii up to 20 x the FWHM.
    """
    r = np.atleast_1d(np.asarray(radii, np.float64))
    blur = psf.blurred_fwhm_pix
    step = min(psf.fwhm_pix, 1.0) / _OVERSAMPLE
    half = max(float(r.max()) + sum(psf.boxes_pix) + 2.0 * blur, 6.0 * blur)
    n = int(math.ceil(half / step))
    g = (np.arange(-n, n + 1)) * step
    alpha = _moffat_alpha(psf.fwhm_pix, psf.beta)
    # value x cell area: the Moffat surface brightness (unit total flux) at cell centres
    # (in place, the same operations in the same order as the expression
    # (beta - 1) / (pi alpha^2) x (1 + (x^2 + y^2) / alpha^2) ^ -beta x step^2)
    prof = g[:, None] ** 2 + g[None, :] ** 2
    prof /= alpha**2
    prof += 1.0
    prof **= -psf.beta
    prof *= (psf.beta - 1.0) / (math.pi * alpha**2)
    prof *= step**2
    # rescale so the flux within the inscribed circle is the analytic one (the cells near the
    # core are the only ones poorly sampled: this spreads their error evenly)
    rr = np.hypot(g[:, None], g[None, :])
    r0 = 0.9 * half
    prof *= float(_moffat_enclosed(r0, psf.fwhm_pix, psf.beta)) / prof[rr <= r0].sum()
    for width in psf.boxes_pix:
        if width > 0:
            k = _box_kernel(width, step)
            prof = convolve1d(convolve1d(prof, k, axis=0, mode="constant"), k, axis=1,
                              mode="constant")
    # (each grid-sized array dropped as soon as it is used: this runs beside a mosaic's arrays)
    order = np.argsort(rr.ravel())
    values = prof.ravel()[order]
    del prof
    radius = rr.ravel()[order]
    del rr, order
    cum = np.cumsum(values)
    values *= 0.5
    cum -= values  # a cell counts half at its own radius
    del values
    ee = np.interp(r, radius, cum)
    # beyond that circle use the unblurred Moffat (boxes matter little there)
    far = r >= r0
    ee[far] = _moffat_enclosed(r[far], psf.fwhm_pix, psf.beta)
    return ee


def radius_for_energy(psf: MosaicPSF, fractions: np.ndarray | list[float]) -> np.ndarray:
    """Radii (mosaic pixels) holding the given fractions of the flux (each in (0, 1))."""
    f = np.atleast_1d(np.asarray(fractions, np.float64))
    if np.any((f <= 0) | (f >= 1)):
        raise CatalogError(f"encircled-energy fractions must be in (0, 1), got {f.tolist()}")
    alpha = _moffat_alpha(psf.fwhm_pix, psf.beta)
    # the unblurred radius bounds the answer from below; blur adds at most the box widths
    r_hi = alpha * np.sqrt((1.0 - f) ** (1.0 / (1.0 - psf.beta)) - 1.0) + sum(psf.boxes_pix) + 1.0
    grid = np.linspace(0.0, float(r_hi.max()), 2000)
    ee = encircled_energy(psf, grid)
    return np.interp(f, ee, grid)
