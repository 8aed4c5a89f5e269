"""From telescope pointing to a detector's sky WCS: the one place that decides.

Conventions (documented in docs/formats.md):

* the boresight (V1 axis) points at (``ra_v1``, ``dec_v1``) in degrees, ICRS;
* ``pa_v3`` is the position angle of the V3 axis, degrees east of north;
* a detector centre sits at (``v2``, ``v3``) arcsec in the focal plane; its
  sky offset from the boresight is east = -v2 cos(PA) + v3 sin(PA),
  north = v2 sin(PA) + v3 cos(PA);
* the detector +y axis points at position angle ``pa_v3 + rotation_deg``,
  +x then points west-ish (east-left images), so RA decreases with x;
* subarrays keep the full-frame tangent point: CRPIX is shifted by
  (SUBSTRT - 1);
* a detector's optical distortion (the profile's
  :class:`~obsflow.profiles.Distortion`) is the WCS's SIP polynomials about
  CRPIX (CTYPE ``RA---TAN-SIP``): the simulator places sources through this
  WCS, stage 2 writes it, so both use the same distortion;
  :func:`wcs_header` writes its SIP cards;
* the distortion makes the pixels' solid angles differ:
  :func:`relative_pixel_area` is each pixel's solid angle over the nominal
  ``(scale_arcsec / 206264.8)**2`` (the Jacobian determinant of the SIP map;
  1 without distortion).  Stage 2's photom divides by it, so a calibrated
  pixel holds the true surface brightness (docs/calibration.md, "Pixel area").
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS, Sip

if TYPE_CHECKING:
    from astropy.io import fits

    from obsflow.profiles import Distortion

__all__ = ["detector_wcs", "relative_pixel_area", "wcs_header"]


def detector_wcs(
    ra_v1: float,
    dec_v1: float,
    pa_v3: float,
    detector_offset: tuple[float, float, float],
    scale_arcsec: float,
    frame: tuple[int, int, int, int, int, int],
    distortion: Distortion | None = None,
) -> WCS:
    """Gnomonic WCS of one detector (or subarray) for one pointing.

    Parameters
    ----------
    ra_v1, dec_v1 : float
        Boresight pointing, degrees (ICRS).
    pa_v3 : float
        Position angle of V3, degrees east of north.
    detector_offset : (v2, v3, rotation)
        Detector centre in the focal plane, arcsec, and its extra rotation, degrees.
    scale_arcsec : float
        Pixel scale, arcsec per pixel.
    frame : (full_nx, full_ny, xstart, ystart, nx, ny)
        Full-frame size, 1-based subarray start and subarray size, pixels.
    distortion : Distortion or None
        The detector's distortion polynomials (SIP about the full-frame centre).

    Returns
    -------
    astropy.wcs.WCS
        Celestial WCS with ``pixel_shape = (nx, ny)``.
    """
    v2, v3, rotation = detector_offset
    full_nx, full_ny, xstart, ystart, nx, ny = frame
    pa = np.deg2rad(pa_v3)
    east = -v2 * np.cos(pa) + v3 * np.sin(pa)
    north = v2 * np.sin(pa) + v3 * np.cos(pa)
    boresight = SkyCoord(ra_v1 * u.deg, dec_v1 * u.deg, frame="icrs")
    centre = boresight.spherical_offsets_by(east * u.arcsec, north * u.arcsec)
    theta = np.deg2rad(pa_v3 + rotation)
    s = scale_arcsec / 3600.0
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.crval = [centre.ra.deg, centre.dec.deg]
    w.wcs.crpix = [(full_nx + 1) / 2 - (xstart - 1), (full_ny + 1) / 2 - (ystart - 1)]
    w.wcs.cd = s * np.array([[-np.cos(theta), np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    w.wcs.radesys = "ICRS"
    if distortion is not None and (distortion.a or distortion.b):
        a, b = distortion.sip()
        w.sip = Sip(a, b, None, None, w.wcs.crpix)
        w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    w.pixel_shape = (nx, ny)
    return w


def wcs_header(wcs: WCS) -> fits.Header:
    """The FITS cards of ``wcs``, with its SIP distortion cards when it has them
    (``WCS.to_header()`` drops them unless asked)."""
    return wcs.to_header(relax=wcs.sip is not None)


def relative_pixel_area(distortion: Distortion | None,
                        frame: tuple[int, int, int, int, int, int]) -> np.ndarray | None:
    """Each pixel's solid angle relative to the nominal pixel's, float32 (ny, nx), read-only.

    The Jacobian determinant of the SIP map (u, v) -> (u + A, v + B) at the
    pixel centres, (u, v) from the full-frame centre as in :func:`detector_wcs`
    (the gnomonic projection's own change of solid angle, 1 - 1.5 theta**2 at
    theta radians from the tangent point, is left out: < 3e-6 over these
    detectors).  None when the detector has no distortion (every pixel 1).
    Computed once per (distortion, frame) and kept.

    Parameters
    ----------
    distortion : Distortion or None
        The detector's distortion polynomials (pixels).
    frame : (full_nx, full_ny, xstart, ystart, nx, ny)
        Full-frame size, 1-based subarray start and subarray size, pixels.
    """
    if distortion is None or not (distortion.a or distortion.b):
        return None
    a, b = distortion.sip()
    return _area(a.tobytes(), b.tobytes(), a.shape[0], frame)


@lru_cache(maxsize=16)
def _area(a_bytes: bytes, b_bytes: bytes, size: int,
          frame: tuple[int, int, int, int, int, int]) -> np.ndarray:
    full_nx, full_ny, xstart, ystart, nx, ny = frame
    a = np.frombuffer(a_bytes).reshape(size, size)
    b = np.frombuffer(b_bytes).reshape(size, size)
    u = np.arange(xstart - 1, xstart - 1 + nx) - (full_nx - 1) / 2.0
    v = np.arange(ystart - 1, ystart - 1 + ny) - (full_ny - 1) / 2.0
    powers = np.arange(size)
    uu, vv = u[:, None] ** powers, v[:, None] ** powers  # (nx, size), (ny, size)

    def field(c: np.ndarray) -> np.ndarray:
        """sum c[p, q] u^p v^q on the grid, (ny, nx)."""
        return (vv @ c.T @ uu.T)

    def d_du(c: np.ndarray) -> np.ndarray:
        return np.vstack([c[1:] * powers[1:, None], np.zeros((1, size))])

    def d_dv(c: np.ndarray) -> np.ndarray:
        return np.hstack([c[:, 1:] * powers[None, 1:], np.zeros((size, 1))])

    det = (1 + field(d_du(a))) * (1 + field(d_dv(b))) - field(d_dv(a)) * field(d_du(b))
    out = det.astype(np.float32)
    out.flags.writeable = False
    return out
