"""The source catalog of a mosaic: detection, shapes, sky positions, aperture photometry.

Pure array functions (:func:`source_catalog`) and two small writers
(:func:`write_catalog` for ``_cat.ecsv``, :func:`write_segmentation` for
``_segm.fits``).  The method (docs/stage3.md has the long form):

1. background and its noise under the sources
   (:func:`obsflow.stage3.background.estimate_background`);
2. detection on the background-subtracted image divided by the local noise
   and smoothed by a Gaussian of the PSF's FWHM: photutils
   ``detect_sources`` at ``nsigma`` x the smoothed image's own noise
   (measured) with ``npixels`` connected pixels, then ``deblend_sources``;
3. photutils ``SourceCatalog`` for centroids (windowed, SExtractor's
   XWIN), shapes and sky coordinates;
4. circular apertures whose radii hold the fractions ``energy_fractions``
   of a point source's light in the mosaic PSF model
   (:mod:`obsflow.stage3.psfmodel`); errors from ERR, times the aperture
   variance factor of the mosaic's correlated noise, plus the background
   level's own error over the aperture's area;
5. total flux of the largest aperture divided by its encircled energy
   (the aperture correction; its error adds the relative scatter of that
   correction with a source's pixel phases,
   :func:`obsflow.stage3.psfmodel.aperture_correction_error`, times the
   flux), AB magnitudes, concentration indices against
   the PSF's own, a point/extended flag and quality flags;
6. (:func:`point_sources_from_inputs`, given the mosaic's inputs) point
   sources' positions from PSF fits on the inputs and their own encircled
   energy from their pixel phases there (:mod:`obsflow.stage3.apcorr`),
   which replaces the phase average and its scatter term.

Fluxes: a pixel of surface brightness SB (MJy/sr) and solid angle Omega
(sr) holds SB x Omega x 1e6 Jy; AB = -2.5 log10(F / 3631 Jy).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_area
from photutils.aperture import CircularAperture, aperture_photometry
from photutils.segmentation import SegmentationImage, SourceCatalog, deblend_sources, detect_sources
from photutils.utils.exceptions import NoDetectionsWarning

from obsflow.exceptions import CatalogError
from obsflow.fileio import Written, atomic_path, sha256_file, write_fits_hashed
from obsflow.models.asdfmeta import with_asdf
from obsflow.models.identity import ProductRef
from obsflow.models.level2 import product_primary
from obsflow.models.metadata import ExposureMeta
from obsflow.models.provenance import Provenance
from obsflow.stage3.apcorr import own_encircled_energy, sampling_half
from obsflow.stage3.background import (
    BackgroundMap,
    aperture_variance_factor,
    empty_aperture_factor,
    estimate_background,
    relative_noise,
    smooth,
    smoothing_kernel,
)
from obsflow.stage3.positions import OUTLIER_PIX, InputPositions, RowBands
from obsflow.stage3.psfmodel import (
    MosaicPSF,
    aperture_correction_error,
    encircled_energy,
    radius_for_energy,
)

__all__ = ["FLAGS", "SEGM_DATAMODEL", "CatalogOptions", "SourceCatalogResult",
           "PositionInput", "point_sources_from_inputs", "source_catalog", "write_catalog",
           "write_segmentation"]

AB_ZERO_JY = 3631.0

FLAGS = {
    "EDGE": 1,         # the largest aperture reaches beyond the image or onto pixels without data
    "LOW_WEIGHT": 2,   # median weight in the largest aperture below low_weight x the mosaic's median
    "DEBLENDED": 4,    # the segment was split from a larger one by deblending
    "NEGATIVE": 8,     # total flux <= 0 (no magnitude)
}
"""Bits of the catalog's ``flags`` column."""


