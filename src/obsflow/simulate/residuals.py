"""How far a site's current rates are from the simulator's truth (``obsflow truth-residuals``).

For a simulated downlink the truth is known: ``truth/<basename>_truth.fits``
holds each exposure's true rate (DN/s).  :func:`rate_residuals` compares a
``_rate`` product with it on the pixels that are unflagged and untouched by
cosmic rays; :func:`site_residuals` does so for every current ``_rate`` of a
site, so a reprocessing campaign's effect can be read in science terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from obsflow.config import SiteConfig
from obsflow.db import make_engine
from obsflow.models.level2 import read_rate
from obsflow.simulate.truth import read_truth

__all__ = ["Residuals", "rate_residuals", "site_residuals"]


@dataclass(frozen=True)
class Residuals:
    """Rate minus truth on clean pixels: medians in DN/s, the median pull, pixels used."""

    product_id: str
    run: str
    median: float
    median_abs: float
    median_pull: float
    pixels: int


def rate_residuals(sci: np.ndarray, err: np.ndarray, dq: np.ndarray, truth: np.ndarray,
                   hit_y: np.ndarray, hit_x: np.ndarray) -> tuple[float, float, float, int]:
    """(median, median |.|, median pull) of ``sci - truth`` over clean pixels, and their count.

    Parameters
    ----------
    sci, err : (ny, nx) float
        Measured rate and its 1-sigma error, DN/s.
    dq : (ny, nx) uint32
        Data quality (non-zero pixels are left out).
    truth : (ny, nx) float
        True rate, DN/s.
    hit_y, hit_x : int arrays
        Pixels a cosmic ray touched (left out).
    """
    clean = (dq == 0) & np.isfinite(sci) & (err > 0)
    clean[hit_y, hit_x] = False
    diff = (sci - truth)[clean]
    if diff.size == 0:
        return float("nan"), float("nan"), float("nan"), 0
    return (float(np.median(diff)), float(np.median(np.abs(diff))),
            float(np.median(diff / err[clean])), int(diff.size))


def site_residuals(cfg: SiteConfig, truth_dir: Path) -> list[Residuals]:
    """Residuals of every current ``_rate`` product of the site that has a truth file."""
    from obsflow.archive.schema import Exposure, Product

    engine = make_engine(cfg.database_url)
    try:
        with Session(engine) as session:
            rows = session.execute(select(Product.product_id, Product.run, Product.path,
                                          Exposure.obs_id)
                                   .join(Exposure, Exposure.id == Product.exposure_id)
                                   .where(Product.kind == "rate", Product.is_latest.is_(True))
                                   .order_by(Exposure.obs_id)).all()
    finally:
        engine.dispose()
    out = []
    for product_id, run, path, obs_id in rows:
        truth_path = Path(truth_dir) / f"{obs_id}_truth.fits"
        if not truth_path.is_file():
            continue
        rate, truth = read_rate(cfg.products_dir / path), read_truth(truth_path)
        stats = rate_residuals(rate.sci, rate.err, rate.dq, truth.rate,
                               np.asarray(truth.hits["Y"]), np.asarray(truth.hits["X"]))
        out.append(Residuals(str(product_id), str(run), *stats))
    return out
