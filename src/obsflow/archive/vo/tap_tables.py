"""The tables TAP serves: ``ivoa.ObsCore`` and the five ``TAP_SCHEMA`` tables.

:data:`TABLES` holds each table's metadata (the one source of the VOSI
``/tables`` document and of the TAP_SCHEMA rows, so the two always agree).
:func:`table_source` gives a table as a SQLAlchemy SELECT whose columns
are labelled with the ADQL column names:

* ``ivoa.ObsCore`` is :func:`~obsflow.archive.vo.obscore.obscore_select`
  (the exclusive-access policy applied inside it, so no query of it can see
  a hidden row), plus the exposure's unit vector and HEALPix index under
  :data:`HIDDEN` names for the indexed cone test;
* TAP_SCHEMA tables are literal rows built from :data:`TABLES` (they hold
  metadata only, never a proprietary value).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, cast, false, literal, null, select, union_all

from obsflow.archive.policy import Viewer
from obsflow.archive.schema import Exposure, Product
from obsflow.archive.vo.obscore import COLUMNS, ColumnSpec, obscore_columns, obscore_select

__all__ = ["ForeignKey", "HIDDEN", "TABLES", "TapTable", "adql_name", "find_table", "table_source"]


@dataclass(frozen=True)
class ForeignKey:
    """``from_table.from_column`` refers to ``target_table.target_column``."""

    key_id: str
    from_table: str
    target_table: str
    from_column: str
    target_column: str
    description: str


@dataclass(frozen=True)
class TapTable:
    """One table: schema, full name as published, description, columns, utype, and the
    foreign keys from it."""

    schema: str
    name: str
    description: str
    columns: tuple[ColumnSpec, ...]
    utype: str = ""
    keys: tuple[ForeignKey, ...] = ()



def adql_name(spec: ColumnSpec) -> str:
    """A column's name without the quotes of a delimited identifier, lower case
    (``"size"`` -> ``size``): the key ADQL names resolve to and the result column name."""
    return spec.name.strip('"').lower()


def _col(name: str, datatype: str, description: str) -> ColumnSpec:
    return ColumnSpec(name, datatype, "str" if datatype == "char" else "num", "", "", "",
                      description, principal=True)


_S, _I = "char", "int"
_T = "TAP_SCHEMA."


def _key(key_id: str, from_table: str, target_table: str, from_column: str,
         target_column: str) -> tuple[ForeignKey, ...]:
    return (ForeignKey(key_id, _T + from_table, _T + target_table, from_column, target_column,
                       f"{from_table}.{from_column} names a row of {target_table}"),)


TAP_SCHEMA_TABLES: tuple[TapTable, ...] = (
    TapTable("TAP_SCHEMA", "TAP_SCHEMA.schemas", "Schemas of this service", (
        _col("schema_name", _S, "Schema name"), _col("utype", _S, "Schema utype"),
        _col("description", _S, "Schema description"),
        _col("schema_index", _I, "Recommended order of schemas"))),
    TapTable("TAP_SCHEMA", "TAP_SCHEMA.tables", "Tables of this service", (
        _col("schema_name", _S, "Schema name"), _col("table_name", _S, "Table name (qualified)"),
        _col("table_type", _S, "table or view"), _col("utype", _S, "Table utype"),
        _col("description", _S, "Table description"),
        _col("table_index", _I, "Recommended order of tables")),
        keys=_key("tables_schema", "tables", "schemas", "schema_name", "schema_name")),
    TapTable("TAP_SCHEMA", "TAP_SCHEMA.columns", "Columns of the tables of this service", (
        _col("table_name", _S, "Table name (qualified)"), _col("column_name", _S, "Column name"),
        _col("utype", _S, "Column utype"), _col("ucd", _S, "Column UCD"),
        _col("unit", _S, "Column unit (VOUnit)"), _col("description", _S, "Column description"),
        _col("datatype", _S, "VOTable datatype"), _col("arraysize", _S, "VOTable arraysize"),
        _col("xtype", _S, "VOTable xtype"), _col('"size"', _I, "Fixed length (deprecated)"),
        _col("principal", _I, "1 if a principal column"),
        _col("indexed", _I, "1 if indexed"), _col("std", _I, "1 if defined by a standard"),
        _col("column_index", _I, "Recommended order of columns")),
        keys=_key("columns_table", "columns", "tables", "table_name", "table_name")),
    TapTable("TAP_SCHEMA", "TAP_SCHEMA.keys", "Foreign keys between tables", (
        _col("key_id", _S, "Key identifier"), _col("from_table", _S, "Table with the key"),
        _col("target_table", _S, "Table the key points to"), _col("utype", _S, "Key utype"),
        _col("description", _S, "Key description")),
        keys=_key("keys_from", "keys", "tables", "from_table", "table_name")
        + _key("keys_target", "keys", "tables", "target_table", "table_name")),
    TapTable("TAP_SCHEMA", "TAP_SCHEMA.key_columns", "Columns of the foreign keys", (
        _col("key_id", _S, "Key identifier"), _col("from_column", _S, "Column of from_table"),
        _col("target_column", _S, "Column of target_table")),
        keys=_key("key_columns_key", "key_columns", "keys", "key_id", "key_id")),
)

OBSCORE_TABLE = TapTable("ivoa", "ivoa.ObsCore", "ObsCore 1.1: one row per latest product",
                         COLUMNS, "ivo://ivoa.net/std/obscore#core-1.1")

TABLES: tuple[TapTable, ...] = (OBSCORE_TABLE, *TAP_SCHEMA_TABLES)
"""Every table, in the order ``/tables`` lists them."""

SCHEMAS: tuple[tuple[str, str], ...] = (
    ("ivoa", "IVOA-defined tables"), ("TAP_SCHEMA", "Metadata of this TAP service"))
"""``(schema, description)`` in order."""

HIDDEN = ("obsflow_cx", "obsflow_cy", "obsflow_cz", "obsflow_hpx", "obsflow_eid")
"""Internal ObsCore columns (exposure unit vector, HEALPix index of its centre, the product's
exposure id for the footprint-cell prefilter): not reachable from ADQL."""

_BY_NAME = {t.name.lower(): t for t in TABLES}


def find_table(name: str) -> TapTable | None:
    """The table named ``name`` (``schema.table``, any case), or None."""
    return _BY_NAME.get(name.lower())


def _schema_rows() -> dict[str, list[tuple[Any, ...]]]:
    """The TAP_SCHEMA tables' rows, by table name (lower case)."""
    schemas = [(name, None, desc, j) for j, (name, desc) in enumerate(SCHEMAS)]
    tables = [(t.schema, t.name, "table", t.utype or None, t.description, j)
              for j, t in enumerate(TABLES)]
    columns = [(t.name, c.name, c.utype or None, c.ucd or None, c.unit or None,
                c.description or None, c.datatype, c.arraysize, c.xtype or None, None,
                int(c.principal), int(c.indexed), int(bool(c.utype) or t.schema == "TAP_SCHEMA"),
                j)
               for t in TABLES for j, c in enumerate(t.columns)]
    keys = [k for t in TABLES for k in t.keys]
    return {"tap_schema.schemas": schemas, "tap_schema.tables": tables,
            "tap_schema.columns": columns,
            "tap_schema.keys": [(k.key_id, k.from_table, k.target_table, None, k.description)
                                for k in keys],
            "tap_schema.key_columns": [(k.key_id, k.from_column, k.target_column)
                                       for k in keys]}


