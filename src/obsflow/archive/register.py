"""Registering programs and products: the one way data enters the archive.

A product arrives as a :class:`Registration`: its file, its
:class:`~obsflow.models.ProductRef`, its :class:`~obsflow.models.Provenance`
and the sha256 its writer computed (a product is hashed once).
:func:`register_outputs` registers one or more of them in ONE catalog
transaction: each becomes a new version of its exposure and kind, is made
current (the older version stays, no longer ``is_latest``), and is linked to
its input products (``product_inputs``); registering the same UUID again
returns the existing record.  :func:`register_product` registers a file by
path (its reference and provenance read from its header; a file made
outside a site gets a new reference in the run ``manual``), checking its
sha256 and FITS checksums.

Each product is stored once: a file already inside a local store (the
pipeline writes into ``products/<run>/...``) is registered where it is;
anything else is copied to the store key ``ref.relpath()``.  Previews are
rendered and the copy made before the transaction, which only writes rows.

A product that is a table, not FITS (a time series's light curve, ``phot``,
ECSV: :mod:`obsflow.archive.lightcurves`), is described by its exposure's
row, which its input's registration made: it joins that exposure (and its
release date), with the table's media type and the light curve as preview.

A target's colour image (``clr``, a PNG: :mod:`obsflow.stage3.colour_job`)
gets its own exposure row made from its three input mosaics' rows (the red
one's sky and instrument, the filters red/green/blue, the widest band and
time span, the latest release date: visible only to whoever may see all
three); it is its own preview.

A product may have other files of other formats (:class:`OtherFile`, the
``files`` of its registration): a site with ``[products] formats = ["fits",
"asdf"]`` writes the pure ASDF form of its ``_cal`` and ``_i2d`` products
(:func:`with_site_formats`, in the job that writes the FITS); each is stored
like the product (in place or copied) and recorded in ``product_files`` with
its own sha256 and media type, in the product's transaction: one product,
two files, one access rule.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from obsflow import __version__
from obsflow.archive.context import Archive, ArchiveSettings, opened, unit_of_work
from obsflow.archive.footprints import coverage_cells
from obsflow.archive.lightcurves import (
    TABLE_KINDS,
    read_table_product,
    table_previews,
    table_reference,
)
from obsflow.archive.policy import release_date, utcnow
from obsflow.archive.previews import IMAGE_SUFFIXES, Rendered, image_previews, render_previews
from obsflow.archive.schema import (
    Exposure,
    FootprintCell,
    Preview,
    Product,
    ProductFile,
    ProductInput,
    Program,
    Run,
)
from obsflow.archive.sky import (
    Footprint,
    footprint_from_header,
    footprint_from_region,
    healpix_index,
    unit_vector,
)
from obsflow.config import SiteConfig
from obsflow.exceptions import ArchiveError, DataModelError, ProductFileError, UnknownOptionError
from obsflow.fileio import sha256_file
from obsflow.models.fitsfile import open_fits
from obsflow.models.identity import PRODUCT_KINDS, ProductRef
from obsflow.models.level1 import UNCAL_DATAMODEL, check_uncal
from obsflow.models.metadata import ExposureMeta
from obsflow.models.provenance import PROVENANCE_EXTNAME, Provenance, RefFileUse

__all__ = ["ASDF_KINDS", "FITS_KINDS", "FORMAT_TYPES", "KINDS", "MANUAL_RUN", "OtherFile", "ProductRecord",
           "Registration", "ensure_run", "register_outputs", "register_product",
           "register_program", "with_site_formats"]

KINDS = PRODUCT_KINDS
"""Product kind (file-name suffix) -> (data level, ObsCore calib_level)."""

MANUAL_RUN = "manual"
"""The run of files registered by hand that carry no product reference."""

RUN_KINDS = ("ingest", "prompt", "campaign", "manual", "legacy")
"""What a run can be (see :class:`obsflow.archive.schema.Run`)."""

ASDF_KINDS = ("cal", "i2d")
"""Product kinds a site writes in pure ASDF too when its ``[products] formats`` has ``asdf``
(the default of ``[products] asdf_kinds``)."""

FITS_KINDS = ("uncal", "rate", "rateints", "cal", "crf", "i2d", "segm")
"""Every FITS product kind: each can be written as pure ASDF (``asdf_kinds``)."""

FORMAT_TYPES = {"asdf": "application/asdf"}
"""Format of a product's other file -> its media type."""

_PROGRAM = re.compile(r"^[A-Za-z0-9]{1,16}$")


