"""The ETC's closed loop (:mod:`obsflow.etc.closedloop`) on the small mission's profile.

Every readout pattern of the profile, from a read-noise-limited faint star to
one filling its brightest pixel past half of full well: the S/N measured in
the calibrated ``_rateints`` (mean over scatter of ``K`` integrations' fluxes,
good to ~4% at K = 300) is within 10% of the ETC's prediction for one
integration, and the mean flux within 5% of the ETC's signal.  The Webb-like
profile's nine patterns are swept by benchmarks/bench_etc.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from obsflow.etc.closedloop import closed_loop

K = 300
# (readout pattern, AB magnitude, S/N asked, what the case covers)
CASES = [("DEEP8", 15.0, 5.0, "faint"), ("SHALLOW4", 13.0, 30.0, "middle"),
         ("RAPID", 6.0, 1000.0, "near saturation")]


@pytest.mark.parametrize(("readpatt", "mag", "snr", "regime"), CASES, ids=[c[0] for c in CASES])
def test_measured_snr_matches_the_etc(tmp_path: Path, readpatt: str, mag: float, snr: float,
                                      regime: str) -> None:
    loop = closed_loop(tmp_path, "smallsat", readpatt, mag, snr, nints=K)
    etc = loop.etc
    assert etc.snr >= snr and etc.saturation_group is None
    if regime == "faint":
        assert etc.snr_per_integration < 10
    if regime == "near saturation":
        assert etc.peak_fill > 0.5
    assert loop.measured_snr == pytest.approx(etc.snr_per_integration, rel=0.10)
    assert loop.flux.mean() == pytest.approx(etc.signal_e_s, rel=0.05)


def test_every_pattern_is_covered() -> None:
    from obsflow.profiles import load_profile

    patterns = {r.name for r in load_profile("smallsat").instruments[0].readout_patterns}
    assert {c[0] for c in CASES} == patterns
