"""``/api/composites``: colour composites of targets observed in three or more filters."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from obsflow.archive.api.deps import DbSession, Now, ViewerDep, get_archive
from obsflow.archive.api.responses import VIEWER_ERRORS, binary, errors
from obsflow.archive.api.search import NAME_PATTERN
from obsflow.archive.limits import INT32_MAX
from obsflow.archive.previews import IMAGE_SUFFIXES, PREVIEW_KINDS
from obsflow.archive.schema import Composite
from obsflow.archive.search import get_composite, list_composites

__all__ = ["router"]

router = APIRouter(prefix="/api/composites", tags=["composites"],
                   responses=errors(*VIEWER_ERRORS))


def _as_dict(request: Request, row: Composite) -> dict[str, Any]:
    base = str(request.base_url).rstrip("/") + f"/api/composites/{row.id}/image"
    return {"id": row.id, "program": row.program, "target_name": row.target_name,
            "filters": row.filters.split(","), "product_ids": row.product_ids.split(","),
            "width": row.width, "height": row.height,
            "release_date": row.release_date.isoformat(),
            "images": {kind: f"{base}?kind={kind}" for kind in IMAGE_SUFFIXES}}


@router.get("", summary="List colour composites")
def composites(request: Request, session: DbSession, viewer: ViewerDep, now: Now,
               target: Annotated[str | None, Query(max_length=128, pattern=NAME_PATTERN)] = None
               ) -> dict[str, Any]:
    """Composites the caller may see (all three inputs visible)."""
    rows = list_composites(session, viewer, now, target)
    return {"results": [_as_dict(request, row) for row in rows]}


@router.get("/{composite_id}/image", response_class=Response, summary="Composite image",
            responses={200: binary("The composite image", *sorted(set(PREVIEW_KINDS.values()))),
                       **errors(404)})
def composite_image(composite_id: Annotated[int, Path(ge=1, le=INT32_MAX)], request: Request, session: DbSession, viewer: ViewerDep,
                    now: Now, kind: Literal["png", "jpeg", "thumb"] = "png") -> Response:
    """The composite as PNG, JPEG or JPEG thumbnail."""
    row = get_composite(session, composite_id, viewer, now)
    data = get_archive(request).settings.store.read_bytes(row.path + IMAGE_SUFFIXES[kind])
    return Response(data, media_type=PREVIEW_KINDS[kind])