@dataclass(frozen=True)
class OtherFile:
    """Another file of a product, in another format (a key of :data:`FORMAT_TYPES`).

    ``path`` is the file (inside the store when it is local), ``sha256`` its hex
    sha256 from its writer, ``size`` its bytes.
    """

    format: str
    path: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class Registration:
    """A product handed to the archive by the writer that made it.

    Attributes
    ----------
    path : Path
        The product file (inside the store when it is local: stored in place).
    ref : ProductRef
        Its identity.
    provenance : Provenance
        How it was made (its ``inputs`` must be registered already).
    sha256 : str
        Hex sha256 of the file, computed by its writer.
    size : int
        File size, bytes.
    files : tuple of OtherFile
        The product's files in other formats (its pure ASDF form), none by default.
    """

    path: Path
    ref: ProductRef
    provenance: Provenance
    sha256: str
    size: int
    files: tuple[OtherFile, ...] = ()


def with_site_formats(reg: Registration, formats: Sequence[str],
                      kinds: Sequence[str] = ASDF_KINDS) -> Registration:
    """``reg`` with the files of the other formats a site writes (``[products] formats``):
    the pure ASDF form of a FITS product of one of ``kinds`` (``[products] asdf_kinds``),
    written now (atomically, beside it, :func:`obsflow.models.asdffile.write_asdf_copy`;
    the same FITS file gives the same bytes); else ``reg`` unchanged."""
    if "asdf" not in formats or reg.ref.kind not in kinds or reg.ref.kind not in FITS_KINDS:
        return reg
    from obsflow.models.asdffile import write_asdf_copy

    written = write_asdf_copy(reg.path, fits_sha256=reg.sha256)
    return replace(reg, files=(OtherFile("asdf", written.path, written.sha256, written.size),))


@dataclass(frozen=True)
class ProductRecord:
    """What registration returns (a plain snapshot of the catalog row)."""

    product_id: str
    obs_id: str
    program: str
    kind: str
    level: str
    version: int
    store_key: str
    size: int
    sha256: str
    created: bool
    """True if this call added the version; False if it was registered already."""
    uuid: str = ""
    run: str = ""
    attached: bool = False
    """True if this call attached a pure-ASDF file to the registered product."""


def _record(row: Product, exposure: Exposure, created: bool) -> ProductRecord:
    return ProductRecord(row.product_id, exposure.obs_id, exposure.program, row.kind, row.level,
                         row.version, row.path, row.size, row.sha256, created, row.uuid, row.run)


def register_program(target: Archive | SiteConfig | Session, program: str, *,
                     pi_name: str = "", title: str = "", exclusive_months: int,
                     members: Iterable[str] = (), settings: ArchiveSettings | None = None) -> None:
    """Create or update a program; release dates of its data follow the new period.

    ``members`` are user names (created with ``obsflow users add``) added to
    the program; existing members stay.
    """
    from obsflow.archive.users import add_member

    if not _PROGRAM.match(program) or exclusive_months < 0:
        raise ArchiveError(f"invalid program {program!r} / exclusive months {exclusive_months}")
    with unit_of_work(target, settings) as (session, _):
        row = session.get(Program, program)
        if row is None:
            row = Program(program=program, created=utcnow(), exclusive_months=exclusive_months)
            session.add(row)
        row.pi_name, row.title = pi_name or row.pi_name or "", title or row.title or ""
        row.exclusive_months = exclusive_months
        session.flush()
        for exposure in session.scalars(select(Exposure).where(Exposure.program == program)):
            exposure.release_date = release_date(exposure.t_max, exclusive_months)
        for name in members:
            add_member(session, program, name)


def ensure_run(session: Session, name: str, kind: str, description: str = "") -> Run:
    """The ``runs`` row of ``name``, created (flushed, not committed) when absent."""
    if kind not in RUN_KINDS:
        raise UnknownOptionError("run kind", kind, RUN_KINDS)
    row = session.get(Run, name)
    if row is None:
        row = Run(name=name, kind=kind, created=utcnow(), description=description)
        session.add(row)
        session.flush()
    return row


# -- reading a product file -------------------------------------------------------------------

def _open_checked(path: Path, verify: bool) -> fits.HDUList:
    open_fits(path, "a product FITS file").close()  # empty, not FITS, truncated: one clear line
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hdul = fits.open(path, memmap=False, checksum=verify)
    except OSError as exc:
        raise ProductFileError(f"{path}: not a readable FITS file ({exc})") from exc
    bad = [str(w.message) for w in caught if "checksum" in str(w.message).lower()]
    if bad:
        hdul.close()
        raise ProductFileError(f"{path.name}: FITS checksum verification failed: {bad[0]}")
    return hdul


