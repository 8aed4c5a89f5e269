"""``/vo/sia2``: SIA v2 image search over the ObsCore view, with its VOSI documents.

pyvo's ``SIA2Service(url)`` reads ``{url}/capabilities`` and then queries
the absolute ``accessURL`` it finds there (built from this request's own
host and port); the query answers a VOTable of ObsCore rows, or a VOTable
error (400 for a bad parameter).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from obsflow.archive.schema import Exposure, Product
from obsflow.archive.vo.common import (
    VoCall,
    add_vosi_endpoints,
    parse_maxrec,
    vo_answer,
)
from obsflow.archive.vo.obscore import COLUMNS, obscore_columns, obscore_select
from obsflow.archive.vo.sia2 import sia2_conditions
from obsflow.archive.vo.tap_sql import result_columns
from obsflow.archive.vo.votable import results_votable
from obsflow.exceptions import VOQueryError

__all__ = ["router", "sia2_query"]

router = APIRouter(prefix="/vo/sia2", tags=["vo"])

_RESPONSE_FORMATS = {"votable", "application/x-votable+xml", "text/xml",
                     "application/x-votable+xml;content=datalink"}


def sia2_query(call: VoCall) -> bytes:
    """Run one SIA2 query (parameters in ``call``) and return the VOTable."""
    fmt = call.params.get("RESPONSEFORMAT", ["votable"])[-1].strip().lower()
    if fmt not in _RESPONSE_FORMATS:
        raise VOQueryError(f"RESPONSEFORMAT {fmt!r} is not supported; use votable")
    maxrec = parse_maxrec(call.params)
    exprs = obscore_columns(call.base_url, call.archive.settings.authority)
    names = [c.name for c in COLUMNS]
    stmt = (obscore_select([exprs[n].label(n) for n in names], call.viewer, call.now)
            .where(*sia2_conditions(call.params, exprs))
            .order_by(Exposure.t_min, Product.id).limit(maxrec + 1))
    with call.archive.session() as session:
        rows = [tuple(row) for row in session.execute(stmt)]
    return results_votable(result_columns(names), rows[:maxrec], overflow=len(rows) > maxrec)


@router.get("/query", response_class=Response, summary="SIA v2 query (VOTable)")
async def query(request: Request) -> Response:
    """POS, BAND, TIME, COLLECTION, INSTRUMENT, DPTYPE, CALIB, MAXREC, ... (see docs/archive.md)."""
    return await vo_answer(request, sia2_query)


@router.post("/query", response_class=Response, summary="SIA v2 query (VOTable), form body")
async def query_form(request: Request) -> Response:
    """The parameters of ``GET /vo/sia2/query`` in a form body."""
    return await vo_answer(request, sia2_query)


add_vosi_endpoints(router, "sia2", "The SIA2 query endpoint's absolute URL, for clients "
                   "such as pyvo.")
