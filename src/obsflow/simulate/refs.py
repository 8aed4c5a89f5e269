"""Reference files matching a simulated detector, as a calibration team would deliver them.

One file per (detector, type) — and per filter for flats — named
``<telescope>_<detector>_<reftype>[_<filter>]_0001.fits``, written with the
one reference-file writer (:func:`obsflow.models.reffiles.write_reference_file`,
which defines the layout: keywords, extensions, dtypes).  Headers say
SUBARRAY 'FULL', PEDIGREE 'SIMULATION', AUTHOR 'obsflow simulate'.  Arrays
are full frame; a subarray product uses the window at SUBSTRT1/2.  Flats are
the pixels' response alone (as a lamp uniform on the focal plane measures
it), with no pixel-area term: photom divides by the relative pixel area
(docs/calibration.md, "Pixel area").

An early-mission delivery can be simulated (``dark_error`` > 0): the dark is
then "measured with errors" (:func:`dark_measurement_error`, an additive
gradient across the detector), and :func:`write_dark_update` writes the
better dark delivered later (the true one, ``..._dark_0002.fits``, same
USEAFTER: as the later delivery it supersedes the first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from obsflow.models.dq import DQ
from obsflow.models.reffiles import PhotomTable, RefHeader, write_reference_file
from obsflow.profiles import Instrument, Profile
from obsflow.simulate.detector import DetectorModel

__all__ = ["dark_measurement_error", "inverse_linearity", "photmjsr", "write_dark_update",
           "write_reference_files"]

_ARCSEC_PER_RAD = 206264.80624709636


def inverse_linearity(coeffs: list[float], max_dn: float, degree: int = 4) -> np.ndarray:
    """Polynomial (lowest order first) giving linear DN from measured DN, fitted on [0, max_dn]."""
    linear = np.linspace(0, max_dn, 2000)
    measured = np.polynomial.polynomial.polyval(linear, coeffs)
    return np.polynomial.polynomial.polyfit(measured, linear, degree)


def photmjsr(zeropoint_ab: float, gain: float, scale_arcsec: float) -> float:
    """MJy/sr per DN/s for a pixel of ``scale_arcsec`` with the filter's AB zero point."""
    omega = (scale_arcsec / _ARCSEC_PER_RAD) ** 2
    return gain * 3631.0e-6 * 10 ** (-0.4 * zeropoint_ab) / omega


def dark_measurement_error(shape: tuple[int, int], mean_dn_s: float) -> np.ndarray:
    """The error of an early-mission dark: a gradient from 0.5x to 1.5x ``mean_dn_s``, DN/s.

    Additive, smooth across the columns, as a dark measured through a light
    leak would be: rates calibrated with it come out too low by this much.
    """
    ny, nx = shape
    ramp = np.linspace(0.5, 1.5, nx, dtype=np.float32) * np.float32(mean_dn_s)
    return np.broadcast_to(ramp[None, :], (ny, nx)).astype(np.float32)


def _stem(profile: Profile, model: DetectorModel) -> str:
    return f"{profile.mission.telescope.lower()}_{model.spec.name.lower()}"


def _header(profile: Profile, inst: Instrument, model: DetectorModel, reftype: str,
            useafter: str, **keywords: Any) -> RefHeader:
    return RefHeader(reftype.upper(), profile.mission.telescope, inst.name, model.spec.name,
                     useafter, author="obsflow simulate", **keywords)


def write_dark_update(folder: Path, profile: Profile, inst: Instrument, model: DetectorModel,
                      useafter: str) -> Path:
    """The better dark delivered after an early one: the true dark, ``_0002``, same USEAFTER."""
    folder.mkdir(parents=True, exist_ok=True)
    header = _header(profile, inst, model, "dark", useafter, pedigree="SIMULATION",
                     descrip="dark current rate incl. hot pixels (remeasured)", bunit="DN/s")
    return write_reference_file(folder / f"{_stem(profile, model)}_dark_0002.fits", header,
                                model.dark_e_s / model.gain)


def write_reference_files(folder: Path, profile: Profile, inst: Instrument,
                          model: DetectorModel, useafter: str,
                          dark_error: float = 0.0) -> list[Path]:
    """Write every reference type for one detector; returns the paths written.

    ``dark_error`` > 0 makes the dark an early, flawed measurement (DN/s, the
    mean of :func:`dark_measurement_error`).
    """
    folder.mkdir(parents=True, exist_ok=True)
    stem = _stem(profile, model)
    out: list[Path] = []

    def write(reftype: str, data: Any, descrip: str, bunit: str, suffix: str = "",
              **keywords: Any) -> None:
        header = _header(profile, inst, model, reftype, useafter, pedigree="SIMULATION",
                         descrip=descrip, bunit=bunit, **keywords)
        out.append(write_reference_file(folder / f"{stem}_{reftype}{suffix}_0001.fits", header,
                                        data))

    write("superbias", model.superbias, "mean reset level", "DN")
    dark = model.dark_e_s / model.gain
    if dark_error > 0:
        write("dark", dark + dark_measurement_error(dark.shape, dark_error),
              "dark current rate, early measurement (light leak)", "DN/s")
    else:
        write("dark", dark, "dark current rate incl. hot pixels", "DN/s")
    write("gain", model.gain, "gain", "electrons/DN")
    write("readnoise", model.read_noise_dn, "single-read noise", "DN",
          extra=(("NOISETYP", "SINGLE"),))
    write("saturation", model.saturation_dn, "raw level at full well (bias included)", "DN")
    mask = np.zeros(model.superbias.shape, np.uint32)
    mask[model.dead] |= np.uint32(DQ.DEAD | DQ.DO_NOT_USE)
    mask[model.hot] |= np.uint32(DQ.HOT)
    mask[model.reference] |= np.uint32(DQ.REFERENCE_PIXEL)
    write("mask", mask, "bad pixel mask (JWST DQ bits)", "")
    coeffs = inverse_linearity(model.spec.nonlinearity,
                               float(model.spec.full_well_e / model.spec.gain_e_per_dn) * 1.1)
    write("linearity", coeffs, "linear DN = sum_k COEFFS[k] * measured**k "
          "(bias-subtracted DN), every pixel", "DN")
    gain_ratio = np.float32(model.spec.gain_e_per_dn) / model.gain
    for k, filt in enumerate(inst.filters):
        flat = model.flat(filt, k) * gain_ratio  # as measured in DN: QE x gain variations
        flat[model.reference] = 1.0
        write("flat", flat, f"flat field {filt.name} (DN response, nominal gain = 1)", "",
              suffix=f"_{filt.name.lower()}", filter=filt.name)
    table = PhotomTable(
        tuple(f.name for f in inst.filters),
        np.array([photmjsr(f.zeropoint_ab, model.spec.gain_e_per_dn, inst.pixel_scale_arcsec)
                  for f in inst.filters], np.float64),
        np.zeros(len(inst.filters)), np.array([f.pivot_um for f in inst.filters], np.float64))
    write("photom", table, "DN/s to MJy/sr per filter", "MJy/sr/(DN/s)")
    return out
