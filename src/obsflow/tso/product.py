"""The ``phot`` product of a time series: ``_rateints`` -> ``<basename>_phot.ecsv`` + its PNG.

:func:`make_phot` measures every integration of a ``_rateints`` product
(:func:`obsflow.tso.photometry.photometry`, times from the ephemeris given),
tries the transit fit (:func:`obsflow.tso.fit.fit_transit`), and writes,
each atomically, first the light curve's PNG (``<basename>_phot.png``, the
archive's preview) and then the product itself, the ECSV table, at its
run's place (``products/<run>/.../<basename>_phot.ecsv``).  The
product's :class:`~obsflow.models.ProductRef` is derived from the
``_rateints`` one (same run, name-based UUID): making it again writes the
same files under the same names.

Its :class:`~obsflow.models.Provenance` names the ``_rateints`` as its one
input and records two steps: ``tso_photometry`` (apertures, in pixels, and
the ephemeris used: source, points, MJD span and the sha256 of its rows)
and ``transit_fit`` (``COMPLETE`` with depth, mid-time, duration, impact
parameter and their errors, or ``SKIPPED: <why>``).  The ECSV's metadata
holds the same: ``product`` (the reference), ``provenance`` (the whole
document) and ``transit_fit`` — a fit to the data with fixed limb darkening
(:data:`LIMB_DARKENING`), never the truth.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table

from obsflow import __version__
from obsflow.exceptions import ProductFileError, TransitFitError
from obsflow.fileio import atomic_path
from obsflow.models.identity import ProductRef
from obsflow.models.level2 import RateInts
from obsflow.models.provenance import Provenance, StepRecord
from obsflow.tso.fit import fit_transit
from obsflow.tso.photometry import Apertures, photometry, plot_light_curve

__all__ = ["LIMB_DARKENING", "PHOT_RECIPE", "PhotProduct", "ephemeris_digest", "make_phot",
           "phot_ref", "preview_path", "read_ecsv"]

PHOT_RECIPE = "tso_photometry"
"""The recipe name a ``phot`` product records (stage 3 of a time series)."""

LIMB_DARKENING = (0.35, 0.2)
"""Quadratic limb-darkening coefficients (u1, u2) held fixed in the transit fit: generic
values for a Sun-like star in the near infrared (the site has no stellar model)."""


@dataclass(frozen=True)
class PhotProduct:
    """A ``phot`` product :func:`make_phot` wrote: identity, files, sha256, size, provenance."""

    ref: ProductRef
    path: Path
    png: Path
    sha256: str
    size: int
    provenance: Provenance
    fit: dict[str, Any]


def phot_ref(rateints: ProductRef) -> ProductRef:
    """The ``phot`` product made from ``rateints`` (same run; UUID named by the input's)."""
    return ProductRef.derived("phot", rateints.data_id, rateints.run, rateints.uuid)


def preview_path(phot_path: Path) -> Path:
    """The light curve's PNG beside a ``_phot.ecsv`` product (``<basename>_phot.png``)."""
    return Path(phot_path).with_suffix(".png")


def ephemeris_digest(ephemeris: Table, source: str) -> dict[str, Any]:
    """What identifies an ephemeris: source, points, MJD UTC span, sha256 of its rows."""
    columns = ("mjd_utc", "x_km", "y_km", "z_km", "vx_km_s", "vy_km_s", "vz_km_s")
    rows = np.ascontiguousarray(np.column_stack(
        [np.asarray(ephemeris[c], np.float64) for c in columns if c in ephemeris.colnames]))
    mjd = np.asarray(ephemeris["mjd_utc"], np.float64)
    return {"source": source, "points": int(len(ephemeris)),
            "mjd_utc": [float(mjd.min()), float(mjd.max())] if len(mjd) else [],
            "sha256": hashlib.sha256(rows.tobytes()).hexdigest()}


def _fit(table: Table) -> dict[str, Any]:
    """The transit fit of the light curve as plain numbers, or why there is none."""
    u1, u2 = LIMB_DARKENING
    try:
        fit = fit_transit(np.asarray(table["bjd_tdb"]), np.asarray(table["flux"]),
                          np.asarray(table["flux_err"]), u1, u2)
    except TransitFitError as exc:
        return {"status": f"SKIPPED: {exc}"}
    return {"status": "COMPLETE", "time_scale": "BJD_TDB - 2400000.5 (days)",
            "t0": fit.t0, "t0_err_s": fit.t0_err_s, "depth": fit.depth,
            "depth_err": fit.depth_err, "duration_d": fit.duration,
            "duration_err_d": fit.duration_err, "impact": fit.impact,
            "impact_err": fit.impact_err, "baseline": fit.baseline,
            "slope_per_day": fit.slope, "chi2_reduced": fit.chi2_reduced, "points": fit.n,
            "limb_darkening": list(LIMB_DARKENING),
            "note": "a least-squares fit to this light curve, not the truth"}


def _provenance(ref: ProductRef, rateints: RateInts, apertures: Apertures,
                ephemeris: dict[str, Any], fit: dict[str, Any]) -> Provenance:
    params = {"aperture_radius_pix": apertures.radius,
              "annulus_pix": [apertures.r_in, apertures.r_out],
              "centroid_box_pix": apertures.box, "ephemeris": ephemeris}
    fit_params = {k: v for k, v in fit.items() if k != "status"}
    return Provenance(run=ref.run, software=__version__, recipe=PHOT_RECIPE,
                      context=rateints.provenance.context, inputs=(rateints.ref,),
                      steps=(StepRecord("tso_photometry", "COMPLETE", params),
                             StepRecord("transit_fit", str(fit["status"]), fit_params)))


def make_phot(rateints: RateInts, ephemeris: Table, products_dir: Path, *,
              ephemeris_source: str = "site database", apertures: Apertures | None = None,
              source: str = "rateints") -> PhotProduct:
    """Photometry, fit, PNG and ECSV of ``rateints`` under ``products_dir`` (module docstring).

    ``ephemeris`` is the observatory's (MJD UTC, km, km/s: see
    :func:`obsflow.tso.ephemeris.ingested_ephemeris`); ``source`` names the
    input in error messages.
    """
    ap = apertures or Apertures()
    ref = phot_ref(rateints.ref)
    table = photometry(rateints, ephemeris, ap, source)
    fit = _fit(table)
    provenance = _provenance(ref, rateints, ap, ephemeris_digest(ephemeris, ephemeris_source), fit)
    table.meta.update({"product": ref.as_dict(), "transit_fit": fit,
                       "provenance": provenance.as_dict()})
    buffer = io.StringIO()
    table.write(buffer, format="ascii.ecsv")
    data = buffer.getvalue().encode("utf-8")
    path = Path(products_dir) / ref.relpath()
    png = preview_path(path)
    with atomic_path(png) as tmp:  # the preview first: a product on disk always has one
        tmp.write_bytes(plot_light_curve(table, f"{rateints.meta.basename} "
                                                f"({rateints.meta.target})"))
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return PhotProduct(ref, path, png, hashlib.sha256(data).hexdigest(), len(data), provenance,
                       fit)


def read_ecsv(path: Path, what: str = "ECSV table") -> Table:
    """The ECSV table at ``path``; ``ProductFileError`` naming the file and ``what`` was expected."""
    try:
        return Table.read(path, format="ascii.ecsv")
    except Exception as exc:  # astropy raises many kinds for a bad ECSV
        reason = " ".join(str(exc).split())[:300]  # one line, whatever astropy said
        raise ProductFileError(f"{path}: not a readable {what}: {reason}") from exc
