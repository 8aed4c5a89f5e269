"""ADQL 2.1 core: tokenizer, parser and syntax tree (no SQL, no database).

Grammar (keywords case-insensitive)::

    query     := select [;]
    select    := SELECT [ALL | DISTINCT] [TOP int] items FROM from {, from}
                 [WHERE cond] [GROUP BY value {, value}] [HAVING cond]
                 [ORDER BY order {, order}] [OFFSET int]
    items     := '*' | item {, item};   item := name '.' '*' | value [[AS] name]
    from      := primary {[NATURAL] [INNER | LEFT [OUTER] | RIGHT [OUTER] | FULL [OUTER]
                           | CROSS] JOIN primary [ON cond | USING '(' name {, name} ')']}
    primary   := table [[AS] name] | '(' select ')' [AS] name | '(' from ')'
    order     := value [ASC | DESC]          (a value may be an output name or position)
    cond      := and {OR and};   and := not {AND not};   not := NOT not | pred
    pred      := '(' cond ')' | EXISTS '(' select ')'
               | value [NOT] BETWEEN value AND value | value [NOT] (LIKE | ILIKE) value
               | value [NOT] IN '(' (select | value {, value}) ')' | value IS [NOT] NULL
               | value ('=' | '<>' | '!=' | '<' | '<=' | '>' | '>=') value
    value     := term {('+' | '-' | '||') term};  term := factor {('*' | '/') factor}
    factor    := ['-' | '+'] (number | string | NULL | column | function | '(' value ')')
    function  := name '(' [DISTINCT] [args | '*'] ')'

Names are regular identifiers (case-insensitive, kept lower-case) or
delimited ``"identifiers"`` (case kept).  What a name refers to (tables,
columns, functions) is checked by :mod:`obsflow.archive.vo.tap_sql`, which
translates the tree to SQLAlchemy; user text never reaches SQL as text.
Errors are :class:`~obsflow.exceptions.VOQueryError` naming the position.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from obsflow.archive.limits import INT64_MAX, check_text
from obsflow.exceptions import ADQLBareValueError, VOQueryError

__all__ = [
    "AllColumns", "And", "Arith", "Between", "ColumnRef", "Compare", "Condition", "Exists",
    "Func", "InList", "InQuery", "IsNull", "Join", "Like", "Literal", "MAX_QUERY_LENGTH", "Neg",
    "Not", "Or", "Select", "SubqueryRef", "TableRef", "Value", "parse_adql", "tokenize",
]

MAX_QUERY_LENGTH = 20_000
"""Longest ADQL text accepted, characters."""

MAX_DEPTH = 50
"""Deepest nesting of parentheses / NOT / operator chains accepted."""

_TOKEN = re.compile(r"""
    (?P<ws>\s+|--[^\n]*)
  | (?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<str>'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")+")
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|<>|!=|\|\||[=<>(),.*+\-/;])
""", re.VERBOSE)

_KEYWORDS = {
    "select", "all", "distinct", "top", "from", "as", "where", "group", "having", "order", "by",
    "asc", "desc", "offset", "and", "or", "not", "between", "like", "ilike", "in", "is", "null",
    "exists", "join", "inner", "left", "right", "full", "outer", "cross", "natural", "on",
    "using", "union", "intersect", "except",
}


@dataclass(frozen=True)
class Token:
    """One token: ``kind`` is num, str, name, kw or op; ``text`` as written (kw and names
    lower-case, delimited identifiers without their quotes)."""

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
        elif kind == "name":
            tokens.append(Token("name", value.lower(), pos))
        elif kind == "quoted":
            tokens.append(Token("name", check_text("identifier", value[1:-1].replace('""', '"')),
                                pos))
        elif kind != "ws":
            tokens.append(Token(kind, value, pos))
        pos = match.end()
    return tokens


# -- the syntax tree ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ColumnRef:
    """A column, optionally qualified by a table name or alias (``qualifier`` as written)."""

    name: str
    qualifier: str | None = None


@dataclass(frozen=True)
class Literal:
    """A number, a string or NULL (``value`` None)."""

    value: int | float | str | None


@dataclass(frozen=True)
class Neg:
    """``-operand``."""

    operand: Value


@dataclass(frozen=True)
class Arith:
    """``left op right`` with op one of + - * / ||."""

    op: str
    left: Value
    right: Value


@dataclass(frozen=True)
class Func:
    """A function call (``name`` upper-case); ``star`` for ``COUNT(*)``."""

    name: str
    args: tuple[Value, ...]
    distinct: bool = False
    star: bool = False


Value = ColumnRef | Literal | Neg | Arith | Func


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
    """``value [NOT] LIKE pattern`` (case-sensitive; ILIKE: ``nocase``)."""

    value: Value
    pattern: Value
    negated: bool = False
    nocase: bool = False


@dataclass(frozen=True)
class InList:
    """``value [NOT] IN (items)``."""

    value: Value
    items: tuple[Value, ...]
    negated: bool = False


@dataclass(frozen=True)
class InQuery:
    """``value [NOT] IN (SELECT ...)``."""

    value: Value
    query: Select
    negated: bool = False


@dataclass(frozen=True)
class Exists:
    """``EXISTS (SELECT ...)``."""

    query: Select


@dataclass(frozen=True)
class IsNull:
    """``value IS [NOT] NULL``."""

    value: Value
    negated: bool = False


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


Condition = Compare | Between | Like | InList | InQuery | Exists | IsNull | And | Or | Not


@dataclass(frozen=True)
class TableRef:
    """A table by name (``schema.table``, as written) with an optional alias."""

    name: str
    alias: str | None = None


@dataclass(frozen=True)
class SubqueryRef:
    """``(SELECT ...) AS alias`` in FROM."""

    query: Select
    alias: str


@dataclass(frozen=True)
class Join:
    """``left kind JOIN right`` (kind: inner, left, right, full, cross) ON / USING / NATURAL."""

    kind: str
    left: FromItem
    right: FromItem
    on: Condition | None = None
    using: tuple[str, ...] = ()
    natural: bool = False


FromItem = TableRef | SubqueryRef | Join


@dataclass(frozen=True)
class AllColumns:
    """``*`` or ``qualifier.*`` in the select list."""

    qualifier: str | None = None


@dataclass(frozen=True)
class Select:
    """One SELECT: items are ``(value or AllColumns, alias or None)``; order items are
    ``(value, descending)``."""

    items: tuple[tuple[Value | AllColumns, str | None], ...]
    from_: tuple[FromItem, ...]
    where: Condition | None = None
    group_by: tuple[Value, ...] = ()
    having: Condition | None = None
    order: tuple[tuple[Value, bool], ...] = ()
    top: int | None = None
    offset: int | None = None
    distinct: bool = False


_COMPARISONS = {"=", "<>", "!=", "<", "<=", ">", ">="}


class _Parser:
    """Recursive descent over the token list (one instance per query)."""

    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0
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

    @contextmanager
    def nested(self) -> Iterator[None]:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"expression nested more than {MAX_DEPTH} levels deep")
        try:
            yield
        finally:
            self.depth -= 1

    # -- query ---------------------------------------------------------------------------
    def statement(self) -> Select:
        query = self.select()
        self.accept("op", ";")
        if self.peek() is not None:
            if self.at("kw", "union") or self.at("kw", "intersect") or self.at("kw", "except"):
                raise self.error("UNION, INTERSECT and EXCEPT are not supported")
            raise self.error("unexpected text after the query (one SELECT is accepted)")
        return query

    def select(self) -> Select:
        with self.nested():
            self.take("kw", "select")
            distinct = self.accept("kw", "distinct")
            if not distinct:
                self.accept("kw", "all")
            top = self.count("TOP") if self.accept("kw", "top") else None
            items = self.select_list()
            self.take("kw", "from")
            from_ = [self.from_item()]
            while self.accept("op", ","):
                from_.append(self.from_item())
            where = self.condition() if self.accept("kw", "where") else None
            group: list[Value] = []
            if self.accept("kw", "group"):
                self.take("kw", "by")
                group = [self.value()]
                while self.accept("op", ","):
                    group.append(self.value())
            having = self.condition() if self.accept("kw", "having") else None
            order: list[tuple[Value, bool]] = []
            if self.accept("kw", "order"):
                self.take("kw", "by")
                order = [self.order_item()]
                while self.accept("op", ","):
                    order.append(self.order_item())
            offset = self.count("OFFSET") if self.accept("kw", "offset") else None
            return Select(tuple(items), tuple(from_), where, tuple(group), having, tuple(order),
                          top, offset, distinct)

    def count(self, what: str) -> int:
        tok = self.peek()
        if tok is None or tok.kind != "num" or not tok.text.isdigit():
            raise self.error(f"{what} needs a whole number")
        self.i += 1
        return int(_number(tok.text))

    def select_list(self) -> list[tuple[Value | AllColumns, str | None]]:
        if self.accept("op", "*"):
            return [(AllColumns(), None)]
        items: list[tuple[Value | AllColumns, str | None]] = []
        while True:
            if self.at("name") and self.at("op", ".", 1) and self.at("op", "*", 2):
                items.append((AllColumns(self.take("name").text), None))
                self.i += 2
            elif self.at("name") and self.at("op", ".", 1) and self.at("name", offset=2) \
                    and self.at("op", ".", 3) and self.at("op", "*", 4):
                qualifier = self.take("name").text + "." + self.tokens[self.i + 1].text
                self.i += 4
                items.append((AllColumns(qualifier), None))
            else:
                value = self.value()
                alias = None
                if self.accept("kw", "as") or self.at("name"):
                    alias = self.take("name").text
                items.append((value, alias))
            if not self.accept("op", ","):
                return items

    def order_item(self) -> tuple[Value, bool]:
        value = self.value()
        desc = self.accept("kw", "desc")
        if not desc:
            self.accept("kw", "asc")
        return value, desc

    # -- FROM ----------------------------------------------------------------------------
    def from_item(self) -> FromItem:
        left = self.from_primary()
        while True:
            natural = self.accept("kw", "natural")
            kind = "inner"
            if self.accept("kw", "inner"):
                pass
            elif self.at("kw", "left") or self.at("kw", "right") or self.at("kw", "full"):
                kind = self.take("kw").text
                self.accept("kw", "outer")
            elif self.accept("kw", "cross"):
                kind = "cross"
            elif not self.at("kw", "join"):
                if natural:
                    raise self.error("expected JOIN after NATURAL")
                return left
            self.take("kw", "join")
            with self.nested():
                right = self.from_primary()
            on: Condition | None = None
            using: tuple[str, ...] = ()
            if kind != "cross" and not natural:
                if self.accept("kw", "on"):
                    on = self.condition()
                elif self.accept("kw", "using"):
                    self.take("op", "(")
                    names = [self.take("name").text]
                    while self.accept("op", ","):
                        names.append(self.take("name").text)
                    self.take("op", ")")
                    using = tuple(names)
                else:
                    raise self.error("a JOIN needs ON or USING (or NATURAL / CROSS JOIN)")
            left = Join(kind, left, right, on, using, natural)

    def from_primary(self) -> FromItem:
        if self.accept("op", "("):
            with self.nested():
                if self.at("kw", "select"):
                    query = self.select()
                    self.take("op", ")")
                    self.accept("kw", "as")
                    return SubqueryRef(query, self.take("name").text)
                inner = self.from_item()
            self.take("op", ")")
            return inner
        name = self.take("name").text
        while self.accept("op", "."):
            name += "." + self.take("name").text
        alias = None
        if self.accept("kw", "as") or self.at("name"):
            alias = self.take("name").text
        return TableRef(name, alias)

    # -- conditions ----------------------------------------------------------------------
    def condition(self) -> Condition:
        with self.nested():
            items = [self.conjunction()]
            while self.accept("kw", "or"):
                items.append(self.conjunction())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def conjunction(self) -> Condition:
        items = [self.negation()]
        while self.accept("kw", "and"):
            items.append(self.negation())
        return items[0] if len(items) == 1 else And(tuple(items))

    def negation(self) -> Condition:
        if self.accept("kw", "not"):
            with self.nested():
                item = self.negation()
            return Not(item)
        return self.predicate()

    def predicate(self) -> Condition:
        if self.accept("kw", "exists"):
            self.take("op", "(")
            query = self.select()
            self.take("op", ")")
            return Exists(query)
        if self.at("op", "(") and not self.at("kw", "select", 1):
            self.i += 1
            with self.nested():
                inner = self._condition_or_bare()
            self.take("op", ")")
            if not isinstance(inner, _Bare):
                return inner
            # a parenthesised value, e.g. (t_max - t_min) * 86400 > 100
            return self.value_predicate(self.value_rest(inner.value))
        return self.value_predicate(self.value())

    def _condition_or_bare(self) -> Condition | _Bare:
        start, depth = self.i, self.depth
        try:
            return self.condition()
        except ADQLBareValueError:
            self.i, self.depth = start, depth  # parse again as one value, e.g. (a + b)
        value = self.value()
        if not self.at("op", ")"):
            raise self.error("a value is not a condition (compare it with something)")
        return _Bare(value)

    def value_predicate(self, left: Value) -> Condition:
        negated = self.accept("kw", "not")
        if self.accept("kw", "between"):
            low = self.value()
            self.take("kw", "and")
            return Between(left, low, self.value(), negated)
        if self.at("kw", "like") or self.at("kw", "ilike"):
            nocase = self.take("kw").text == "ilike"
            return Like(left, self.value(), negated, nocase)
        if self.accept("kw", "in"):
            self.take("op", "(")
            if self.at("kw", "select"):
                query = self.select()
                self.take("op", ")")
                return InQuery(left, query, negated)
            items = [self.value()]
            while self.accept("op", ","):
                items.append(self.value())
            self.take("op", ")")
            return InList(left, tuple(items), negated)
        if negated:
            raise self.error("expected BETWEEN, LIKE or IN after NOT")
        if self.at("op", ")") and self.depth > 0:
            raise ADQLBareValueError(left)
        if self.accept("kw", "is"):
            negated = self.accept("kw", "not")
            self.take("kw", "null")
            return IsNull(left, negated)
        tok = self.peek()
        if tok is None or tok.kind != "op" or tok.text not in _COMPARISONS:
            raise self.error("expected a comparison (=, <>, <, <=, >, >=, BETWEEN, LIKE, IN, "
                             "IS NULL)")
        self.i += 1
        return Compare("<>" if tok.text == "!=" else tok.text, left, self.value())

    # -- values --------------------------------------------------------------------------
    def value(self) -> Value:
        with self.nested():
            return self.value_rest(self.factor())

    def value_rest(self, left: Value) -> Value:
        """Continue a value whose first factor is ``left``."""
        saved = self.depth
        try:
            left = self.term_rest(left)
            while self.at("op", "+") or self.at("op", "-") or self.at("op", "||"):
                op = self.take("op").text
                self._deeper()
                left = Arith(op, left, self.term_rest(self.factor()))
            return left
        finally:
            self.depth = saved

    def term_rest(self, left: Value) -> Value:
        saved = self.depth
        try:
            while self.at("op", "*") or self.at("op", "/"):
                op = self.take("op").text
                self._deeper()
                left = Arith(op, left, self.factor())
            return left
        finally:
            self.depth = saved

    def _deeper(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"expression nested more than {MAX_DEPTH} levels deep")

    def factor(self) -> Value:
        if self.accept("op", "-"):
            with self.nested():
                inner = self.factor()
            if isinstance(inner, Literal) and isinstance(inner.value, int | float):
                return Literal(-inner.value)
            return Neg(inner)
        if self.accept("op", "+"):
            with self.nested():
                return self.factor()
        if self.at("num"):
            return Literal(_number(self.take("num").text))
        if self.at("str"):
            return Literal(self.string())
        if self.accept("kw", "null"):
            return Literal(None)
        if self.accept("op", "("):
            with self.nested():
                if self.at("kw", "select"):
                    raise self.error("a sub-query is accepted after IN, EXISTS and in FROM")
                inner = self.value()
            self.take("op", ")")
            return inner
        if self.at("name") and self.at("op", "(", offset=1):
            return self.function()
        if self.at("kw", "left") or self.at("kw", "right"):  # LEFT(...) is not ADQL
            raise self.error("expected a value")
        if self.at("name"):
            name = self.take("name").text
            if self.accept("op", "."):
                qualifier = name
                name = self.take("name").text
                if self.accept("op", "."):  # schema.table.column
                    qualifier += "." + name
                    name = self.take("name").text
                return ColumnRef(name, qualifier)
            return ColumnRef(name)
        raise self.error("expected a column, a number, a string or a function")

    def function(self) -> Func:
        name = self.take("name").text.upper()
        self.take("op", "(")
        with self.nested():
            if self.accept("op", "*"):
                self.take("op", ")")
                return Func(name, (), star=True)
            distinct = self.accept("kw", "distinct")
            args: list[Value] = []
            if not self.at("op", ")"):
                args.append(self.value())
                while self.accept("op", ","):
                    args.append(self.value())
            self.take("op", ")")
        return Func(name, tuple(args), distinct)

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


def parse_adql(text: str) -> Select:
    """Parse one ADQL query (see the module docstring)."""
    tokens = tokenize(text)
    if not tokens:
        raise VOQueryError("empty QUERY")
    return _Parser(tokens).statement()
