"""Running a parsed ADQL query (:mod:`obsflow.archive.vo.adql`) on the catalog.

One translation for both databases: the syntax tree becomes a SQLAlchemy
statement over the tables of :mod:`obsflow.archive.vo.tap_tables` (each a
subquery: ``ivoa.ObsCore`` carries the exclusive-access policy inside it, so
a query never reads a row its caller may not see); literals are bound
parameters; names resolve only to those tables' columns and to the
functions in :data:`FUNCTIONS`, anything else is refused with a
:class:`~obsflow.exceptions.VOQueryError`.

Geometry: ``CONTAINS(POINT(s_ra, s_dec), CIRCLE(literals))`` on an ObsCore
table, in either argument order of the comparison, is the indexed HEALPix
cone test of :func:`~obsflow.archive.sky.cone_clause` on both databases.
Other shapes use pg_sphere on PostgreSQL (``@`` contains, ``&&`` overlaps,
``<->`` distance) and the functions of :mod:`obsflow.archive.vo.sphere`
registered on the SQLite connection; CONTAINS / INTERSECTS between an
ObsCore row's ``s_region`` (or ``POINT(s_ra, s_dec)``) and a shape of
literals, either argument first, get the indexed HEALPix prefilter first
(:meth:`_Compiler.prefilter`: the footprint cells SIA2 and cone search use,
or the centre's HEALPix index), so they read only the candidates' rows and
answer as without it.

A query that may fail on a row's values (arithmetic, most functions) reads
ObsCore through a ``MATERIALIZED`` CTE, so the policy's filter runs first
and an error can never reveal a hidden row.  Queries run read-only with a
:data:`QUERY_TIMEOUT_S` deadline.
"""

from __future__ import annotations

import itertools
import math
import operator
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    String,
    Text,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    not_,
    null,
    or_,
    select,
    true,
)
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from obsflow.archive.footprints import Region, Spoly, cells_clause, near_clause
from obsflow.archive.footprints import spoint as _spoint
from obsflow.archive.footprints import stcs_spoly as _stcs_spoly
from obsflow.archive.policy import Viewer
from obsflow.archive.sky import cone_clause, cone_ranges
from obsflow.archive.vo import adql, sphere
from obsflow.archive.vo.obscore import ColumnSpec
from obsflow.archive.vo.tap_tables import (
    HIDDEN,
    OBSCORE_TABLE,
    adql_name,
    find_table,
    table_source,
)
from obsflow.exceptions import VOQueryError

__all__ = ["FUNCTIONS", "QUERY_TIMEOUT_S", "TapRequest", "TapResult", "run_adql"]

QUERY_TIMEOUT_S = 10.0
"""A query running longer than this is stopped (VOTable error)."""

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq, "<>": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}
_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
}

_MATH = {  # ADQL name -> (arguments, SQL name)
    "ABS": (1, "abs"), "CEILING": (1, "ceil"), "FLOOR": (1, "floor"), "SQRT": (1, "sqrt"),
    "EXP": (1, "exp"), "LOG": (1, "ln"), "LOG10": (1, "log10"), "SIN": (1, "sin"),
    "COS": (1, "cos"), "TAN": (1, "tan"), "ASIN": (1, "asin"), "ACOS": (1, "acos"),
    "ATAN": (1, "atan"), "DEGREES": (1, "degrees"), "RADIANS": (1, "radians"),
    "POWER": (2, "power"), "ATAN2": (2, "atan2"), "MOD": (2, "mod"), "PI": (0, "pi"),
}
_AGGREGATES = {"COUNT", "SUM", "AVG", "MIN", "MAX"}
_GEOMETRY = {"POINT", "CIRCLE", "BOX", "POLYGON"}
_PREDICATES = {"CONTAINS", "INTERSECTS"}
FUNCTIONS = tuple(sorted({*_MATH, *_AGGREGATES, *_GEOMETRY, *_PREDICATES, "DISTANCE", "COORD1",
                          "COORD2", "ROUND", "TRUNCATE", "COT", "LOWER", "UPPER", "COALESCE"}))
"""Every function ADQL queries may call."""

_SAFE = {"COUNT", "MIN", "MAX", "SUM", "AVG", "LOWER", "UPPER", "COALESCE", *_GEOMETRY,
         *_PREDICATES}
"""Functions that cannot fail on a row's values (given plain columns and literals)."""


@dataclass(frozen=True)
class TapRequest:
    """Who asks, when, from which base URL, and at most how many rows (MAXREC)."""

    viewer: Viewer
    now: datetime
    base_url: str
    authority: str
    maxrec: int


@dataclass(frozen=True)
class TapResult:
    """Output ``(column, name)`` pairs, rows (tuples in that order), and overflow."""

    columns: list[tuple[ColumnSpec, str]]
    rows: list[tuple[Any, ...]]
    overflow: bool


