"""``/api/products``: metadata, download and previews of one product."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from starlette.responses import Response

from obsflow.archive.api.deps import DbSession, Now, ViewerDep, get_archive
from obsflow.archive.api.download import product_response
from obsflow.archive.errors import ProductNotFoundError
from obsflow.archive.previews import PREVIEW_KINDS
from obsflow.archive.schema import Preview, Product
from obsflow.archive.search import get_preview, get_product, product_dict

__all__ = ["check_product_id", "links", "router"]

router = APIRouter(prefix="/api/products", tags=["products"])

_PRODUCT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
PreviewKind = Literal["png", "jpeg", "thumb"]


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


@router.get("/{product_id}", summary="Metadata of one product")
def product_metadata(product_id: str, request: Request, session: DbSession, viewer: ViewerDep,
                     now: Now) -> dict[str, Any]:
    """Catalog metadata, provenance, checksum, versions and links of a product."""
    product, exposure = get_product(session, check_product_id(product_id), viewer, now)
    kinds = session.scalars(select(Preview.kind).where(Preview.product_pk == product.id)).all()
    versions = session.execute(
        select(Product.product_id, Product.version, Product.created)
        .where(Product.exposure_id == product.exposure_id, Product.kind == product.kind)
        .order_by(Product.version)
    ).all()
    return {**product_dict(product, exposure),
            "versions": [{"product_id": p, "version": v, "created": c.isoformat()}
                         for p, v, c in versions],
            "links": links(request, product.product_id, sorted(kinds))}


@router.get("/{product_id}/download", summary="Download a product (HTTP Range supported)",
            response_class=Response)
async def download(product_id: str, request: Request, session: DbSession, viewer: ViewerDep,
                   now: Now, range_header: Annotated[str | None, Header(alias="range")] = None
                   ) -> Response:
    """Stream the FITS file; ``X-Checksum-SHA256`` and ``Repr-Digest`` carry its sha256."""
    product, _ = await run_in_threadpool(get_product, session, check_product_id(product_id),
                                         viewer, now)
    archive = get_archive(request)
    return await run_in_threadpool(product_response, archive.settings.store,
                                   request.app.state.checksums, product, range_header)


@router.get("/{product_id}/preview", summary="Preview image of a product",
            response_class=Response)
def preview(product_id: str, request: Request, session: DbSession, viewer: ViewerDep, now: Now,
            kind: Annotated[PreviewKind, Query(description="png, jpeg or thumb")] = "png"
            ) -> Response:
    """Asinh-stretched PNG, JPEG or JPEG thumbnail."""
    row = get_preview(session, check_product_id(product_id), kind, viewer, now)
    data = get_archive(request).settings.store.read_bytes(row.path)
    return Response(data, media_type=PREVIEW_KINDS[kind],
                    headers={"Cache-Control": "private, max-age=300"})