@dataclass(frozen=True)
class CatalogOptions:
    """Options of :func:`source_catalog` (lengths in mosaic pixels).

    Attributes
    ----------
    nsigma : float
        Detection threshold in sigma of the smoothed image's local noise.
    npixels : int or None
        Connected pixels above the threshold; default max(3, the area of a
        circle of radius FWHM/2 of the blurred PSF, rounded).
    deblend_levels, deblend_contrast :
        photutils ``deblend_sources`` ``n_levels`` and ``contrast``.
    deblend_npixels : int or None
        Connected pixels a branch must have above the level at which it
        separates from its neighbour (``deblend_sources`` ``n_pixels``);
        default max(1, the area of a circle of radius FWHM/4 of the blurred
        PSF, rounded): a companion on a brighter source's wing separates at
        the saddle between them, and only its tip lies above it (a quarter
        of the detection's area; 1 pixel up to FWHM ~2.5 px).  Which branch
        is a source is the contrast criterion's decision.
    energy_fractions : tuple of float
        Encircled-energy fractions that set the aperture radii, ascending;
        the last one's flux, aperture-corrected, is the total flux.
    box_pix : int or None
        Background box side (default: see ``estimate_background``).
    mask_nsigma, mask_dilate : float
        Background source mask threshold and dilation factor.
    low_weight : float
        ``LOW_WEIGHT`` flag below this fraction of the median weight.
    point_ci_margin : float
        A source is extended when its concentration index ``ci_50_90``
        exceeds the PSF's by more than this (mag) and by 3 sigma.
    """

    nsigma: float = 5.0
    npixels: int | None = None
    deblend_levels: int = 32
    deblend_contrast: float = 0.005
    deblend_npixels: int | None = None
    energy_fractions: tuple[float, ...] = (0.5, 0.7, 0.9)
    box_pix: int | None = None
    mask_nsigma: float = 2.0
    mask_dilate: float = 1.0
    low_weight: float = 0.5
    point_ci_margin: float = 0.1

    def __post_init__(self) -> None:
        ef = self.energy_fractions
        if len(ef) < 2 or any(not 0 < f < 1 for f in ef) or list(ef) != sorted(set(ef)):
            raise CatalogError(f"energy_fractions must be >= 2 ascending values in (0, 1), got {ef}")
        if not self.nsigma > 0:
            raise CatalogError(f"nsigma must be > 0, got {self.nsigma}")
        for name in ("npixels", "deblend_npixels"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise CatalogError(f"{name} must be >= 1, got {value}")


@dataclass
class SourceCatalogResult:
    """What :func:`source_catalog` returns.

    Attributes
    ----------
    table : astropy.table.Table
        One row per source (columns in docs/formats.md), with units and a
        ``meta`` block naming the mosaic, the method and the aperture
        corrections.
    segm : numpy.ndarray
        (ny, nx) int32 segmentation image: 0 sky, else the row's ``label``.
    background : BackgroundMap
        The background it used.
    """

    table: Table
    segm: np.ndarray
    background: BackgroundMap
    meta: dict[str, object] = field(default_factory=dict)


def _ee_label(f: float) -> str:
    return f"{int(round(100 * f))}"


def _deblend(smoothed: np.ndarray, segm: SegmentationImage, npixels: int,
             options: CatalogOptions) -> SegmentationImage:
    with warnings.catch_warnings():
        # photutils notes when a segment's deblending mode falls back to linear; harmless
        warnings.simplefilter("ignore", AstropyUserWarning)
        return deblend_sources(smoothed, segm, npixels, n_levels=options.deblend_levels,
                               contrast=options.deblend_contrast, progress_bar=False)


def _magnitude(flux: np.ndarray, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        pos = flux > 0
        mag = np.where(pos, -2.5 * np.log10(np.where(pos, flux, 1.0) / AB_ZERO_JY), np.nan)
        mag_err = np.where(pos, 2.5 / math.log(10) * err / np.where(pos, flux, 1.0), np.nan)
    return mag, mag_err


def source_catalog(sci: np.ndarray, err: np.ndarray, wht: np.ndarray, wcs: WCS, psf: MosaicPSF,
                   options: CatalogOptions | None = None, name: str = "") -> SourceCatalogResult:
    """Detect and measure the sources of a mosaic.

    Parameters
    ----------
    sci, err : numpy.ndarray
        (ny, nx) surface brightness and its 1-sigma error, MJy/sr (NaN where
        there is no data).
    wht : numpy.ndarray
        (ny, nx) drizzle weight (0: no data); for a single ``_cal`` any map
        that is 0 on pixels to ignore and positive elsewhere.
    wcs : astropy.wcs.WCS
        Celestial WCS of the mosaic.
    psf : MosaicPSF
        The PSF as the mosaic shows it (``MosaicPSF.for_image``).
    options : CatalogOptions
    name : str
        The mosaic's file name, recorded in the table's meta.

    Returns
    -------
    SourceCatalogResult
    """
    opts = options or CatalogOptions()
    if sci.ndim != 2 or err.shape != sci.shape or wht.shape != sci.shape:
        raise CatalogError(f"source catalog: SCI, ERR and WHT must be 2-D of one shape, got "
                           f"{sci.shape}, {err.shape}, {wht.shape}")
    if not wcs.has_celestial:
        raise CatalogError("source catalog: the WCS has no celestial axes")
    # the PSF model's numbers first: its oversampled grids are made before any image-sized array
    radii = radius_for_energy(psf, list(opts.energy_fractions))
    ee = np.asarray(opts.energy_fractions, np.float64)
    ci_psf = _ci_psf(psf, radii, ee)
    apcorr_err = aperture_correction_error(psf, float(radii[-1]))
    sci, err = _float(sci), _float(err)
    bad = ~(np.isfinite(sci) & np.isfinite(err) & (wht > 0) & (err > 0))
    fwhm = psf.blurred_fwhm_pix
    bkg = estimate_background(sci, bad, fwhm, box_pix=opts.box_pix, mask_nsigma=opts.mask_nsigma,
                              peak_nsigma=opts.nsigma, dilate=opts.mask_dilate)
    kernel = smoothing_kernel(fwhm)
    smoothed = smooth(_over_noise(_subtracted(sci, bkg.level, bad), bkg.rms), kernel)
    npixels = opts.npixels or max(3, int(round(math.pi * (fwhm / 2.0) ** 2)))
    deblend_npixels = opts.deblend_npixels or max(1, int(round(math.pi * (fwhm / 4.0) ** 2)))
    threshold = opts.nsigma * bkg.smooth_ratio
    local = relative_noise(err, bkg.rms, ~bad & ~bkg.source_mask, kernel)
    local *= np.float32(threshold)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)  # (None: the empty catalog below)
        segm = detect_sources(smoothed, local, npixels, mask=bad)
    del local
    omega_sr = float(proj_plane_pixel_area(wcs.celestial)) * (math.pi / 180.0) ** 2
    to_jy = omega_sr * 1e6
    factors = [aperture_variance_factor(bkg.correlation, float(r)) for r in radii]
    meta = _meta(name, psf, opts, radii, ee, factors, bkg, (npixels, deblend_npixels), threshold,
                 omega_sr, wcs)
    meta["aperture_correction_rel_err"] = apcorr_err
    if segm is None:
        return SourceCatalogResult(_empty_table(opts, meta), np.zeros(sci.shape, np.int32), bkg,
                                   meta)
    segm = _deblend(smoothed, segm, deblend_npixels, opts)
    deblended = _deblended(segm)
    data = _subtracted(sci, bkg.level, bad)
    error = np.where(bad, 0.0, err).astype(sci.dtype, copy=False)
    factors, measured = _noise_factors(data, error, bad | bkg.source_mask, radii, factors)
    apertures: list[dict[str, object]] = meta["apertures"]  # type: ignore[assignment]
    for entry, factor, found in zip(apertures, factors, measured, strict=True):
        entry["noise_variance_factor"] = float(factor)
        entry["noise_from"] = (f"{found} empty apertures" if found else
                               "noise correlation model + background level error")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)  # NaN shapes of tiny segments
        cat = SourceCatalog(data, segm, convolved_data=smoothed, error=error, mask=bad, wcs=wcs)
        x = np.asarray(cat.x_centroid_win, np.float64)
        y = np.asarray(cat.y_centroid_win, np.float64)
        shapes = {k: np.asarray(getattr(cat, k)) for k in
                  ("area", "semimajor_axis", "semiminor_axis", "orientation", "ellipticity",
                   "fwhm", "segment_flux", "segment_flux_err")}
    del smoothed
    fallback = ~(np.isfinite(x) & np.isfinite(y))
    x[fallback] = np.asarray(cat.x_centroid, np.float64)[fallback]
    y[fallback] = np.asarray(cat.y_centroid, np.float64)[fallback]
    labels = np.asarray(cat.labels)
    del cat
    if not np.array_equal(labels, np.asarray(segm.labels)):  # (the DEBLENDED flags' order)
        raise CatalogError("source catalog: catalog labels differ from the segmentation's")
    ra, dec = wcs.celestial.pixel_to_world_values(x, y)
    table = Table()
    table["label"] = labels.astype(np.int32)
    table["x_centroid"] = x
    table["y_centroid"] = y
    table["ra"] = np.asarray(ra, np.float64)
    table["dec"] = np.asarray(dec, np.float64)
    table["pos_inputs"] = np.zeros(len(labels), np.int16)
    table["x_aperture"] = x.copy()
    table["y_aperture"] = y.copy()
    table["area"] = shapes["area"].astype(np.float64)
    for k in ("semimajor_axis", "semiminor_axis", "fwhm"):
        table[k] = shapes[k].astype(np.float64)
    table["orientation"] = shapes["orientation"].astype(np.float64)
    table["ellipticity"] = shapes["ellipticity"].astype(np.float64)
    table["isophotal_flux"] = shapes["segment_flux"].astype(np.float64) * to_jy
    table["isophotal_flux_err"] = shapes["segment_flux_err"].astype(np.float64) * to_jy
    positions = np.column_stack([x, y])
    safe = np.where(np.isfinite(positions), positions, 0.0)
    fluxes, errors, edge = _apertures(data, error, bad, bkg, safe, radii, factors,
                                      [found == 0 for found in measured])
    fluxes = [f * to_jy for f in fluxes]
    errors = [e * to_jy for e in errors]
    del data, error
    ny, nx = sci.shape
    rmax = float(radii[-1])
    edge |= (x - rmax < -0.5) | (x + rmax > nx - 0.5) | (y - rmax < -0.5) | (y + rmax > ny - 0.5)
    for f, flux, e in zip(ee, fluxes, errors, strict=True):
        tag = _ee_label(f)
        table[f"aper{tag}_flux"] = flux
        table[f"aper{tag}_flux_err"] = e
    total = fluxes[-1] / ee[-1]
    total_err = np.hypot(errors[-1] / ee[-1], apcorr_err * total)
    table["aper_total_ee"] = np.full(len(labels), float(ee[-1]))
    table["aper_total_flux"] = total
    table["aper_total_flux_err"] = total_err
    mag, mag_err = _magnitude(total, total_err)
    table["aper_total_abmag"] = mag
    table["aper_total_abmag_err"] = mag_err
    ci, ci_err = _concentration(fluxes, errors, ee)
    table["ci_50_90"] = ci
    table["ci_50_90_err"] = ci_err
    extended = np.isfinite(ci) & (ci - ci_psf > np.maximum(opts.point_ci_margin, 3.0 * ci_err))
    table["is_extended"] = extended
    flags = np.zeros(len(labels), np.int32)
    flags[edge] |= FLAGS["EDGE"]
    flags[_low_weight(wht, bad, safe, rmax, opts.low_weight)] |= FLAGS["LOW_WEIGHT"]
    flags[deblended] |= FLAGS["DEBLENDED"]
    flags[~(total > 0)] |= FLAGS["NEGATIVE"]
    table["flags"] = flags
    _units(table)
    meta["ci_50_90_psf"] = float(ci_psf)
    table.meta.update(meta)
    out = np.asarray(segm.data).astype(np.int32, copy=False)
    return SourceCatalogResult(table, out, bkg, meta)


