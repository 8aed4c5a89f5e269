"""SIA v2 query parameters -> conditions on the ObsCore view.

Parameter names are case-insensitive; several values of one parameter are
OR-ed, different parameters AND-ed (SIA 2.0, DALI).  Supported:

=============  ==============================================================
``POS``        ``CIRCLE ra dec r``, ``RANGE ra1 ra2 dec1 dec2``,
               ``POLYGON ra1 dec1 ra2 dec2 ra3 dec3 ...`` (convex), degrees;
               matches products whose **footprint** (``s_region``) overlaps
               the shape
``BAND``       ``lo hi`` wavelength interval in metres (``-Inf``/``+Inf`` open)
               overlapping ``[em_min, em_max]``
``TIME``       ``lo hi`` MJD interval overlapping ``[t_min, t_max]``
``FOV``, ``SPATRES``, ``EXPTIME``, ``TIMERES``, ``SPECRP``
               ``lo hi`` interval containing ``s_fov``, ``s_resolution``,
               ``t_exptime``, ``t_resolution``, ``em_res_power``
``ID``, ``COLLECTION``, ``FACILITY``, ``INSTRUMENT``, ``DPTYPE``, ``TARGET``,
``FORMAT``     exact string match of the ObsCore column
``CALIB``      calibration level (integer)
``POL``        polarization state (this archive has none: matches nothing)
``MAXREC``     at most this many rows (0: metadata only)
=============  ==============================================================

Only images and cubes are served (:data:`SIA_TYPES`): a time series's light
curve (``timeseries``, ECSV) is in the ObsCore view (TAP), not an image.

Every shape is a :class:`~obsflow.archive.footprints.Region` searched with
:func:`~obsflow.archive.footprints.overlap_clause` (the footprints' HEALPix
cells as an indexed prefilter, then the exact overlap test).  Bad values raise
:class:`~obsflow.exceptions.VOQueryError` (HTTP 400).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, and_, false, or_

from obsflow.archive.footprints import Region, overlap_clause
from obsflow.archive.limits import check_text
from obsflow.archive.sky import unit_vector
from obsflow.exceptions import VOQueryError

__all__ = ["MAX_VALUES", "MAX_VALUE_LENGTH", "SIA_TYPES", "STRING_PARAMS", "sia2_conditions"]

SIA_TYPES = ("image", "cube")
"""ObsCore ``dataproduct_type`` values SIA serves (Simple *Image* Access)."""

MAX_VALUES = 100
"""Most values of one parameter accepted."""

MAX_VERTICES = 100
"""Most vertices of a POLYGON."""

MAX_VALUE_LENGTH = 4000
"""Longest value of one parameter, characters (a 100-vertex POLYGON needs about 2000)."""

STRING_PARAMS = {"ID": "obs_publisher_did", "COLLECTION": "obs_collection",
                 "FACILITY": "facility_name", "INSTRUMENT": "instrument_name",
                 "DPTYPE": "dataproduct_type", "TARGET": "target_name",
                 "FORMAT": "access_format"}
"""String parameters and the ObsCore column they match."""

RANGE_PARAMS = {"FOV": "s_fov", "SPATRES": "s_resolution", "EXPTIME": "t_exptime",
                "TIMERES": "t_resolution", "SPECRP": "em_res_power"}
"""Interval parameters matched against one column."""

_CONSTRAINTS = {"POS", "BAND", "TIME", "CALIB", "POL", *RANGE_PARAMS, *STRING_PARAMS}
"""Parameters that constrain the query (MAXREC, RESPONSEFORMAT, ... are read elsewhere)."""

Expr = ColumnElement  # type: ignore[type-arg]


def _float(param: str, text: str) -> float:
    word = text.strip().lower().lstrip("+")
    try:
        value = {"inf": math.inf, "-inf": -math.inf}.get(word)
        value = float(word) if value is None else value
    except ValueError:
        raise VOQueryError(f"{param}: {text!r} is not a number") from None
    if math.isnan(value):
        raise VOQueryError(f"{param}: NaN is not allowed")
    return value


def _numbers(param: str, text: str) -> list[float]:
    return [_float(param, word) for word in text.split()]


def _interval(param: str, text: str) -> tuple[float, float]:
    values = _numbers(param, text)
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or values[0] > values[1]:
        raise VOQueryError(f"{param}: expected 'lo hi' with lo <= hi, got {text!r}")
    return values[0], values[1]


def _check_sky(param: str, ra: Sequence[float], dec: Sequence[float]) -> None:
    if any(not 0 <= a <= 360 for a in ra) or any(not -90 <= d <= 90 for d in dec):
        raise VOQueryError(f"{param}: need 0 <= ra <= 360 and -90 <= dec <= 90 (degrees)")


def _circle(values: list[float]) -> Expr:
    if len(values) != 3:
        raise VOQueryError("POS: CIRCLE needs ra dec radius")
    ra, dec, radius = values
    _check_sky("POS", [ra], [dec])
    if not 0 < radius <= 180:
        raise VOQueryError("POS: CIRCLE radius must be in (0, 180] degrees")
    return overlap_clause(Region.circle(ra, dec, radius))


def _range(values: list[float]) -> Expr:
    if len(values) != 4:
        raise VOQueryError("POS: RANGE needs ra1 ra2 dec1 dec2")
    ra1, ra2, dec1, dec2 = values
    _check_sky("POS", [v for v in (ra1, ra2) if math.isfinite(v)],
               [v for v in (dec1, dec2) if math.isfinite(v)])
    if dec1 > dec2:
        raise VOQueryError("POS: RANGE needs dec1 <= dec2")
    ra1, ra2 = max(ra1, 0.0), min(ra2, 360.0)
    return overlap_clause(Region.box(ra1, ra2, max(dec1, -90.0), min(dec2, 90.0)))


def _polygon(values: list[float]) -> Expr:
    if len(values) < 6 or len(values) % 2 or len(values) > 2 * MAX_VERTICES:
        raise VOQueryError(f"POS: POLYGON needs 3 to {MAX_VERTICES} vertices (ra dec pairs)")
    ra, dec = values[0::2], values[1::2]
    _check_sky("POS", ra, dec)
    vertices = np.array([unit_vector(a, d) for a, d in zip(ra, dec, strict=True)])
    normals = np.cross(vertices, np.roll(vertices, -1, axis=0))
    centre = vertices.sum(axis=0)
    if np.linalg.norm(centre) < 1e-9:
        raise VOQueryError("POS: POLYGON is degenerate")
    centre /= np.linalg.norm(centre)
    if (normals @ centre < 0).all():
        normals = -normals  # clockwise vertices
    sides = normals @ vertices.T
    if (normals @ centre <= 0).any() or (sides < -1e-12).any():
        raise VOQueryError("POS: POLYGON must be convex, smaller than a hemisphere, "
                           "without repeated vertices")
    return overlap_clause(Region.polygon(tuple(values)))


def _pos(text: str) -> Expr:
    shape, _, rest = text.strip().partition(" ")
    makers = {"CIRCLE": _circle, "RANGE": _range, "POLYGON": _polygon}
    maker = makers.get(shape.upper())
    if maker is None:
        raise VOQueryError(f"POS: unknown shape {shape!r}; use CIRCLE, RANGE or POLYGON")
    return maker(_numbers("POS", rest))


def _overlap(param: str, text: str, low: Expr, high: Expr) -> Expr:
    lo, hi = _interval(param, text)
    parts = []
    if math.isfinite(hi):
        parts.append(low <= hi)
    if math.isfinite(lo):
        parts.append(high >= lo)
    return and_(*parts) if parts else low.is_not(None)


def _within(param: str, text: str, column: Expr) -> Expr:
    lo, hi = _interval(param, text)
    parts = [column >= lo] if math.isfinite(lo) else []
    if math.isfinite(hi):
        parts.append(column <= hi)
    return and_(*parts) if parts else column.is_not(None)


CALIB_LEVELS = range(5)
"""ObsCore calibration levels a CALIB value may name (0 raw ... 4 analysis)."""


def _calib(text: str, column: Expr) -> Expr:
    word = text.strip()
    level = int(word) if word.lstrip("+-").isdigit() and len(word) < 20 else None
    if level not in CALIB_LEVELS:
        raise VOQueryError(f"CALIB: {text[:40]!r} is not an integer level (0-4)")
    return column == level


def _one(name: str, text: str, exprs: dict[str, Any]) -> Expr | None:
    if name == "POS":
        return _pos(text)
    if name == "BAND":
        return _overlap(name, text, exprs["em_min"], exprs["em_max"])
    if name == "TIME":
        return _overlap(name, text, exprs["t_min"], exprs["t_max"])
    if name in RANGE_PARAMS:
        return _within(name, text, exprs[RANGE_PARAMS[name]])
    if name in STRING_PARAMS:
        return exprs[STRING_PARAMS[name]] == check_text(name, text)
    if name == "CALIB":
        return _calib(text, exprs["calib_level"])
    if name == "POL":
        return false()
    return None


def sia2_conditions(params: dict[str, list[str]], exprs: dict[str, Any]) -> list[Expr]:
    """One condition per constrained parameter (values OR-ed); unknown parameters are ignored.

    ``params`` maps upper-case parameter names to their values.
    """
    conditions = []
    for name, values in params.items():
        if len(values) > MAX_VALUES:
            raise VOQueryError(f"{name}: at most {MAX_VALUES} values")
        if name in _CONSTRAINTS and any(len(text) > MAX_VALUE_LENGTH for text in values):
            raise VOQueryError(f"{name}: a value longer than {MAX_VALUE_LENGTH} characters")
        parts = [part for text in values if (part := _one(name, text, exprs)) is not None]
        if parts:
            conditions.append(or_(*parts) if len(parts) > 1 else parts[0])
    return conditions