@dataclass
class _Expr:
    """A compiled value: SQL, its kind (num, str, time, region, geom, null) and a column
    description for output; ``geom`` is the shape kind of a geometry value."""

    sql: Any
    kind: str
    spec: ColumnSpec | None = None
    geom: str = ""
    column: tuple[_Source, str] | None = None


@dataclass
class _Source:
    """A table (or sub-query) in a FROM clause: names that qualify it and its columns."""

    names: set[str]
    columns: dict[str, tuple[ColumnSpec, Any]]
    order: list[str]
    hidden: tuple[Any, ...] = ()


@dataclass
class _Scope:
    sources: list[_Source]
    parent: _Scope | None = None

    def resolve(self, ref: adql.ColumnRef) -> tuple[_Source, ColumnSpec, Any]:
        name = ref.name.lower()
        scope: _Scope | None = self
        while scope is not None:
            found = [s for s in scope.sources if name in s.columns
                     and (ref.qualifier is None or ref.qualifier.lower() in s.names)]
            if len(found) > 1:
                raise VOQueryError(f"column {ref.name!r} is ambiguous; qualify it with its "
                                   "table or alias")
            if found:
                spec, sql = found[0].columns[name]
                return found[0], spec, sql
            if ref.qualifier is not None and any(ref.qualifier.lower() in s.names
                                                 for s in scope.sources):
                raise VOQueryError(f"{ref.qualifier} has no column {ref.name!r}")
            scope = scope.parent
        if ref.qualifier is not None and not self._knows(ref.qualifier.lower()):
            raise VOQueryError(f"unknown table or alias {ref.qualifier!r}")
        raise VOQueryError(f"unknown column {ref.name!r}; see /vo/tap/tables for the columns "
                           "of each table")

    def _knows(self, qualifier: str) -> bool:
        scope: _Scope | None = self
        while scope is not None:
            if any(qualifier in s.names for s in scope.sources):
                return True
            scope = scope.parent
        return False


def _risky(node: object) -> bool:
    """True if evaluating the tree could fail on a row's values (see the module)."""
    if isinstance(node, adql.Arith | adql.Neg):
        return True
    if isinstance(node, adql.Func):
        if node.name not in _SAFE:
            return True
        if node.name in _GEOMETRY and not all(isinstance(a, adql.Literal) for a in node.args[1:]):
            return not _is_position(node)
    if isinstance(node, tuple | list):
        return any(_risky(item) for item in node)
    if hasattr(node, "__dataclass_fields__"):
        return any(_risky(getattr(node, name)) for name in node.__dataclass_fields__)
    return False


def _is_position(node: adql.Func) -> bool:
    """POINT(frame, s_ra, s_dec) with plain columns."""
    return (node.name == "POINT" and len(node.args) == 3
            and [getattr(a, "name", "").lower() for a in node.args[1:]] == ["s_ra", "s_dec"])


def _number(node: adql.Value) -> float | None:
    """A numeric literal (or its negation) as a float, else None."""
    if isinstance(node, adql.Neg):
        inner = _number(node.operand)
        return None if inner is None else -inner
    if isinstance(node, adql.Literal) and isinstance(node.value, int | float) \
            and not isinstance(node.value, bool):
        return float(node.value)
    return None


def _literal_region(node: adql.Value) -> Region | None:
    """The footprint-search :class:`Region` bounding a POINT / CIRCLE / BOX / POLYGON of
    numeric literals (ICRS degrees), or None (not such a shape, out of range, or a polygon
    whose bounding cone would reach a hemisphere: no prefilter then)."""
    if not (isinstance(node, adql.Func) and node.name in _GEOMETRY and len(node.args) >= 3):
        return None
    nums = [_number(a) for a in node.args[1:]]
    if any(n is None for n in nums) or not all(math.isfinite(n) for n in nums):  # type: ignore[arg-type]
        return None
    values = tuple(float(n) for n in nums)  # type: ignore[arg-type]
    if node.name == "POINT" and len(values) == 2 and -90 <= values[1] <= 90:
        return Region.circle(values[0], values[1], _POINT_RADIUS)
    if node.name == "CIRCLE" and len(values) == 3 and -90 <= values[1] <= 90 \
            and 0 < values[2] <= 90:
        return Region.circle(*values)
    if node.name == "BOX" and len(values) == 4:
        values = sphere.box_polygon(*values)
    elif node.name != "POLYGON" or len(values) < 6 or len(values) % 2:
        return None
    if any(not -90 <= d <= 90 for d in values[1::2]):
        return None
    vertices = sphere.Shape("polygon", values).vertices
    if np.linalg.norm(vertices.sum(axis=0)) < 1e-9:
        return None
    region = Region.polygon(values)
    return region if region.cones[0][2] < 90 else None


_POINT_RADIUS = 1e-9
"""Degrees: the cone a POINT's prefilter searches (inclusive cells: the point's own)."""


def _time_literal(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().removesuffix("Z"))
    except ValueError:
        raise VOQueryError(f"{text!r} is not an ISO date (YYYY-MM-DD[THH:MM:SS])") from None
    return value.replace(tzinfo=None)


