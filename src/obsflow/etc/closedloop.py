"""The ETC's closed loop: observe its recommended exposure of a star, calibrate, measure S/N.

:func:`closed_loop` asks :func:`obsflow.etc.recommend` for the exposure of a
star (AB magnitude) reaching an S/N in a readout pattern on a subarray; the
simulator observes that many groups of the star alone (its time-series mode
with no transit, jitter or drift, centred on the subarray, the profile's
reddest filter) for ``nints`` integrations; the calibration pipeline makes
the ``_rateints``; :func:`aperture_fluxes` measures the star in every
integration at its true position with the ETC's aperture and row-by-row
annulus background.  The measured S/N of one integration is the mean of the
fluxes over their scatter (good to about ``1 / sqrt(2 nints)``).
Used by tests/etc and benchmarks/bench_etc.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.table import Table

from obsflow.etc.calculator import EtcRequest, EtcResult, Photometry, recommend
from obsflow.models.dq import DQ

__all__ = ["LoopResult", "aperture_fluxes", "closed_loop"]


@dataclass(frozen=True)
class LoopResult:
    """The ETC's recommendation and the star's measured fluxes per integration (e-/s)."""

    etc: EtcResult
    flux: np.ndarray

    @property
    def measured_snr(self) -> float:
        """Mean over standard deviation of the per-integration fluxes."""
        return float(self.flux.mean() / self.flux.std(ddof=1))


def aperture_fluxes(sci: np.ndarray, dq: np.ndarray, x: float, y: float,
                    phot: Photometry) -> np.ndarray:
    """Flux per integration of the star at (x, y) (0-based pixels), units of ``sci``.

    ``sci`` (nints, ny, nx) rates, ``dq`` the same shape.  The aperture sum
    (exact overlap) less each row's mean over the annulus pixels (centres
    inside; pixels flagged DO_NOT_USE in any integration left out) times the
    row's aperture area.
    """
    from photutils.aperture import CircularAperture  # imported on use: the CLI starts fast

    nints, ny, nx = sci.shape
    weights = CircularAperture((x, y), phot.radius).to_mask(method="exact").to_image((ny, nx))
    yy, xx = np.mgrid[0:ny, 0:nx]
    r = np.hypot(xx - x, yy - y)
    bad = np.bitwise_or.reduce(dq & int(DQ.DO_NOT_USE), axis=0) > 0
    annulus = (r >= phot.r_in) & (r <= phot.r_out) & ~bad
    rows = annulus.sum(axis=1)
    used = weights.sum(axis=1) > 0
    background = np.where(annulus[None], sci, 0.0).sum(axis=2)[:, used] / rows[used]
    flux = np.sum(np.where(weights[None] > 0, sci, 0.0) * weights[None], axis=(1, 2))
    return np.asarray(flux - background @ weights.sum(axis=1)[used])


def closed_loop(out: Path, profile_name: str, readpatt: str, mag: float, snr: float, *,
                nints: int, seed: int = 5, subarray: str = "SUB64",
                phot: Photometry | None = None) -> LoopResult:
    """Run the loop of the module docstring in folder ``out``; see :class:`LoopResult`."""
    from obsflow.calibrate.pipeline import CalibrationOptions, beside, calibrate_product
    from obsflow.models import read_rateints
    from obsflow.profiles import load_profile
    from obsflow.refdata import FolderRefs
    from obsflow.simulate.run import SimOptions, simulate
    from obsflow.simulate.tso import TsoOptions

    prof = load_profile(profile_name)
    phot = phot or Photometry()
    inst = prof.instruments[0]
    rec = recommend(prof, EtcRequest(inst.filters[-1].name, readpatt, mag, subarray=subarray,
                                     snr=snr, photometry=phot))
    tso = TsoOptions(nints=nints, ngroups=rec.ngroups, readpatt=readpatt,
                     star_e_s=rec.source_e_s, depth=1e-9, jitter_mas=0.0,
                     drift_mas_per_hour=0.0)
    simulate(out, SimOptions(seed=seed, profile=profile_name, subarray=subarray, level1=True,
                             dumps=1, tso=tso))
    uncal = next((out / "level1").glob("*_uncal.fits"))
    calibrate_product(uncal, FolderRefs(out / "refs", prof), prof,
                      CalibrationOptions(place=beside(out / "cal")))
    ints = read_rateints(next((out / "cal").glob("*_rateints.fits")))
    truth = Table.read(next((out / "truth").glob("*_tso.ecsv")))
    flux = aperture_fluxes(np.asarray(ints.sci, np.float64), np.asarray(ints.dq),
                           float(truth.meta["x0_pix"]), float(truth.meta["y0_pix"]), phot)
    return LoopResult(rec, flux * inst.detectors[0].gain_e_per_dn)
