"""``/download/script``: a shell script that downloads the products selected on the search page.

Like MAST's curl scripts: one ``curl`` line per product, each file checked
against its sha256 after download (``sha256sum -c``).  Only the products
the visitor may see are in the script (a hidden or unknown id is counted
in a comment, never named).  Proprietary files need credentials the script
cannot hold: it sends ``Authorization: Bearer $OBSFLOW_TOKEN`` when that
variable is set (``obsflow users token`` makes one).
"""

from __future__ import annotations

import re
import shlex

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse, Response

from obsflow.archive.api.deps import get_archive
from obsflow.archive.schema import Product
from obsflow.archive.search import visible_products
from obsflow.archive.web.common import WebCaller, web_caller

__all__ = ["MAX_SCRIPT_PRODUCTS", "PRODUCT_ID_PATTERN", "download_script", "router"]

router = APIRouter(tags=["web"])

MAX_SCRIPT_PRODUCTS = 1000
"""Most products in one script (more ids are refused)."""

PRODUCT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$"
"""What a product id looks like (anything else is refused with 400)."""


def download_script(base_url: str, rows: list[tuple[str, str, str]], left_out: int) -> str:
    """The script fetching ``rows`` (product id, file name, sha256) from ``base_url``;
    ``left_out`` ids asked for were not available."""
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
        lines.append(f"# {left_out} selected product(s) are not available to you "
                     "(unknown, or not public yet) and are left out")
    for product_id, filename, sha256 in rows:
        url = f"{base_url}/api/products/{product_id}/download"
        lines.append(f"fetch {shlex.quote(url)} {shlex.quote(filename)} {sha256}")
    lines.append(f'echo "downloaded {len(rows)} file(s)"')
    return "\n".join(lines) + "\n"


def _rows(request: Request, caller: WebCaller, ids: list[str]) -> list[tuple[str, str, str]]:
    stmt = (visible_products(caller.viewer, caller.now)
            .where(Product.product_id.in_(ids)).order_by(Product.product_id))
    with get_archive(request).session() as session:
        found = session.execute(stmt).all()
    return [(p.product_id, p.filename, p.sha256) for p, _ in found]


@router.get("/download/script", summary="Download script of selected products (shell)",
            response_class=PlainTextResponse,
            openapi_extra={"parameters": [{
                "name": "id", "in": "query", "required": False,
                "schema": {"type": "array", "items": {"type": "string",
                                                      "pattern": PRODUCT_ID_PATTERN},
                           "maxItems": MAX_SCRIPT_PRODUCTS},
                "style": "form", "explode": True, "description": "product ids"}]},
            responses={200: {"description": "A POSIX shell script of curl commands",
                             "content": {"text/x-shellscript": {"schema": {"type": "string"}}}},
                       400: {"description": "Too many ids, or one that is not a product id",
                             "content": {"text/plain": {"schema": {"type": "string"}}}}})
async def script(request: Request) -> Response:
    """A ``sh`` script downloading the selected products the visitor may see (``?id=`` each)."""
    asked = request.query_params.getlist("id")
    ids = sorted(set(asked))
    if len(asked) > MAX_SCRIPT_PRODUCTS:
        return PlainTextResponse(f"at most {MAX_SCRIPT_PRODUCTS} products per script",
                                 status_code=400)
    wrong = next((i for i in ids if not re.fullmatch(PRODUCT_ID_PATTERN, i)), None)
    if wrong is not None:
        return PlainTextResponse(f"id {wrong[:100]!r} is not a product id (letters, digits, "
                                 "_ . -, at most 96)", status_code=400)
    caller = await run_in_threadpool(web_caller, request)
    rows = await run_in_threadpool(_rows, request, caller, ids)
    base = str(request.base_url).rstrip("/")
    body = download_script(base, rows, len(ids) - len(rows))
    return Response(body, media_type="text/x-shellscript", headers={
        "Content-Disposition": 'attachment; filename="obsflow-download.sh"'})
