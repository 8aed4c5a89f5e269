"""warm_up() loads every kernel specialization a real exposure needs (no compile on job 1)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

_PROBE = textwrap.dedent("""
    import json, sys
    from pathlib import Path

    import numpy as np
    from astropy.io import fits

    from obsflow import fitswords
    from obsflow.calibrate import corrections, image, jumps, ramps, refpix, regions
    from obsflow.fitschecksum import disk_form_and_sum
    from obsflow.calibrate.pipeline import warm_up
    from obsflow.calibrate.steps import QUANTIZATION_VAR
    from obsflow.models.pointing import relative_pixel_area
    from obsflow.profiles import Distortion

    KERNELS = {"_jump_pools": jumps._jump_pools, "_fit_rows": ramps._fit_rows,
               "_horner_inplace": corrections._horner_inplace,
               "_flag_saturation_rows": corrections._flag_saturation_rows,
               "_subtract_dark_rows": corrections._subtract_dark_rows,
               "_subtract_outer_inplace": refpix._subtract_outer_inplace,
               "_large_regions": regions._large_regions,
               "flag_disks_inplace": regions.flag_disks_inplace,
               "_flat_rows": image._flat_rows, "_scale_rows": image._scale_rows,
               "_scale_area_rows": image._scale_area_rows,
               "_centred_moments": image._centred_moments,
               "_sorted_float32": image._sorted_float32,
               "_first_at_least": image._first_at_least, "_first_above": image._first_above,
               "swapped_words_sum": fitswords.swapped_words_sum}

    def signatures():
        return {name: [str(s) for s in k.signatures] for name, k in KERNELS.items()}

    before = signatures()
    warm_up()
    warmed = signatures()

    # references as the pipeline reads them (steps.Work.ref): full-frame maps written by
    # astropy (big-endian on disk and in memory), cut to the subarray, made read-only
    folder = Path(sys.argv[1])
    for name, value in (("gain", 1.8), ("readnoise", 6.0), ("saturation", 60000.0),
                        ("dark", 0.01), ("flat", 1.02)):
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.full((64, 64), value, np.float32),
                                                       name="SCI")]).writeto(folder / name)
    def ref(name):
        with fits.open(folder / name, memmap=False) as hdul:
            arr = np.asarray(hdul["SCI"].data)[8:24, 8:24]
        arr.flags.writeable = False
        return arr
    gain = ref("gain")
    nframes = 1
    rn = ref("readnoise").astype(np.float32)
    read_noise = np.sqrt(rn * rn + np.float32(nframes * QUANTIZATION_VAR))  # Work.read_noise
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.array([0.0, 1.0, 1e-6, 0.0, 0.0]),
                                                   name="COEFFS")]).writeto(folder / "lin")
    with fits.open(folder / "lin", memmap=False) as hdul:
        coeffs = hdul["COEFFS"].data  # as steps.Work.ref reads LINEARITY: big-endian float64

    rng = np.random.default_rng(3)
    found, finite = 0, True
    for shape in ((1, 5, 16, 16), (2, 4, 16, 16)):  # one integration, and several
        counts = np.cumsum(rng.poisson(40.0, shape), axis=1) + 9000  # raw DN
        data = counts.astype(np.uint16).astype(np.float32)  # level1.data.astype(np.float32)
        groupdq, _ = corrections.flag_saturation(data, np.zeros(data.shape, np.uint8),
                                                 ref("saturation"), np.zeros(shape[2:], np.uint32))
        corrections.subtract_dark_inplace(data, ref("dark"), corrections.group_mean_times(
            shape[1], 10.0, nframes, 0))
        pixeldq = np.zeros(shape[2:], np.uint32)
        pixeldq[:4] = pixeldq[:, :4] = 2**31  # DQ.REFERENCE_PIXEL
        refpix.correct_reference_pixels_inplace(data, refpix.reference_layout(pixeldq, 0, 8))
        data[:, 2:, 5, 7] += 800.0  # a cosmic ray in every integration
        corrections.correct_linearity_inplace(data, coeffs)
        groupdq = jumps.detect_jumps(data, groupdq, read_noise=read_noise, gain=gain,
                                     nframes=nframes, groupgap=0, threshold=4.0,
                                     options=jumps.JumpOptions(large_events=True,
                                                               large_event_min_area=1),
                                     out=groupdq,
                                     per_integration=shape[0] > 1)  # the timeseries recipe
        fit = ramps.fit_ramps(data, groupdq, read_noise=read_noise, gain=gain,
                              frame_time=10.0, group_time=10.0, nframes=nframes, groupgap=0)
        img = image.ImageArrays(fit.slope, fit.err, fit.var_poisson, fit.var_rnoise,
                                fit.dq | pixeldq)  # steps.Work.set_fit
        img = image.apply_photom(image.apply_flat(img, ref("flat")), 0.37)
        area = relative_pixel_area(Distortion(a={"3_0": 1e-7}), (64, 64, 9, 9, 16, 16))
        img = image.apply_photom(img, 0.37, area)  # steps._photom on a distorted detector
        image.estimate_background(img.sci, img.dq)
        for array in (img.sci, img.err, img.dq):  # as the products' writers pass them
            disk_form_and_sum(array)
        found += int((groupdq != 0).sum())
        finite = finite and bool(np.isfinite(fit.slope).all())
    print(json.dumps({"before": before, "warmed": warmed, "after": signatures(),
                      "gain_dtype": gain.dtype.str, "jumps": found, "finite": finite}))
""")


def test_warm_up_compiles_what_real_data_uses(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-c", _PROBE, str(tmp_path)], capture_output=True,
                         text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert all(sigs == [] for sigs in got["before"].values()), got["before"]
    assert all(len(sigs) >= 1 for sigs in got["warmed"].values()), got["warmed"]
    assert got["after"] == got["warmed"]  # nothing new compiled for the real call
    # the probe is the real thing: big-endian references, a jump found, rates fitted
    assert got["gain_dtype"] == ">f4"
    assert got["jumps"] >= 3 and got["finite"]
