"""A detector's static realisation: bias, flat, dark, defects, gain, noise.

Drawn once per (seed, detector) so every exposure and every reference file
of a simulation sees the same pixels.  All arrays are full frame, shape
(ny, nx); :meth:`DetectorModel.window` cuts a subarray.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from obsflow.profiles import Detector, Filter

__all__ = ["DetectorModel", "nonlinear", "realize_detector"]


@dataclass(frozen=True)
class DetectorModel:
    """Per-pixel truth of one detector.

    Attributes
    ----------
    spec : Detector
        The profile entry it was drawn from.
    superbias : float32 (ny, nx)
        Mean reset level, DN.
    response : float32 (ny, nx)
        Pixel response (flat before the per-filter term); 0 for reference
        and dead pixels.
    dark_e_s : float32 (ny, nx)
        Dark current including hot pixels, e-/s.
    gain : float32 (ny, nx)
        e-/DN.
    read_noise_dn : float32 (ny, nx)
        Single-read noise, DN.
    saturation_dn : float32 (ny, nx)
        Raw level (bias included) a pixel reads at full well, DN (ADC clipped).
    hot, dead, reference : bool (ny, nx)
    """

    spec: Detector
    superbias: np.ndarray
    response: np.ndarray
    dark_e_s: np.ndarray
    gain: np.ndarray
    read_noise_dn: np.ndarray
    saturation_dn: np.ndarray
    hot: np.ndarray
    dead: np.ndarray
    reference: np.ndarray

    def flat(self, filt: Filter, filter_index: int) -> np.ndarray:
        """Flat field (normalised response) for one filter, float32 (ny, nx).

        A filter-dependent gentle tilt times the pixel response; 1 on
        reference pixels (they see no light, the flat is not applied there).
        """
        ny, nx = self.response.shape
        # a row and a column broadcast, not two whole-frame index grids (same values)
        xx = np.arange(nx, dtype=np.float32)[None, :]
        yy = np.arange(ny, dtype=np.float32)[:, None]
        angle = 0.7 * filter_index + filt.pivot_um
        tilt = 1 + 0.01 * (np.cos(angle) * (xx / nx - 0.5) + np.sin(angle) * (yy / ny - 0.5))
        flat = (self.response * tilt).astype(np.float32)
        flat[self.reference] = 1.0
        return flat

    def window(self, array: np.ndarray, xstart: int, ystart: int, nx: int, ny: int) -> np.ndarray:
        """Cut a subarray (1-based starts, as SUBSTRT1/2) out of a full-frame array."""
        return array[ystart - 1:ystart - 1 + ny, xstart - 1:xstart - 1 + nx]


def nonlinear(linear_dn: np.ndarray, coeffs: list[float] | tuple[float, ...]) -> np.ndarray:
    """Measured DN from linear DN: ``sum_k coeffs[k] * linear_dn**k`` (Horner)."""
    out = np.full_like(linear_dn, coeffs[-1])
    for c in coeffs[-2::-1]:
        out *= linear_dn
        out += c
    return out


def realize_detector(spec: Detector, seed: int) -> DetectorModel:
    """Draw a detector's static per-pixel properties (deterministic in ``seed`` and name)."""
    rng = np.random.default_rng([seed, 7, *spec.name.encode()])
    ny, nx = spec.ny, spec.nx
    b = spec.ref_border
    reference = np.zeros((ny, nx), bool)
    if b:
        reference[:b, :] = reference[-b:, :] = reference[:, :b] = reference[:, -b:] = True
    column = rng.normal(0, spec.bias_rms_dn * 0.3, nx)
    superbias = (spec.bias_dn + column[None, :]
                 + rng.normal(0, spec.bias_rms_dn, (ny, nx))).astype(np.float32)
    smooth = gaussian_filter(rng.normal(0, 1, (ny // 8 + 1, nx // 8 + 1)), 4)
    smooth = np.kron(smooth / max(smooth.std(), 1e-9), np.ones((8, 8)))[:ny, :nx]
    response = (1 + spec.flat_rms * (0.6 * smooth + 0.8 * rng.normal(0, 1, (ny, nx))))
    response = np.clip(response, 0.2, 2.0).astype(np.float32)
    active = ~reference
    dead = active & (rng.uniform(0, 1, (ny, nx)) < spec.dead_pixel_fraction)
    hot = active & ~dead & (rng.uniform(0, 1, (ny, nx)) < spec.hot_pixel_fraction)
    response[reference | dead] = 0.0
    dark = np.full((ny, nx), spec.dark_current_e_s, np.float32)
    dark += rng.exponential(spec.dark_current_e_s * 0.2, (ny, nx)).astype(np.float32)
    dark[hot] = (10 ** rng.uniform(0, 1.5, int(hot.sum()))).astype(np.float32)
    dark[reference | dead] = 0.0
    gain = (spec.gain_e_per_dn * (1 + rng.normal(0, 0.01, (ny, nx)))).astype(np.float32)
    rn = spec.read_noise_single_e / spec.gain_e_per_dn
    read_noise = (rn * (1 + rng.normal(0, 0.05, (ny, nx)))).astype(np.float32)
    sat = superbias + nonlinear(spec.full_well_e / gain, spec.nonlinearity)
    saturation = np.minimum(sat, spec.adc_max_dn).astype(np.float32)
    return DetectorModel(spec, superbias, response, dark, gain, read_noise, saturation,
                         hot, dead, reference)
