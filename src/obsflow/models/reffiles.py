"""Reference-file layout, defined once: one writer, one reader, one layout check.

A reference file is a FITS file with two HDUs:

PRIMARY
    no data; keywords :data:`REQUIRED_KEYWORDS` (REFTYPE, TELESCOP, INSTRUME,
    DETECTOR, USEAFTER as ISO UTC) and the optional selectors FILTER
    (required for FLAT), READPATT (default ``ANY``) and SUBARRAY (default
    ``FULL``), then PEDIGREE, AUTHOR, DESCRIP, BUNIT (see :class:`RefHeader`).
data extension
    named by :data:`REFTYPES` (reftype -> extension), holding
    :data:`LAYOUTS`' element type:

    ========== ====== ========== ==============================================
    REFTYPE    EXTNAME dtype      content
    ========== ====== ========== ==============================================
    SUPERBIAS  SCI    float32    (ny, nx) mean reset level, DN
    DARK       SCI    float32    (ny, nx) dark rate, DN/s
    GAIN       SCI    float32    (ny, nx) e-/DN
    READNOISE  SCI    float32    (ny, nx) single-read noise, DN
    SATURATION SCI    float32    (ny, nx) raw saturation level, DN
    FLAT       SCI    float32    (ny, nx) response, dimensionless
    MASK       DQ     uint32     (ny, nx) JWST DQ bits
    LINEARITY  COEFFS float64    (ncoeffs,) or (ncoeffs, ny, nx): linear DN =
                                 sum_k COEFFS[k] * measured**k (bias-subtracted)
    PHOTOM     PHOTOM table      :data:`PHOTOM_COLUMNS`, one row per filter
    ASTROCAT   ASTROCAT table    :data:`ASTROCAT_COLUMNS`, one row per star
    ========== ====== ========== ==============================================

``(ny, nx)`` is the detector (SUBARRAY FULL) or the named subarray.  An
ASTROCAT (absolute astrometric catalog, Gaia-like) is not a detector's: its
DETECTOR is normally ``ANY`` (it then applies to every detector) and its
primary header carries EPOCH (Julian year of the positions).
:func:`write_reference_file` writes this layout (atomically, with checksums);
:func:`read_reference_array` and :func:`read_photom` read it;
:func:`check_layout` checks a file against it from headers alone.  Whether a
file fits an observatory profile is :mod:`obsflow.refdata.validate`'s job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
from astropy.io import fits

from obsflow.exceptions import ReferenceFileError
from obsflow.fileio import write_fits
from obsflow.models.fitsfile import open_fits
from obsflow.models.reftypes import ANY, REFTYPES

__all__ = [
    "ANY",
    "ASTROCAT_COLUMNS",
    "LAYOUTS",
    "PHOTOM_COLUMNS",
    "PHOTOM_REQUIRED",
    "REFTYPES",
    "REQUIRED_KEYWORDS",
    "AstrometricCatalog",
    "PhotomTable",
    "RefHeader",
    "RefLayout",
    "check_layout",
    "layout_of",
    "open_reference",
    "read_astrocat",
    "read_photom",
    "read_reference_array",
    "write_reference_file",
]

REQUIRED_KEYWORDS = ("REFTYPE", "TELESCOP", "INSTRUME", "DETECTOR", "USEAFTER")
"""Primary keywords every reference file must have."""


@dataclass(frozen=True)
class RefLayout:
    """The data extension of one reference type.

    Attributes
    ----------
    extension : str
        EXTNAME of the data HDU.
    dtype : numpy.dtype or None
        Element type of the array (None for the PHOTOM table).
    coefficients : bool
        True when the array is (ncoeffs,) or (ncoeffs, ny, nx) polynomial
        coefficients rather than one (ny, nx) image.
    columns : tuple of str
        Columns a table layout (``dtype`` None) must have.
    per_detector : bool
        False when the file may apply to every detector (DETECTOR ``ANY``).
    """

    extension: str
    dtype: np.dtype | None
    coefficients: bool = False
    columns: tuple[str, ...] = ()
    per_detector: bool = True


_IMAGE: dict[str, Any] = {"dtype": np.dtype(np.float32)}

LAYOUTS: Mapping[str, RefLayout] = MappingProxyType({reftype: RefLayout(REFTYPES[reftype], **how) for reftype, how in {
    "SUPERBIAS": _IMAGE, "DARK": _IMAGE, "GAIN": _IMAGE, "READNOISE": _IMAGE,
    "SATURATION": _IMAGE, "FLAT": _IMAGE, "MASK": {"dtype": np.dtype(np.uint32)},
    "LINEARITY": {"dtype": np.dtype(np.float64), "coefficients": True},
    "PHOTOM": {"dtype": None, "columns": ("FILTER", "PHOTMJSR")},
    "ASTROCAT": {"dtype": None, "columns": ("SOURCE_ID", "RA", "DEC", "RA_ERROR", "DEC_ERROR",
                                            "MAG"), "per_detector": False},
}.items()})
"""Every known REFTYPE (:data:`REFTYPES`, with its extension) and its data layout."""

PHOTOM_COLUMNS = (("FILTER", "16A"), ("PHOTMJSR", "D"), ("UNCERTAINTY", "D"), ("PIVOT_UM", "D"))
"""PHOTOM table columns and FITS formats: filter name, MJy/sr per DN/s, its
uncertainty (same unit), pivot wavelength (micron)."""

PHOTOM_REQUIRED = LAYOUTS["PHOTOM"].columns
"""PHOTOM columns a reader needs."""

ASTROCAT_COLUMNS = (("SOURCE_ID", "K", ""), ("RA", "D", "deg"), ("DEC", "D", "deg"),
                    ("RA_ERROR", "D", "mas"), ("DEC_ERROR", "D", "mas"), ("MAG", "D", "mag"))
"""ASTROCAT table columns, FITS formats and units: star id, ICRS position at
EPOCH (deg), its 1-sigma errors (mas; RA_ERROR on the sky, i.e. times cos
Dec, as Gaia's ``ra_error``) and a magnitude (AB, first filter)."""


def layout_of(reftype: str, source: str | Path) -> RefLayout:
    """The layout of ``reftype``; ReferenceFileError naming ``source`` and the allowed types."""
    if reftype not in LAYOUTS:
        raise ReferenceFileError(f"{source}: unknown REFTYPE {reftype!r}; allowed: "
                                 f"{', '.join(sorted(LAYOUTS))}")
    return LAYOUTS[reftype]


def _check_columns(reftype: str, names: Sequence[str], source: str | Path) -> None:
    needed = LAYOUTS[reftype].columns
    if not set(needed) <= set(names):
        listed = ", ".join(needed[:-1]) + " and " + needed[-1]
        raise ReferenceFileError(f"{source}: {reftype} table needs {listed} columns")


@dataclass(frozen=True)
class RefHeader:
    """Primary keywords of a reference file, written in this order.

    ``filter`` and ``readpatt`` are written only when set (after BUNIT);
    ``extra`` cards (keyword, value) follow them, e.g. ``("NOISETYP", "SINGLE")``.
    """

    reftype: str
    telescope: str
    instrument: str
    detector: str
    useafter: str
    subarray: str = "FULL"
    pedigree: str = ""
    author: str = ""
    descrip: str = ""
    bunit: str = ""
    filter: str | None = None
    readpatt: str | None = None
    extra: tuple[tuple[str, Any], ...] = ()

    def to_fits(self) -> fits.Header:
        """The primary header cards."""
        h = fits.Header()
        h["REFTYPE"] = self.reftype.upper()
        h["TELESCOP"] = self.telescope
        h["INSTRUME"] = self.instrument
        h["DETECTOR"] = self.detector
        h["SUBARRAY"] = self.subarray
        h["USEAFTER"] = (self.useafter, "use for data taken after this UTC time")
        h["PEDIGREE"] = self.pedigree
        h["AUTHOR"] = self.author
        h["DESCRIP"] = self.descrip
        h["BUNIT"] = self.bunit
        for key, value in (("FILTER", self.filter), ("READPATT", self.readpatt), *self.extra):
            if value is not None:
                h[key] = value
        return h


@dataclass(frozen=True)
class PhotomTable:
    """The PHOTOM table: per-filter flux conversion.

    Attributes
    ----------
    filter : tuple of str
        Filter names (N,).
    photmjsr, uncertainty : numpy.ndarray
        (N,) float64, MJy/sr per DN/s.
    pivot_um : numpy.ndarray
        (N,) float64 pivot wavelength, micron.
    """

    filter: tuple[str, ...]
    photmjsr: npt.NDArray[np.float64]
    uncertainty: npt.NDArray[np.float64]
    pivot_um: npt.NDArray[np.float64]

    def photmjsr_for(self, filter_name: str, source: str = "PHOTOM") -> float:
        """PHOTMJSR of the first row for ``filter_name``; ReferenceFileError if none."""
        for name, value in zip(self.filter, self.photmjsr, strict=True):
            if name == filter_name:
                return float(value)
        raise ReferenceFileError(f"PHOTOM {source} has no row for filter {filter_name}")

    def to_hdu(self) -> fits.BinTableHDU:
        """The PHOTOM extension."""
        arrays = (list(self.filter), self.photmjsr, self.uncertainty, self.pivot_um)
        return fits.BinTableHDU.from_columns(
            [fits.Column(name, fmt, array=a) for (name, fmt), a in zip(PHOTOM_COLUMNS, arrays,
                                                                       strict=True)],
            name=LAYOUTS["PHOTOM"].extension)


@dataclass(frozen=True)
class AstrometricCatalog:
    """The ASTROCAT table: an absolute astrometric reference (Gaia-like).

    Attributes
    ----------
    source_id : numpy.ndarray
        (N,) int64 star identifiers.
    ra, dec : numpy.ndarray
        (N,) float64 ICRS position at ``epoch``, degrees.
    ra_error, dec_error : numpy.ndarray
        (N,) float64 1-sigma position errors, milliarcseconds (RA on the sky).
    mag : numpy.ndarray
        (N,) float64 magnitude (AB).
    epoch : float
        Julian year of the positions (e.g. 2016.0).
    """

    source_id: npt.NDArray[np.int64]
    ra: npt.NDArray[np.float64]
    dec: npt.NDArray[np.float64]
    ra_error: npt.NDArray[np.float64]
    dec_error: npt.NDArray[np.float64]
    mag: npt.NDArray[np.float64]
    epoch: float

    def __len__(self) -> int:
        return int(np.asarray(self.ra).shape[0])

    def to_hdu(self) -> fits.BinTableHDU:
        """The ASTROCAT extension (EPOCH in its header too)."""
        arrays = (self.source_id, self.ra, self.dec, self.ra_error, self.dec_error, self.mag)
        hdu = fits.BinTableHDU.from_columns(
            [fits.Column(name, fmt, unit=unit or None, array=np.asarray(a))
             for (name, fmt, unit), a in zip(ASTROCAT_COLUMNS, arrays, strict=True)],
            name=LAYOUTS["ASTROCAT"].extension)
        hdu.header["EPOCH"] = (float(self.epoch), "[yr] Julian epoch of RA, DEC")
        return hdu


_TABLES: Mapping[str, type] = MappingProxyType({"PHOTOM": PhotomTable,
                                                "ASTROCAT": AstrometricCatalog})
"""The data class of each table REFTYPE."""


RefData = npt.ArrayLike | PhotomTable | AstrometricCatalog
"""What a reference file holds: an array, or the table of a table REFTYPE."""


def _data_hdu(reftype: str, data: RefData, source: str | Path) -> fits.hdu.base.ExtensionHDU:
    """The data extension of ``reftype`` holding ``data``, checked against the layout."""
    layout = LAYOUTS[reftype]
    if layout.dtype is None:
        kind = _TABLES[reftype]
        if not isinstance(data, PhotomTable | AstrometricCatalog) or not isinstance(data, kind):
            raise ReferenceFileError(f"{source}: {reftype} data must be a {kind.__name__}, got "
                                     f"{type(data).__name__}")
        return data.to_hdu()
    if isinstance(data, PhotomTable | AstrometricCatalog):
        raise ReferenceFileError(f"{source}: {reftype} data must be an array, not a "
                                 f"{type(data).__name__}")
    arr = np.asarray(data)
    ndims = (1, 3) if layout.coefficients else (2,)
    if arr.ndim not in ndims:
        raise ReferenceFileError(f"{source}: {reftype} {layout.extension} must have "
                                 f"{' or '.join(map(str, ndims))} dimensions, got shape "
                                 f"{arr.shape}")
    if not np.can_cast(arr.dtype, layout.dtype, "same_kind"):
        raise ReferenceFileError(f"{source}: {reftype} {layout.extension} must be "
                                 f"{layout.dtype}, got {arr.dtype}")
    return fits.ImageHDU(arr.astype(layout.dtype, copy=False), name=layout.extension)


def write_reference_file(path: Path, header: RefHeader, data: RefData) -> Path:
    """Write one reference file in the layout above (atomically, with FITS checksums).

    Parameters
    ----------
    path : pathlib.Path
        Where to write it.
    header : RefHeader
        Primary keywords; ``header.reftype`` picks the layout.
    data : array_like, PhotomTable or AstrometricCatalog
        The data: an image (ny, nx), LINEARITY coefficients (ncoeffs,) or
        (ncoeffs, ny, nx), a PhotomTable for PHOTOM or an AstrometricCatalog
        for ASTROCAT; arrays are stored with the layout's dtype.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ReferenceFileError
        Unknown REFTYPE, or data of the wrong kind, dimensions or dtype.
    """
    reftype = header.reftype.upper()
    layout_of(reftype, path)
    hdul = fits.HDUList([fits.PrimaryHDU(header=header.to_fits()), _data_hdu(reftype, data, path)])
    return write_fits(hdul, Path(path))


def _data_shape(hdu: Any) -> tuple[int, ...]:
    """Shape of an image HDU from its header (numpy order), without reading the data."""
    naxis = int(hdu.header.get("NAXIS", 0))
    return tuple(int(hdu.header[f"NAXIS{k}"]) for k in range(naxis, 0, -1))


def check_layout(hdul: fits.HDUList, reftype: str, shape: tuple[int, int],
                 source: str | Path) -> None:
    """Check the data extension of an open reference file from its headers alone.

    Parameters
    ----------
    hdul : astropy.io.fits.HDUList
        The open file.
    reftype : str
        A key of :data:`LAYOUTS`.
    shape : (int, int)
        (ny, nx) an image must have (detector or subarray).
    source : str or pathlib.Path
        Name used in error messages.

    Raises
    ------
    ReferenceFileError
        Extension missing or empty, table columns missing, or a wrong shape.
    """
    layout = LAYOUTS[reftype]
    ext = layout.extension
    if ext not in hdul:
        raise ReferenceFileError(f"{source}: {reftype} needs a {ext} extension")
    hdu = hdul[ext]
    if layout.dtype is None:
        _check_columns(reftype, hdu.columns.names, source)
        return
    dshape = _data_shape(hdu)
    if not dshape or 0 in dshape:
        raise ReferenceFileError(f"{source}: {ext} extension is empty")
    if layout.coefficients:
        if len(dshape) == 1 or (len(dshape) == 3 and dshape[1:] == shape):
            return
        raise ReferenceFileError(f"{source}: {ext} must be (ncoeffs,) or (ncoeffs, {shape[0]}, "
                                 f"{shape[1]}), got {dshape}")
    if dshape != shape:
        raise ReferenceFileError(f"{source}: {ext} shape {dshape} != expected {shape}")


def open_reference(path: Path) -> fits.HDUList:
    """Open a reference file; ReferenceFileError if it is empty, not FITS or truncated."""
    return open_fits(path, "a reference file (FITS)", ReferenceFileError)


def _extension(hdul: fits.HDUList, reftype: str, path: Path) -> Any:
    ext = layout_of(reftype, path).extension
    if ext not in hdul:
        raise ReferenceFileError(f"{path}: {reftype} needs a {ext} extension")
    return hdul[ext]


def read_reference_array(path: Path, reftype: str,
                         window: Sequence[int] | None = None) -> np.ndarray:
    """The data array of an image or coefficient reference file.

    Parameters
    ----------
    path : pathlib.Path
        The file.
    reftype : str
        Its REFTYPE (not PHOTOM: see :func:`read_photom`).
    window : (substrt1, substrt2, subsize1, subsize2), optional
        1-based FITS subarray window (SUBSTRT1/2, SUBSIZE1/2) to cut from a
        full-frame file's per-pixel array; coefficient vectors (ncoeffs,)
        come back whole.

    Returns
    -------
    numpy.ndarray
        As stored (e.g. (ny, nx) float32, (ncoeffs,) float64), or its window.
    """
    if layout_of(reftype, path).dtype is None:
        raise ReferenceFileError(f"{path}: {reftype} is a table; use read_{reftype.lower()}")
    with open_reference(path) as hdul:
        arr = np.asarray(_extension(hdul, reftype, path).data)
    if window is None or arr.ndim < 2:
        return arr
    x0, y0, nx, ny = (int(v) for v in window)
    return arr[..., y0 - 1:y0 - 1 + ny, x0 - 1:x0 - 1 + nx]


def read_photom(path: Path) -> PhotomTable:
    """The PHOTOM table of a reference file (UNCERTAINTY and PIVOT_UM are NaN when absent)."""
    with open_reference(path) as hdul:
        table = _extension(hdul, "PHOTOM", path).data
        names = table.columns.names
        _check_columns("PHOTOM", names, path)

        def column(name: str) -> npt.NDArray[np.float64]:
            if name in names:
                return np.asarray(table[name], np.float64)
            return np.full(len(table), np.nan)

        return PhotomTable(tuple(str(f).strip() for f in table["FILTER"]), column("PHOTMJSR"),
                           column("UNCERTAINTY"), column("PIVOT_UM"))


def read_astrocat(path: Path) -> AstrometricCatalog:
    """The ASTROCAT table of a reference file; ReferenceFileError naming what is wrong."""
    with open_reference(path) as hdul:
        hdu = _extension(hdul, "ASTROCAT", path)
        _check_columns("ASTROCAT", hdu.columns.names, path)
        epoch = hdu.header.get("EPOCH", hdul[0].header.get("EPOCH"))
        if not isinstance(epoch, int | float):
            raise ReferenceFileError(f"{path}: ASTROCAT needs a numeric EPOCH keyword (Julian "
                                     f"year), got {epoch!r}")
        table = hdu.data

        def column(name: str) -> npt.NDArray[np.float64]:
            return np.asarray(table[name], np.float64)

        return AstrometricCatalog(np.asarray(table["SOURCE_ID"], np.int64), column("RA"),
                                  column("DEC"), column("RA_ERROR"), column("DEC_ERROR"),
                                  column("MAG"), float(epoch))
