"""A synthetic catalog for planning tests and the planning benchmark: rows, not files.

Planning reads only the catalog (products, exposures, reference files and
contexts), so a catalog of any size can be made in seconds with plain bulk
inserts: exposures of several detectors, readout patterns and filters spread
over time, each with its Level-1 product and calibrated products made in
reference context 1, and per detector a full set of reference files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from astropy.time import Time
from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session

from obsflow.archive.schema import Exposure, Product, Program, Run
from obsflow.refdata.contexts import create_context
from obsflow.refdata.tables import ReferenceFile

TELESCOPE, INSTRUMENT = "OBSFLOW-W", "WIRCAM"
PER_DETECTOR = ("SUPERBIAS", "DARK", "GAIN", "READNOISE", "SATURATION", "MASK", "LINEARITY",
                "PHOTOM")
WHEN = datetime(2026, 1, 1)


@dataclass(frozen=True)
class CatalogSpec:
    """What to make: exposures (each with an ``uncal`` and these calibrated kinds)."""

    exposures: int
    detectors: Sequence[str] = ("WRA1", "WRA2", "WRB1", "WRB2")
    readpatts: Sequence[str] = ("RAPID", "BRIGHT2", "MEDIUM8")
    filters: Sequence[str] = ("F150W", "F200W", "F444W")
    mjd_start: float = 61300.0
    mjd_end: float = 61400.0
    kinds: Sequence[str] = ("rate", "rateints", "cal")
    seed: int = 1


def add_reference(session: Session, reftype: str, detector: str, useafter: str, *,
                  readpatt: str = "ANY", filter: str = "ANY", tag: str = "") -> int:
    """A reference-file row (no file: planning reads only the registry); returns its id."""
    name = f"syn_{detector}_{reftype}_{filter}_{readpatt}_{useafter}_{tag}".lower()
    row = ReferenceFile(reftype=reftype, telescope=TELESCOPE, instrument=INSTRUMENT,
                        detector=detector, filter=filter, readpatt=readpatt, subarray="FULL",
                        useafter=useafter, delivered=WHEN, original_name=name,
                        stored_name=f"{name}.fits",
                        sha256=hashlib.sha256(name.encode()).hexdigest(), pedigree="SYNTHETIC",
                        description="synthetic")
    session.add(row)
    session.flush()
    return row.id


def deliver(engine: Engine, refs: Sequence[dict[str, str]], description: str) -> int:
    """Add reference rows (``add_reference`` keyword dicts) and a new context; its number."""
    with Session(engine) as session, session.begin():
        for ref in refs:
            add_reference(session, **ref)
        return create_context(session, description).number


def _base_references(session: Session, spec: CatalogSpec) -> None:
    for detector in spec.detectors:
        for reftype in PER_DETECTOR:
            add_reference(session, reftype, detector, "2025-01-01T00:00:00")
        for name in spec.filters:
            add_reference(session, "FLAT", detector, "2025-01-01T00:00:00", filter=name)


def _exposure_rows(spec: CatalogSpec, rng: np.random.Generator) -> list[dict[str, object]]:
    starts = np.sort(rng.uniform(spec.mjd_start, spec.mjd_end, spec.exposures))
    pick = [rng.integers(0, len(c), spec.exposures) for c in (spec.detectors, spec.readpatts,
                                                               spec.filters)]
    rows = []
    for i in range(spec.exposures):
        detector = spec.detectors[pick[0][i]]
        rows.append(dict(
            obs_id=f"01234{i // 1000:03d}{i % 1000:03d}_00001_{detector.lower()}",
            program="01234", observation=i // 1000, visit=i % 1000, exposure=1,
            detector=detector, facility_name=TELESCOPE, instrument_name=INSTRUMENT,
            filter=spec.filters[pick[2][i]], readpatt=spec.readpatts[pick[1][i]],
            subarray="FULL", target_name="T", s_ra=0.0, s_dec=0.0, cx=1.0, cy=0.0, cz=0.0,
            hpx=0, s_fov=0.1, s_region="", t_min=float(starts[i]), t_max=float(starts[i]) + 0.01,
            t_exptime=100.0, release_date=WHEN))
    return rows


def _product_rows(spec: CatalogSpec, first_id: int, count: int) -> list[dict[str, object]]:
    rows = []
    for e in range(first_id, first_id + count):
        for kind in ("uncal", *spec.kinds):
            level = {"uncal": ("1", 1), "cal": ("2b", 2)}.get(kind, ("2a", 2))
            rows.append(dict(
                product_id=f"x{e}_{kind}_v1", uuid=hashlib.md5(f"{e}{kind}".encode()).hexdigest(),
                run="prompt", ref_context=None if kind == "uncal" else 1,
                provenance="{}", exposure_id=e, kind=kind, level=level[0],
                calib_level=level[1], dataproduct_type="image", version=1, is_latest=True,
                filename=f"x{e}_{kind}.fits", path=f"prompt/x{e}_{kind}.fits", size=1,
                sha256="0" * 64, content_type="application/fits", created=WHEN,
                software_version="0.1.0", recipe="" if kind == "uncal" else "image",
                reference_files="[]"))
    return rows


def fill_catalog(engine: Engine, spec: CatalogSpec, chunk: int = 20_000) -> int:
    """Make the catalog of ``spec`` in an empty site database; return context 1's number."""
    rng = np.random.default_rng(spec.seed)
    with Session(engine) as session, session.begin():
        _base_references(session, spec)
        number = create_context(session, "synthetic base set").number
        session.add(Program(program="01234", pi_name="", title="", exclusive_months=0,
                            created=WHEN))
        session.add(Run(name="prompt", kind="prompt", created=WHEN, description=""))
    rows = _exposure_rows(spec, rng)
    with engine.begin() as connection:  # Core executemany: no ORM objects
        for start in range(0, len(rows), chunk):
            connection.execute(insert(Exposure.__table__), rows[start:start + chunk])
        for start in range(0, spec.exposures, chunk // 4):
            count = min(chunk // 4, spec.exposures - start)
            connection.execute(insert(Product.__table__), _product_rows(spec, start + 1, count))
    return number


def iso_to_mjd(iso: str) -> float:
    """An ISO UTC time as MJD."""
    return float(Time(iso, format="isot", scale="utc").mjd)
