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
  :func:`wcs_header` writes its SIP cards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.wcs import WCS, Sip

if TYPE_CHECKING:
    from astropy.io import fits

    from obsflow.profiles import Distortion

__all__ = ["detector_wcs", "wcs_header"]


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