def _preview_data(path: Path, shape: tuple[int, ...], section: Any) -> np.ndarray:
    """The SCI array to preview (2-D, or the first and last group of a 4-D ramp);
    ``section`` indexes it (a FITS HDU's ``section``, or the array)."""
    if len(shape) == 2:
        return np.asarray(section[:, :])
    if len(shape) == 3:  # per-integration images (_rateints): the first
        return np.asarray(section[0])
    if len(shape) == 4:
        return np.stack([section[0, 0], section[0, shape[1] - 1]])[None]
    raise ProductFileError(f"{path.name}: SCI has shape {shape}; expected a 2-D image, "
                           "a 3-D stack of integrations or a 4-D ramp cube")


@dataclass(frozen=True)
class _Read:
    """What registration reads from a product file (one open, no data beyond the preview)."""

    primary: fits.Header
    sci_header: fits.Header
    data: np.ndarray
    provenance: Provenance | None
    twin_sha256: str = ""
    """A pure-ASDF product's FITS twin's sha256 (its reference when it has none)."""


def _read_asdf(path: Path) -> _Read:
    """An obsflow pure-ASDF product (:func:`obsflow.models.asdffile.read_asdf_product`)."""
    from obsflow.models.asdffile import read_asdf_product

    product = read_asdf_product(path)
    data = product.arrays["data"]
    if product.primary.get("PRODKIND") == "uncal" and (data.dtype != np.uint16 or data.ndim != 4):
        raise ProductFileError(f"{path.name}: a Level-1 ramp must be a 4-D uint16 array; "
                               f"'data' is {data.ndim}-D {data.dtype}")
    return _Read(product.primary, product.sci_header, _preview_data(path, data.shape, data),
                 product.provenance, product.fits_sha256)


def _read_product(path: Path, verify: bool) -> _Read:
    if path.suffix == ".asdf":
        return _read_asdf(path)
    with _open_checked(path, verify) as hdul:
        primary = hdul[0].header
        if (path.name.endswith("_uncal.fits") or primary.get("PRODKIND") == "uncal"
                or primary.get("DATAMODL") in (UNCAL_DATAMODEL, "Level1")):
            check_uncal(hdul, path)  # a Level-1 ramp cube is uint16 of its header's shape
        if "SCI" not in hdul:
            raise ProductFileError(f"{path.name}: no SCI extension")
        sci = hdul["SCI"]
        prov = (Provenance.from_hdu(hdul[PROVENANCE_EXTNAME], path.name)
                if PROVENANCE_EXTNAME in hdul and "JSON" in hdul[PROVENANCE_EXTNAME].columns.names
                else None)
        return _Read(hdul[0].header.copy(), sci.header.copy(),
                     _preview_data(path, sci.shape, sci.section), prov)


def _meta(path: Path, primary: fits.Header) -> ExposureMeta:
    try:
        return ExposureMeta.from_header(primary)
    except DataModelError as exc:
        raise ProductFileError(f"{path.name}: primary {exc}") from exc


def _kind(path: Path) -> str:
    stem = (path.name.removesuffix(".ecsv").removesuffix(".asdf").removesuffix(".fits")
            .removesuffix(".gz"))
    kind = stem.rsplit("_", 1)[-1] if "_" in stem else ""
    if kind not in KINDS:
        raise UnknownOptionError(f"product kind (file-name suffix) of {path.name}", kind, KINDS)
    return kind


def _header_provenance(primary: fits.Header, run: str) -> Provenance:
    """Provenance of a file with no PROVENANCE table: what its keywords say."""
    refs = tuple(RefFileUse(str(k)[2:], str(primary[k]), "") for k in primary
                 if str(k).startswith("R_"))
    return Provenance(run=run, software=str(primary.get("CAL_VER", __version__)),
                      recipe=str(primary.get("RECIPE", "")), references=refs)