PositionInput = tuple[RowBands, RowBands, WCS, float, float]
"""One input of :func:`point_sources_from_inputs`: its SCI and DQ (arrays or row bands), its
aligned WCS, the PSF FWHM in its pixels and its drizzle weight."""


def point_sources_from_inputs(table: Table, grid: WCS, inputs: Iterable[PositionInput],
                              psf: MosaicPSF, kernel: str = "square", pixfrac: float = 1.0
                              ) -> int:
    """Measure ``table``'s point sources (``is_extended`` False) on the mosaic's inputs, in
    place: their positions and their own aperture corrections.

    * Positions: the mean of their PSF-fit positions on the inputs
      (:mod:`obsflow.stage3.positions`) in ``grid`` (the mosaic's WCS): ``x_centroid``,
      ``y_centroid``, ``ra``, ``dec`` and ``pos_inputs``; a source no input measured keeps
      its windowed centroid.
    * Total flux: the largest aperture's flux (measured about ``x_aperture``, ``y_aperture``) over
      the source's own share of its light in that aperture, from where its inputs' pixels
      fell on it (:func:`obsflow.stage3.apcorr.own_encircled_energy`: the PSF model ``psf``
      drizzled with ``kernel`` and ``pixfrac`` through the pixels and weights the mosaic
      used): ``aper_total_ee``, ``aper_total_flux`` and its error (no phase scatter term),
      the AB magnitude.

    ``inputs`` yields (SCI, DQ, aligned WCS, PSF FWHM in that input's pixels, drizzle
    weight), one input at a time.  Returns how many sources got input positions."""
    point = ~np.asarray(table["is_extended"], bool) & np.isfinite(np.asarray(table["ra"]))
    rows = np.flatnonzero(point)
    ap = table.meta["apertures"][-1]
    radius = float(ap["radius_pix"])
    out_per_in = psf.boxes_pix[0] if len(psf.boxes_pix) >= 4 else 1.0  # (input px, mosaic px)
    measure = InputPositions(np.asarray(table["ra"])[rows], np.asarray(table["dec"])[rows], grid,
                             sampling_half(radius, kernel, pixfrac, out_per_in))
    if rows.size:  # (else no input is opened)
        for sci, dq, wcs, fwhm_pix, weight in inputs:
            measure.add(sci, dq, wcs, fwhm_pix, weight)
    x, y, used = measure.finish()
    aperture = np.column_stack([np.asarray(table["x_aperture"])[rows],
                                np.asarray(table["y_aperture"])[rows]])
    centre = np.column_stack([np.where(used > 0, x, aperture[:, 0]),
                              np.where(used > 0, y, aperture[:, 1])])
    share = own_encircled_energy(grid, centre, aperture, radius, psf.fwhm_pix, measure.samplings,
                                 kernel, pixfrac)
    _own_total(table, rows, share)
    ok = used > 0
    rows, x, y, used = rows[ok], x[ok], y[ok], used[ok]
    ra, dec = grid.celestial.pixel_to_world_values(x, y)
    table["x_centroid"][rows] = x
    table["y_centroid"][rows] = y
    table["ra"][rows] = np.asarray(ra, np.float64)
    table["dec"][rows] = np.asarray(dec, np.float64)
    table["pos_inputs"][rows] = used.astype(np.int16)
    table.meta["point_positions"] = (
        "point sources: the mean, in the mosaic grid, of PSF-fit positions (pixel-integrated "
        "Moffat) on each aligned input holding them unmasked, through that input's aligned WCS "
        f"(inputs more than {OUTLIER_PIX} px from the median of three or more left out); "
        f"{rows.size} of {len(table)} sources")
    return int(rows.size)


