"""Steps: thin wrappers that feed an exposure's working arrays and references to the algorithms.

Each step has a name, its parameters with defaults (types are checked on
override), and the reference types it needs.  A step function takes the
:class:`Work` state and its parameters and returns a status string
(``COMPLETE`` or ``SKIPPED: why``).  The pipeline owns ``Work.data`` (its
own float32 copy of the cube), so steps use the ``..._inplace`` algorithms.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from obsflow.calibrate import corrections as cor
from obsflow.calibrate.image import ImageArrays, apply_flat, apply_photom, estimate_background
from obsflow.calibrate.refpix import (
    correct_reference_pixels_inplace,
    correction_variance,
    reference_layout,
)
from obsflow.models.metadata import ExposureMeta
from obsflow.models.pointing import detector_wcs, relative_pixel_area
from obsflow.models.reffiles import read_photom, read_reference_array
from obsflow.profiles import Instrument
from obsflow.refdata.validate import RefRecord

if TYPE_CHECKING:  # the compiled kernels load when a step runs, not when recipes are read
    from obsflow.calibrate.ramps import IntsFit, RampFit, RampSums

__all__ = ["QUANTIZATION_VAR", "STEPS", "StepSpec", "Work"]

QUANTIZATION_VAR = 1.0 / 12.0
"""Variance of rounding a group average to whole DN, DN**2 (uniform error of 1 DN width)."""

logger = logging.getLogger(__name__)


@dataclass
class Work:
    """The state of one exposure going through a recipe."""

    meta: ExposureMeta
    instrument: Instrument
    data: np.ndarray
    groupdq: np.ndarray | None
    refs: dict[str, RefRecord]
    pixeldq: np.ndarray | None = None
    fit: RampFit | None = None
    image: ImageArrays | None = None
    header: dict[str, Any] = field(default_factory=dict)
    wcs: Any = None
    var_extra: dict[str, float] = field(default_factory=dict)
    sums: RampSums | None = None
    ints: IntsFit | None = None
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def group_var_extra(self) -> float:
        """White noise on every group average on top of READNOISE, DN**2: rounding to whole
        DN plus each step's own (``var_extra``, by step: a step run again on the next block
        of integrations sets, never adds)."""
        return QUANTIZATION_VAR + sum(self.var_extra.values())

    def set_fit(self, fit: RampFit) -> None:
        """Keep the exposure's ramp fit and start the stage-2 image from it."""
        assert self.pixeldq is not None
        self.fit = fit
        self.image = ImageArrays(fit.slope, fit.err, fit.var_poisson, fit.var_rnoise,
                                 fit.dq | self.pixeldq)

    def read_noise(self) -> np.ndarray:
        """Effective single-read noise, DN (ny, nx), for jump detection and ramp fitting.

        READNOISE plus the white per-group noise the raw data and the
        corrections carry on top of it (``group_var_extra``, DN**2 per group
        average: rounding to whole DN, reference-pixel correction noise),
        folded in as ``sqrt(rn**2 + nframes * group_var_extra)`` so that the
        per-group variance ``rn**2 / nframes`` comes out right.
        """
        key = f"effective READNOISE {self.group_var_extra!r}"
        if key not in self._arrays:
            rn = self.ref("READNOISE").astype(np.float32)
            extra = np.float32(self.meta.nframes * self.group_var_extra)
            self._arrays[key] = np.sqrt(rn * rn + extra)
        return self._arrays[key]

    def ref(self, reftype: str) -> np.ndarray:
        """The reference array of ``reftype``, cut to this exposure's subarray window.

        Read once per exposure (kept for the later steps); treat it as read-only.
        """
        if reftype not in self._arrays:
            arr = self._read_ref(reftype)
            arr.flags.writeable = False
            self._arrays[reftype] = arr
        return self._arrays[reftype]

    def _read_ref(self, reftype: str) -> np.ndarray:
        rec, m = self.refs[reftype], self.meta
        window = None
        if rec.subarray == "FULL" and m.subarray != "FULL":
            window = (m.substrt1, m.substrt2, m.subsize1, m.subsize2)
        return read_reference_array(rec.path, reftype, window)


