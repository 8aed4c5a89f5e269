"""Signal to noise, saturation and the exposure a requested S/N needs.

The model, pixel by pixel on a stamp centred on the source:

* source: a point source of AB magnitude ``m`` gives ``10**(-0.4 (m - ZP))``
  e-/s in total (``ZP`` the filter's zero point), spread by the profile's
  PSF (the simulator's Moffat, FWHM from the filter's pivot wavelength,
  centred on a pixel); a surface brightness (AB mag per square arcsec)
  gives that rate times the pixel's area on every pixel;
* background: the filter's zodiacal surface brightness
  (:func:`obsflow.simulate.sky.background_e_s`) and the detector's dark
  current, e-/s per pixel;
* noise of each pixel's slope: the calibration's ramp fit
  (:func:`obsflow.calibrate.ramps.fit_block`) run on the pixel's noiseless
  ramp gives the coefficients of its optimal-weighting fit and hence the
  exact Poisson variance per unit rate and read-noise variance (single-read
  noise from the profile, plus the 1/12 DN**2 of rounding each group);
  the Poisson part is scaled by the pixel's true rate;
* photometry (point sources): the sum over a circular aperture (exact
  pixel overlap) less a background measured row by row in an annulus, as
  :mod:`obsflow.tso.photometry` measures it.  The signal is the source's
  rate in the aperture less what its wings put in the annulus; the variance
  is the aperture pixels' plus each row's background error times the row's
  aperture area.  A surface brightness is summed over the aperture with a
  known background (no annulus);
* integrations are independent: S/N grows as the root of their number;
* saturation: the charge of the brightest pixel at the last read of each
  group against the detector's full well; the first group reaching it is
  the saturating group.

:func:`calculate` gives the S/N of a given exposure, :func:`recommend` the
shortest exposure (groups and integrations of a readout pattern) reaching a
requested S/N without filling the brightest pixel beyond ``FILL_LIMIT``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from obsflow.calibrate.ramps import RampTiming, fit_block
from obsflow.exceptions import EtcError
from obsflow.profiles import Detector, Instrument, Profile, ReadoutPattern, Subarray
from obsflow.simulate.cosmic_rays import ReadoutTiming
from obsflow.simulate.sky import background_e_s, moffat_stamp

__all__ = ["FILL_LIMIT", "EtcRequest", "EtcResult", "Photometry", "calculate", "recommend"]

FILL_LIMIT = 0.8
"""A recommended exposure fills the brightest pixel to at most this fraction of full well."""

MAX_NINTS = 100_000
"""The most integrations :func:`recommend` will suggest."""

_QUANTIZATION_DN2 = 1.0 / 12.0


@dataclass(frozen=True)
class Photometry:
    """The aperture photometry an S/N refers to, pixels (radius, annulus inner and outer)."""

    radius: float = 4.0
    r_in: float = 12.0
    r_out: float = 22.0

    def check(self) -> None:
        if not 0 < self.radius < self.r_in < self.r_out:
            raise EtcError(f"photometry: need 0 < radius < r_in < r_out pixels, got "
                           f"{self.radius}, {self.r_in}, {self.r_out}")


@dataclass(frozen=True)
class EtcRequest:
    """What to compute.

    Attributes
    ----------
    filter, readpatt : str
        Filter and readout pattern names from the profile.
    magnitude : float
        AB magnitude (point source) or AB magnitude per square arcsec (``surface``).
    surface : bool
        A uniform surface brightness instead of a point source.
    ngroups, nints : int
        The exposure (:func:`calculate`; ``ngroups`` None for :func:`recommend`).
    snr : float or None
        The S/N wanted (:func:`recommend`).
    subarray : str
        Subarray name (sets the frame time).
    instrument, detector : str or None
        Names from the profile; the first when None.
    photometry : Photometry
        Aperture and background annulus, pixels.
    """

    filter: str
    readpatt: str
    magnitude: float
    surface: bool = False
    ngroups: int | None = None
    nints: int = 1
    snr: float | None = None
    subarray: str = "FULL"
    instrument: str | None = None
    detector: str | None = None
    photometry: Photometry = field(default_factory=Photometry)


@dataclass(frozen=True)
class EtcResult:
    """The S/N and what it is made of (rates in e-/s, times in seconds).

    ``snr`` for the whole exposure, ``snr_per_integration`` for one;
    ``source_e_s`` the source's total rate (point) or per pixel (surface);
    ``signal_e_s`` what the photometry measures of it; ``background_e_s``
    and ``dark_e_s`` per pixel; ``peak_e_s`` the brightest pixel's total
    rate; ``peak_fill`` its charge at the last read over full well;
    ``saturation_group`` the first group (1-based) reaching full well, None
    when none does; ``exposure_time_s`` the exposure's duration (resets
    included, as the planner schedules it); ``effective_time_s`` from the
    first to the last group read, summed over integrations; ``noise`` the
    variance budget of one integration's measurement, (e-/s)**2.
    """

    request: EtcRequest
    ngroups: int
    nints: int
    snr: float
    snr_per_integration: float
    source_e_s: float
    signal_e_s: float
    background_e_s: float
    dark_e_s: float
    peak_e_s: float
    peak_fill: float
    saturation_group: int | None
    exposure_time_s: float
    effective_time_s: float
    noise: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (the CLI's ``--json`` output)."""
        out = asdict(self)
        out["request"] = asdict(self.request)
        return out


