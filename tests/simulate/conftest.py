"""Shared simulations for the virtual-observatory tests.

Each session fixture runs :func:`obsflow.simulate.run.simulate` once into a
``tmp_path_factory`` folder; tests only read what was written.  The data are
kept small: the ``smallsat`` profile (256x256 full frame) and the
``webb_like`` profile on subarray ``SUB160``, six planned pointings each.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from obsflow.models.metadata import ExposureMeta
from obsflow.profiles import Instrument, Profile, load_profile
from obsflow.simulate.downlink import parse_faults
from obsflow.simulate.run import SimOptions, SimResult, simulate
from obsflow.simulate.truth import TruthExposure, read_truth


@dataclass
class SimRun:
    """One finished simulation: where it is, how it was made, what it said."""

    out: Path
    options: SimOptions
    result: SimResult
    profile: Profile

    @property
    def instrument(self) -> Instrument:
        return self.profile.instruments[0]

    @functools.cached_property
    def truths(self) -> dict[int, TruthExposure]:
        """Truth of every executed exposure, by exposure id."""
        out = {}
        for path in sorted((self.out / "truth").glob("*_truth.fits")):
            truth = read_truth(path)
            out[truth.meta.exposure_id] = truth
        return out

    @functools.cached_property
    def manifest(self) -> dict:  # type: ignore[type-arg]
        return json.loads((self.out / "truth" / "downlink.json").read_text())

    @functools.cached_property
    def plan_exposures(self) -> list[ExposureMeta]:
        plan = json.loads((self.out / "truth" / "plan.json").read_text())
        return [ExposureMeta.from_dict(e) for e in plan["exposures"]]

    def dump_files(self, retransmission: bool | None = None) -> list[Path]:
        """``*.ccsds`` files of downlink/, optionally only (not) the retransmission dump."""
        files = sorted((self.out / "downlink").glob("*.ccsds"))
        if retransmission is None:
            return files
        return [f for f in files if f.name.endswith("_retx.ccsds") == retransmission]


def run_simulation(folder: Path, options: SimOptions) -> SimRun:
    result = simulate(folder, options)
    return SimRun(folder, options, result, load_profile(options.profile))


SMALLSAT_OPTIONS = SimOptions(seed=3, profile="smallsat", exposures=6, subarray="FULL",
                              faults=parse_faults("all"), level1=True)
WEBB_OPTIONS = SimOptions(seed=5, profile="webb_like", exposures=6, subarray="SUB160",
                          faults=parse_faults("all"), level1=True)


@pytest.fixture(scope="session")
def smallsat_run(tmp_path_factory: pytest.TempPathFactory) -> SimRun:
    """smallsat, full frame, every fault, Level-1 products written."""
    return run_simulation(tmp_path_factory.mktemp("sim_smallsat"), SMALLSAT_OPTIONS)


@pytest.fixture(scope="session")
def webb_run(tmp_path_factory: pytest.TempPathFactory) -> SimRun:
    """webb_like on SUB160, every fault, Level-1 products written."""
    return run_simulation(tmp_path_factory.mktemp("sim_webb"), WEBB_OPTIONS)


@pytest.fixture(scope="session", params=["smallsat", "webb_like"])
def sim_run(request: pytest.FixtureRequest) -> SimRun:
    """Each of the two end-to-end runs in turn."""
    name = "smallsat_run" if request.param == "smallsat" else "webb_run"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]
