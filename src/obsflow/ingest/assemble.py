"""Rebuilding an exposure's ramp cube from its packet ranges and writing Level 1.

The cube is preallocated once; each :class:`~obsflow.ingest.tables.PacketRange`
maps to one contiguous slice of it (packets are numbered in cube order), so
assembly is a strided copy per range straight from the raw files, with no
second decode.  Missing packets (a partial exposure) get
``DROPOUT | DO_NOT_USE`` in GROUPDQ.

Each assembled version is a new product of the run :data:`INGEST_RUN`, with
its own :class:`~obsflow.models.ProductRef` (a name-based UUID of the
exposure and version, so a crashed assembly redone writes the same file) and
its provenance (the level-0 files with their sha256), written at
``products/<ref.relpath()>``: a new version never replaces an older file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from obsflow import __version__
from obsflow.config import SiteConfig
from obsflow.events import publish
from obsflow.exceptions import ExposureNotFoundError
from obsflow.fileio import sweep_temp_files
from obsflow.ingest.accounting import coverage
from obsflow.ingest.locking import transaction, utcnow, writer
from obsflow.ingest.tables import (
    EngineeringSample,
    EphemerisPoint,
    ExposureLedger,
    ObservationLog,
    PacketRange,
    RawFile,
)
from obsflow.models.dq import DQ
from obsflow.models.identity import ProductRef
from obsflow.models.level1 import Level1, write_uncal_hashed
from obsflow.models.metadata import ExposureMeta
from obsflow.models.pointing import detector_wcs
from obsflow.models.provenance import FileUse, Provenance
from obsflow.profiles import Profile
from obsflow.telemetry import CRC_SIZE, HEADER_SIZE, decode_science

__all__ = ["INGEST_RUN", "Assembled", "assemble_exposure", "current_level1_version",
           "due_exposures", "scatter_ranges"]

INGEST_RUN = "ingest"
"""The run every assembled Level-1 product belongs to."""


def scatter_ranges(out: np.ndarray, buffer: np.ndarray, ranges: np.ndarray,
                   pixels_per_packet: int) -> None:
    """Copy packet payloads into a flat uint16 cube, in place (``out`` is the output).

    Parameters
    ----------
    out : (nints * ngroups * ny * nx,) uint16
        The flat cube; packet ``k`` fills ``out[k * P:(k + 1) * P]``.
    buffer : (nbytes,) uint8
        A raw file's bytes.
    ranges : (R, 4) int
        ``first``, ``last``, byte ``offset`` of packet ``first``, packet ``size``.
    pixels_per_packet : int
        P, pixels in each science payload (``rows_per_packet * nx``).

    Raises
    ------
    ValueError
        A packet's payload is not P pixels long.
    """
    for first, last, offset, size in np.asarray(ranges, np.int64):
        n = int(last - first + 1)
        payloads = buffer[offset:offset + n * size].reshape(n, size)[:, HEADER_SIZE:size - CRC_SIZE]
        out[first * pixels_per_packet:(last + 1) * pixels_per_packet] = (
            decode_science(payloads, pixels_per_packet).reshape(-1))


@dataclass(frozen=True)
class Assembled:
    """A Level-1 product version just written: ledger id, reference, file, hash, version."""

    exposure_id: int
    ref: ProductRef
    path: Path
    sha256: str
    size: int
    version: int
    partial: bool
    provenance: Provenance


def due_exposures(engine: Engine, deadline_hours: float) -> list[tuple[int, bool]]:
    """(exposure_id, partial) of exposures whose product is missing or out of date."""
    limit = utcnow() - timedelta(hours=deadline_hours)
    with transaction(engine) as session:
        rows = session.execute(select(ExposureLedger).where(
            ExposureLedger.expected > 0,
            ExposureLedger.received > ExposureLedger.product_received)).scalars().all()
    due = []
    for row in rows:
        assert row.expected is not None
        if row.received >= row.expected:
            due.append((row.exposure_id, False))
        elif row.first_seen <= limit:
            due.append((row.exposure_id, True))
    return due


def current_level1_version(engine: Engine, exposure_id: int) -> int:
    """The newest Level-1 version assembled for a ledger exposure (0: none yet)."""
    with transaction(engine) as session:
        row = session.get(ExposureLedger, exposure_id)
        return 0 if row is None else int(row.product_version)


def _interp_at(engine: Engine, mjd: float) -> dict[str, Any]:
    """Engineering channels and ephemeris interpolated at ``mjd`` (header keywords)."""
    window = 1.0 / 24
    extra: dict[str, Any] = {}
    with transaction(engine) as session:
        eng = session.execute(select(EngineeringSample).where(
            EngineeringSample.mjd_utc.between(mjd - window, mjd + window))).scalars().all()
        eph = session.execute(select(EphemerisPoint).where(
            EphemerisPoint.mjd_utc.between(mjd - 1, mjd + 1))).scalars().all()
    for channel in sorted({e.channel for e in eng}):
        samples = sorted((e.mjd_utc, e.value) for e in eng if e.channel == channel)
        t, v = np.array(samples).T
        extra[channel] = (round(float(np.interp(mjd, t, v)), 6), "engineering value at EXPMID")
    if len(eph) >= 2:
        pts = sorted((p.mjd_utc, p.x_km, p.y_km, p.z_km, p.vx_km_s, p.vy_km_s, p.vz_km_s)
                      for p in eph)
        arr = np.array(pts)
        for k, key in enumerate(("OBS_X", "OBS_Y", "OBS_Z", "OBS_VX", "OBS_VY", "OBS_VZ"), 1):
            unit = "km" if k <= 3 else "km/s"
            extra[key] = (float(np.interp(mjd, arr[:, 0], arr[:, k])), f"[{unit}] observatory at EXPMID")
    return extra


def _load_inputs(session: Session, exposure_id: int) -> tuple[ExposureLedger, ObservationLog,
                                                               list[tuple[Any, ...]]]:
    ledger = session.get(ExposureLedger, exposure_id)
    log = session.get(ObservationLog, exposure_id)
    if ledger is None or log is None:
        raise ExposureNotFoundError(f"exposure {exposure_id} has no ledger row or observation-log record")
    ranges = session.execute(
        select(PacketRange.first, PacketRange.last, PacketRange.offset, PacketRange.packet_size,
               RawFile.raw_path, RawFile.name, RawFile.sha256)
        .join(RawFile, RawFile.id == PacketRange.raw_file_id)
        .where(PacketRange.exposure_id == exposure_id)
        .order_by(RawFile.id, PacketRange.first)).all()
    return ledger, log, [tuple(r) for r in ranges]


_CHUNK_BYTES = 8 << 20


def _scatter_file(flat: np.ndarray, path: Path, ranges: np.ndarray, ppp: int) -> None:
    """Scatter ``ranges`` of one raw file into ``flat``, reading at most ~8 MB at a time."""
    fd = os.open(path, os.O_RDONLY)
    try:
        for first, last, offset, size in ranges:
            step = max(1, _CHUNK_BYTES // int(size))
            for a in range(int(first), int(last) + 1, step):
                b = min(int(last), a + step - 1)
                start = int(offset) + (a - int(first)) * int(size)
                chunk = np.frombuffer(os.pread(fd, (b - a + 1) * int(size), start), np.uint8)
                scatter_ranges(flat, chunk, np.array([[a, b, 0, size]]), ppp)
    finally:
        os.close(fd)


def _cube(cfg: SiteConfig, meta: ExposureMeta, log: ObservationLog,
          ranges: list[tuple[Any, ...]]) -> tuple[np.ndarray, np.ndarray | None, list[FileUse]]:
    shape = (meta.nints, meta.ngroups, meta.subsize2, meta.subsize1)
    flat = np.zeros(int(np.prod(shape)), np.uint16)
    ppp = log.rows_per_packet * meta.subsize1
    files: list[FileUse] = []
    for raw_path in dict.fromkeys(r[4] for r in ranges):
        mine = np.array([r[:4] for r in ranges if r[4] == raw_path], np.int64)
        _scatter_file(flat, cfg.raw_dir / raw_path, mine, ppp)
        files.append(next(FileUse(r[5], r[6]) for r in ranges if r[4] == raw_path))
    have = coverage(np.array([r[:2] for r in ranges], np.int64).reshape(-1, 2),
                    log.packets_expected)
    groupdq = None
    if not have.all():
        missing = np.repeat(~have, ppp)
        groupdq = np.where(missing, np.uint8(DQ.DROPOUT | DQ.DO_NOT_USE), np.uint8(0))
        groupdq = groupdq.astype(np.uint8).reshape(shape)
    return flat.reshape(shape), groupdq, files


def assemble_exposure(engine: Engine, cfg: SiteConfig, profile: Profile,
                      exposure_id: int, partial: bool) -> Assembled | None:
    """Rebuild, write and record one exposure's Level-1 product (idempotent).

    Runs under the ledger write lock, so two ingesters never assemble the same
    data twice; returns None when the product is already up to date.
    """
    with writer(engine) as session:
        ledger, log, ranges = _load_inputs(session, exposure_id)
        if ledger.received <= ledger.product_received:
            return None
        meta = ExposureMeta.from_dict(dict(log.meta))
        cube, groupdq, files = _cube(cfg, meta, log, ranges)
        inst = profile.instrument(meta.instrument)
        det = inst.detector(meta.detector)
        wcs = detector_wcs(meta.ra_v1, meta.dec_v1, meta.pa_v3,
                           (det.v2_arcsec, det.v3_arcsec, det.rotation_deg), inst.pixel_scale_arcsec,
                           (det.nx, det.ny, meta.substrt1, meta.substrt2, meta.subsize1,
                            meta.subsize2), det.distortion)
        version = ledger.product_version + 1
        extra = _interp_at(engine, meta.expmid)
        extra |= {"PRODVER": (version, "Level-1 product version"),
                  "PARTIAL": (partial, "assembled with packets missing"),
                  "NPKTEXP": (log.packets_expected, "science packets expected"),
                  "NPKTRCV": (ledger.received, "science packets received")}
        ref = ProductRef.derived("uncal", meta.data_id, INGEST_RUN, f"v{version}")
        path = cfg.products_dir / ref.relpath()
        if path.parent.is_dir():
            sweep_temp_files(path.parent, 0.0, recursive=False)  # of an assembly killed mid-write
        prov = Provenance(INGEST_RUN, __version__, input_files=tuple(files))
        written = write_uncal_hashed(path, Level1(
            cube, meta, wcs=wcs, groupdq=groupdq, raw_files=[f.name for f in files],
            header_extra=extra, ref=ref, provenance=prov))
        del cube
        done = Assembled(exposure_id, ref, path, written.sha256, written.size, version, partial,
                         prov)
        _record(session, ledger, done, {"program": meta.program, "pi_name": meta.pi_name,
                                        "title": meta.title})
    return done


def _record(session: Session, row: ExposureLedger, done: Assembled,
            program: dict[str, str]) -> None:
    row.product = done.ref.relpath()
    row.product_version, row.product_received = done.version, row.received
    row.state = "partial" if done.partial else "complete"
    row.updated = utcnow()
    publish(session, "exposure_ready", f"{done.path.name}:v{done.version}", {
        "exposure_id": row.exposure_id, "product": row.product, "version": done.version,
        "partial": done.partial, "ref": done.ref.as_dict(), "sha256": done.sha256,
        "size": done.size, "provenance": done.provenance.as_dict(), "program": program})
