"""Time-series mode: a bright star watched for many integrations while a planet transits.

One exposure on a subarray: ``nints`` integrations of a few groups each of a
bright star (its total count rate ``star_e_s``) centred on the subarray, on
the zodiacal background and nothing else.  Per integration the star's flux
is scaled by the limb-darkened transit model (:mod:`obsflow.tso.transit`)
at the integration's mid-time, and its position moves by the pointing:
Gaussian jitter (``jitter_mas`` rms per axis, independent per integration)
plus a slow linear drift (``drift_mas_per_hour`` along a fixed direction).
Each integration's illumination is drawn with the same up-the-ramp physics
as every other exposure (:func:`obsflow.simulate.ramps.simulate_ramps`).

The truth, ``truth/<basename>_tso.ecsv``, holds per integration the
mid-time (MJD UTC, mean of the first and last group's mean read), the
star's offsets from its nominal position (pixels) and its count rate after
the transit (e-/s, before the flat), plus in its metadata the transit
(``t0`` MJD UTC, ``depth``, ``duration`` days, ``impact``, ``u1``, ``u2``),
the star's undimmed rate and the pointing parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.table import Table

from obsflow.exceptions import SimulationError
from obsflow.simulate.sky import moffat_stamp
from obsflow.tso.transit import Transit, transit_flux

__all__ = ["TsoOptions", "TsoScene", "tso_truth_path"]

_STAMP_HALF = 24


@dataclass(frozen=True)
class TsoOptions:
    """What a time-series simulation observes.

    Attributes
    ----------
    nints, ngroups : int
        Integrations, and groups per integration.
    readpatt : str
        Readout pattern (the profile's name).
    star_e_s : float
        The star's total count rate before the flat, e-/s.
    depth, impact, u1, u2 : float
        Transit depth ``(Rp/Rs)**2``, impact parameter, quadratic limb darkening.
    duration_fraction, t0_offset_fraction : float
        Transit duration, and mid-transit offset from the exposure's mid-time,
        as fractions of the exposure's duration.
    jitter_mas : float
        Pointing jitter, rms per axis per integration, milliarcseconds.
    drift_mas_per_hour : float
        Slow linear pointing drift, milliarcseconds per hour.
    """

    nints: int = 1000
    ngroups: int = 6
    readpatt: str = "RAPID"
    star_e_s: float = 1.5e6
    depth: float = 0.01
    impact: float = 0.3
    u1: float = 0.35
    u2: float = 0.2
    duration_fraction: float = 0.4
    t0_offset_fraction: float = 0.04
    jitter_mas: float = 3.0
    drift_mas_per_hour: float = 40.0

    def check(self) -> None:
        """SimulationError naming the first option that cannot be simulated."""
        if self.nints < 2 or self.ngroups < 2:
            raise SimulationError(f"tso: need nints >= 2 and ngroups >= 2, got {self.nints}, {self.ngroups}")
        if not 0 < self.duration_fraction < 1 or abs(self.t0_offset_fraction) > 0.5:
            raise SimulationError("tso: duration_fraction must be in (0, 1) and "
                                  "|t0_offset_fraction| <= 0.5")
        if self.star_e_s <= 0 or self.jitter_mas < 0:
            raise SimulationError("tso: star_e_s must be > 0 and jitter_mas >= 0")


def tso_truth_path(truth_dir: Path, basename: str) -> Path:
    """Where the per-integration truth of an exposure is written."""
    return truth_dir / f"{basename}_tso.ecsv"


class TsoScene:
    """The star's illumination per integration, and the truth behind it.

    ``x0, y0`` nominal star position (0-based pixels of the subarray);
    ``mid_mjd`` (nints,) mid-time of each integration, MJD UTC;
    ``exposure_mjd`` (start, end) of the exposure, MJD UTC; ``background``
    (ny, nx) e-/s; ``fwhm`` PSF FWHM, pixels; ``scale`` arcsec per pixel.
    """

    def __init__(self, options: TsoOptions, x0: float, y0: float, mid_mjd: np.ndarray,
                 exposure_mjd: tuple[float, float], background: np.ndarray, fwhm: float,
                 scale_arcsec: float, rng: np.random.Generator) -> None:
        options.check()
        self.options, self.background, self.fwhm = options, background, fwhm
        self.x0, self.y0, self.mid_mjd = x0, y0, np.asarray(mid_mjd, np.float64)
        start, end = exposure_mjd
        length = end - start
        self.transit = Transit(t0=(start + end) / 2 + options.t0_offset_fraction * length,
                               depth=options.depth, duration=options.duration_fraction * length,
                               impact=options.impact, u1=options.u1, u2=options.u2)
        self.relative = transit_flux(self.mid_mjd, self.transit)
        n = self.mid_mjd.size
        px_per_mas = 1e-3 / scale_arcsec
        angle = rng.uniform(0, 2 * np.pi)
        hours = (self.mid_mjd - start) * 24.0
        drift = options.drift_mas_per_hour * hours * px_per_mas
        jitter = rng.normal(0.0, options.jitter_mas * px_per_mas, (2, n))
        self.dx = drift * np.cos(angle) + jitter[0]
        self.dy = drift * np.sin(angle) + jitter[1]

    def illumination(self, i: int) -> np.ndarray:
        """Integration ``i``'s scene, e-/s per pixel before the flat, float32 (ny, nx)."""
        return self._render(self.x0 + self.dx[i], self.y0 + self.dy[i], float(self.relative[i]))

    def nominal(self) -> np.ndarray:
        """The scene with the star at its nominal position and out of transit, e-/s (ny, nx)."""
        return self._render(self.x0, self.y0, 1.0)

    def _render(self, x: float, y: float, relative: float) -> np.ndarray:
        image = self.background.astype(np.float64)
        xi, yi = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        stamp = moffat_stamp(x - xi, y - yi, _STAMP_HALF, self.fwhm)
        stamp *= self.options.star_e_s * relative
        ny, nx = image.shape
        h = _STAMP_HALF
        ya, yb, xa, xb = max(0, yi - h), min(ny, yi + h + 1), max(0, xi - h), min(nx, xi + h + 1)
        image[ya:yb, xa:xb] += stamp[ya - (yi - h):yb - (yi - h), xa - (xi - h):xb - (xi - h)]
        return image.astype(np.float32)

    def truth_table(self) -> Table:
        """Per-integration truth with the transit and pointing in the metadata."""
        table = Table({"integration": np.arange(self.mid_mjd.size),
                       "mjd_utc": self.mid_mjd, "dx_pix": self.dx, "dy_pix": self.dy,
                       "star_e_s": self.options.star_e_s * self.relative})
        table["mjd_utc"].description = "mid-time of the integration (mean of first and last group)"
        table["star_e_s"].unit = "electron/s"
        table.meta.update({"transit": self.transit.to_dict(), "star_e_s": self.options.star_e_s,
                           "x0_pix": self.x0, "y0_pix": self.y0, "fwhm_pix": self.fwhm,
                           "jitter_mas": self.options.jitter_mas,
                           "drift_mas_per_hour": self.options.drift_mas_per_hour,
                           "time_units": "t0 MJD UTC, duration days"})
        return table