def registration_from_file(path: Path | str) -> Registration:
    """A :class:`Registration` for a file: reference and provenance from its header.

    The file is hashed and its FITS checksums verified.  A file with no
    product reference (made outside a site) gets one in the run
    :data:`MANUAL_RUN` named by its content (the same bytes, the same UUID).

    Raises
    ------
    ProductFileError
        No such file, unreadable, bad checksum, a keyword or SCI missing.
    UnknownOptionError
        The file-name suffix is not a product kind.
    """
    path = Path(path)
    if not path.is_file():
        raise ProductFileError(f"{path}: no such file")
    kind = _kind(path)
    if kind in TABLE_KINDS:  # a table carries its reference and provenance in its metadata
        table_ref, prov = table_reference(path, read_table_product(path))
        if table_ref.kind != kind:
            raise ProductFileError(f"{path.name}: product kind {table_ref.kind!r} does not match "
                                   f"the file-name suffix {kind!r}")
        return Registration(path, table_ref, prov, sha256_file(path), path.stat().st_size)
    read = _read_product(path, verify=True)
    meta = _meta(path, read.primary)
    ref: ProductRef | None = None
    if "PRODUUID" in read.primary:
        ref = ProductRef.from_header(read.primary, meta.data_id, path.name)
        if ref.kind != kind:
            raise ProductFileError(f"{path.name}: PRODKIND {ref.kind!r} does not match the "
                                   f"file-name suffix {kind!r}")
    sha256 = sha256_file(path)
    if ref is None:  # made outside a site: the same bytes always get the same reference
        # (a pure-ASDF product: its FITS twin's bytes, so both are one product)
        ref = ProductRef.derived(kind, meta.data_id, MANUAL_RUN, read.twin_sha256 or sha256)
    prov = read.provenance or _header_provenance(read.primary, ref.run)
    return Registration(path, ref, prov, sha256, path.stat().st_size)


def _ensure_program(session: Session, meta: ExposureMeta, settings: ArchiveSettings) -> Program:
    row = session.get(Program, meta.program)
    if row is None:
        row = Program(program=meta.program, pi_name=meta.pi_name, title=meta.title,
                      exclusive_months=settings.default_exclusive_months, created=utcnow())
        session.add(row)
        session.flush()
    return row


def _band(meta: ExposureMeta, settings: ArchiveSettings) -> dict[str, Any]:
    """em_min, em_max (m), s_resolution (arcsec, the PSF FWHM) and em_res_power
    (pivot / width of the filter) from the profile, or Nones."""
    names = ("em_min", "em_max", "s_resolution", "em_res_power")
    if settings.profile is None:
        return dict.fromkeys(names)
    try:
        instrument = settings.profile.instrument(meta.instrument)
        band = instrument.filter(meta.filter)
    except (KeyError, ValueError):
        return dict.fromkeys(names)
    lo, hi = (band.pivot_um - band.width_um / 2) * 1e-6, (band.pivot_um + band.width_um / 2) * 1e-6
    fwhm = instrument.psf_fwhm_pix_per_um * band.pivot_um * instrument.pixel_scale_arcsec
    return dict(zip(names, (lo, hi, fwhm, band.pivot_um / band.width_um), strict=True))


def _exposure_values(meta: ExposureMeta, foot: Footprint, program: Program,
                     settings: ArchiveSettings) -> dict[str, Any]:
    cx, cy, cz = unit_vector(foot.ra, foot.dec)
    return dict(
        program=meta.program, observation=meta.observation, visit=meta.visit,
        exposure=meta.exposure, detector=meta.detector, facility_name=meta.telescope,
        instrument_name=meta.instrument, filter=meta.filter, readpatt=meta.readpatt,
        subarray=meta.subarray, target_name=meta.target, s_ra=foot.ra, s_dec=foot.dec,
        cx=cx, cy=cy, cz=cz, hpx=int(healpix_index(foot.ra, foot.dec)), s_fov=foot.fov,
        s_region=foot.s_region, t_min=meta.expstart, t_max=meta.expend,
        t_exptime=meta.exposure_duration, **_band(meta, settings),
        release_date=release_date(meta.expend, program.exclusive_months),
    )


_SKY = ("s_ra", "s_dec", "cx", "cy", "cz", "hpx", "s_fov", "s_region")
"""The exposure's columns a footprint sets."""


def _upsert_exposure(session: Session, obs_id: str, foot: Footprint,
                     values: dict[str, Any]) -> Exposure:
    """Insert or update the exposure ``obs_id``; its footprint cells follow its footprint.

    A product without a celestial WCS (a point footprint) never replaces the polygon
    another product of the exposure gave it."""
    row = session.scalar(select(Exposure).where(Exposure.obs_id == obs_id))
    if row is None:
        row = Exposure(obs_id=obs_id, **values)
        session.add(row)
        old_region = None
    else:
        old_region = row.s_region
        keep = not foot.is_polygon and old_region.startswith("POLYGON")
        for key, value in values.items():
            if not (keep and key in _SKY):
                setattr(row, key, value)
    session.flush()
    if row.s_region != old_region:
        session.execute(delete(FootprintCell).where(FootprintCell.exposure_id == row.id))
        session.add_all([FootprintCell(exposure_id=row.id, cell=c) for c in coverage_cells(
            footprint_from_region(row.s_region, row.s_ra, row.s_dec, row.s_fov))])
        session.flush()
    return row


# -- staging: the store and previews, before any transaction -----------------------------------

