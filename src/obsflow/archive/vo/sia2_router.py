"""``/vo/sia2``: SIA v2 image search over the ObsCore view, with its VOSI documents.

pyvo's ``SIA2Service(url)`` reads ``{url}/capabilities`` and then queries
the absolute ``accessURL`` it finds there (built from this request's own
host and port); the query answers a VOTable of ObsCore rows, or a VOTable
error (400 for a bad parameter).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from obsflow.archive.schema import Exposure, Product
from obsflow.archive.vo.common import (
    VoCall,
    add_query_endpoints,
    add_vosi_endpoints,
    parse_maxrec,
)
from obsflow.archive.vo.obscore import COLUMNS, obscore_columns, obscore_select, result_columns
from obsflow.archive.vo.sia2 import (
    CALIB_LEVELS,
    MAX_VALUE_LENGTH,
    MAX_VALUES,
    RANGE_PARAMS,
    SIA_TYPES,
    STRING_PARAMS,
    sia2_conditions,
)
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
            .where(Product.dataproduct_type.in_(SIA_TYPES), *sia2_conditions(call.params, exprs))
            .order_by(Exposure.t_min, Product.id).limit(maxrec + 1))
    with call.archive.session() as session:
        rows = [tuple(row) for row in session.execute(stmt)]
    return results_votable(result_columns(names), rows[:maxrec], overflow=len(rows) > maxrec,
                           datalink_url=f"{call.base_url}/vo/datalink/links")


def _params() -> dict[str, dict[str, Any]]:
    text = {"type": "string", "maxLength": MAX_VALUE_LENGTH}
    level = {"type": "integer", "minimum": min(CALIB_LEVELS), "maximum": max(CALIB_LEVELS)}
    # one value, or several (repeated names: OR-ed)
    many: dict[str, Any] = {"anyOf": [text, {"type": "array", "items": text,
                                             "maxItems": MAX_VALUES}]}
    params: dict[str, dict[str, Any]] = {
        "POS": {**many, "description": "CIRCLE ra dec r | RANGE ra1 ra2 dec1 dec2 | "
                                       "POLYGON ra1 dec1 ... (degrees)"},
        "BAND": {**many, "description": "lo hi wavelength, metres (-Inf/+Inf open)"},
        "TIME": {**many, "description": "lo hi, MJD"},
        **{name: {**many, "description": f"lo hi interval of {column}"}
           for name, column in RANGE_PARAMS.items()},
        **{name: {**many, "description": f"exact {column}"} for name, column in STRING_PARAMS.items()},
        "CALIB": {"anyOf": [level, {"type": "array", "items": level, "maxItems": MAX_VALUES}],
                  "description": "calibration level"},
        "POL": {**many, "description": "polarization state (none here: matches nothing)"},
        "MAXREC": {"type": "integer", "minimum": 0, "description": "at most this many rows"},
        "RESPONSEFORMAT": {"type": "string", "enum": sorted(_RESPONSE_FORMATS)},
    }
    return params


add_query_endpoints(router, "/query", sia2_query, name="query", summary="SIA v2 query (VOTable)",
                    about="POS, BAND, TIME, COLLECTION, INSTRUMENT, DPTYPE, CALIB, MAXREC, ... "
                          "(docs/archive.md).", params=_params())


add_vosi_endpoints(router, "sia2", "The SIA2 query endpoint's absolute URL, for clients "
                   "such as pyvo.")