def _typed(value: Any, spec: ColumnSpec) -> Any:
    sql_type = String if spec.datatype == "char" else Integer
    return cast(null(), sql_type) if value is None else literal(value, sql_type)


def _literal_rows(table: TapTable, rows: list[tuple[Any, ...]]) -> Any:
    if not rows:
        return select(*(_typed(None, c).label(adql_name(c)) for c in table.columns)
                      ).where(false())
    selects = [select(*(_typed(v, c).label(adql_name(c))
                        for v, c in zip(row, table.columns, strict=True)))
               for row in rows]
    return union_all(*selects) if len(selects) > 1 else selects[0]


def table_source(table: TapTable, viewer: Viewer, now: datetime, base_url: str,
                 authority: str) -> Any:
    """``table`` as a SELECT (to alias as a subquery or CTE) with columns labelled by their
    ADQL names (see the module)."""
    if table is OBSCORE_TABLE:
        exprs = obscore_columns(base_url, authority)
        hidden = (Exposure.cx, Exposure.cy, Exposure.cz, Exposure.hpx, Product.exposure_id)
        return obscore_select(
            [exprs[c.name].label(adql_name(c)) for c in COLUMNS]
            + [col.label(name) for col, name in zip(hidden, HIDDEN, strict=True)],
            viewer, now)
    return _literal_rows(table, _schema_rows()[table.name.lower()])

