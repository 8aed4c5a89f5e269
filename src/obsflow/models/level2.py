"""Level-2 products: ``_rate``, ``_rateints`` (stage 1) and ``_cal`` (stage 2).

Layout (JWST-compatible extension names)::

    PRIMARY      exposure metadata (ExposureMeta keywords), DATAMODL, CAL_VER,
                 the product reference (PRODKIND, RUNNAME, PRODUUID), RECIPE,
                 REFCTX, S_<STEP> = COMPLETE/SKIPPED, R_<REFTYPE> = reference
                 file name, plus product keywords (PHOTMJSR, BKGLEVEL, ..., and
                 the alignment's ALN_* of :mod:`obsflow.stage3.align`)
    SCI          float32 rate: (ny, nx) DN/s for _rate, (nints, ny, nx) for
                 _rateints, (ny, nx) MJy/sr for _cal (with celestial WCS)
    ERR          float32, same shape, 1-sigma error
    DQ           uint32, same shape, JWST bits
    VAR_POISSON  float32, same shape, variance (units of SCI squared)
    VAR_RNOISE   float32, same shape
    PROVENANCE   the whole :class:`~obsflow.models.provenance.Provenance`
                 (run, software, recipe, reference context, input product
                 references, every step's status and parameters, every
                 reference file with its sha256) as JSON in a table

One writer and one reader per product class, all sharing the same layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from obsflow.exceptions import DataModelError
from obsflow.fileio import Written, write_fits_hashed
from obsflow.models.identity import ProductRef
from obsflow.models.metadata import ExposureMeta
from obsflow.models.provenance import PROVENANCE_EXTNAME, Provenance

__all__ = [
    "CalImage",
    "RateImage",
    "RateInts",
    "read_cal",
    "read_rate",
    "read_rateints",
    "write_cal",
    "write_rate",
    "write_rateints",
]

_ARRAYS = ("sci", "err", "dq", "var_poisson", "var_rnoise")


@dataclass
class _Level2:
    """Common content of the level-2 products (see the module docstring)."""

    sci: np.ndarray
    err: np.ndarray
    dq: np.ndarray
    var_poisson: np.ndarray
    var_rnoise: np.ndarray
    meta: ExposureMeta
    ref: ProductRef
    provenance: Provenance
    header_extra: dict[str, Any] = field(default_factory=dict)
    wcs: WCS | None = None

    SUFFIX: ClassVar[str] = ""
    NDIM: ClassVar[int] = 2
    BUNIT: ClassVar[str] = "DN/s"

    def __post_init__(self) -> None:
        shape = self.sci.shape
        if self.ref.kind != self.SUFFIX:
            raise DataModelError(f"{type(self).__name__} needs a {self.SUFFIX!r} reference, "
                             f"got kind {self.ref.kind!r}")
        if self.sci.ndim != self.NDIM:
            raise DataModelError(f"{type(self).__name__} SCI must be {self.NDIM}-D, got {shape}")
        for name in _ARRAYS:
            if getattr(self, name).shape != shape:
                raise DataModelError(f"{name.upper()} shape {getattr(self, name).shape} != SCI {shape}")


@dataclass
class RateImage(_Level2):
    """``_rate``: exposure count rate (ny, nx), DN/s."""

    SUFFIX: ClassVar[str] = "rate"


@dataclass
class RateInts(_Level2):
    """``_rateints``: count rate per integration (nints, ny, nx), DN/s."""

    SUFFIX: ClassVar[str] = "rateints"
    NDIM: ClassVar[int] = 3


@dataclass
class CalImage(_Level2):
    """``_cal``: flat-fielded, flux-calibrated image (ny, nx), MJy/sr, with WCS."""

    SUFFIX: ClassVar[str] = "cal"
    BUNIT: ClassVar[str] = "MJy/sr"


def _write(path: Path, product: _Level2) -> Written:
    primary = fits.PrimaryHDU()
    product.meta.to_header(primary.header)
    primary.header["DATAMODL"] = (type(product).__name__, "obsflow product type")
    primary.header["CAL_VER"] = (product.provenance.software, "obsflow version that made this")
    product.ref.to_header(primary.header)
    product.provenance.write_keywords(primary.header)
    for key, value in product.header_extra.items():
        primary.header[key] = value
    hdus: list[Any] = [primary]
    for name in _ARRAYS:
        hdu = fits.ImageHDU(getattr(product, name), name=name.upper())
        if name != "dq":
            hdu.header["BUNIT"] = product.BUNIT if name in ("sci", "err") else f"({product.BUNIT})**2"
        if product.wcs is not None:
            hdu.header.update(product.wcs.to_header())
        hdus.append(hdu)
    hdus.append(product.provenance.to_hdu())
    return write_fits_hashed(fits.HDUList(hdus), Path(path))


def _read(path: Path, cls: type[_Level2]) -> Any:
    with fits.open(path, memmap=False) as hdul:
        found = hdul[0].header.get("DATAMODL")
        if found != cls.__name__:
            raise DataModelError(f"{path}: DATAMODL={found!r}, expected {cls.__name__}")
        meta = ExposureMeta.from_header(hdul[0].header)
        arrays = {n: np.asarray(hdul[n.upper()].data) for n in _ARRAYS}
        wcs = WCS(hdul["SCI"].header) if "CTYPE1" in hdul["SCI"].header else None
        ref = ProductRef.from_header(hdul[0].header, meta.data_id, Path(path).name)
        prov = Provenance.from_hdu(hdul[PROVENANCE_EXTNAME], Path(path).name)
        extra = {k: hdul[0].header[k] for k in hdul[0].header
                 if k in ("PHOTMJSR", "BKGLEVEL", "BKGRMS", "BUNIT") or k.startswith("ALN_")}
    return cls(**arrays, meta=meta, ref=ref, provenance=prov,  # type: ignore[arg-type]
               header_extra=extra, wcs=wcs)


def write_rate(path: Path, product: RateImage) -> Written:
    """Write a ``_rate`` product atomically."""
    return _write(path, product)


def read_rate(path: Path) -> RateImage:
    """Read a ``_rate`` product written by :func:`write_rate`."""
    return _read(path, RateImage)  # type: ignore[no-any-return]


def write_rateints(path: Path, product: RateInts) -> Written:
    """Write a ``_rateints`` product atomically."""
    return _write(path, product)


def read_rateints(path: Path) -> RateInts:
    """Read a ``_rateints`` product written by :func:`write_rateints`."""
    return _read(path, RateInts)  # type: ignore[no-any-return]


def write_cal(path: Path, product: CalImage) -> Written:
    """Write a ``_cal`` product atomically."""
    return _write(path, product)


def read_cal(path: Path) -> CalImage:
    """Read a ``_cal`` product written by :func:`write_cal`."""
    return _read(path, CalImage)  # type: ignore[no-any-return]
