"""Isolated-star flux pulls over many simulated fields, and where they come from.

Accuracy, not speed: the issue's photometry target (median pull within +-0.1,
MAD spread within 10% of 1) needs hundreds of stars to decide, so this pools
the stage-3 truth field (tests/stage3/conftest.py) over seeds, and splits
each star's pull against noiseless truth mosaics: every ``_cal``'s true sky
(truth SKY, e-/s) minus its true background, and that background, both in
MJy/sr and drizzled with the data's own pixel maps and weights.  Per star, in
sigma of its catalog error (medians printed per S/N bin):

* ``src``: the noiseless sources' light in the total aperture / its encircled
  energy, minus the true flux (the aperture correction, the neighbours, the
  simulator's rendering);
* ``neighbours``: the other true sources' light in the aperture (their
  Moffat at the distance; galaxies as points);
* ``bkg``: the data's own local level (a 41-px mean of data minus the
  noiseless sources) minus the catalog's background level, over the aperture;
* ``rest``: the data minus the noiseless sources and that local level in the
  aperture (the noise and any calibration error of the star itself).

Usage: ``PYTHONPATH=src:. .venv/bin/python benchmarks/truth_flux_pulls.py
--profile smallsat --seeds 11-22`` (figures in docs/stage3.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
from photutils.aperture import CircularAperture, aperture_photometry
from scipy.ndimage import uniform_filter
from scipy.spatial import cKDTree

from obsflow.models.pointing import relative_pixel_area
from obsflow.models.reffiles import read_photom
from obsflow.simulate.sky import background_e_s, pixel_solid_angle
from obsflow.simulate.truth import read_truth
from obsflow.stage3.pixmap import pixel_map
from obsflow.stage3.psfmodel import _moffat_alpha
from obsflow.stage3.resample import Resampler, input_weight

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the field lives with the tests
from tests.stage3 import test_catalog_truth as truth  # noqa: E402
from tests.stage3.conftest import FIELDS, Field, _make_field  # noqa: E402


def _noiseless(field: Field, m: truth.Mosaic) -> tuple[np.ndarray, np.ndarray]:
    """(sources, background) of the truth, drizzled like the data (the mosaic's aligned
    inputs, pixel maps and weights), MJy/sr."""
    sources, background = Resampler(m.grid), Resampler(m.grid)
    gx, gy = FIELDS[m.profile]["scene"].sky_gradient
    photom = read_photom(next((field.out / "refs").glob("*photom*.fits")))
    for a in m.aligned:
        meta = a.meta
        inst = field.profile.instrument(meta.instrument)
        det = inst.detector(meta.detector)
        sky = read_truth(field.out / "truth" / f"{meta.basename}_truth.fits").sky
        ny, nx = sky.shape
        yy, xx = np.mgrid[0:ny, 0:nx]
        bkg = (background_e_s(inst.filter(meta.filter), inst.pixel_scale_arcsec)
               * (1 + gx * (xx / nx - 0.5) + gy * (yy / ny - 0.5))
               * pixel_solid_angle(field.true_wcs(a), (ny, nx)))
        area = relative_pixel_area(det.distortion, (det.nx, det.ny, meta.substrt1,
                                                    meta.substrt2, meta.subsize1, meta.subsize2))
        to_mjysr = photom.photmjsr_for(meta.filter) / det.gain_e_per_dn / area
        weight = input_weight(a.sci, a.dq, a.var_rnoise, "exptime", exptime=1.0)
        pmap = pixel_map(a.wcs, a.sci.shape, m.grid)
        sources.add(((sky - bkg) * to_mjysr).astype(np.float32), weight, pmap)
        background.add((bkg * to_mjysr).astype(np.float32), weight, pmap)
    return np.nan_to_num(sources.finish().sci), np.nan_to_num(background.finish().sci)


def _neighbour_light(m: truth.Mosaic, index: np.ndarray, radius: float) -> np.ndarray:
    """Light of the other true sources within ``radius`` px of each star, Jy."""
    fwhm = m.psf.blurred_fwhm_pix
    alpha = _moffat_alpha(fwhm, m.psf.beta)
    g = np.arange(-radius, radius + 0.05, 0.05)
    gx, gy = np.meshgrid(g, g)
    inside = np.hypot(gx, gy) <= radius
    beta = m.psf.beta
    dist = np.arange(0.0, 40.0, 0.25)
    share = np.array([((beta - 1) / (np.pi * alpha**2) * (1 + ((gx - d) ** 2 + gy**2) / alpha**2)
                       ** -beta * inside).sum() * 0.05**2 for d in dist])
    tree = cKDTree(np.column_stack([m.x, m.y]))
    out = np.zeros(index.size)
    for k, i in enumerate(index):
        for j in tree.query_ball_point([m.x[i], m.y[i]], dist[-1]):
            if j != i:
                d = np.hypot(m.x[j] - m.x[i], m.y[j] - m.y[i])
                out[k] += m.flux_jy[j] * np.interp(d, dist, share)
    return out


def field_terms(field: Field) -> dict[str, np.ndarray]:
    """Each isolated star's S/N, pull and its terms (sigma), for one field."""
    m = truth.Mosaic(field)
    sources, background = _noiseless(field, m)
    index, rows, snr = truth._isolated_stars(m)
    t = m.result.table
    ap = t.meta["apertures"][-1]
    # each star's own share of its light in the aperture (catalog column aper_total_ee)
    to_jy = t.meta["pixel_area_sr"] * 1e6 / np.asarray(t["aper_total_ee"][rows])
    good = m.i2d.wht > 0
    data = np.where(good, np.nan_to_num(m.i2d.sci), 0.0)
    level = m.result.background.level
    pos = np.column_stack([np.asarray(t["x_aperture"][rows]), np.asarray(t["y_aperture"][rows])])
    aperture = CircularAperture(pos, ap["radius_pix"])

    def total(img: np.ndarray) -> np.ndarray:
        return np.asarray(aperture_photometry(np.where(good, img, 0.0), aperture)["aperture_sum"]
                          ) * to_jy

    local = (uniform_filter(np.where(good, data - sources, 0.0), 41)
             / np.maximum(uniform_filter(good.astype(float), 41), 1e-9))
    err = np.asarray(t["aper_total_flux_err"][rows])
    true = m.flux_jy[index]
    return {"snr": snr,
            "pull": (np.asarray(t["aper_total_flux"][rows]) - true) / err,
            "src": (total(sources) - true) / err,
            "neighbours": _neighbour_light(m, index, ap["radius_pix"]) / ap["encircled_energy"]
            / err,
            "bkg": total(local - level) / err,
            "rest": total(data - sources - local) / err}