def _own_total(table: Table, rows: np.ndarray, share: np.ndarray) -> None:
    """``aper_total_*`` of ``table``'s ``rows`` from their own shares of light in the largest
    aperture (``share``; NaN: the PSF model's average kept)."""
    ok = np.isfinite(share) & (share > 0)
    rows, share = rows[ok], share[ok]
    name = table.meta["total_flux_aperture"]
    flux = np.asarray(table[f"{name}_flux"])[rows]
    err = np.asarray(table[f"{name}_flux_err"])[rows]
    total, total_err = flux / share, err / share
    table["aper_total_ee"][rows] = share
    table["aper_total_flux"][rows] = total
    table["aper_total_flux_err"][rows] = total_err
    mag, mag_err = _magnitude(total, total_err)
    table["aper_total_abmag"][rows] = mag
    table["aper_total_abmag_err"][rows] = mag_err
    table.meta["own_aperture_correction"] = (
        f"{rows.size} point sources: aper_total_ee is their own share of light in "
        f"{name} from their pixel phases on their inputs (the PSF model drizzled through the "
        "mosaic's kernel, pixels and weights), and aper_total_flux_err has no phase scatter term")


def _float(a: np.ndarray) -> np.ndarray:
    """``a`` as it is when floating point (a float32 mosaic stays float32: half the memory of
    float64, results equal to float32 rounding), else as float32."""
    a = np.asarray(a)
    return a if a.dtype.kind == "f" else a.astype(np.float32)


