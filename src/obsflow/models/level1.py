"""Level-1 ``_uncal.fits``: the raw ramp cube of one exposure of one detector.

Layout (JWST-compatible)::

    PRIMARY   header: exposure metadata (see ExposureMeta), engineering values,
              ephemeris, software version; no data
    SCI       uint16 (nints, ngroups, ny, nx), BUNIT='DN', celestial WCS
    GROUPDQ   uint8  (nints, ngroups, ny, nx), only when some data is missing
              (DROPOUT | DO_NOT_USE on rows that never arrived)
    RAWFILES  table of the level-0 files the cube was rebuilt from
    PROVENANCE  (products assembled by ingest) the run, software and level-0
              files with their sha256 (:class:`~obsflow.models.Provenance`)

A product assembled by ingest carries its :class:`~obsflow.models.ProductRef`
(``PRODKIND``, ``RUNNAME``, ``PRODUUID``); a Level-1 file made elsewhere (the
simulator's ``--level1``) may have none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from obsflow.exceptions import DataModelError, ProductFileError
from obsflow.fileio import Written, write_fits_hashed
from obsflow.models.asdfmeta import with_asdf
from obsflow.models.fitsfile import hdu_names, open_fits, require_keywords
from obsflow.models.identity import ProductRef
from obsflow.models.metadata import ExposureMeta, header_keywords
from obsflow.models.pointing import wcs_header
from obsflow.models.provenance import PROVENANCE_EXTNAME, Provenance

__all__ = ["UNCAL_DATAMODEL", "Level1", "UncalBlocks", "check_uncal", "read_uncal", "write_uncal",
           "write_uncal_hashed"]

EXPECTED = "a Level-1 _uncal.fits product (uint16 ramp cube in SCI)"
UNCAL_DATAMODEL = "RampModel"
"""``DATAMODL`` of a Level-1 product: the stdatamodels model that opens it (``Level1`` in
files written before; still read)."""
"""What a Level-1 reader expects, as error messages say it."""


@dataclass
class Level1:
    """An uncalibrated ramp product in memory.

    Attributes
    ----------
    data : ndarray, uint16, shape (nints, ngroups, ny, nx)
        Raw ramp samples, DN.
    meta : ExposureMeta
    wcs : astropy.wcs.WCS or None
    groupdq : ndarray, uint8, same shape as ``data``, or None
    raw_files : list of str
        Names of the level-0 files the cube came from.
    header_extra : dict
        Extra primary-header keywords (engineering values, ephemeris), name -> value.
    ref : ProductRef or None
        The product's identity (None for a file made outside a site).
    provenance : Provenance or None
        How it was assembled (None for a file made outside a site).
    """

    data: np.ndarray
    meta: ExposureMeta
    wcs: WCS | None = None
    groupdq: np.ndarray | None = None
    raw_files: list[str] = field(default_factory=list)
    header_extra: dict[str, Any] = field(default_factory=dict)
    ref: ProductRef | None = None
    provenance: Provenance | None = None

    def __post_init__(self) -> None:
        m = self.meta
        expected = (m.nints, m.ngroups, m.subsize2, m.subsize1)
        if self.data.shape != expected or self.data.dtype != np.uint16:
            raise DataModelError(
                f"Level-1 data must be uint16 {expected} (nints, ngroups, ny, nx) for "
                f"{m.basename}, got {self.data.dtype} {self.data.shape}"
            )
        if self.groupdq is not None and self.groupdq.shape != expected:
            raise DataModelError(f"GROUPDQ shape {self.groupdq.shape} != data shape {expected}")


def _disk_form(data: np.ndarray) -> np.ndarray:
    """Turn native uint16 ``data`` *in place* into FITS's on-disk form, returned as '>i2'.

    FITS stores uint16 as big-endian int16 with BZERO = 32768: flipping the
    top bit subtracts 32768, then a byte swap makes it big-endian.
    """
    data ^= np.uint16(0x8000)
    data.byteswap(inplace=True)
    return data.view(np.dtype(">i2"))


def _hdus(product: Level1, disk: np.ndarray) -> fits.HDUList:
    from obsflow import __version__

    primary = fits.PrimaryHDU()
    product.meta.to_header(primary.header)
    primary.header["DATAMODL"] = (UNCAL_DATAMODEL, "stdatamodels model type of this product")
    primary.header["CAL_VER"] = (__version__, "obsflow version that wrote this file")
    for key, value in product.header_extra.items():
        primary.header[key] = value
    if product.ref is not None:
        product.ref.to_header(primary.header)
    sci = fits.ImageHDU(data=disk, do_not_scale_image_data=True, name="SCI")
    sci.header["BZERO"] = (32768, "data are unsigned 16-bit integers")
    sci.header["BSCALE"] = 1
    sci.header["BUNIT"] = "DN"
    if product.wcs is not None:
        sci.header.update(wcs_header(product.wcs))
    hdus = [primary, sci]
    if product.groupdq is not None:
        hdus.append(fits.ImageHDU(product.groupdq.astype(np.uint8), name="GROUPDQ"))
    names = np.array(product.raw_files or [""], dtype="U255")
    hdus.append(fits.BinTableHDU.from_columns(
        [fits.Column(name="FILENAME", format="255A", array=names[: len(product.raw_files)])],
        name="RAWFILES",
    ))
    if product.provenance is not None:
        hdus.append(product.provenance.to_hdu())
    return fits.HDUList(hdus)


def write_uncal(path: Path, product: Level1) -> Path:
    """Write ``product`` to ``path`` atomically (temporary name, then rename)."""
    return write_fits_hashed(with_asdf(_hdus(product, _disk_form(product.data.copy()))),
                             Path(path)).path


def write_uncal_hashed(path: Path, product: Level1) -> Written:
    """Like :func:`write_uncal` without copying the cube; returns the file's sha256 and size.

    ``product.data`` is converted in place to FITS's on-disk form and is
    garbage afterwards: for writers of large cubes (ingest assembly) that drop
    the product after writing it, so peak memory stays at one cube.  The file
    is hashed once, as it is written.
    """
    return write_fits_hashed(with_asdf(_hdus(product, _disk_form(product.data))), Path(path))


def _check_sci(hdul: fits.HDUList, path: Path, header: fits.Header) -> None:
    if "SCI" not in hdul:
        raise ProductFileError(f"{path}: no SCI extension (HDUs: {hdu_names(hdul)}); expected "
                               "SCI holding the uint16 ramp cube")
    sci = hdul["SCI"].header
    bitpix, bzero, bscale = sci.get("BITPIX"), sci.get("BZERO", 0), sci.get("BSCALE", 1)
    if (bitpix, bzero, bscale) != (16, 32768, 1):
        got = {8: "uint8", 16: "int16", 32: "int32", 64: "int64", -32: "float32",
               -64: "float64"}.get(bitpix, f"BITPIX {bitpix}")
        if bitpix == 16 and bscale == 1 and bzero != 0:
            got = f"int16 with BZERO = {bzero}"
        raise ProductFileError(f"{path}: SCI: data type {got} (BITPIX = {bitpix}, BZERO = "
                               f"{bzero}, BSCALE = {bscale}); expected uint16 ramp samples in DN "
                               "(BITPIX = 16, BZERO = 32768, BSCALE = 1)")
    naxis = int(sci.get("NAXIS", 0))
    shape = tuple(int(sci.get(f"NAXIS{k}", 0)) for k in range(naxis, 0, -1))
    expected = tuple(int(header[k]) for k in ("NINTS", "NGROUPS", "SUBSIZE2", "SUBSIZE1"))
    if shape != expected:
        raise ProductFileError(f"{path}: SCI: shape {shape}; expected (nints, ngroups, ny, nx) "
                               f"= {expected} from NINTS, NGROUPS, SUBSIZE2, SUBSIZE1")
    if "GROUPDQ" in hdul:
        dq = hdul["GROUPDQ"].header
        dq_shape = tuple(int(dq.get(f"NAXIS{k}", 0)) for k in range(int(dq.get("NAXIS", 0)), 0, -1))
        if dq.get("BITPIX") != 8 or dq_shape != expected:
            raise ProductFileError(f"{path}: GROUPDQ: BITPIX {dq.get('BITPIX')} shape {dq_shape}; "
                                   f"expected uint8 (BITPIX = 8) of the SCI shape {expected}")


def check_uncal(hdul: fits.HDUList, path: Path) -> None:
    """Check an open file is a Level-1 product :func:`read_uncal` can read (headers only).

    Checks ``PRODKIND`` (when present) is ``uncal`` and ``DATAMODL`` (when
    present) is ``RampModel`` (or the older ``Level1``), every exposure keyword
    is present with its type, NINTS/NGROUPS/SUBSIZE1/SUBSIZE2 are at least
    1, SCI exists as uint16 (BITPIX 16, BZERO 32768) of shape (NINTS,
    NGROUPS, SUBSIZE2, SUBSIZE1), and GROUPDQ (when present) is uint8 of
    the same shape.

    Raises
    ------
    ProductFileError
        One line naming ``path``, the HDU or keyword and what was expected.
    """
    header = hdul[0].header
    kind = header.get("PRODKIND")
    if kind is not None and kind != "uncal":
        raise ProductFileError(f"{path}: PRODKIND = {kind!r}: a _{kind} product, made by "
                               f"calibration; expected a Level-1 _uncal product (its input)")
    model = header.get("DATAMODL")
    if model is not None and model not in (UNCAL_DATAMODEL, "Level1"):  # Level1: older files
        raise ProductFileError(f"{path}: DATAMODL = {model!r}: expected {UNCAL_DATAMODEL!r}, "
                               f"{EXPECTED}; "
                               f"a {model} is made by calibration, not its input")
    require_keywords(header, f"{path}: PRIMARY header", header_keywords())
    for key in ("NINTS", "NGROUPS", "SUBSIZE1", "SUBSIZE2"):
        if header[key] < 1:
            raise ProductFileError(f"{path}: PRIMARY header: keyword {key} = {header[key]}: "
                                   "expected an integer >= 1")
    _check_sci(hdul, path, header)


def _header_parts(hdul: fits.HDUList, path: Path) -> tuple[ExposureMeta, WCS | None, list[str],
                                                           ProductRef | None, Provenance | None]:
    """Everything of a checked Level-1 file but its cubes: metadata, WCS, raw files, identity."""
    header = hdul[0].header
    meta = ExposureMeta.from_header(header)
    wcs = WCS(hdul["SCI"].header, naxis=2) if "CTYPE1" in hdul["SCI"].header else None
    raw = [str(n) for n in hdul["RAWFILES"].data["FILENAME"]] if "RAWFILES" in hdul else []
    ref = (ProductRef.from_header(header, meta.data_id, path.name)
           if "PRODUUID" in header else None)
    prov = (Provenance.from_hdu(hdul[PROVENANCE_EXTNAME], path.name)
            if PROVENANCE_EXTNAME in hdul else None)
    return meta, wcs, raw, ref, prov


def read_uncal(path: Path) -> Level1:
    """Read a Level-1 product written by :func:`write_uncal`.

    Raises
    ------
    ProductFileError
        The file is not a whole FITS file or not a Level-1 product
        (:func:`check_uncal`); the message names the file, the HDU or
        keyword and what was expected.  Nothing is read past the headers
        before the checks pass.
    """
    with open_fits(path, EXPECTED) as hdul:
        check_uncal(hdul, Path(path))
        data = np.asarray(hdul["SCI"].data)
        if data.dtype != np.uint16:  # checked from the header above; never cast silently
            raise ProductFileError(f"{path}: SCI: data type {data.dtype}; expected uint16")
        groupdq = np.asarray(hdul["GROUPDQ"].data) if "GROUPDQ" in hdul else None
        meta, wcs, raw, ref, prov = _header_parts(hdul, Path(path))
    return Level1(data=data, meta=meta, wcs=wcs, groupdq=groupdq, raw_files=raw, ref=ref,
                  provenance=prov)


class UncalBlocks:
    """A Level-1 product's ramp cube, read a block of integrations at a time.

    Opened with the checks of :func:`read_uncal` (headers only); the SCI
    and GROUPDQ data are read from the file only by :meth:`read`, straight
    into the block's arrays (no memory map: the process never holds more
    than the block, whatever the number of integrations).  Use in a
    ``with`` block.

    Attributes
    ----------
    path : Path
    meta : ExposureMeta
    ref : ProductRef or None
        The product's identity (None for a file made outside a site).
    has_groupdq : bool
        Whether the file carries a GROUPDQ cube.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with open_fits(self.path, EXPECTED) as hdul:
            check_uncal(hdul, self.path)
            self.meta, _, _, self.ref, _ = _header_parts(hdul, self.path)
            self._sci = int(hdul.fileinfo(hdul.index_of("SCI"))["datLoc"])
            self._dq = (int(hdul.fileinfo(hdul.index_of("GROUPDQ"))["datLoc"])
                        if "GROUPDQ" in hdul else None)
        self.has_groupdq = self._dq is not None
        self._fh = open(self.path, "rb")  # noqa: SIM115 - closed by close() / __exit__

    def __enter__(self) -> UncalBlocks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self._fh.close()

    def _read_into(self, offset: int, out: np.ndarray, what: str) -> None:
        self._fh.seek(offset)
        view = out.reshape(-1).view(np.uint8).data
        got = self._fh.readinto(view)
        if got != out.nbytes:
            raise ProductFileError(f"{self.path}: {what}: file ended after {got} of the "
                                   f"{out.nbytes} bytes expected at offset {offset}")

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Integrations ``start:stop``: float32 DN (n, ngroups, ny, nx) and uint8 GROUPDQ (or None)."""
        m = self.meta
        per_int = m.ngroups * m.subsize2 * m.subsize1
        shape = (stop - start, m.ngroups, m.subsize2, m.subsize1)
        raw = np.empty(shape, np.dtype(">i2"))  # FITS uint16: big-endian int16 with BZERO 32768
        self._read_into(self._sci + 2 * per_int * start, raw, "SCI")
        data = raw.astype(np.float32)
        del raw
        data += np.float32(32768.0)
        groupdq = None
        if self._dq is not None:
            groupdq = np.empty(shape, np.uint8)
            self._read_into(self._dq + per_int * start, groupdq, "GROUPDQ")
        return data, groupdq
