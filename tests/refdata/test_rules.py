"""refdata.rules converts EXPSTART as astropy does, without importing it."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.time import Time
from hypothesis import given, settings
from hypothesis import strategies as st

from obsflow.refdata.rules import mjd_utc_iso


def _astropy(mjd: float) -> str:
    return str(Time(mjd, format="mjd", scale="utc").isot)[:19]


# ERFA warns of "dubious years" past its leap-second table; the conversion is the same
pytestmark = pytest.mark.filterwarnings("ignore::erfa.ErfaWarning")


@settings(max_examples=300)
@given(st.integers(41317, 80000), st.integers(0, 86_399_999),
       st.sampled_from([0.0, 0.5, 0.5 - 1e-6, 0.5 + 1e-6, 1e-9, -1e-9]))
def test_iso_near_millisecond_boundaries_is_astropys(day: int, ms: int, nudge: float) -> None:
    mjd = day + (ms + nudge) / 86_400_000
    assert mjd_utc_iso(mjd) == _astropy(mjd)


def test_many_starts_are_astropys() -> None:
    rng = np.random.default_rng(5)
    starts = rng.uniform(41317, 80000, 5000)
    isot = Time(starts, format="mjd", scale="utc").isot
    assert [mjd_utc_iso(float(m)) for m in starts] == [s[:19] for s in isot]


def test_leap_second_days_and_old_dates_are_astropys() -> None:
    leap_day = 57753  # 2016-12-31, which ended with 23:59:60
    for mjd in (leap_day + 0.99999, leap_day + 0.999995, leap_day + 0.5, 40000.25, 41316.9999999):
        assert mjd_utc_iso(mjd) == _astropy(mjd)
    assert mjd_utc_iso(leap_day + 0.99999) == "2016-12-31T23:59:60"  # a day of 86,401 s