def _like_to_glob(pattern: str) -> str:
    """An ADQL LIKE pattern as a (case-sensitive) SQLite GLOB pattern."""
    special = {"%": "*", "_": "?", "*": "[*]", "?": "[?]", "[": "[[]"}
    return "".join(special.get(ch, ch) for ch in pattern)


def _spec(name: str, datatype: str, unit: str = "", like: ColumnSpec | None = None
          ) -> ColumnSpec:
    if like is not None:
        return ColumnSpec(name, like.datatype, like.kind, like.ucd, like.utype, like.unit,
                          like.description, xtype=like.xtype)
    kind = "str" if datatype == "char" else "num"
    return ColumnSpec(name, datatype, kind, "", unit=unit)


class _Compiler:
    """ADQL tree -> SQLAlchemy for one request (dialect, caller, fence)."""

    def __init__(self, request: TapRequest, dialect: str, fence: bool) -> None:
        self.request = request
        self.pg = dialect == "postgresql"
        self.fence = fence
        self.names = itertools.count()

    # -- FROM ------------------------------------------------------------------------------
    def from_item(self, item: adql.FromItem, scope: _Scope) -> tuple[Any, list[_Source]]:
        if isinstance(item, adql.TableRef):
            table = find_table(item.name)
            if table is None:
                raise VOQueryError(f"unknown table {item.name!r}; this service has "
                                   "ivoa.ObsCore and the TAP_SCHEMA tables (see /vo/tap/tables)")
            sub = table_source(table, self.request.viewer, self.request.now,
                               self.request.base_url, self.request.authority)
            alias = f"t{next(self.names)}"
            fenced = self.fence and table is OBSCORE_TABLE
            sql = (sub.cte(alias).prefix_with("MATERIALIZED") if fenced
                   else sub.subquery(alias))
            names = {item.alias.lower()} if item.alias else {
                table.name.lower(), table.name.split(".")[-1].lower()}
            columns = {adql_name(c): (c, sql.c[adql_name(c)]) for c in table.columns}
            hidden = tuple(sql.c[h] for h in HIDDEN) if table is OBSCORE_TABLE else ()
            return sql, [_Source(names, columns, [adql_name(c) for c in table.columns], hidden)]
        if isinstance(item, adql.SubqueryRef):
            stmt, outputs = self.select(item.query, _Scope([], scope.parent))
            sql = stmt.subquery(f"t{next(self.names)}")
            columns = {name.lower(): (spec, sql.c[label]) for spec, name, label in outputs}
            return sql, [_Source({item.alias.lower()}, columns,
                                 [name.lower() for _, name, _ in outputs])]
        left, lsources = self.from_item(item.left, scope)
        right, rsources = self.from_item(item.right, scope)
        sources = lsources + rsources
        if item.kind == "right":
            left, right = right, left
        if item.kind == "cross":
            on: Any = true()
        elif item.natural or item.using:
            shared = list(item.using) if item.using else [
                n for n in _all_names(lsources) if n in _all_names(rsources)]
            on = and_(true(), *(_column_of(lsources, n) == _column_of(rsources, n)
                                for n in shared))
        else:
            assert item.on is not None
            on = self.condition(item.on, _Scope(sources, scope.parent))
        return (left.join(right, on, isouter=item.kind in ("left", "right"),
                          full=item.kind == "full"), sources)

    # -- SELECT ----------------------------------------------------------------------------
    def select(self, query: adql.Select, outer: _Scope | None = None
               ) -> tuple[Any, list[tuple[ColumnSpec, str, str]]]:
        """The statement and its outputs ``(spec, name, label)``."""
        scope = _Scope([], outer)
        froms = []
        for item in query.from_:
            sql, sources = self.from_item(item, scope)
            froms.append(sql)
            scope.sources.extend(sources)
        outputs: list[tuple[ColumnSpec, str, str]] = []
        columns = []
        for value, alias in query.items:
            for expr, name in self.select_item(value, alias, scope, len(outputs)):
                label = f"c{len(outputs)}"
                columns.append(expr.sql.label(label))
                outputs.append((_output_spec(expr, name), name, label))
        stmt = select(*columns).select_from(*froms)
        if query.distinct:
            stmt = stmt.distinct()
        if query.where is not None:
            stmt = stmt.where(self.condition(query.where, scope))
        if query.group_by:
            stmt = stmt.group_by(*(self.value(v, scope).sql for v in query.group_by))
        if query.having is not None:
            stmt = stmt.having(self.condition(query.having, scope))
        by_name = {name.lower(): col for (_, name, _), col in zip(outputs, columns, strict=True)}
        for value, desc in query.order:
            target = self.order_target(value, by_name, columns, scope)
            stmt = stmt.order_by(target.desc() if desc else target.asc())
        if query.top is not None:
            stmt = stmt.limit(query.top)
        if query.offset:
            stmt = stmt.offset(query.offset)
        return stmt, outputs

    def select_item(self, value: adql.Value | adql.AllColumns, alias: str | None, scope: _Scope,
                    position: int) -> Iterator[tuple[_Expr, str]]:
        if isinstance(value, adql.AllColumns):
            sources = scope.sources
            if value.qualifier is not None:
                sources = [s for s in scope.sources if value.qualifier.lower() in s.names]
                if not sources:
                    raise VOQueryError(f"unknown table or alias {value.qualifier!r}")
            for source in sources:
                for name in source.order:
                    spec, sql = source.columns[name]
                    yield _Expr(sql, spec.kind, spec), name
            return
        expr = self.value(value, scope)
        if expr.kind == "geom":
            raise VOQueryError("a geometry (POINT, CIRCLE, BOX, POLYGON) cannot be selected; "
                               "select its coordinates or use it in CONTAINS / INTERSECTS")
        if alias is None:
            if isinstance(value, adql.ColumnRef):
                alias = adql_name(expr.spec) if expr.spec else value.name
            elif isinstance(value, adql.Func):
                alias = value.name.lower()
            else:
                alias = f"expr{position + 1}"
        yield expr, alias

    def order_target(self, value: adql.Value, by_name: dict[str, Any], columns: list[Any],
                     scope: _Scope) -> Any:
        if isinstance(value, adql.Literal) and isinstance(value.value, int):
            if not 1 <= value.value <= len(columns):
                raise VOQueryError(f"ORDER BY position {value.value} is not a selected column")
            return columns[value.value - 1]
        if isinstance(value, adql.ColumnRef) and value.qualifier is None:
            name = value.name.lower()
            if name in by_name:
                return by_name[name]
        return self.value(value, scope).sql

    # -- conditions ------------------------------------------------------------------------
    def condition(self, cond: adql.Condition, scope: _Scope) -> Any:
        if isinstance(cond, adql.And):
            return and_(*(self.condition(c, scope) for c in cond.items))
        if isinstance(cond, adql.Or):
            return or_(*(self.condition(c, scope) for c in cond.items))
        if isinstance(cond, adql.Not):
            return not_(self.condition(cond.item, scope))
        if isinstance(cond, adql.Exists):
            stmt, _ = self.select(cond.query, scope)
            return exists(stmt)
        if isinstance(cond, adql.Compare):
            geo = self.geometry_compare(cond, scope)
            if geo is not None:
                return geo
            left, right = self.values([cond.left, cond.right], scope, f"comparison {cond.op}")
            return _COMPARE[cond.op](left, right)
        out: Any
        if isinstance(cond, adql.Between):
            value, low, high = self.values([cond.value, cond.low, cond.high], scope, "BETWEEN")
            out = value.between(low, high)
        elif isinstance(cond, adql.InList):
            value, *items = self.values([cond.value, *cond.items], scope, "IN")
            out = value.in_(items)
        elif isinstance(cond, adql.InQuery):
            stmt, outputs = self.select(cond.query, scope)
            if len(outputs) != 1:
                raise VOQueryError("the sub-query of IN must select one column")
            out = self.value(cond.value, scope).sql.in_(stmt.scalar_subquery())
        elif isinstance(cond, adql.IsNull):
            out = self.value(cond.value, scope).sql.is_(None)
        elif isinstance(cond, adql.Like):
            out = self.like(cond, scope)
        else:  # pragma: no cover - the parser builds no other condition
            raise VOQueryError("unsupported condition")
        return not_(out) if getattr(cond, "negated", False) else out

    def like(self, cond: adql.Like, scope: _Scope) -> Any:
        value = self.value(cond.value, scope)
        pattern = self.value(cond.pattern, scope)
        if value.kind not in ("str", "null") or pattern.kind not in ("str", "null"):
            raise VOQueryError("LIKE needs strings")
        if self.pg:
            return value.sql.ilike(pattern.sql) if cond.nocase else value.sql.like(pattern.sql)
        if cond.nocase:
            return func.lower(value.sql).like(func.lower(pattern.sql))
        if not (isinstance(cond.pattern, adql.Literal) and isinstance(cond.pattern.value, str)):
            raise VOQueryError("LIKE needs a string literal as its pattern")
        return value.sql.op("GLOB")(literal(_like_to_glob(cond.pattern.value)))

    def geometry_compare(self, cond: adql.Compare, scope: _Scope) -> Any:
        """``CONTAINS(...) = 1`` / ``1 = CONTAINS(...)`` (and 0, <>) as a condition."""
        call, flag = cond.left, cond.right
        if not isinstance(call, adql.Func):
            call, flag = cond.right, cond.left
        if not (isinstance(call, adql.Func) and call.name in _PREDICATES
                and isinstance(flag, adql.Literal) and cond.op in ("=", "<>")):
            return None
        if flag.value not in (0, 1):
            raise VOQueryError(f"{call.name}(...) is 1 or 0")
        test = self.predicate_sql(call, scope)
        return test if (flag.value == 1) == (cond.op == "=") else not_(test)

    def predicate_sql(self, call: adql.Func, scope: _Scope) -> Any:
        """CONTAINS / INTERSECTS as a SQL boolean."""
        if len(call.args) != 2:
            raise VOQueryError(f"{call.name} takes two geometries")
        a, b = (self.value(arg, scope) for arg in call.args)
        for expr in (a, b):
            if expr.kind not in ("geom", "region"):
                raise VOQueryError(f"{call.name} takes geometries (POINT, CIRCLE, BOX, POLYGON "
                                   "or s_region)")
        cone = self.cone(call, scope)
        if cone is not None:
            return cone
        if self.pg:
            exact = self.pg_predicate(call.name, a, b)
        else:
            name = "obsflow_contains" if call.name == "CONTAINS" else "obsflow_intersects"
            exact = getattr(func, name)(a.sql, b.sql) == 1
        prefilter = self.prefilter(call, scope)
        return exact if prefilter is None else and_(prefilter, exact)

    def prefilter(self, call: adql.Func, scope: _Scope) -> Any:
        """The indexed HEALPix prefilter of a CONTAINS / INTERSECTS between an ObsCore row's
        ``s_region`` or ``POINT(s_ra, s_dec)`` and a shape of literals (either side), or None.

        Whichever predicate it is, a row that passes it has its footprint (or centre) meeting
        the shape, so the shape's bounding cones bound the candidates: ``s_region`` through
        the footprint cells (:func:`~obsflow.archive.footprints.cells_clause`, as SIA2 and
        cone search) and its bounding cone (``s_fov``, arithmetic:
        :func:`~obsflow.archive.footprints.near_clause`), the centre through its HEALPix
        index (as :func:`cone_clause`).
        """
        for row_side, shape_side in (call.args, reversed(call.args)):
            region = _literal_region(shape_side)
            if region is None:
                continue
            found = self.row_geometry(row_side, scope)
            if found is None:
                continue
            source, is_region = found
            cx, cy, cz, hpx, eid = source.hidden
            if is_region:  # then the bounding cones by arithmetic, before the exact test
                vectors = (cx, cy, cz, source.columns["s_fov"][1])
                near = [near_clause(cone, vectors) for cone in region.cones]
                return and_(cells_clause(region, eid), *near)
            return or_(*(hpx.between(lo, hi) for ra, dec, radius in region.cones
                         for lo, hi in cone_ranges(ra, dec, radius)))
        return None

    def row_geometry(self, node: adql.Value, scope: _Scope) -> tuple[_Source, bool] | None:
        """(ObsCore source, True) for its ``s_region`` column, (source, False) for
        ``POINT(frame, s_ra, s_dec)`` of one ObsCore source; else None."""
        if isinstance(node, adql.ColumnRef) and node.name.lower() == "s_region":
            source, _, _ = scope.resolve(node)
            return (source, True) if source.hidden else None
        if isinstance(node, adql.Func) and _is_position(node):
            source, _, _ = scope.resolve(node.args[1])  # type: ignore[arg-type]
            source2, _, _ = scope.resolve(node.args[2])  # type: ignore[arg-type]
            return (source, False) if source is source2 and source.hidden else None
        return None

    def cone(self, call: adql.Func, scope: _Scope) -> Any:
        """The indexed cone test for CONTAINS(POINT(s_ra, s_dec), CIRCLE(literals))."""
        point, circle = call.args
        if call.name == "INTERSECTS" and isinstance(circle, adql.Func) and circle.name == "POINT":
            point, circle = circle, point
        if not (isinstance(point, adql.Func) and _is_position(point)
                and isinstance(circle, adql.Func) and circle.name == "CIRCLE"
                and all(isinstance(v, adql.Literal) for v in circle.args[1:])):
            return None
        source, _, _ = scope.resolve(point.args[1])  # type: ignore[arg-type]
        source2, _, _ = scope.resolve(point.args[2])  # type: ignore[arg-type]
        if source is not source2 or not source.hidden:
            return None
        ra, dec, radius = (float(v.value) for v in circle.args[1:])  # type: ignore[union-attr,arg-type]
        _check_circle(dec, radius)
        return cone_clause(ra % 360.0, dec, radius, source.hidden[:4])  # type: ignore[arg-type]

    def pg_predicate(self, name: str, a: _Expr, b: _Expr) -> Any:
        """CONTAINS / INTERSECTS with pg_sphere; an s_region is a polygon or (for products
        without extent) a position, decided per row."""
        for j, expr in enumerate((a, b)):
            if expr.kind == "region":
                polygon = _Expr(_stcs_spoly(expr.sql), "geom", geom="polygon")
                point = _Expr(self.region_position(expr), "geom", geom="point")
                pair_poly = (polygon, b) if j == 0 else (a, polygon)
                pair_point = (point, b) if j == 0 else (a, point)
                return case((expr.sql.like("POLYGON%"), self.pg_predicate(name, *pair_poly)),
                            else_=self.pg_predicate(name, *pair_point))
        if name == "CONTAINS" or a.geom == "point":
            if b.geom == "point" and a.geom != "point":
                return false()
            return a.sql.op("=")(b.sql) if b.geom == "point" else a.sql.op("@")(b.sql)
        if b.geom == "point":
            return b.sql.op("@")(a.sql)
        return a.sql.op("&&")(b.sql)

    def region_position(self, expr: _Expr) -> Any:
        """The spoint of an s_region that is a position: its table's s_ra / s_dec."""
        if expr.column is None:
            raise VOQueryError("geometry from a region expression is not supported")
        source = expr.column[0]
        return _spoint(source.columns["s_ra"][1], source.columns["s_dec"][1])

    # -- values ----------------------------------------------------------------------------
    def values(self, values: list[adql.Value], scope: _Scope, what: str) -> list[Any]:
        exprs = [self.value(v, scope) for v in values]
        kinds = {e.kind for e in exprs} - {"null"}
        if "time" in kinds:
            out = []
            for v, e in zip(values, exprs, strict=True):
                if e.kind == "str" and isinstance(v, adql.Literal):
                    out.append(literal(_time_literal(str(v.value)), DateTime))
                elif e.kind in ("time", "null"):
                    out.append(e.sql)
                else:
                    raise VOQueryError(f"{what} compares a time with a non-time value")
            return out
        if len(kinds) > 1:
            raise VOQueryError(f"{what} mixes {' and '.join(sorted(kinds))}")
        if kinds & {"geom", "region"}:
            raise VOQueryError(f"{what}: geometries compare only through CONTAINS / INTERSECTS")
        return [e.sql for e in exprs]

    def value(self, value: adql.Value, scope: _Scope | None = None) -> _Expr:
        scope = scope or _Scope([])
        if isinstance(value, adql.ColumnRef):
            source, spec, sql = scope.resolve(value)
            return _Expr(sql, spec.kind, spec, column=(source, spec.name))
        if isinstance(value, adql.Literal):
            v = value.value
            if v is None:
                return _Expr(null(), "null")
            if isinstance(v, str):
                return _Expr(literal(v, String), "str")
            return _Expr(literal(v, BigInteger if isinstance(v, int) else Float), "num",
                         _spec("", "long" if isinstance(v, int) else "double"))
        if isinstance(value, adql.Neg):
            inner = self.value(value.operand, scope)
            if inner.kind != "num":
                raise VOQueryError("minus needs a number")
            return _Expr(-inner.sql, "num", inner.spec)
        if isinstance(value, adql.Arith):
            left, right = self.value(value.left, scope), self.value(value.right, scope)
            if value.op == "||":
                if {left.kind, right.kind} - {"str", "null"}:
                    raise VOQueryError("|| joins strings")
                return _Expr(left.sql.op("||")(right.sql), "str")
            if {left.kind, right.kind} - {"num", "null"}:
                raise VOQueryError("arithmetic needs numbers")
            whole = all(e.spec is not None and e.spec.datatype in ("int", "long")
                        for e in (left, right)) and value.op != "/"
            if value.op == "/" and all(e.spec is not None and e.spec.datatype in ("int", "long")
                                       for e in (left, right)):
                whole = True  # integer division, as on both databases
            return _Expr(_ARITH[value.op](left.sql, right.sql), "num",
                         _spec("", "long" if whole else "double"))
        return self.function(value, scope)

    def function(self, call: adql.Func, scope: _Scope) -> _Expr:
        name = call.name
        if name not in FUNCTIONS:
            raise VOQueryError(f"unknown function {name}; supported: {', '.join(FUNCTIONS)}")
        if name in _AGGREGATES:
            return self.aggregate(call, scope)
        args = [self.value(a, scope) for a in call.args]
        if name in _GEOMETRY:
            return self.shape(call, args)
        if name in _PREDICATES:
            return _Expr(case((self.predicate_sql(call, scope), 1), else_=0), "num",
                         _spec("", "int"))
        if name in ("DISTANCE", "COORD1", "COORD2"):
            return self.measure(call, args)
        if name in ("LOWER", "UPPER"):
            _arity(call, 1)
            if args[0].kind not in ("str", "null"):
                raise VOQueryError(f"{name} needs a string")
            return _Expr(getattr(func, name.lower())(args[0].sql), "str", _spec("", "char"))
        if name == "COALESCE":
            if not args:
                raise VOQueryError("COALESCE needs arguments")
            kinds = {a.kind for a in args} - {"null"}
            if len(kinds) > 1:
                raise VOQueryError("COALESCE mixes kinds")
            first = next((a for a in args if a.kind != "null"), args[0])
            return _Expr(func.coalesce(*(a.sql for a in args)), first.kind, first.spec)
        for arg in args:
            if arg.kind not in ("num", "null"):
                raise VOQueryError(f"{name} needs numbers")
        sql = [a.sql for a in args]
        if name in ("ROUND", "TRUNCATE"):
            if not 1 <= len(args) <= 2:
                raise VOQueryError(f"{name} takes one or two arguments")
            places = sql[1] if len(sql) == 2 else literal(0, BigInteger)
            scale = func.power(10.0, places)
            out = (func.round(sql[0] * scale) if name == "ROUND"
                   else func.trunc(sql[0] * scale)) / scale
            return _Expr(cast(out, Float), "num", _spec("", "double"))
        if name == "COT":
            _arity(call, 1)
            return _Expr(1.0 / func.tan(sql[0]), "num", _spec("", "double"))
        count, sql_name = _MATH[name]
        _arity(call, count)
        if name == "MOD":
            return _Expr(func.mod(*sql), "num", args[0].spec)
        if name in ("ABS", "CEILING", "FLOOR"):
            out = getattr(func, sql_name)(*sql)
            return _Expr(cast(out, Float) if name != "ABS" else out, "num",
                         args[0].spec if name == "ABS" else _spec("", "double"))
        if self.pg and name in ("LOG", "LOG10", "POWER", "EXP", "SQRT"):
            sql = [cast(s, Float) for s in sql]  # double precision, not numeric
        return _Expr(getattr(func, sql_name)(*sql), "num", _spec("", "double"))

    def aggregate(self, call: adql.Func, scope: _Scope) -> _Expr:
        name = call.name
        if call.star:
            if name != "COUNT":
                raise VOQueryError(f"{name}(*) is not ADQL; only COUNT(*)")
            return _Expr(func.count(), "num", _spec("", "long"))
        _arity(call, 1)
        arg = self.value(call.args[0], scope)
        sql = arg.sql.distinct() if call.distinct else arg.sql
        if name == "COUNT":
            return _Expr(func.count(sql), "num", _spec("", "long"))
        if name in ("MIN", "MAX"):
            if arg.kind == "geom":
                raise VOQueryError(f"{name} of a geometry")
            return _Expr(getattr(func, name.lower())(sql), arg.kind, arg.spec)
        if arg.kind not in ("num", "null"):
            raise VOQueryError(f"{name} needs numbers")
        whole = name == "SUM" and arg.spec is not None and arg.spec.datatype in ("int", "long")
        out = getattr(func, name.lower())(sql)
        if not whole:
            out = cast(out, Float)
        return _Expr(out, "num", _spec("", "long" if whole else "double", like=None))

    def shape(self, call: adql.Func, args: list[_Expr]) -> _Expr:
        name = call.name
        if not args or args[0].kind not in ("str", "null"):
            raise VOQueryError(f"{name} starts with a coordinate system, e.g. 'ICRS'")
        frame = call.args[0]
        if isinstance(frame, adql.Literal) and str(frame.value).strip().upper() not in (
                "ICRS", ""):
            raise VOQueryError(f"coordinate system {frame.value!r} is not supported; use 'ICRS'")
        nums = args[1:]
        for arg in nums:
            if arg.kind not in ("num", "null"):
                raise VOQueryError(f"{name} needs numbers (degrees) after the coordinate system")
        need = {"POINT": 2, "CIRCLE": 3, "BOX": 4}.get(name)
        if (need is not None and len(nums) != need) or (
                name == "POLYGON" and (len(nums) < 6 or len(nums) % 2)):
            raise VOQueryError(f"{name} needs {need or 'at least 3 pairs of'} numbers")
        literals = [a.value for a in call.args[1:] if isinstance(a, adql.Literal)]
        if name == "CIRCLE" and len(literals) == 3:
            _check_circle(float(literals[1]), float(literals[2]))  # type: ignore[arg-type]
        kind = {"POINT": "point", "CIRCLE": "circle"}.get(name, "polygon")
        sql = [n.sql for n in nums]
        if not self.pg:
            return _Expr(getattr(func, "obsflow_" + name.lower())(*sql), "geom", geom=kind)
        if name == "POINT":
            return _Expr(_spoint(*sql), "geom", geom=kind)
        if name == "CIRCLE":
            return _Expr(func.scircle(_spoint(sql[0], sql[1]), func.radians(sql[2])), "geom",
                         geom=kind)
        if name == "BOX":
            ra, dec, w, h = sql
            sql = [ra - w / 2, dec - h / 2, ra + w / 2, dec - h / 2, ra + w / 2, dec + h / 2,
                   ra - w / 2, dec + h / 2]
        text: Any = literal("{")
        for j in range(0, len(sql), 2):
            text = text + ("" if j == 0 else ",") + "(" + cast(sql[j], Text) + "d," + cast(
                sql[j + 1], Text) + "d)"
        return _Expr(cast(text + "}", Spoly()), "geom", geom=kind)

    def measure(self, call: adql.Func, args: list[_Expr]) -> _Expr:
        degrees = _spec("", "double", "deg")
        if call.name == "DISTANCE":
            if len(args) == 4:  # DISTANCE(ra1, dec1, ra2, dec2), ADQL 2.1
                args = [self.shape(adql.Func("POINT", (adql.Literal("ICRS"), *call.args[:2])),
                                   [_Expr(literal("ICRS"), "str"), *args[:2]]),
                        self.shape(adql.Func("POINT", (adql.Literal("ICRS"), *call.args[2:])),
                                   [_Expr(literal("ICRS"), "str"), *args[2:]])]
            if len(args) != 2 or any(a.geom != "point" for a in args):
                raise VOQueryError("DISTANCE takes two POINTs")
            if self.pg:
                return _Expr(func.degrees(args[0].sql.op("<->")(args[1].sql)), "num", degrees)
            return _Expr(func.obsflow_distance(args[0].sql, args[1].sql), "num", degrees)
        _arity(call, 1)
        if args[0].geom != "point":
            raise VOQueryError(f"{call.name} takes a POINT")
        if self.pg:
            part = func.long if call.name == "COORD1" else func.lat
            return _Expr(func.degrees(part(args[0].sql)), "num", degrees)
        return _Expr(getattr(func, "obsflow_" + call.name.lower())(args[0].sql), "num", degrees)


