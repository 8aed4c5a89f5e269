"""Catalog tables of the archive, declared on :class:`obsflow.db.Base`.

The schema is created and upgraded by the Alembic migrations in
``obsflow/migrations`` (:func:`obsflow.migrations.init_schema` runs them); a test
checks that the migrations and these models agree.

One row of ``exposures`` is one exposure of one detector (the ``obs_id`` of
ObsCore is its file stem, e.g. ``01234001001_00002_wra1``); one row of
``products`` is one version of one product of that exposure (``uncal``,
``rate``, ``cal``, ...), known by its :class:`~obsflow.models.ProductRef`
(``uuid``, ``run``, kind and the exposure's data id), with its whole
provenance (JSON) and its inputs in ``product_inputs`` (lineage both ways).
Exactly one version per exposure and kind is current (``is_latest``); a
newer version is switched in by one transaction.  ``runs`` names every run
(a product's permanent home: ``products/<run>/...``).  The ObsCore view the VO endpoints serve is
``products JOIN exposures JOIN programs`` (see ``docs/archive.md``).

Times: ``t_min``/``t_max`` are MJD (UTC) as ObsCore wants; other timestamps
are naive ``datetime`` in UTC.  Wavelengths ``em_min``/``em_max`` in metres.
Sky: ICRS degrees; ``cx, cy, cz`` the unit vector of the centre (for an
exact cone test with plain arithmetic on any database) and ``hpx`` its
nested HEALPix index at order :data:`HPX_ORDER` (for an indexed prefilter).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from obsflow.db import Base

__all__ = [
    "HPX_ORDER",
    "ApiToken",
    "Exposure",
    "FootprintCell",
    "Preview",
    "Product",
    "ProductInput",
    "Program",
    "Run",
    "ProgramMember",
    "User",
]

HPX_ORDER = 18
"""HEALPix order (nside = 2**18, pixels of about 0.8 arcsec) of ``exposures.hpx``."""

class Program(Base):
    """A science program: PI, title and the exclusive-access period."""

    __tablename__ = "programs"

    program: Mapped[str] = mapped_column(String(16), primary_key=True)
    pi_name: Mapped[str] = mapped_column(String(128), default="")
    title: Mapped[str] = mapped_column(Text, default="")
    exclusive_months: Mapped[int] = mapped_column(Integer)
    created: Mapped[datetime] = mapped_column(DateTime)

    members: Mapped[list[ProgramMember]] = relationship(cascade="all, delete-orphan")


class User(Base):
    """An archive user: program member and/or administrator."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    password_hash: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime)


