"""VOTable and VOSI documents of the VO endpoints.

* :func:`results_votable`: query results (astropy.io.votable), with
  ``<INFO name="QUERY_STATUS" value="OK">`` (``OVERFLOW`` when MAXREC cut
  the result) and every field's UCD, utype and unit from the ObsCore columns.
* :func:`error_votable`: ``QUERY_STATUS=ERROR`` with the message, what
  pyvo turns into ``DALQueryError``.
* :func:`capabilities_xml`, :func:`availability_xml`, :func:`tables_xml`:
  the VOSI documents; every URL in them is absolute (built from the request's
  own base URL) so clients follow it to the right host and port.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np
from astropy.io.votable.tree import (
    Field,
    Group,
    Info,
    Param,
    Resource,
    TableElement,
    VOTableFile,
)

from obsflow import __version__
from obsflow.archive.vo.obscore import ColumnSpec

if TYPE_CHECKING:
    from obsflow.archive.vo.tap_tables import ForeignKey

__all__ = ["DATALINK_STANDARD", "VOTABLE_TYPE", "availability_xml", "capabilities_xml", "error_votable",
           "results_votable", "tables_xml"]

VOTABLE_TYPE = "application/x-votable+xml"
"""Media type of every VOTable answer."""

_NUMPY = {"double": np.float64, "long": np.int64, "int": np.int32}


def _column_values(spec: ColumnSpec, values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    mask = np.array([v is None for v in values], dtype=bool)
    if spec.datatype == "char":
        out = np.empty(len(values), dtype=object)
        out[:] = ["" if v is None else v.isoformat() if isinstance(v, datetime) else str(v)
                  for v in values]
        return out, mask
    fill = 0 if spec.datatype != "double" else np.nan
    return np.array([fill if v is None else v for v in values], dtype=_NUMPY[spec.datatype]), mask


DATALINK_STANDARD = "ivo://ivoa.net/std/DataLink#links-1.1"
"""The standardID of a DataLink links service."""

_DID = "obs_publisher_did"


def _field(vot: VOTableFile, spec: ColumnSpec, name: str, ident: str | None = None) -> Field:
    return Field(vot, name=name, ID=ident, datatype=spec.datatype, arraysize=spec.arraysize,
                 ucd=spec.ucd or None, utype=spec.utype or None, unit=spec.unit or None,
                 xtype=spec.xtype or None)


def _service_descriptor(vot: VOTableFile, url: str) -> Resource:
    """A DataLink service descriptor (DataLink 1.1 section 4): the links service at ``url``
    takes ``ID`` from each row's ``obs_publisher_did``."""
    meta = Resource(type="meta", utype="adhoc:service", ID="datalink_service")
    meta.params.append(Param(vot, name="standardID", datatype="char", arraysize="*",
                             value=DATALINK_STANDARD))
    meta.params.append(Param(vot, name="accessURL", datatype="char", arraysize="*",
                             value=url, ucd="meta.ref.url"))
    group = Group(meta, name="inputParams")
    group.entries.append(Param(vot, name="ID", datatype="char", arraysize="*", value="",
                               ref=_DID, ucd="meta.id;meta.main"))
    meta.groups.append(group)
    return meta


def results_votable(columns: Sequence[tuple[ColumnSpec, str]], rows: Sequence[Sequence[Any]],
                    overflow: bool = False, datalink_url: str | None = None) -> bytes:
    """A results VOTable: one field per ``(column, output name)``, one row per row; with
    ``datalink_url`` and an ``obs_publisher_did`` column, the DataLink service descriptor."""
    vot = VOTableFile(version="1.4")
    resource = Resource(type="results")
    vot.resources.append(resource)
    status = "OVERFLOW" if overflow else "OK"
    resource.infos.append(Info(name="QUERY_STATUS", value=status))
    resource.infos.append(Info(name="SERVICE_PROTOCOL", value="obsflow " + __version__))
    table = TableElement(vot)
    resource.tables.append(table)
    names = [name for _, name in columns]
    did = names.index(_DID) if _DID in names else -1  # the descriptor's ID parameter refers to it
    table.fields.extend(_field(vot, spec, name, _DID if j == did else None)
                        for j, (spec, name) in enumerate(columns))
    table.create_arrays(len(rows))
    for j, (spec, name) in enumerate(columns):
        data, mask = _column_values(spec, [row[j] for row in rows])
        table.array[name] = data
        table.array.mask[name] = mask
        if table.fields[j].description is None and spec.description:
            table.fields[j].description = spec.description
    if datalink_url and did >= 0:
        vot.resources.append(_service_descriptor(vot, datalink_url))
    buf = io.BytesIO()
    vot.to_xml(buf)
    return buf.getvalue()


