"""Alignment (tweakreg): correct the WCS of calibrated exposures from their stars.

Steps, for a group of ``_cal`` products (several exposures of one field,
each exposure one or more detectors):

1. detect isolated stars in every ``_cal`` (:func:`obsflow.stage3.detect.detect_stars`)
   and put them on one tangent plane through their header WCS;
2. relative: the exposure with the most stars is the reference; every other
   exposure is matched to the reference catalog (offset search, then mutual
   nearest neighbours, :mod:`obsflow.stage3.match`), fitted
   (:func:`obsflow.stage3.fit.fit_linear`, clipping) and corrected; its
   unmatched stars then join the reference catalog (so mosaics whose tiles
   do not all overlap the first still chain);
3. absolute: the stars of all exposures, corrected, are matched to the
   absolute astrometric catalog (the ASTROCAT reference file) and one more
   correction is fitted for the whole group (keeping the relative alignment);
4. each exposure's total correction (relative then absolute; one per
   exposure, shared by its detectors) is written into each detector's WCS
   as a new CRVAL and CD matrix (:func:`corrected_wcs`).

Too few matches at any step raise :class:`~obsflow.exceptions.AlignmentError`
naming the exposure and the counts: a group is never silently misaligned.

What is returned is the corrections and corrected WCSs (:class:`Alignment`)
and, for a product, a corrected in-memory copy (:func:`aligned_cal`) with
the ``ALN_*`` keywords and a ``tweakreg`` step in its provenance; writing
it as a new product version is the association job's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales
from numpy.polynomial.polynomial import polyval2d

from obsflow.exceptions import AlignmentError
from obsflow.models.level2 import CalImage
from obsflow.models.metadata import ExposureMeta
from obsflow.models.provenance import RefFileUse, StepRecord
from obsflow.models.reffiles import AstrometricCatalog
from obsflow.profiles import Profile
from obsflow.stage3.detect import detect_stars
from obsflow.stage3.fit import LinearFit, compose, fit_linear, identity_fit
from obsflow.stage3.match import find_offset, match_nearest
from obsflow.stage3.tangent import TangentPlane

__all__ = ["AlignOptions", "Alignment", "DetectorStars", "ExposureAlignment", "ExposureStars",
           "align_catalogs", "align_products", "aligned_cal", "alignment_keywords",
           "corrected_wcs", "exposure_key"]


@dataclass(frozen=True)
class AlignOptions:
    """Parameters of the alignment step (recorded in the provenance).

    Attributes
    ----------
    fit_mode, abs_fit_mode : str
        Relative and absolute fit geometry (:data:`obsflow.stage3.fit.MODES`).
    min_matches, abs_min_matches : int
        Fewest matched stars accepted per exposure (relative) and for the
        group (absolute); fewer raise AlignmentError.
    search_radius_pix : float
        Largest offset searched, pixels.
    tolerance_pix : float
        Match radius after the offset search, pixels.
    clip_sigma, clip_iterations : float, int
        Sigma clipping of the fits.
    threshold_sigma : float
        Star detection threshold, background sigmas.
    max_sources : int
        Brightest stars kept per detector.
    absolute : bool
        Align the group to the absolute catalog (needs one).
    """

    fit_mode: str = "rshift"
    abs_fit_mode: str = "rshift"
    min_matches: int = 6
    abs_min_matches: int = 6
    search_radius_pix: float = 10.0
    tolerance_pix: float = 1.0
    clip_sigma: float = 3.0
    clip_iterations: int = 3
    threshold_sigma: float = 10.0
    max_sources: int = 2000
    absolute: bool = True


@dataclass(frozen=True)
class DetectorStars:
    """Stars of one detector product: its name, header WCS and 0-based pixel centroids."""

    name: str
    wcs: WCS
    x: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class ExposureStars:
    """The detectors of one exposure (they share one correction)."""

    key: str
    detectors: tuple[DetectorStars, ...]

    def plane_positions(self, plane: TangentPlane) -> np.ndarray:
        """(N, 2) arcsec positions of all the exposure's stars on ``plane``."""
        parts = [plane.project(*d.wcs.pixel_to_world_values(d.x, d.y)) for d in self.detectors]
        return np.concatenate(parts) if parts else np.zeros((0, 2))


@dataclass(frozen=True)
class ExposureAlignment:
    """One exposure's result.

    ``correction`` maps header positions to aligned ones on the plane (the
    relative fit, then the absolute one); ``relative`` is None for the
    reference exposure; ``n_stars`` counts the stars detected.
    """

    key: str
    correction: LinearFit
    relative: LinearFit | None
    n_stars: int


