"""The ``ASDF`` extension of obsflow's FITS products, as JWST's own products carry it.

A JWST FITS product ends with a BINTABLE extension named ``ASDF`` holding one
row, one column ``ASDF_METADATA``: the bytes of an ASDF file whose tree is the
product's data model (``meta`` ...), its arrays written as references to the
FITS extensions that hold them (an ``ndarray`` node whose ``source`` is
``fits:SCI,1``), and, where the product has one, the gwcs WCS
(``meta.wcs``).  The JWST tools (stdatamodels, jwst) read their metadata and
WCS from it; FITS-only tools ignore it.

:func:`with_asdf` appends that extension to the HDUs a writer yields: the
``meta`` tree comes from the primary header's keywords (:data:`KEYWORD_PATHS`,
the JWST schema's paths for the keywords obsflow writes), the array
references from each image HDU's header, so it works on lazily made HDUs too
and the arrays are never held twice.  The FITS headers stay the authority
(stdatamodels reads them over the tree, as no FITS hash is stored); the tree
gives the tools that look only at it the same values.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
from astropy.io import fits

__all__ = ["ARRAY_KEYS", "ASDF_EXTNAME", "KEYWORD_PATHS", "asdf_bytes", "asdf_file", "asdf_hdu",
           "meta_tree",
           "product_tree", "warm_up", "with_asdf"]

ASDF_EXTNAME = "ASDF"
"""Name of the BINTABLE extension holding the ASDF tree (stdatamodels' name)."""

ASDF_COLUMN = "ASDF_METADATA"
"""Its one column: the ASDF file's bytes as one uint8 vector."""

_NDARRAY_TAG = "tag:stsci.edu:asdf/core/ndarray-1.1.0"
"""The ASDF tag of an array node (the version stdatamodels 6 writes)."""

KEYWORD_PATHS: dict[str, str] = {
    "TELESCOP": "telescope", "DATAMODL": "model_type", "CAL_VER": "calibration_software_version",
    "INSTRUME": "instrument.name", "DETECTOR": "instrument.detector",
    "FILTER": "instrument.filter",
    "PROGRAM": "observation.program_number", "OBSERVTN": "observation.observation_number",
    "VISIT": "observation.visit_number", "EXPOSURE": "observation.exposure_number",
    "PI_NAME": "program.pi_name", "TITLE": "program.title",
    "TARGNAME": "target.catalog_name", "TARG_RA": "target.ra", "TARG_DEC": "target.dec",
    "RA_V1": "pointing.ra_v1", "DEC_V1": "pointing.dec_v1", "PA_V3": "pointing.pa_v3",
    "PATTTYPE": "dither.primary_type", "PATT_NUM": "dither.position_number",
    "NUMDTHPT": "dither.total_points",
    "READPATT": "exposure.readpatt", "NINTS": "exposure.nints", "NGROUPS": "exposure.ngroups",
    "NFRAMES": "exposure.nframes", "GROUPGAP": "exposure.groupgap",
    "TFRAME": "exposure.frame_time", "TGROUP": "exposure.group_time",
    "EXPSTART": "exposure.start_time", "EXPMID": "exposure.mid_time",
    "EXPEND": "exposure.end_time", "EFFEXPTM": "exposure.exposure_time",
    "SUBARRAY": "subarray.name", "SUBSTRT1": "subarray.xstart", "SUBSTRT2": "subarray.ystart",
    "SUBSIZE1": "subarray.xsize", "SUBSIZE2": "subarray.ysize",
    "BKGLEVEL": "background.level", "BKGMETH": "background.method",
    "BKGSUB": "background.subtracted", "PIXFRAC": "resample.pixfrac",
    "NEXPOSUR": "visit.total_exposures",
}
"""Primary-header keyword -> its path under ``meta`` in the JWST schemas (stdatamodels'
``fits_keyword`` of each path), for every keyword obsflow writes that JWST defines."""

ARRAY_KEYS = {"SCI": "data"}
"""Tree key of an image extension when it is not its EXTNAME in lower case (JWST's names)."""

_BITPIX = {8: "uint8", 16: "int16", 32: "int32", 64: "int64", -32: "float32", -64: "float64"}
_UNSIGNED = {16: ("uint16", 1 << 15), 32: ("uint32", 1 << 31), 64: ("uint64", 1 << 63)}


def meta_tree(header: fits.Header) -> dict[str, Any]:
    """The ``meta`` tree of a primary header: every :data:`KEYWORD_PATHS` keyword it holds,
    nested by path, with the header's value (types as the JWST schema types them)."""
    meta: dict[str, Any] = {}
    for key, path in KEYWORD_PATHS.items():
        if key not in header:
            continue
        *parents, leaf = path.split(".")
        node = meta
        for part in parents:
            node = node.setdefault(part, {})
        value = header[key]
        node[leaf] = value.item() if isinstance(value, np.generic) else value
    return meta


def _array_node(header: fits.Header, index: int) -> Any:
    """An ``ndarray`` node pointing at the image extension with ``header`` (its data's shape
    and type as astropy reads them: BZERO-offset integers are unsigned)."""
    from asdf.tagged import TaggedDict

    bitpix = int(header["BITPIX"])
    datatype = _BITPIX[bitpix]
    if bitpix in _UNSIGNED and header.get("BZERO") == _UNSIGNED[bitpix][1] \
            and header.get("BSCALE", 1) == 1:
        datatype = _UNSIGNED[bitpix][0]
    name = header.get("EXTNAME")
    source = f"fits:{name},{header.get('EXTVER', 1)}" if name else f"fits:{index}"
    shape = [int(header[f"NAXIS{k}"]) for k in range(int(header["NAXIS"]), 0, -1)]
    return TaggedDict({"source": source, "shape": shape, "datatype": datatype,
                       "byteorder": "big"}, _NDARRAY_TAG)


def asdf_bytes(tree: Mapping[str, Any]) -> bytes:
    """``tree`` written as an ASDF file (the same tree always gives the same bytes)."""
    buffer = io.BytesIO()
    asdf_file(tree).write_to(buffer)
    return buffer.getvalue()


def asdf_file(tree: Mapping[str, Any]) -> Any:
    """An ``asdf.AsdfFile`` of ``tree`` that writes the same bytes in every process.

    asdf lists the extensions a write used (``history.extensions``) in the
    order it iterates a set of them, hashed by object identity: that order,
    and with it a product's bytes, changed from process to process.  This
    file's serialization contexts keep that set in one that iterates sorted by
    extension URI and class, so the list comes out in one order at the one
    write.
    """
    return _sorted_history_file()(dict(tree))


@functools.cache
def _sorted_history_file() -> type:
    """The ``asdf.AsdfFile`` subclass of :func:`asdf_file` (made once, on first use)."""
    import asdf

    from obsflow.exceptions import DataModelError

    _cache_referenced_schemas()

    class ByUri(set):  # type: ignore[type-arg]
        """A set of asdf extension proxies that iterates sorted by URI and class name."""

        def __iter__(self) -> Iterator[Any]:
            return iter(sorted(set.__iter__(self), key=lambda e: (
                str(e.extension_uri or ""), str(e.class_name or ""))))

    class SortedHistoryFile(asdf.AsdfFile):  # type: ignore[misc]
        """An AsdfFile whose history lists the extensions used in a sorted order."""

        def _create_serialization_context(self, *args: Any, **kwargs: Any) -> Any:
            context = super()._create_serialization_context(*args, **kwargs)
            if not hasattr(context, _USED_ATTRIBUTE):
                raise DataModelError(f"asdf {asdf.__version__}: its serialization context has no "
                                   f"{_USED_ATTRIBUTE}; obsflow.models.asdfmeta needs updating")
            setattr(context, _USED_ATTRIBUTE, ByUri())
            return context

    return SortedHistoryFile


def _cache_referenced_schemas() -> None:
    """Parse each ASDF schema a validation refers to (``$ref``) once per process.

    asdf validates a tree on every write; the schemas its validator reaches
    through ``$ref`` (the gwcs and transform schemas refer to about 35) are
    read from asdf's resource manager and parsed as YAML again on every write
    (asdf 3 to 6: its ``_make_schema_loader`` caches only schemas found by URL
    on disk).  That parsing is about a third of an ASDF extension's cost
    (0.016 of 0.045 s per product).  The loader is wrapped so that a URL's
    parsed schema is kept, as asdf already keeps the schemas it finds by tag
    (shared, never mutated by the validator).  Without that private function
    (another asdf) nothing is changed: writes are then only slower.
    """
    from asdf import schema

    make = getattr(schema, "_make_schema_loader", None)
    if make is None or getattr(make, "obsflow_cached", False):
        return
    loader = functools.lru_cache(maxsize=None)(make())

    def cached_loader() -> Any:
        return loader

    cached_loader.obsflow_cached = True  # type: ignore[attr-defined]
    schema._make_schema_loader = cached_loader


_USED_ATTRIBUTE = "_SerializationContext__extensions_used"
"""Where asdf's ``SerializationContext`` keeps the set of extensions used (asdf 3 to 6)."""


def warm_up() -> None:
    """Import asdf, asdf-astropy and gwcs and write one small tree with a distorted gwcs, so
    that a worker's first product does not pay for them (about 1 s of imports, converters
    and schemas on a first write; 0.03 s after this)."""
    from obsflow.models.gwcsmodel import gwcs_from_fits
    from obsflow.models.pointing import detector_wcs
    from obsflow.profiles import Distortion

    distortion = Distortion(a={"2_0": 1e-6}, b={"0_2": 1e-6})
    wcs = detector_wcs(10.0, 20.0, 30.0, (0.0, 0.0, 0.0), 0.1, (8, 8, 1, 1, 8, 8), distortion)
    asdf_bytes({"meta": {"wcs": gwcs_from_fits(wcs)}})


def asdf_hdu(tree: Mapping[str, Any]) -> fits.BinTableHDU:
    """The ``ASDF`` BINTABLE extension holding ``tree`` (stdatamodels' layout)."""
    data = np.frombuffer(asdf_bytes(tree), np.uint8)[None, :]
    column = fits.Column(name=ASDF_COLUMN, format=f"{data.shape[1]}B", array=data)
    return fits.BinTableHDU.from_columns([column], name=ASDF_EXTNAME)


def product_tree(headers: Iterable[fits.Header],
                 extra_meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ASDF tree of a product whose HDU headers are ``headers`` (the primary first).

    It holds ``meta`` (:func:`meta_tree` of the primary header, updated with
    ``extra_meta``, e.g. ``{"wcs": <gwcs.WCS>}``) and one array node per image
    extension with data (``data`` for SCI, else the EXTNAME in lower case),
    pointing at that extension.
    """
    tree: dict[str, Any] = {}
    for index, header in enumerate(headers):
        if index == 0:
            tree["meta"] = meta_tree(header)
        elif header.get("XTENSION") == "IMAGE" and header.get("NAXIS", 0):
            name = str(header.get("EXTNAME", ""))
            tree[ARRAY_KEYS.get(name, name.lower())] = _array_node(header, index)
    tree.setdefault("meta", {}).update(extra_meta or {})
    return tree


def with_asdf(hdus: Iterable[fits.PrimaryHDU | fits.ImageHDU | fits.BinTableHDU],
              extra_meta: Mapping[str, Any] | None = None
              ) -> Iterator[fits.PrimaryHDU | fits.ImageHDU | fits.BinTableHDU]:
    """Yield ``hdus`` (the primary first), then the ``ASDF`` extension describing them
    (:func:`product_tree`).

    Each HDU's header is read after the HDU is yielded (written), so header
    cards the writer adds are seen; only headers are kept, so a lazily made
    HDU's array goes once written.
    """
    headers = []
    for hdu in hdus:
        yield hdu
        headers.append(hdu.header)
        del hdu
    yield asdf_hdu(product_tree(headers, extra_meta))
