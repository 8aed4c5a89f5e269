"""Colour composites: one per (program, target) once three or more filters exist.

Red is the longest wavelength, blue the shortest, green the middle filter;
for each filter the product of the highest calibration level (then the
newest) is used.  A composite is visible only to whoever may see all three
inputs: it carries the latest release date of them.

The images are stored under a key naming the three inputs
(``composites/<program>_<target>_<digest>``), so two registrations refreshing
the same composite at once never overwrite each other's images; the row is
switched to the new images only if its inputs are still the best ones when
it is written, and the images it pointed to before are then deleted.  The
renders happen outside any database transaction.
"""

from __future__ import annotations

import hashlib
import logging
import re

import numpy as np
from astropy.io import fits
from sqlalchemy import case, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from obsflow.archive.context import Archive, ArchiveSettings
from obsflow.archive.policy import utcnow
from obsflow.archive.previews import IMAGE_SUFFIXES, Rendered, composite_rgb, preview_array
from obsflow.archive.schema import Composite, Exposure, Product

__all__ = ["refresh_composite"]

logger = logging.getLogger(__name__)

_ATTEMPTS = 5
"""How often a refresh re-reads the inputs when another registration changed them meanwhile."""

Picks = list[tuple[Product, Exposure]]


def _best_per_filter(session: Session, program: str, target: str) -> Picks:
    rows = session.execute(
        select(Product, Exposure).join(Exposure, Product.exposure_id == Exposure.id)
        .where(Exposure.program == program, Exposure.target_name == target, Product.is_latest,
               Product.dataproduct_type.in_(("image", "cube")))  # never a light curve
        .order_by(case((Product.dataproduct_type == "image", 0), else_=1),
                  Product.calib_level.desc(), Product.created.desc(), Product.id.desc())
    ).all()
    best: dict[str, tuple[Product, Exposure]] = {}
    for product, exposure in rows:
        best.setdefault(exposure.filter, (product, exposure))
    return list(best.values())


def _wavelength(item: tuple[Product, Exposure]) -> tuple[float, str]:
    exposure = item[1]
    return (exposure.em_min if exposure.em_min is not None else 0.0, exposure.filter)


def _picks(session: Session, program: str, target: str) -> Picks:
    """(red, green, blue) inputs of the composite, or [] with fewer than three filters."""
    chosen = sorted(_best_per_filter(session, program, target), key=_wavelength)
    if len(chosen) < 3:
        return []
    return [chosen[-1], chosen[len(chosen) // 2], chosen[0]]


def _ids(picks: Picks) -> str:
    return ",".join(p.product_id for p, _ in picks)


def _current(session: Session, program: str, target: str, *,
             lock: bool = False) -> Composite | None:
    """The composite row; ``lock`` takes it FOR UPDATE (PostgreSQL) before the picks are read."""
    query = select(Composite).where(Composite.program == program,
                                    Composite.target_name == target)
    return session.scalar(query.with_for_update() if lock else query)


def _image(settings: ArchiveSettings, key: str) -> np.ndarray:
    with settings.store.open(key) as handle, fits.open(handle) as hdul:
        sci = hdul["SCI"]
        if sci.data.ndim == 4:
            return preview_array(np.stack([sci.section[0, 0], sci.section[0, -1]])[None])
        if sci.data.ndim == 3:  # per-integration stack: the first integration
            return preview_array(np.asarray(sci.section[0]))
        return preview_array(np.asarray(sci.data))


def _render(settings: ArchiveSettings, program: str, target: str,
            picks: Picks) -> tuple[str, list[Rendered]]:
    """Render and store the images of ``picks``; return their store-key base and the images."""
    images = composite_rgb(*(_image(settings, p.path) for p, _ in picks))
    digest = hashlib.sha256(_ids(picks).encode()).hexdigest()[:12]
    base = "composites/" + re.sub(r"[^A-Za-z0-9_.-]", "_", f"{program}_{target}") + f"_{digest}"
    for image in images:
        settings.store.put_bytes(image.data, base + IMAGE_SUFFIXES[image.kind])
    return base, images


def _apply(session: Session, row: Composite | None, program: str, target: str, picks: Picks,
           base: str, images: list[Rendered]) -> tuple[Composite, str | None]:
    """Point the composite row at ``base``; return it and the key base it pointed to before."""
    if row is None:
        row = Composite(program=program, target_name=target)
        session.add(row)
    old = row.path if row.path != base else None
    row.filters = ",".join(e.filter for _, e in picks)
    row.product_ids, row.path = _ids(picks), base
    row.width, row.height = images[0].width, images[0].height
    row.release_date = max(e.release_date for _, e in picks)
    row.created = utcnow()
    session.flush()
    return row, old


def _delete_images(settings: ArchiveSettings, base: str | None) -> None:
    if base:
        for ext in IMAGE_SUFFIXES.values():
            settings.store.delete(base + ext)


def refresh_composite(target: Archive | Session, settings: ArchiveSettings, program: str,
                      target_name: str) -> None:
    """Make (or remake) the composite of ``target_name`` when it has >= 3 filters.

    With a ``Session`` everything happens in the caller's transaction.  With an
    :class:`Archive` the images are rendered outside any transaction and the
    row is written in a short one that first checks the inputs are still the
    best (else the refresh starts again), so concurrent registrations never
    leave a composite of stale inputs and never hold the database while
    rendering.
    """
    if isinstance(target, Session):
        picks = _picks(target, program, target_name)
        row = _current(target, program, target_name)
        if picks and (row is None or row.product_ids != _ids(picks)):
            _apply(target, row, program, target_name, picks,
                   *_render(settings, program, target_name, picks))
        return  # the images replaced stay: the caller may still roll back
    for _ in range(_ATTEMPTS):
        with target.session() as session:
            picks = _picks(session, program, target_name)
            row = _current(session, program, target_name)
            if not picks or (row is not None and row.product_ids == _ids(picks)):
                return
        base, images = _render(settings, program, target_name, picks)
        try:
            with target.session() as session, session.begin():
                # locked first: two refreshes switch the row one after the other,
                # each after reading the picks committed before it
                row = _current(session, program, target_name, lock=True)
                if _ids(_picks(session, program, target_name)) != _ids(picks):
                    # a newer input arrived meanwhile: these images are of no use
                    # (unless another refresh of the same inputs points at them)
                    old = base if row is None or row.path != base else None
                    switched = False
                else:
                    _, old = _apply(session, row, program, target_name, picks, base, images)
                    switched = True
        except (IntegrityError, OperationalError) as exc:
            # another refresh created the row first, or (SQLite) wrote since this
            # transaction's first read: look again
            if isinstance(exc, OperationalError) and "locked" not in str(exc):
                raise
            continue
        _delete_images(settings, old)
        if switched:
            return
    logger.warning("composite of %s/%s not refreshed: its inputs kept changing over %d "
                   "attempts (the next registration of the target refreshes it)",
                   program, target_name, _ATTEMPTS)
