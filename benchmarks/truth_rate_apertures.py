"""Stage 1 against the simulator's truth: star-aperture sums of each exposure's rate.

Accuracy, not speed.  Each exposure of the smallsat stage-3 truth field
(tests/stage3/conftest.py), over seeds, goes through obsflow's stage 1; the
corrected ramps (after jump detection, before the ramp fit) are kept and
fitted three ways: obsflow's ``fit_ramps``, stcal's OLS_C (the JWST
pipeline's, through ``tests/calibrate/stcal_oracle.py``) and a plain
unweighted least-squares slope (weights that do not depend on the data).
Around every true star peak (truth RATE, 20 ERR above the sky, 16 px from
the edges) the sum of (slope - true rate) in a 3-px aperture, over the
aperture's error from ERR, is averaged per S/N bin, apart for apertures
with a flagged pixel (jump, saturation: their slopes from part of the ramp)
(no background is subtracted: the truth has the same sky), and apart again for those that no
cosmic ray hit (the truth's CRHITS: a selection that does not depend on the data), with the
standard error taken over fields.  A bias of the
ramp fit, the jump detection or the simulator's ramps in the stars' pixels
shows here, per exposure, before any stage-2 or stage-3 step.

Usage: ``PYTHONPATH=src:. .venv/bin/python benchmarks/truth_rate_apertures.py
--seeds 11-30`` (figures in docs/benchmarks.md, "Smallsat flux pulls").
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from photutils.aperture import CircularAperture, aperture_photometry
from scipy.ndimage import maximum_filter

from obsflow.calibrate import steps
from obsflow.calibrate.pipeline import CalibrationOptions, beside, calibrate_product
from obsflow.calibrate.ramps import fit_ramps
from obsflow.refdata import FolderRefs
from obsflow.simulate.run import SimOptions, simulate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the field lives with the tests
from tests.calibrate.stcal_oracle import stcal_ramp_fit  # noqa: E402
from tests.stage3.conftest import FIELDS  # noqa: E402

FITS = ("obsflow", "stcal", "ols")


def _keep_ramps(kept: dict[str, Any]) -> None:
    """Make the pipeline's ramp_fit step keep a copy of what it is given in ``kept``."""
    spec = steps.STEPS["ramp_fit"]

    def run(w: steps.Work, p: dict[str, Any]) -> str:
        assert w.groupdq is not None
        m = w.meta
        kept.update(data=w.data.copy(), gdq=w.groupdq.copy(), rn=np.array(w.read_noise()),
                    gain=np.array(w.ref("GAIN")),
                    readout={"frame_time": m.frame_time, "group_time": m.group_time,
                             "nframes": m.nframes, "groupgap": m.groupgap})
        return spec.run(w, p)

    steps.STEPS["ramp_fit"] = dataclasses.replace(spec, run=run)


def _slopes(k: dict[str, Any]) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The three slopes (DN/s), obsflow's ERR and the pixels to leave out."""
    ours = fit_ramps(k["data"], k["gdq"], read_noise=k["rn"], gain=k["gain"], **k["readout"])
    theirs = np.asarray(stcal_ramp_fit(k["data"], k["gdq"], k["rn"], k["gain"],
                                       k["readout"])["slope"], float)
    ng = k["data"].shape[1]
    t = np.arange(ng) - (ng - 1) / 2.0
    ols = np.tensordot(t / (t * t).sum() / k["readout"]["group_time"],
                       k["data"][0].astype(float), axes=(0, 0))
    bad = (ours.dq != 0) | ~np.isfinite(theirs) | (k["gdq"][0] != 0).any(axis=0)
    return ({"obsflow": ours.slope.astype(float), "stcal": theirs, "ols": ols},
            ours.err.astype(float), bad)


