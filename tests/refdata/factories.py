"""Synthetic metadata, records and reference files for the reference-data tests."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from astropy.io import fits
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from obsflow.models.level1 import Level1, write_uncal
from obsflow.models.metadata import ExposureMeta
from obsflow.profiles import Profile
from obsflow.refdata.registry import Delivery, deliver_batch
from obsflow.refdata.validate import RefRecord

BASE_USEAFTER = "2026-01-01T00:00:00"

META = ExposureMeta(
    telescope="OBSFLOW-S", instrument="SSCAM", detector="SSD1", filter="J", program="1",
    observation=1, visit=1, exposure=1, exposure_id=1, pi_name="", title="", target="t",
    target_ra=0.0, target_dec=0.0, ra_v1=0.0, dec_v1=0.0, pa_v3=0.0, dither_pattern="",
    dither_position=1, dither_npoints=1, readpatt="RAPID", nints=1, ngroups=2, nframes=1,
    groupgap=0, frame_time=0.68, group_time=0.68, subarray="FULL", substrt1=1, substrt2=1,
    subsize1=4, subsize2=4, expstart=61200.0, expmid=61200.0, expend=61200.0,
    exposure_duration=1.4,
)
"""An SSD1 RAPID FULL exposure in J starting MJD 61200 (2026-06-28)."""


def meta(**changes: object) -> ExposureMeta:
    """:data:`META` with some fields changed."""
    return dataclasses.replace(META, **changes)  # type: ignore[arg-type]


def rec(**changes: object) -> RefRecord:
    """A DARK record for SSD1 (ANY filter and readout, FULL, USEAFTER 2026-01-01)."""
    base = dict(reftype="DARK", telescope="OBSFLOW-S", instrument="SSCAM", detector="SSD1",
                filter="ANY", readpatt="ANY", subarray="FULL", useafter=BASE_USEAFTER,
                delivered="2026-02-01T00:00:00", name="a", path=Path("a"), sha256="")
    base.update(changes)
    return RefRecord(**base)  # type: ignore[arg-type]


def variant(src: Path, dst: Path, **keys: str) -> Path:
    """Copy the reference file ``src`` to ``dst`` with primary-header ``keys`` changed."""
    with fits.open(src) as hdul:
        for key, value in keys.items():
            hdul[0].header[key] = value
        hdul.writeto(dst)
    return dst


def write_product(folder: Path, m: ExposureMeta) -> Path:
    """A tiny Level-1 product with metadata ``m`` (for ``obsflow refs best``)."""
    cube = np.zeros((m.nints, m.ngroups, m.subsize2, m.subsize1), dtype=np.uint16)
    return write_uncal(folder / f"{m.basename}_uncal.fits", Level1(cube, m))


@dataclass
class Registry:
    """A reference registry on a test database: engine, refs folder, profile."""

    engine: Engine
    refs_dir: Path
    profile: Profile

    def deliver(self, paths: list[Path], description: str = "",
                now: datetime | None = None) -> Delivery:
        """Deliver ``paths`` as one delivery (at ``now``, default now) and commit."""
        with Session(self.engine) as session, session.begin():
            return deliver_batch(session, self.refs_dir, paths, self.profile,
                                 description=description, now=now)

    def session(self) -> Session:
        return Session(self.engine)