def _seeds(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", choices=sorted(FIELDS), default="smallsat")
    ap.add_argument("--seeds", default="11-18", help="a seed or a range, e.g. 11-22")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    terms: list[dict[str, np.ndarray]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in _seeds(args.seeds):
            field = _make_field(Path(tmp) / str(seed), args.profile, seed)
            terms.append(field_terms(field))
            print(f"seed {seed}: {terms[-1]['pull'].size} isolated stars", flush=True)
    cols = {k: np.concatenate([t[k] for t in terms]) for k in terms[0]}
    snr = cols["snr"]
    sel = (snr >= 10) & (snr <= 2000)
    pull = cols["pull"][sel]
    med = float(np.median(pull))
    spread = float(1.4826 * np.median(np.abs(pull - med)))
    print(f"{args.profile}, {len(terms)} fields, {pull.size} stars with 10 <= S/N <= 2000: "
          f"median pull {med:.3f} (s.e. {1.2533 * spread / np.sqrt(pull.size):.3f}), "
          f"spread (MAD) {spread:.3f}")
    names = ("pull", "src", "neighbours", "bkg", "rest")
    print("S/N bin     stars " + " ".join(f"{n:>10s}" for n in names) + "   (medians, sigma)")
    for lo, hi in ((10, 100), (100, 300), (300, 2000)):
        k = (snr >= lo) & (snr < hi)
        if k.any():
            print(f"{lo:>4d}-{hi:<5d} {k.sum():>6d} "
                  + " ".join(f"{np.median(cols[n][k]):>+10.3f}" for n in names))


if __name__ == "__main__":
    main()
