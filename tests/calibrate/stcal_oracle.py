"""Run stcal (the JWST pipeline's algorithms, a test-only dependency) on plain arrays.

stcal's jump detection and OLS_C ramp fit both take the *CDS* read noise
(DN) and rescale it internally (``/ sqrt(2 nframes)`` in ramp fitting,
``/ sqrt(0.5 * 2 nframes)`` in jump detection); obsflow takes the single-read
noise, so the oracle is given ``sqrt(2)`` times obsflow's value: identical
noise model, identical inputs.  Arrays are copied because stcal modifies its
inputs in place.
"""

from __future__ import annotations

import numpy as np

from obsflow.models.dq import DQ

DQFLAGS = {name: int(DQ[name]) for name in (
    "GOOD", "DO_NOT_USE", "SATURATED", "JUMP_DET", "NO_GAIN_VALUE", "REFERENCE_PIXEL",
    "PERSISTENCE", "UNRELIABLE_SLOPE", "CHARGELOSS", "DROPOUT")}


def stcal_jumps(data: np.ndarray, groupdq: np.ndarray, read_noise: np.ndarray, gain: np.ndarray,
                nframes: int, threshold: float = 4.0) -> np.ndarray:
    """stcal two-point difference jump detection; returns the new group DQ."""
    import logging

    from stcal.jump.jump import detect_jumps_data
    from stcal.jump.jump_class import JumpData

    logging.getLogger("stcal").setLevel(logging.WARNING)
    ny, nx = data.shape[2:]
    jd = JumpData(gain2d=np.array(gain, np.float32), rnoise2d=np.array(read_noise * np.sqrt(2.0),
                                                                      np.float32),
                  dqflags=DQFLAGS)
    jd.init_arrays_from_arrays(np.array(data, np.float32), np.array(groupdq, np.uint8),
                               np.zeros((ny, nx), np.uint32))
    jd.nframes = nframes
    jd.dt_group = np.ones(1)
    jd.n_reads_groupdiff = np.ones(1) * 2 * nframes
    jd.rejection_thresh = threshold
    jd.max_cores = "none"
    gdq, _pdq, _n, _ext = detect_jumps_data(jd)
    return gdq


def stcal_ramp_fit(data: np.ndarray, groupdq: np.ndarray, read_noise: np.ndarray,
                   gain: np.ndarray, readout: dict) -> tuple[np.ndarray, ...]:
    """stcal OLS_C ramp fit; returns (slope, dq, var_poisson, var_rnoise, err)."""
    import logging

    from stcal.ramp_fitting.ramp_fit import ramp_fit_data
    from stcal.ramp_fitting.ramp_fit_class import RampData

    logging.getLogger("stcal").setLevel(logging.WARNING)
    ny, nx = data.shape[2:]
    rd = RampData()
    rd.set_arrays(np.array(data, np.float32), np.array(groupdq, np.uint8),
                  np.zeros((ny, nx), np.uint32), np.zeros((ny, nx), np.float32))
    rd.set_meta(name="NIRCAM", frame_time=readout["frame_time"],
                group_time=readout["group_time"], groupgap=readout["groupgap"],
                nframes=readout["nframes"], drop_frames1=None)
    rd.set_dqflags(DQFLAGS)
    image, _ints, _opt = ramp_fit_data(rd, False, np.array(read_noise * np.sqrt(2.0), np.float32),
                                       np.array(gain, np.float32), "OLS_C", "optimal", "none")
    return image