@dataclass(frozen=True)
class Alignment:
    """The result of :func:`align_catalogs`: the plane, every exposure's correction,
    the absolute fit (None when not done) and the absolute catalog's file (when known)."""

    plane: TangentPlane
    exposures: dict[str, ExposureAlignment]
    absolute: LinearFit | None
    catalog: RefFileUse | None = None
    options: AlignOptions = field(default_factory=AlignOptions)

    def wcs_for(self, key: str, wcs: WCS) -> WCS:
        """The corrected copy of ``wcs`` (a detector of exposure ``key``)."""
        return corrected_wcs(wcs, self.plane, self.exposures[key].correction)


def exposure_key(meta: ExposureMeta) -> str:
    """``<program><observation><visit>_<exposure>``: what the detectors of one exposure share."""
    return f"{meta.program}{meta.observation:03d}{meta.visit:03d}_{meta.exposure:05d}"


def _plane_for(exposures: Sequence[ExposureStars]) -> TangentPlane:
    """Tangent plane at the mean direction of all detector centres."""
    vectors = []
    for e in exposures:
        for d in e.detectors:
            nx, ny = d.wcs.pixel_shape or (1, 1)
            ra, dec = np.deg2rad(d.wcs.pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2))
            vectors.append([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])
    v = np.mean(vectors, axis=0)
    return TangentPlane(float(np.rad2deg(np.arctan2(v[1], v[0])) % 360.0),
                        float(np.rad2deg(np.arctan2(v[2], np.hypot(v[0], v[1])))))


def _match_fit(src: np.ndarray, ref: np.ndarray, mode: str, minimum: int, what: str,
               scale: float, opts: AlignOptions) -> tuple[LinearFit, np.ndarray, np.ndarray]:
    """Offset search, match, fit, re-match with the fit, refit; (fit, i_src, i_ref)."""
    tol = opts.tolerance_pix * scale

    def fail(n: int) -> AlignmentError:
        return AlignmentError(f"alignment: {what}: {n} matched stars ({src.shape[0]} detected, "
                              f"{ref.shape[0]} in the reference); need at least {minimum}")

    offset, _ = find_offset(src, ref, opts.search_radius_pix * scale, tol)
    i, j = match_nearest(src + offset, ref, tol)
    if i.size < minimum:
        raise fail(int(i.size))
    fit = fit_linear(src[i], ref[j], mode, clip_sigma=opts.clip_sigma,
                     max_iterations=opts.clip_iterations)
    i, j = match_nearest(fit.apply(src), ref, tol)
    if i.size < minimum:
        raise fail(int(i.size))
    fit = fit_linear(src[i], ref[j], mode, clip_sigma=opts.clip_sigma,
                     max_iterations=opts.clip_iterations)
    if fit.n_used < minimum:
        raise fail(fit.n_used)
    return fit, i, j


def align_catalogs(exposures: Sequence[ExposureStars], catalog: AstrometricCatalog | None,
                   options: AlignOptions | None = None,
                   catalog_file: RefFileUse | None = None) -> Alignment:
    """Align exposures from their star lists (steps 2-3 of the module docstring).

    Parameters
    ----------
    exposures : sequence of ExposureStars
        Stars of each exposure's detectors, with their header WCSs.
    catalog : AstrometricCatalog or None
        Absolute reference; required when ``options.absolute``.
    options : AlignOptions, optional
    catalog_file : RefFileUse, optional
        The ASTROCAT reference file ``catalog`` came from (recorded in the
        provenance of the aligned products).

    Returns
    -------
    Alignment

    Raises
    ------
    AlignmentError
        No exposure, no catalog when one is needed, or too few matches.
    """
    opts = options or AlignOptions()
    if not exposures:
        raise AlignmentError("alignment: no exposure to align")
    if opts.absolute and catalog is None:
        raise AlignmentError("alignment: absolute alignment needs an astrometric catalog "
                             "(ASTROCAT reference file); none given")
    plane = _plane_for(exposures)
    scale = float(np.mean([proj_plane_pixel_scales(d.wcs.celestial).mean() * 3600.0
                           for e in exposures for d in e.detectors]))
    xy = {e.key: e.plane_positions(plane) for e in exposures}
    order = sorted(exposures, key=lambda e: -xy[e.key].shape[0])
    ref_key = order[0].key
    refcat = xy[ref_key]
    fits: dict[str, tuple[LinearFit, LinearFit | None]] = {
        ref_key: (identity_fit(opts.fit_mode), None)}
    for e in order[1:]:
        fit, i, _ = _match_fit(xy[e.key], refcat, opts.fit_mode, opts.min_matches,
                               f"exposure {e.key} against {ref_key}", scale, opts)
        fits[e.key] = (fit, fit)
        unmatched = np.ones(xy[e.key].shape[0], bool)
        unmatched[i] = False
        refcat = np.concatenate([refcat, fit.apply(xy[e.key][unmatched])])
    absolute = None
    if opts.absolute:
        assert catalog is not None
        stars = np.concatenate([fits[k][0].apply(xy[k]) for k in xy])
        ref = _catalog_near(catalog, plane, stars, opts.search_radius_pix * scale)
        absolute, _, _ = _match_fit(stars, ref, opts.abs_fit_mode, opts.abs_min_matches,
                                    f"{len(exposures)} exposure(s) against the astrometric "
                                    f"catalog {catalog_file.name if catalog_file else ''}".rstrip(), scale, opts)
    result = {}
    for e in exposures:
        rel_total, rel = fits[e.key]
        total = rel_total if absolute is None else compose(absolute, rel_total)
        result[e.key] = ExposureAlignment(e.key, total, rel, int(xy[e.key].shape[0]))
    return Alignment(plane, result, absolute, catalog_file if opts.absolute else None, opts)


