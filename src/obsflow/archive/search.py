"""Catalog queries under the access policy: search, one product, previews, composites.

Every function takes the :class:`~obsflow.archive.policy.Viewer` and the
time ``now``; rows the viewer may not see are filtered in SQL, so they are
never counted, listed or returned (a hidden product raises
:class:`ProductNotFoundError` exactly like a missing one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from obsflow.archive.errors import ProductNotFoundError
from obsflow.archive.policy import Viewer, visible_clause
from obsflow.archive.schema import Composite, Exposure, Preview, Product, Program
from obsflow.archive.sky import cone_clause

__all__ = [
    "Cone",
    "SearchPage",
    "SearchQuery",
    "get_composite",
    "get_preview",
    "get_product",
    "list_composites",
    "product_dict",
    "search_products",
    "visible_products",
]


@dataclass(frozen=True)
class Cone:
    """A cone on the sky, ICRS degrees."""

    ra: float
    dec: float
    radius: float


@dataclass(frozen=True)
class SearchQuery:
    """What to search for; unset fields do not constrain.

    ``t_min``/``t_max`` (MJD UTC) select exposures overlapping the interval;
    ``level`` is a data level (``1``, ``2a``, ``2b``, ``3``); ``latest_only``
    hides superseded versions.  ``page`` counts from 1.
    """

    program: str | None = None
    target: str | None = None
    cone: Cone | None = None
    filter: str | None = None
    instrument: str | None = None
    t_min: float | None = None
    t_max: float | None = None
    level: str | None = None
    kind: str | None = None
    latest_only: bool = True
    page: int = 1
    page_size: int = 100


@dataclass(frozen=True)
class SearchPage:
    """One page of results: catalog rows as dicts (see :func:`product_dict`)."""

    total: int
    page: int
    page_size: int
    results: list[dict[str, Any]] = field(default_factory=list)


def visible_products(viewer: Viewer, now: datetime) -> Select:  # type: ignore[type-arg]
    """``SELECT product, exposure`` restricted to what ``viewer`` may see at ``now``."""
    return (select(Product, Exposure).join(Exposure, Product.exposure_id == Exposure.id)
            .where(visible_clause(viewer, now)))


def _conditions(query: SearchQuery) -> list[ColumnElement[bool]]:
    pairs: list[tuple[Any, Any]] = [
        (query.program, Exposure.program), (query.target, Exposure.target_name),
        (query.filter, Exposure.filter), (query.instrument, Exposure.instrument_name),
        (query.level, Product.level), (query.kind, Product.kind),
    ]
    where: list[ColumnElement[bool]] = [column == value for value, column in pairs
                                        if value is not None]
    if query.cone is not None:
        where.append(cone_clause(query.cone.ra, query.cone.dec, query.cone.radius))
    if query.t_min is not None:
        where.append(Exposure.t_max >= query.t_min)
    if query.t_max is not None:
        where.append(Exposure.t_min <= query.t_max)
    if query.latest_only:
        where.append(Product.is_latest.is_(True))
    return where


def product_dict(product: Product, exposure: Exposure) -> dict[str, Any]:
    """A product row as JSON-able metadata (ObsCore names where one exists)."""
    return {
        "product_id": product.product_id, "obs_id": exposure.obs_id,
        "program": exposure.program, "kind": product.kind, "level": product.level,
        "calib_level": product.calib_level, "dataproduct_type": product.dataproduct_type,
        "version": product.version, "is_latest": product.is_latest,
        "filename": product.filename, "size": product.size, "sha256": product.sha256,
        "created": product.created.isoformat(), "target_name": exposure.target_name,
        "s_ra": exposure.s_ra, "s_dec": exposure.s_dec, "s_fov": exposure.s_fov,
        "s_region": exposure.s_region, "t_min": exposure.t_min, "t_max": exposure.t_max,
        "t_exptime": exposure.t_exptime, "em_min": exposure.em_min, "em_max": exposure.em_max,
        "instrument_name": exposure.instrument_name, "facility_name": exposure.facility_name,
        "detector": exposure.detector, "filter": exposure.filter,
        "release_date": exposure.release_date.isoformat(),
        "software_version": product.software_version, "recipe": product.recipe,
        "reference_files": json.loads(product.reference_files),
    }


def search_products(session: Session, query: SearchQuery, viewer: Viewer,
                    now: datetime) -> SearchPage:
    """One page of the products matching ``query`` that ``viewer`` may see."""
    base = visible_products(viewer, now).where(*_conditions(query))
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = session.execute(
        base.order_by(Exposure.t_min, Product.id)
        .offset((query.page - 1) * query.page_size).limit(query.page_size)
    ).all()
    return SearchPage(total, query.page, query.page_size,
                      [product_dict(p, e) for p, e in rows])


def get_product(session: Session, product_id: str, viewer: Viewer,
                now: datetime) -> tuple[Product, Exposure]:
    """The product ``product_id`` if ``viewer`` may see it, else :class:`ProductNotFoundError`."""
    row = session.execute(visible_products(viewer, now)
                          .where(Product.product_id == product_id)).first()
    if row is None:
        raise ProductNotFoundError(f"no product {product_id!r}")
    return row[0], row[1]


def get_preview(session: Session, product_id: str, kind: str, viewer: Viewer,
                now: datetime) -> Preview:
    """A visible product's preview of ``kind`` (``png``, ``jpeg``, ``thumb``)."""
    product, _ = get_product(session, product_id, viewer, now)
    preview = session.get(Preview, (product.id, kind))
    if preview is None:
        raise ProductNotFoundError(f"no {kind} preview of product {product_id!r}")
    return preview


def _visible_composites(viewer: Viewer, now: datetime) -> Select:  # type: ignore[type-arg]
    stmt = select(Composite)
    if viewer.is_admin:
        return stmt
    allowed = Composite.release_date <= now
    if viewer.programs:
        allowed = allowed | Composite.program.in_(sorted(viewer.programs))
    return stmt.where(allowed)


def list_composites(session: Session, viewer: Viewer, now: datetime,
                    target: str | None = None) -> list[Composite]:
    """Composites ``viewer`` may see, optionally of one target."""
    stmt = _visible_composites(viewer, now).order_by(Composite.id)
    if target is not None:
        stmt = stmt.where(Composite.target_name == target)
    return list(session.scalars(stmt))


def get_composite(session: Session, composite_id: int, viewer: Viewer,
                  now: datetime) -> Composite:
    """One visible composite, else :class:`ProductNotFoundError`."""
    row = session.scalar(_visible_composites(viewer, now).where(Composite.id == composite_id))
    if row is None:
        raise ProductNotFoundError(f"no composite {composite_id}")
    return row


def program_dict(program: Program) -> dict[str, Any]:
    """Public facts of a program."""
    return {"program": program.program, "pi_name": program.pi_name, "title": program.title,
            "exclusive_months": program.exclusive_months}
