"""The ObsCore view of the catalog: column metadata and the SQL that builds it.

One row per **latest** product the viewer may see::

    products p JOIN exposures e ON p.exposure_id = e.id
               JOIN programs g ON g.program = e.program
    WHERE p.is_latest AND <access policy>

:data:`COLUMNS` lists every column in ObsCore 1.1 order (all the mandatory
ones, then optional and local ones) with the datatype, unit, UCD and utype
the VOTable fields and the VOSI ``/tables`` document carry.  Columns with no
source in the catalog (``pol_states``: no polarization) are NULL.

:func:`obscore_columns` maps each name to a SQLAlchemy expression on the
underlying tables (not on a subquery), so conditions on ``s_ra``/``s_dec``
or ``t_min`` use the tables' indexes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Select,
    String,
    case,
    cast,
    func,
    literal,
    literal_column,
    null,
    select,
)

from obsflow.archive.policy import Viewer, visible_clause
from obsflow.archive.schema import Exposure, Product, Program

__all__ = ["COLUMNS", "BY_NAME", "ColumnSpec", "latest_clause", "obscore_columns", "obscore_select", "result_columns"]


@dataclass(frozen=True)
class ColumnSpec:
    """One ObsCore column.

    ``kind`` is what ADQL may compare it with: ``num`` (numbers), ``str``
    (strings) or ``time`` (ISO date strings); ``datatype`` the VOTable type.
    """

    name: str
    datatype: str
    kind: str
    ucd: str
    utype: str = ""
    unit: str = ""
    description: str = ""
    principal: bool = False
    xtype: str = ""
    indexed: bool = False

    @property
    def arraysize(self) -> str | None:
        """``*`` for strings (variable length), None otherwise."""
        return "*" if self.datatype == "char" else None


_XTYPES = {"timestamp": "timestamp", "region": "adql:REGION"}
_INDEXED = {"s_ra", "s_dec", "t_min", "obs_id", "product_id"}


def _c(name: str, datatype: str, ucd: str, utype: str, unit: str, description: str,
       principal: bool = False) -> ColumnSpec:
    kind = {"char": "str", "timestamp": "time", "region": "region"}.get(datatype, "num")
    return ColumnSpec(name, "char" if datatype in _XTYPES else datatype, kind, ucd,
                      utype and f"obscore:{utype}", unit, description, principal,
                      _XTYPES.get(datatype, ""), name in _INDEXED)


_SPATIAL = "Char.SpatialAxis."
_TIME = "Char.TimeAxis."
_SPECTRAL = "Char.SpectralAxis."

COLUMNS: tuple[ColumnSpec, ...] = (
    _c("dataproduct_type", "char", "meta.code.class", "ObsDataset.dataProductType", "",
       "Data product type: image or cube", True),
    _c("calib_level", "int", "meta.code;obs.calib", "ObsDataset.calibLevel", "",
       "Calibration level: 1 raw ramps, 2 calibrated exposure, 3 combined", True),
    _c("obs_collection", "char", "meta.id", "DataID.Collection", "",
       "Collection: the facility", True),
    _c("obs_id", "char", "meta.id", "DataID.observationID", "",
       "Exposure identifier (file stem)", True),
    _c("obs_publisher_did", "char", "meta.ref.ivoid", "Curation.PublisherDID", "",
       "IVOA publisher dataset identifier", True),
    _c("access_url", "char", "meta.ref.url", "Access.Reference", "",
       "URL to download the product", True),
    _c("access_format", "char", "meta.code.mime", "Access.Format", "",
       "MIME type of the product", True),
    _c("access_estsize", "long", "phys.size;meta.file", "Access.Size", "kbyte",
       "Size of the product file", True),
    _c("target_name", "char", "meta.id;src", "Target.Name", "", "Target name", True),
    _c("s_ra", "double", "pos.eq.ra", _SPATIAL + "Coverage.Location.Coord.Position2D.Value2.C1",
       "deg", "Right ascension of the field centre (ICRS)", True),
    _c("s_dec", "double", "pos.eq.dec", _SPATIAL + "Coverage.Location.Coord.Position2D.Value2.C2",
       "deg", "Declination of the field centre (ICRS)", True),
    _c("s_fov", "double", "phys.angSize;instr.fov", _SPATIAL + "Coverage.Bounds.Extent.diameter",
       "deg", "Diameter of the field", True),
    _c("s_region", "region", "pos.outline;obs.field", _SPATIAL + "Coverage.Support.Area", "",
       "Footprint (STC-S polygon, ICRS)"),
    _c("s_resolution", "double", "pos.angResolution", _SPATIAL + "Resolution.Refval.value",
       "arcsec", "Spatial resolution (PSF FWHM)"),
    _c("s_xel1", "long", "meta.number", _SPATIAL + "numBins1", "", "Pixels along axis 1"),
    _c("s_xel2", "long", "meta.number", _SPATIAL + "numBins2", "", "Pixels along axis 2"),
    _c("t_min", "double", "time.start;obs.exposure", _TIME + "Coverage.Bounds.Limits.StartTime",
       "d", "Start of the exposure (MJD UTC)", True),
    _c("t_max", "double", "time.end;obs.exposure", _TIME + "Coverage.Bounds.Limits.StopTime",
       "d", "End of the exposure (MJD UTC)", True),
    _c("t_exptime", "double", "time.duration;obs.exposure", _TIME + "Coverage.Support.Extent",
       "s", "Exposure time", True),
    _c("t_resolution", "double", "time.resolution", _TIME + "Resolution.Refval.value", "s",
       "Time one sample spans: a group of a ramp, an integration, else the exposure"),
    _c("t_xel", "long", "meta.number", _TIME + "numBins", "",
       "Time samples: groups x integrations of a ramp, integrations, else 1"),
    _c("em_min", "double", "em.wl;stat.min", _SPECTRAL + "Coverage.Bounds.Limits.LoLimit", "m",
       "Shortest wavelength of the filter band", True),
    _c("em_max", "double", "em.wl;stat.max", _SPECTRAL + "Coverage.Bounds.Limits.HiLimit", "m",
       "Longest wavelength of the filter band", True),
    _c("em_res_power", "double", "spect.resolution", _SPECTRAL + "Resolution.ResolPower.refVal",
       "", "Spectral resolving power: the filter's pivot wavelength / width"),
    _c("em_xel", "long", "meta.number", _SPECTRAL + "numBins", "", "Spectral bins"),
    _c("o_ucd", "char", "meta.ucd", "Char.ObservableAxis.ucd", "", "UCD of the observable"),
    _c("pol_states", "char", "meta.code;phys.polarization", "Char.PolarizationAxis.stateList",
       "", "Polarization states (none: imaging)"),
    _c("pol_xel", "long", "meta.number", "Char.PolarizationAxis.numBins", "",
       "Polarization samples (0: imaging without polarization)"),
    _c("facility_name", "char", "meta.id;instr.tel", "Provenance.ObsConfig.Facility.name", "",
       "Telescope", True),
    _c("instrument_name", "char", "meta.id;instr", "Provenance.ObsConfig.Instrument.name", "",
       "Instrument", True),
    _c("obs_release_date", "timestamp", "time.release", "Curation.releaseDate", "",
       "Release date (UTC): public from then on", True),
    _c("proposal_id", "char", "meta.id;obs.proposal", "Provenance.Proposal.identifier", "",
       "Program"),
    _c("proposal_pi", "char", "meta.id.PI", "Provenance.Proposal.pi", "",
       "Principal investigator"),
    _c("proposal_title", "char", "meta.title;obs.proposal", "Provenance.Proposal.title", "",
       "Program title"),
    _c("filter", "char", "meta.id;instr.filter", "", "", "Filter name (local column)", True),
    _c("detector", "char", "meta.id;instr.det", "", "", "Detector (local column)"),
    _c("product_id", "char", "meta.id", "", "", "Archive product id (local column)"),
)
"""Every ObsCore column, in order."""

BY_NAME: dict[str, ColumnSpec] = {c.name: c for c in COLUMNS}
"""The columns by (lower-case) name."""

_CALIBRATED = ("cal", "i2d", "crf")


def obscore_columns(base_url: str, authority: str) -> dict[str, Any]:
    """Each ObsCore column name -> its SQL expression on products/exposures/programs.

    ``base_url`` (no trailing slash) starts ``access_url``; ``authority`` is
    the IVOA authority of ``obs_publisher_did``.
    """
    download = literal(f"{base_url}/api/products/", String) + Product.product_id + literal(
        "/download", String)
    exprs: dict[str, Any] = {
        "dataproduct_type": Product.dataproduct_type, "calib_level": Product.calib_level,
        "obs_collection": Exposure.facility_name, "obs_id": Exposure.obs_id,
        "obs_publisher_did": literal(f"ivo://{authority}/obsflow?", String) + Product.product_id,
        "access_url": download, "access_format": Product.content_type,
        "access_estsize": cast((Product.size + 1023) / 1024, BigInteger),
        "target_name": Exposure.target_name, "s_ra": Exposure.s_ra, "s_dec": Exposure.s_dec,
        "s_fov": Exposure.s_fov, "s_region": Exposure.s_region,
        "s_resolution": Exposure.s_resolution, "s_xel1": Product.s_xel1,
        "s_xel2": Product.s_xel2, "t_min": Exposure.t_min, "t_max": Exposure.t_max,
        "t_exptime": Exposure.t_exptime,
        "t_resolution": func.coalesce(Product.t_resolution, Exposure.t_exptime),
        "t_xel": func.coalesce(Product.t_xel, cast(literal(1), BigInteger)),
        "em_min": Exposure.em_min, "em_max": Exposure.em_max,
        "em_res_power": Exposure.em_res_power,
        "em_xel": cast(literal(1), BigInteger),
        "o_ucd": case((Product.kind.in_(_CALIBRATED), literal("phot.flux", String)),
                      else_=literal("phot.count", String)),
        "pol_states": cast(null(), String), "pol_xel": cast(literal(0), BigInteger),
        "facility_name": Exposure.facility_name, "instrument_name": Exposure.instrument_name,
        "obs_release_date": Exposure.release_date, "proposal_id": Exposure.program,
        "proposal_pi": Program.pi_name, "proposal_title": Program.title,
        "filter": Exposure.filter, "detector": Exposure.detector,
        "product_id": Product.product_id,
    }
    assert list(exprs) == [c.name for c in COLUMNS]
    return exprs


def obscore_select(columns: Sequence[Any], viewer: Viewer,
                   now: datetime) -> Select:  # type: ignore[type-arg]
    """``SELECT columns`` from the ObsCore view, restricted to what ``viewer`` may see.

    ``columns`` are (labelled) expressions from :func:`obscore_columns`.
    """
    return (select(*columns)
            .select_from(Product)
            .join(Exposure, Product.exposure_id == Exposure.id)
            .join(Program, Program.program == Exposure.program)
            .where(latest_clause(), visible_clause(viewer, now)))


def latest_clause() -> Any:
    """``products.is_latest``, marked to SQLite's planner as true of most rows (without
    table statistics it would otherwise drive a sky search from that index)."""
    from obsflow.archive.footprints import per_dialect

    test = Product.is_latest.is_(True)
    return per_dialect(func.likelihood(test, literal_column("0.9375")), test)


def result_columns(names: Sequence[str]) -> list[tuple[ColumnSpec, str]]:
    """``(spec, name)`` for ObsCore column names (the output columns of a VOTable)."""
    return [(BY_NAME[name], name) for name in names]