@dataclass(frozen=True)
class _Staged:
    """A registration ready for the catalog: metadata, footprint, store key and previews.

    ``meta`` and ``footprint`` are None for a table product (its exposure's row
    describes it)."""

    reg: Registration
    meta: ExposureMeta | None
    footprint: Footprint | None
    dataproduct_type: str
    content_type: str
    key: str
    previews: list[tuple[Rendered, str]]
    sampling: dict[str, Any] = field(default_factory=dict)
    """``s_xel1``, ``s_xel2``, ``t_xel``, ``t_resolution`` of an image product."""
    files: list[tuple[OtherFile, str]] = field(default_factory=list)
    """The registration's other files and their store keys."""


def _sampling(sci: fits.Header, meta: ExposureMeta) -> dict[str, Any]:
    """Pixels along the sky axes and time samples of a SCI array (2-D image, 3-D
    integrations, 4-D ramp) and the seconds one time sample spans."""
    ndim = int(sci["NAXIS"])
    dims = [int(sci.get(f"NAXIS{i}", 1)) for i in range(1, ndim + 1)]
    t_xel = int(np.prod(dims[2:])) if ndim > 2 else 1
    if ndim == 4:  # a ramp: one sample per group
        resolution = meta.group_time
    else:  # an integration (of _rateints) or the whole exposure
        resolution = meta.exposure_duration / max(t_xel, 1)
    return {"s_xel1": dims[0], "s_xel2": dims[1] if ndim > 1 else 1, "t_xel": t_xel,
            "t_resolution": resolution}


def _store_file(settings: ArchiveSettings, path: Path, key: str, sha256: str) -> str:
    """Where a file is in the store: in place if it is inside it, else copied to ``key``."""
    found = settings.store.key_of(path)
    if found is not None:
        return found
    stored = settings.store.put_file(path, key)
    if stored != sha256:
        raise ProductFileError(f"{path.name}: the stored copy has sha256 {stored}, "
                               f"the source {sha256} (changed while copying?)")
    return key


def _store_key(settings: ArchiveSettings, reg: Registration) -> str:
    """Where the product is in the store: in place if it is inside it, else copied there."""
    key = reg.ref.relpath()
    if reg.path.suffix == ".asdf":  # a pure-ASDF product on its own: beside its twin's name
        key = str(Path(key).with_suffix(".asdf"))
    return _store_file(settings, reg.path, key, reg.sha256)


def _store_others(settings: ArchiveSettings, reg: Registration) -> list[tuple[OtherFile, str]]:
    """The registration's other files stored (in place or beside the product's key)."""
    out = []
    for other in reg.files:
        key = str(Path(reg.ref.relpath()).with_suffix(other.path.suffix))
        out.append((other, _store_file(settings, other.path, key, other.sha256)))
    return out


def _put_previews(settings: ArchiveSettings, reg: Registration,
                  images: list[Rendered]) -> list[tuple[Rendered, str]]:
    out = []
    for image in images:
        key = (f"previews/{reg.ref.data_id.basename}_{reg.ref.kind}_{reg.sha256[:16]}"
               f"{IMAGE_SUFFIXES[image.kind]}")
        settings.store.put_bytes(image.data, key)
        out.append((image, key))
    return out


def _stage_fits(settings: ArchiveSettings, reg: Registration, read: _Read) -> _Staged:
    meta = _meta(reg.path, read.primary)
    if meta.data_id != reg.ref.data_id:
        raise ProductFileError(f"{reg.path.name}: its header describes {meta.basename}, its "
                               f"reference {reg.ref.data_id.basename}")
    key = _store_key(settings, reg)
    previews = _put_previews(settings, reg, render_previews(read.data))
    ndim = int(read.sci_header["NAXIS"])
    content_type = FORMAT_TYPES["asdf"] if reg.path.suffix == ".asdf" else "application/fits"
    return _Staged(reg, meta, footprint_from_header(read.sci_header, read.primary),
                   "image" if ndim == 2 else "cube", content_type, key, previews,
                   _sampling(read.sci_header, meta), _store_others(settings, reg))


def _stage_png(settings: ArchiveSettings, reg: Registration) -> _Staged:
    """A colour image (``clr``): stored as is, its own preview (module docstring)."""
    data = reg.path.read_bytes()
    previews = image_previews(data, reg.path.name)
    key = _store_key(settings, reg)
    width, height = previews[0].width, previews[0].height
    return _Staged(reg, None, None, "image", "image/png", key,
                   _put_previews(settings, reg, previews),
                   {"s_xel1": width, "s_xel2": height, "t_xel": 1})