def _check_circle(dec: float, radius: float) -> None:
    if not (-90 <= dec <= 90 and 0 < radius <= 180):
        raise VOQueryError("CIRCLE needs -90 <= dec <= 90 and 0 < radius <= 180 (degrees)")


def _arity(call: adql.Func, count: int) -> None:
    if len(call.args) != count:
        raise VOQueryError(f"{call.name} takes {count} argument{'s' if count != 1 else ''}")


def _all_names(sources: list[_Source]) -> list[str]:
    return [n for s in sources for n in s.order]


def _column_of(sources: list[_Source], name: str) -> Any:
    for source in sources:
        if name.lower() in source.columns:
            return source.columns[name.lower()][1]
    raise VOQueryError(f"join column {name!r} is not in both tables")


def _output_spec(expr: _Expr, name: str) -> ColumnSpec:
    if expr.spec is not None and expr.spec.name:
        return _spec(name, expr.spec.datatype, like=expr.spec)
    if expr.spec is not None:
        return _spec(name, expr.spec.datatype, expr.spec.unit)
    if expr.kind == "time":
        return ColumnSpec(name, "char", "time", "", xtype="timestamp")
    return _spec(name, "char" if expr.kind in ("str", "null", "region") else "double")


@dataclass
class _Plan:
    stmt: Any
    outputs: list[tuple[ColumnSpec, str, str]] = field(default_factory=list)
    limit: int = 0
    probe: bool = False