def _catalog_near(catalog: AstrometricCatalog, plane: TangentPlane, stars: np.ndarray,
                  margin: float) -> np.ndarray:
    """Plane positions (arcsec) of the catalog stars within ``margin`` of the box of ``stars``."""
    if stars.shape[0] == 0:
        return np.zeros((0, 2))
    centre = plane.deproject(stars.mean(axis=0)[None, :])
    reach = np.hypot(*(stars - stars.mean(axis=0)).T).max() + margin
    ra, dec = np.deg2rad(catalog.ra), np.deg2rad(catalog.dec)
    ra0, dec0 = np.deg2rad(centre[0][0]), np.deg2rad(centre[1][0])
    cos_sep = np.sin(dec) * np.sin(dec0) + np.cos(dec) * np.cos(dec0) * np.cos(ra - ra0)
    near = cos_sep > np.cos(np.deg2rad(2 * reach / 3600.0))
    xy = plane.project(catalog.ra[near], catalog.dec[near])
    lo, hi = stars.min(axis=0) - margin, stars.max(axis=0) + margin
    return xy[np.all((xy >= lo) & (xy <= hi), axis=1)]


def corrected_wcs(wcs: WCS, plane: TangentPlane, correction: LinearFit) -> WCS:
    """``wcs`` with ``correction`` (on ``plane``) folded into its CRVAL and CD/PC matrix.

    CRPIX and the SIP distortion (if any) stay; the new CRVAL is the corrected
    sky position of CRPIX and the new matrix is fitted (least squares) to the corrected positions of a 5x5
    grid of pixels over the detector (a linear correction on the group's
    plane is linear on the detector's own tangent plane up to terms of order
    shift x field / radian, negligible for corrections of arcseconds).
    """
    nx, ny = wcs.pixel_shape or (2, 2)
    mx, my = np.meshgrid(np.linspace(0, nx - 1, 5), np.linspace(0, ny - 1, 5))
    gx, gy = mx.ravel(), my.ravel()
    c = wcs.wcs.crpix - 1.0

    def corrected(px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ra, dec = wcs.pixel_to_world_values(px, py)
        return plane.deproject(correction.apply(plane.project(ra, dec)))

    ra_c, dec_c = corrected(np.array([c[0]]), np.array([c[1]]))
    ra_g, dec_g = corrected(gx, gy)
    local = TangentPlane(float(ra_c[0]), float(dec_c[0])).project(ra_g, dec_g) / 3600.0
    # the CD matrix acts on distortion-corrected offsets (SIP: pixel + A, B), not raw pixels
    offsets = np.column_stack([gx - c[0], gy - c[1]])
    if wcs.sip is not None:
        u, v = offsets[:, 0], offsets[:, 1]
        offsets += np.column_stack([polyval2d(u, v, np.asarray(wcs.sip.a)),
                                    polyval2d(u, v, np.asarray(wcs.sip.b))])
    cd = np.linalg.lstsq(offsets, local, rcond=None)[0].T
    out = wcs.deepcopy()
    out.wcs.crval = [float(ra_c[0]), float(dec_c[0])]
    if out.wcs.has_cd():
        out.wcs.cd = cd
    else:
        out.wcs.pc = cd / out.wcs.cdelt[:, None]
    out.wcs.set()
    return out


def _fwhm_pix(profile: Profile, cal: CalImage) -> float:
    inst = profile.instrument(cal.meta.instrument)
    return float(inst.psf_fwhm_pix_per_um * inst.filter(cal.meta.filter).pivot_um)


def align_products(cals: Sequence[CalImage], catalog: AstrometricCatalog | None,
                   profile: Profile, options: AlignOptions | None = None,
                   catalog_file: RefFileUse | None = None) -> Alignment:
    """Detect stars in every ``_cal`` of ``cals`` and align them (the step entry point).

    Products are grouped into exposures by :func:`exposure_key`; each needs a
    WCS.  See :func:`align_catalogs` for the rest; :func:`aligned_cal` makes
    the corrected copies.
    """
    opts = options or AlignOptions()
    groups: dict[str, list[DetectorStars]] = {}
    for cal in cals:
        if cal.wcs is None:
            raise AlignmentError(f"alignment: {cal.meta.basename} has no WCS")
        stars = detect_stars(cal.sci, cal.err, cal.dq, _fwhm_pix(profile, cal),
                             opts.threshold_sigma, opts.max_sources)
        groups.setdefault(exposure_key(cal.meta), []).append(
            DetectorStars(cal.meta.basename, cal.wcs, stars.x, stars.y))
    return align_catalogs([ExposureStars(k, tuple(v)) for k, v in groups.items()], catalog,
                          opts, catalog_file)


def alignment_keywords(alignment: Alignment, key: str) -> dict[str, tuple[object, str]]:
    """The ``ALN_*`` primary keywords recording exposure ``key``'s correction."""
    e = alignment.exposures[key]
    absolute, rel, c = alignment.absolute, e.relative, e.correction
    return {
        "ALN_MODE": (alignment.options.fit_mode if absolute is None else
                     f"{alignment.options.fit_mode}+{absolute.mode}", "relative+absolute fit"),
        "ALN_REF": ("RELATIVE ONLY" if absolute is None else
                    alignment.catalog.name if alignment.catalog else "UNNAMED CATALOG",
                    "absolute astrometric catalog"),
        "ALN_DXI": (float(c.shift[0] * 1000.0), "[mas] shift east at ALN_RA0/DEC0"),
        "ALN_DETA": (float(c.shift[1] * 1000.0), "[mas] shift north at ALN_RA0/DEC0"),
        "ALN_ROT": (c.rotation_arcsec, "[arcsec] rotation E to N about ALN_RA0/DEC0"),
        "ALN_SCL": (c.scale, "scale of the correction"),
        "ALN_RA0": (alignment.plane.ra0, "[deg] tangent point of the correction"),
        "ALN_DEC0": (alignment.plane.dec0, "[deg] tangent point of the correction"),
        "ALN_NREL": (0 if rel is None else rel.n_used, "stars matched to the group reference"),
        "ALN_RREL": (0.0 if rel is None else rel.rms_mas, "[mas] relative fit RMS"),
        "ALN_NABS": (0 if absolute is None else absolute.n_used,
                     "stars matched to the catalog"),
        "ALN_RABS": (0.0 if absolute is None else absolute.rms_mas, "[mas] absolute fit RMS"),
    }


def aligned_cal(cal: CalImage, alignment: Alignment) -> CalImage:
    """A copy of ``cal`` with its corrected WCS, ``ALN_*`` keywords and a ``tweakreg`` step.

    The step's parameters are the options and the keywords; the ASTROCAT
    file joins the provenance's reference files.  The product reference is
    unchanged: making it a new version is the caller's decision.
    """
    if cal.wcs is None:
        raise AlignmentError(f"alignment: {cal.meta.basename} has no WCS")
    key = exposure_key(cal.meta)
    if key not in alignment.exposures:
        raise AlignmentError(f"alignment: {cal.meta.basename} was not in the aligned group")
    keywords = alignment_keywords(alignment, key)
    params = {**dataclasses.asdict(alignment.options),
              **{k: v[0] for k, v in keywords.items()}}
    refs = cal.provenance.references
    if alignment.catalog is not None:
        refs = tuple(sorted((*(r for r in refs if r.reftype != "ASTROCAT"), alignment.catalog),
                            key=lambda r: r.reftype))
    prov = dataclasses.replace(cal.provenance, references=refs,
                               steps=(*cal.provenance.steps, StepRecord("tweakreg", "COMPLETE",
                                                                        params)))
    extra = {**cal.header_extra, **keywords}
    return dataclasses.replace(cal, wcs=alignment.wcs_for(key, cal.wcs), provenance=prov,
                               header_extra=extra)
