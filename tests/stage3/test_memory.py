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

from astropy.io import fits
from tests.stage3.scenes import StarField, star_field_cals

from obsflow.profiles import load_profile
from obsflow.stage3.association import Association
from obsflow.stage3.mosaic import make_mosaic


def _inputs(folder: Path, count: int, n: int) -> Association:
    """``count`` dithered n x n ``_cal`` files of one star field with cosmic rays: dithers
    of 2% of the frame, no pointing error."""
    scale = load_profile("webb_like").instruments[0].pixel_scale_arcsec
    scene = StarField(seed=11, stars_per_px=1 / 3, half_width=0.55, dither_arcsec=0.02 * n * scale,
                      pointing_error_arcsec=0.0, cosmic_rays_per_px=1 / 8, label="memtest")
    return star_field_cals(folder, count, n, scene)


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