@dataclass(frozen=True)
class _Setup:
    inst: Instrument
    det: Detector
    readout: ReadoutPattern
    sub: Subarray
    source: np.ndarray  # e-/s per pixel of the source on the stamp
    sky_e_s: float
    rate: float  # the source's total (point) or per-pixel (surface) rate, e-/s


def _setup(profile: Profile, req: EtcRequest) -> _Setup:
    inst = profile.instrument(req.instrument) if req.instrument else profile.instruments[0]
    det = inst.detector(req.detector) if req.detector else inst.detectors[0]
    filt = inst.filter(req.filter)
    readout, sub = inst.readout(req.readpatt), inst.subarray(req.subarray)
    if not math.isfinite(req.magnitude):
        raise EtcError(f"magnitude must be a finite AB magnitude, got {req.magnitude}")
    req.photometry.check()
    half = int(math.ceil(req.photometry.r_out)) + 2
    rate = 10 ** (-0.4 * (req.magnitude - filt.zeropoint_ab))
    if req.surface:
        source = np.full((2 * half + 1, 2 * half + 1), rate * inst.pixel_scale_arcsec**2)
    else:
        source = rate * moffat_stamp(0.0, 0.0, half, inst.psf_fwhm_pix_per_um * filt.pivot_um)
    return _Setup(inst, det, readout, sub, source, background_e_s(filt, inst.pixel_scale_arcsec),
                  float(source.max()) if req.surface else rate)


def _frames(s: _Setup, ngroups: int) -> ReadoutTiming:
    return ReadoutTiming(ngroups, s.readout.nframes, s.readout.groupgap, s.sub.frame_time_s)


def slope_variance(rate_e_s: np.ndarray, det: Detector, timing: ReadoutTiming) -> np.ndarray:
    """Variance of each pixel's one-integration slope, (e-/s)**2, as the pipeline fits it.

    ``rate_e_s`` (n,) true rates (sky, source and dark), e-/s.  The ramp fit
    runs on the noiseless group averages (DN), giving its optimal-weight
    coefficients; the Poisson variance per unit rate is scaled by the true
    rate, the read-noise variance taken as it is.
    """
    gain = det.gain_e_per_dn
    rate_dn = np.asarray(rate_e_s, np.float64) / gain
    mid_read = np.array([timing.last_read(g) - (timing.nframes - 1) / 2
                         for g in range(timing.ngroups)])
    ramp = rate_dn[None, :] * timing.frame_time * mid_read[:, None]
    data = ramp[None, :, None, :].astype(np.float32)
    n = rate_dn.size
    rn = math.sqrt((det.read_noise_single_e / gain) ** 2 + timing.nframes * _QUANTIZATION_DN2)
    fit = fit_block(data, np.zeros(data.shape, np.uint8), RampTiming.make(
        (1, n), read_noise=rn, gain=gain, frame_time=timing.frame_time,
        group_time=(timing.nframes + timing.groupgap) * timing.frame_time,
        nframes=timing.nframes, groupgap=timing.groupgap), None)
    var_dn = fit.var_poisson_unit[0, 0].astype(np.float64) * rate_dn / gain
    var_dn += fit.var_rnoise[0, 0]
    return var_dn * gain**2