def error_votable(message: str) -> bytes:
    """A VOTable saying ``QUERY_STATUS=ERROR`` with ``message`` (DALI)."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">\n'
            ' <RESOURCE type="results">\n'
            f'  <INFO name="QUERY_STATUS" value="ERROR">{escape(message)}</INFO>\n'
            ' </RESOURCE>\n'
            '</VOTABLE>\n').encode()


_CAPS_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns:vr="http://www.ivoa.net/xml/VOResource/v1.0"
    xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1"
    xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0">
"""

_GEOMETRY_FEATURES = ("POINT", "CIRCLE", "BOX", "POLYGON", "CONTAINS", "INTERSECTS",
                      "DISTANCE", "COORD1", "COORD2")
_ADQL_FEATURES = (("ivo://ivoa.net/std/TAPRegExt#features-adql-string", "LOWER"),
                  ("ivo://ivoa.net/std/TAPRegExt#features-adql-string", "ILIKE"),
                  ("ivo://ivoa.net/std/TAPRegExt#features-adql-sets", "OFFSET"),
                  ("ivo://ivoa.net/std/TAPRegExt#features-adql-common-table", "COALESCE"))


def _features() -> str:
    geo = "".join(f"    <feature><form>{name}</form></feature>\n" for name in _GEOMETRY_FEATURES)
    out = ('   <languageFeatures type="ivo://ivoa.net/std/TAPRegExt#features-adqlgeo">\n'
           f"{geo}   </languageFeatures>\n")
    for kind, name in _ADQL_FEATURES:
        out += (f'   <languageFeatures type="{kind}">\n'
                f"    <feature><form>{name}</form></feature>\n   </languageFeatures>\n")
    return out


_TAP_BODY = """  <dataModel ivo-id="ivo://ivoa.net/std/ObsCore#core-1.1">ObsCore-1.1</dataModel>
  <language>
   <name>ADQL</name>
   <version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version>
   <version ivo-id="ivo://ivoa.net/std/ADQL#v2.1">2.1</version>
   <description>ADQL 2.1 core (docs/archive.md): SELECT [DISTINCT] [TOP], expressions,
     aggregates with GROUP BY / HAVING, ORDER BY, OFFSET, joins, IN and EXISTS sub-queries,
     string and math functions, geometry</description>
{features}  </language>
  <outputFormat ivo-id="ivo://ivoa.net/std/TAPRegExt#output-votable-td">
   <mime>application/x-votable+xml</mime>
   <alias>votable</alias>
  </outputFormat>
  <retentionPeriod><default>{retention}</default><hard>{retention}</hard></retentionPeriod>
  <executionDuration><default>{duration}</default><hard>{duration}</hard></executionDuration>
  <outputLimit>
   <default unit="row">{default}</default>
   <hard unit="row">{hard}</hard>
  </outputLimit>
"""


def _capability(standard_id: str, url: str, extra_type: str = "", body: str = "",
                role: str = "", version: str = "") -> str:
    xsi = f' xsi:type="{extra_type}"' if extra_type else ""
    role_attr = (f' role="{role}"' if role else "") + (f' version="{version}"' if version else "")
    return (f"  <capability standardID={quoteattr(standard_id)}{xsi}>\n"
            f'   <interface xsi:type="vs:ParamHTTP"{role_attr}>\n'
            f'    <accessURL use="base">{escape(url)}</accessURL>\n'
            "   </interface>\n"
            f"{body}"
            "  </capability>\n")


