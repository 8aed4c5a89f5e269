"""Synthetic stage-3 inputs: dithered ``_cal`` files of one star field, written as products.

One scene maker for the stage-3 memory test and ``benchmarks/bench_stage3.py``
(which imports it): ``count`` exposures of one webb_like detector, Gaussian
stars of the profile's PSF width drawn through each exposure's TRUE WCS, a
sky of 0.3 MJy/sr with 0.02 MJy/sr noise, the three variances, 1%
DO_NOT_USE pixels (NaN in SCI), optionally cosmic rays and a random pointing
error between the header's WCS and the true one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from obsflow.models.dq import DQ
from obsflow.models.identity import DataId, ProductRef
from obsflow.models.level2 import CalImage, write_cal
from obsflow.models.metadata import ExposureMeta
from obsflow.models.pointing import detector_wcs
from obsflow.models.provenance import Provenance
from obsflow.profiles import load_profile
from obsflow.stage3.association import Association, Member

RA0, DEC0 = 53.16, -27.79
"""The field centre, degrees (ICRS)."""


@dataclass(frozen=True)
class StarField:
    """What :func:`star_field_cals` draws.

    ``stars_per_px``: stars per pixel of the frame's side (``n * stars_per_px``
    stars); ``half_width``: the star field's half-width as a fraction of the
    frame's; ``dither_arcsec``: largest dither offset per axis (uniform);
    ``pointing_error_arcsec``: sigma of the header WCS's error per axis;
    ``cosmic_rays_per_px``: cosmic-ray hits (+20 MJy/sr, one pixel) per
    pixel of the frame's side; ``label``: the run, target and dither-pattern
    name written in the products.
    """

    seed: int = 7
    stars_per_px: float = 0.25
    half_width: float = 0.8
    dither_arcsec: float = 3.0
    pointing_error_arcsec: float = 0.030
    cosmic_rays_per_px: float = 0.0
    label: str = "bench"


def _meta(k: int, n: int, inst: str, det: str, flt: str, label: str) -> ExposureMeta:
    name = label.upper()
    return ExposureMeta(
        telescope="OBSFLOW-W", instrument=inst, detector=det, filter=flt, program="01234",
        observation=1, visit=1, exposure=k + 1, exposure_id=k + 1, pi_name=label,
        title=f"stage 3 {label}", target=name, target_ra=RA0, target_dec=DEC0,
        ra_v1=RA0, dec_v1=DEC0, pa_v3=0.0, dither_pattern=name, dither_position=k + 1,
        dither_npoints=8, readpatt="RAPID", nints=1, ngroups=10, nframes=1, groupgap=0,
        frame_time=10.7, group_time=10.7, subarray="FULL" if n == 2048 else f"SUB{n}",
        substrt1=1, substrt2=1, subsize1=n, subsize2=n, expstart=61000.0 + k * 0.01,
        expmid=61000.005 + k * 0.01, expend=61000.01 + k * 0.01, exposure_duration=107.0)


def star_field_cals(folder: Path, count: int, n: int, scene: StarField = StarField()
                    ) -> Association:
    """``count`` dithered ``n`` x ``n`` ``_cal`` files of ``scene`` under ``folder``, and
    their association."""
    profile = load_profile("webb_like")
    inst = profile.instruments[0]
    det, flt = inst.detectors[0], inst.filters[0]
    scale = inst.pixel_scale_arcsec
    rng = np.random.default_rng(scene.seed)
    half = n * scale / 3600.0 * scene.half_width
    nstars = int(n * scene.stars_per_px)
    stars_ra = RA0 + rng.uniform(-half, half, nstars) / np.cos(np.radians(DEC0))
    stars_dec = DEC0 + rng.uniform(-half, half, nstars)
    stars_amp = 10 ** rng.uniform(-0.5, 2.0, nstars)
    sigma = inst.psf_fwhm_pix_per_um * flt.pivot_um / 2.3548  # the profile's PSF width
    members = []
    for k in range(count):
        dither = rng.uniform(-scene.dither_arcsec, scene.dither_arcsec, 2)
        pa = rng.uniform(0.0, 1.0)
        offset = (dither[0], dither[1], det.rotation_deg)  # (the detector on the boresight)
        frame = (n, n, 1, 1, n, n)
        true = detector_wcs(RA0, DEC0, pa, offset, scale, frame)
        err = rng.normal(0.0, scene.pointing_error_arcsec, 2) / 3600.0
        header = detector_wcs(RA0 + err[0], DEC0 + err[1], pa, offset, scale, frame)
        sci = rng.normal(0.3, 0.02, (n, n)).astype(np.float32)
        x, y = true.world_to_pixel_values(stars_ra, stars_dec)
        for xs, ys, amp in zip(x, y, stars_amp, strict=True):
            if 6 <= xs < n - 6 and 6 <= ys < n - 6:
                i0, j0 = int(xs), int(ys)
                yy, xx = np.mgrid[j0 - 5:j0 + 6, i0 - 5:i0 + 6]
                sci[j0 - 5:j0 + 6, i0 - 5:i0 + 6] += amp * np.exp(
                    -((xx - xs) ** 2 + (yy - ys) ** 2) / (2 * sigma**2))
        if scene.cosmic_rays_per_px:
            hits = rng.integers(0, n, (int(n * scene.cosmic_rays_per_px), 2))
            sci[hits[:, 0], hits[:, 1]] += 20.0
        vr = np.full((n, n), 4e-4, np.float32)
        vp = (np.abs(sci) * 1e-3).astype(np.float32)
        dq = np.zeros((n, n), np.uint32)
        bad = rng.random((n, n)) < 0.01
        dq[bad] = DQ.DO_NOT_USE
        sci[bad] = np.nan
        meta = _meta(k, n, inst.name, det.name, flt.name, scene.label)
        ref = ProductRef("cal", DataId("01234", 1, 1, k + 1, det.name), scene.label)
        cal = CalImage(sci, np.sqrt(vr + vp + (0.005 * sci) ** 2).astype(np.float32), dq, vp, vr,
                       meta, ref, Provenance(run=scene.label, software=scene.label), {}, header)
        written = write_cal(folder / ref.relpath(), cal)
        members.append(Member(ref, f"{meta.basename}_cal_v1", 1, ref.relpath(), written.sha256))
    return Association("01234", 1, scene.label.upper(), flt.name, inst.name, tuple(members))