class ProgramMember(Base):
    """A user who may see a program's proprietary data."""

    __tablename__ = "program_members"

    program: Mapped[str] = mapped_column(
        ForeignKey("programs.program", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)


class ApiToken(Base):
    """A bearer token (``kind='api'``) or a web session (``kind='session'``), stored hashed."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="api")
    label: Mapped[str] = mapped_column(String(128), default="")
    created: Mapped[datetime] = mapped_column(DateTime)
    expires: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    user: Mapped[User] = relationship()


class Exposure(Base):
    """One exposure of one detector, with its sky footprint, time span and band."""

    __tablename__ = "exposures"
    __table_args__ = (
        Index("ix_exposures_hpx", "hpx"),
        Index("ix_exposures_program", "program"),
        Index("ix_exposures_target", "target_name"),
        Index("ix_exposures_t_min", "t_min"),
        Index("ix_exposures_release", "release_date"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    obs_id: Mapped[str] = mapped_column(String(64), unique=True)
    program: Mapped[str] = mapped_column(ForeignKey("programs.program"))
    observation: Mapped[int] = mapped_column(Integer)
    visit: Mapped[int] = mapped_column(Integer)
    exposure: Mapped[int] = mapped_column(Integer)
    detector: Mapped[str] = mapped_column(String(32))
    facility_name: Mapped[str] = mapped_column(String(64))
    instrument_name: Mapped[str] = mapped_column(String(64))
    filter: Mapped[str] = mapped_column(String(32), index=True)
    readpatt: Mapped[str] = mapped_column(String(32), default="")
    subarray: Mapped[str] = mapped_column(String(32), default="")
    target_name: Mapped[str] = mapped_column(String(128))
    s_ra: Mapped[float] = mapped_column(Float)
    s_dec: Mapped[float] = mapped_column(Float)
    cx: Mapped[float] = mapped_column(Float)
    cy: Mapped[float] = mapped_column(Float)
    cz: Mapped[float] = mapped_column(Float)
    hpx: Mapped[int] = mapped_column(BigInteger)
    s_fov: Mapped[float] = mapped_column(Float)
    s_region: Mapped[str] = mapped_column(Text)
    s_resolution: Mapped[float | None] = mapped_column(Float, nullable=True)
    t_min: Mapped[float] = mapped_column(Float)
    t_max: Mapped[float] = mapped_column(Float)
    t_exptime: Mapped[float] = mapped_column(Float)
    em_min: Mapped[float | None] = mapped_column(Float, nullable=True)
    em_max: Mapped[float | None] = mapped_column(Float, nullable=True)
    em_res_power: Mapped[float | None] = mapped_column(Float, nullable=True)
    release_date: Mapped[datetime] = mapped_column(DateTime)

    products: Mapped[list[Product]] = relationship(back_populates="exposure_row")


class FootprintCell(Base):
    """One HEALPix cell covering an exposure's footprint (the footprint search's indexed
    prefilter: :mod:`obsflow.archive.footprints`).

    ``cell`` is the NUNIQ number ``4 * 4**order + nested index`` of a cell of one of
    :data:`obsflow.archive.footprints.COVER_ORDERS`.
    """

    __tablename__ = "footprint_cells"
    __table_args__ = (Index("ix_footprint_cells_cell", "cell", "exposure_id"),)

    exposure_id: Mapped[int] = mapped_column(
        ForeignKey("exposures.id", ondelete="CASCADE"), primary_key=True)
    cell: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class Run(Base):
    """A run: the permanent home of the products one pipeline execution made.

    ``kind`` is ``ingest`` (Level-1 products), ``prompt`` (fresh data),
    ``campaign`` (reprocessing), ``manual`` (registered by hand) or
    ``legacy`` (products of a site made before runs existed).
    """

    __tablename__ = "runs"

    name: Mapped[str] = mapped_column(String(48), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    created: Mapped[datetime] = mapped_column(DateTime)
    description: Mapped[str] = mapped_column(Text, default="")


class Product(Base):
    """One version of one product file in the store.

    ``s_xel1``/``s_xel2`` are its pixels along the sky axes, ``t_xel`` its time samples
    (groups x integrations of a ramp, integrations of ``_rateints``, else 1) and
    ``t_resolution`` the time one sample spans, seconds (NULL for a table product or a
    product registered before these columns existed).
    """

    __tablename__ = "products"
    __table_args__ = (
        UniqueConstraint("exposure_id", "kind", "version", name="uq_products_version"),
        Index("ix_products_exposure", "exposure_id"),
        Index("ix_products_latest_kind", "is_latest", "kind"),
        Index("ix_products_run", "run"),
        UniqueConstraint("uuid", name="uq_products_uuid"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    product_id: Mapped[str] = mapped_column(String(96), unique=True)
    uuid: Mapped[str] = mapped_column(String(32))
    run: Mapped[str] = mapped_column(ForeignKey("runs.name", name="fk_products_run"))
    ref_context: Mapped[int | None] = mapped_column(Integer, nullable=True)
    provenance: Mapped[str] = mapped_column(Text, default="{}")
    exposure_id: Mapped[int] = mapped_column(ForeignKey("exposures.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    level: Mapped[str] = mapped_column(String(4))
    calib_level: Mapped[int] = mapped_column(Integer)
    dataproduct_type: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    is_latest: Mapped[bool] = mapped_column(Boolean, default=True)
    filename: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(512))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    content_type: Mapped[str] = mapped_column(String(64), default="application/fits")
    created: Mapped[datetime] = mapped_column(DateTime)
    software_version: Mapped[str] = mapped_column(String(32), default="")
    recipe: Mapped[str] = mapped_column(String(128), default="")
    reference_files: Mapped[str] = mapped_column(Text, default="[]")
    s_xel1: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    s_xel2: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    t_xel: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    t_resolution: Mapped[float | None] = mapped_column(Float, nullable=True)

    exposure_row: Mapped[Exposure] = relationship(back_populates="products")
    previews: Mapped[list[Preview]] = relationship(cascade="all, delete-orphan")
    files: Mapped[list[ProductFile]] = relationship(cascade="all, delete-orphan")


class ProductFile(Base):
    """Another file of the same product: its pure ASDF form (``format`` ``asdf``).

    One product, two files: the same reference, version, provenance and access
    rule as its row in ``products`` (the FITS file); its own name, store key,
    size, sha256 and media type.
    """

    __tablename__ = "product_files"

    product_pk: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True)
    format: Mapped[str] = mapped_column(String(8), primary_key=True)
    filename: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(512))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(64))


class ProductInput(Base):
    """Lineage: ``product_pk`` was made from ``input_pk`` (both ``products.id``)."""

    __tablename__ = "product_inputs"
    __table_args__ = (Index("ix_product_inputs_input", "input_pk"),)

    product_pk: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True)
    input_pk: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True)


class Preview(Base):
    """A preview image of a product: ``png``, ``jpeg`` or ``thumb`` (JPEG, small)."""

    __tablename__ = "previews"

    product_pk: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    path: Mapped[str] = mapped_column(String(512))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
