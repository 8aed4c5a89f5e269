"""Colour composites: one per (program, target) once three or more filters exist.

Red is the longest wavelength, blue the shortest, green the middle filter;
for each filter the product of the highest calibration level (then the
newest) is used.  A composite is visible only to whoever may see all three
inputs: it carries the latest release date of them.
"""

from __future__ import annotations

import re

import numpy as np
from astropy.io import fits
from sqlalchemy import case, select
from sqlalchemy.orm import Session

from obsflow.archive.context import ArchiveSettings
from obsflow.archive.policy import utcnow
from obsflow.archive.previews import composite_rgb, preview_array
from obsflow.archive.schema import Composite, Exposure, Product

__all__ = ["COMPOSITE_EXTENSIONS", "refresh_composite"]

COMPOSITE_EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "thumb": ".thumb.jpg"}
"""Store-key suffix of each composite image kind (appended to ``Composite.path``)."""


def _best_per_filter(session: Session, program: str, target: str) -> list[tuple[Product, Exposure]]:
    rows = session.execute(
        select(Product, Exposure).join(Exposure, Product.exposure_id == Exposure.id)
        .where(Exposure.program == program, Exposure.target_name == target, Product.is_latest)
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


def _image(settings: ArchiveSettings, key: str) -> np.ndarray:
    with settings.store.open(key) as handle, fits.open(handle) as hdul:
        sci = hdul["SCI"]
        if sci.data.ndim == 4:
            return preview_array(np.stack([sci.section[0, 0], sci.section[0, -1]])[None])
        if sci.data.ndim == 3:  # per-integration stack: the first integration
            return preview_array(np.asarray(sci.section[0]))
        return preview_array(np.asarray(sci.data))


def refresh_composite(session: Session, settings: ArchiveSettings, program: str,
                      target: str) -> Composite | None:
    """Make (or remake) the composite of ``target`` when it has >= 3 filters."""
    chosen = sorted(_best_per_filter(session, program, target), key=_wavelength)
    if len(chosen) < 3:
        return None
    picks = [chosen[-1], chosen[len(chosen) // 2], chosen[0]]
    ids = ",".join(p.product_id for p, _ in picks)
    row = session.scalar(select(Composite).where(Composite.program == program,
                                                 Composite.target_name == target))
    if row is not None and row.product_ids == ids:
        return row
    images = composite_rgb(*(_image(settings, p.path) for p, _ in picks))
    base = "composites/" + re.sub(r"[^A-Za-z0-9_.-]", "_", f"{program}_{target}")
    for image in images:
        settings.store.put_bytes(image.data, base + COMPOSITE_EXTENSIONS[image.kind])
    if row is None:
        row = Composite(program=program, target_name=target)
        session.add(row)
    row.filters = ",".join(e.filter for _, e in picks)
    row.product_ids, row.path = ids, base
    row.width, row.height = images[0].width, images[0].height
    row.release_date = max(e.release_date for _, e in picks)
    row.created = utcnow()
    session.flush()
    return row
