"""``/api/search``: find products by program, target, cone, filter, instrument, time, level."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request

from obsflow.archive.api.deps import DbSession, Now, ViewerDep
from obsflow.archive.api.products import links
from obsflow.archive.api.responses import VIEWER_ERRORS, errors
from obsflow.archive.search import Cone, SearchQuery, search_products

__all__ = ["NAME_PATTERN", "router"]

router = APIRouter(prefix="/api", tags=["search"])

NAME_PATTERN = r"^[A-Za-z0-9 _.+:()\-]+$"
"""Characters a target, filter or instrument name may hold in a query."""
Level = Literal["1", "2a", "2b", "3"]
Kind = Literal["uncal", "rate", "rateints", "cal", "i2d", "crf", "phot", "clr", "cat", "segm"]


def _cone(ra: float | None, dec: float | None, radius: float | None) -> Cone | None:
    given = [v is not None for v in (ra, dec, radius)]
    if any(given) and not all(given):
        raise HTTPException(400, "a cone search needs all of ra, dec and radius (degrees)")
    if ra is None or dec is None or radius is None:
        return None
    return Cone(ra, dec, radius)


@router.get("/search", summary="Search products",
            responses=errors(400, *VIEWER_ERRORS))
def search(  # noqa: PLR0913 - one parameter per documented search field
    request: Request, session: DbSession, viewer: ViewerDep, now: Now,
    program: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9]{1,16}$")] = None,
    target: Annotated[str | None, Query(
        max_length=128, pattern=NAME_PATTERN,
        description="part of the target name, any case (CAL finds CAL-FIELD)")] = None,
    ra: Annotated[float | None, Query(ge=0, le=360, allow_inf_nan=False)] = None,
    dec: Annotated[float | None, Query(ge=-90, le=90, allow_inf_nan=False)] = None,
    radius: Annotated[float | None, Query(gt=0, le=10, allow_inf_nan=False,
                                          description="cone radius, degrees")] = None,
    filter: Annotated[str | None, Query(max_length=32, pattern=NAME_PATTERN)] = None,
    instrument: Annotated[str | None, Query(max_length=64, pattern=NAME_PATTERN)] = None,
    t_min: Annotated[float | None, Query(ge=0, le=1e6, allow_inf_nan=False,
                                         description="MJD UTC")] = None,
    t_max: Annotated[float | None, Query(ge=0, le=1e6, allow_inf_nan=False)] = None,
    level: Level | None = None,
    kind: Kind | None = None,
    all_versions: bool = False,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Products the caller may see, newest version only unless ``all_versions``; JSON pages."""
    if t_min is not None and t_max is not None and t_min > t_max:
        raise HTTPException(400, "t_min must not be after t_max")
    query = SearchQuery(program=program, target=target, cone=_cone(ra, dec, radius),
                        filter=filter, instrument=instrument, t_min=t_min, t_max=t_max,
                        level=level, kind=kind, latest_only=not all_versions, page=page,
                        page_size=page_size)
    result = search_products(session, query, viewer, now)
    for row in result.results:
        row["links"] = links(request, row["product_id"], ["png", "jpeg", "thumb"])
    return {"total": result.total, "page": result.page, "page_size": result.page_size,
            "results": result.results}