def _stage(settings: ArchiveSettings, reg: Registration, verify: bool) -> _Staged:
    """Read, store and preview one product before the catalog transaction."""
    for other in reg.files:  # refused before anything is stored
        if other.format not in FORMAT_TYPES:
            raise UnknownOptionError(f"product file format of {other.path.name}", other.format,
                                     FORMAT_TYPES)
    if reg.ref.kind == "clr":
        return _stage_png(settings, reg)
    if reg.ref.kind not in TABLE_KINDS:
        return _stage_fits(settings, reg, _read_product(reg.path, verify))
    table = read_table_product(reg.path, reg.ref.uuid)
    dataproduct_type, content_type = TABLE_KINDS[reg.ref.kind]
    key = _store_key(settings, reg)
    previews = _put_previews(settings, reg, table_previews(reg.path, table))
    return _Staged(reg, None, None, dataproduct_type, content_type, key, previews)


# -- the catalog transaction -------------------------------------------------------------------

def _input_pks(session: Session, reg: Registration) -> list[int]:
    wanted = [r.uuid for r in reg.provenance.inputs]
    if not wanted:
        return []
    found = dict(session.execute(select(Product.uuid, Product.id)
                                 .where(Product.uuid.in_(wanted))).all())
    missing = [u for u in wanted if u not in found]
    if missing:
        raise ArchiveError(f"{reg.path.name}: input product(s) {', '.join(missing)} are not "
                           "registered (register the inputs first)")
    return [found[u] for u in wanted]


def _add_version(session: Session, exposure: Exposure, staged: _Staged,
                 when: datetime) -> Product:
    reg = staged.reg
    kind, prov = reg.ref.kind, reg.provenance
    versions = session.scalars(select(Product.version).where(
        Product.exposure_id == exposure.id, Product.kind == kind)).all()
    version = max(versions, default=0) + 1
    session.execute(update(Product).where(Product.exposure_id == exposure.id,
                                          Product.kind == kind).values(is_latest=False))
    level, calib = KINDS[kind]
    row = Product(
        product_id=f"{exposure.obs_id}_{kind}_v{version}", uuid=reg.ref.uuid, run=reg.ref.run,
        exposure_id=exposure.id, kind=kind, level=level, calib_level=calib, version=version,
        is_latest=True, dataproduct_type=staged.dataproduct_type,
        content_type=staged.content_type,
        filename=reg.path.name, path=staged.key, size=reg.size, sha256=reg.sha256,
        created=when, software_version=prov.software[:32], recipe=prov.recipe[:128],
        reference_files=json.dumps([f"{r.reftype}={r.name}" for r in prov.references]),
        ref_context=prov.context, provenance=prov.to_json(), **staged.sampling,
    )
    session.add(row)
    session.flush()
    session.add_all([ProductInput(product_pk=row.id, input_pk=pk)
                     for pk in dict.fromkeys(_input_pks(session, reg))])
    session.add_all([Preview(product_pk=row.id, kind=image.kind, path=key, width=image.width,
                             height=image.height) for image, key in staged.previews])
    session.add_all([ProductFile(product_pk=row.id, format=other.format,
                                 filename=other.path.name, path=key, size=other.size,
                                 sha256=other.sha256, content_type=FORMAT_TYPES[other.format])
                     for other, key in staged.files])
    return row


def _known_exposure(session: Session, reg: Registration) -> Exposure:
    basename = reg.ref.data_id.basename
    row = session.scalar(select(Exposure).where(Exposure.obs_id == basename))
    if row is None:
        raise ArchiveError(f"{reg.path.name}: exposure {basename} is not in the archive "
                           "(register the product it was made from first)")
    return row


_COPIED = ("program", "facility_name", "instrument_name", "readpatt", "subarray", "target_name",
           *_SKY, "t_exptime", "em_res_power")
"""The columns a colour image's exposure row takes from its red mosaic's."""


def _colour_exposure(session: Session, reg: Registration) -> Exposure:
    """The exposure row of a colour image, made (or updated) from its input mosaics' rows
    (module docstring)."""
    uuids = [r.uuid for r in reg.provenance.inputs]
    found = {p.uuid: e for p, e in session.execute(select(Product, Exposure).join(
        Exposure, Product.exposure_id == Exposure.id).where(Product.uuid.in_(uuids))).all()}
    if len(uuids) != 3 or len(found) != 3:
        raise ArchiveError(f"{reg.path.name}: a colour image needs its three mosaics "
                           f"registered first (found {len(found)} of {len(uuids)})")
    rows = [found[u] for u in uuids]
    red, data_id = rows[0], reg.ref.data_id
    values = {name: getattr(red, name) for name in _COPIED}
    values.update(
        observation=data_id.observation, visit=data_id.visit, exposure=data_id.exposure,
        detector=data_id.detector, filter="/".join(e.filter for e in rows)[:32],
        t_min=min(e.t_min for e in rows), t_max=max(e.t_max for e in rows),
        em_min=min((e.em_min for e in rows if e.em_min is not None), default=None),
        em_max=max((e.em_max for e in rows if e.em_max is not None), default=None),
        s_resolution=max((e.s_resolution for e in rows if e.s_resolution is not None),
                         default=None),
        release_date=max(e.release_date for e in rows))
    foot = footprint_from_region(red.s_region, red.s_ra, red.s_dec, red.s_fov)
    return _upsert_exposure(session, data_id.basename, foot, values)


