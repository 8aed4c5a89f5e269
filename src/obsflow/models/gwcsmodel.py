"""A product's WCS as a gwcs object (the form the JWST tools read from the ASDF extension).

:func:`gwcs_from_fits` turns the celestial FITS WCS obsflow computes
(:func:`obsflow.models.pointing.detector_wcs`, gnomonic, with SIP distortion
polynomials when the detector has a distortion model) into the equivalent
gwcs pipeline of astropy.modeling transforms::

    detector (x, y: 0-based pixels)
      -> shift by -(CRPIX - 1)                       (u, v) px from the reference pixel
      -> SIP polynomials  u + A(u, v), v + B(u, v)   distortion-corrected px (if any)
      -> CD matrix                                   intermediate world coordinates, deg
      -> Pix2Sky_TAN | RotateNative2Celestial(CRVAL) world (ICRS RA, Dec, deg)

so both forms give the same sky positions (to numerical precision): the FITS
headers (with their SIP cards) for FITS-only tools, this object for gwcs.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import numpy as np

from obsflow.exceptions import DataModelError

if TYPE_CHECKING:
    import gwcs
    from astropy.wcs import WCS

__all__ = ["gwcs_from_fits"]


def _sip_polynomial(coeffs: np.ndarray, linear: tuple[int, int]) -> Any:
    """``u`` (linear (1, 0)) or ``v`` ((0, 1)) plus the SIP polynomial ``sum c[p, q] u^p v^q``
    as an astropy Polynomial2D of (u, v)."""
    from astropy.modeling.models import Polynomial2D

    order = coeffs.shape[0] - 1
    terms = {f"c{p}_{q}": float(coeffs[p, q]) for p in range(order + 1)
             for q in range(order + 1 - p) if coeffs[p, q]}
    key = f"c{linear[0]}_{linear[1]}"
    terms[key] = terms.get(key, 0.0) + 1.0
    return Polynomial2D(order, **terms)


def _distortion(wcs: WCS) -> Any:
    """The SIP distortion (u, v) -> (u + A, v + B) with, as its inverse, polynomials one
    order higher fitted (least squares) over the detector (or +-CRPIX when its size is not
    known); the fit's worst residual is well below 1e-3 px for distortions of a few px.

    The inverse depends only on the polynomials, CRPIX and the size, not on the pointing:
    it is fitted once per detector and process (:func:`_inverse_fit`), not per product,
    and the one model is shared by every WCS of that detector (nothing modifies it).
    """
    # a level-1 (4-D) header read with naxis=2 keeps its 4 sizes: the first two are x, y
    nx, ny = (wcs.pixel_shape or (2 * wcs.wcs.crpix[0], 2 * wcs.wcs.crpix[1]))[:2]
    a, b = np.ascontiguousarray(wcs.sip.a, float), np.ascontiguousarray(wcs.sip.b, float)
    return _inverse_fit(a.tobytes(), b.tobytes(), a.shape[0],
                        (float(wcs.wcs.crpix[0]), float(wcs.wcs.crpix[1])), (float(nx), float(ny)))


@functools.lru_cache(maxsize=64)
def _inverse_fit(a: bytes, b: bytes, size: int, crpix: tuple[float, float],
                 shape: tuple[float, float]) -> Any:
    """The SIP model of the coefficient arrays ``a``, ``b`` (``size`` x ``size`` float64
    bytes) with its inverse fitted about ``crpix`` over a detector of ``shape`` (nx, ny)."""
    from astropy.modeling import fitting, models

    ca = np.frombuffer(a, float).reshape(size, size)
    cb = np.frombuffer(b, float).reshape(size, size)
    forward = (models.Mapping((0, 1, 0, 1))
               | _sip_polynomial(ca, (1, 0)) & _sip_polynomial(cb, (0, 1)))
    nx, ny = shape
    u, v = (g.ravel() for g in np.meshgrid(np.linspace(-0.5, nx - 0.5, 41) - crpix[0] + 1,
                                           np.linspace(-0.5, ny - 0.5, 41) - crpix[1] + 1))
    du, dv = forward(u, v)
    scale = float(max(np.abs(du).max(), np.abs(dv).max()))  # fit in [-1, 1]: well conditioned
    order = size + 1
    fitter = fitting.LinearLSQFitter()
    inverse_u = fitter(models.Polynomial2D(order), du / scale, dv / scale, u)
    inverse_v = fitter(models.Polynomial2D(order), du / scale, dv / scale, v)
    forward.inverse = (models.Scale(1 / scale) & models.Scale(1 / scale)
                       | models.Mapping((0, 1, 0, 1)) | inverse_u & inverse_v)
    return forward


def gwcs_from_fits(wcs: WCS) -> gwcs.WCS:
    """The gwcs detector -> world pipeline equal to celestial TAN(-SIP) FITS ``wcs``.

    Raises
    ------
    DataModelError
        ``wcs`` is not a 2-D RA/Dec gnomonic WCS.
    """
    from astropy import coordinates
    from astropy import units as u
    from astropy.modeling import models
    from gwcs import WCS as GWCS
    from gwcs import coordinate_frames as cf

    ctype = [c[:8] for c in wcs.wcs.ctype]
    if wcs.naxis != 2 or ctype != ["RA---TAN", "DEC--TAN"]:
        raise DataModelError(f"gwcs_from_fits: WCS of type {list(wcs.wcs.ctype)}: expected a "
                             "2-D RA---TAN / DEC--TAN WCS")
    crpix = wcs.wcs.crpix
    transform = models.Shift(-(crpix[0] - 1.0)) & models.Shift(-(crpix[1] - 1.0))
    if wcs.sip is not None:
        transform = transform | _distortion(wcs)
    cd = wcs.wcs.cd if wcs.wcs.has_cd() else wcs.wcs.get_pc() * wcs.wcs.cdelt[:, None]
    transform = (transform | models.AffineTransformation2D(matrix=np.array(cd, float))
                 | models.Pix2Sky_TAN()
                 | models.RotateNative2Celestial(float(wcs.wcs.crval[0]),
                                                 float(wcs.wcs.crval[1]), 180.0))
    detector = cf.Frame2D(name="detector", axes_names=("x", "y"), unit=(u.pix, u.pix))
    world = cf.CelestialFrame(reference_frame=coordinates.ICRS(), name="world",
                              unit=(u.deg, u.deg), axes_names=("lon", "lat"))
    result = GWCS([(detector, transform), (world, None)])
    if wcs.pixel_shape is not None:
        nx, ny = wcs.pixel_shape[:2]  # a level-1 header read with naxis=2 keeps 4 sizes
        result.bounding_box = ((-0.5, nx - 0.5), (-0.5, ny - 0.5))
    return result
