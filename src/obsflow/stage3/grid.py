"""The output grid of a mosaic: a gnomonic (TAN) WCS and a shape.

Pixel coordinates are 0-based with pixel centres on integers (the numpy /
astropy ``pixel_to_world_values`` convention); FITS ``CRPIX`` is 1-based.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from obsflow.exceptions import ResampleError

__all__ = ["footprint", "output_grid", "pixel_scale_arcsec", "tan_wcs"]


def pixel_scale_arcsec(wcs: WCS) -> float:
    """Mean linear pixel scale of ``wcs`` at its reference point, arcsec (sqrt of the pixel area)."""
    scales = proj_plane_pixel_scales(wcs.celestial) * 3600.0
    return float(np.sqrt(scales[0] * scales[1]))


def tan_wcs(crval: tuple[float, float], crpix: tuple[float, float], scale_arcsec: float,
            rotation_deg: float, shape: tuple[int, int]) -> WCS:
    """A gnomonic WCS, north up and east left rotated by ``rotation_deg`` (east of north).

    ``crval`` (RA, Dec) degrees; ``crpix`` 1-based FITS reference pixel;
    ``scale_arcsec`` arcsec per pixel; ``shape`` (ny, nx).
    """
    theta = np.deg2rad(rotation_deg)
    s = scale_arcsec / 3600.0
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.crval = [float(crval[0]) % 360.0, float(crval[1])]
    w.wcs.crpix = [float(crpix[0]), float(crpix[1])]
    w.wcs.cd = s * np.array([[-np.cos(theta), np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    w.wcs.radesys = "ICRS"
    w.pixel_shape = (int(shape[1]), int(shape[0]))
    return w


def footprint(wcs: WCS, shape: tuple[int, int]) -> np.ndarray:
    """(RA, Dec) degrees of the outer pixel edges of an image, (4 x 16, 2) points around it.

    Sixteen points per side (not only the four corners) so that a distorted
    edge is followed.
    """
    ny, nx = shape
    t = np.linspace(0.0, 1.0, 16, endpoint=False)
    xs = np.concatenate([-0.5 + t * nx, np.full(16, nx - 0.5), nx - 0.5 - t * nx, np.full(16, -0.5)])
    ys = np.concatenate([np.full(16, -0.5), -0.5 + t * ny, np.full(16, ny - 0.5), ny - 0.5 - t * ny])
    ra, dec = wcs.pixel_to_world_values(xs, ys)
    return np.column_stack([ra, dec])


def _mean_direction(radec: np.ndarray) -> tuple[float, float]:
    ra, dec = np.deg2rad(radec[:, 0]), np.deg2rad(radec[:, 1])
    v = np.array([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)]).mean(axis=1)
    v /= np.linalg.norm(v)
    return float(np.rad2deg(np.arctan2(v[1], v[0])) % 360.0), float(np.rad2deg(np.arcsin(v[2])))


def output_grid(wcses: Sequence[WCS], shapes: Sequence[tuple[int, int]], *,
                pixel_scale: float | None = None, rotation: float = 0.0,
                crval: tuple[float, float] | None = None,
                shape: tuple[int, int] | None = None) -> WCS:
    """The TAN grid of a mosaic of the given inputs.

    Parameters
    ----------
    wcses, shapes
        Celestial WCS and (ny, nx) shape of every input.
    pixel_scale
        Output pixel scale, arcsec; default the first input's.
    rotation
        Position angle of the output +y axis, degrees east of north (0 = north up).
    crval
        (RA, Dec) of the tangent point, degrees; default the mean direction of
        the inputs' footprints.
    shape
        (ny, nx) of the output; the tangent point is then at its centre.  By
        default the smallest grid holding every input pixel's whole footprint.

    Returns
    -------
    astropy.wcs.WCS
        With ``pixel_shape = (nx, ny)``; ``wcs.array_shape`` is (ny, nx).
    """
    if len(wcses) == 0 or len(wcses) != len(shapes):
        raise ResampleError(f"output_grid needs one shape per input WCS, got {len(wcses)} WCS "
                            f"and {len(shapes)} shapes")
    if pixel_scale is not None and not pixel_scale > 0:
        raise ResampleError(f"output grid pixel_scale must be > 0 arcsec, got {pixel_scale}")
    scale = pixel_scale_arcsec(wcses[0]) if pixel_scale is None else float(pixel_scale)
    edges = np.concatenate([footprint(w, s) for w, s in zip(wcses, shapes, strict=True)])
    centre = _mean_direction(edges) if crval is None else (float(crval[0]), float(crval[1]))
    if shape is not None:
        ny, nx = (int(shape[0]), int(shape[1]))
        if ny <= 0 or nx <= 0:
            raise ResampleError(f"output grid shape must be positive (ny, nx), got {shape}")
        return tan_wcs(centre, ((nx + 1) / 2.0, (ny + 1) / 2.0), scale, rotation, (ny, nx))
    probe = tan_wcs(centre, (1.0, 1.0), scale, rotation, (1, 1))
    u, v = probe.world_to_pixel_values(edges[:, 0], edges[:, 1])
    if not (np.all(np.isfinite(u)) and np.all(np.isfinite(v))):
        raise ResampleError("output grid: an input footprint is more than 90 degrees from the "
                            f"tangent point {centre}")
    u0, v0 = np.floor(u.min()), np.floor(v.min())
    nx = int(np.ceil(u.max() - u0)) + 1
    ny = int(np.ceil(v.max() - v0)) + 1
    return tan_wcs(centre, (1.0 - u0, 1.0 - v0), scale, rotation, (ny, nx))
