"""The sky: a source catalogue per target and its image through a detector's WCS.

Stars are point sources with a Moffat PSF (beta = 2.5, FWHM from the
filter's pivot wavelength, fixed on the sky: see :func:`render_scene`);
galaxies are Sersic profiles blurred by a Gaussian of the PSF's FWHM; the
zodiacal background is the filter's surface brightness with a gentle
gradient, collected by each pixel in proportion to its true solid angle
(:func:`pixel_solid_angle`: a distorted detector's pixels differ by a few
percent; sources land by their true positions through the same WCS, and a
point source's light is the same whatever the pixels' sizes). Fluxes are AB
magnitudes turned into electrons per second with the filter's zero point
(the AB magnitude giving 1 e-/s). Images are in e-/s per pixel, *before*
the flat field.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from scipy.interpolate import RectBivariateSpline
from scipy.ndimage import gaussian_filter
from scipy.signal import fftconvolve

from obsflow.profiles import Filter, Instrument

__all__ = ["SceneOptions", "background_e_s", "make_catalog", "moffat_stamp", "pixel_solid_angle",
           "render_scene"]

_MOFFAT_BETA = 2.5
_NODES = 4
"""Gauss-Legendre nodes per axis of a pixel integral of a PSF or galaxy profile (4 x 4 points
per pixel).  A smallsat J star (Moffat FWHM 1.375 px) integrated so is within 2e-5 of its exact
light in the catalog's apertures (1.2-2.6 px) at any pixel phase; the 3 x 3 midpoint rule
used before 2026-12-03 put 0.07% (2.6 px) to 0.7% (1.2 px) too much light in them and 1.7% in
the peak pixel (``tests/simulate/test_sky.py``)."""
_ARCSEC_PER_RAD = 206264.80624709636
_AB_JY = 3631.0


@dataclass(frozen=True)
class SceneOptions:
    """What a field holds: uniform densities (per square arcminute), magnitude ranges
    (AB), and optionally a star cluster (Plummer profile) centred on the target."""

    star_density: float = 30.0
    galaxy_density: float = 60.0
    star_mag: tuple[float, float] = (18.0, 27.0)
    galaxy_mag: tuple[float, float] = (20.0, 27.5)
    cluster_stars: int = 0
    cluster_core_arcsec: float = 20.0
    sky_gradient: tuple[float, float] = (0.02, 0.01)
    """Relative change of the background's surface brightness across the frame, along x
    and y ((0, 0): a uniform sky)."""


def background_e_s(filt: Filter, scale_arcsec: float) -> float:
    """Zodiacal background in e-/s per pixel from ``background_mjy_sr``."""
    omega = (scale_arcsec / _ARCSEC_PER_RAD) ** 2
    jy_per_e_s = _AB_JY * 10 ** (-0.4 * filt.zeropoint_ab)
    return filt.background_mjy_sr * 1e6 * omega / jy_per_e_s


def make_catalog(ra: float, dec: float, radius_arcsec: float, filters: list[Filter],
                 rng: np.random.Generator, options: SceneOptions | None = None) -> Table:
    """Stars and galaxies uniformly spread within ``radius_arcsec`` of (ra, dec).

    Columns: ``id``, ``kind`` (star|galaxy), ``ra``, ``dec`` (deg), ``mag_<F>``
    (AB) per filter, and for galaxies ``r_eff_arcsec``, ``sersic_n``,
    ``axis_ratio``, ``theta_deg``.
    """
    opts = options or SceneOptions()
    area = np.pi * (radius_arcsec / 60.0) ** 2
    nstar = rng.poisson(opts.star_density * area)
    ngal = rng.poisson(opts.galaxy_density * area)
    r = radius_arcsec * np.sqrt(rng.uniform(0, 1, nstar + ngal))
    if opts.cluster_stars:  # Plummer radii, cut at the field edge
        u = rng.uniform(0, 1, opts.cluster_stars)
        rc = opts.cluster_core_arcsec / np.sqrt(np.maximum(u, 1e-12) ** (-2 / 3) - 1)
        rc = rc[rc < radius_arcsec]
        nstar += rc.size
        r = np.concatenate([r[:nstar - rc.size], rc, r[nstar - rc.size:]])
    n = nstar + ngal
    phi = rng.uniform(0, 2 * np.pi, n)
    dec_s = dec + r * np.sin(phi) / 3600.0
    ra_s = ra + r * np.cos(phi) / 3600.0 / np.cos(np.deg2rad(dec))
    kind = np.array(["star"] * nstar + ["galaxy"] * ngal)
    # power-law number counts: N(<m) ~ 10^(0.3 m)
    lo = np.where(kind == "star", opts.star_mag[0], opts.galaxy_mag[0])
    hi = np.where(kind == "star", opts.star_mag[1], opts.galaxy_mag[1])
    u = rng.uniform(0, 1, n)
    mag = np.log10(10 ** (0.3 * lo) + u * (10 ** (0.3 * hi) - 10 ** (0.3 * lo))) / 0.3
    colour = rng.normal(0.0, 0.3, n)
    table = Table({"id": np.arange(1, n + 1), "kind": kind, "ra": ra_s, "dec": dec_s})
    pivot0 = filters[0].pivot_um
    for f in filters:
        table[f"mag_{f.name}"] = mag + colour * np.log10(f.pivot_um / pivot0) * 2.5
    gal = kind == "galaxy"
    table["r_eff_arcsec"] = np.where(gal, 10 ** rng.normal(-0.6, 0.25, n), 0.0)
    table["sersic_n"] = np.where(gal, rng.uniform(0.8, 4.0, n), 0.0)
    table["axis_ratio"] = np.where(gal, rng.uniform(0.3, 1.0, n), 1.0)
    table["theta_deg"] = np.where(gal, rng.uniform(0, 180, n), 0.0)
    return table


def _pixel_rule(pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel sample positions of ``pixels`` consecutive pixels (px from the first pixel's
    centre, ``pixels * _NODES`` of them) and their weights (each pixel's sum to 1): the
    Gauss-Legendre rule of :data:`_NODES` nodes in every pixel."""
    nodes, weights = np.polynomial.legendre.leggauss(_NODES)
    grid = (np.arange(pixels)[:, None] + 0.5 * nodes[None, :]).ravel()
    return grid, np.tile(0.5 * weights, pixels)


