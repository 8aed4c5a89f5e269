"""Registering programs and products: the one way data enters the archive.

:func:`register_product` is idempotent: the same bytes registered twice give
the same :class:`ProductRecord`; different bytes for the same exposure and
kind give a new version (the old one stays, no longer ``is_latest``).  The
file is read and checked (sha256, the FITS ``CHECKSUM`` keywords when
present), its previews rendered, and it is copied into the store under a key
named by its content, its stored copy checked against the source's sha256 —
all before the catalog transaction, which only writes the rows (and is
committed by the caller when it passed its own ``Session``).
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from obsflow import __version__
from obsflow.archive.composites import refresh_composite
from obsflow.archive.context import Archive, ArchiveSettings, opened, unit_of_work
from obsflow.archive.errors import ArchiveError, ProductFileError
from obsflow.archive.policy import release_date, utcnow
from obsflow.archive.previews import IMAGE_SUFFIXES, Rendered, render_previews
from obsflow.archive.schema import Composite, Exposure, Preview, Product, Program
from obsflow.archive.sky import Footprint, footprint_from_header, healpix_index, unit_vector
from obsflow.config import SiteConfig
from obsflow.exceptions import UnknownOptionError
from obsflow.fileio import sha256_file
from obsflow.models.metadata import ExposureMeta

__all__ = ["KINDS", "ProductRecord", "Provenance", "register_product", "register_program"]

KINDS: dict[str, tuple[str, int]] = {
    "uncal": ("1", 1), "rate": ("2a", 2), "rateints": ("2a", 2), "cal": ("2b", 2),
    "i2d": ("3", 3), "crf": ("3", 3),
}
"""Product kind (file-name suffix) -> (data level, ObsCore calib_level)."""

_PROGRAM = re.compile(r"^[A-Za-z0-9]{1,16}$")


@dataclass(frozen=True)
class Provenance:
    """How a product was made: software version, recipe and reference files."""

    software_version: str = ""
    recipe: str = ""
    reference_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProductRecord:
    """What :func:`register_product` returns (a plain snapshot of the catalog row)."""

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
    """True if this call added the version; False if the same bytes were already there."""


def _record(row: Product, exposure: Exposure, created: bool) -> ProductRecord:
    return ProductRecord(row.product_id, exposure.obs_id, exposure.program, row.kind, row.level,
                         row.version, row.path, row.size, row.sha256, created)


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
        for composite in session.scalars(select(Composite).where(Composite.program == program)):
            ids = composite.product_ids.split(",")
            composite.release_date = max(session.scalars(
                select(Exposure.release_date).join(Product, Product.exposure_id == Exposure.id)
                .where(Product.product_id.in_(ids))).all())
        for name in members:
            add_member(session, program, name)


def _read_product(path: Path) -> tuple[fits.Header, fits.Header, np.ndarray]:
    """Primary header, SCI header and the SCI array to preview (2-D, or two groups of 4-D)."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, memmap=False, checksum=True) as hdul:
                primary = hdul[0].header.copy()
                if "SCI" not in hdul:
                    raise ProductFileError(f"{path.name}: no SCI extension")
                sci = hdul["SCI"]
                header, shape = sci.header.copy(), sci.shape
                if len(shape) == 2:
                    data = np.asarray(sci.section[:, :])
                elif len(shape) == 3:  # per-integration images (_rateints): the first
                    data = np.asarray(sci.section[0])
                elif len(shape) == 4:
                    data = np.stack([sci.section[0, 0], sci.section[0, shape[1] - 1]])[None]
                else:
                    raise ProductFileError(f"{path.name}: SCI has shape {shape}; "
                                           "expected a 2-D image, a 3-D stack of "
                                           "integrations or a 4-D ramp cube")
    except OSError as exc:
        raise ProductFileError(f"{path}: not a readable FITS file ({exc})") from exc
    bad = [str(w.message) for w in caught if "checksum" in str(w.message).lower()]
    if bad:
        raise ProductFileError(f"{path.name}: FITS checksum verification failed: {bad[0]}")
    return primary, header, data


def _meta(path: Path, primary: fits.Header) -> ExposureMeta:
    try:
        return ExposureMeta.from_header(primary)
    except KeyError as exc:
        raise ProductFileError(f"{path.name}: primary header lacks keyword {exc}") from exc


def _kind(path: Path) -> str:
    stem = path.name.removesuffix(".fits").removesuffix(".gz")
    kind = stem.rsplit("_", 1)[-1] if "_" in stem else ""
    if kind not in KINDS:
        raise UnknownOptionError(f"product kind (file-name suffix) of {path.name}", kind, KINDS)
    return kind


def _provenance(primary: fits.Header) -> Provenance:
    refs = tuple(f"{key}={primary[key]}" for key in primary if str(key).startswith("R_"))
    return Provenance(str(primary.get("CAL_VER", __version__)), str(primary.get("RECIPE", "")),
                      refs)


