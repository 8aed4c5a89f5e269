"""Running a parsed ADQL query (:mod:`obsflow.archive.vo.adql`) on the catalog.

Two translations of the same syntax tree, one per database:

* **SQLite** (and any other backend): the tree becomes SQLAlchemy
  expressions on the ObsCore column expressions; literals are bound
  parameters.  ``CONTAINS(POINT, CIRCLE)`` is
  :func:`~obsflow.archive.sky.cone_clause` (HEALPix range prefilter on the
  indexed ``hpx`` column + exact unit-vector test); ``LIKE`` becomes
  ``GLOB`` so it is case-sensitive as ADQL wants.
* **PostgreSQL**: the tree is written back as canonical ADQL (every literal
  re-quoted by us, the table renamed to a CTE) and translated by
  queryparser-python3 (``ADQLQueryTranslator(...).to_postgresql()``), which
  turns ``CONTAINS(POINT, CIRCLE)`` into pg_sphere's ``spoint @ scircle``
  (indexed by ``ix_exposures_spoint``).  The access policy lives in the CTE
  ``obsflow_obscore`` (SQLAlchemy, bound parameters) that the query reads,
  in a read-only transaction with a statement timeout.

Either way the caller gets :class:`TapResult`: output columns, rows and
whether MAXREC cut the result.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, DateTime, and_, literal, not_, or_
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from obsflow.archive.policy import Viewer
from obsflow.archive.sky import cone_clause
from obsflow.archive.vo import adql
from obsflow.archive.vo.obscore import BY_NAME, COLUMNS, ColumnSpec, obscore_columns, obscore_select
from obsflow.exceptions import VOQueryError

__all__ = ["QUERY_TIMEOUT_S", "TapRequest", "TapResult", "run_adql", "to_adql"]

QUERY_TIMEOUT_S = 10.0
"""A query running longer than this is stopped (VOTable error)."""

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq, "<>": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}
_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
}
CTE_NAME = "obsflow_obscore"

TRANSLATION_CACHE_SIZE = 1024
"""PostgreSQL translations of distinct queries remembered (the policy is not in them)."""


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


# -- SQLAlchemy translation (SQLite) ---------------------------------------------------------
def _time_literal(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.strip().removesuffix("Z"))
    except ValueError:
        raise VOQueryError(f"{text!r} is not an ISO date (YYYY-MM-DD[THH:MM:SS])") from None
    return value.replace(tzinfo=None)


def _is_time(value: adql.Value) -> bool:
    return isinstance(value, adql.ColumnRef) and BY_NAME[value.name].kind == "time"


class _SqlBuilder:
    """Turns conditions into SQLAlchemy expressions over the ObsCore column expressions."""

    def __init__(self, exprs: dict[str, Any], glob_like: bool) -> None:
        self.exprs = exprs
        self.glob_like = glob_like

    def value(self, value: adql.Value, as_time: bool = False) -> Any:
        if isinstance(value, adql.ColumnRef):
            return self.exprs[value.name]
        if isinstance(value, adql.Literal):
            if as_time and isinstance(value.value, str):
                return literal(_time_literal(value.value), DateTime)
            return literal(value.value)
        if isinstance(value, adql.Neg):
            return -self.value(value.operand)
        return _ARITH[value.op](self.value(value.left), self.value(value.right))

    def values(self, *values: adql.Value) -> list[Any]:
        as_time = any(_is_time(v) for v in values)
        return [self.value(v, as_time) for v in values]

    def condition(self, cond: adql.Condition) -> ColumnElement[bool]:
        if isinstance(cond, adql.And):
            return and_(*(self.condition(c) for c in cond.items))
        if isinstance(cond, adql.Or):
            return or_(*(self.condition(c) for c in cond.items))
        if isinstance(cond, adql.Not):
            return not_(self.condition(cond.item))
        if isinstance(cond, adql.Contains):
            cone = cone_clause(cond.ra, cond.dec, cond.radius)
            return cone if cond.inside else not_(cone)
        return self.predicate(cond)

    def predicate(self, cond: adql.Condition) -> ColumnElement[bool]:
        out: ColumnElement[bool]
        if isinstance(cond, adql.Compare):
            left, right = self.values(cond.left, cond.right)
            out = _COMPARE[cond.op](left, right)
        elif isinstance(cond, adql.Between):
            value, low, high = self.values(cond.value, cond.low, cond.high)
            out = value.between(low, high)
        elif isinstance(cond, adql.InList):
            value, *items = self.values(cond.value, *cond.items)
            out = value.in_(items)
        elif isinstance(cond, adql.IsNull):
            out = self.value(cond.value).is_(None)
        elif isinstance(cond, adql.Like):
            value = self.value(cond.value)
            out = (value.op("GLOB")(literal(_like_to_glob(cond.pattern))) if self.glob_like
                   else value.like(literal(cond.pattern)))
        else:
            raise VOQueryError("a value is not a condition (compare it with something)")
        negated = getattr(cond, "negated", False)
        return not_(out) if negated else out


def _like_to_glob(pattern: str) -> str:
    """An ADQL LIKE pattern as a (case-sensitive) SQLite GLOB pattern."""
    special = {"%": "*", "_": "?", "*": "[*]", "?": "[?]", "[": "[[]"}
    return "".join(special.get(ch, ch) for ch in pattern)


def _limit(query: adql.Query, maxrec: int) -> tuple[int, bool]:
    """(rows to fetch, whether one more row means overflow)."""
    if query.top is not None and query.top <= maxrec:
        return query.top, False
    return maxrec, True


def _run_sqlalchemy(session: Session, query: adql.Query, request: TapRequest) -> list[tuple]:  # type: ignore[type-arg]
    exprs = obscore_columns(request.base_url, request.authority)
    builder = _SqlBuilder(exprs, glob_like=session.get_bind().dialect.name == "sqlite")
    stmt = obscore_select([exprs[col].label(f"c{j}") for j, (col, _) in enumerate(query.select)],
                          request.viewer, request.now)
    if query.where is not None:
        stmt = stmt.where(builder.condition(query.where))
    stmt = stmt.order_by(*(exprs[col].desc() if desc else exprs[col].asc()
                           for col, desc in query.order))
    limit, probe = _limit(query, request.maxrec)
    stmt = stmt.limit(limit + 1 if probe else limit)
    with _sqlite_deadline(session):
        return [tuple(row) for row in session.execute(stmt)]


class _sqlite_deadline:  # noqa: N801 - used as a context manager
    """Abort a SQLite statement running past :data:`QUERY_TIMEOUT_S` (progress handler)."""

    def __init__(self, session: Session) -> None:
        self.raw = None
        if session.get_bind().dialect.name == "sqlite":
            self.raw = session.connection().connection.driver_connection

    def __enter__(self) -> None:
        if self.raw is not None:
            deadline = time.monotonic() + QUERY_TIMEOUT_S
            self.raw.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)

    def __exit__(self, *exc: object) -> None:
        if self.raw is not None:
            self.raw.set_progress_handler(None, 0)


# -- canonical ADQL + queryparser (PostgreSQL) -------------------------------------------------
def _adql_value(value: adql.Value, as_time: bool = False) -> str:
    if isinstance(value, adql.ColumnRef):
        return value.name
    if isinstance(value, adql.Literal):
        v = value.value
        if isinstance(v, str):
            text = _time_literal(v).isoformat(sep="T") if as_time else v
            return "'" + text.replace("'", "''") + "'"
        return repr(float(v)) if isinstance(v, float) else str(int(v))
    if isinstance(value, adql.Neg):
        return f"(-{_adql_value(value.operand)})"
    return f"({_adql_value(value.left)} {value.op} {_adql_value(value.right)})"


def _adql_values(*values: adql.Value) -> list[str]:
    as_time = any(_is_time(v) for v in values)
    return [_adql_value(v, as_time) for v in values]


def _adql_condition(cond: adql.Condition) -> str:
    if isinstance(cond, adql.And | adql.Or):
        joiner = " AND " if isinstance(cond, adql.And) else " OR "
        return "(" + joiner.join(_adql_condition(c) for c in cond.items) + ")"
    if isinstance(cond, adql.Not):
        return f"(NOT {_adql_condition(cond.item)})"
    if isinstance(cond, adql.Contains):
        text = (f"CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', {cond.ra!r}, "
                f"{cond.dec!r}, {cond.radius!r})) = 1")
        return f"({text})" if cond.inside else f"(NOT ({text}))"
    if isinstance(cond, adql.Compare):
        left, right = _adql_values(cond.left, cond.right)
        text = f"{left} {cond.op} {right}"
    elif isinstance(cond, adql.Between):
        value, low, high = _adql_values(cond.value, cond.low, cond.high)
        text = f"{value} BETWEEN {low} AND {high}"
    elif isinstance(cond, adql.InList):
        value, *items = _adql_values(cond.value, *cond.items)
        text = f"{value} IN ({', '.join(items)})"
    elif isinstance(cond, adql.IsNull):
        text = f"{_adql_value(cond.value)} IS NULL"
    elif isinstance(cond, adql.Like):
        text = f"{_adql_value(cond.value)} LIKE " + "'" + cond.pattern.replace("'", "''") + "'"
    else:
        raise VOQueryError("a value is not a condition (compare it with something)")
    return f"(NOT ({text}))" if getattr(cond, "negated", False) else f"({text})"


def to_adql(query: adql.Query, table: str = "ivoa.ObsCore") -> str:
    """The query written back as canonical ADQL (every literal quoted by us)."""
    top = f"TOP {query.top} " if query.top is not None else ""
    text = f"SELECT {top}{', '.join(col for col, _ in query.select)} FROM {table}"
    if query.where is not None:
        text += " WHERE " + _adql_condition(query.where)
    if query.order:
        text += " ORDER BY " + ", ".join(f"{col} {'DESC' if desc else 'ASC'}"
                                         for col, desc in query.order)
    return text


def _translate_postgresql(query: adql.Query) -> str:
    return _translate_canonical(to_adql(query, CTE_NAME))


@functools.lru_cache(maxsize=TRANSLATION_CACHE_SIZE)
def _translate_canonical(canonical: str) -> str:
    """queryparser's PostgreSQL for canonical ADQL (remembered: it takes ~0.5 s per query)."""
    from queryparser.adql import ADQLQueryTranslator
    from queryparser.exceptions import QuerySyntaxError

    try:
        sql = ADQLQueryTranslator(canonical).to_postgresql()
    except (QuerySyntaxError, ValueError, KeyError, IndexError, AttributeError) as exc:
        raise VOQueryError(f"ADQL translation failed: {exc}") from exc
    return str(sql).strip().rstrip(";")


