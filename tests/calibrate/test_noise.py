"""Per-pixel honesty on every kind of scene: errors, false jumps and cosmic rays against
a brute-force frame-by-frame Monte Carlo (tests/calibrate/montecarlo.py), with stcal
run on the same data.

Each case: about 30,000 pixel ramps of one scene and one NIRCam-like readout
pattern, 0.5% of the pixels hit by a cosmic ray at a known group (3 to 300
sigma of one group difference).  The pipeline's order: jumps, then the ramp
fit on the flagged groups.  Asserted on the pixels away from any hit:

* the pull ``(slope - true) / err`` has standard deviation within 2% of 1 and
  median within +-0.02;
* false jump flags at most 1e-4 per group difference and no more than
  stcal's on the same data: both are Poisson counts of a few to a few
  dozen, so "more" means more by over 2 sigma of their difference,
  ``ours - stcal > 2 sqrt(ours + stcal)``;

and every cosmic ray above 10 sigma is flagged at its group.
"""

from __future__ import annotations

import numpy as np
import pytest

from obsflow.calibrate.jumps import detect_jumps
from obsflow.calibrate.ramps import fit_ramps
from obsflow.models.dq import DQ

from .montecarlo import FRAME_TIME, GAIN, PATTERNS, READ_NOISE_E, FrameRamps, frame_ramps, scene
from .stcal_oracle import stcal_jumps

CASES = [  # (scene, pattern, ngroups): every scene, every pattern, 3 to 120 groups
    ("random", "RAPID", 120),
    ("smooth", "RAPID", 10),
    ("random", "BRIGHT1", 3),
    ("stars", "BRIGHT2", 10),
    ("hot", "SHALLOW2", 10),
    ("random", "SHALLOW4", 10),
    ("stars", "MEDIUM2", 6),
    ("random", "MEDIUM8", 6),
    ("hot", "DEEP2", 20),
    ("smooth", "DEEP8", 10),
    ("random", "DEEP8", 3),
]
SHAPE = (150, 200)


def _with_hits(kind: str, pattern: str, ngroups: int, seed: int) -> tuple[FrameRamps, np.ndarray]:
    """The scene's ramps with cosmic rays; returns them and the 1-group-difference sigma (DN)."""
    rng = np.random.default_rng(seed)
    rate_e = scene(kind, SHAPE, rng)
    nframes, gap = PATTERNS[pattern]
    tg, gain, rn = FRAME_TIME * (nframes + gap), GAIN, READ_NOISE_E / GAIN
    pfac = 1.0 - (nframes**2 - 1) / (3.0 * nframes * (nframes + gap))
    sigma = np.sqrt(pfac * rate_e * tg / gain**2 + 2 * rn**2 / nframes)  # DN, the truth's
    nhit = SHAPE[0] * SHAPE[1] // 200
    idx = rng.choice(SHAPE[0] * SHAPE[1], nhit, replace=False)
    ys, xs = np.unravel_index(idx, SHAPE)
    size = np.exp(rng.uniform(np.log(3.0), np.log(300.0), nhit))
    hits = [(int(rng.integers(1, ngroups)), int(y), int(x), float(s * sigma[y, x]))
            for y, x, s in zip(ys, xs, size, strict=True)]
    return frame_ramps(rate_e, ngroups, pattern, seed=seed + 1, hits=hits), sigma


@pytest.mark.parametrize(("kind", "pattern", "ngroups"), CASES,
                         ids=[f"{k}-{p}-{n}" for k, p, n in CASES])
def test_errors_and_jumps_honest_per_pixel(kind: str, pattern: str, ngroups: int) -> None:
    r, sigma = _with_hits(kind, pattern, ngroups, seed=100 + ngroups + len(kind) * 7)
    gdq = detect_jumps(r.data, r.groupdq, read_noise=r.read_noise, gain=r.gain,
                       nframes=r.nframes, groupgap=r.groupgap)
    jump = (gdq & DQ.JUMP_DET).astype(bool)[0]

    # every cosmic ray above 10 sigma flagged at its group
    big = [(g, y, x) for g, y, x, dn in r.hits if dn > 10 * sigma[y, x]]
    assert len(big) > 50
    missed = [h for h in big if not jump[h]]
    assert not missed, f"{len(missed)} of {len(big)} cosmic rays above 10 sigma not flagged"

    # pixels away from any hit (and its four neighbours): the noise-only statistics
    near = np.zeros(SHAPE, bool)
    for _g, y, x, _dn in r.hits:
        near[max(y - 1, 0):y + 2, x] = near[y, max(x - 1, 0):x + 2] = True
    quiet = ~near
    ndiff = quiet.sum() * (ngroups - 1)
    ours = int(jump[1:, quiet].sum())
    theirs_gdq = stcal_jumps(r.data, r.groupdq, r.read_noise, r.gain, r.nframes)
    theirs = int((theirs_gdq[0, 1:] & DQ.JUMP_DET).astype(bool)[:, quiet].sum())
    assert ours / ndiff <= 1e-4, (ours, ndiff)
    assert ours - theirs <= 2 * np.sqrt(ours + theirs), (ours, theirs)

    fit = fit_ramps(r.data, gdq, read_noise=r.read_noise, gain=r.gain, **r.readout)
    pull = ((fit.slope - r.rate) / fit.err)[quiet]
    assert pull.size > 25_000 and np.all(np.isfinite(pull))
    assert abs(np.std(pull) - 1.0) < 0.02, np.std(pull)
    assert abs(np.median(pull)) < 0.02, np.median(pull)