def capabilities_xml(service: str, base: str, maxrec: tuple[int, int]) -> bytes:
    """VOSI capabilities of ``service`` (``sia2`` or ``tap``) mounted at ``base`` (absolute)."""
    from obsflow.archive.vo.uws import EXECUTION_DURATION_S, RETENTION_S

    parts = [_CAPS_HEAD,
             _capability("ivo://ivoa.net/std/VOSI#capabilities", f"{base}/capabilities"),
             _capability("ivo://ivoa.net/std/VOSI#availability", f"{base}/availability")]
    if service == "sia2":
        parts.append(_capability("ivo://ivoa.net/std/SIA#query-2.0", f"{base}/query",
                                 role="std"))
    elif service == "datalink":
        parts.append(_capability(DATALINK_STANDARD, f"{base}/links", role="std"))
    else:
        parts.append(_capability("ivo://ivoa.net/std/VOSI#tables", f"{base}/tables"))
        parts.append(_capability("ivo://ivoa.net/std/DALI#examples", f"{base}/examples"))
        body = _TAP_BODY.format(default=maxrec[0], hard=maxrec[1], features=_features(),
                                retention=RETENTION_S, duration=EXECUTION_DURATION_S)
        parts.append(_capability("ivo://ivoa.net/std/TAP", base, "tr:TableAccess", body,
                                 role="std", version="1.1"))
    parts.append("</vosi:capabilities>\n")
    return "".join(parts).encode()


def availability_xml(note: str = "service is accepting queries") -> bytes:
    """VOSI availability: always available while the server runs."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">\n'
            "  <vosi:available>true</vosi:available>\n"
            f"  <vosi:note>{escape(note)}</vosi:note>\n"
            "</vosi:availability>\n").encode()


def _column_xml(spec: ColumnSpec) -> str:
    std = ' std="true"' if spec.utype else ""
    parts = [f"    <column{std}>",
             f"<name>{spec.name}</name>",
             f"<description>{escape(spec.description)}</description>"]
    if spec.unit:
        parts.append(f"<unit>{spec.unit}</unit>")
    if spec.ucd:
        parts.append(f"<ucd>{spec.ucd}</ucd>")
    if spec.utype:
        parts.append(f"<utype>{spec.utype}</utype>")
    size = ' arraysize="*"' if spec.arraysize else ""
    xtype = f' extendedType="{spec.xtype}"' if spec.xtype else ""
    parts.append(f'<dataType xsi:type="vs:VOTableType"{size}{xtype}>{spec.datatype}</dataType>')
    if spec.indexed:
        parts.append("<flag>indexed</flag>")
    if spec.principal:
        parts.append("<flag>principal</flag>")
    parts.append("</column>\n")
    return "".join(parts)


def _key_xml(key: ForeignKey) -> str:
    return ("    <foreignKey>"
            f"<targetTable>{escape(key.target_table)}</targetTable>"
            f"<fkColumn><fromColumn>{escape(key.from_column)}</fromColumn>"
            f"<targetColumn>{escape(key.target_column)}</targetColumn></fkColumn>"
            f"<description>{escape(key.description)}</description></foreignKey>\n")


def tables_xml() -> bytes:
    """VOSI tables: every schema and table of :data:`~obsflow.archive.vo.tap_tables.TABLES`
    with its columns (the same metadata TAP_SCHEMA holds)."""
    from obsflow.archive.vo.tap_tables import SCHEMAS, TABLES

    body = []
    for schema, description in SCHEMAS:
        body.append(f" <schema>\n  <name>{escape(schema)}</name>\n"
                    f"  <description>{escape(description)}</description>\n")
        for table in (t for t in TABLES if t.schema == schema):
            utype = f"   <utype>{escape(table.utype)}</utype>\n" if table.utype else ""
            body.append('  <table type="table">\n'
                        f"   <name>{escape(table.name)}</name>\n"
                        f"   <description>{escape(table.description)}</description>\n"
                        f"{utype}" + "".join(_column_xml(c) for c in table.columns)
                        + "".join(_key_xml(k) for k in table.keys) + "  </table>\n")
        body.append(" </schema>\n")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<vosi:tableset xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0"\n'
            '    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"\n'
            '    xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1">\n'
            + "".join(body) + "</vosi:tableset>\n").encode()