def _has_arithmetic(node: object) -> bool:
    """True if the condition tree holds ``+ - * /`` anywhere."""
    if isinstance(node, adql.Arith):
        return True
    if isinstance(node, tuple):
        return any(_has_arithmetic(item) for item in node)
    if dataclasses.is_dataclass(node):
        return any(_has_arithmetic(getattr(node, f.name)) for f in dataclasses.fields(node))
    return False


def _run_postgresql(session: Session, query: adql.Query, request: TapRequest) -> list[tuple]:  # type: ignore[type-arg]
    translated = _translate_postgresql(query)
    engine = session.get_bind().engine
    exprs = obscore_columns(request.base_url, request.authority)
    cte = obscore_select([exprs[c.name].label(c.name) for c in COLUMNS], request.viewer,
                         request.now)
    compiled = cte.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    limit, probe = _limit(query, request.maxrec)
    # arithmetic can fail on a row's values (division by zero, overflow): such a query
    # reads a materialized view, so it never runs on a row the policy hides (inlined,
    # the planner may order its conditions before the policy's; the cone index is lost)
    fence = " MATERIALIZED" if _has_arithmetic(query.where) else ""
    sql = (f"WITH {CTE_NAME} AS{fence} ({compiled}) "
           f"SELECT * FROM ({translated.replace('%', '%%')}) "
           f"AS q LIMIT {int(limit + 1 if probe else limit)}")
    with engine.connect() as conn:
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(QUERY_TIMEOUT_S * 1000)}")
        rows = [tuple(row) for row in conn.exec_driver_sql(sql, compiled.params)]
        conn.rollback()
    return rows


def run_adql(session: Session, text: str, request: TapRequest) -> TapResult:
    """Parse, translate and run ADQL ``text``; :class:`VOQueryError` for anything refused."""
    query = adql.parse_adql(text)
    names = [name for _, name in query.select]
    if len(set(names)) != len(names):
        raise VOQueryError("two output columns have the same name; rename one with AS")
    runner = (_run_postgresql if session.get_bind().dialect.name == "postgresql"
              else _run_sqlalchemy)
    try:
        rows = runner(session, query, request)
    except DBAPIError as exc:
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else "error"
        raise VOQueryError(f"the database refused the query: {first}") from exc
    except SQLAlchemyError as exc:
        raise VOQueryError(f"the query could not be run: {exc.__class__.__name__}") from exc
    limit, probe = _limit(query, request.maxrec)
    overflow = probe and len(rows) > limit
    columns = [(BY_NAME[col], name) for col, name in query.select]
    return TapResult(columns, rows[:limit], overflow)


def result_columns(names: Sequence[str]) -> list[tuple[ColumnSpec, str]]:
    """``(spec, name)`` for ObsCore column names."""
    return [(BY_NAME[name], name) for name in names]
