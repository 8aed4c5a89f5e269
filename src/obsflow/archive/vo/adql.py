"""The ADQL subset the TAP endpoint accepts: tokenizer, parser and syntax tree.

Grammar (keywords case-insensitive; one table, ``ivoa.ObsCore``)::

    query     := SELECT [TOP int] items FROM ivoa.ObsCore [[AS] alias]
                 [WHERE cond] [ORDER BY order {, order}] [;]
    items     := '*' | column [[AS] name] {, column [[AS] name]}
    order     := (column | name | position) [ASC | DESC]
    cond      := and {OR and};   and := not {AND not};   not := NOT not | pred
    pred      := '(' cond ')' | contains ('=' | '<>' | '!=') (1 | 0)
               | value [NOT] BETWEEN value AND value | value [NOT] LIKE string
               | value [NOT] IN '(' literal {, literal} ')' | value IS [NOT] NULL
               | value ('=' | '<>' | '!=' | '<' | '<=' | '>' | '>=') value
    contains  := CONTAINS '(' POINT '(' 'ICRS', s_ra, s_dec ')' ,
                              CIRCLE '(' 'ICRS', num, num, num ')' ')'
    value     := term {('+' | '-') term};  term := factor {('*' | '/') factor}
    factor    := ['-' | '+'] (number | string | column | '(' value ')')

Columns are checked against :data:`~obsflow.archive.vo.obscore.COLUMNS`
(and their kinds: numbers compare with numbers, strings with strings);
anything else — other tables, functions, joins, subqueries, comments that
hide text — is refused with a :class:`~obsflow.exceptions.VOQueryError`
naming what is supported.  The tree is translated by
:mod:`obsflow.archive.vo.tap_sql`; user text never reaches SQL as text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from obsflow.archive.limits import INT64_MAX, check_text
from obsflow.archive.vo.obscore import BY_NAME, COLUMNS
from obsflow.exceptions import VOQueryError

__all__ = [
    "And", "Arith", "Between", "ColumnRef", "Compare", "Contains", "InList", "IsNull", "Like",
    "Literal", "MAX_QUERY_LENGTH", "Neg", "Not", "Or", "Query", "parse_adql", "tokenize",
]

MAX_QUERY_LENGTH = 20_000
"""Longest ADQL text accepted, characters."""

MAX_DEPTH = 50
"""Deepest nesting of parentheses / NOT accepted."""

TABLE_NAMES = ("ivoa.obscore",)

_TOKEN = re.compile(r"""
    (?P<ws>\s+|--[^\n]*)
  | (?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<str>'(?:[^']|'')*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|<>|!=|[=<>(),.*+\-/;])
