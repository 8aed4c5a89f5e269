"""The exposure time calculator: S/N, saturation and recommended exposures.

Built on the observatory profile (zero points, PSF, background, detector
noise, readout patterns) and on the calibration's own ramp fit
(:mod:`obsflow.calibrate.ramps`): the noise of a pixel's slope is that of
the optimal-weighting fit the pipeline runs, computed by that fit on
noiseless ramps.  See :mod:`obsflow.etc.calculator` and docs/planning.md.
"""

from obsflow.etc.calculator import EtcRequest, EtcResult, Photometry, calculate, recommend

__all__ = ["EtcRequest", "EtcResult", "Photometry", "calculate", "recommend"]
