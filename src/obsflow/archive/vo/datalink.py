"""DataLink 1.1 ``{links}``: ``/vo/datalink/links?ID=...``, what belongs to a product.

``ID`` is a product's ``obs_publisher_did`` (``ivo://<authority>/obsflow?<product_id>``)
or its bare ``product_id``; several IDs (repeated, at most :data:`MAX_IDS`) give
their rows one after the other.  Each product the caller may see gets:

=================  ==========================================================
``#this``          the file (its download URL, media type and size); a product
                   with its pure ASDF form has a second ``#this`` row for it
                   (``application/asdf``)
``#preview``       its PNG and JPEG previews; ``#thumbnail`` the small JPEG
``#provenance``    its metadata with the whole provenance (JSON)
``#progenitor``    every input product it was made from (``product_inputs``)
``#derivation``    every product made from it
``#auxiliary``     its other versions (same exposure and kind)
=================  ==========================================================

Links name only products the caller may see (the search functions of
:mod:`obsflow.archive.search` filter in SQL); an ID that is missing or hidden
gets one row with ``error_message`` ``NotFoundFault: ...``, the same words
either way, so a hidden product's existence does not show.

SIA2 and TAP results that carry ``obs_publisher_did`` also carry a DataLink
service descriptor (:func:`service_descriptor`) pointing here, which pyvo's
``iter_datalinks()`` / ``getdatalink()`` follow.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter
from sqlalchemy.orm import Session
from starlette.responses import Response

from obsflow.archive.search import (
    get_product,
    product_lineage,
    product_versions,
)
from obsflow.archive.vo.common import (
    VoCall,
    add_query_endpoints,
    add_vosi_endpoints,
)
from obsflow.archive.vo.obscore import ColumnSpec
from obsflow.archive.vo.sia2 import MAX_VALUE_LENGTH
from obsflow.archive.vo.votable import results_votable
from obsflow.exceptions import ProductNotFoundError, VOQueryError

__all__ = ["DATALINK_TYPE", "LINK_COLUMNS", "MAX_IDS", "links_rows", "router"]

DATALINK_TYPE = "application/x-votable+xml;content=datalink"
"""Media type of a DataLink answer."""

MAX_IDS = 100
"""Most IDs one request may ask about."""

LINK_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("ID", "char", "str", "meta.id;meta.main", description="The ID asked about"),
    ColumnSpec("access_url", "char", "str", "meta.ref.url", description="URL of the linked file"),
    ColumnSpec("service_def", "char", "str", "meta.ref", description="Service descriptor (none)"),
    ColumnSpec("error_message", "char", "str", "meta.code.error",
               description="Why the ID has no links"),
    ColumnSpec("semantics", "char", "str", "meta.code",
               description="What the link is (DataLink core vocabulary)"),
    ColumnSpec("description", "char", "str", "meta.note", description="The link in words"),
    ColumnSpec("content_type", "char", "str", "meta.code.mime",
               description="Media type of the linked file"),
    ColumnSpec("content_length", "long", "num", "phys.size;meta.file", unit="byte",
               description="Size of the linked file"),
)
"""The DataLink 1.1 columns, in order."""

_PREVIEWS = {"png": ("#preview", "image/png"), "jpeg": ("#preview", "image/jpeg"),
             "thumb": ("#thumbnail", "image/jpeg")}


def _product_id(ident: str, authority: str) -> str:
    prefix = f"ivo://{authority}/obsflow?"
    return ident[len(prefix):] if ident.startswith(prefix) else ident


def _row(ident: str, url: str, semantics: str, description: str, content_type: str = "",
         size: int | None = None) -> tuple[Any, ...]:
    return (ident, url, None, None, semantics, description, content_type or None, size)


def _links_of(session: Session, call: VoCall, ident: str) -> list[tuple[Any, ...]]:
    product_id = _product_id(ident, call.archive.settings.authority)
    try:
        product, exposure = get_product(session, product_id, call.viewer, call.now)
    except ProductNotFoundError:
        return [(ident, None, None, f"NotFoundFault: no product {product_id!r}", "#this",
                 None, None, None)]
    api = f"{call.base_url}/api/products"
    rows = [_row(ident, f"{api}/{product_id}/download", "#this",
                 f"{product.kind} v{product.version} of {exposure.obs_id}",
                 product.content_type, product.size)]
    rows += [_row(ident, f"{api}/{product_id}/download?format={f.format}", "#this",
                  f"{product.kind} v{product.version} of {exposure.obs_id} ({f.format})",
                  f.content_type, f.size) for f in sorted(product.files, key=lambda f: f.format)]
    rows += [_row(ident, f"{api}/{product_id}/preview?kind={p.kind}", *_PREVIEWS[p.kind][:1],
                  f"{p.kind} preview ({p.width}x{p.height})", _PREVIEWS[p.kind][1])
             for p in sorted(product.previews, key=lambda p: p.kind) if p.kind in _PREVIEWS]
    rows.append(_row(ident, f"{api}/{product_id}", "#provenance",
                     "metadata, provenance and lineage (JSON)", "application/json"))
    inputs, outputs = product_lineage(session, product, call.viewer, call.now)
    for semantics, links, word in (("#progenitor", inputs, "input"),
                                   ("#derivation", outputs, "made from it")):
        rows += [_row(ident, f"{api}/{link['product_id']}/download", semantics,
                      f"{word}: {link['kind']} v{link['version']} of {link['obs_id']}")
                 for link in links]
    rows += [_row(ident, f"{api}/{v['product_id']}/download", "#auxiliary",
                  f"version {v['version']} of this product"
                  + (" (current)" if v["is_latest"] else ""))
             for v in product_versions(session, product, call.viewer, call.now)
             if v["product_id"] != product_id]
    return rows


_PRINTABLE_ID = re.compile(r"[\x21-\x7e]+")
"""What an identifier may hold: product ids and publisher DIDs are printable ASCII."""


def links_rows(call: VoCall) -> list[tuple[Any, ...]]:
    """The rows of the ``{links}`` answer for the IDs of ``call``."""
    ids = [i.strip() for i in call.params.get("ID", []) if i.strip()]
    if not ids:
        raise VOQueryError("ID: at least one product identifier is needed")
    if len(ids) > MAX_IDS:
        raise VOQueryError(f"ID: at most {MAX_IDS} identifiers")
    for ident in ids:
        if len(ident) > MAX_VALUE_LENGTH or not _PRINTABLE_ID.fullmatch(ident):
            raise VOQueryError(f"ID {ident[:80]!r}: expected a product id or an ivo:// "
                               f"identifier (printable ASCII, no spaces, at most "
                               f"{MAX_VALUE_LENGTH} characters)")
    with call.archive.session() as session:
        return [row for ident in ids for row in _links_of(session, call, ident)]


def links_votable(call: VoCall) -> Response:
    """The ``{links}`` VOTable of ``call``'s IDs."""
    body = results_votable([(c, c.name) for c in LINK_COLUMNS], links_rows(call))
    return Response(body, media_type=DATALINK_TYPE)


router = APIRouter(prefix="/vo/datalink", tags=["vo"])

_ID_TEXT: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": MAX_VALUE_LENGTH}
add_query_endpoints(router, "/links", links_votable, name="links",
                    summary="DataLink {links} of products",
                    about="ID=<obs_publisher_did or product_id> (repeatable).",
                    params={"ID": {"anyOf": [_ID_TEXT, {"type": "array", "items": _ID_TEXT,
                                                        "minItems": 1, "maxItems": MAX_IDS}],
                                   "description": "obs_publisher_did or product_id (repeatable)"}},
                    required=["ID"])

add_vosi_endpoints(router, "datalink", "The DataLink links endpoint's absolute URL.")
