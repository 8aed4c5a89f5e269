"""The ``_i2d`` mosaic product: its FITS layout, writer and reader.

Layout (JWST's ``ImageModel`` extension names, so ``jwst``-minded tools
read it)::

    PRIMARY      the mosaic's ExposureMeta keywords (program, observation,
                 target, filter, instrument; VISIT 0 and EXPOSURE 0 = all,
                 DETECTOR = the filter, EXPSTART/EXPEND the first start and
                 last end, EFFEXPTM the sum of the member exposures'
                 durations, s), DATAMODL ``ImageModel``, CAL_VER, the product
                 reference (PRODKIND ``i2d``, RUNNAME, PRODUUID), RECIPE
                 ``image3``, S_<STEP>, R_ASTROCAT, plus ASNID, ASNRULE,
                 ASNDIGST (the members' digest), NINPUTS (members), NEXPOSUR
                 (exposures), KERNEL, PIXFRAC, WHTTYPE, PIXSCALE (arcsec)
    SCI          float32 (ny, nx) surface brightness, MJy/sr, grid WCS; NaN
                 where no input fell
    ERR          float32, sqrt of the three variances, MJy/sr
    WHT          float32, drizzle weight (0 where uncovered)
    CON          int32 (nplanes, ny, nx): bit k % 32 of plane k // 32 set
                 where member k (in the association's order) contributed
    VAR_POISSON, VAR_RNOISE, VAR_FLAT   float32, (MJy/sr)**2
    PROVENANCE   the whole Provenance (inputs: the ``_crf`` products; the
                 tweakreg, skymatch and resample steps with their parameters)

Every image HDU carries the grid's celestial WCS.  :func:`write_i2d` makes
each array contiguous only when its HDU is written (one array at a time
beside the resampler's accumulators) and writes atomically, check-summed
and hashed (:func:`obsflow.fileio.write_fits_hashed`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from obsflow.exceptions import DataModelError
from obsflow.fileio import Written, write_fits_hashed
from obsflow.models.asdfmeta import with_asdf
from obsflow.models.gwcsmodel import gwcs_from_fits
from obsflow.models.identity import ProductRef
from obsflow.models.level2 import product_primary
from obsflow.models.metadata import ExposureMeta
from obsflow.models.provenance import PROVENANCE_EXTNAME, Provenance
from obsflow.stage3.resample import I2DArrays

__all__ = ["I2D_ARRAYS", "I2D_DATAMODEL", "MosaicImage", "read_i2d", "write_i2d"]

I2D_DATAMODEL = "ImageModel"
"""DATAMODL of an ``_i2d`` (JWST's model name for resampled images)."""

I2D_ARRAYS = ("sci", "err", "wht", "con", "var_poisson", "var_rnoise", "var_flat")
"""The image extensions of an ``_i2d``, in file order."""

_UNITS = {"sci": "MJy/sr", "err": "MJy/sr", "var_poisson": "(MJy/sr)**2",
          "var_rnoise": "(MJy/sr)**2", "var_flat": "(MJy/sr)**2"}


@dataclass
class MosaicImage(I2DArrays):
    """An ``_i2d`` read back: its arrays and grid WCS, metadata, reference, provenance, header."""

    meta: ExposureMeta
    ref: ProductRef
    provenance: Provenance
    header: fits.Header = field(default_factory=fits.Header)


def _read_if_mapped(data: np.ndarray) -> np.ndarray:
    """A memory-mapped array (a plane spilled while the catalog ran:
    :func:`obsflow.stage3.resample.spill_planes`) read from its file with a plain read, its
    mapping never touched: its pages do not stay resident beside the next plane's; any
    other array as it is."""
    if isinstance(data, np.memmap) and data.filename is not None:
        return np.fromfile(data.filename, dtype=data.dtype, count=data.size,
                           offset=data.offset).reshape(data.shape)
    return data


def _hdus(arrays: I2DArrays, meta: ExposureMeta, ref: ProductRef, provenance: Provenance,
          header_extra: dict[str, Any]) -> Iterator[fits.PrimaryHDU | fits.ImageHDU
                                                    | fits.BinTableHDU]:
    yield product_primary(I2D_DATAMODEL, meta, ref, provenance, header_extra)
    wcs_header = arrays.wcs.to_header()
    for name in I2D_ARRAYS:
        data = _read_if_mapped(getattr(arrays, name))
        dtype = np.int32 if name == "con" else np.float32
        hdu = fits.ImageHDU(np.ascontiguousarray(data, dtype=dtype), name=name.upper())
        if name in _UNITS:
            hdu.header["BUNIT"] = _UNITS[name]
        hdu.header.update(wcs_header)
        yield hdu
        del hdu, data  # written: the contiguous copy can go before the next one is made
    yield provenance.to_hdu()


def write_i2d(path: Path, arrays: I2DArrays, meta: ExposureMeta, ref: ProductRef,
              provenance: Provenance, header_extra: dict[str, Any] | None = None) -> Written:
    """Write an ``_i2d`` product atomically (module docstring for the layout).

    ``header_extra`` are primary keywords (value or (value, comment)).
    """
    if ref.kind != "i2d":
        raise DataModelError(f"write_i2d needs an 'i2d' reference, got kind {ref.kind!r}")
    if arrays.sci.ndim != 2 or arrays.con.ndim != 3 or arrays.con.shape[1:] != arrays.sci.shape:
        raise DataModelError(f"i2d arrays: SCI {arrays.sci.shape} must be (ny, nx) and CON "
                             f"{arrays.con.shape} (nplanes, ny, nx)")
    hdus = _hdus(arrays, meta, ref, provenance, header_extra or {})
    return write_fits_hashed(with_asdf(hdus, {"wcs": gwcs_from_fits(arrays.wcs)}), Path(path))


def read_i2d(path: Path) -> MosaicImage:
    """Read an ``_i2d`` written by :func:`write_i2d` (``DataModelError`` naming the file if not one)."""
    path = Path(path)
    with fits.open(path, memmap=False) as hdul:
        primary = hdul[0].header
        if primary.get("DATAMODL") != I2D_DATAMODEL or primary.get("PRODKIND") != "i2d":
            raise DataModelError(f"{path}: DATAMODL={primary.get('DATAMODL')!r}, "
                                 f"PRODKIND={primary.get('PRODKIND')!r}; expected "
                                 f"{I2D_DATAMODEL!r} and 'i2d'")
        missing = [n.upper() for n in I2D_ARRAYS if n.upper() not in hdul]
        if missing:
            raise DataModelError(f"{path}: extension(s) {', '.join(missing)} missing")
        meta = ExposureMeta.from_header(primary)
        arrays = {n: np.asarray(hdul[n.upper()].data) for n in I2D_ARRAYS}
        return MosaicImage(**arrays, wcs=WCS(hdul["SCI"].header),
                           n_inputs=int(primary.get("NINPUTS", 0)), meta=meta,
                           ref=ProductRef.from_header(primary, meta.data_id, path.name),
                           provenance=Provenance.from_hdu(hdul[PROVENANCE_EXTNAME], path.name),
                           header=primary.copy())
