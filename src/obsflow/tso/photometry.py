"""Per-integration aperture photometry of a time series: ``_rateints`` -> ``_phot.ecsv``.

For every integration of a ``_rateints`` product (count rates, DN/s):

* the star's centroid: the centre of mass (:func:`photutils.centroids.centroid_com`)
  of the background-subtracted box of ``box`` pixels around the previous
  integration's centroid (the first starts from the brightest pixel);
* the background per pixel: the 3-sigma-clipped mean of the annulus
  ``r_in``..``r_out`` around the centroid (pixel centres inside);
* the flux: the sum over the circular aperture of radius ``radius`` around
  the centroid (:class:`photutils.aperture.CircularAperture`, exact
  overlap), less the background times the aperture's area; pixels flagged
  ``DO_NOT_USE`` are left out of both;
* its error: the ERR array summed in quadrature over the aperture, plus the
  background mean's error times the area.

Times come from :mod:`obsflow.tso.times`.  The table is written as
``<basename>_phot.ecsv`` with columns ``integration``, ``mjd_utc``,
``bjd_tdb`` (days), ``flux``, ``flux_err``, ``background`` (DN/s per
pixel), ``x_centroid``, ``y_centroid`` (0-based pixels of the subarray);
the product and the apertures are in its metadata.  :func:`plot_light_curve`
draws the normalised light curve as a PNG.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.stats import sigma_clip
from astropy.table import Table
from photutils.aperture import CircularAnnulus, CircularAperture
from photutils.centroids import centroid_com

from obsflow.exceptions import ProductFileError
from obsflow.fileio import atomic_path
from obsflow.models.dq import DQ
from obsflow.models.level2 import RateInts
from obsflow.tso.times import barycentric_tdb, integration_mid_utc

__all__ = ["Apertures", "phot_path", "photometry", "plot_light_curve", "write_phot"]


@dataclass(frozen=True)
class Apertures:
    """Aperture radius, background annulus and centroid box, all in pixels."""

    radius: float = 10.0
    r_in: float = 15.0
    r_out: float = 24.0
    box: int = 15


def phot_path(rateints_path: Path) -> Path:
    """``<basename>_phot.ecsv`` beside ``<basename>_rateints.fits``."""
    name = Path(rateints_path).name
    if not name.endswith("_rateints.fits"):
        raise ProductFileError(f"{rateints_path}: expected a _rateints.fits product")
    return Path(rateints_path).with_name(name[: -len("_rateints.fits")] + "_phot.ecsv")


def _centroid(image: np.ndarray, good: np.ndarray, x: float, y: float, box: int,
              background: float) -> tuple[float, float]:
    ny, nx = image.shape
    h = box // 2
    xa, ya = max(0, int(round(x)) - h), max(0, int(round(y)) - h)
    xb, yb = min(nx, int(round(x)) + h + 1), min(ny, int(round(y)) + h + 1)
    cut = np.where(good[ya:yb, xa:xb], image[ya:yb, xa:xb] - background, 0.0)
    cx, cy = centroid_com(np.clip(cut, 0.0, None))
    return float(cx + xa), float(cy + ya)


def photometry(product: RateInts, ephemeris: Table, apertures: Apertures | None = None,
               source: str = "rateints") -> Table:
    """The light curve of ``product``'s target: one row per integration (see the module)."""
    ap = apertures or Apertures()
    sci, err = np.asarray(product.sci, np.float64), np.asarray(product.err, np.float64)
    if sci.ndim != 3:
        raise ProductFileError(f"{source}: SCI: expected (nints, ny, nx), got shape {sci.shape}")
    good_all = (np.asarray(product.dq) & int(DQ.DO_NOT_USE)) == 0
    good_all &= np.isfinite(sci) & np.isfinite(err)
    nints = sci.shape[0]
    out = {k: np.full(nints, np.nan) for k in
           ("flux", "flux_err", "background", "x_centroid", "y_centroid")}
    first = np.where(good_all[0], sci[0], -np.inf)
    y, x = np.unravel_index(int(np.argmax(first)), first.shape)
    xc, yc = float(x), float(y)
    for i in range(nints):
        image, good = sci[i], good_all[i]
        bkg = 0.0
        for _ in range(2):  # centroid, background around it, centroid again
            xc, yc = _centroid(image, good, xc, yc, ap.box, bkg)
            annulus = CircularAnnulus((xc, yc), ap.r_in, ap.r_out).to_mask(method="center")
            values = annulus.get_values(np.where(good, image, np.nan))
            clipped = sigma_clip(values[np.isfinite(values)], sigma=3.0, maxiters=3,
                                 masked=True).compressed()
            bkg = float(np.mean(clipped))
        aperture = CircularAperture((xc, yc), ap.radius)
        total, total_err = aperture.do_photometry(image, error=err[i], mask=~good, method="exact")
        area = float(aperture.area_overlap(image, mask=~good, method="exact"))
        bkg_err = float(np.std(clipped, ddof=1) / np.sqrt(clipped.size))
        out["flux"][i] = float(total[0]) - bkg * area
        out["flux_err"][i] = float(np.hypot(total_err[0], bkg_err * area))
        out["background"][i], out["x_centroid"][i], out["y_centroid"][i] = bkg, xc, yc
    meta = product.meta
    utc = integration_mid_utc(meta)
    if utc.size != nints:
        raise ProductFileError(f"{source}: NINTS = {meta.nints} but SCI holds {nints} integrations")
    bjd = barycentric_tdb(utc, meta.target_ra, meta.target_dec, ephemeris)
    table = Table({"integration": np.arange(nints), "mjd_utc": utc.mjd,
                   "bjd_tdb": bjd.jd, **out})
    for name, unit in (("mjd_utc", "d"), ("bjd_tdb", "d"), ("flux", "DN/s"),
                       ("flux_err", "DN/s"), ("background", "DN/s"), ("x_centroid", "pix"),
                       ("y_centroid", "pix")):
        table[name].unit = unit
    table["mjd_utc"].description = "mid-time of the integration, MJD UTC"
    table["bjd_tdb"].description = "mid-time of the integration, barycentric JD TDB"
    table["background"].description = "background per pixel (annulus, 3-sigma-clipped mean)"
    table.meta.update({"product": meta.basename, "target": meta.target,
                       "target_ra": meta.target_ra, "target_dec": meta.target_dec,
                       "aperture_radius_pix": ap.radius, "annulus_pix": [ap.r_in, ap.r_out],
                       "centroid_box_pix": ap.box})
    return table


def write_phot(path: Path, table: Table) -> Path:
    """Write the photometry table as ECSV, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        table.write(tmp, format="ascii.ecsv", overwrite=True)
    return path


def plot_light_curve(table: Table, title: str = "") -> bytes:
    """PNG of the normalised light curve (flux over its median) against BJD TDB."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    t = np.asarray(table["bjd_tdb"], np.float64)
    flux = np.asarray(table["flux"], np.float64)
    norm = np.nanmedian(flux)
    fig = Figure(figsize=(8, 4), dpi=100)
    ax = fig.add_subplot()
    ax.plot((t - t[0]) * 24.0, flux / norm, ".", ms=2, color="0.3")
    ax.set_xlabel(f"hours since BJD_TDB {t[0]:.6f}")
    ax.set_ylabel("relative flux")
    ax.set_title(title or str(table.meta.get("product", "")))
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
