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

import contextlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from obsflow.exceptions import DataModelError
from obsflow.fileio import Written, atomic_path, sha256_file, write_fits_hashed
from obsflow.fitschecksum import DataSum, disk_form_and_sum, set_checksum
from obsflow.models.asdfmeta import asdf_hdu, product_tree, with_asdf
from obsflow.models.fitsfile import BLOCK_BYTES
from obsflow.models.gwcsmodel import gwcs_from_fits
from obsflow.models.identity import ProductRef
from obsflow.models.metadata import ExposureMeta
from obsflow.models.pointing import wcs_header
from obsflow.models.provenance import PROVENANCE_EXTNAME, Provenance

__all__ = [
    "CalImage",
    "CrfImage",
    "RateImage",
    "RateInts",
    "RateIntsWriter",
    "read_cal",
    "read_crf",
    "read_rate",
    "product_primary",
    "read_rateints",
    "write_cal",
    "write_crf",
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
    DATAMODEL: ClassVar[str] = "ImageModel"
    """``DATAMODL``: the stdatamodels model that opens it (JWST's name); ``PRODKIND``
    tells the products of one model apart."""

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
    DATAMODEL: ClassVar[str] = "CubeModel"


@dataclass
class CalImage(_Level2):
    """``_cal``: flat-fielded, flux-calibrated image (ny, nx), MJy/sr, with WCS."""

    SUFFIX: ClassVar[str] = "cal"
    BUNIT: ClassVar[str] = "MJy/sr"


@dataclass
class CrfImage(CalImage):
    """``_crf``: a ``_cal`` made ready for its mosaic by stage 3 (the JWST name).

    The same arrays and layout, with the aligned WCS (``ALN_*`` keywords,
    a ``tweakreg`` step), the sky level found by sky matching (``BKG*``)
    and, once outlier detection runs, outliers flagged in DQ; its one input
    is the ``_cal`` (see docs/stage3.md)."""

    SUFFIX: ClassVar[str] = "crf"


def _primary(cls: type[_Level2], meta: ExposureMeta, ref: ProductRef, provenance: Provenance,
             header_extra: dict[str, Any]) -> fits.PrimaryHDU:
    return product_primary(cls.DATAMODEL, meta, ref, provenance, header_extra)


def product_primary(datamodel: str, meta: ExposureMeta, ref: ProductRef,
                    provenance: Provenance, header_extra: dict[str, Any]) -> fits.PrimaryHDU:
    """The primary HDU of a product: exposure keywords, DATAMODL, CAL_VER, the reference, the
    provenance's keywords, then ``header_extra`` (value or (value, comment))."""
    primary = fits.PrimaryHDU()
    meta.to_header(primary.header)
    primary.header["DATAMODL"] = (datamodel, "stdatamodels model type of this product")
    primary.header["CAL_VER"] = (provenance.software, "obsflow version that made this")
    ref.to_header(primary.header)
    provenance.write_keywords(primary.header)
    for key, value in header_extra.items():
        primary.header[key] = value
    return primary


def _image(cls: type[_Level2], name: str, data: np.ndarray, wcs: WCS | None) -> fits.ImageHDU:
    """The HDU of array ``name`` (``data`` may be a zero-stride stand-in: only its header is used
    by :class:`RateIntsWriter`)."""
    hdu = fits.ImageHDU(data, name=name.upper())
    if name != "dq":
        hdu.header["BUNIT"] = cls.BUNIT if name in ("sci", "err") else f"({cls.BUNIT})**2"
    if wcs is not None:
        hdu.header.update(wcs_header(wcs))
    return hdu


def _write(path: Path, product: _Level2) -> Written:
    hdus: list[Any] = [_primary(type(product), product.meta, product.ref, product.provenance,
                                product.header_extra)]
    hdus += [_image(type(product), name, getattr(product, name), product.wcs) for name in _ARRAYS]
    hdus.append(product.provenance.to_hdu())
    gwcs = None if product.wcs is None else {"wcs": gwcs_from_fits(product.wcs)}
    return write_fits_hashed(with_asdf(hdus, gwcs), Path(path))


class RateIntsWriter:
    """Writes a ``_rateints`` product straight into its file, a block of integrations at a time.

    For time series too long to hold: the file's layout (headers and data
    sizes) is fixed when it opens, every array's block of integrations is
    written at its place (:meth:`write`; read back with :meth:`read`), and
    on a clean exit each HDU's DATASUM and CHECKSUM, accumulated from the
    blocks written with ``final=True`` (:class:`obsflow.fitschecksum.DataSum`),
    are filled in, the file is hashed and renamed into place
    (:func:`obsflow.fileio.atomic_path`: until then it exists only under a
    temporary name; an error leaves nothing).  The bytes are those
    :func:`write_rateints` writes for the same arrays, but the checksum
    cards' comments.  Use in a ``with`` block; :attr:`written` afterwards.
    """

    def __init__(self, path: Path, meta: ExposureMeta, ref: ProductRef, provenance: Provenance,
                 header_extra: dict[str, Any] | None = None, stamp: str = "obsflow") -> None:
        if ref.kind != RateInts.SUFFIX:
            raise DataModelError(f"RateIntsWriter needs a 'rateints' reference, got {ref.kind!r}")
        self.path = Path(path)
        self.shape = (meta.nints, meta.subsize2, meta.subsize1)
        self._stamp = stamp
        self._headers = [_primary(RateInts, meta, ref, provenance, header_extra or {}).header]
        for name in _ARRAYS:
            dtype = np.uint32 if name == "dq" else np.float32
            stand_in = np.broadcast_to(np.zeros((), dtype), self.shape)
            self._headers.append(_image(RateInts, name, stand_in, None).header)
        for header in self._headers:
            set_checksum(header, 0, stamp)  # the cards exist: the header's size is final
        self._prov = provenance.to_hdu()
        self._prov.add_checksum(when=stamp)
        self._asdf = asdf_hdu(product_tree(self._headers))
        self._asdf.add_checksum(when=stamp)
        self._plane = int(np.prod(self.shape[1:])) * 4  # bytes per integration and array
        self._span = -(-self._plane * self.shape[0] // BLOCK_BYTES) * BLOCK_BYTES
        self._offsets: dict[str, int] = {}
        pos = len(self._headers[0].tostring())
        for name, header in zip(_ARRAYS, self._headers[1:], strict=True):
            pos += len(header.tostring())
            self._offsets[name] = pos
            pos += self._span
        self._tail = pos
        self._sums = {name: DataSum() for name in _ARRAYS}
        self._done = dict.fromkeys(_ARRAYS, 0)
        self._stack = contextlib.ExitStack()
        self._fd = -1
        self.written: Written | None = None

    def __enter__(self) -> RateIntsWriter:
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._tmp = tmp
        self._fd = os.open(tmp, os.O_RDWR | os.O_CLOEXEC)
        self._stack.callback(os.close, self._fd)
        return self

    def write(self, start: int, *, final: bool = True, **arrays: np.ndarray) -> None:
        """Write integrations ``start:start + n`` of the named arrays (sci, err, dq, var_poisson,
        var_rnoise; (n, ny, nx)).  Blocks of each array must come in order when ``final``
        (the values the product keeps: they go into its DATASUM); ``final=False`` writes
        scratch values to be overwritten later by final ones."""
        for name, values in arrays.items():
            if name not in self._offsets or values.shape[1:] != self.shape[1:]:
                raise DataModelError(f"{self.path.name}: cannot write {name} of shape "
                                     f"{values.shape}: expected one of {_ARRAYS} of shape "
                                     f"(n, {self.shape[1]}, {self.shape[2]})")
            if final and start != self._done[name]:
                raise DataModelError(f"{self.path.name}: {name} integrations from {start} "
                                     f"written out of order (next is {self._done[name]})")
            native = np.ascontiguousarray(values, np.uint32 if name == "dq" else np.float32)
            disk, words = disk_form_and_sum(native)  # swapped and summed in one pass
            os.pwrite(self._fd, disk.data, self._offsets[name] + start * self._plane)
            if final:
                self._sums[name].add_words(words)
                self._done[name] += values.shape[0]

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Integrations ``start:stop`` of a float array as written so far (float32 (n, ny, nx))."""
        size = (stop - start) * self._plane
        raw = os.pread(self._fd, size, self._offsets[name] + start * self._plane)
        if len(raw) != size:
            raise DataModelError(f"{self.path.name}: {name} integrations {start}:{stop} "
                                 "not written yet")
        return np.frombuffer(raw, np.dtype(">f4")).astype(np.float32).reshape(
            (stop - start, *self.shape[1:]))

    def _finish(self) -> None:
        missing = [n for n in _ARRAYS if self._done[n] != self.shape[0]]
        if missing:
            raise DataModelError(f"{self.path.name}: {', '.join(missing)} hold "
                                 f"{min(self._done[n] for n in missing)} of {self.shape[0]} "
                                 "integrations: product not whole")
        pad = self._span - self._plane * self.shape[0]
        pos = 0
        for k, header in enumerate(self._headers):
            if k:
                name = _ARRAYS[k - 1]
                set_checksum(header, self._sums[name].value, self._stamp)
            text = header.tostring().encode("ascii")
            os.pwrite(self._fd, text, pos)
            pos += len(text)
            if k:
                os.pwrite(self._fd, bytes(pad), pos + self._span - pad)
                pos += self._span
        buf = io.BytesIO()  # the table HDUs' bytes: written after an empty primary, cut off
        primary = fits.PrimaryHDU()
        fits.HDUList([primary, self._prov, self._asdf]).writeto(buf, checksum=False)
        table = buf.getvalue()[len(primary.header.tostring()):]
        os.pwrite(self._fd, table, self._tail)
        size = self._tail + len(table)
        os.ftruncate(self._fd, size)
        self.written = Written(self.path, sha256_file(self._tmp), size)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:  # the temporary file goes, the error goes on
            self._stack.__exit__(exc_type, exc, tb)
            return
        with self._stack:
            self._finish()
def _read(path: Path, cls: type[_Level2]) -> Any:
    with fits.open(path, memmap=False) as hdul:
        found = hdul[0].header.get("DATAMODL")
        kind = hdul[0].header.get("PRODKIND")
        # files written before DATAMODL was the JWST model name hold the class name
        if found not in (cls.DATAMODEL, cls.__name__) or kind not in (cls.SUFFIX, None):
            raise DataModelError(f"{path}: DATAMODL={found!r}, PRODKIND={kind!r}: expected a "
                                 f"_{cls.SUFFIX} product (DATAMODL {cls.DATAMODEL!r}, "
                                 f"PRODKIND {cls.SUFFIX!r})")
        meta = ExposureMeta.from_header(hdul[0].header)
        arrays = {n: np.asarray(hdul[n.upper()].data) for n in _ARRAYS}
        wcs = WCS(hdul["SCI"].header, naxis=2) if "CTYPE1" in hdul["SCI"].header else None
        ref = ProductRef.from_header(hdul[0].header, meta.data_id, Path(path).name)
        prov = Provenance.from_hdu(hdul[PROVENANCE_EXTNAME], Path(path).name)
        extra = {k: hdul[0].header[k] for k in hdul[0].header
                 if k in ("PHOTMJSR", "BKGLEVEL", "BKGRMS", "BKGMETH", "BKGSUB", "BUNIT") or k.startswith("ALN_")}
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


def write_crf(path: Path, product: CrfImage) -> Written:
    """Write a ``_crf`` product atomically."""
    return _write(path, product)


def read_crf(path: Path) -> CrfImage:
    """Read a ``_crf`` product written by :func:`write_crf`."""
    return _read(path, CrfImage)  # type: ignore[no-any-return]