def _pixel_sums(samples: np.ndarray, ny: int, nx: int) -> np.ndarray:
    """Sum each pixel's ``_NODES x _NODES`` weighted samples: (..., ny * _NODES, nx * _NODES)
    -> (..., ny, nx)."""
    lead = samples.shape[:-2]
    return samples.reshape(*lead, ny, _NODES, nx, _NODES).sum(axis=(-3, -1))


def moffat_stamp(dx: float, dy: float, half: int, fwhm: float) -> np.ndarray:
    """Pixel-integrated unit-flux Moffat on a (2*half+1)^2 stamp, centre offset (dx, dy) px.

    Each pixel holds the Moffat's integral over it (:data:`_NODES`); the light beyond the
    stamp is left out, not spread over it (the stamp sums to the square's share of the
    light; before 2026-12-03 the stamp was scaled to the share within the circle of radius
    ``half + 0.5``, 0.08% too little in every pixel at ``half`` = 8 and FWHM 1.4 px).
    """
    size = 2 * half + 1
    grid, weight = _pixel_rule(size)
    grid -= half
    yy, xx = np.meshgrid(grid - dy, grid - dx, indexing="ij")
    prof = _moffat_density(xx, yy, fwhm) * weight[:, None] * weight[None, :]
    return _pixel_sums(prof, size, size)


def _sersic_stamp(dx: float, dy: float, half: int, shape: tuple[float, float, float, float],
                  blur: float) -> np.ndarray:
    """Unit-flux Sersic profile on a stamp, blurred by a Gaussian sigma ``blur`` px.

    ``shape`` is (effective radius px, Sersic index, axis ratio, position angle rad).
    """
    r_eff, n, q, theta = shape
    b_n = 2 * n - 1 / 3 + 4 / (405 * n)
    size = 2 * half + 1
    grid, weight = _pixel_rule(size)
    grid -= half
    yy, xx = np.meshgrid(grid - dy, grid - dx, indexing="ij")
    c, s = np.cos(theta), np.sin(theta)
    xr, yr = xx * c + yy * s, -xx * s + yy * c
    rr = np.sqrt(xr**2 + (yr / q) ** 2)
    prof = np.exp(-b_n * ((rr / r_eff) ** (1 / n) - 1)) * weight[:, None] * weight[None, :]
    stamp = _pixel_sums(prof, size, size)
    stamp = gaussian_filter(stamp, blur, mode="constant")
    return stamp / stamp.sum()


