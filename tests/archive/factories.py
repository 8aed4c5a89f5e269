"""Synthetic products for the archive tests: small FITS files with full metadata."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from astropy.io import fits

from obsflow.models.level1 import Level1, write_uncal
from obsflow.models.metadata import ExposureMeta
from obsflow.models.pointing import detector_wcs

BASE = ExposureMeta(
    telescope="OBSFLOW-S", instrument="SSCAM", detector="SSD1", filter="J", program="01234",
    observation=1, visit=1, exposure=1, exposure_id=1, pi_name="A. Rivera",
    title="Deep field", target="DEEP-FIELD-1", target_ra=53.16, target_dec=-27.78,
    ra_v1=53.16, dec_v1=-27.78, pa_v3=0.0, dither_pattern="NONE", dither_position=1,
    dither_npoints=1, readpatt="RAPID", nints=1, ngroups=3, nframes=1, groupgap=0,
    frame_time=1.0, group_time=1.0, subarray="SUB64", substrt1=1, substrt2=1, subsize1=32,
    subsize2=32, expstart=61000.0, expmid=61000.005, expend=61000.01, exposure_duration=864.0,
)


def meta(**changes: object) -> ExposureMeta:
    """:data:`BASE` with some fields changed."""
    return dataclasses.replace(BASE, **changes)  # type: ignore[arg-type]


def _wcs(m: ExposureMeta) -> fits.Header:
    w = detector_wcs(m.ra_v1, m.dec_v1, m.pa_v3, (0.0, 0.0, 0.0), 0.5,
                     (m.subsize1, m.subsize2, 1, 1, m.subsize1, m.subsize2))
    return w.to_header()


def write_product(folder: Path, m: ExposureMeta, kind: str = "cal", seed: int = 0,
                  extra: dict[str, object] | None = None) -> Path:
    """Write ``<basename>_<kind>.fits``: a 2-D SCI image (or a 4-D ramp for ``uncal``)."""
    rng = np.random.default_rng(seed)
    path = folder / f"{m.basename}_{kind}.fits"
    if kind == "uncal":
        cube = rng.integers(1000, 2000, (m.nints, m.ngroups, m.subsize2, m.subsize1),
                            dtype=np.uint16)
        cube[:, :, 10:14, 10:14] += np.arange(m.ngroups, dtype=np.uint16)[None, :, None, None] * 500
        write_uncal(path, Level1(cube, m))
        return path
    primary = fits.PrimaryHDU()
    m.to_header(primary.header)
    for key, value in (extra or {}).items():
        primary.header[key] = value
    image = rng.normal(10.0, 1.0, (m.subsize2, m.subsize1)).astype(np.float32)
    image[12:16, 8:12] += 200.0
    sci = fits.ImageHDU(image, name="SCI")
    sci.header.update(_wcs(m))
    sci.header["BUNIT"] = "DN/s"
    folder.mkdir(parents=True, exist_ok=True)
    fits.HDUList([primary, sci]).writeto(path, checksum=True, overwrite=True)
    return path
