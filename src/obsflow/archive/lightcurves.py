"""Products that are tables, not FITS: a time series's light curve (``phot``, ECSV) and a
mosaic's source catalog (``cat``, ECSV).

Registration (:mod:`obsflow.archive.register`) describes such a product by
the exposure row its input already made (it has no FITS header), stores the
ECSV as is (``text/x-ecsv``; downloads add ``charset=utf-8``) and catalogues
it as ``dataproduct_type`` ``timeseries`` (a light curve) or
``measurements`` (a source catalog).  A light curve is previewed with its
PNG written beside it (``<basename>_phot.png``; drawn from the table when
absent); a source catalog has no preview (its mosaic's page shows its first
rows).
"""

from __future__ import annotations

from pathlib import Path

from astropy.table import Table

from obsflow.archive.previews import Rendered, image_previews
from obsflow.exceptions import ProductFileError
from obsflow.models.identity import DataId, ProductRef
from obsflow.models.provenance import Provenance

__all__ = ["TABLE_KINDS", "read_table_product", "table_previews", "table_reference"]

TABLE_KINDS: dict[str, tuple[str, str]] = {"phot": ("timeseries", "text/x-ecsv"),
                                           "cat": ("measurements", "text/x-ecsv")}
"""Product kinds that are tables -> (ObsCore dataproduct_type, media type)."""

_COLUMNS = {"phot": ("_phot.ecsv light curve",
                     ("integration", "mjd_utc", "bjd_tdb", "flux", "flux_err")),
            "cat": ("_cat.ecsv source catalog",
                    ("label", "ra", "dec", "aper_total_flux", "aper_total_flux_err"))}
"""Per table kind: what it is, and the columns it must have."""


def read_table_product(path: Path, uuid: str | None = None) -> Table:
    """The ``_phot.ecsv`` or ``_cat.ecsv`` table at ``path`` (kind from its name), checked:
    columns, and its reference's UUID.

    ``ProductFileError`` naming the file: unreadable, a column of its kind
    missing, no ``product`` reference in its metadata, or (with ``uuid``) a
    reference other than the one registered.
    """
    from obsflow.tso.product import read_ecsv

    kind = "cat" if Path(path).name.endswith("_cat.ecsv") else "phot"
    what, columns = _COLUMNS[kind]
    table = read_ecsv(path, what)
    missing = [c for c in columns if c not in table.colnames]
    if missing:
        raise ProductFileError(f"{Path(path).name}: {what} lacks columns {missing}")
    product = table.meta.get("product")
    if not isinstance(product, dict) or "uuid" not in product:
        raise ProductFileError(f"{Path(path).name}: no product reference (meta 'product')")
    if uuid is not None and product["uuid"] != uuid:
        raise ProductFileError(f"{Path(path).name}: holds product {product['uuid']}, "
                               f"registered as {uuid}")
    return table


def table_reference(path: Path, table: Table) -> tuple[ProductRef, Provenance]:
    """The reference and provenance a table product carries in its metadata."""
    try:
        product = table.meta["product"]
        ref = ProductRef(str(product["kind"]), DataId.from_dict(product["data_id"]),
                         str(product["run"]), str(product["uuid"]))
        provenance = Provenance.from_dict(table.meta["provenance"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProductFileError(f"{Path(path).name}: meta 'product' or 'provenance' is not "
                               f"valid: {exc}") from exc
    return ref, provenance


def table_previews(path: Path, table: Table) -> list[Rendered]:
    """PNG, JPEG and thumbnail of a light curve: its PNG beside it, or drawn from ``table``;
    none for a source catalog."""
    from obsflow.tso.photometry import plot_light_curve
    from obsflow.tso.product import preview_path

    if Path(path).name.endswith("_cat.ecsv"):
        return []
    png = preview_path(path)
    data = png.read_bytes() if png.is_file() else plot_light_curve(table)
    return image_previews(data, png.name)
