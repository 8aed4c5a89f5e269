"""Factories for the reference-data tests: a two-detector profile, real reference files, sites.

``two_detector_profile`` is the smallsat profile with a second detector SSD2
(so "only that detector is affected" can fail); ``base_refs`` holds every
reference type for both detectors, USEAFTER 2026-01-01; :func:`variant`
(in ``factories``) writes a copy of one with header keywords changed.
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from tests.refdata.factories import BASE_USEAFTER, Registry

from obsflow.config import SiteConfig
from obsflow.db import make_engine
from obsflow.migrations import init_schema
from obsflow.profiles import Profile, load_profile
from obsflow.simulate.detector import realize_detector
from obsflow.simulate.refs import write_reference_files
from obsflow.site import init_site


@pytest.fixture(scope="session")
def two_detector_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smallsat profile with a second detector SSD2, as a TOML file."""
    source = Path(__file__).parents[2] / "src" / "obsflow" / "profiles" / "smallsat.toml"
    data = tomllib.loads(source.read_text())
    second = copy.deepcopy(data["instruments"][0]["detectors"][0])
    second.update(name="SSD2", apid=33, v2_arcsec=400.0)
    data["instruments"][0]["detectors"].append(second)
    path = tmp_path_factory.mktemp("profile") / "twodet.toml"
    path.write_text(tomli_w.dumps(data))
    return path


@pytest.fixture(scope="session")
def profile(two_detector_profile: Path) -> Profile:
    return load_profile(str(two_detector_profile))


@pytest.fixture(scope="session")
def base_refs(tmp_path_factory: pytest.TempPathFactory, profile: Profile) -> dict[str, Path]:
    """Every reference file of both detectors, USEAFTER 2026-01-01, by ``<det>_<type>`` key."""
    out = tmp_path_factory.mktemp("refs")
    inst = profile.instruments[0]
    found: dict[str, Path] = {}
    for k, det in enumerate(inst.detectors):
        folder = out / det.name
        for path in write_reference_files(folder, profile, inst, realize_detector(det, k + 1),
                                          BASE_USEAFTER):
            reftype = path.name.split("_")[2]
            extra = path.name.split("_")[3] if reftype == "flat" else ""
            found[f"{det.name}_{reftype}{extra}".lower()] = path
    return found


@pytest.fixture
def registry(db_url: str, tmp_path: Path, profile: Profile) -> Iterator[Registry]:
    """An empty registry on each backend (the whole site schema, from the migrations)."""
    engine = make_engine(db_url)
    init_schema(engine)
    refs_dir = tmp_path / "site-refs"
    refs_dir.mkdir()
    try:
        yield Registry(engine, refs_dir, profile)
    finally:
        engine.dispose()


@pytest.fixture
def site(tmp_path: Path, db_url: str, two_detector_profile: Path) -> SiteConfig:
    """A site with the two-detector profile whose database is ``db_url`` (each backend)."""
    root = tmp_path / "site"
    init_site(root, profile=str(two_detector_profile), env={})
    path = root / "obsflow.toml"
    data = tomllib.loads(path.read_text())
    data["database"] = {"url": db_url}
    path.write_text(tomli_w.dumps(data))
    return init_site(root, env={})