def _add_stamp(image: np.ndarray, stamp: np.ndarray, x0: int, y0: int) -> None:
    """Add ``stamp`` centred on pixel (x0, y0) into ``image`` in place, clipped at the edges."""
    half = stamp.shape[0] // 2
    ny, nx = image.shape
    ya, yb = max(0, y0 - half), min(ny, y0 + half + 1)
    xa, xb = max(0, x0 - half), min(nx, x0 + half + 1)
    if ya >= yb or xa >= xb:
        return
    image[ya:yb, xa:xb] += stamp[ya - (y0 - half):yb - (y0 - half),
                                 xa - (x0 - half):xb - (x0 - half)]


_FAINT_E_S = 300.0
"""Point sources fainter than this (e-/s) are rendered together (see :func:`_faint_points`)."""

_CORE_R1, _CORE_TAPER = 2.5, 2.0
"""The taper between a faint source's exact core and its convolved wings starts at
_CORE_R1 x FWHM (at least 1.5 px) and ends _CORE_TAPER px further out.  The wings' bilinear
deposit blurs them by up to 0.5 px, which moves some of their light inwards: with the taper
from 1.2 FWHM (before 2026-12-03) a smallsat J star (FWHM 1.375 px) had 0.07% too much light
in the catalog's 90% aperture (2.6 px) and 0.14% in its 70% one; from 2.5 FWHM, < 2e-5."""

_FWHM_STEP = 0.002
"""Faint sources are rendered in groups whose PSF sizes differ by this (relative) step: a
source's FWHM is within 0.1% of its own, its light in a 90% aperture within 0.03%."""

_CHUNK_SAMPLES = 3_000_000
"""Sub-pixel samples of the faint sources' cores computed at once (float64 arrays of this
size, a few of them: ~24 MB each)."""

_WING_HALF = 16
"""Half size (px) of the wing kernel: beyond it a faint source's PSF is below ~1e-3 e-/s."""


def _moffat_density(dx: np.ndarray, dy: np.ndarray, fwhm: float) -> np.ndarray:
    """Unit-flux Moffat surface density (per px^2) at offsets (dx, dy) px from its centre."""
    alpha = fwhm / (2.0 * np.sqrt(2 ** (1 / _MOFFAT_BETA) - 1))
    return (_MOFFAT_BETA - 1) / (np.pi * alpha**2) * (1 + (dx**2 + dy**2) / alpha**2) ** (-_MOFFAT_BETA)


def _taper(r: np.ndarray, r1: float) -> np.ndarray:
    """1 inside ``r1``, 0 beyond ``r1 + _CORE_TAPER``, a cosine-squared step between (smooth)."""
    t = np.clip((r - r1) / _CORE_TAPER, 0.0, 1.0)
    return np.cos(0.5 * np.pi * t) ** 2