@dataclass(frozen=True)
class StepSpec:
    """A step: its function, parameter defaults and the reference types it reads."""

    run: Callable[[Work, dict[str, Any]], str]
    defaults: dict[str, Any]
    reftypes: tuple[str, ...] = ()
    stage: int = 1


def _dq_init(w: Work, p: dict[str, Any]) -> str:
    w.pixeldq, w.groupdq = cor.dq_init(w.ref("MASK"), w.groupdq, w.data.shape)
    return "COMPLETE"


SATURATION_MARGIN = 5.0
"""Groups within this many sigma of a group's read noise below SATURATION are flagged too."""


def _saturation(w: Work, p: dict[str, Any]) -> str:
    """Flag groups from SATURATION less ``noise_margin`` x a group's read noise on
    (:func:`obsflow.calibrate.corrections.saturation_threshold`)."""
    assert w.groupdq is not None and w.pixeldq is not None
    level = cor.saturation_threshold(w.ref("SATURATION"), w.ref("READNOISE"), w.meta.nframes,
                                     float(p["noise_margin"]))
    w.groupdq, w.pixeldq = cor.flag_saturation(w.data, w.groupdq, level, w.pixeldq)
    return "COMPLETE"


def _superbias(w: Work, p: dict[str, Any]) -> str:
    cor.subtract_superbias_inplace(w.data, w.ref("SUPERBIAS").astype(np.float32))
    return "COMPLETE"