def _subtracted(sci: np.ndarray, level: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """``sci - level``, 0 where ``bad`` (a new array)."""
    data = np.subtract(sci, level)
    data[bad] = 0.0
    return data


def _over_noise(data: np.ndarray, rms: np.ndarray) -> np.ndarray:
    """``data / rms`` in ``data``'s array (consumed), 0 where ``rms`` is not > 0."""
    ok = rms > 0
    np.divide(data, rms, out=data, where=ok)
    data[~ok] = 0.0
    return data


def _noise_factors(data: np.ndarray, error: np.ndarray, masked: np.ndarray, radii: np.ndarray,
                   modelled: list[float]) -> tuple[list[float], list[int]]:
    """Per aperture radius, the factor by which an aperture sum's variance exceeds what ERR
    gives, and from how many empty apertures it was measured (0: too few fit, the
    correlation model's factor ``modelled`` is kept).

    Measured on empty apertures (:func:`obsflow.stage3.background.empty_aperture_factor`)
    wherever enough fit between the sources: the standard check of a drizzled image's
    noise, at every lag and including what ERR's propagation misses, where the
    correlation model reaches only lags up to ``max_lag`` and is measured on every quiet
    pixel, faint halos included.
    """
    factors, counts = [], []
    for r, model in zip(radii, modelled, strict=True):
        found = empty_aperture_factor(data, error, masked, float(r))
        factors.append(found[0] if found else model)
        counts.append(found[1] if found else 0)
    return factors, counts


def _apertures(data: np.ndarray, error: np.ndarray, bad: np.ndarray, bkg: BackgroundMap,
               pos: np.ndarray, radii: np.ndarray, factors: list[float],
               with_level: list[bool]) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Per radius the aperture sums of ``data`` at ``pos`` ((n, 2) x, y), their errors (ERR
    times the noise ``factors``, plus, where ``with_level`` (a modelled factor), the
    background level's own error over the aperture: the aperture sum of ``rms`` times
    ``level_err_factor``; an empty-aperture factor holds that error already), in image
    units x pixels, and the EDGE flag (bad pixels cover more than 1e-3 of an aperture)."""
    fluxes, errors, edge = [], [], np.zeros(pos.shape[0], bool)
    bad_f = bad.astype(data.dtype)
    for r, factor, level in zip(radii, factors, with_level, strict=True):
        ap = CircularAperture(pos, float(r))
        phot = aperture_photometry(data, ap, error=error, method="exact")
        nbad = aperture_photometry(bad_f, ap, method="exact")["aperture_sum"]
        area = float(ap.area)
        level_err = bkg.level_err_factor * np.asarray(
            aperture_photometry(bkg.rms, ap, method="exact")["aperture_sum"], np.float64) \
            if level else 0.0
        var = factor * np.asarray(phot["aperture_sum_err"], np.float64) ** 2 + level_err ** 2
        fluxes.append(np.asarray(phot["aperture_sum"], np.float64))
        errors.append(np.sqrt(var))
        edge |= (np.asarray(nbad) > 1e-3 * area)
    return fluxes, errors, edge


def _ci_pair(ee: np.ndarray) -> tuple[int, int]:
    """Indices of the apertures nearest EE 0.5 and of the largest (EE 0.9 by default)."""
    return int(np.argmin(np.abs(ee - 0.5))), len(ee) - 1


def _ci_psf(psf: MosaicPSF, radii: np.ndarray, ee: np.ndarray) -> float:
    """The PSF's own ci_50_90 (mag) between the apertures :func:`_ci_pair` picks."""
    i, j = _ci_pair(ee)
    ee_model = encircled_energy(psf, [float(radii[i]), float(radii[j])])
    return float(2.5 * np.log10(ee_model[1] / ee_model[0]))


def _concentration(fluxes: list[np.ndarray], errors: list[np.ndarray], ee: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """ci_50_90 = m(r50) - m(r90) (mag) from the apertures nearest EE 0.5 and 0.9, and its
    error."""
    i, j = _ci_pair(ee)
    f1, f2, e1, e2 = fluxes[i], fluxes[j], errors[i], errors[j]
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = (f1 > 0) & (f2 > 0)
        ci = np.where(ok, 2.5 * np.log10(np.where(ok, f2 / np.where(ok, f1, 1.0), 1.0)), np.nan)
        # the inner aperture's flux is part of the outer's: propagate the ring and the core
        ring = f2 - f1
        ring_e = np.sqrt(np.maximum(e2**2 - e1**2, 0.0))
        ci_err = 2.5 / math.log(10) * np.sqrt((ring_e / np.where(ok, f2, 1.0)) ** 2
                                              + (e1 * ring / np.where(ok, f1 * f2, 1.0)) ** 2)
    return ci, np.where(ok, ci_err, np.nan)


def _low_weight(wht: np.ndarray, bad: np.ndarray, pos: np.ndarray, radius: float,
                fraction: float) -> np.ndarray:
    good = wht[~bad]
    if good.size == 0:
        return np.ones(pos.shape[0], bool)
    level = float(np.median(good))
    ny, nx = wht.shape
    r = int(math.ceil(radius))
    out = np.zeros(pos.shape[0], bool)
    for k, (x, y) in enumerate(pos):
        xi, yi = int(round(x)), int(round(y))
        cut = wht[max(0, yi - r):min(ny, yi + r + 1), max(0, xi - r):min(nx, xi + r + 1)]
        out[k] = cut.size == 0 or float(np.median(cut)) < fraction * level
    return out


def _deblended(segm: SegmentationImage) -> np.ndarray:
    """For each of ``segm.labels``: True when deblending split its parent segment into more
    than one child (photutils' ``parent_to_deblended_labels``; no parent image is kept)."""
    split = [np.asarray(v) for v in segm.parent_to_deblended_labels.values() if len(v) > 1]
    return np.isin(np.asarray(segm.labels), np.concatenate(split) if split else np.zeros(0, int))


_UNITS = {"x_centroid": "pix", "y_centroid": "pix", "x_aperture": "pix", "y_aperture": "pix", "ra": "deg", "dec": "deg", "area": "pix2",
          "semimajor_axis": "pix", "semiminor_axis": "pix", "fwhm": "pix",
          "orientation": "deg", "isophotal_flux": "Jy", "isophotal_flux_err": "Jy",
          "aper_total_flux": "Jy", "aper_total_flux_err": "Jy", "aper_total_abmag": "mag",
          "aper_total_abmag_err": "mag", "ci_50_90": "mag", "ci_50_90_err": "mag"}

_DESCRIPTIONS = {
    "label": "segment number in the _segm.fits image",
    "x_centroid": "0-based pixel column: windowed centroid, or (pos_inputs > 0) the mean of "
                  "the inputs' PSF-fit positions",
    "y_centroid": "0-based pixel row (as x_centroid)",
    "ra": "right ascension of the position (ICRS)",
    "dec": "declination of the position (ICRS)",
    "pos_inputs": "inputs whose PSF-fit positions were averaged (0: the windowed centroid on "
                  "the mosaic)",
    "x_aperture": "0-based pixel column of the apertures' centre (the windowed centroid)",
    "y_aperture": "0-based pixel row of the apertures' centre",
    "area": "segment area",
    "semimajor_axis": "1-sigma semimajor axis of the segment's light",
    "semiminor_axis": "1-sigma semiminor axis of the segment's light",
    "fwhm": "circularized FWHM from the second moments",
    "orientation": "angle of the semimajor axis from +x, counterclockwise",
    "ellipticity": "1 - semiminor/semimajor",
    "isophotal_flux": "flux within the segment (no aperture correction)",
    "aper_total_ee": "share of a point source's light in the largest aperture: the source's own "
                     "from its pixel phases on its inputs (point sources measured on them), "
                     "else the PSF model's average",
    "aper_total_flux": "largest aperture's flux divided by aper_total_ee",
    "aper_total_abmag": "AB magnitude of aper_total_flux",
    "ci_50_90": "concentration index m(r50) - m(r90)",
    "is_extended": "ci_50_90 above the PSF's by the margin and 3 sigma",
    "flags": "bit flags: " + ", ".join(f"{v} {k}" for k, v in FLAGS.items()),
}


def _units(table: Table) -> None:
    for col in table.colnames:
        if col in _UNITS:
            table[col].unit = _UNITS[col]
        elif col.startswith("aper") and "_flux" in col:
            table[col].unit = "Jy"
        if col in _DESCRIPTIONS:
            table[col].description = _DESCRIPTIONS[col]
        elif col.endswith("_err"):
            table[col].description = f"1-sigma error of {col[:-4]}"
        elif col.startswith("aper") and col.endswith("_flux"):
            table[col].description = f"flux in the circle holding {col[4:-5]}% of a point source's light"


def _empty_table(opts: CatalogOptions, meta: dict[str, object]) -> Table:
    names = ["label", "x_centroid", "y_centroid", "ra", "dec", "pos_inputs", "x_aperture",
             "y_aperture", "area",
             "semimajor_axis", "semiminor_axis", "fwhm", "orientation", "ellipticity", "isophotal_flux",
             "isophotal_flux_err"]
    for f in opts.energy_fractions:
        names += [f"aper{_ee_label(f)}_flux", f"aper{_ee_label(f)}_flux_err"]
    names += ["aper_total_ee", "aper_total_flux", "aper_total_flux_err", "aper_total_abmag", "aper_total_abmag_err",
              "ci_50_90", "ci_50_90_err", "is_extended", "flags"]
    dtypes = {"label": np.int32, "pos_inputs": np.int16, "is_extended": bool, "flags": np.int32}
    table = Table({n: np.zeros(0, dtypes.get(n, np.float64)) for n in names})
    _units(table)
    table.meta.update(meta)
    return table


def _meta(name: str, psf: MosaicPSF, opts: CatalogOptions, radii: np.ndarray, ee: np.ndarray,
          factors: list[float], bkg: BackgroundMap, npixels: tuple[int, int], threshold: float,
          omega_sr: float, wcs: WCS) -> dict[str, object]:
    """The catalog's meta block; ``npixels`` is (detection's, deblending's)."""
    scale = math.sqrt(omega_sr) * 206264.80624709636
    return {
        "mosaic": name,
        "method": ("background: photutils Background2D, sigma-clipped median in boxes, sources "
                   "masked (segments dilated); detection: photutils detect_sources + "
                   "deblend_sources on the noise-normalised image smoothed by a Gaussian of the "
                   "PSF FWHM; centroids, shapes, sky positions: photutils SourceCatalog "
                   "(windowed centroids); photometry: circular apertures holding fixed "
                   "fractions of a point source's light in the PSF model; total flux: largest "
                   "aperture / its encircled energy (aper_total_ee: a point source's own share "
                   "from its pixel phases on the inputs when measured there, else the model's "
                   "phase average); AB = -2.5 log10(F / 3631 Jy)"),
        "pixel_area_sr": omega_sr,
        "pixel_scale_arcsec": scale,
        "psf": {"model": "Moffat", "beta": psf.beta, "fwhm_pix": psf.fwhm_pix,
                "boxes_pix": list(psf.boxes_pix), "blurred_fwhm_pix": psf.blurred_fwhm_pix,
                "inputs": psf.inputs},
        "apertures": [{"name": f"aper{_ee_label(f)}", "encircled_energy": float(f),
                       "radius_pix": float(r), "radius_arcsec": float(r) * scale,
                       "aperture_correction": float(1.0 / f), "noise_variance_factor": float(v)}
                      for f, r, v in zip(ee, radii, factors, strict=True)],
        "total_flux_aperture": f"aper{_ee_label(float(ee[-1]))}",
        "detection": {"nsigma": opts.nsigma, "threshold_smoothed": threshold,
                      "smooth_ratio": bkg.smooth_ratio, "npixels": npixels[0],
                      "deblend_npixels": npixels[1], "deblend_levels": opts.deblend_levels,
                      "deblend_contrast": opts.deblend_contrast},
        "background": {"box_pix": bkg.box_pix, "mask_nsigma": opts.mask_nsigma,
                       "mask_dilate": opts.mask_dilate,
                       "median_level_mjy_sr": float(np.median(bkg.level)),
                       "median_rms_mjy_sr": float(np.median(bkg.rms))},
        "flags": dict(FLAGS),
        "wcs_ctype": list(wcs.celestial.wcs.ctype),
    }


def write_catalog(path: Path, table: Table, ref: ProductRef | None = None,
                  provenance: Provenance | None = None) -> Written:
    """Write ``table`` as ``_cat.ecsv`` atomically; its path, sha256 and size.

    With ``ref`` and ``provenance`` (an archive product, kind ``cat``) both go
    into the table's meta as ``product`` and ``provenance``, the way every
    ECSV product carries its identity.
    """
    path = Path(path)
    if ref is not None:
        if provenance is None or ref.kind != "cat":
            raise CatalogError(f"{path.name}: a catalog product needs a 'cat' reference and its "
                               f"provenance, got kind {ref.kind!r}")
        table = table.copy(copy_data=False)
        table.meta["product"] = ref.as_dict()
        table.meta["provenance"] = provenance.as_dict()
    with atomic_path(path) as tmp:
        table.write(tmp, format="ascii.ecsv", overwrite=True)
    return Written(path, sha256_file(path), path.stat().st_size)


SEGM_DATAMODEL = "SegmentationMapModel"
"""DATAMODL of a ``_segm.fits`` (JWST's model for segmentation maps)."""


def write_segmentation(path: Path, segm: np.ndarray, wcs: WCS, meta: ExposureMeta,
                       ref: ProductRef, provenance: Provenance,
                       header: dict[str, object] | None = None) -> Written:
    """Write the segmentation image as ``_segm.fits`` atomically (JWST's
    ``SegmentationMapModel`` layout): a primary header with the mosaic's
    exposure keywords, DATAMODL, the product reference (kind ``segm``) and
    ``header`` (value or (value, comment)); SCI, uint32 labels (0 sky) with the
    mosaic's WCS; the PROVENANCE table."""
    if segm.ndim != 2:
        raise CatalogError(f"segmentation image must be 2-D, got shape {segm.shape}")
    if ref.kind != "segm":
        raise CatalogError(f"{Path(path).name}: a segmentation map needs a 'segm' reference, "
                           f"got kind {ref.kind!r}")
    extra = dict(header or {})
    extra["NSOURCES"] = (int(segm.max()) if segm.size else 0, "segments (labels 1..N)")
    primary = product_primary(SEGM_DATAMODEL, meta, ref, provenance, extra)
    ext = fits.ImageHDU(np.ascontiguousarray(segm, np.uint32), header=wcs.celestial.to_header(),
                        name="SCI")
    ext.header["BUNIT"] = ("", "segment label; 0 is sky")
    return write_fits_hashed(with_asdf([primary, ext, provenance.to_hdu()]), path)