def _commit_one(session: Session, settings: ArchiveSettings, staged: _Staged,
                now: datetime | None) -> ProductRecord:
    meta = staged.meta
    run = staged.reg.ref.run
    if session.get(Run, run) is None:  # (campaigns and sites create theirs beforehand)
        ensure_run(session, run, run if run in ("manual", "ingest", "legacy") else "prompt")
    if staged.reg.ref.kind == "clr":
        exposure = _colour_exposure(session, staged.reg)
    elif meta is None or staged.footprint is None:  # a table: its exposure is there already
        exposure = _known_exposure(session, staged.reg)
    else:
        program = _ensure_program(session, meta, settings)
        exposure = _upsert_exposure(session, meta.basename, staged.footprint,
                                    _exposure_values(meta, staged.footprint, program, settings))
    same = session.scalar(select(Product).where(Product.uuid == staged.reg.ref.uuid))
    if same is not None:
        return _record(same, exposure, created=False)
    return _record(_add_version(session, exposure, staged, now or utcnow()), exposure,
                   created=True)


def _registered(session: Session, uuid: str) -> ProductRecord | None:
    found = session.execute(select(Product, Exposure).join(
        Exposure, Product.exposure_id == Exposure.id).where(Product.uuid == uuid)).first()
    return None if found is None else _record(found[0], found[1], created=False)


_CONFLICT_RETRIES = 5


def _commit_all(archive: Archive, settings: ArchiveSettings, staged: list[_Staged],
                now: datetime | None) -> list[ProductRecord]:
    """One transaction for every staged product, retried on a concurrent-insert conflict."""
    attempt = 0
    while True:
        try:
            with archive.session() as session, session.begin():
                return [_commit_one(session, settings, item, now) for item in staged]
        except (IntegrityError, OperationalError) as exc:
            # another process registered the same exposure or version at the same
            # moment (or held SQLite's write lock): its rows are committed now, so
            # the next attempt sees them
            transient = isinstance(exc, IntegrityError) or "locked" in str(exc)
            attempt += 1
            if not transient or attempt == _CONFLICT_RETRIES:
                raise


def register_outputs(target: Archive | SiteConfig, registrations: Sequence[Registration], *,
                     settings: ArchiveSettings | None = None, verify: bool = False,
                     now: datetime | None = None) -> list[ProductRecord]:
    """Register products in one catalog transaction (idempotent per UUID).

    Reading the files, rendering previews and copying into the store (only
    files outside a local store are copied) happen before the transaction,
    so registrations in parallel processes overlap almost entirely, even on
    SQLite's single writer.  Every product becomes its exposure's current version of its
    kind in that one transaction.

    Parameters
    ----------
    target : Archive or SiteConfig
        Where to register.
    registrations : sequence of Registration
        The products; their inputs must be registered, earlier or earlier in this
        sequence (the same transaction: a mosaic, then its segmentation map and
        catalog).
    verify : bool
        Also verify the FITS checksums (the writer's sha256 is trusted either way).
    now : datetime, optional
        Registration time (naive UTC); default now.

    Raises
    ------
    ProductFileError
        Unreadable file, missing keyword or SCI, header and reference disagree.
    ArchiveError
        An input product is not registered.
    """
    with opened(target) as archive:
        cfg = settings or archive.settings
        todo: list[Registration] = []
        done: dict[str, ProductRecord] = {}
        with archive.session() as session:
            for reg in registrations:
                found = _registered(session, reg.ref.uuid)
                if found is not None:
                    done[reg.ref.uuid] = found
                else:
                    # a table joins its exposure's row: refused before anything is stored
                    # unless an image earlier in this sequence makes that row
                    rows = {r.ref.data_id.basename for r in todo if r.ref.kind not in TABLE_KINDS}
                    if reg.ref.kind in TABLE_KINDS and reg.ref.data_id.basename not in rows:
                        _known_exposure(session, reg)
                    todo.append(reg)
        staged = [_stage(cfg, reg, verify) for reg in todo]
        for record in _commit_all(archive, cfg, staged, now) if staged else []:
            done[record.uuid] = record
        return [done[reg.ref.uuid] for reg in registrations]