def _ensure_program(session: Session, meta: ExposureMeta, settings: ArchiveSettings) -> Program:
    row = session.get(Program, meta.program)
    if row is None:
        row = Program(program=meta.program, pi_name=meta.pi_name, title=meta.title,
                      exclusive_months=settings.default_exclusive_months, created=utcnow())
        session.add(row)
        session.flush()
    return row


def _band(meta: ExposureMeta, settings: ArchiveSettings) -> tuple[Any, Any, Any]:
    """(em_min m, em_max m, s_resolution arcsec) from the profile, or Nones."""
    if settings.profile is None:
        return None, None, None
    try:
        instrument = settings.profile.instrument(meta.instrument)
        band = instrument.filter(meta.filter)
    except (KeyError, ValueError):
        return None, None, None
    lo, hi = (band.pivot_um - band.width_um / 2) * 1e-6, (band.pivot_um + band.width_um / 2) * 1e-6
    fwhm = instrument.psf_fwhm_pix_per_um * band.pivot_um * instrument.pixel_scale_arcsec
    return lo, hi, fwhm


def _exposure_values(meta: ExposureMeta, foot: Footprint, program: Program,
                     settings: ArchiveSettings) -> dict[str, Any]:
    cx, cy, cz = unit_vector(foot.ra, foot.dec)
    em_min, em_max, resolution = _band(meta, settings)
    return dict(
        program=meta.program, observation=meta.observation, visit=meta.visit,
        exposure=meta.exposure, detector=meta.detector, facility_name=meta.telescope,
        instrument_name=meta.instrument, filter=meta.filter, readpatt=meta.readpatt,
        subarray=meta.subarray, target_name=meta.target, s_ra=foot.ra, s_dec=foot.dec,
        cx=cx, cy=cy, cz=cz, hpx=int(healpix_index(foot.ra, foot.dec)), s_fov=foot.fov,
        s_region=foot.s_region, s_resolution=resolution, t_min=meta.expstart,
        t_max=meta.expend, t_exptime=meta.exposure_duration, em_min=em_min, em_max=em_max,
        release_date=release_date(meta.expend, program.exclusive_months),
    )


def _upsert_exposure(session: Session, meta: ExposureMeta, values: dict[str, Any]) -> Exposure:
    row = session.scalar(select(Exposure).where(Exposure.obs_id == meta.basename))
    if row is None:
        row = Exposure(obs_id=meta.basename, **values)
        session.add(row)
    else:
        for key, value in values.items():
            setattr(row, key, value)
    session.flush()
    return row


def _preview_rows(row: Product, staged: _Staged) -> list[Preview]:
    return [Preview(product_pk=row.id, kind=image.kind, path=key, width=image.width,
                    height=image.height) for image, key in staged.previews]


@dataclass(frozen=True)
class _Incoming:
    path: Path
    kind: str
    sha256: str
    provenance: Provenance
    ndim: int


@dataclass(frozen=True)
class _Staged:
    """Where the product and its previews were put in the store, before any row exists."""

    key: str
    previews: list[tuple[Rendered, str]]


def _stage(settings: ArchiveSettings, meta: ExposureMeta, incoming: _Incoming,
           previews: list[Rendered]) -> _Staged:
    """Copy the product and write its previews under keys named by its content.

    The keys depend on the bytes only (``<program>/<observation>/<sha256[:16]>/<file>``),
    not on the version the catalog will give them, so this happens before the
    catalog transaction: the database is never held while files are copied.
    Staging the same bytes again rewrites the same keys.
    """
    digest = incoming.sha256[:16]
    key = f"{meta.program}/{meta.observation:03d}/{digest}/{incoming.path.name}"
    stored = settings.store.put_file(incoming.path, key)
    if stored != incoming.sha256:
        raise ProductFileError(f"{incoming.path.name}: the stored copy has sha256 {stored}, "
                               f"the source {incoming.sha256} (changed while copying?)")
    keys = []
    for image in previews:
        preview_key = f"previews/{meta.basename}_{incoming.kind}_{digest}{IMAGE_SUFFIXES[image.kind]}"
        settings.store.put_bytes(image.data, preview_key)
        keys.append((image, preview_key))
    return _Staged(key, keys)


def _same_bytes(session: Session, meta: ExposureMeta, incoming: _Incoming) -> ProductRecord | None:
    """The record of these very bytes when they are registered already."""
    found = session.execute(select(Product, Exposure).join(
        Exposure, Product.exposure_id == Exposure.id).where(
        Exposure.obs_id == meta.basename, Product.kind == incoming.kind,
        Product.sha256 == incoming.sha256)).first()
    return None if found is None else _record(found[0], found[1], created=False)