def exposure_terms(slopes: dict[str, np.ndarray], err: np.ndarray, bad: np.ndarray,
                   true: np.ndarray, hit: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per star aperture: its S/N, each fit's (sum of slope - truth) / error, whether a pixel
    is flagged (``bad``) and whether a cosmic ray hit one (``hit``, from the truth)."""
    sky = np.median(true[true > 0])
    peak = (true == maximum_filter(true, 15)) & (true > sky + 20 * np.median(err[err > 0]))
    yy, xx = np.nonzero(peak)
    ny, nx = true.shape
    inner = (xx > 15) & (xx < nx - 16) & (yy > 15) & (yy < ny - 16)
    aperture = CircularAperture(np.column_stack([xx[inner], yy[inner]]).astype(float), 3.0)

    def total(img: np.ndarray) -> np.ndarray:
        return np.asarray(aperture_photometry(img, aperture)["aperture_sum"])

    flagged = total(bad.astype(float)) > 0
    e = np.sqrt(total(np.where(np.isfinite(err), err, 0.0) ** 2))
    out = {"snr": total(true) / e, "flagged": flagged.astype(float),
           "hit": (total(hit.astype(float)) > 0).astype(float) if hit is not None
           else np.zeros_like(e)}
    for name, slope in slopes.items():
        out[name] = total(slope - true) / e
    return out


def field_terms(root: Path, seed: int, name: str = "smallsat") -> list[dict[str, np.ndarray]]:
    """Simulate the field of profile ``name`` and ``seed``, run each exposure's stage 1, fit
    three ways."""
    spec = FIELDS[name]
    simulate(root, SimOptions(seed=seed, profile=name, exposures=spec["exposures"],
                              subarray=spec["subarray"], level1=True, scene=spec["scene"]))
    from obsflow.profiles import load_profile

    profile = load_profile(name)
    refs = FolderRefs(root / "refs", profile)
    kept: dict[str, Any] = {}
    _keep_ramps(kept)
    out = []
    for uncal in sorted((root / "level1").glob("*_uncal.fits")):
        calibrate_product(uncal, refs, profile, CalibrationOptions(place=beside(root / "cal")))
        base = uncal.name.replace("_uncal.fits", "")
        truth = root / "truth" / f"{base}_truth.fits"
        true = fits.getdata(truth, "RATE").astype(float)
        rays = fits.getdata(truth, "CRHITS")
        hit = np.zeros(true.shape, bool)
        hit[np.asarray(rays["Y"]), np.asarray(rays["X"])] = True
        terms = exposure_terms(*_slopes(kept), true, hit)
        terms["field"] = np.full(terms["snr"].shape, float(seed))
        out.append(terms)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="11-18", help="a seed or a range, e.g. 11-30")
    ap.add_argument("--profile", choices=sorted(FIELDS), default="smallsat")
    ap.add_argument("--save", type=Path, help="write the per-aperture columns to this .npz")
    args = ap.parse_args()
    lo, _, hi = args.seeds.partition("-")
    seeds = list(range(int(lo), int(hi or lo) + 1))
    warnings.simplefilter("ignore")
    terms: list[dict[str, np.ndarray]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            terms += field_terms(Path(tmp) / str(seed), seed, args.profile)
            print(f"seed {seed}: {sum(t['snr'].size for t in terms)} apertures so far", flush=True)
    cols = {k: np.concatenate([t[k] for t in terms]) for k in terms[0]}
    fitted = np.all([np.isfinite(cols[n]) for n in FITS], axis=0)  # (a pixel with no slope: out)
    cols = {k: v[fitted] for k, v in cols.items()}
    if args.save:
        np.savez(args.save, **cols)
    snr = cols["snr"]
    flagged = cols["flagged"] > 0
    print(f"{snr.size} star apertures (3 px) in {len(terms)} exposures of {len(seeds)} "
          f"{args.profile} fields: (sum of slope - true rate) / error, mean (standard error); "
          "apertures with no flagged pixel, then those with one (ERR of their unflagged pixels)")
    for label, rows in (("clean", ~flagged), ("flagged", flagged)):
        for a, b in ((5, 30), (30, 100), (100, 200), (200, 300), (300, 600), (600, 1000),
                     (1000, 1e5), (5, 1e5)):
            k = rows & (snr >= a) & (snr < b)
            if k.any():
                print(f"{label:8s} S/N {a:>5.0f}-{b:<6.0f} {k.sum():>6d} " + "  ".join(
                    f"{n} {cols[n][k].mean():+.3f} ({cols[n][k].std() / np.sqrt(k.sum()):.3f})"
                    for n in FITS))
    for label, rows in (("clean", ~flagged), ("clean, no ray", ~flagged & (cols["hit"] == 0))):
        k = rows & (snr >= 30)
        print(f"{label} S/N 30+: {k.sum()} apertures, " + "  ".join(
            f"{n} {cols[n][k].mean():+.3f} (s.e. by field {_field_se(cols[n][k], cols['field'][k]):.3f})"
            for n in FITS))


def _field_se(pull: np.ndarray, field: np.ndarray) -> float:
    """Standard error of the mean of ``pull`` with the fields as the independent units (their
    apertures share a detector realization and stars)."""
    mean = pull.mean()
    dev = np.array([np.sum(pull[field == f] - mean) for f in np.unique(field)])
    return float(np.sqrt(np.sum(dev**2)) / pull.size)


if __name__ == "__main__":
    main()
