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

from obsflow.exceptions import DataModelError
from obsflow.fileio import Written, write_fits, write_fits_hashed
from obsflow.models.identity import ProductRef
from obsflow.models.metadata import ExposureMeta
from obsflow.models.provenance import PROVENANCE_EXTNAME, Provenance

__all__ = ["Level1", "read_uncal", "write_uncal", "write_uncal_hashed"]


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
    primary.header["DATAMODL"] = ("Level1", "obsflow product type")
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
        sci.header.update(product.wcs.to_header())
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
    return write_fits(_hdus(product, _disk_form(product.data.copy())), Path(path))


def write_uncal_hashed(path: Path, product: Level1) -> Written:
    """Like :func:`write_uncal` without copying the cube; returns the file's sha256 and size.

    ``product.data`` is converted in place to FITS's on-disk form and is
    garbage afterwards: for writers of large cubes (ingest assembly) that drop
    the product after writing it, so peak memory stays at one cube.  The file
    is hashed once, as it is written.
    """
    return write_fits_hashed(_hdus(product, _disk_form(product.data)), Path(path))


def read_uncal(path: Path) -> Level1:
    """Read a Level-1 product written by :func:`write_uncal`."""
    with fits.open(path, memmap=False) as hdul:
        meta = ExposureMeta.from_header(hdul[0].header)
        data = np.asarray(hdul["SCI"].data, dtype=np.uint16)
        wcs = WCS(hdul["SCI"].header) if "CTYPE1" in hdul["SCI"].header else None
        groupdq = np.asarray(hdul["GROUPDQ"].data) if "GROUPDQ" in hdul else None
        raw = [str(n) for n in hdul["RAWFILES"].data["FILENAME"]] if "RAWFILES" in hdul else []
        header = hdul[0].header
        ref = (ProductRef.from_header(header, meta.data_id, Path(path).name)
               if "PRODUUID" in header else None)
        prov = (Provenance.from_hdu(hdul[PROVENANCE_EXTNAME], Path(path).name)
                if PROVENANCE_EXTNAME in hdul else None)
    return Level1(data=data, meta=meta, wcs=wcs, groupdq=groupdq, raw_files=raw, ref=ref,
                  provenance=prov)