def _add_version(session: Session, exposure: Exposure, incoming: _Incoming, staged: _Staged,
                 when: datetime) -> Product:
    versions = session.scalars(select(Product.version).where(
        Product.exposure_id == exposure.id, Product.kind == incoming.kind)).all()
    version = max(versions, default=0) + 1
    session.execute(update(Product).where(Product.exposure_id == exposure.id,
                                          Product.kind == incoming.kind).values(is_latest=False))
    level, calib = KINDS[incoming.kind]
    prov = incoming.provenance
    row = Product(
        product_id=f"{exposure.obs_id}_{incoming.kind}_v{version}", exposure_id=exposure.id,
        kind=incoming.kind, level=level, calib_level=calib, version=version, is_latest=True,
        dataproduct_type="image" if incoming.ndim == 2 else "cube", filename=incoming.path.name,
        path=staged.key, size=incoming.path.stat().st_size, sha256=incoming.sha256,
        created=when, software_version=prov.software_version[:32], recipe=prov.recipe[:128],
        reference_files=json.dumps(list(prov.reference_files)),
    )
    session.add(row)
    session.flush()
    session.add_all(_preview_rows(row, staged))
    return row


def register_product(target: Archive | SiteConfig | Session, path: Path | str, *,
                     provenance: Provenance | None = None,
                     settings: ArchiveSettings | None = None,
                     now: datetime | None = None) -> ProductRecord:
    """Register a product file (idempotent; new bytes make a new version).

    The slow part (reading and checking the file, rendering previews, copying
    into the store) runs before the catalog transaction, which then only
    writes rows; the colour composite of the target is refreshed after it
    commits (see :func:`obsflow.archive.composites.refresh_composite`).  So
    registrations in parallel processes overlap almost entirely, even on
    SQLite's single writer.

    Parameters
    ----------
    target : Archive, SiteConfig or Session
        Where to register.  With a ``Session`` pass ``settings`` too; the
        caller then commits (rows are only flushed).
    path : path-like
        A FITS product named ``<stem>_<kind>.fits`` (``kind`` in :data:`KINDS`)
        with the :class:`~obsflow.models.ExposureMeta` primary keywords and a
        ``SCI`` extension (2-D image, 3-D per-integration stack or 4-D ramp cube).
    provenance : Provenance, optional
        Default: ``CAL_VER``, ``RECIPE`` and ``R_*`` keywords of the header.
    now : datetime, optional
        Registration time (naive UTC); default now.

    Raises
    ------
    ProductFileError
        Unreadable file, missing keyword or SCI, bad FITS checksum.
    UnknownOptionError
        The file-name suffix is not a known product kind.
    """
    path = Path(path)
    if not path.is_file():
        raise ProductFileError(f"{path}: no such file")
    kind = _kind(path)
    primary, sci_header, data = _read_product(path)
    meta = _meta(path, primary)
    incoming = _Incoming(path, kind, sha256_file(path), provenance or _provenance(primary),
                         int(sci_header["NAXIS"]))
    footprint = footprint_from_header(sci_header, primary)
    if isinstance(target, Session):
        with unit_of_work(target, settings) as (session, cfg):
            found = _same_bytes(session, meta, incoming)
            if found is not None:
                return found
            staged = _stage(cfg, meta, incoming, render_previews(data))
            record = _commit(session, cfg, meta, incoming, footprint, staged, now)
            refresh_composite(session, cfg, meta.program, meta.target)
            return record
    with opened(target) as archive:
        cfg = settings or archive.settings
        with archive.session() as session:
            found = _same_bytes(session, meta, incoming)
        if found is not None:  # (its composite too: a crash may have come in between)
            refresh_composite(archive, cfg, meta.program, meta.target)
            return found
        staged = _stage(cfg, meta, incoming, render_previews(data))
        for attempt in range(_CONFLICT_RETRIES):
            try:
                with archive.session() as session, session.begin():
                    record = _commit(session, cfg, meta, incoming, footprint, staged, now)
                break
            except (IntegrityError, OperationalError) as exc:
                # another process registered the same exposure or version at the same
                # moment (or held SQLite's write lock): its rows are committed now, so
                # the next attempt sees them
                transient = isinstance(exc, IntegrityError) or "locked" in str(exc)
                if not transient or attempt == _CONFLICT_RETRIES - 1:
                    raise
        refresh_composite(archive, cfg, meta.program, meta.target)
        return record


_CONFLICT_RETRIES = 5


def _commit(session: Session, settings: ArchiveSettings, meta: ExposureMeta,
            incoming: _Incoming, footprint: Footprint, staged: _Staged,
            now: datetime | None) -> ProductRecord:
    """The catalog rows of a staged product (a new version, or the record of the same bytes)."""
    program = _ensure_program(session, meta, settings)
    exposure = _upsert_exposure(session, meta,
                                _exposure_values(meta, footprint, program, settings))
    same = session.scalar(select(Product).where(
        Product.exposure_id == exposure.id, Product.kind == incoming.kind,
        Product.sha256 == incoming.sha256))
    if same is not None:
        return _record(same, exposure, created=False)
    row = _add_version(session, exposure, incoming, staged, now or utcnow())
    return _record(row, exposure, created=True)
