"""Stage 1 of a long time series, a block of integrations at a time: the same products as in
one piece, checksums that verify, nothing half-written, memory bounded by the block."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from obsflow.calibrate.jumps import detect_jumps
from obsflow.calibrate.pipeline import (
    CalibrationOptions,
    beside,
    block_size,
    calibrate_product,
    choose_recipe,
    resolve_parameters,
)
from obsflow.calibrate.ramps import (
    RampSums,
    RampTiming,
    finish_exposure,
    fit_block,
    fit_ramps,
    scale_integrations,
)
from obsflow.cli import main
from obsflow.exceptions import DataModelError
from obsflow.models.dq import DQ
from obsflow.models.identity import ProductRef
from obsflow.models.level1 import Level1, UncalBlocks, read_uncal, write_uncal
from obsflow.models.level2 import RateIntsWriter, read_rateints
from obsflow.models.provenance import Provenance
from obsflow.profiles import load_profile
from obsflow.refdata import FolderRefs
from obsflow.simulate.run import SimOptions, simulate
from obsflow.simulate.tso import TsoOptions

from .conftest import make_ramps

PROFILE = "webb_like"


@pytest.fixture(scope="module")
def tso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated transit observation: 25 integrations of 6 groups on a 64x64 subarray."""
    out = tmp_path_factory.mktemp("tso")
    simulate(out, SimOptions(seed=4, subarray="SUB64", level1=True,
                             tso=TsoOptions(nints=25, ngroups=6)))
    return out


def _uncal(tso: Path) -> Path:
    return next((tso / "level1").glob("*_uncal.fits"))


def _calibrate(tso: Path, uncal: Path, out: Path, block_mb: float) -> list[Path]:
    prof = load_profile(PROFILE)
    made = calibrate_product(uncal, FolderRefs(tso / "refs", prof), prof,
                             CalibrationOptions(place=beside(out), block_mb=block_mb))
    return [p.path for p in made]


