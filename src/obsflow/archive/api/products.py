"""``/api/products``: metadata, versions, provenance, lineage, diffs, download and previews.

Links follow the access policy: a product's versions, its inputs and the
products made from it, and the inputs named in its provenance, list only
products the caller may see; a diff with a hidden product is a 404 like a
missing one.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from starlette.responses import Response

from obsflow.archive.api.deps import DbSession, Now, ViewerDep, get_archive
from obsflow.archive.api.download import product_response
from obsflow.archive.api.head import HEAD_SCOPE_KEY
from obsflow.archive.api.responses import VIEWER_ERRORS, binary, errors
from obsflow.archive.previews import PREVIEW_KINDS
from obsflow.archive.schema import Preview
from obsflow.archive.search import (
    diff_products,
    get_deep_zoom,
    get_preview,
    get_product,
    get_product_file,
    product_dict,
    product_files,
    product_history,
)
from obsflow.exceptions import ProductNotFoundError

__all__ = ["check_product_id", "links", "router"]

router = APIRouter(prefix="/api/products", tags=["products"],
                   responses=errors(404, *VIEWER_ERRORS))

_PRODUCT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
PreviewKind = Literal["png", "jpeg", "thumb"]
FileFormat = Literal["asdf"]


def check_product_id(product_id: str) -> str:
    """``product_id`` if it has the shape of one; else not found (never a path)."""
    if not _PRODUCT_ID.match(product_id) or ".." in product_id:
        raise ProductNotFoundError(f"no product {product_id[:100]!r}")
    return product_id


def links(request: Request, product_id: str, previews: list[str]) -> dict[str, Any]:
    """Absolute URLs of a product's download and previews."""
    base = str(request.base_url).rstrip("/") + f"/api/products/{product_id}"
    return {"metadata": base, "download": f"{base}/download",
            "previews": {kind: f"{base}/preview?kind={kind}" for kind in previews}}