def _faint_points(image: np.ndarray, x: np.ndarray, y: np.ndarray, flux: np.ndarray,
                  fwhm: float) -> None:
    """Add faint point sources to ``image`` in place, each at its exact sub-pixel position.

    The PSF is split smoothly (:func:`_taper`) into a core, integrated over
    the pixels around each source's true position (integrated like
    :func:`moffat_stamp`, all sources of a chunk at once), and wings, added for
    all sources together by one convolution of their bilinear deposit.  The
    deposit blurs by ~0.4 px, which only the smooth, faint wings see: the core
    (where the light and the centroid are) is exact.
    """
    ny, nx = image.shape
    r1 = max(1.5, _CORE_R1 * fwhm)
    # wings: K (1 - taper), centred on a pixel, pixel-integrated
    size = 2 * _WING_HALF + 1
    grid, weight = _pixel_rule(size)
    grid -= _WING_HALF
    wy, wx = np.meshgrid(grid, grid, indexing="ij")
    wing = (_moffat_density(wx, wy, fwhm) * (1 - _taper(np.hypot(wx, wy), r1))
            * weight[:, None] * weight[None, :])
    wing = _pixel_sums(wing, size, size)
    pad = _WING_HALF
    points = np.zeros((ny + 2 * pad, nx + 2 * pad))
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    for ddy, ddx, w in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)),
                        (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        yy, xx = y0 + ddy + pad, x0 + ddx + pad
        ok = (yy >= 0) & (yy < ny + 2 * pad) & (xx >= 0) & (xx < nx + 2 * pad)
        np.add.at(points, (yy[ok], xx[ok]), (flux * w)[ok])
    image += fftconvolve(points, wing, mode="same")[pad:pad + ny, pad:pad + nx]
    # cores: K taper around each true position, on the pixels of a (2 half + 1)^2 box
    half = int(np.ceil(r1 + _CORE_TAPER))
    offsets = np.arange(-half, half + 1)
    box = offsets.size
    chunk = max(1, _CHUNK_SAMPLES // (box * _NODES) ** 2)
    fine, weight = _pixel_rule(box)  # sub-pixel nodes relative to a pixel
    fine -= half
    cell = weight[None, :, None] * weight[None, None, :]
    for a in range(0, x.size, chunk):
        cx, cy = x[a:a + chunk], y[a:a + chunk]
        px, py = np.floor(cx + 0.5).astype(np.int64), np.floor(cy + 0.5).astype(np.int64)
        dx = fine[None, None, :] - (cx - px)[:, None, None]
        dy = fine[None, :, None] - (cy - py)[:, None, None]
        core = _moffat_density(dx, dy, fwhm) * _taper(np.hypot(dx, dy), r1) * cell
        core = _pixel_sums(core, box, box)
        core *= flux[a:a + chunk, None, None]
        iy = py[:, None, None] + offsets[None, :, None]
        ix = px[:, None, None] + offsets[None, None, :]
        iy, ix = np.broadcast_to(iy, core.shape), np.broadcast_to(ix, core.shape)
        ok = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
        image += np.bincount((iy[ok] * nx + ix[ok]), weights=core[ok],
                             minlength=ny * nx).reshape(ny, nx)


def pixel_solid_angle(wcs: WCS, shape: tuple[int, int]) -> np.ndarray:
    """Each pixel's solid angle over the nominal ``|det CD|``, float64 (ny, nx), read-only.

    The truth the simulator collects the sky with, measured on the sky rather
    than from the distortion polynomials: the pixel corners through astropy's
    full WCS (SIP and gnomonic projection), each pixel the quadrilateral
    between them (half the cross product of its diagonals, unit vectors; exact
    to ~1e-9 for arcsecond pixels), on a grid of pixels (:data:`_AREA_STEP`)
    interpolated to every pixel.  Kept per (CRPIX, ``|det CD|``, SIP,
    shape): solid angles do not change with CRVAL or a rotation of CD.
    """
    if wcs.sip is None:
        return np.ones(shape)
    key = (tuple(wcs.wcs.crpix), float(abs(np.linalg.det(wcs.pixel_scale_matrix))),
           np.asarray(wcs.sip.a).tobytes(), np.asarray(wcs.sip.b).tobytes(), shape)
    if key not in _SOLID_ANGLES:
        if len(_SOLID_ANGLES) >= 16:
            _SOLID_ANGLES.clear()
        _SOLID_ANGLES[key] = _solid_angle(wcs, shape)
    return _SOLID_ANGLES[key]


_SOLID_ANGLES: dict[tuple[object, ...], np.ndarray] = {}


_AREA_STEP = 16
"""Solid angles are measured on every 16th pixel (and the last) of each axis (at least 5
per axis) and interpolated by a bicubic spline: the distortion's are polynomials of low
degree (the spline's worst error, < 1e-7, is tested)."""


def _solid_angle(wcs: WCS, shape: tuple[int, int]) -> np.ndarray:
    ny, nx = shape
    xs, ys = (np.unique(np.r_[np.arange(0, n, max(1, min(_AREA_STEP, (n - 1) // 4))), n - 1]
                        ).astype(np.float64) for n in (nx, ny))
    cx, cy = np.meshgrid(xs, ys)
    corners = [(cx + dx, cy + dy) for dx, dy in ((-0.5, -0.5), (0.5, -0.5), (0.5, 0.5),
                                                  (-0.5, 0.5))]
    p = []
    for x, y in corners:
        ra, dec = (np.radians(c) for c in wcs.all_pix2world(x, y, 0))
        p.append(np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)],
                          axis=-1))
    omega = 0.5 * np.linalg.norm(np.cross(p[2] - p[0], p[3] - p[1]), axis=-1)
    sampled = omega / (abs(np.linalg.det(wcs.pixel_scale_matrix)) * (np.pi / 180.0) ** 2)
    k = min(3, xs.size - 1, ys.size - 1)
    out = RectBivariateSpline(ys, xs, sampled, kx=k, ky=k)(np.arange(ny), np.arange(nx))
    out.flags.writeable = False
    return out


def render_scene(catalog: Table, wcs: WCS, shape: tuple[int, int], filt: Filter,
                 instrument: Instrument, sky_gradient: tuple[float, float] = (0.02, 0.01)
                 ) -> np.ndarray:
    """Image of ``catalog`` plus background in e-/s per pixel, float32, shape (ny, nx).

    The background is the filter's surface brightness times ``1 + gx (x / nx -
    0.5) + gy (y / ny - 0.5)`` (``sky_gradient`` = (gx, gy)) over each pixel's
    true solid angle (:func:`pixel_solid_angle`).  Bright stars and resolved
    galaxies get their own pixel-integrated stamps; faint stars and unresolved
    galaxies are deposited together and convolved once (per :data:`_FWHM_STEP`
    of PSF size).  The PSF's FWHM and the galaxies' radii are fixed on the sky
    (the profile's FWHM is in nominal pixels): a source in pixels of solid angle
    ``A`` is ``1 / sqrt(A)`` times narrower in pixels, so that drizzled onto a
    mosaic's undistorted grid every star has the same PSF, the one the source
    catalog's aperture correction models.
    """
    ny, nx = shape
    scale = instrument.pixel_scale_arcsec
    fwhm = instrument.psf_fwhm_pix_per_um * filt.pivot_um
    yy, xx = np.mgrid[0:ny, 0:nx]
    bkg = background_e_s(filt, scale)
    gx, gy = sky_gradient
    area = pixel_solid_angle(wcs, shape)
    image = bkg * (1 + gx * (xx / nx - 0.5) + gy * (yy / ny - 0.5)) * area
    x, y = wcs.world_to_pixel_values(np.asarray(catalog["ra"]), np.asarray(catalog["dec"]))
    flux = 10 ** (-0.4 * (np.asarray(catalog[f"mag_{filt.name}"]) - filt.zeropoint_ab))
    margin = 40
    inside = (x > -margin) & (x < nx + margin) & (y > -margin) & (y < ny + margin)
    star = np.asarray(catalog["kind"]) == "star"
    # sizes are fixed on the sky: in a pixel of solid angle A (nominal 1) they span 1/sqrt(A)
    # of their nominal size in pixels (the pixel nearest the source, the frame's edge beyond it)
    shrink = 1.0 / np.sqrt(area[np.clip(np.round(y), 0, ny - 1).astype(np.int64),
                                np.clip(np.round(x), 0, nx - 1).astype(np.int64)])
    r_eff = np.maximum(0.5, np.asarray(catalog["r_eff_arcsec"]) / scale * shrink)
    point = np.where(star, flux < _FAINT_E_S, r_eff < 1.0)
    fast = np.flatnonzero(inside & point)
    # faint sources share their wings' convolution: rendered in groups of one FWHM each
    group = np.round(np.log(shrink[fast]) / _FWHM_STEP)
    for g in np.unique(group):
        sel = fast[group == g]
        _faint_points(image, x[sel], y[sel], flux[sel], fwhm * float(np.exp(g * _FWHM_STEP)))
    for i in np.flatnonzero(inside & ~point):
        x0, y0 = int(np.floor(x[i] + 0.5)), int(np.floor(y[i] + 0.5))
        dx, dy = x[i] - x0, y[i] - y0
        if star[i]:
            half = int(min(40, max(8, 4 * fwhm * np.sqrt(flux[i] / 100.0))))
            stamp = moffat_stamp(dx, dy, half, fwhm * float(shrink[i]))
        else:
            half = int(min(60, max(8, 5 * r_eff[i])))
            galaxy = (float(r_eff[i]), float(catalog["sersic_n"][i]),
                      float(catalog["axis_ratio"][i]), float(np.deg2rad(catalog["theta_deg"][i])))
            stamp = _sersic_stamp(dx, dy, half, galaxy, fwhm * float(shrink[i]) / 2.3548)
        _add_stamp(image, flux[i] * stamp, x0, y0)
    return image.astype(np.float32)
