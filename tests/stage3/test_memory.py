"""The whole of stage 3 within its memory bound: output arrays plus two inputs (issue 13).

Synthetic ``_cal`` files (a star field drawn through each input's WCS, sky,
noise, 1% DO_NOT_USE pixels, a few cosmic rays) are written to a temporary
folder; ``make_mosaic`` runs on them under ``tracemalloc`` (every numpy array
and Python object allocated during the run; memory-mapped file pages are not
heap and not counted, the benchmark measures the resident set as well:
docs/benchmarks.md).  The bound is the ``_i2d``'s seven arrays (SCI, ERR,
WHT, CON, VAR_POISSON, VAR_RNOISE, VAR_FLAT: 7 x 4 bytes per output pixel)
plus two inputs (SCI, ERR, DQ, VAR_POISSON, VAR_RNOISE: 5 x 4 bytes per input
pixel each), with 5% of slack.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
from astropy.io import fits

from obsflow.models.dq import DQ
from obsflow.models.identity import DataId, ProductRef
from obsflow.models.level2 import CalImage, write_cal
from obsflow.models.metadata import ExposureMeta
from obsflow.models.pointing import detector_wcs
from obsflow.models.provenance import Provenance
from obsflow.profiles import load_profile
from obsflow.stage3.association import Association, Member
from obsflow.stage3.mosaic import make_mosaic

RA0, DEC0 = 53.16, -27.79


def _meta(k: int, n: int, inst: str, det: str, flt: str) -> ExposureMeta:
    return ExposureMeta(
        telescope="OBSFLOW-W", instrument=inst, detector=det, filter=flt, program="01234",
        observation=1, visit=1, exposure=k + 1, exposure_id=k + 1, pi_name="test",
        title="stage 3 memory", target="MEM", target_ra=RA0, target_dec=DEC0,
        ra_v1=RA0, dec_v1=DEC0, pa_v3=0.0, dither_pattern="MEM", dither_position=k + 1,
        dither_npoints=8, readpatt="RAPID", nints=1, ngroups=10, nframes=1, groupgap=0,
        frame_time=10.7, group_time=10.7, subarray="SUB" + str(n), substrt1=1, substrt2=1,
        subsize1=n, subsize2=n, expstart=61000.0 + k * 0.01, expmid=61000.005 + k * 0.01,
        expend=61000.01 + k * 0.01, exposure_duration=107.0)


def _inputs(folder: Path, count: int, n: int) -> Association:
    """``count`` dithered n x n ``_cal`` files of one star field under ``folder``."""
    profile = load_profile("webb_like")
    inst = profile.instruments[0]
    det, flt = inst.detectors[0], inst.filters[0]
    rng = np.random.default_rng(11)
    scale = inst.pixel_scale_arcsec
    half = n * scale / 3600.0 * 0.55
    stars = n // 3
    ra = RA0 + rng.uniform(-half, half, stars) / np.cos(np.radians(DEC0))
    dec = DEC0 + rng.uniform(-half, half, stars)
    amp = 10 ** rng.uniform(-0.5, 2.0, stars)
    sigma = inst.psf_fwhm_pix_per_um * flt.pivot_um / 2.3548
    members = []
    for k in range(count):
        dither = rng.uniform(-0.02, 0.02, 2) * n * scale  # arcsec: 2% of the frame
        frame = (n, n, 1, 1, n, n)
        wcs = detector_wcs(RA0, DEC0, rng.uniform(0.0, 1.0), (*dither, det.rotation_deg), scale,
                           frame)
        sci = rng.normal(0.3, 0.02, (n, n)).astype(np.float32)
        x, y = wcs.world_to_pixel_values(ra, dec)
        for xs, ys, a in zip(x, y, amp, strict=True):
            if 6 <= xs < n - 6 and 6 <= ys < n - 6:
                i0, j0 = int(xs), int(ys)
                yy, xx = np.mgrid[j0 - 5:j0 + 6, i0 - 5:i0 + 6]
                sci[j0 - 5:j0 + 6, i0 - 5:i0 + 6] += a * np.exp(
                    -((xx - xs) ** 2 + (yy - ys) ** 2) / (2 * sigma**2))
        hits = rng.integers(0, n, (n // 8, 2))
        sci[hits[:, 0], hits[:, 1]] += 20.0  # cosmic rays
        vr = np.full((n, n), 4e-4, np.float32)
        vp = (np.abs(sci) * 1e-3).astype(np.float32)
        dq = np.zeros((n, n), np.uint32)
        bad = rng.random((n, n)) < 0.01
        dq[bad] = DQ.DO_NOT_USE
        sci[bad] = np.nan
        meta = _meta(k, n, inst.name, det.name, flt.name)
        ref = ProductRef("cal", DataId("01234", 1, 1, k + 1, det.name), "memtest")
        cal = CalImage(sci, np.sqrt(vr + vp + (0.005 * sci) ** 2).astype(np.float32), dq, vp, vr,
                       meta, ref, Provenance(run="memtest", software="test"), {}, wcs)
        written = write_cal(folder / ref.relpath(), cal)
        members.append(Member(ref, f"{meta.basename}_cal_v1", 1, ref.relpath(), written.sha256))
    return Association("01234", 1, "MEM", flt.name, inst.name, tuple(members))


def test_whole_stage3_peak_is_within_output_arrays_plus_two_inputs(tmp_path: Path) -> None:
    profile = load_profile("webb_like")
    warm = _inputs(tmp_path / "warm", 2, 128)  # compiled kernels and lazy imports loaded first
    make_mosaic(warm, tmp_path / "warm", profile, "warm")
    count, n = 4, 1024  # (at this size fixed costs -- the PSF model's grid, the writers -- are small)
    asn = _inputs(tmp_path / "run", count, n)
    tracemalloc.start()
    try:
        made = make_mosaic(asn, tmp_path / "run", profile, "mem")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    header = fits.getheader(made.mosaic.path, "SCI")
    out_px = int(header["NAXIS1"]) * int(header["NAXIS2"])
    bound = 7 * 4 * out_px + 2 * 5 * 4 * n * n
    assert made.mosaic.provenance.steps[0].status == "COMPLETE"  # aligned, a real run
    assert any(m.path.suffix == ".ecsv" for m in made.catalog)
    assert peak <= 1.05 * bound, (f"traced peak {peak / 2**20:.1f} MiB over the bound "
                                  f"{bound / 2**20:.1f} MiB (x{peak / bound:.2f})")