def _with_links(request: Request, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    base = str(request.base_url).rstrip("/") + "/api/products/"
    return [{**row, "metadata": base + row["product_id"]} for row in rows]


@router.get("/{product_id}", summary="Metadata, versions, provenance and lineage of a product")
def product_metadata(product_id: str, request: Request, session: DbSession, viewer: ViewerDep,
                     now: Now) -> dict[str, Any]:
    """Catalog metadata, checksum, links, and:

    * ``versions``: every version of the same exposure and kind (run,
      created, software, recipe, reference context, ``is_latest``);
    * ``provenance``: the whole provenance document (references with
      sha256, every step with its parameters, inputs with their
      ``product_id``, input files);
    * ``inputs`` / ``outputs``: the products it was made from and those
      made from it;
    * ``files``: its files in other formats (its pure ASDF form: format,
      filename, size, sha256, content type, download link).
    """
    product, exposure = get_product(session, check_product_id(product_id), viewer, now)
    kinds = session.scalars(select(Preview.kind).where(Preview.product_pk == product.id)).all()
    history = product_history(session, product, viewer, now)
    for key in ("versions", "inputs", "outputs"):
        history[key] = _with_links(request, history[key])
    found = links(request, product.product_id, sorted(kinds))
    files = [{**f, "download": f"{found['download']}?format={f['format']}"}
             for f in product_files(session, product)]
    return {**product_dict(product, exposure), "run": product.run, "uuid": product.uuid,
            "ref_context": product.ref_context, **history, "files": files, "links": found}


@router.get("/{product_id}/diff/{other_product_id}",
            summary="What changed from one product version to another")
def product_diff(product_id: str, other_product_id: str, session: DbSession, viewer: ViewerDep,
                 now: Now) -> dict[str, Any]:
    """Changes from ``product_id`` to ``other_product_id``: software, recipe, context, run,
    reference files added / removed / replaced (per type, with sha256), steps added or
    removed and their status and parameters changed, inputs and input files added or
    removed (see ``docs/archive.md``)."""
    return diff_products(session, check_product_id(product_id),
                         check_product_id(other_product_id), viewer, now)


@router.get("/{product_id}/download", summary="Download a product (HTTP Range supported)",
            response_class=Response,
            responses={200: binary("The whole file", "application/fits", "application/asdf",
                                   "text/x-ecsv; charset=utf-8"),
                       206: binary("The requested byte ranges (several: multipart/byteranges)",
                                   "application/fits", "application/asdf",
                                   "text/x-ecsv; charset=utf-8", "multipart/byteranges"),
                       **errors(416, 503)})
async def download(product_id: str, request: Request, session: DbSession, viewer: ViewerDep,
                   now: Now, range_header: Annotated[str | None, Header(alias="range")] = None,
                   if_range: Annotated[str | None, Header(alias="if-range")] = None,
                   file_format: Annotated[FileFormat | None, Query(
                       alias="format", description="another file of the product: its pure "
                       "ASDF form (404 if it has none)")] = None) -> Response:
    """Stream the file (FITS; a light curve: ECSV text; with ``format=asdf`` its pure ASDF
    form); ``X-Checksum-SHA256`` and ``Repr-Digest`` carry its sha256.

    ``Range`` (GET only, RFC 9110): ``bytes=first-last``, ``bytes=first-`` or
    ``bytes=-suffix``, several separated by commas (answered as
    ``multipart/byteranges``); other units or invalid syntax are ignored;
    a range set entirely past the end answers 416.  With ``If-Range`` other
    than the ETag (the quoted sha256) the whole file is sent.
    """
    product = await run_in_threadpool(get_product_file, session, check_product_id(product_id),
                                      file_format, viewer, now)
    head = request.method != "GET" or request.scope.get(HEAD_SCOPE_KEY, False)
    if head or (if_range is not None and if_range != f'"{product.sha256}"'):
        range_header = None
    archive = get_archive(request)
    return await run_in_threadpool(product_response, archive.settings.store,
                                   request.app.state.checksums, product, range_header)


@router.get("/{product_id}/preview", summary="Preview image of a product",
            response_class=Response,
            responses={200: binary("The preview image", *sorted(set(PREVIEW_KINDS.values())))})
def preview(product_id: str, request: Request, session: DbSession, viewer: ViewerDep, now: Now,
            kind: Annotated[PreviewKind, Query(description="png, jpeg or thumb")] = "png"
            ) -> Response:
    """Asinh-stretched PNG, JPEG or JPEG thumbnail."""
    row = get_preview(session, check_product_id(product_id), kind, viewer, now)
    data = get_archive(request).settings.store.read_bytes(row.path)
    return Response(data, media_type=PREVIEW_KINDS[kind],
                    headers={"Cache-Control": "private, max-age=300"})


DEEP_ZOOM_TILE = r"^\d{1,2}/\d{1,6}_\d{1,6}\.jpg$"
"""A deep-zoom tile's path below ``deepzoom_files/``: ``<level>/<column>_<row>.jpg``."""


@router.get("/{product_id}/deepzoom.dzi", summary="A colour image's deep-zoom descriptor",
            response_class=Response,
            responses={200: binary("The Deep Zoom Image descriptor (XML)", "application/xml")})
def deep_zoom_descriptor(product_id: str, request: Request, session: DbSession,
                         viewer: ViewerDep, now: Now) -> Response:
    """The Deep Zoom descriptor of a colour image (``clr``) as OpenSeadragon reads it; its
    tiles are at ``deepzoom_files/<level>/<column>_<row>.jpg`` beside it.  404 for another
    kind, a product you may not see, or a colour image made without a pyramid."""
    return _deep_zoom_file(request, session, viewer, now, product_id, None, "application/xml")


@router.get("/{product_id}/deepzoom_files/{level}/{tile}",
            summary="A tile of a colour image's deep-zoom pyramid", response_class=Response,
            responses={200: binary("The tile", "image/jpeg")})
def deep_zoom_tile(product_id: str, level: int, tile: str, request: Request,
                   session: DbSession, viewer: ViewerDep, now: Now) -> Response:
    """One JPEG tile of the pyramid (level 0 is one pixel; the last level the full image)."""
    part = f"{level}/{tile}"
    if not re.match(DEEP_ZOOM_TILE, part):
        raise ProductNotFoundError(f"no deep-zoom tile {part[:60]!r}: expected "
                                   "<level>/<column>_<row>.jpg")
    return _deep_zoom_file(request, session, viewer, now, product_id, part, "image/jpeg")


def _deep_zoom_file(request: Request, session: DbSession, viewer: ViewerDep, now: Now,
                    product_id: str, part: str | None, media_type: str) -> Response:
    key = get_deep_zoom(session, check_product_id(product_id), part, viewer, now)
    try:  # one read: a missing key is the 404, no separate existence check
        content = get_archive(request).settings.store.read_bytes(key)
    except (FileNotFoundError, IsADirectoryError):
        raise ProductNotFoundError(f"product {product_id!r} has no deep zoom "
                                   f"{'descriptor' if part is None else 'tile ' + part}") from None
    return Response(content, media_type=media_type,
                    headers={"Cache-Control": "private, max-age=300"})
