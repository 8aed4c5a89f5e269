"""Bulk downloads of the products selected on the search page: a curl script or a zip.

``/download/script`` is like MAST's curl scripts: one ``curl`` line per
product, each file checked against its sha256 after download
(``sha256sum -c``).  Proprietary files need credentials the script cannot
hold: it sends ``Authorization: Bearer $OBSFLOW_TOKEN`` when that variable
is set (``obsflow tokens create USER`` makes one).

``/api/download/zip`` streams one zip of the files (stored, zip64; see
:mod:`obsflow.archive.zipstream`), chunk by chunk as it reads them: the
server never holds the archive in memory nor writes it to disk.  It starts
with ``README.txt`` (what is inside, what was left out) and
``MANIFEST.sha256`` (``sha256sum -c MANIFEST.sha256`` checks every file).
Each file is hashed while it is sent; one that differs from its catalog
sha256 stops the stream before the zip's central directory, so the client
never holds a zip that looks whole.  The caller is the bearer token or the
session cookie (the search page's second button); at most
:attr:`~obsflow.archive.api.deps.ApiSettings.zip_max_products` products and
``zip_max_bytes`` bytes per zip (more: 400 saying so).

Both hold every file of each product: a product with its pure ASDF form
(``[products] formats``) gives its FITS file and its ``.asdf`` file
(``download?format=asdf``), each with its own sha256.

Both list only the products the caller may see: a hidden or unknown id is
counted (in a comment, in the README), never named, and its bytes are never
sent.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shlex
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.orm import selectinload
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from obsflow.archive.api.deps import ApiSettings, get_archive, identify
from obsflow.archive.api.download import CHUNK
from obsflow.archive.api.head import HEAD_SCOPE_KEY
from obsflow.archive.api.responses import binary, errors
from obsflow.archive.policy import Viewer
from obsflow.archive.schema import Product
from obsflow.archive.search import visible_products
from obsflow.archive.store import ProductStore
from obsflow.archive.web.common import WebCaller, web_caller
from obsflow.archive.web.display import size_text
from obsflow.archive.zipstream import ZipMember, stream_zip, text_member
from obsflow.exceptions import ChecksumMismatchError, SelectionError

__all__ = ["MAX_SCRIPT_PRODUCTS", "PRODUCT_ID_PATTERN", "ZIP_CHUNK", "ProductFileItem",
           "check_selection", "download_script", "product_file_items", "router", "zip_members"]

logger = logging.getLogger(__name__)

router = APIRouter(tags=["web"])

MAX_SCRIPT_PRODUCTS = 1000
"""Most products in one script (more ids are refused)."""

PRODUCT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$"
"""What a product id looks like (anything else is refused with 400)."""

ZIP_CHUNK = CHUNK
"""Bytes of a product file read (and sent) at a time into a zip, as for one file's download
(1 MiB): what the server holds per zip download is a few of these, whatever the zip's size."""

ZIP_NAME = "obsflow-download.zip"
"""The file name a zip download is saved under (``Content-Disposition``)."""


@dataclass(frozen=True)
class ProductFileItem:
    """One file of a selected product: its own (``query`` empty) or its file of another
    format (``query`` ``?format=asdf``); ``size`` in bytes, ``sha256`` hex."""

    product_id: str
    query: str
    filename: str
    path: str
    size: int
    sha256: str
    created: datetime


def product_file_items(products: list[Product]) -> list[ProductFileItem]:
    """Every file of ``products`` (loaded with their ``files``): each product's own, then its
    other formats'."""
    items = []
    for p in products:
        items.append(ProductFileItem(p.product_id, "", p.filename, p.path, p.size, p.sha256,
                                     p.created))
        items += [ProductFileItem(p.product_id, f"?format={f.format}", f.filename, f.path,
                                  f.size, f.sha256, p.created)
                  for f in sorted(p.files, key=lambda f: f.format)]
    return items


def check_selection(asked: list[str], limit: int) -> list[str]:
    """The distinct ids of ``asked``, sorted; :class:`SelectionError` naming the first id
    that is not a product id, or when more than ``limit`` ids are asked."""
    if len(asked) > limit:
        raise SelectionError(f"at most {limit} products per download ({len(asked)} selected)")
    ids = sorted(set(asked))
    wrong = next((i for i in ids if not re.fullmatch(PRODUCT_ID_PATTERN, i)), None)
    if wrong is not None:
        raise SelectionError(f"id {wrong[:100]!r} is not a product id (letters, digits, "
                             "_ . -, at most 96)")
    return ids


