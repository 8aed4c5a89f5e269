"""What a product page shows in readable form: values with units, and the FITS header.

:func:`readable` turns catalog values (SI and degrees, as ObsCore keeps
them) into what people read: wavelengths in micron, the field of view in
arcminutes, coordinates in sexagesimal next to degrees, ISO dates next to
MJD, sizes in kB/MB.  :func:`fits_header` reads the headers of a product
file without its data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from obsflow.archive.policy import mjd_to_datetime
from obsflow.archive.store import ProductStore

__all__ = ["CATALOG_COLUMNS", "CATALOG_ROWS", "catalog_key", "catalog_preview", "fits_header",
           "iso_of_mjd", "readable", "size_text"]

MAX_HEADER_CARDS = 2000
"""Most cards shown of one HDU's header."""


def iso_of_mjd(mjd: float) -> str:
    """MJD (UTC) as an ISO date and time to the second: ``2026-03-01 06:00:00 UTC``."""
    return mjd_to_datetime(mjd).strftime("%Y-%m-%d %H:%M:%S UTC")


def size_text(size: int) -> str:
    """A file size in bytes as ``12.3 kB`` / ``4.56 MB`` / ``1.23 GB`` (powers of 1000)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} B"


def _sexagesimal(ra_deg: float, dec_deg: float) -> tuple[str, str]:
    from astropy.coordinates import Angle

    ra = Angle(ra_deg, unit="deg").to_string(unit="hourangle", sep=("h ", "m ", "s"),
                                             precision=2, pad=True)
    dec = Angle(dec_deg, unit="deg").to_string(unit="deg", sep=("° ", "′ ", "″"), precision=1,
                                               alwayssign=True, pad=True)
    return str(ra), str(dec)


def readable(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) rows of a product's metadata (:func:`~obsflow.archive.search.product_dict`)
    with units and readable forms; a value the catalog does not have is left out."""
    rows = [("Target", meta["target_name"]), ("Program", meta["program"]),
            ("Observation", meta["obs_id"]),
            ("Instrument", f"{meta['instrument_name']} / {meta['detector']} "
                           f"on {meta['facility_name']}"),
            ("Filter", meta["filter"])]
    if meta.get("em_min") is not None and meta.get("em_max") is not None:
        low, high = meta["em_min"] * 1e6, meta["em_max"] * 1e6
        rows.append(("Wavelength", f"{low:.3f} – {high:.3f} µm "
                                   f"(centre {(low + high) / 2:.3f} µm)"))
    ra, dec = _sexagesimal(meta["s_ra"], meta["s_dec"])
    rows += [("RA", f"{ra}  ({meta['s_ra']:.6f}°)"), ("Dec", f"{dec}  ({meta['s_dec']:+.6f}°)")]
    if meta.get("s_fov") is not None:
        rows.append(("Field of view", f"{meta['s_fov'] * 60:.3f}′ "
                                      f"({meta['s_fov'] * 3600:.1f}″) across"))
    rows += [("Start", f"{iso_of_mjd(meta['t_min'])}  (MJD {meta['t_min']:.6f})"),
             ("End", f"{iso_of_mjd(meta['t_max'])}  (MJD {meta['t_max']:.6f})"),
             ("Exposure time", f"{meta['t_exptime']:.1f} s"),
             ("Release date", meta["release_date"][:19].replace("T", " ") + " UTC"),
             ("Product", f"{meta['kind']}, level {meta['level']} (calib_level "
                         f"{meta['calib_level']}), {meta['dataproduct_type']}, "
                         f"version {meta['version']}"),
             ("File", f"{meta['filename']} ({size_text(meta['size'])})"),
             ("Made", f"{meta['created'][:19].replace('T', ' ')} UTC by obsflow "
                      f"{meta['software_version']}"
                      + (f", recipe {meta['recipe']}" if meta["recipe"] else ""))]
    return rows


def fits_header(store: ProductStore, key: str) -> list[tuple[str, str]] | None:
    """(HDU name, header text with one card a line) of each HDU of the FITS file ``key`` in
    ``store``, data left unread; None for a file that is not FITS (a light curve's ECSV).

    At most :data:`MAX_HEADER_CARDS` cards of each HDU are shown.
    """
    if not key.endswith((".fits", ".fits.gz", ".fits.fz")):
        return None
    from astropy.io import fits

    out = []
    try:
        with store.open(key) as handle, fits.open(handle, lazy_load_hdus=True) as hdus:
            for index, hdu in enumerate(hdus):
                cards = [str(card) for card in hdu.header.cards[:MAX_HEADER_CARDS]]
                out.append((f"{index}: {hdu.name}", "\n".join(cards)))
    except (OSError, ValueError) as exc:  # a damaged or missing file: the page still shows
        out.append(("unreadable", f"{key}: {exc}"))
    return out


CATALOG_ROWS = 20
"""Rows of a mosaic's source catalog shown on its product page."""

CATALOG_COLUMNS = ("label", "ra", "dec", "x_centroid", "y_centroid", "aper_total_abmag",
                   "aper_total_abmag_err", "ci_50_90", "is_extended", "flags")
"""Columns of the catalog shown (those the table has, in this order)."""


def catalog_key(key: str) -> str | None:
    """The store key of the source catalog beside an ``_i2d`` (``<basename>_cat.ecsv``)."""
    return key[: -len("i2d.fits")] + "cat.ecsv" if key.endswith("_i2d.fits") else None


def catalog_preview(store: ProductStore, key: str) -> dict[str, object] | None:
    """The first :data:`CATALOG_ROWS` rows of the catalog beside the ``_i2d`` at ``key``:
    ``{"columns": [...], "rows": [[text, ...]], "total": n}``; None when there is none
    (not a mosaic, or its catalog step was skipped)."""
    from astropy.table import Table

    cat = catalog_key(key)
    if cat is None or not store.exists(cat):
        return None
    try:
        with store.open(cat) as handle:
            table = Table.read(handle.read().decode(), format="ascii.ecsv")
    except (OSError, ValueError) as exc:
        return {"columns": ["unreadable"], "rows": [[f"{cat}: {exc}"]], "total": 0}
    columns = [c for c in CATALOG_COLUMNS if c in table.colnames] or table.colnames[:8]
    rows = []
    for row in table[:CATALOG_ROWS]:
        cells = []
        for name in columns:
            value = row[name]
            if name in ("ra", "dec"):
                cells.append(f"{value:.6f}")
            elif isinstance(value, float | np.floating):
                cells.append(f"{value:.3f}")
            else:
                cells.append(str(value))
        rows.append(cells)
    return {"columns": columns, "rows": rows, "total": len(table)}