def test_streamed_products_identical_to_one_piece(tso: Path, tmp_path: Path) -> None:
    """Blocks of 3 integrations (and a last one of 1; ``obsflow calibrate --block-mb 1``):
    _rate, _rateints and _cal are byte for byte those of the exposure calibrated in one piece,
    and every checksum verifies."""
    uncal = _uncal(tso)
    meta = read_uncal(uncal).meta
    recipe = choose_recipe(meta)
    params = resolve_parameters(recipe, {})
    assert recipe.name == "timeseries"
    assert block_size(meta, recipe, params, set(), 256.0) == 25  # one piece
    assert block_size(meta, recipe, params, set(), 1.0) == 3  # streamed
    whole = _calibrate(tso, uncal, tmp_path / "whole", 256.0)
    result = CliRunner().invoke(main, ["calibrate", "--refs", str(tso / "refs"), "--profile",
                                       PROFILE, "--block-mb", "1", "--out",
                                       str(tmp_path / "blocks"), str(uncal)])
    assert result.exit_code == 0, result.output
    blocks = [tmp_path / "blocks" / p.name for p in whole]
    for a, b in zip(whole, blocks, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # astropy warns on a checksum that does not verify
        with fits.open(blocks[1], checksum=True) as hdul:
            assert [h.name for h in hdul] == ["PRIMARY", "SCI", "ERR", "DQ", "VAR_POISSON",
                                              "VAR_RNOISE", "PROVENANCE", "ASDF"]
            assert all("CHECKSUM" in h.header and "DATASUM" in h.header for h in hdul)
    ints = read_rateints(blocks[1])
    assert ints.sci.shape == (25, 64, 64)
    assert np.all(np.isfinite(ints.err[ints.dq & DQ.DO_NOT_USE == 0]))


def test_pooled_jump_search_is_never_split(tso: Path) -> None:
    """A recipe pooling the integrations' differences gets them all in one block."""
    meta = read_uncal(_uncal(tso)).meta
    recipe = choose_recipe(meta)
    params = resolve_parameters(recipe, {"jump.per_integration": False})
    assert block_size(meta, recipe, params, set(), 1.0) == 25
    assert block_size(meta, recipe, params, {"jump"}, 1.0) == 3


def test_uncal_blocks_read_the_cube(tso: Path) -> None:
    whole = read_uncal(_uncal(tso))
    with UncalBlocks(_uncal(tso)) as cube:
        assert cube.meta == whole.meta and cube.ref == whole.ref
        data, groupdq = cube.read(3, 7)
    assert data.dtype == np.float32 and data.shape == (4, 6, 64, 64)
    assert np.array_equal(data, whole.data[3:7].astype(np.float32))
    assert (groupdq is None) == (whole.groupdq is None)


def test_block_fit_equals_whole_cube_bit_for_bit() -> None:
    """Cosmic rays, saturation, unusable groups, a pixel without gain: the exposure summed
    over blocks of 3, 1 and 3 integrations and the integrations scaled afterwards are
    fit_ramps's arrays exactly."""
    rate = np.geomspace(0.2, 400.0, 32 * 32).reshape(32, 32)
    r = make_ramps((7, 5, 32, 32), seed=8, rate=rate, read_noise=6.0, gain=2.0,
                   cr_fraction=0.05, saturation=1500.0)
    gdq = detect_jumps(r.data, r.groupdq, read_noise=r.read_noise, gain=r.gain, nframes=1)
    gdq[2, 1:3, 5, :] |= np.uint8(DQ.DO_NOT_USE)
    gain = r.gain.copy()
    gain[7, 7] = 0.0
    whole = fit_ramps(r.data, gdq, read_noise=r.read_noise, gain=gain, **r.readout)
    timing = RampTiming.make((32, 32), read_noise=r.read_noise, gain=gain, **r.readout)
    sums = RampSums.zeros((32, 32))
    parts = [fit_block(r.data[a:b], gdq[a:b], timing, sums) for a, b in ((0, 3), (3, 4), (4, 7))]
    exposure, lam = finish_exposure(sums, gain)
    for name in ("slope", "err", "var_poisson", "var_rnoise", "dq"):
        assert np.array_equal(getattr(exposure, name), getattr(whole, name), equal_nan=True), name
    start = 0
    for part in parts:
        n = part.slope.shape[0]
        err = np.empty_like(part.slope)
        scale_integrations(part.var_poisson_unit, part.var_rnoise, lam, err)
        got = {"slope_ints": part.slope, "var_poisson_ints": part.var_poisson_unit,
               "var_rnoise_ints": part.var_rnoise, "dq_ints": part.dq, "err_ints": err}
        for name, values in got.items():
            assert np.array_equal(values, getattr(whole, name)[start:start + n],
                                  equal_nan=True), name
        start += n
    # the cases the test is about occurred
    assert whole.dq[7, 7] & DQ.NO_GAIN_VALUE and np.any(whole.dq & DQ.SATURATED)
    assert np.any(whole.dq_ints & DQ.JUMP_DET)


def test_per_integration_jumps_equal_one_integration_at_a_time() -> None:
    r = make_ramps((4, 8, 24, 24), seed=9, rate=np.linspace(1, 300, 24 * 24).reshape(24, 24),
                   read_noise=6.0, gain=2.0, cr_fraction=0.05)
    kw = {"read_noise": r.read_noise, "gain": r.gain, "nframes": 1}
    flags = detect_jumps(r.data, r.groupdq, per_integration=True, **kw)
    one_by_one = np.concatenate([detect_jumps(r.data[i:i + 1], r.groupdq[i:i + 1], **kw)
                                 for i in range(4)])
    assert np.array_equal(flags, one_by_one)
    assert np.count_nonzero(flags & DQ.JUMP_DET) > 20
    pooled = detect_jumps(r.data, r.groupdq, **kw)
    assert not np.array_equal(pooled, flags)  # pooling is a different search


def _writer(tmp_path: Path, tso: Path) -> RateIntsWriter:
    meta = dataclasses.replace(read_uncal(_uncal(tso)).meta, nints=4)
    ref = ProductRef.derived("rateints", meta.data_id, "manual", "0" * 64)
    prov = Provenance(run="manual", software="test", recipe="timeseries", context=None,
                      inputs=(), input_files=(), references=(), steps=())
    return RateIntsWriter(tmp_path / ref.filename, meta, ref, prov)


def test_unfinished_rateints_leaves_nothing(tso: Path, tmp_path: Path) -> None:
    """A product missing integrations, or interrupted by an error, is never left behind (not
    under its name, not as a temporary file)."""
    plane = np.ones((2, 64, 64), np.float32)
    with pytest.raises(DataModelError, match="2 of 4 integrations"), _writer(tmp_path, tso) as out:
        out.write(0, sci=plane, err=plane, var_poisson=plane, var_rnoise=plane,
                  dq=plane.astype(np.uint32))
    with pytest.raises(DataModelError, match="out of order"), _writer(tmp_path, tso) as out:
        out.write(2, sci=plane)
    assert list(tmp_path.iterdir()) == []


_PEAKS = """
import json, sys
from pathlib import Path
from obsflow.calibrate.pipeline import CalibrationOptions, beside, calibrate_product
from obsflow.profiles import load_profile
from obsflow.refdata import FolderRefs

def hwm():
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(status["VmHWM"].split()[0]) / 1024

prof = load_profile("webb_like")
refs = FolderRefs(Path(sys.argv[1]), prof)
peaks = []
for k, (uncal, block_mb) in enumerate(json.loads(sys.argv[2])):
    with open("/proc/self/clear_refs", "w") as fh:  # the peak mark back to the current RSS
        fh.write("5")
    calibrate_product(Path(uncal), refs, prof, CalibrationOptions(
        place=beside(Path(sys.argv[3]) / str(k)), block_mb=block_mb))
    peaks.append(hwm())
print(json.dumps(peaks))
"""


def test_peak_memory_bounded_by_the_block_not_the_integrations(tso: Path, tmp_path: Path) -> None:
    """Peak RSS (VmHWM, reset before each run) of one process calibrating 60, then 240
    integrations (64x64, 6 groups) in blocks of 2 MB: the same within a few MB; 240 in one
    piece take more than the cube (29 MB) on top."""
    l1 = read_uncal(_uncal(tso))
    paths = {}
    for n in (60, 240):
        cube = np.tile(l1.data, (n // l1.meta.nints + 1, 1, 1, 1))[:n]
        meta = dataclasses.replace(l1.meta, nints=n)
        paths[n] = write_uncal(tmp_path / f"n{n}" / f"{l1.meta.basename}_uncal.fits",
                               Level1(np.ascontiguousarray(cube), meta, l1.wcs))
    runs = [(str(paths[60]), 2.0), (str(paths[60]), 2.0), (str(paths[240]), 2.0),
            (str(paths[240]), 1e6)]  # the first loads the kernels and references
    # arrays from 128 kB up mapped and unmapped (no dynamic threshold): live memory, not what
    # the allocator keeps from one block to the next
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    run = subprocess.run([sys.executable, "-c", _PEAKS, str(tso / "refs"), json.dumps(runs),
                          str(tmp_path / "out")], capture_output=True, text=True, check=True,
                         env=env)
    _, small, large, whole = json.loads(run.stdout.strip().splitlines()[-1])
    cube_mb = 240 * 6 * 64 * 64 * 5 / 2**20  # float32 samples + group DQ
    assert large - small < 4.0, (small, large)
    assert whole - large > cube_mb, (large, whole, cube_mb)