def _ids_parameter(limit: int) -> dict[str, Any]:
    """``openapi_extra`` of a route taking the selected product ids (``?id=`` each)."""
    return {"parameters": [{
        "name": "id", "in": "query", "required": False,
        "schema": {"type": "array", "items": {"type": "string", "pattern": PRODUCT_ID_PATTERN},
                   "maxItems": limit},
        "style": "form", "explode": True, "description": "product ids"}]}


def download_script(base_url: str, rows: list[ProductFileItem], left_out: int) -> str:
    """The script fetching the files ``rows`` from ``base_url``; ``left_out`` ids asked for
    were not available."""
    lines = ["#!/bin/sh",
             f"# obsflow archive: {len(rows)} product(s) from {base_url}",
             "# Proprietary products need a token: OBSFLOW_TOKEN=<token> sh <this script>",
             "set -eu",
             "fetch() {",
             '  curl --fail --location --silent --show-error '
             '${OBSFLOW_TOKEN:+-H "Authorization: Bearer $OBSFLOW_TOKEN"} -o "$2" "$1"',
             '  echo "$3  $2" | sha256sum -c --quiet -',
             "}"]
    if left_out:
        lines.append(f"# {_left_out_text(left_out)}")
    for row in rows:
        url = f"{base_url}/api/products/{row.product_id}/download{row.query}"
        lines.append(f"fetch {shlex.quote(url)} {shlex.quote(row.filename)} {row.sha256}")
    lines.append(f'echo "downloaded {len(rows)} file(s)"')
    return "\n".join(lines) + "\n"


def _left_out_text(left_out: int) -> str:
    return (f"{left_out} selected product(s) are not available to you "
            "(unknown, or not public yet) and are left out")


def _products(request: Request, viewer: Viewer, now: datetime, ids: list[str]) -> list[Product]:
    """The products of ``ids`` that ``viewer`` may see at ``now``, by product id."""
    stmt = (visible_products(viewer, now).options(selectinload(Product.files))
            .where(Product.product_id.in_(ids)).order_by(Product.product_id))
    with get_archive(request).session() as session:
        found = session.execute(stmt).all()
        session.expunge_all()
    return [product for product, _ in found]


def _rows(request: Request, caller: WebCaller, ids: list[str]) -> tuple[list[ProductFileItem], int]:
    """The files of the visible products of ``ids`` and how many ids were left out."""
    products = _products(request, caller.viewer, caller.now, ids)
    return product_file_items(products), len(ids) - len(products)


@router.get("/download/script", summary="Download script of selected products (shell)",
            response_class=PlainTextResponse, openapi_extra=_ids_parameter(MAX_SCRIPT_PRODUCTS),
            responses={200: {"description": "A POSIX shell script of curl commands",
                             "content": {"text/x-shellscript": {"schema": {"type": "string"}}}},
                       400: {"description": "Too many ids, or one that is not a product id",
                             "content": {"text/plain": {"schema": {"type": "string"}}}}})
async def script(request: Request) -> Response:
    """A ``sh`` script downloading the selected products the visitor may see (``?id=`` each)."""
    try:
        ids = check_selection(request.query_params.getlist("id"), MAX_SCRIPT_PRODUCTS)
    except SelectionError as exc:
        return PlainTextResponse(str(exc), status_code=400)
    caller = await run_in_threadpool(web_caller, request)
    rows, left_out = await run_in_threadpool(_rows, request, caller, ids)
    base = str(request.base_url).rstrip("/")
    body = download_script(base, rows, left_out)
    return Response(body, media_type="text/x-shellscript", headers={
        "Content-Disposition": 'attachment; filename="obsflow-download.sh"'})


def _file_chunks(store: ProductStore, product: ProductFileItem) -> Iterator[bytes]:
    """The bytes of a product's file, :data:`ZIP_CHUNK` at a time, checked against its sha256
    (:class:`ChecksumMismatchError` after the last chunk when they differ)."""
    digest = hashlib.sha256()
    with store.open(product.path) as handle:
        while block := handle.read(ZIP_CHUNK):
            digest.update(block)
            yield block
    if digest.hexdigest() != product.sha256:
        logger.error("zip download stopped: %s (%s) fails its sha256", product.product_id,
                     product.path)
        raise ChecksumMismatchError(f"{product.product_id}: the stored file fails its sha256")


