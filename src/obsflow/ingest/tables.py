"""The data-accounting ledger: SQLAlchemy tables of the ingest stage.

Packets are accounted as *ranges*, never a row per packet: a
:class:`PacketRange` is a run of consecutive ``packet_index`` values of one
exposure that sit back to back in one raw file, so it also says where the
bytes are (file, byte offset, packet size) for assembly.

Tables
------
raw_files          every level-0 file received (sha256, raw path, state)
ingest_claims      which process is handling an incoming file right now
observation_log    one row per planned product, from the housekeeping APID
ledger_exposures   the per-exposure ledger: expected, received, duplicates,
                   CRC failures, state, product path and version
ledger_packet_ranges received packet runs (exposure, first..last, file, offset)
engineering        engineering samples (time, channel, value)
ephemeris          observatory position and velocity (time)
apid_continuity    per file and APID: sequence-count gaps, duplicates, disorder
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from obsflow.db import Base

__all__ = [
    "ApidContinuity",
    "Claim",
    "EngineeringSample",
    "EphemerisPoint",
    "ExposureLedger",
    "ObservationLog",
    "PacketRange",
    "RawFile",
]


class RawFile(Base):
    """A level-0 file: archived before parsing, registered once per content."""

    __tablename__ = "raw_files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))  # packets | ephemeris | unknown
    raw_path: Mapped[str] = mapped_column(String(512))  # relative to the raw folder
    state: Mapped[str] = mapped_column(String(16))  # archiving|archived|parsed|quarantined
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    deliveries: Mapped[int] = mapped_column(Integer, default=1)
    received_at: Mapped[datetime] = mapped_column(DateTime)
    parsed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    packets: Mapped[int] = mapped_column(Integer, default=0)
    crc_failures: Mapped[int] = mapped_column(Integer, default=0)
    skipped_bytes: Mapped[int] = mapped_column(BigInteger, default=0)


class Claim(Base):
    """An incoming file being handled by one process (host:pid)."""

    __tablename__ = "ingest_claims"
    key: Mapped[str] = mapped_column(String(600), primary_key=True)  # name|size|mtime_ns
    owner: Mapped[str] = mapped_column(String(128))
    claimed_at: Mapped[datetime] = mapped_column(DateTime)


class ObservationLog(Base):
    """One observation-log record (one planned product)."""

    __tablename__ = "observation_log"
    exposure_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    apid: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    packets_expected: Mapped[int] = mapped_column(Integer)
    rows_per_packet: Mapped[int] = mapped_column(Integer)
    basename: Mapped[str] = mapped_column(String(128))
    meta: Mapped[dict] = mapped_column(JSON)  # type: ignore[type-arg]
    raw_file_id: Mapped[int] = mapped_column(ForeignKey("raw_files.id"))


class ExposureLedger(Base):
    """Accounting of one exposure (one detector's product)."""

    __tablename__ = "ledger_exposures"
    exposure_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    apid: Mapped[int] = mapped_column(Integer)
    expected: Mapped[int | None] = mapped_column(Integer, nullable=True)
    received: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    crc_failures: Mapped[int] = mapped_column(Integer, default=0)
    packet_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    state: Mapped[str] = mapped_column(String(16))  # waiting|complete|partial|skipped
    first_seen: Mapped[datetime] = mapped_column(DateTime)
    updated: Mapped[datetime] = mapped_column(DateTime)
    product: Mapped[str | None] = mapped_column(String(512), nullable=True)
    product_version: Mapped[int] = mapped_column(Integer, default=0)
    product_received: Mapped[int] = mapped_column(Integer, default=0)


class PacketRange(Base):
    """Packets ``first..last`` (inclusive packet_index) of an exposure, back to back in a file."""

    __tablename__ = "ledger_packet_ranges"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    exposure_id: Mapped[int] = mapped_column(ForeignKey("ledger_exposures.exposure_id"))
    first: Mapped[int] = mapped_column(Integer)
    last: Mapped[int] = mapped_column(Integer)
    raw_file_id: Mapped[int] = mapped_column(ForeignKey("raw_files.id"))
    offset: Mapped[int] = mapped_column(BigInteger)  # byte offset of packet `first`
    packet_size: Mapped[int] = mapped_column(Integer)
    __table_args__ = (Index("ix_ledger_packet_ranges_exposure", "exposure_id", "first"),)


class ApidContinuity(Base):
    """Per file and APID: 14-bit sequence-count continuity (wrap-around aware)."""

    __tablename__ = "apid_continuity"
    raw_file_id: Mapped[int] = mapped_column(ForeignKey("raw_files.id"), primary_key=True)
    apid: Mapped[int] = mapped_column(Integer, primary_key=True)
    packets: Mapped[int] = mapped_column(Integer)
    first_count: Mapped[int] = mapped_column(Integer)  # unwrapped, relative to the file's first
    last_count: Mapped[int] = mapped_column(Integer)
    missing: Mapped[int] = mapped_column(Integer)
    duplicates: Mapped[int] = mapped_column(Integer)
    out_of_order: Mapped[int] = mapped_column(Integer)


class EngineeringSample(Base):
    __tablename__ = "engineering"
    mjd_utc: Mapped[float] = mapped_column(Float, primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class EphemerisPoint(Base):
    __tablename__ = "ephemeris"
    mjd_utc: Mapped[float] = mapped_column(Float, primary_key=True)
    x_km: Mapped[float] = mapped_column(Float)
    y_km: Mapped[float] = mapped_column(Float)
    z_km: Mapped[float] = mapped_column(Float)
    vx_km_s: Mapped[float] = mapped_column(Float)
    vy_km_s: Mapped[float] = mapped_column(Float)
    vz_km_s: Mapped[float] = mapped_column(Float)