def _geometry(req: EtcRequest, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Aperture weights (exact overlap) and annulus membership (pixel centres) on the stamp."""
    from photutils.aperture import CircularAperture  # imported on use: the CLI starts fast

    ny, nx = shape
    c = (nx - 1) / 2
    weights = CircularAperture((c, c), req.photometry.radius).to_mask(
        method="exact").to_image(shape)
    yy, xx = np.mgrid[0:ny, 0:nx]
    r = np.hypot(xx - c, yy - c)
    annulus = (r >= req.photometry.r_in) & (r <= req.photometry.r_out)
    return weights, annulus


def _measure(s: _Setup, req: EtcRequest, ngroups: int) -> tuple[float, float, dict[str, float]]:
    """(signal e-/s, variance (e-/s)**2, variance budget) of one integration's photometry."""
    timing = _frames(s, ngroups)
    dark = s.det.dark_current_e_s
    total = s.source + s.sky_e_s + dark
    var = slope_variance(total.ravel(), s.det, timing).reshape(total.shape)
    weights, annulus = _geometry(req, total.shape)
    if req.surface:
        v = float(np.sum(weights**2 * var))
        return float(np.sum(weights * s.source)), v, {"aperture": v, "background": 0.0}
    rows = annulus.sum(axis=1)
    ap_rows = weights.sum(axis=1)
    used = ap_rows > 0
    ann_mean = np.where(annulus, s.source, 0.0).sum(axis=1)[used] / rows[used]
    ann_var = np.where(annulus, var, 0.0).sum(axis=1)[used] / rows[used] ** 2
    signal = float(np.sum(weights * s.source) - np.sum(ap_rows[used] * ann_mean))
    v_ap = float(np.sum(weights**2 * var))
    v_bkg = float(np.sum(ap_rows[used] ** 2 * ann_var))
    return signal, v_ap + v_bkg, {"aperture": v_ap, "background": v_bkg}


def _result(s: _Setup, req: EtcRequest, ngroups: int, nints: int) -> EtcResult:
    if not 1 <= ngroups <= s.readout.max_ngroups:
        raise EtcError(f"ngroups: {s.readout.name} allows 1 to {s.readout.max_ngroups} groups, "
                       f"got {ngroups}")
    if nints < 1:
        raise EtcError(f"nints must be at least 1, got {nints}")
    signal, var, budget = _measure(s, req, ngroups)
    snr1 = signal / math.sqrt(var) if var > 0 else 0.0
    timing = _frames(s, ngroups)
    peak = float(s.source.max() + s.sky_e_s + s.det.dark_current_e_s)
    charge = [peak * timing.frame_time * timing.last_read(g) for g in range(ngroups)]
    full = s.det.full_well_e
    saturating = next((g + 1 for g, q in enumerate(charge) if q >= full), None)
    ramp_s = (timing.last_read(ngroups - 1) - timing.nframes) * timing.frame_time
    return EtcResult(
        request=replace(req, ngroups=ngroups, nints=nints), ngroups=ngroups, nints=nints,
        snr=snr1 * math.sqrt(nints), snr_per_integration=snr1,
        source_e_s=s.rate,
        signal_e_s=signal, background_e_s=s.sky_e_s, dark_e_s=s.det.dark_current_e_s,
        peak_e_s=peak, peak_fill=charge[-1] / full, saturation_group=saturating,
        exposure_time_s=nints * (timing.frames + 1) * timing.frame_time,
        effective_time_s=nints * ramp_s, noise=budget)


def calculate(profile: Profile, request: EtcRequest) -> EtcResult:
    """The S/N of ``request``'s exposure (``ngroups`` and ``nints`` given).

    Raises EtcError (bad numbers) or UnknownOptionError (a name not in the profile).
    """
    if request.ngroups is None:
        raise EtcError("ngroups: give the number of groups (or ask for an S/N with recommend)")
    return _result(_setup(profile, request), request, request.ngroups, request.nints)


def recommend(profile: Profile, request: EtcRequest) -> EtcResult:
    """The shortest exposure of ``request.readpatt`` reaching ``request.snr``.

    Every number of groups from 2 up to the pattern's maximum that keeps the
    brightest pixel below ``FILL_LIMIT`` of full well is tried with the
    fewest integrations reaching the S/N; the shortest duration wins (ties:
    fewer integrations).  Raises EtcError when even two groups fill the
    pixel beyond the limit or the S/N needs more than ``MAX_NINTS`` integrations.
    """
    if request.snr is None or not request.snr > 0:
        raise EtcError(f"snr: give the S/N wanted (> 0), got {request.snr}")
    s = _setup(profile, request)
    best: EtcResult | None = None
    for ng in range(2, s.readout.max_ngroups + 1):
        one = _result(s, request, ng, 1)
        if one.peak_fill > FILL_LIMIT:
            break
        if one.snr_per_integration <= 0:
            continue
        nints = max(1, math.ceil((request.snr / one.snr_per_integration) ** 2 - 1e-9))
        if nints > MAX_NINTS:
            continue
        candidate = _result(s, request, ng, nints)
        if best is None or (candidate.exposure_time_s, nints) < (best.exposure_time_s, best.nints):
            best = candidate
    if best is None:
        one = _result(s, request, 2, 1)
        if one.peak_fill > FILL_LIMIT:
            raise EtcError(f"{request.readpatt} on {request.subarray}: two groups fill the "
                           f"brightest pixel to {one.peak_fill:.0%} of full well (limit "
                           f"{FILL_LIMIT:.0%}); use a smaller subarray, a faster pattern or "
                           "another filter")
        raise EtcError(f"S/N {request.snr} needs more than {MAX_NINTS} integrations of "
                       f"{request.readpatt}")
    return best