def _plan(query: adql.Select, request: TapRequest, dialect: str) -> _Plan:
    compiler = _Compiler(request, dialect, fence=_risky(query))
    stmt, outputs = compiler.select(query)
    names = [name.lower() for _, name, _ in outputs]
    if len(set(names)) != len(names):
        raise VOQueryError("two output columns have the same name; rename one with AS")
    if query.top is not None and query.top <= request.maxrec:
        limit, probe = query.top, False
    else:
        limit, probe = request.maxrec, True
    stmt = stmt.limit(limit + 1 if probe else limit)
    return _Plan(stmt, outputs, limit, probe)


class _sqlite_deadline:  # noqa: N801 - used as a context manager
    """Abort a SQLite statement running past :data:`QUERY_TIMEOUT_S` (progress handler)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def __enter__(self) -> None:
        deadline = time.monotonic() + QUERY_TIMEOUT_S
        self.raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)

    def __exit__(self, *exc: object) -> None:
        self.raw.set_progress_handler(None, 0)


def _execute(session: Session, stmt: Any) -> list[tuple[Any, ...]]:
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(QUERY_TIMEOUT_S * 1000)}")
        try:
            return [tuple(row) for row in conn.execute(stmt)]
        finally:
            session.rollback()
    raw = conn.connection.driver_connection  # (the Archive registered sphere's functions)
    assert raw is not None
    with _sqlite_deadline(raw):
        rows = [tuple(row) for row in conn.execute(stmt)]
    session.rollback()
    return rows


def run_adql(session: Session, text: str, request: TapRequest) -> TapResult:
    """Parse, translate and run ADQL ``text``; :class:`VOQueryError` for anything refused."""
    query = adql.parse_adql(text)
    plan = _plan(query, request, session.get_bind().dialect.name)
    try:
        rows = _execute(session, plan.stmt)
    except DBAPIError as exc:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else "error"
        raise VOQueryError(f"the database refused the query: {first}") from exc
    except SQLAlchemyError as exc:
        raise VOQueryError(f"the query could not be run: {exc.__class__.__name__}") from exc
    overflow = plan.probe and len(rows) > plan.limit
    columns = [(spec, name) for spec, name, _ in plan.outputs]
    return TapResult(columns, rows[:plan.limit], overflow)

