"""Simulated, calibrated fields for the stage-3 tests (one simulation per profile per session).

Each field is a sparse scene of stars (and a few galaxies) so that a small
detector or subarray holds enough stars to align on: ``webb_like`` on
subarray SUB320 (10 arcsec) and ``smallsat`` on its full 256x256 frame
(6.4 arcmin).  Six (webb_like) or seven (smallsat) planned pointings: the
first program's dithers (one visit) then the second program's (another
visit, another target), each run through ingest-free calibration to ``_cal``.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from astropy.wcs import WCS

from obsflow.calibrate.pipeline import CalibrationOptions, beside, calibrate_product
from obsflow.models.level2 import CalImage, read_cal
from obsflow.models.pointing import detector_wcs
from obsflow.models.reffiles import AstrometricCatalog, read_astrocat
from obsflow.profiles import Profile, load_profile
from obsflow.refdata import FolderRefs
from obsflow.simulate.run import SimOptions, simulate
from obsflow.simulate.sky import SceneOptions
from obsflow.simulate.truth import read_truth

FIELDS = {
    "webb_like": dict(subarray="SUB320", exposures=6,
                      scene=SceneOptions(star_density=2500.0, galaxy_density=250.0,
                                         star_mag=(16.0, 23.0))),
    "smallsat": dict(subarray="FULL", exposures=7,
                     scene=SceneOptions(star_density=6.0, galaxy_density=0.6,
                                        star_mag=(10.0, 16.5))),
}


@dataclass
class Field:
    """A simulated, calibrated field and its truth."""

    out: Path
    profile: Profile

    @functools.cached_property
    def cals(self) -> list[CalImage]:
        return [read_cal(p) for p in sorted((self.out / "cal").glob("*_cal.fits"))]

    def program(self, program: str) -> list[CalImage]:
        return [c for c in self.cals if c.meta.program == program]

    @functools.cached_property
    def astrocat_path(self) -> Path:
        return next((self.out / "refs").glob("*_astrocat_0001.fits"))

    @functools.cached_property
    def astrocat(self) -> AstrometricCatalog:
        return read_astrocat(self.astrocat_path)

    def true_wcs(self, cal: CalImage) -> WCS:
        """The WCS the simulator rendered ``cal``'s sky with (its true pointing)."""
        m = cal.meta
        inst = self.profile.instrument(m.instrument)
        det = inst.detector(m.detector)
        truth = read_truth(self.out / "truth" / f"{m.basename}_truth.fits")
        return detector_wcs(*truth.pointing, (det.v2_arcsec, det.v3_arcsec, det.rotation_deg),
                            inst.pixel_scale_arcsec,
                            (det.nx, det.ny, m.substrt1, m.substrt2, m.subsize1, m.subsize2),
                            det.distortion)

    def stars(self, target: str) -> Table:
        table = Table.read(self.out / "truth" / f"sources_{target}.ecsv")
        return table[np.asarray(table["kind"]) == "star"]

    def fwhm(self, cal: CalImage) -> float:
        inst = self.profile.instrument(cal.meta.instrument)
        return float(inst.psf_fwhm_pix_per_um * inst.filter(cal.meta.filter).pivot_um)


FIRST_POINTINGS = {"webb_like": 4, "smallsat": 4}
"""Pointings enough for the first program's (01234) dithers: the planner's first ones (3 or 4
of them are that program's, as the seed's schedule has it)."""


def _make_field(root: Path, name: str, seed: int = 11, exposures: int | None = None) -> Field:
    """The field of profile ``name`` simulated with ``seed`` and calibrated; ``exposures``
    (default: the field's own) can keep just the first program's dithers."""
    spec = FIELDS[name]
    simulate(root, SimOptions(seed=seed, profile=name, exposures=exposures or spec["exposures"],
                              subarray=spec["subarray"], level1=True, scene=spec["scene"]))
    profile = load_profile(name)
    refs = FolderRefs(root / "refs", profile)
    for uncal in sorted((root / "level1").glob("*_uncal.fits")):
        calibrate_product(uncal, refs, profile, CalibrationOptions(place=beside(root / "cal")))
    return Field(root, profile)


_REALIZATIONS: dict[tuple[str, int], Field] = {}


def realization(factory: pytest.TempPathFactory, name: str, seed: int) -> Field:
    """The field of profile ``name`` simulated with ``seed`` (its first pointings only,
    ``FIRST_POINTINGS``), made once a session however many tests ask for it."""
    key = (name, seed)
    if key not in _REALIZATIONS:
        _REALIZATIONS[key] = _make_field(factory.mktemp(f"field_{name}_{seed}"), name, seed,
                                         FIRST_POINTINGS[name])
    return _REALIZATIONS[key]


@contextmanager
def scratch_realization(factory: pytest.TempPathFactory, name: str, seed: int) -> Iterator[Field]:
    """:func:`realization`'s field if a test already made it, else one made for this use only
    and removed after it (tests that pool many fields keep neither their files nor their
    arrays)."""
    if (name, seed) in _REALIZATIONS:
        yield _REALIZATIONS[(name, seed)]
        return
    root = factory.mktemp(f"scratch_{name}_{seed}")
    try:
        yield _make_field(root, name, seed, FIRST_POINTINGS[name])
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session", params=sorted(FIELDS))
def field(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Field:
    return _make_field(tmp_path_factory.mktemp(f"field_{request.param}"), request.param)
