"""Pixel solid angles measured on the sky through astropy's WCS, for tests.

Independent of obsflow's two maps (the calibration's from the distortion
polynomials, the simulator's from pixel corners): the Jacobian of pixel ->
unit vector at each pixel centre, by central differences of +/-0.5 pixel
through ``WCS.all_pix2world`` (SIP and projection included).
"""

from __future__ import annotations

import numpy as np
from astropy.wcs import WCS


def solid_angle_sr(wcs: WCS, shape: tuple[int, int]) -> np.ndarray:
    """Each pixel's solid angle, sr, shape (ny, nx)."""
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)

    def unit(xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        ra, dec = (np.radians(c) for c in wcs.all_pix2world(xx, yy, 0))
        return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], -1)

    dx = unit(x + 0.5, y) - unit(x - 0.5, y)
    dy = unit(x, y + 0.5) - unit(x, y - 0.5)
    return np.linalg.norm(np.cross(dx, dy), axis=-1)