def register_product(target: Archive | SiteConfig | Session, path: Path | str, *,
                     settings: ArchiveSettings | None = None,
                     now: datetime | None = None) -> ProductRecord:
    """Register one product file by path (see :func:`registration_from_file`).

    Idempotent: the same file (same UUID) registered twice gives the same
    record.  With a ``Session`` pass ``settings`` too; the caller then
    commits (rows are only flushed).  A pure-ASDF product (``.asdf``) whose
    FITS twin is registered becomes that product's ASDF file
    (``product_files``, :func:`_attach_asdf`); else it is registered as a
    product of its own, served as ``application/asdf``, and its FITS twin
    registered later becomes that product's file, the ASDF file its second
    (:func:`_fits_after_asdf`).

    Raises
    ------
    ProductFileError
        Unreadable file, missing keyword or SCI, bad FITS checksum.
    UnknownOptionError
        The file-name suffix is not a known product kind.
    """
    reg = registration_from_file(path)
    if reg.path.suffix == ".asdf":
        attached = _attach_asdf(target, reg, settings)
        if attached is not None:
            return attached
    elif reg.path.suffix == ".fits" and reg.ref.kind in FITS_KINDS:
        swapped = _fits_after_asdf(target, reg, settings)
        if swapped is not None:
            return swapped
    if not isinstance(target, Session):
        return register_outputs(target, [reg], settings=settings, now=now)[0]
    with unit_of_work(target, settings) as (session, cfg):
        found = _registered(session, reg.ref.uuid)
        if found is not None:
            return found
        if reg.ref.kind in TABLE_KINDS:
            _known_exposure(session, reg)
        return _commit_one(session, cfg, _stage(cfg, reg, verify=False), now)


def _attach_asdf(target: Archive | SiteConfig | Session, reg: Registration,
                 settings: ArchiveSettings | None) -> ProductRecord | None:
    """Attach the pure-ASDF product ``reg`` to its registered FITS twin (same UUID) as its
    ``asdf`` file (stored beside it); None when no product has that UUID.  Attaching the
    same bytes again changes nothing (``created`` False)."""
    with unit_of_work(target, settings) as (session, cfg):
        found = session.execute(select(Product, Exposure).join(
            Exposure, Product.exposure_id == Exposure.id).where(
                Product.uuid == reg.ref.uuid)).first()
        if found is None:
            return None
        row, exposure = found
        if row.content_type == FORMAT_TYPES["asdf"]:  # registered as its own product before
            return _record(row, exposure, created=False)
        other = session.get(ProductFile, (row.id, "asdf"))
        if other is not None:
            if other.sha256 != reg.sha256:
                raise ArchiveError(f"{reg.path.name}: product {row.product_id} has an ASDF "
                                   f"file already ({other.filename}, sha256 {other.sha256[:12]}"
                                   f"...); this one has sha256 {reg.sha256[:12]}...")
            return _record(row, exposure, created=False)
        key = _store_file(cfg, reg.path, str(Path(row.path).with_suffix(".asdf")), reg.sha256)
        session.add(ProductFile(product_pk=row.id, format="asdf", filename=reg.path.name,
                                path=key, size=reg.size, sha256=reg.sha256,
                                content_type=FORMAT_TYPES["asdf"]))
        return replace(_record(row, exposure, created=True), attached=True)


def _fits_after_asdf(target: Archive | SiteConfig | Session, reg: Registration,
                     settings: ArchiveSettings | None) -> ProductRecord | None:
    """The FITS product ``reg`` whose pure-ASDF twin was registered first, as a product of
    its own: the FITS file becomes the product's file and the ASDF file its ``asdf`` file
    (the state registering them the other way round gives); None when no product with
    that UUID is served as ASDF."""
    with unit_of_work(target, settings) as (session, cfg):
        found = session.execute(select(Product, Exposure).join(
            Exposure, Product.exposure_id == Exposure.id).where(
                Product.uuid == reg.ref.uuid)).first()
        if found is None or found[0].content_type != FORMAT_TYPES["asdf"]:
            return None
        row, exposure = found
        key = _store_file(cfg, reg.path, str(Path(row.path).with_suffix(".fits")), reg.sha256)
        session.add(ProductFile(product_pk=row.id, format="asdf", filename=row.filename,
                                path=row.path, size=row.size, sha256=row.sha256,
                                content_type=FORMAT_TYPES["asdf"]))
        row.filename, row.path, row.size, row.sha256 = reg.path.name, key, reg.size, reg.sha256
        row.content_type = "application/fits"
        return replace(_record(row, exposure, created=True), attached=True)
