"""The ETC's arithmetic: S/N scaling, saturation, recommendations, errors, CLI."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from obsflow.cli import main
from obsflow.etc import EtcRequest, calculate, recommend
from obsflow.etc.calculator import FILL_LIMIT, slope_variance
from obsflow.exceptions import EtcError, UnknownOptionError
from obsflow.profiles import load_profile
from obsflow.simulate.cosmic_rays import ReadoutTiming

PROF = load_profile("webb_like")


def test_snr_grows_as_root_of_integrations_and_with_brightness() -> None:
    one = calculate(PROF, EtcRequest("F200W", "MEDIUM8", 25.0, ngroups=6, nints=1))
    four = calculate(PROF, EtcRequest("F200W", "MEDIUM8", 25.0, ngroups=6, nints=4))
    assert four.snr == pytest.approx(2 * one.snr, rel=1e-3)
    assert four.exposure_time_s == pytest.approx(4 * one.exposure_time_s)
    faint = calculate(PROF, EtcRequest("F200W", "MEDIUM8", 27.0, ngroups=6))
    assert faint.snr < one.snr
    assert one.source_e_s == pytest.approx(10 ** (-0.4 * (25.0 - 28.1)))


def test_read_noise_limit_matches_the_textbook_formula() -> None:
    # no light: the slope variance of an unweighted fit, 12 rn^2 / (n^3 - n) / tgroup^2
    det = PROF.instruments[0].detectors[0]
    timing = ReadoutTiming(8, 1, 0, 10.0)
    var = slope_variance([0.0], det, timing)[0]
    rn_dn2 = (det.read_noise_single_e / det.gain_e_per_dn) ** 2 + 1 / 12
    expected = 12 * rn_dn2 / (8**3 - 8) / 10.0**2 * det.gain_e_per_dn**2
    assert var == pytest.approx(expected, rel=1e-5)


def test_saturation_group_and_recommendation_limit() -> None:
    bright = calculate(PROF, EtcRequest("F150W", "RAPID", 15.0, ngroups=10, subarray="SUB640"))
    assert bright.saturation_group is not None and bright.peak_fill > 1
    full = PROF.instruments[0].detectors[0].full_well_e
    g = bright.saturation_group
    tframe = PROF.instruments[0].subarray("SUB640").frame_time_s
    assert bright.peak_e_s * tframe * g >= full > bright.peak_e_s * tframe * (g - 1)
    rec = recommend(PROF, EtcRequest("F150W", "RAPID", 19.0, snr=300.0, subarray="SUB640"))
    assert rec.peak_fill <= FILL_LIMIT and rec.snr >= 300.0 and rec.saturation_group is None
    shorter = calculate(PROF, EtcRequest("F150W", "RAPID", 19.0, ngroups=rec.ngroups,
                                         nints=rec.nints - 1, subarray="SUB640")) \
        if rec.nints > 1 else None
    assert shorter is None or shorter.snr < 300.0


def test_errors_name_what_is_wrong() -> None:
    with pytest.raises(UnknownOptionError, match="unknown filter 'F999W'; allowed: F150W"):
        calculate(PROF, EtcRequest("F999W", "RAPID", 20.0, ngroups=2))
    with pytest.raises(EtcError, match="ngroups: RAPID allows 1 to 10 groups, got 11"):
        calculate(PROF, EtcRequest("F150W", "RAPID", 20.0, ngroups=11))
    with pytest.raises(EtcError, match="two groups fill the brightest pixel"):
        recommend(PROF, EtcRequest("F150W", "DEEP8", 5.0, snr=10.0))
    with pytest.raises(EtcError, match="snr: give the S/N wanted"):
        recommend(PROF, EtcRequest("F150W", "DEEP8", 20.0))


def test_surface_brightness() -> None:
    r = calculate(PROF, EtcRequest("F200W", "DEEP8", 24.0, surface=True, ngroups=10))
    per_pix = 10 ** (-0.4 * (24.0 - 28.1)) * 0.031**2
    assert r.source_e_s == pytest.approx(per_pix)
    assert r.signal_e_s == pytest.approx(per_pix * math.pi * 4.0**2, rel=1e-6)


def test_cli_json_and_text() -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["etc", "--filter", "F200W", "--readpatt", "MEDIUM8", "--mag", "27",
                               "--snr", "10", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["snr"] >= 10 and data["request"]["readpatt"] == "MEDIUM8"
    res = runner.invoke(main, ["etc", "--filter", "F200W", "--readpatt", "MEDIUM8", "--mag", "27",
                               "--ngroups", "4"])
    assert res.exit_code == 0 and "S/N" in res.output and "saturates: none" in res.output
    res = runner.invoke(main, ["etc", "--filter", "F200W", "--readpatt", "MEDIUM8", "--mag", "27"])
    assert res.exit_code == 2 and "give --ngroups" in res.output
