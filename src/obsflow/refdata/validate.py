"""Whether a reference file fits the observatory profile.

The layout itself (keywords, data extension per REFTYPE, PHOTOM columns,
LINEARITY coefficients) is defined in :mod:`obsflow.models.reffiles`; this
module checks a file against it and against the profile: REFTYPE known,
TELESCOP this site's, INSTRUME, DETECTOR (``ANY`` allowed for types that
are not a detector's, the astrometric catalog), FILTER (required for FLAT),
READPATT and SUBARRAY (default ``ANY`` and ``FULL``) known to the profile,
USEAFTER an ISO UTC time, and image shapes equal to the detector (SUBARRAY
FULL) or the named subarray.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from obsflow.exceptions import ReferenceFileError, UnknownOptionError
from obsflow.models.reffiles import (
    REFTYPES,
    REQUIRED_KEYWORDS,
    check_layout,
    layout_of,
    open_reference,
)
from obsflow.profiles import Profile
from obsflow.refdata.records import ANY, RefRecord

__all__ = ["ANY", "REFTYPES", "RefRecord", "read_record"]


def _parse_time(value: str, path: Path) -> str:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "")).isoformat(timespec="seconds")
    except ValueError as exc:
        raise ReferenceFileError(f"{path}: USEAFTER {value!r} is not an ISO date/time") from exc


def read_record(path: Path, profile: Profile, sha256: str = "") -> RefRecord:
    """Validate a reference file against ``profile`` and describe it.

    Raises
    ------
    ReferenceFileError
        Not FITS, a required keyword missing, unknown REFTYPE, wrong telescope,
        instrument, detector, filter, subarray, or a wrong data shape.
    """
    path = Path(path)
    with open_reference(path) as hdul:
        h = hdul[0].header
        missing = [k for k in REQUIRED_KEYWORDS if k not in h]
        if missing:
            raise ReferenceFileError(f"{path}: missing required keyword(s) {', '.join(missing)}")
        reftype = str(h["REFTYPE"]).upper()
        layout = layout_of(reftype, path)
        if h["TELESCOP"] != profile.mission.telescope:
            raise ReferenceFileError(f"{path}: TELESCOP {h['TELESCOP']!r} is not this site's "
                                     f"{profile.mission.telescope!r}")
        try:
            inst = profile.instrument(str(h["INSTRUME"]))
            any_detector = not layout.per_detector and str(h["DETECTOR"]).upper() == ANY
            det = inst.detectors[0] if any_detector else inst.detector(str(h["DETECTOR"]))
            filt = str(h.get("FILTER", ANY)).upper() if reftype != "FLAT" else str(h.get("FILTER", ""))
            if reftype == "FLAT" or filt != ANY:
                filt = inst.filter(filt).name
            readpatt = str(h.get("READPATT", ANY)).upper()
            if readpatt != ANY:
                readpatt = inst.readout(readpatt).name
            subarray = inst.subarray(str(h.get("SUBARRAY", "FULL"))).name
        except UnknownOptionError as exc:
            raise ReferenceFileError(f"{path}: {exc}") from exc
        sub = inst.subarray(subarray)
        shape = (det.ny, det.nx) if subarray == "FULL" else (sub.ny, sub.nx)
        check_layout(hdul, reftype, shape, path)
        return RefRecord(reftype=reftype, telescope=str(h["TELESCOP"]), instrument=inst.name,
                         detector=ANY if any_detector else det.name, filter=filt, readpatt=readpatt, subarray=subarray,
                         useafter=_parse_time(h["USEAFTER"], path), delivered="", name=path.name,
                         path=path, sha256=sha256, pedigree=str(h.get("PEDIGREE", "")),
                         description=str(h.get("DESCRIP", "")))
