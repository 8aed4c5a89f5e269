"""The absolute astrometric catalog a site would take from Gaia, for the simulated fields.

Every star of the targets' truth catalogs brighter than :data:`LIMIT_MAG`
(AB, the instrument's first filter standing in for Gaia G) with its
position perturbed by a per-star Gaussian error whose 1-sigma is
``0.2 mas x 10**(0.2 (mag - 15))`` (0.2 mas at mag 15, 2.5 mas at 20.5:
Gaia DR3 positions carried about ten years forward with their proper-motion
errors; simulated stars do not move).  The errors are columns of the
catalog, as Gaia's ``ra_error`` / ``dec_error``.  Written as an ASTROCAT
reference file (DETECTOR ``ANY``): ``<telescope>_astrocat_0001.fits``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.table import Table

from obsflow.models.reffiles import ANY, AstrometricCatalog, RefHeader, write_reference_file
from obsflow.profiles import Instrument, Profile

__all__ = ["EPOCH", "LIMIT_MAG", "astrometric_catalog", "position_error_mas",
           "write_astrocat"]

LIMIT_MAG = 20.5
"""Faintest star in the catalog (AB magnitude in the first filter)."""

EPOCH = 2016.0
"""Julian year of the catalog positions (Gaia DR3's)."""


def position_error_mas(mag: np.ndarray) -> np.ndarray:
    """1-sigma position error per axis of a catalog star of AB magnitude ``mag``, mas."""
    return 0.2 * 10 ** (0.2 * (np.asarray(mag, np.float64) - 15.0))


def astrometric_catalog(truth: list[Table], mag_column: str,
                        rng: np.random.Generator) -> AstrometricCatalog:
    """The catalog of the stars of ``truth`` tables brighter than :data:`LIMIT_MAG`.

    ``SOURCE_ID`` is ``1_000_000 * (table index + 1) + truth id``, so a
    catalog star can be traced to its truth row.
    """
    ids, ras, decs, mags = [], [], [], []
    for k, table in enumerate(truth):
        keep = (np.asarray(table["kind"]) == "star") & (np.asarray(table[mag_column]) < LIMIT_MAG)
        ids.append(1_000_000 * (k + 1) + np.asarray(table["id"][keep], np.int64))
        ras.append(np.asarray(table["ra"][keep], np.float64))
        decs.append(np.asarray(table["dec"][keep], np.float64))
        mags.append(np.asarray(table[mag_column][keep], np.float64))
    ra, dec, mag = np.concatenate(ras), np.concatenate(decs), np.concatenate(mags)
    sigma = position_error_mas(mag)
    d_east, d_north = rng.normal(0.0, 1.0, (2, ra.size)) * sigma
    return AstrometricCatalog(
        np.concatenate(ids), (ra + d_east / 3.6e6 / np.cos(np.deg2rad(dec))) % 360.0,
        dec + d_north / 3.6e6, sigma, sigma.copy(), mag, EPOCH)


def write_astrocat(folder: Path, profile: Profile, inst: Instrument, catalog: AstrometricCatalog,
                   useafter: str) -> Path:
    """Write ``catalog`` as the site's ASTROCAT reference file in ``folder``."""
    header = RefHeader("ASTROCAT", profile.mission.telescope, inst.name, ANY, useafter,
                       pedigree="SIMULATION", author="obsflow simulate",
                       descrip=f"absolute astrometric catalog, stars to AB {LIMIT_MAG} "
                               f"({inst.filters[0].name}), Gaia-like errors",
                       extra=(("EPOCH", EPOCH),))
    name = f"{profile.mission.telescope.lower()}_astrocat_0001.fits"
    return write_reference_file(Path(folder) / name, header, catalog)