def _member_names(products: list[ProductFileItem]) -> list[str]:
    """Each file's path in the zip: its name, or ``<product id>/<file name>`` for
    file names that several selected products share (versions of one product)."""
    counts = Counter(p.filename for p in products)
    return [p.filename if counts[p.filename] == 1 else f"{p.product_id}/{p.filename}"
            for p in products]


def _readme(base_url: str, products: list[ProductFileItem], names: list[str], left_out: int,
            now: datetime) -> str:
    count = len({p.product_id for p in products})
    lines = [f"obsflow archive: {count} product(s), {len(products)} file(s) from {base_url}, "
             f"{now.strftime('%Y-%m-%d %H:%M:%S')} UTC",
             "",
             "Check every file with:  sha256sum -c MANIFEST.sha256",
             ""]
    if left_out:
        lines += [_left_out_text(left_out) + ".",
                  "Proprietary products of your programs need your credentials: log in, or",
                  "send 'Authorization: Bearer <token>' (obsflow tokens create USER).", ""]
    lines += [f"{p.product_id}  {name}  {p.size} bytes" for p, name in zip(products, names,
                                                                             strict=True)]
    return "\n".join(lines) + "\n"


def zip_members(store: ProductStore, base_url: str, products: list[Product], left_out: int,
                now: datetime) -> list[ZipMember]:
    """The members of the zip of ``products`` (loaded with their ``files``): ``README.txt``,
    ``MANIFEST.sha256``, then each product's files (read from ``store`` only when its turn
    comes)."""
    files = product_file_items(products)
    names = _member_names(files)
    manifest = "".join(f"{p.sha256}  {name}\n" for p, name in zip(files, names, strict=True))
    members = [text_member("README.txt", _readme(base_url, files, names, left_out, now), now),
               text_member("MANIFEST.sha256", manifest, now)]
    for item, name in zip(files, names, strict=True):
        members.append(ZipMember(name, item.size, partial(_file_chunks, store, item),
                                 item.created))
    return members


def _zip_selection(request: Request, ids: list[str]) -> tuple[list[Product], int, datetime]:
    """The caller's visible products of ``ids`` (checked against the zip's byte limit), how
    many ids were left out, and now."""
    settings: ApiSettings = request.app.state.api_settings
    now = settings.clock()
    with get_archive(request).session() as session:
        viewer = identify(request, session, now)
    products = _products(request, viewer, now, ids)
    total = sum(p.size for p in product_file_items(products))
    if total > settings.zip_max_bytes:
        raise SelectionError(
            f"the {len(products)} selected products hold {size_text(total)}, more than the "
            f"{size_text(settings.zip_max_bytes)} one zip may hold: select fewer, or use the "
            "download script (/download/script)")
    return products, len(ids) - len(products), now


class _ZipResponse(StreamingResponse):
    """The zip's response: a HEAD reads no file; a file failing its sha256 ends the
    response unfinished (the server closes the connection; :func:`_file_chunks` logged
    the product) instead of passing the error to handlers whose answer can no longer be
    sent."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get(HEAD_SCOPE_KEY):
            self.body_iterator = _nothing()
        try:
            await super().__call__(scope, receive, send)
        except ChecksumMismatchError:
            return


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # (an async generator that yields nothing)


@router.get("/api/download/zip", summary="Zip of selected products (streamed)",
            response_class=StreamingResponse, tags=["products"],
            openapi_extra=_ids_parameter(ApiSettings.zip_max_products),
            responses={200: binary("A zip (stored, zip64): README.txt, MANIFEST.sha256 and "
                                   "the files the caller may see", "application/zip"),
                       **errors(400, 401, 429)})
async def download_zip(request: Request) -> Response:
    """One zip of the selected products the caller (token or session cookie) may see
    (``?id=`` each), streamed as it is read; hidden or unknown ids are counted in its
    ``README.txt``, never named.  400 when an id is not a product id or the selection
    holds more products or bytes than one zip may."""
    settings: ApiSettings = request.app.state.api_settings
    ids = check_selection(request.query_params.getlist("id"), settings.zip_max_products)
    products, left_out, now = await run_in_threadpool(_zip_selection, request, ids)
    base = str(request.base_url).rstrip("/")
    members = zip_members(get_archive(request).settings.store, base, products, left_out, now)
    return _ZipResponse(stream_zip(members), media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="{ZIP_NAME}"'})
