"""``/vo/tap``: TAP sync queries in ADQL over ``ivoa.ObsCore``, with the VOSI documents.

``POST`` (form-encoded) or ``GET`` ``/vo/tap/sync`` with ``REQUEST=doQuery``,
``LANG=ADQL``, ``QUERY``, optional ``FORMAT``/``RESPONSEFORMAT`` (votable)
and ``MAXREC``; parameter names in any case.  Rows the caller may not see
are not in the view the query reads.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from obsflow.archive.vo.common import (
    MAX_PARAM_LENGTH,
    XML_OK,
    VoCall,
    add_query_endpoints,
    add_vosi_endpoints,
    parse_maxrec,
    xml_response,
)
from obsflow.archive.vo.tap_async import add_async_endpoints
from obsflow.archive.vo.tap_examples import examples_xhtml
from obsflow.archive.vo.tap_sql import TapRequest, run_adql
from obsflow.archive.vo.votable import results_votable, tables_xml
from obsflow.exceptions import VOQueryError

__all__ = ["router", "tap_sync"]

router = APIRouter(prefix="/vo/tap", tags=["vo"])

_FORMATS = {"votable", "application/x-votable+xml", "text/xml", "votable/td"}
_LANGS = {"ADQL", "ADQL-2.0", "ADQL-2.1"}


def _single(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[-1].strip() if values else None


def tap_sync(call: VoCall) -> bytes:
    """Check the TAP parameters, run the ADQL and return the VOTable."""
    request = _single(call.params, "REQUEST")
    if request is not None and request.lower() != "doquery":
        raise VOQueryError(f"REQUEST={request!r} is not supported; use REQUEST=doQuery")
    lang = _single(call.params, "LANG") or "ADQL"
    if lang.upper() not in _LANGS:
        raise VOQueryError(f"LANG={lang!r} is not supported; use LANG=ADQL")
    fmt = _single(call.params, "RESPONSEFORMAT") or _single(call.params, "FORMAT") or "votable"
    if fmt.lower() not in _FORMATS:
        raise VOQueryError(f"FORMAT={fmt!r} is not supported; use votable")
    query = _single(call.params, "QUERY")
    if not query:
        raise VOQueryError("QUERY is missing")
    tap = TapRequest(call.viewer, call.now, call.base_url, call.archive.settings.authority,
                     parse_maxrec(call.params))
    with call.archive.session() as session:
        result = run_adql(session, query, tap)
    return results_votable(result.columns, result.rows, result.overflow,
                           datalink_url=f"{call.base_url}/vo/datalink/links")


add_query_endpoints(router, "/sync", tap_sync, name="sync",
                    summary="TAP sync query (ADQL -> VOTable)",
                    about="Run an ADQL query synchronously.", params={
    "REQUEST": {"type": "string", "enum": ["doQuery"]},
    "LANG": {"type": "string", "enum": sorted(_LANGS)},
    "QUERY": {"type": "string", "minLength": 1, "maxLength": MAX_PARAM_LENGTH,
              "description": "ADQL 2.1: one SELECT on ivoa.ObsCore and TAP_SCHEMA "
                             "(docs/archive.md)"},
    "FORMAT": {"type": "string", "enum": sorted(_FORMATS)},
    "RESPONSEFORMAT": {"type": "string", "enum": sorted(_FORMATS)},
    "MAXREC": {"type": "integer", "minimum": 0, "description": "at most this many rows"},
}, required=["QUERY"])


add_vosi_endpoints(router, "tap", "TAP, tables, availability and capabilities endpoints "
                   "(absolute URLs).")


@router.get("/tables", response_class=Response, summary="VOSI tables", responses=XML_OK)
def tables() -> Response:
    """Schemas ``ivoa`` (``ivoa.ObsCore``) and ``TAP_SCHEMA`` with their tables and columns."""
    return xml_response(tables_xml())


@router.get("/examples", response_class=Response, summary="DALI examples")
def examples() -> Response:
    """Example ADQL queries (XHTML with DALI RDFa markup)."""
    return Response(examples_xhtml(), media_type="application/xhtml+xml")


add_async_endpoints(router, tap_sync)
