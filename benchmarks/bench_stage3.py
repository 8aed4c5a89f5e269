"""Benchmark: the whole of stage 3 (``make_mosaic``) on 8 full-frame 2048 x 2048 ``_cal`` inputs.

Eight ``_cal`` products of one detector (webb_like WRA1, 0.031 arcsec
pixels), eight dithers a few arcseconds apart with PA 0-1 degree, are
synthesized as real product files: a star field on the sky (Gaussian stars
of the profile's FWHM, drawn through each input's TRUE WCS), sky, noise, variances, 1%
DO_NOT_USE pixels; each file's header WCS is off its true one by a random
pointing error of 30 mas per axis (so alignment has work to do).  Then,
timed, ``make_mosaic`` runs on their association: detect (every member),
relative alignment (no ASTROCAT here), skymatch, grid, then per member the
``_crf`` written and resampled, the ``_i2d`` written.

Reported: wall time of each step and per input megapixel; peak traced
memory (tracemalloc: numpy reports its buffers to it; the members' SCI and
DQ memory-mapped by skymatch are page cache, not heap, and are not counted)
beside the size of the output arrays (SCI, ERR, WHT, CON, three variances:
7 x 4 bytes per output pixel) plus two inputs (SCI, ERR, DQ, VAR_POISSON,
VAR_RNOISE: 5 x 4 bytes per input pixel each); the process's peak RSS.

    .venv/bin/python benchmarks/bench_stage3.py [--inputs 8] [--size 2048] [--keep DIR]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from obsflow.fileio import sha256_file
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
        observation=1, visit=1, exposure=k + 1, exposure_id=k + 1, pi_name="bench",
        title="stage 3 benchmark", target="BENCH", target_ra=RA0, target_dec=DEC0,
        ra_v1=RA0, dec_v1=DEC0, pa_v3=0.0, dither_pattern="BENCH", dither_position=k + 1,
        dither_npoints=8, readpatt="RAPID", nints=1, ngroups=10, nframes=1, groupgap=0,
        frame_time=10.7, group_time=10.7, subarray="FULL", substrt1=1, substrt2=1,
        subsize1=n, subsize2=n, expstart=61000.0 + k * 0.01, expmid=61000.005 + k * 0.01,
        expend=61000.01 + k * 0.01, exposure_duration=107.0)


def make_inputs(folder: Path, count: int, n: int) -> Association:
    """``count`` synthetic _cal files under ``folder`` and their association."""
    profile = load_profile("webb_like")
    inst = profile.instruments[0]
    det, flt = inst.detectors[0], inst.filters[0]
    rng = np.random.default_rng(7)
    half = n * inst.pixel_scale_arcsec / 3600.0 * 0.8
    count_stars = n // 4  # (~500 stars per full frame: enough to align on)
    stars_ra = RA0 + rng.uniform(-half, half, count_stars) / np.cos(np.radians(DEC0))
    stars_dec = DEC0 + rng.uniform(-half, half, count_stars)
    stars_amp = 10 ** rng.uniform(-0.5, 2.0, count_stars)
    sigma = inst.psf_fwhm_pix_per_um * flt.pivot_um / 2.3548  # the profile's PSF width
    members = []
    for k in range(count):
        dither = rng.uniform(-3.0, 3.0, 2)  # arcsec
        pa = rng.uniform(0.0, 1.0)
        offset = (dither[0], dither[1], det.rotation_deg)  # (the detector on the boresight)
        frame = (n, n, 1, 1, n, n)
        true = detector_wcs(RA0, DEC0, pa, offset, inst.pixel_scale_arcsec, frame)
        err = rng.normal(0.0, 0.030, 2) / 3600.0  # the header's pointing error
        header = detector_wcs(RA0 + err[0], DEC0 + err[1], pa, offset,
                              inst.pixel_scale_arcsec, frame)
        sci = rng.normal(0.3, 0.02, (n, n)).astype(np.float32)
        x, y = true.world_to_pixel_values(stars_ra, stars_dec)
        for xs, ys, amp in zip(x, y, stars_amp, strict=True):
            if 6 <= xs < n - 6 and 6 <= ys < n - 6:
                i0, j0 = int(xs), int(ys)
                yy, xx = np.mgrid[j0 - 5:j0 + 6, i0 - 5:i0 + 6]
                sci[j0 - 5:j0 + 6, i0 - 5:i0 + 6] += amp * np.exp(
                    -((xx - xs) ** 2 + (yy - ys) ** 2) / (2 * sigma**2))
        vr = np.full((n, n), 4e-4, np.float32)
        vp = (np.abs(sci) * 1e-3).astype(np.float32)
        dq = np.zeros((n, n), np.uint32)
        bad = rng.random((n, n)) < 0.01
        dq[bad] = DQ.DO_NOT_USE
        sci[bad] = np.nan
        meta = _meta(k, n, inst.name, det.name, flt.name)
        ref = ProductRef("cal", DataId("01234", 1, 1, k + 1, det.name), "bench")
        cal = CalImage(sci, np.sqrt(vr + vp + (0.005 * sci) ** 2).astype(np.float32), dq, vp, vr,
                       meta, ref, Provenance(run="bench", software="bench"), {}, header)
        path = folder / ref.relpath()
        written = write_cal(path, cal)
        members.append(Member(ref, f"{meta.basename}_cal_v1", 1, ref.relpath(), written.sha256))
    return Association("01234", 1, "BENCH", flt.name, inst.name, tuple(members))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=8)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep")
    args = parser.parse_args()
    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench-stage3-"))
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    asn = make_inputs(folder, args.inputs, args.size)
    print(f"{args.inputs} synthetic _cal inputs of {args.size}x{args.size} in "
          f"{time.perf_counter() - t:.1f} s ({folder})")
    profile = load_profile("webb_like")
    warm = make_inputs(folder / "warm", 2, 256)  # compiled kernels loaded first
    make_mosaic(warm, folder / "warm", profile, "warmup", None)
    tracemalloc.start()
    t = time.perf_counter()
    made = make_mosaic(asn, folder, profile, "bench", None)
    wall = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out_px = _shape(made.mosaic.path)
    in_px = args.size * args.size
    budget = 7 * 4 * out_px + 2 * 5 * 4 * in_px
    mpix = args.inputs * in_px / 1e6
    print(f"steps (s): {made.seconds}")
    print(f"whole stage 3: {wall:.1f} s for {mpix:.1f} input Mpx = {wall / mpix:.2f} s per "
          "input megapixel")
    print(f"peak traced memory {peak / 2**20:.0f} MiB; output arrays ({out_px / 1e6:.2f} Mpx "
          f"x 7 x 4 B) + two inputs (2 x 5 x 4 B x {in_px / 1e6:.2f} Mpx) = "
          f"{budget / 2**20:.0f} MiB; ratio {peak / budget:.2f}")
    print(f"peak RSS of the process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} "
          "MiB (includes memory-mapped member pages and the warm-up)")
    print(f"alignment: {made.mosaic.provenance.steps[0].status}; i2d "
          f"{made.mosaic.size / 2**20:.0f} MiB; sha256 {sha256_file(made.mosaic.path)[:12]}")
    if args.keep is None:
        shutil.rmtree(folder)


def _shape(path: Path) -> int:
    from astropy.io import fits

    header = fits.getheader(path, "SCI")
    return int(header["NAXIS1"]) * int(header["NAXIS2"])


if __name__ == "__main__":
    main()
