"""Up-the-ramp detector physics, frame by frame, averaged onboard into groups.

For each integration the charge from sky and dark accumulates as Poisson
increments between reads; the frames of a group are averaged onboard.  To
stay fast the ``nframes`` reads of a group are drawn in three exact-moment
pieces per pixel instead of one Poisson draw per frame:

* the charge up to the group's first read, ``Poisson(lambda * (groupgap + 1))``
  (one frame after reset for the first group);
* the charge ``M`` over the remaining ``nframes - 1`` reads, ``Poisson``;
* how ``M`` spreads over those reads: given ``M`` photons each landing in a
  uniformly chosen frame, the group average gains ``M/2`` on average with
  variance ``M (( nframes-1)^2 - 1) / (12 nframes^2)``; that spread is drawn
  as a Gaussian with exactly this mean and variance.

So means, variances and covariances between groups are those of the
frame-by-frame process.  Cosmic-ray charge lands at its exact frame.  Then:
full-well saturation (charge), classical nonlinearity (of the group-averaged
signal), superbias, amplifier and odd/even column drifts and row noise per
group, read noise (single-read sigma / sqrt(nframes)), rounding, and the
16-bit ADC range.  Everything is a pure array function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from obsflow.simulate.cosmic_rays import Deposits, ReadoutTiming
from obsflow.simulate.detector import nonlinear

__all__ = ["PixelInputs", "simulate_ramps"]


@dataclass(frozen=True)
class PixelInputs:
    """Per-pixel inputs of one exposure, all float32 (ny, nx) unless stated.

    ``illum_e_s`` sky after the flat (0 on reference and dead pixels), e-/s;
    ``dark_e_s`` e-/s; ``gain`` e-/DN; ``read_noise_dn`` single read, DN;
    ``superbias`` DN; ``full_well_e`` e-; ``nonlinearity`` coefficients
    (measured DN from linear DN); ``adc_max`` DN; ``amp_of_column`` (nx,)
    int amplifier of each column; ``drift_dn`` amplifier drift rms per
    group; ``row_noise_dn`` per-row offset rms per group; ``column_parity``
    (nx,) 0/1 full-frame column parity.
    """

    illum_e_s: np.ndarray
    dark_e_s: np.ndarray
    gain: np.ndarray
    read_noise_dn: np.ndarray
    superbias: np.ndarray
    full_well_e: float
    nonlinearity: tuple[float, ...]
    adc_max: int
    amp_of_column: np.ndarray
    column_parity: np.ndarray
    drift_dn: float
    row_noise_dn: float


def _offsets(inp: PixelInputs, rng: np.random.Generator) -> np.ndarray:
    """Per-group bias drift image: amplifier offset, odd/even columns, row noise, DN."""
    namps = int(inp.amp_of_column.max()) + 1
    amp = rng.normal(0, inp.drift_dn, namps)
    oddeven = rng.normal(0, inp.drift_dn / 4, (namps, 2))
    column = (amp[inp.amp_of_column] + oddeven[inp.amp_of_column, inp.column_parity])
    column = column.astype(np.float32)
    if inp.row_noise_dn > 0:
        ny = inp.superbias.shape[0]
        rows = rng.normal(0, inp.row_noise_dn, (ny, namps)).astype(np.float32)
        return rows[:, inp.amp_of_column] + column[None, :]
    return np.broadcast_to(column, inp.superbias.shape)


def _digitize(charge: np.ndarray, inp: PixelInputs, nframes: int,
              rng: np.random.Generator) -> np.ndarray:
    """Group-averaged charge (e-) -> uint16 DN."""
    np.minimum(charge, inp.full_well_e, out=charge)
    dn = nonlinear(charge / inp.gain, inp.nonlinearity)
    dn += inp.superbias
    dn += _offsets(inp, rng)
    noise = rng.standard_normal(dn.shape, dtype=np.float32)
    noise *= inp.read_noise_dn
    noise *= np.float32(1.0 / np.sqrt(nframes))
    dn += noise
    np.rint(dn, out=dn)
    np.clip(dn, 0, inp.adc_max, out=dn)
    return dn.astype(np.uint16)


def _cosmic_rays_into(avg: np.ndarray, cumulative: np.ndarray, dep: Deposits,
                      sel: np.ndarray, last_read: int, nframes: int) -> None:
    """Add this group's new deposits: partial weight to the group average, full to the total."""
    if not sel.size:
        return
    idx_y, idx_x = dep.y[sel], dep.x[sel]
    frac = np.clip((last_read - dep.frame[sel] + 1) / nframes, 0.0, 1.0)
    np.add.at(avg, (idx_y, idx_x), (dep.charge[sel] * frac).astype(np.float32))
    np.add.at(cumulative, (idx_y, idx_x), dep.charge[sel].astype(np.float32))


def simulate_ramps(inp: PixelInputs, timing: ReadoutTiming, nints: int, deposits: Deposits,
                   rng: np.random.Generator,
                   illumination: Callable[[int], np.ndarray] | None = None) -> np.ndarray:
    """Simulate the raw ramps of one exposure.

    ``illumination(i)``, when given, is integration ``i``'s illumination after
    the flat (e-/s, float32 (ny, nx)) in place of ``inp.illum_e_s`` (a scene
    that changes between integrations, as in a time series).

    Returns
    -------
    ndarray, uint16, shape (nints, ngroups, ny, nx)
        Group-averaged raw samples, DN.
    """
    ny, nx = inp.superbias.shape
    nf, gap = timing.nframes, timing.groupgap
    var_w = ((nf - 1) ** 2 - 1) / (12.0 * nf**2)
    cube = np.empty((nints, timing.ngroups, ny, nx), np.uint16)
    for i in range(nints):
        if i == 0 or illumination is not None:
            illum = inp.illum_e_s if illumination is None else illumination(i)
            lam = (illum.astype(np.float64) + inp.dark_e_s) * timing.frame_time
            lam_first, lam_gap, lam_within = lam, lam * (gap + 1), lam * (nf - 1)
        charge = np.zeros((ny, nx), np.float32)
        cr_total = np.zeros((ny, nx), np.float32)
        mine = np.flatnonzero(deposits.integration == i)
        previous_read = 0
        for g in range(timing.ngroups):
            charge += rng.poisson(lam_first if g == 0 else lam_gap).astype(np.float32)
            avg = charge.copy()
            if nf > 1:
                m = rng.poisson(lam_within).astype(np.float32)
                spread = rng.standard_normal((ny, nx), dtype=np.float32)
                spread *= np.sqrt(m * np.float32(var_w))
                avg += np.float32(0.5) * m + spread
                charge += m
            avg += cr_total
            last = timing.last_read(g)
            frames = deposits.frame[mine]
            sel = mine[(frames > previous_read) & (frames <= last)]
            _cosmic_rays_into(avg, cr_total, deposits, sel, last, nf)
            previous_read = last
            cube[i, g] = _digitize(avg, inp, nf, rng)
    return cube
