"""Reference files: delivery (validation, never overwriting) and the selection rules."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from astropy.io import fits
from click.testing import CliRunner

from obsflow.cli import main
from obsflow.exceptions import ReferenceFileError
from obsflow.models.metadata import ExposureMeta
from obsflow.profiles import load_profile
from obsflow.refdata import RefRecord, best_reference, read_record
from obsflow.simulate.detector import realize_detector
from obsflow.simulate.refs import write_reference_files
from obsflow.site import init_site

PROFILE = load_profile("smallsat")


@pytest.fixture(scope="module")
def refs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("refs")
    inst = PROFILE.instruments[0]
    write_reference_files(out, PROFILE, inst, realize_detector(inst.detectors[0], 1),
                          "2026-01-01T00:00:00")
    return out


def _meta(**kw: object) -> ExposureMeta:
    base = dict(telescope="OBSFLOW-S", instrument="SSCAM", detector="SSD1", filter="J",
                program="1", observation=1, visit=1, exposure=1, exposure_id=1, pi_name="",
                title="", target="t", target_ra=0.0, target_dec=0.0, ra_v1=0.0, dec_v1=0.0,
                pa_v3=0.0, dither_pattern="", dither_position=1, dither_npoints=1,
                readpatt="RAPID", nints=1, ngroups=5, nframes=1, groupgap=0, frame_time=0.68,
                group_time=0.68, subarray="FULL", substrt1=1, substrt2=1, subsize1=256,
                subsize2=256, expstart=61200.0, expmid=61200.0, expend=61200.0,
                exposure_duration=3.0)
    base.update(kw)
    return ExposureMeta(**base)  # type: ignore[arg-type]


def _rec(**kw: object) -> RefRecord:
    base = dict(reftype="DARK", telescope="OBSFLOW-S", instrument="SSCAM", detector="SSD1",
                filter="ANY", readpatt="ANY", subarray="FULL", useafter="2026-01-01T00:00:00",
                delivered="2026-02-01T00:00:00", name="a", path=Path("a"), sha256="")
    base.update(kw)
    return RefRecord(**base)  # type: ignore[arg-type]


def test_selection_rules() -> None:
    meta = _meta()  # EXPSTART 61200 = 2026-06-28
    recs = [_rec(name="old"), _rec(name="newer", useafter="2026-03-01T00:00:00"),
            _rec(name="future", useafter="2027-01-01T00:00:00"),
            _rec(name="other_det", detector="SSD2"),
            _rec(name="redelivered", useafter="2026-03-01T00:00:00",
                 delivered="2026-04-01T00:00:00")]
    sel = best_reference(recs, meta, "DARK")
    assert sel.chosen is not None and sel.chosen.name == "redelivered"
    why = {r.name: v for r, v in sel.verdicts}
    assert why["future"].startswith("rejected: USEAFTER") and "detector" in why["other_det"]
    flats = [_rec(reftype="FLAT", filter="H", name="h"), _rec(reftype="FLAT", filter="J", name="j")]
    assert best_reference(flats, meta, "FLAT").chosen.name == "j"  # type: ignore[union-attr]
    sub = [_rec(name="full"), _rec(name="sub", subarray="SUB64")]
    assert best_reference(sub, replace(meta, subarray="SUB64"), "DARK").chosen.name == "sub"  # type: ignore[union-attr]
    assert best_reference(sub, meta, "DARK").chosen.name == "full"  # type: ignore[union-attr]
    patt = [_rec(name="deep", readpatt="DEEP8")]
    assert best_reference(patt, meta, "DARK").chosen is None


def test_validation_errors(refs: Path, tmp_path: Path) -> None:
    dark = next(refs.glob("*_dark_*.fits"))
    assert read_record(dark, PROFILE).reftype == "DARK"
    for key, value, match in (("USEAFTER", None, "USEAFTER"), ("REFTYPE", "BIAS", "REFTYPE"),
                              ("TELESCOP", "JWST", "TELESCOP"), ("DETECTOR", "X", "detector")):
        bad = tmp_path / f"bad_{key}.fits"
        with fits.open(dark) as hdul:
            if value is None:
                del hdul[0].header[key]
            else:
                hdul[0].header[key] = value
            hdul.writeto(bad)
        with pytest.raises(ReferenceFileError, match=match):
            read_record(bad, PROFILE)
    small = tmp_path / "small.fits"
    with fits.open(dark) as hdul:
        hdul["SCI"].data = hdul["SCI"].data[:10]
        hdul.writeto(small)
    with pytest.raises(ReferenceFileError, match="shape"):
        read_record(small, PROFILE)


def test_cli_deliver(refs: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    init_site(site, profile="smallsat")
    files = sorted(str(p) for p in refs.glob("*.fits"))
    runner = CliRunner()
    result = runner.invoke(main, ["refs", "deliver", "--site", str(site), *files])
    assert result.exit_code == 0, result.output
    stored = sorted(p.name for p in (site / "refs").glob("*.fits"))
    assert len(stored) == len(files)
    again = runner.invoke(main, ["refs", "deliver", "--site", str(site), files[0]])
    assert again.exit_code == 2 and "already delivered" in again.output
    assert sorted(p.name for p in (site / "refs").glob("*.fits")) == stored
    copy = tmp_path / "copy.fits"
    shutil.copy(files[0], copy)
    with fits.open(copy, mode="update") as hdul:
        hdul[0].header["USEAFTER"] = "2026-02-01T00:00:00"
    newer = runner.invoke(main, ["refs", "deliver", "--site", str(site), str(copy)])
    assert newer.exit_code == 0, newer.output
