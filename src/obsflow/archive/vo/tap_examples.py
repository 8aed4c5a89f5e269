"""The DALI examples document of the TAP service (``/vo/tap/examples``).

:data:`EXAMPLES` are ADQL queries a newcomer can copy (the tests run every
one of them on both databases); :func:`examples_xhtml` writes them as XHTML
with the RDFa properties DALI 1.1 defines (``example``, ``name``, ``query``),
which TOPCAT and taplint read.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

__all__ = ["EXAMPLES", "Example", "examples_xhtml"]


@dataclass(frozen=True)
class Example:
    """One example: fragment id, title, what it shows, the ADQL."""

    id: str
    name: str
    description: str
    query: str


EXAMPLES: tuple[Example, ...] = (
    Example("cone", "Products around a position",
            "Latest products whose field centre lies within 0.1 degree of a position "
            "(the ADQL standard's argument order, indexed by HEALPix).",
            "SELECT TOP 10 obs_id, dataproduct_type, calib_level, s_ra, s_dec, t_min, "
            "access_url FROM ivoa.ObsCore WHERE 1 = CONTAINS(POINT('ICRS', s_ra, s_dec), "
            "CIRCLE('ICRS', 80.49, -69.5, 0.1)) ORDER BY t_min"),
    Example("footprint", "Footprints overlapping a region",
            "Products whose footprint polygon (s_region) overlaps a box on the sky.",
            "SELECT obs_id, filter, s_region FROM ivoa.ObsCore WHERE "
            "INTERSECTS(s_region, BOX('ICRS', 80.49, -69.5, 0.2, 0.2)) = 1"),
    Example("per-filter", "How many products per filter and level",
            "An aggregate: counts and time ranges grouped by filter and calibration level.",
            "SELECT filter, calib_level, COUNT(*) AS n, MIN(t_min) AS first_mjd, "
            "MAX(t_max) AS last_mjd FROM ivoa.ObsCore GROUP BY filter, calib_level "
            "HAVING COUNT(*) > 0 ORDER BY filter, calib_level"),
    Example("nearest", "Nearest products to a position",
            "Angular distance in degrees with DISTANCE, sorted by it.",
            "SELECT TOP 5 obs_id, DISTANCE(POINT('ICRS', s_ra, s_dec), "
            "POINT('ICRS', 80.49, -69.5)) AS dist_deg FROM ivoa.ObsCore ORDER BY dist_deg"),
    Example("ramps", "Raw ramps of a target",
            "Level-1 ramp cubes whose target name starts with CAL, with download URLs.",
            "SELECT o.obs_id, o.target_name, o.access_url FROM ivoa.ObsCore AS o "
            "WHERE o.calib_level = 1 AND o.target_name LIKE 'CAL%'"),
    Example("columns", "Columns of the ObsCore table",
            "TAP_SCHEMA, joined: every ObsCore column with its unit and UCD.",
            "SELECT c.column_name, c.unit, c.ucd FROM TAP_SCHEMA.columns AS c "
            "JOIN TAP_SCHEMA.tables AS t ON c.table_name = t.table_name "
            "WHERE t.table_name = 'ivoa.ObsCore' ORDER BY column_index"),
)
"""The examples, in the order the document lists them."""


def examples_xhtml() -> bytes:
    """The examples as a DALI examples XHTML document."""
    body = "".join(
        f'  <div typeof="example" id="{e.id}" resource="#{e.id}">\n'
        f'   <h2 property="name">{escape(e.name)}</h2>\n'
        f"   <p>{escape(e.description)}</p>\n"
        f'   <pre property="query">{escape(e.query)}</pre>\n'
        "  </div>\n" for e in EXAMPLES)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML+RDFa 1.1//EN" '
            '"http://www.w3.org/MarkUp/DTD/xhtml-rdfa-2.dtd">\n'
            '<html xmlns="http://www.w3.org/1999/xhtml" version="XHTML+RDFa 1.1">\n'
            " <head><title>obsflow TAP examples</title></head>\n"
            ' <body vocab="http://www.ivoa.net/rdf/examples#">\n'
            "  <h1>Example ADQL queries of this service</h1>\n"
            f"{body} </body>\n</html>\n").encode()
