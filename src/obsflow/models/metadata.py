"""Exposure metadata and its mapping to JWST-style FITS keywords.

:class:`ExposureMeta` is the one description of an exposure that the
simulator writes into the observation log, ingest writes into the Level-1
product, and calibration and the archive read back.  Keyword names follow
JWST wherever one exists, so astronomers' scripts work unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from obsflow.exceptions import DataModelError

if TYPE_CHECKING:
    # astropy only to write a header: `refs best` reads one as a dict (models.level1headers)
    from collections.abc import Mapping

    from astropy.io import fits

    from obsflow.models.identity import DataId

__all__ = ["ExposureMeta", "header_keywords", "product_basename"]

_STRING_NUMBERS = {"observation": 3, "visit": 3, "exposure": 5}
"""Numbers the JWST schema types as strings: attribute -> zero-padded width in the header
(``OBSERVTN = '001'``); read back as integers, old files' integer values too."""

# attribute -> (FITS keyword, comment)
_KEYWORDS: dict[str, tuple[str, str]] = {
    "telescope": ("TELESCOP", "telescope used to acquire the data"),
    "instrument": ("INSTRUME", "instrument used to acquire the data"),
    "detector": ("DETECTOR", "detector name"),
    "filter": ("FILTER", "filter element"),
    "program": ("PROGRAM", "program number"),
    "observation": ("OBSERVTN", "observation number"),
    "visit": ("VISIT", "visit number"),
    "exposure": ("EXPOSURE", "exposure number within the visit"),
    "exposure_id": ("EXP_ID", "onboard exposure id (packet secondary header)"),
    "pi_name": ("PI_NAME", "principal investigator"),
    "title": ("TITLE", "program title"),
    "target": ("TARGNAME", "target name"),
    "target_ra": ("TARG_RA", "[deg] target right ascension (ICRS)"),
    "target_dec": ("TARG_DEC", "[deg] target declination (ICRS)"),
    "ra_v1": ("RA_V1", "[deg] boresight right ascension"),
    "dec_v1": ("DEC_V1", "[deg] boresight declination"),
    "pa_v3": ("PA_V3", "[deg] position angle of V3 axis"),
    "dither_pattern": ("PATTTYPE", "dither pattern"),
    "dither_position": ("PATT_NUM", "position number within the dither pattern"),
    "dither_npoints": ("NUMDTHPT", "number of dither points"),
    "readpatt": ("READPATT", "readout pattern"),
    "nints": ("NINTS", "number of integrations"),
    "ngroups": ("NGROUPS", "groups per integration"),
    "nframes": ("NFRAMES", "frames averaged per group"),
    "groupgap": ("GROUPGAP", "frames dropped between groups"),
    "frame_time": ("TFRAME", "[s] time between frames"),
    "group_time": ("TGROUP", "[s] time between groups"),
    "subarray": ("SUBARRAY", "subarray name"),
    "substrt1": ("SUBSTRT1", "starting pixel in axis 1 (full-frame, 1-based)"),
    "substrt2": ("SUBSTRT2", "starting pixel in axis 2 (full-frame, 1-based)"),
    "subsize1": ("SUBSIZE1", "number of pixels in axis 1"),
    "subsize2": ("SUBSIZE2", "number of pixels in axis 2"),
    "expstart": ("EXPSTART", "[MJD UTC] exposure start"),
    "expmid": ("EXPMID", "[MJD UTC] exposure mid-point"),
    "expend": ("EXPEND", "[MJD UTC] exposure end"),
    "exposure_duration": ("EFFEXPTM", "[s] exposure duration"),
    "status": ("EXPSTAT", "observation log status"),
}


@dataclass(frozen=True)
class ExposureMeta:
    """Everything known about one exposure of one detector (one Level-1 product).

    Angles in degrees, times in MJD (UTC), durations in seconds.
    """

    telescope: str
    instrument: str
    detector: str
    filter: str
    program: str
    observation: int
    visit: int
    exposure: int
    exposure_id: int
    pi_name: str
    title: str
    target: str
    target_ra: float
    target_dec: float
    ra_v1: float
    dec_v1: float
    pa_v3: float
    dither_pattern: str
    dither_position: int
    dither_npoints: int
    readpatt: str
    nints: int
    ngroups: int
    nframes: int
    groupgap: int
    frame_time: float
    group_time: float
    subarray: str
    substrt1: int
    substrt2: int
    subsize1: int
    subsize2: int
    expstart: float
    expmid: float
    expend: float
    exposure_duration: float
    status: str = "executed"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def basename(self) -> str:
        """Product file stem without the suffix, e.g. ``01234001001_00002_wra1``."""
        return product_basename(self.program, self.observation, self.visit, self.exposure,
                                self.detector)

    @property
    def data_id(self) -> DataId:
        """The :class:`~obsflow.models.identity.DataId` of this exposure's products."""
        from obsflow.models.identity import DataId

        return DataId(self.program, self.observation, self.visit, self.exposure, self.detector)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (the observation-log record form)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExposureMeta:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise DataModelError(f"unknown exposure metadata fields {sorted(unknown)}")
        return cls(**data)

    def to_header(self, header: fits.Header | None = None) -> fits.Header:
        """Write the JWST-style keywords (and ``extra`` as given) into a header."""
        from astropy.io import fits

        header = fits.Header() if header is None else header
        for name, (key, comment) in _KEYWORDS.items():
            value = getattr(self, name)
            if name in _STRING_NUMBERS:
                value = f"{value:0{_STRING_NUMBERS[name]}d}"
            header[key] = (value, comment)
        for key, value in self.extra.items():
            header[key.upper()[:8]] = value
        return header

    @classmethod
    def from_header(cls, header: fits.Header | Mapping[str, Any]) -> ExposureMeta:
        """Read back what :meth:`to_header` wrote (``extra`` is left empty).

        Raises
        ------
        DataModelError
            A required keyword is missing (the message names them all).
        """
        values = {name: header[key] for name, (key, _) in _KEYWORDS.items() if key in header}
        missing = [key for key in header_keywords() if key not in header]
        if missing:
            raise DataModelError(f"header lacks keyword(s) {', '.join(missing)}")
        for name in _STRING_NUMBERS:
            values[name] = _number(values[name], _KEYWORDS[name][0])
        return cls(**values)


def _number(value: object, key: str) -> int:
    """A string-typed number keyword's integer (``'001'`` -> 1; an integer as it is)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise DataModelError(f"keyword {key} = {value!r}: expected a number such as '001'")


def header_keywords() -> dict[str, type | tuple[type, ...]]:
    """The FITS keyword of every required :class:`ExposureMeta` field and its type(s) in a header.

    OBSERVTN, VISIT and EXPOSURE are strings of digits (the JWST schema's
    type); integers are accepted too (files written before they were strings).
    """
    types = {"str": str, "int": int, "float": float}
    fields = {f.name: f for f in dataclasses.fields(ExposureMeta)}
    return {key: (str, int) if name in _STRING_NUMBERS else types[str(fields[name].type)]
            for name, (key, _) in _KEYWORDS.items()
            if fields[name].default is dataclasses.MISSING}


def product_basename(program: str, observation: int, visit: int, exposure: int,
                     detector: str) -> str:
    """``<program:5><obs:03d><visit:03d>_<exposure:05d>_<detector lower>``."""
    return f"{int(program):05d}{observation:03d}{visit:03d}_{exposure:05d}_{detector.lower()}"
