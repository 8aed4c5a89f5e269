"""The truth folder: what really happened, to check every later stage against.

Per Level-1 product ``truth/<basename>_truth.fits``::

    PRIMARY  exposure metadata (ExposureMeta keywords: the commanded
             pointing) and the true pointing TRA_V1, TDEC_V1, TPA_V3 (deg)
    CUBE     uint16 (nints, ngroups, ny, nx): the cube before packetisation
    RATE     float32 (ny, nx) true illumination rate after the flat, DN/s
             (what a dark-subtracted, linearised ramp fit should give)
    SKY      float32 (ny, nx) sky before the flat, e-/s
    CRHITS   table: HIT, INTEGRATION, FRAME, GROUP, Y, X, CHARGE (e-)

plus ``plan.json`` (with every exposure's true pointing),
``sources_<target>.ecsv``, ``engineering.ecsv``,
``packets.ecsv`` (every packet fault) and ``downlink.json`` (files written).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from obsflow.fileio import write_fits
from obsflow.models.metadata import ExposureMeta
from obsflow.simulate.cosmic_rays import Deposits

__all__ = ["TruthExposure", "read_truth", "write_truth"]


class TruthExposure:
    """What :func:`read_truth` returns: arrays and the deposit table."""

    def __init__(self, meta: ExposureMeta, cube: np.ndarray, rate: np.ndarray, sky: np.ndarray,
                 hits: Table, pointing: tuple[float, float, float] | None = None) -> None:
        self.meta, self.cube, self.rate, self.sky, self.hits = meta, cube, rate, sky, hits
        self.pointing = pointing or (meta.ra_v1, meta.dec_v1, meta.pa_v3)
        """True (ra_v1, dec_v1, pa_v3), degrees: what the sky was rendered with."""


_POINTING_KEYS = (("TRA_V1", "[deg] true boresight right ascension"),
                  ("TDEC_V1", "[deg] true boresight declination"),
                  ("TPA_V3", "[deg] true position angle of V3"))


def write_truth(path: Path, meta: ExposureMeta, cube: np.ndarray, rate: np.ndarray,
                sky: np.ndarray, deposits: Deposits,
                pointing: tuple[float, float, float] | None = None) -> Path:
    """Write one exposure's truth; ``pointing`` the true (ra_v1, dec_v1, pa_v3), deg."""
    primary = fits.PrimaryHDU()
    meta.to_header(primary.header)
    for (key, comment), value in zip(_POINTING_KEYS, pointing or (meta.ra_v1, meta.dec_v1,
                                                                  meta.pa_v3), strict=True):
        primary.header[key] = (float(value), comment)
    hits = fits.BinTableHDU.from_columns([
        fits.Column("HIT", "K", array=deposits.hit),
        fits.Column("INTEGRATION", "J", array=deposits.integration),
        fits.Column("FRAME", "J", array=deposits.frame),
        fits.Column("GROUP", "J", array=deposits.group),
        fits.Column("Y", "J", array=deposits.y),
        fits.Column("X", "J", array=deposits.x),
        fits.Column("CHARGE", "D", unit="electron", array=deposits.charge),
    ], name="CRHITS")
    hdus = fits.HDUList([primary, fits.ImageHDU(cube, name="CUBE"),
                         fits.ImageHDU(rate.astype(np.float32), name="RATE"),
                         fits.ImageHDU(sky.astype(np.float32), name="SKY"), hits])
    hdus["RATE"].header["BUNIT"] = "DN/s"
    hdus["SKY"].header["BUNIT"] = "electron/s"
    return write_fits(hdus, path)


def read_truth(path: Path) -> TruthExposure:
    with fits.open(path, memmap=False) as hdul:
        header = hdul[0].header
        meta = ExposureMeta.from_header(header)
        pointing = tuple(float(header[k]) for k, _ in _POINTING_KEYS) if "TRA_V1" in header \
            else None
        return TruthExposure(meta, np.asarray(hdul["CUBE"].data, np.uint16),
                             np.asarray(hdul["RATE"].data), np.asarray(hdul["SKY"].data),
                             Table(hdul["CRHITS"].data), pointing)  # type: ignore[arg-type]