def _refpix(w: Work, p: dict[str, Any]) -> str:
    assert w.pixeldq is not None
    det = w.instrument.detector(w.meta.detector)
    layout = reference_layout(w.pixeldq, w.meta.substrt1 - 1, det.nx // det.amplifiers)
    if not layout.has_rows:
        logger.warning("%s: no reference rows in subarray %s; refpix skipped", w.meta.basename,
                       w.meta.subarray)
        return "SKIPPED: no reference rows in this subarray"
    correct_reference_pixels_inplace(w.data, layout, bool(p["odd_even"]), int(p["side_smoothing"]))
    w.var_extra["refpix"] = correction_variance(w.ref("READNOISE"), layout, w.meta.nframes,
                                                bool(p["odd_even"]), int(p["side_smoothing"]))
    return "COMPLETE" if layout.has_columns or not p["side_smoothing"] else \
        "COMPLETE: no side reference columns, rows only"


def _linearity(w: Work, p: dict[str, Any]) -> str:
    cor.correct_linearity_inplace(w.data, w.ref("LINEARITY"))
    return "COMPLETE"


def _dark(w: Work, p: dict[str, Any]) -> str:
    m = w.meta
    times = cor.group_mean_times(m.ngroups, m.frame_time, m.nframes, m.groupgap)
    cor.subtract_dark_inplace(w.data, w.ref("DARK"), times)
    return "COMPLETE"


def _jump(w: Work, p: dict[str, Any]) -> str:
    assert w.groupdq is not None
    from obsflow.calibrate.jumps import JumpOptions, detect_jumps

    opts = JumpOptions(**{k: v for k, v in p.items() if k not in ("threshold", "per_integration")})
    # per_integration: each integration's differences on their own (a time series, whose
    # pixels' rates change between integrations with pointing jitter and the transit, must
    # not pool them: a PSF-core pixel moving by 0.1 pixel changes its rate by several sigma)
    detect_jumps(w.data, w.groupdq, read_noise=w.read_noise(), gain=w.ref("GAIN"),
                 nframes=w.meta.nframes, groupgap=w.meta.groupgap,
                 threshold=float(p["threshold"]), options=opts, out=w.groupdq,
                 per_integration=bool(p["per_integration"]))
    return "COMPLETE"


def _ramp_fit(w: Work, p: dict[str, Any]) -> str:
    """The whole exposure (``w.sums`` None), or the block of integrations in ``w.data``
    added to ``w.sums`` (its integrations in ``w.ints``; the pipeline finishes the exposure)."""
    from obsflow.calibrate.ramps import RampTiming, fit_block, fit_ramps

    assert w.groupdq is not None and w.pixeldq is not None
    m = w.meta
    timing = RampTiming.make(w.data.shape[2:], read_noise=w.read_noise(), gain=w.ref("GAIN"),
                             frame_time=m.frame_time, group_time=m.group_time,
                             nframes=m.nframes, groupgap=m.groupgap)
    if w.sums is None:
        w.set_fit(fit_ramps(w.data, w.groupdq, read_noise=timing.read_noise, gain=timing.gain,
                            frame_time=m.frame_time, group_time=m.group_time,
                            nframes=m.nframes, groupgap=m.groupgap))
    else:
        w.ints = fit_block(w.data, w.groupdq, timing, w.sums)
    return "COMPLETE"


def _flat_field(w: Work, p: dict[str, Any]) -> str:
    assert w.image is not None
    w.image = apply_flat(w.image, w.ref("FLAT"))
    return "COMPLETE"


def _photom(w: Work, p: dict[str, Any]) -> str:
    assert w.image is not None
    rec = w.refs["PHOTOM"]
    photmjsr = read_photom(rec.path).photmjsr_for(w.meta.filter, rec.name)
    m, det = w.meta, w.instrument.detector(w.meta.detector)
    area = relative_pixel_area(det.distortion, (det.nx, det.ny, m.substrt1, m.substrt2,
                                                m.subsize1, m.subsize2))
    w.image = apply_photom(w.image, photmjsr, area)
    w.header["PHOTMJSR"] = (photmjsr, "[MJy/sr / (DN/s)] flux conversion applied")
    w.header["BUNIT"] = "MJy/sr"
    return "COMPLETE"


def _wcs(w: Work, p: dict[str, Any]) -> str:
    m, det = w.meta, w.instrument.detector(w.meta.detector)
    w.wcs = detector_wcs(m.ra_v1, m.dec_v1, m.pa_v3, (det.v2_arcsec, det.v3_arcsec,
                                                      det.rotation_deg),
                         w.instrument.pixel_scale_arcsec,
                         (det.nx, det.ny, m.substrt1, m.substrt2, m.subsize1, m.subsize2),
                         det.distortion)
    return "COMPLETE"


def _background(w: Work, p: dict[str, Any]) -> str:
    assert w.image is not None
    bkg = estimate_background(w.image.sci, w.image.dq, float(p["sigma"]))
    w.header["BKGLEVEL"] = (bkg.level, "sigma-clipped median background, SCI units")
    w.header["BKGRMS"] = (bkg.rms, "sigma-clipped background scatter, SCI units")
    return "COMPLETE"


_JUMP_DEFAULTS: dict[str, Any] = {"threshold": 4.0, "threshold_3": 5.0, "threshold_2": 6.0,
                                  "flag_neighbors": True, "neighbor_min": 10.0,
                                  "neighbor_max": 1000.0, "large_events": False,
                                  "large_event_min_area": 20, "large_event_expand": 2.0,
                                  "stcal_sigma": False, "per_integration": False}

STEPS: dict[str, StepSpec] = {
    "dq_init": StepSpec(_dq_init, {}, ("MASK",)),
    "saturation": StepSpec(_saturation, {"noise_margin": SATURATION_MARGIN},
                           ("SATURATION", "READNOISE")),
    "superbias": StepSpec(_superbias, {}, ("SUPERBIAS",)),
    "refpix": StepSpec(_refpix, {"odd_even": True, "side_smoothing": 11}),
    "linearity": StepSpec(_linearity, {}, ("LINEARITY",)),
    "dark": StepSpec(_dark, {}, ("DARK",)),
    "jump": StepSpec(_jump, _JUMP_DEFAULTS, ("READNOISE", "GAIN")),
    "ramp_fit": StepSpec(_ramp_fit, {}, ("READNOISE", "GAIN")),
    "flat_field": StepSpec(_flat_field, {}, ("FLAT",), stage=2),
    "photom": StepSpec(_photom, {}, ("PHOTOM",), stage=2),
    "wcs": StepSpec(_wcs, {}, (), stage=2),
    "background": StepSpec(_background, {"sigma": 3.0}, (), stage=2),
}
"""Every step obsflow knows, by name."""
