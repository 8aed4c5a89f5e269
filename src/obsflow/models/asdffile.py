"""Products as pure ASDF files: the same content as the FITS product, in ASDF.

:func:`write_asdf_copy` writes beside a FITS product of any kind
(``x_uncal.fits`` ... ``x_segm.fits``) its ASDF form (``x_uncal.asdf``):

- the tree of its ``ASDF`` extension (:func:`obsflow.models.asdfmeta.product_tree`:
  ``meta``, with the gwcs ``meta.wcs`` wherever the SCI header has a
  celestial WCS, a level-1 ramp's too) with the arrays themselves instead
  of references to FITS extensions (``data`` for SCI, else the EXTNAME in
  lower case; integers in their native type, uint16 ramps as uint16);
- every primary keyword under ``extra_fits.PRIMARY.header`` and every SCI
  keyword but the structural ones (array size and type, scaling) under
  ``extra_fits.SCI.header`` (``[keyword, value, comment]`` rows,
  stdatamodels' place for keywords its schema does not define);
- ``obsflow``: the mark of an obsflow product (``format``
  :data:`ASDF_FORMAT`, ``version``, the FITS twin's file name and sha256:
  a product registered by hand without a reference gets the one its FITS
  twin gets, so the archive attaches the two to one product) and its
  provenance (:meth:`obsflow.models.provenance.Provenance.as_dict`) and
  any other table of the FITS form (a level-1 product's ``RAWFILES``) under
  ``tables`` (EXTNAME -> column -> values).

So nothing of the FITS form is lost; ``asdf.open`` and
``stdatamodels.jwst.datamodels.open`` read it.  :func:`read_asdf_product`
reads it back (headers, provenance, arrays) and refuses an ASDF file that
is not obsflow's with one clear error naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from obsflow.exceptions import ProductFileError
from obsflow.fileio import Written, atomic_path, sha256_file
from obsflow.models.asdfmeta import ASDF_EXTNAME, asdf_file, product_tree
from obsflow.models.fitsfile import open_fits
from obsflow.models.gwcsmodel import gwcs_from_fits
from obsflow.models.provenance import PROVENANCE_EXTNAME, Provenance

__all__ = ["ASDF_FORMAT", "AsdfProduct", "asdf_name", "read_asdf_product", "write_asdf_copy"]

ASDF_FORMAT = "obsflow-product"
"""``obsflow.format`` of an obsflow pure-ASDF product (what :func:`read_asdf_product` checks)."""

ASDF_VERSION = 1
"""``obsflow.version``: the layout described in the module docstring."""

_SKIPPED = ("", "COMMENT", "HISTORY", "CHECKSUM", "DATASUM")
_STRUCTURAL = ("XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "BZERO", "BSCALE", "EXTNAME",
               "EXTVER", "EXTEND", "SIMPLE")
"""SCI keywords the ASDF array itself describes (size, type, scaling, HDU name)."""


def asdf_name(fits_path: Path) -> Path:
    """``x_cal.fits`` -> ``x_cal.asdf``."""
    return Path(fits_path).with_suffix(".asdf")


def _rows(header: fits.Header, skip: tuple[str, ...] = ()) -> list[list[Any]]:
    """``[keyword, value, comment]`` rows of ``header`` (no commentary or checksum cards)."""
    return [[card.keyword, card.value, card.comment] for card in header.cards
            if card.keyword not in _SKIPPED and card.keyword not in skip
            and not (card.keyword.startswith("NAXIS") and card.keyword[5:].isdigit())]


def _celestial_gwcs(sci: fits.Header) -> Any | None:
    """The gwcs of a SCI header with a gnomonic RA/Dec WCS (TAN or TAN-SIP, any number of
    axes: a ramp's first two), else None."""
    if not str(sci.get("CTYPE1", "")).startswith("RA---TAN"):
        return None
    return gwcs_from_fits(WCS(sci, naxis=2))


def _tree(hdul: fits.HDUList, name: str, fits_sha256: str) -> dict[str, Any]:
    headers = [h.header for h in hdul if h.name != ASDF_EXTNAME]
    sci = hdul["SCI"].header if "SCI" in hdul else None
    extra: dict[str, Any] = {}
    wcs = None if sci is None else _celestial_gwcs(sci)
    if wcs is not None:
        extra["wcs"] = wcs
    tree = product_tree(headers, extra)
    for index, hdu in enumerate(hdul):
        if index and hdu.is_image and hdu.data is not None:
            key = "data" if hdu.name == "SCI" else hdu.name.lower()
            tree[key] = np.ascontiguousarray(hdu.data)  # native order, scaling applied
    tree["extra_fits"] = {"PRIMARY": {"header": _rows(hdul[0].header)}}
    if sci is not None:
        tree["extra_fits"]["SCI"] = {"header": _rows(sci, _STRUCTURAL)}
    mark: dict[str, Any] = {"format": ASDF_FORMAT, "version": ASDF_VERSION, "fits_name": name,
                            "fits_sha256": fits_sha256}
    if PROVENANCE_EXTNAME in hdul and "JSON" in hdul[PROVENANCE_EXTNAME].columns.names:
        prov = Provenance.from_hdu(hdul[PROVENANCE_EXTNAME], name)
        mark["provenance"] = json.loads(prov.to_json())  # plain JSON types
    tables = {hdu.name: {name: _plain(hdu.data[name]) for name in hdu.columns.names}
              for hdu in hdul[1:] if isinstance(hdu, fits.BinTableHDU)
              and hdu.name not in (ASDF_EXTNAME, PROVENANCE_EXTNAME)}
    if tables:
        mark["tables"] = tables
    tree["obsflow"] = mark
    return tree


def _plain(column: Any) -> list[Any]:
    """A FITS table column as a list of plain Python values (bytes decoded)."""
    return [v.decode() if isinstance(v, bytes) else v for v in np.asarray(column).tolist()]


def write_asdf_copy(fits_path: Path, path: Path | None = None,
                    fits_sha256: str | None = None) -> Written:
    """Write the ASDF form of the FITS product ``fits_path`` atomically (default name:
    :func:`asdf_name`); its path, sha256 and size.  The same FITS file always gives the
    same bytes.  ``fits_sha256`` is the FITS file's hex sha256 when its writer knows it
    (else it is computed).

    Raises
    ------
    ProductFileError
        ``fits_path`` is not a whole FITS file.
    """
    path = asdf_name(fits_path) if path is None else Path(path)
    with open_fits(Path(fits_path), "a FITS product") as hdul:
        tree = _tree(hdul, Path(fits_path).name, fits_sha256 or sha256_file(Path(fits_path)))
        af = asdf_file(tree)
        with atomic_path(path) as tmp:
            af.write_to(tmp)
    return Written(path, sha256_file(path), path.stat().st_size)


@dataclass(frozen=True)
class AsdfProduct:
    """An obsflow pure-ASDF product read back (:func:`read_asdf_product`).

    Attributes
    ----------
    primary : fits.Header
        The FITS product's primary header (``extra_fits.PRIMARY``).
    sci_header : fits.Header
        Its SCI header: the non-structural keywords (``extra_fits.SCI``) and
        ``NAXIS``/``NAXISn`` of the ``data`` array.
    arrays : dict of str to ndarray
        Every array of the tree (``data`` is SCI), read into memory.
    provenance : Provenance or None
        Its provenance, when the FITS product had a PROVENANCE table.
    fits_name, fits_sha256 : str
        The FITS twin's file name and hex sha256.
    tables : dict
        The FITS form's other tables (EXTNAME -> column -> list of values).
    """

    primary: fits.Header
    sci_header: fits.Header
    arrays: dict[str, np.ndarray]
    provenance: Provenance | None
    fits_name: str
    fits_sha256: str
    tables: dict[str, dict[str, list[Any]]]


def _header(rows: Any, path: Path, where: str) -> fits.Header:
    try:
        return fits.Header([tuple(row) for row in rows])
    except (TypeError, ValueError) as exc:
        raise ProductFileError(f"{path.name}: {where} is not a list of [keyword, value, "
                               f"comment] rows ({exc})") from exc


def read_asdf_product(path: Path | str) -> AsdfProduct:
    """Read an obsflow pure-ASDF product (headers, arrays, provenance).

    Raises
    ------
    ProductFileError
        No such file, not an ASDF file, an ASDF file that is not an obsflow
        product (no ``obsflow.format`` :data:`ASDF_FORMAT`: a foreign ASDF), a
        newer layout, or no ``data`` array.
    """
    import asdf

    path = Path(path)
    if not path.is_file():
        raise ProductFileError(f"{path}: no such file")
    with path.open("rb") as fh:
        if not fh.read(8).startswith(b"#ASDF"):
            raise ProductFileError(f"{path.name}: not an ASDF file (no '#ASDF' header line)")
    try:
        af = asdf.open(path, memmap=False, lazy_load=False)
    except Exception as exc:  # asdf raises many types for a damaged file
        raise ProductFileError(f"{path.name}: not a readable ASDF file ({exc})") from exc
    with af:
        tree = af.tree
        mark = tree.get("obsflow")
        if not isinstance(mark, dict) or mark.get("format") != ASDF_FORMAT:
            raise ProductFileError(f"{path.name}: an ASDF file that is not an obsflow product "
                                   f"(no obsflow.format = {ASDF_FORMAT!r}); only products "
                                   "obsflow wrote (write_asdf_copy) are accepted")
        if int(mark.get("version", 0)) > ASDF_VERSION:
            raise ProductFileError(f"{path.name}: obsflow ASDF layout version "
                                   f"{mark.get('version')}; this obsflow reads up to "
                                   f"{ASDF_VERSION}")
        arrays = {key: np.array(value) for key, value in tree.items()
                  if key not in ("meta", "extra_fits", "obsflow", "history")
                  and hasattr(value, "dtype") and hasattr(value, "shape")}
        if "data" not in arrays:
            raise ProductFileError(f"{path.name}: no 'data' array (the SCI image)")
        extra = tree.get("extra_fits", {})
        primary = _header(extra.get("PRIMARY", {}).get("header", []), path,
                          "extra_fits.PRIMARY.header")
        sci = _header(extra.get("SCI", {}).get("header", []), path, "extra_fits.SCI.header")
        data = arrays["data"]
        sci["NAXIS"] = data.ndim
        for axis, size in enumerate(reversed(data.shape), start=1):
            sci[f"NAXIS{axis}"] = size
        prov = mark.get("provenance")
        provenance = None if prov is None else Provenance.from_dict(prov)
        return AsdfProduct(primary, sci, arrays, provenance, str(mark.get("fits_name", "")),
                           str(mark.get("fits_sha256", "")),
                           dict(mark.get("tables", {})))