""", re.VERBOSE)

_KEYWORDS = {"select", "top", "from", "as", "where", "order", "by", "asc", "desc", "and", "or",
             "not", "between", "like", "in", "is", "null", "contains", "point", "circle"}


@dataclass(frozen=True)
class Token:
    """One token: ``kind`` is num, str, name, kw or op; ``text`` as written (kw lower-case)."""

    kind: str
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    """Split ADQL into tokens; :class:`VOQueryError` at the first character that fits none."""
    if len(text) > MAX_QUERY_LENGTH:
        raise VOQueryError(f"query too long ({len(text)} characters; at most {MAX_QUERY_LENGTH})")
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise VOQueryError(f"unexpected character {text[pos]!r} at position {pos + 1}")
        kind = match.lastgroup or ""
        value = match.group()
        if kind == "name" and value.lower() in _KEYWORDS:
            tokens.append(Token("kw", value.lower(), pos))
        elif kind != "ws":
            tokens.append(Token(kind, value, pos))
        pos = match.end()
    return tokens


@dataclass(frozen=True)
class ColumnRef:
    """An ObsCore column (lower-case name)."""

    name: str


@dataclass(frozen=True)
class Literal:
    """A number or a string."""

    value: int | float | str


@dataclass(frozen=True)
class Neg:
    """``-operand``."""

    operand: Value


@dataclass(frozen=True)
class Arith:
    """``left op right`` with op one of + - * /."""

    op: str
    left: Value
    right: Value


Value = ColumnRef | Literal | Neg | Arith


@dataclass(frozen=True)
class Compare:
    """``left op right`` (op: = <> < <= > >=)."""

    op: str
    left: Value
    right: Value


@dataclass(frozen=True)
class Between:
    """``value [NOT] BETWEEN low AND high``."""

    value: Value
    low: Value
    high: Value
    negated: bool = False


@dataclass(frozen=True)
class Like:
    """``value [NOT] LIKE pattern`` (case-sensitive, ``%`` and ``_`` wildcards)."""

    value: Value
    pattern: str
    negated: bool = False


@dataclass(frozen=True)
class InList:
    """``value [NOT] IN (items)``."""

    value: Value
    items: tuple[Literal, ...]
    negated: bool = False


@dataclass(frozen=True)
class IsNull:
    """``value IS [NOT] NULL``."""

    value: Value
    negated: bool = False


@dataclass(frozen=True)
class Contains:
    """``CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', ra, dec, radius)) = 1`` (degrees).

    ``inside`` is False for ``= 0``.
    """

    ra: float
    dec: float
    radius: float
    inside: bool = True


@dataclass(frozen=True)
class And:
    """All of ``items``."""

    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Or:
    """Any of ``items``."""

    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    """Not ``item``."""

    item: Condition


@dataclass(frozen=True)
class _Bare:
    """A value where a condition was expected: only valid as ``( value )`` (parser-internal)."""

    value: Value


Condition = Compare | Between | Like | InList | IsNull | Contains | And | Or | Not | _Bare


@dataclass(frozen=True)
class Query:
    """A parsed query: output ``(column, name)`` pairs, TOP, WHERE and ORDER BY ``(column, desc)``."""

    select: tuple[tuple[str, str], ...]
    top: int | None
    where: Condition | None
    order: tuple[tuple[str, bool], ...]


class _Parser:
    """Recursive descent over the token list (one instance per query)."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0
        self.alias: str | None = None
        self.depth = 0

    # -- token helpers -------------------------------------------------------------------
    def peek(self, offset: int = 0) -> Token | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def at(self, kind: str, text: str | None = None, offset: int = 0) -> bool:
        tok = self.peek(offset)
        return tok is not None and tok.kind == kind and (text is None or tok.text == text)

    def take(self, kind: str, text: str | None = None) -> Token:
        tok = self.peek()
        if tok is None or tok.kind != kind or (text is not None and tok.text != text):
            want = text.upper() if text else {"num": "a number", "str": "a string",
                                              "name": "a name"}.get(kind, kind)
            raise self.error(f"expected {want}")
        self.i += 1
        return tok

    def accept(self, kind: str, text: str | None = None) -> bool:
        if self.at(kind, text):
            self.i += 1
            return True
        return False

    def error(self, message: str) -> VOQueryError:
        tok = self.peek()
        where = f"near {tok.text!r} (position {tok.pos + 1})" if tok else "at the end of the query"
        return VOQueryError(f"ADQL syntax error {where}: {message}")

    def deeper(self) -> None:
        """One more level of the syntax tree (nesting and operator chains count alike)."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"expression nested more than {MAX_DEPTH} levels deep")

    @contextmanager
    def nested(self) -> Iterator[None]:
        self.deeper()
        try:
            yield
        finally:
            self.depth -= 1

    # -- query ---------------------------------------------------------------------------
    def query(self) -> Query:
        self.take("kw", "select")
        top = None
        if self.accept("kw", "top"):
            top = int(_number(self.take("num").text)) if self.at("num") and self._is_int() else None
            if top is None:
                raise self.error("TOP needs a whole number")
        select = self.select_list()
        self.take("kw", "from")
        self.table()
        where = self.condition() if self.accept("kw", "where") else None
        order: tuple[tuple[str, bool], ...] = ()
        if self.accept("kw", "order"):
            self.take("kw", "by")
            order = self.order_list(select)
        self.accept("op", ";")
        if self.peek() is not None:
            raise self.error("unexpected text after the query (one SELECT on ivoa.ObsCore "
                             "with WHERE / ORDER BY is supported)")
        return Query(select, top, where, order)

    def _is_int(self) -> bool:
        tok = self.peek()
        return tok is not None and tok.text.isdigit()

    def select_list(self) -> tuple[tuple[str, str], ...]:
        if self.accept("op", "*"):
            return tuple((c.name, c.name) for c in COLUMNS)
        items = []
        while True:
            column = self.column_name()
            name = column
            if self.accept("kw", "as") or self.at("name"):
                name = self.take("name").text.lower()
            items.append((column, name))
            if not self.accept("op", ","):
                return tuple(items)

    def table(self) -> None:
        first = self.take("name").text.lower()
        name = first + "." + self.take("name").text.lower() if self.accept("op", ".") else first
        if name not in TABLE_NAMES:
            raise VOQueryError(f"unknown table {name!r}; this service has ivoa.ObsCore")
        if self.accept("kw", "as") or self.at("name"):
            self.alias = self.take("name").text.lower()

    def order_list(self, select: tuple[tuple[str, str], ...]) -> tuple[tuple[str, bool], ...]:
        names = {name: column for column, name in select}
        items = []
        while True:
            if self.at("num"):
                position = int(_number(self.take("num").text))
                if not 1 <= position <= len(select):
                    raise self.error(f"ORDER BY position {position} is not a selected column")
                column = select[position - 1][0]
            elif self.at("name") and self.peek().text.lower() in names:  # type: ignore[union-attr]
                column = names[self.take("name").text.lower()]
            else:
                column = self.column_name()
            desc = self.accept("kw", "desc")
            if not desc:
                self.accept("kw", "asc")
            items.append((column, desc))
            if not self.accept("op", ","):
                return tuple(items)

    def column_name(self) -> str:
        tok = self.peek()
        if tok is None or tok.kind != "name":
            raise self.error("expected a column name")
        self.i += 1
        name = tok.text.lower()
        if self.at("op", ".") and self.at("name", offset=1):
            qualifier = name
            self.i += 1
            name = self.take("name").text.lower()
            if qualifier not in {self.alias, "obscore"}:
                raise VOQueryError(f"unknown table or alias {qualifier!r}")
        if name not in BY_NAME:
            raise VOQueryError(f"unknown column {tok.text!r}; ivoa.ObsCore has "
                               + ", ".join(c.name for c in COLUMNS))
        return name

    # -- conditions ----------------------------------------------------------------------
    def condition(self) -> Condition:
        items = [self.conjunction()]
        while self.accept("kw", "or"):
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else Or(self.conditions(items))

    def conjunction(self) -> Condition:
        items = [self.negation()]
        while self.accept("kw", "and"):
            items.append(self.negation())
        return items[0] if len(items) == 1 else And(self.conditions(items))

    def conditions(self, items: list[Condition]) -> tuple[Condition, ...]:
        if any(isinstance(item, _Bare) for item in items):
            raise self.error("a value is not a condition (compare it with something)")
        return tuple(items)

    def negation(self) -> Condition:
        if self.accept("kw", "not"):
            with self.nested():
                item = self.negation()
            return Not(self.conditions([item])[0])
        return self.predicate()

    def predicate(self) -> Condition:
        if self.at("kw", "contains"):
            return self.contains()
        if self.accept("op", "("):
            with self.nested():
                inner = self.condition()
            self.take("op", ")")
            if not isinstance(inner, _Bare):
                return inner
            # a parenthesised value, e.g. (t_max - t_min) * 86400 > 100
            return self.value_predicate(self.value_rest(inner.value))
        return self.value_predicate(self.value())

    def value_predicate(self, left: Value) -> Condition:
        negated = self.accept("kw", "not")
        if self.accept("kw", "between"):
            low = self.value()
            self.take("kw", "and")
            return Between(left, low, self.value(), negated)
        if self.accept("kw", "like"):
            return Like(left, self.string(), negated)
        if self.accept("kw", "in"):
            self.take("op", "(")
            items = [self.literal()]
            while self.accept("op", ","):
                items.append(self.literal())
            self.take("op", ")")
            return InList(left, tuple(items), negated)
        if negated:
            raise self.error("expected BETWEEN, LIKE or IN after NOT")
        if self.at("op", ")") and self.depth > 0:
            return _Bare(left)
        if self.accept("kw", "is"):
            negated = self.accept("kw", "not")
            self.take("kw", "null")
            return IsNull(left, negated)
        tok = self.peek()
        if tok is None or tok.kind != "op" or tok.text not in {"=", "<>", "!=", "<", "<=", ">",
                                                               ">="}:
            raise self.error("expected a comparison (=, <>, <, <=, >, >=, BETWEEN, LIKE, IN, "
                             "IS NULL)")
        self.i += 1
        return Compare("<>" if tok.text == "!=" else tok.text, left, self.value())

    def contains(self) -> Condition:
        self.take("kw", "contains")
        self.take("op", "(")
        self.take("kw", "point")
        self.take("op", "(")
        self.frame()
        ra, dec = self.column_name(), (self.take("op", ","), self.column_name())[1]
        if (ra, dec) != ("s_ra", "s_dec"):
            raise VOQueryError("CONTAINS supports POINT('ICRS', s_ra, s_dec) as its point")
        self.take("op", ")")
        self.take("op", ",")
        self.take("kw", "circle")
        self.take("op", "(")
        self.frame()
        numbers = [self.number()]
        for _ in range(2):
            self.take("op", ",")
            numbers.append(self.number())
        self.take("op", ")")
        self.take("op", ")")
        op = self.peek()
        if op is None or op.text not in {"=", "<>", "!="}:
            raise self.error("CONTAINS(...) must be compared: = 1 or = 0")
        self.i += 1
        flag = self.number()
        if flag not in (0, 1):
            raise self.error("CONTAINS(...) is 1 or 0")
        circle_ra, circle_dec, radius = numbers
        if not (-90 <= circle_dec <= 90 and 0 < radius <= 180):
            raise VOQueryError("CIRCLE needs -90 <= dec <= 90 and 0 < radius <= 180 (degrees)")
        return Contains(circle_ra % 360.0, circle_dec, radius, (flag == 1) == (op.text == "="))

    def frame(self) -> None:
        frame = self.string()
        if frame.strip().upper() not in {"ICRS", ""}:
            raise VOQueryError(f"coordinate system {frame!r} is not supported; use 'ICRS'")
        self.take("op", ",")

    # -- values --------------------------------------------------------------------------
    def value(self) -> Value:
        return self.value_rest(self.factor())

    def value_rest(self, left: Value) -> Value:
        """Continue a value whose first factor is ``left``."""
        saved = self.depth
        try:
            left = self.term_rest(left)
            while self.at("op", "+") or self.at("op", "-"):
                op = self.take("op").text
                self.deeper()
                left = Arith(op, left, self.term_rest(self.factor()))
            return left
        finally:
            self.depth = saved

    def term_rest(self, left: Value) -> Value:
        saved = self.depth
        try:
            while self.at("op", "*") or self.at("op", "/"):
                op = self.take("op").text
                self.deeper()
                left = Arith(op, left, self.factor())
            return left
        finally:
            self.depth = saved

    def factor(self) -> Value:
        if self.accept("op", "-"):
            with self.nested():
                return Neg(self.factor())
        if self.accept("op", "+"):
            with self.nested():
                return self.factor()
        if self.at("num"):
            return Literal(_number(self.take("num").text))
        if self.at("str"):
            return Literal(self.string())
        if self.accept("op", "("):
            with self.nested():
                inner = self.value()
            self.take("op", ")")
            return inner
        if self.at("name") and self.at("op", "(", offset=1):
            raise self.error("unsupported function; functions supported: CONTAINS, POINT, CIRCLE")
        if self.at("name"):
            return ColumnRef(self.column_name())
        raise self.error("expected a column, a number or a string")

    def literal(self) -> Literal:
        if self.at("str"):
            return Literal(self.string())
        sign = -1 if self.accept("op", "-") else 1
        return Literal(sign * _number(self.take("num").text))

    def number(self) -> float:
        sign = -1.0 if self.accept("op", "-") else 1.0
        self.accept("op", "+")
        return sign * float(_number(self.take("num").text))

    def string(self) -> str:
        return check_text("string literal", self.take("str").text[1:-1].replace("''", "'"))


def _number(text: str) -> int | float:
    """An integer (at most 64 bits, what the database holds) or a finite float literal."""
    if text.isdigit():
        value = int(text) if len(text) <= len(str(INT64_MAX)) else INT64_MAX + 1
        if value > INT64_MAX:
            raise VOQueryError(f"integer {text[:40]}{'...' if len(text) > 40 else ''} is out of "
                               f"range (the largest integer is {INT64_MAX})")
        return value
    number = float(text)
    if not math.isfinite(number):
        raise VOQueryError(f"number {text[:40]} is out of range")
    return number


def parse_adql(text: str) -> Query:
    """Parse one ADQL query of the supported subset (see the module docstring)."""
    tokens = tokenize(text)
    if not tokens:
        raise VOQueryError("empty QUERY")
    query = _Parser(tokens).query()
    if query.where is not None:
        check_kinds(query.where)
    return query


def value_kind(value: Value) -> str:
    """``num``, ``str`` or ``time`` (an ISO string compared with a time column)."""
    if isinstance(value, ColumnRef):
        return BY_NAME[value.name].kind
    if isinstance(value, Literal):
        return "str" if isinstance(value.value, str) else "num"
    parts = [value.operand] if isinstance(value, Neg) else [value.left, value.right]
    if any(value_kind(p) != "num" for p in parts):
        raise VOQueryError("arithmetic needs numbers")
    return "num"


def _same_kind(values: list[Value], what: str) -> None:
    kinds = {value_kind(v) for v in values}
    if "time" in kinds:
        kinds = {"str" if k == "time" else k for k in kinds}
    if len(kinds) > 1:
        raise VOQueryError(f"{what} mixes numbers and strings")


def check_kinds(cond: Condition) -> None:
    """Refuse comparisons of numbers with strings (they mean different things per database)."""
    if isinstance(cond, And | Or):
        for item in cond.items:
            check_kinds(item)
    elif isinstance(cond, Not):
        check_kinds(cond.item)
    elif isinstance(cond, Compare):
        _same_kind([cond.left, cond.right], f"comparison {cond.op}")
    elif isinstance(cond, Between):
        _same_kind([cond.value, cond.low, cond.high], "BETWEEN")
    elif isinstance(cond, InList):
        _same_kind([cond.value, *cond.items], "IN")
    elif isinstance(cond, Like) and value_kind(cond.value) == "num":
        raise VOQueryError("LIKE needs a string column")
    elif isinstance(cond, IsNull):
        value_kind(cond.value)
