"""Reference files matching a simulated detector, as a calibration team would deliver them.

One FITS file per (detector, type) — and per filter for flats — named
``<telescope>_<detector>_<reftype>[_<filter>]_0001.fits`` with CRDS-style
header keywords: REFTYPE, TELESCOP, INSTRUME, DETECTOR, FILTER (flats),
SUBARRAY ('FULL'), USEAFTER (ISO UTC), PEDIGREE, AUTHOR, DESCRIP, BUNIT.
Arrays are full frame; a subarray product uses the window at SUBSTRT1/2.
Formats are in docs/formats.md ("Reference files").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

from obsflow.fileio import write_fits
from obsflow.models.dq import DQ
from obsflow.profiles import Instrument, Profile
from obsflow.simulate.detector import DetectorModel

__all__ = ["REFTYPES", "inverse_linearity", "photmjsr", "write_reference_files"]

REFTYPES = ("superbias", "dark", "gain", "readnoise", "linearity", "saturation", "flat",
            "mask", "photom")
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


def _header(profile: Profile, inst: Instrument, model: DetectorModel, reftype: str,
            useafter: str, descrip: str, bunit: str) -> fits.Header:
    h = fits.Header()
    h["REFTYPE"] = reftype.upper()
    h["TELESCOP"] = profile.mission.telescope
    h["INSTRUME"] = inst.name
    h["DETECTOR"] = model.spec.name
    h["SUBARRAY"] = "FULL"
    h["USEAFTER"] = (useafter, "use for data taken after this UTC time")
    h["PEDIGREE"] = "SIMULATION"
    h["AUTHOR"] = "obsflow simulate"
    h["DESCRIP"] = descrip
    h["BUNIT"] = bunit
    return h


def _write(path: Path, header: fits.Header, hdus: list[fits.hdu.base.ExtensionHDU]) -> Path:
    return write_fits(fits.HDUList([fits.PrimaryHDU(header=header), *hdus]), path)


def write_reference_files(folder: Path, profile: Profile, inst: Instrument,
                          model: DetectorModel, useafter: str) -> list[Path]:
    """Write every reference type for one detector; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{profile.mission.telescope.lower()}_{model.spec.name.lower()}"
    out: list[Path] = []

    def image(reftype: str, data: np.ndarray, descrip: str, bunit: str, extname: str = "SCI",
              extra: dict | None = None, suffix: str = "") -> None:  # type: ignore[type-arg]
        h = _header(profile, inst, model, reftype, useafter, descrip, bunit)
        for k, v in (extra or {}).items():
            h[k] = v
        out.append(_write(folder / f"{stem}_{reftype}{suffix}_0001.fits", h,
                          [fits.ImageHDU(data, name=extname)]))

    image("superbias", model.superbias, "mean reset level", "DN")
    image("dark", model.dark_e_s / model.gain, "dark current rate incl. hot pixels", "DN/s")
    image("gain", model.gain, "gain", "electrons/DN")
    image("readnoise", model.read_noise_dn, "single-read noise", "DN", extra={"NOISETYP": "SINGLE"})
    image("saturation", model.saturation_dn, "raw level at full well (bias included)", "DN")
    mask = np.zeros(model.superbias.shape, np.uint32)
    mask[model.dead] |= np.uint32(DQ.DEAD | DQ.DO_NOT_USE)
    mask[model.hot] |= np.uint32(DQ.HOT)
    mask[model.reference] |= np.uint32(DQ.REFERENCE_PIXEL)
    image("mask", mask, "bad pixel mask (JWST DQ bits)", "", extname="DQ")
    coeffs = inverse_linearity(model.spec.nonlinearity,
                               float(model.spec.full_well_e / model.spec.gain_e_per_dn) * 1.1)
    image("linearity", coeffs.astype(np.float64), "linear DN = sum_k COEFFS[k] * measured**k "
          "(bias-subtracted DN), every pixel", "DN", extname="COEFFS")
    gain_ratio = np.float32(model.spec.gain_e_per_dn) / model.gain
    for k, filt in enumerate(inst.filters):
        flat = model.flat(filt, k) * gain_ratio  # as measured in DN: QE x gain variations
        flat[model.reference] = 1.0
        image("flat", flat, f"flat field {filt.name} (DN response, nominal gain = 1)", "",
              extra={"FILTER": filt.name}, suffix=f"_{filt.name.lower()}")
    table = fits.BinTableHDU.from_columns([
        fits.Column("FILTER", "16A", array=[f.name for f in inst.filters]),
        fits.Column("PHOTMJSR", "D", array=[photmjsr(f.zeropoint_ab, model.spec.gain_e_per_dn,
                                                     inst.pixel_scale_arcsec) for f in inst.filters]),
        fits.Column("UNCERTAINTY", "D", array=np.zeros(len(inst.filters))),
        fits.Column("PIVOT_UM", "D", array=[f.pivot_um for f in inst.filters]),
    ], name="PHOTOM")
    h = _header(profile, inst, model, "photom", useafter, "DN/s to MJy/sr per filter", "MJy/sr/(DN/s)")
    out.append(_write(folder / f"{stem}_photom_0001.fits", h, [table]))
    return out
