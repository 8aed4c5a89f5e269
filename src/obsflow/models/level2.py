"""Level-2 products: ``_rate``, ``_rateints`` (stage 1) and ``_cal`` (stage 2).

Layout (JWST-compatible extension names)::

    PRIMARY      exposure metadata (ExposureMeta keywords), DATAMODL, CAL_VER,
                 RECIPE, S_<STEP> = COMPLETE/SKIPPED, R_<REFTYPE> = reference
                 file name, plus product keywords (PHOTMJSR, BKGLEVEL, ...)
    SCI          float32 rate: (ny, nx) DN/s for _rate, (nints, ny, nx) for
                 _rateints, (ny, nx) MJy/sr for _cal (with celestial WCS)
    ERR          float32, same shape, 1-sigma error
    DQ           uint32, same shape, JWST bits
    VAR_POISSON  float32, same shape, variance (units of SCI squared)
    VAR_RNOISE   float32, same shape
    PROVENANCE   table CATEGORY, NAME, KEY, VALUE: recipe, software
                 version, input product (name, sha256), every step's status
                 and parameters, every reference file (name, sha256)

One writer and one reader per product class, all sharing the same layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from obsflow.fileio import write_fits
from obsflow.models.metadata import ExposureMeta

__all__ = [
    "CalImage",
    "Provenance",
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
class Provenance:
    """Where a product came from.

    Attributes
    ----------
    recipe : str
        Recipe name (and file) used.
    software : str
        obsflow version.
    input_name, input_sha256 : str
        The product it was made from.
    steps : list of (step, status, params)
        Each step in order, ``status`` COMPLETE or SKIPPED (with reason), its parameters.
    references : list of (reftype, name, sha256)
    """

    recipe: str
    software: str
    input_name: str
    input_sha256: str
    steps: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    references: list[tuple[str, str, str]] = field(default_factory=list)

    def rows(self) -> list[tuple[str, str, str, str]]:
        """Flatten to (CATEGORY, NAME, KEY, VALUE) rows."""
        out = [("recipe", self.recipe, "", ""), ("software", "obsflow", "version", self.software),
               ("input", self.input_name, "sha256", self.input_sha256)]
        for step, status, params in self.steps:
            out.append(("step", step, "status", status))
            out += [("param", step, k, repr(v)) for k, v in params.items()]
        out += [("reference", reftype, name, sha) for reftype, name, sha in self.references]
        return out

    @classmethod
    def from_rows(cls, rows: list[tuple[str, str, str, str]]) -> Provenance:
        import ast

        prov = cls("", "", "", "")
        params: dict[str, dict[str, Any]] = {}
        for cat, name, key, value in rows:
            if cat == "recipe":
                prov.recipe = name
            elif cat == "software":
                prov.software = value
            elif cat == "input":
                prov.input_name, prov.input_sha256 = name, value
            elif cat == "step":
                params[name] = {}
                prov.steps.append((name, value, params[name]))
            elif cat == "param":
                params[name][key] = ast.literal_eval(value)
            elif cat == "reference":
                prov.references.append((name, key, value))
        return prov


@dataclass
class _Level2:
    """Common content of the level-2 products (see the module docstring)."""

    sci: np.ndarray
    err: np.ndarray
    dq: np.ndarray
    var_poisson: np.ndarray
    var_rnoise: np.ndarray
    meta: ExposureMeta
    provenance: Provenance
    header_extra: dict[str, Any] = field(default_factory=dict)
    wcs: WCS | None = None

    SUFFIX: ClassVar[str] = ""
    NDIM: ClassVar[int] = 2
    BUNIT: ClassVar[str] = "DN/s"

    def __post_init__(self) -> None:
        shape = self.sci.shape
        if self.sci.ndim != self.NDIM:
            raise ValueError(f"{type(self).__name__} SCI must be {self.NDIM}-D, got {shape}")
        for name in _ARRAYS:
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name.upper()} shape {getattr(self, name).shape} != SCI {shape}")


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


def _write(path: Path, product: _Level2) -> Path:
    from obsflow import __version__

    primary = fits.PrimaryHDU()
    product.meta.to_header(primary.header)
    primary.header["DATAMODL"] = (type(product).__name__, "obsflow product type")
    primary.header["CAL_VER"] = (__version__, "obsflow version that wrote this file")
    primary.header["RECIPE"] = (product.provenance.recipe, "calibration recipe")
    for step, status, _ in product.provenance.steps:
        primary.header[f"S_{step[:6].upper()}"] = (status.split(":")[0], f"step {step}")
    for reftype, name, _ in product.provenance.references:
        primary.header[f"R_{reftype[:6].upper()}"] = (name, f"{reftype} reference file")
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
    rows = product.provenance.rows()
    cols = [fits.Column(name=n, format="256A", array=np.array([r[k] for r in rows], dtype="U256"))
            for k, n in enumerate(("CATEGORY", "NAME", "KEY", "VALUE"))]
    hdus.append(fits.BinTableHDU.from_columns(cols, name="PROVENANCE"))
    return write_fits(fits.HDUList(hdus), Path(path))


def _read(path: Path, cls: type[_Level2]) -> Any:
    with fits.open(path, memmap=False) as hdul:
        found = hdul[0].header.get("DATAMODL")
        if found != cls.__name__:
            raise ValueError(f"{path}: DATAMODL={found!r}, expected {cls.__name__}")
        meta = ExposureMeta.from_header(hdul[0].header)
        arrays = {n: np.asarray(hdul[n.upper()].data) for n in _ARRAYS}
        wcs = WCS(hdul["SCI"].header) if "CTYPE1" in hdul["SCI"].header else None
        table = hdul["PROVENANCE"].data
        rows = [tuple(str(r[c]) for c in ("CATEGORY", "NAME", "KEY", "VALUE")) for r in table]
        extra = {k: hdul[0].header[k] for k in ("PHOTMJSR", "BKGLEVEL", "BKGRMS", "BUNIT")
                 if k in hdul[0].header}
    return cls(**arrays, meta=meta, provenance=Provenance.from_rows(rows),  # type: ignore[arg-type]
               header_extra=extra, wcs=wcs)


def write_rate(path: Path, product: RateImage) -> Path:
    """Write a ``_rate`` product atomically."""
    return _write(path, product)


def read_rate(path: Path) -> RateImage:
    """Read a ``_rate`` product written by :func:`write_rate`."""
    return _read(path, RateImage)  # type: ignore[no-any-return]


def write_rateints(path: Path, product: RateInts) -> Path:
    """Write a ``_rateints`` product atomically."""
    return _write(path, product)


def read_rateints(path: Path) -> RateInts:
    """Read a ``_rateints`` product written by :func:`write_rateints`."""
    return _read(path, RateInts)  # type: ignore[no-any-return]


def write_cal(path: Path, product: CalImage) -> Path:
    """Write a ``_cal`` product atomically."""
    return _write(path, product)


def read_cal(path: Path) -> CalImage:
    """Read a ``_cal`` product written by :func:`write_cal`."""
    return _read(path, CalImage)  # type: ignore[no-any-return]
