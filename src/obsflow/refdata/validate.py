"""What a reference file must look like, checked against the observatory profile.

Every reference file is a FITS file whose primary header carries REFTYPE,
TELESCOP, INSTRUME, DETECTOR and USEAFTER (ISO UTC); optional selectors
FILTER (required for FLAT), READPATT and SUBARRAY (default ``ANY`` and
``FULL``).  The data extension depends on REFTYPE (docs/formats.md,
"Reference files"); image shapes must equal the detector (SUBARRAY FULL)
or the named subarray.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from astropy.io import fits

from obsflow.exceptions import ReferenceFileError, UnknownOptionError
from obsflow.profiles import Profile

__all__ = ["REFTYPES", "RefRecord", "ReferenceFileError", "read_record"]

REFTYPES: dict[str, str] = {
    "SUPERBIAS": "SCI", "DARK": "SCI", "GAIN": "SCI", "READNOISE": "SCI", "SATURATION": "SCI",
    "FLAT": "SCI", "MASK": "DQ", "LINEARITY": "COEFFS", "PHOTOM": "PHOTOM",
}
"""Known reference types and the extension holding their data."""

REQUIRED = ("REFTYPE", "TELESCOP", "INSTRUME", "DETECTOR", "USEAFTER")
ANY = "ANY"


@dataclass(frozen=True)
class RefRecord:
    """One reference file as the selection rules see it (a registry row or a scanned file).

    ``filter`` and ``readpatt`` are ``ANY`` when the file applies to all;
    ``useafter`` is an ISO UTC string; ``delivered`` the delivery time (ISO
    UTC, empty for unregistered files); ``path`` where the file is now.
    """

    reftype: str
    telescope: str
    instrument: str
    detector: str
    filter: str
    readpatt: str
    subarray: str
    useafter: str
    delivered: str
    name: str
    path: Path
    sha256: str
    pedigree: str = ""
    description: str = ""


def _parse_time(value: str, path: Path) -> str:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "")).isoformat(timespec="seconds")
    except ValueError as exc:
        raise ReferenceFileError(f"{path}: USEAFTER {value!r} is not an ISO date/time") from exc


def _check_shape(hdul: fits.HDUList, reftype: str, shape: tuple[int, int], path: Path) -> None:
    """Check the data extension from its header alone (the data are not read)."""
    ext = REFTYPES[reftype]
    if ext not in hdul:
        raise ReferenceFileError(f"{path}: {reftype} needs a {ext} extension")
    hdu = hdul[ext]
    if reftype == "PHOTOM":
        names = set(hdu.columns.names)
        if not {"FILTER", "PHOTMJSR"} <= names:
            raise ReferenceFileError(f"{path}: PHOTOM table needs FILTER and PHOTMJSR columns")
        return
    naxis = int(hdu.header.get("NAXIS", 0))
    dshape = tuple(int(hdu.header[f"NAXIS{k}"]) for k in range(naxis, 0, -1))
    if not dshape or 0 in dshape:
        raise ReferenceFileError(f"{path}: {ext} extension is empty")
    if reftype == "LINEARITY":
        if len(dshape) == 1 or (len(dshape) == 3 and dshape[1:] == shape):
            return
        raise ReferenceFileError(f"{path}: COEFFS must be (ncoeffs,) or (ncoeffs, {shape[0]}, "
                                 f"{shape[1]}), got {dshape}")
    if dshape != shape:
        raise ReferenceFileError(f"{path}: {ext} shape {dshape} != expected {shape}")


def read_record(path: Path, profile: Profile, sha256: str = "") -> RefRecord:
    """Validate a reference file against ``profile`` and describe it.

    Raises
    ------
    ReferenceFileError
        Not FITS, a required keyword missing, unknown REFTYPE, wrong telescope,
        instrument, detector, filter, subarray, or a wrong data shape.
    """
    path = Path(path)
    try:
        hdul = fits.open(path, memmap=False)
    except (OSError, ValueError) as exc:
        raise ReferenceFileError(f"{path}: not a readable FITS file ({exc})") from exc
    with hdul:
        h = hdul[0].header
        missing = [k for k in REQUIRED if k not in h]
        if missing:
            raise ReferenceFileError(f"{path}: missing required keyword(s) {', '.join(missing)}")
        reftype = str(h["REFTYPE"]).upper()
        if reftype not in REFTYPES:
            raise ReferenceFileError(f"{path}: unknown REFTYPE {reftype!r}; allowed: "
                                     f"{', '.join(sorted(REFTYPES))}")
        if h["TELESCOP"] != profile.mission.telescope:
            raise ReferenceFileError(f"{path}: TELESCOP {h['TELESCOP']!r} is not this site's "
                                     f"{profile.mission.telescope!r}")
        try:
            inst = profile.instrument(str(h["INSTRUME"]))
            det = inst.detector(str(h["DETECTOR"]))
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
        _check_shape(hdul, reftype, shape, path)
        return RefRecord(reftype=reftype, telescope=str(h["TELESCOP"]), instrument=inst.name,
                         detector=det.name, filter=filt, readpatt=readpatt, subarray=subarray,
                         useafter=_parse_time(h["USEAFTER"], path), delivered="", name=path.name,
                         path=path, sha256=sha256, pedigree=str(h.get("PEDIGREE", "")),
                         description=str(h.get("DESCRIP", "")))


def image_of(record: RefRecord) -> np.ndarray:
    """The data array of a reference file (PHOTOM excluded: use the table)."""
    with fits.open(record.path, memmap=False) as hdul:
        return np.asarray(hdul[REFTYPES[record.reftype]].data)
