"""Point-source positions measured on a mosaic's inputs (stage3.positions) against true positions.

The stars are drawn by the simulator's pixel-integrated Moffat stamps (its
own sub-sampling, independent of the fit's) at known sky positions, into
three dithered and slightly rotated inputs; the positions come back in a
mosaic grid of another scale and orientation.
"""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

import obsflow.stage3.positions as positions
from obsflow.models.dq import DQ
from obsflow.simulate.sky import _add_stamp, moffat_stamp
from obsflow.stage3.catalog import point_sources_from_inputs
from obsflow.stage3.mosaic import _position_inputs
from obsflow.stage3.positions import OUTLIER_PIX, InputPositions, combine_in_grid
from obsflow.stage3.psfmodel import MosaicPSF

FWHM = 1.03  # pixels: webb_like F150W, undersampled
RA0, DEC0 = 150.0, 2.0
SCALE = 0.031 / 3600.0  # degrees per input pixel


def _wcs(shift_x: float, shift_y: float, rot_deg: float, scale: float = SCALE,
         shape: tuple[int, int] = (80, 80)) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [RA0, DEC0]
    w.wcs.crpix = [shape[1] / 2 + shift_x, shape[0] / 2 + shift_y]
    t = np.deg2rad(rot_deg)
    w.wcs.cd = scale * np.array([[-np.cos(t), np.sin(t)], [np.sin(t), np.cos(t)]])
    w.pixel_shape = (shape[1], shape[0])
    return w


def _stars() -> tuple[np.ndarray, np.ndarray]:
    """A 5 x 5 lattice of stars 12 px apart at random sub-pixel places (sky degrees)."""
    rng = np.random.default_rng(3)
    gx, gy = np.meshgrid(np.arange(-2, 3) * 12.0, np.arange(-2, 3) * 12.0)
    x = gx.ravel() + rng.uniform(-0.5, 0.5, gx.size)
    y = gy.ravel() + rng.uniform(-0.5, 0.5, gy.size)
    ra, dec = _wcs(0, 0, 0).pixel_to_world_values(x + 40, y + 40)
    return np.asarray(ra), np.asarray(dec)


def _input(wcs: WCS, ra: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SCI (a flat sky of 5 plus the stars, noiseless) and an empty DQ."""
    sci = np.full((80, 80), 5.0)
    x, y = wcs.world_to_pixel_values(ra, dec)
    for xs, ys in zip(np.asarray(x), np.asarray(y), strict=True):
        x0, y0 = int(np.floor(xs + 0.5)), int(np.floor(ys + 0.5))
        _add_stamp(sci, 2000.0 * moffat_stamp(xs - x0, ys - y0, 10, FWHM), x0, y0)
    return sci.astype(np.float32), np.zeros(sci.shape, np.uint32)


INPUTS = [_wcs(0.0, 0.0, 0.0), _wcs(0.37, 0.71, 0.4), _wcs(-0.62, 0.24, -0.3)]
GRID = _wcs(3.2, -1.7, 17.0, scale=0.7 * SCALE, shape=(120, 120))


def test_positions_from_three_dithers_match_the_truth() -> None:
    ra, dec = _stars()
    measure = InputPositions(ra, dec, GRID)
    for wcs in INPUTS:
        measure.add(*_input(wcs, ra, dec), wcs, FWHM)
    x, y, used = measure.finish()
    tx, ty = GRID.world_to_pixel_values(ra, dec)
    err = np.hypot(x - tx, y - ty)
    assert (used == 3).all()
    # noiseless profile PSF: the fit is exact to < 0.01 input px (test_centroids.py); in grid
    # pixels (0.7 of an input pixel) < 0.015
    assert err.max() < 0.015, err


def test_a_masked_stamp_or_an_edge_leaves_that_input_out() -> None:
    ra, dec = _stars()
    measure = InputPositions(ra, dec, GRID)
    for k, wcs in enumerate(INPUTS):
        sci, dq = _input(wcs, ra, dec)
        if k == 1:  # a bad pixel beside star 0, a cosmic ray flagged beside star 1
            for star in (0, 1):
                x, y = wcs.world_to_pixel_values(ra[star], dec[star])
                dq[int(round(float(y))) + 1, int(round(float(x)))] = DQ.DO_NOT_USE
            sci[:, 60:] = np.nan  # and a third of it without data: the stars there are lost
        measure.add(sci, dq, wcs, FWHM)
    x, y, used = measure.finish()
    ix, _ = INPUTS[1].world_to_pixel_values(ra, dec)
    lost = (np.arange(ra.size) < 2) | (np.asarray(ix) > 60 - 2 * FWHM - 3)
    assert (used[lost] == 2).all() and (used[~lost] == 3).all()
    tx, ty = GRID.world_to_pixel_values(ra, dec)
    assert np.hypot(x - tx, y - ty).max() < 0.015


def test_combining_leaves_out_a_far_input_of_three_and_nan() -> None:
    xs = np.array([[10.0, 5.0, np.nan, 1.0],
                   [10.2, 5.2, 7.0, np.nan],
                   [10.1, 5.0 + 3 * OUTLIER_PIX, np.nan, np.nan]])
    ys = np.zeros_like(xs)
    ys[np.isnan(xs)] = np.nan
    x, y, used = combine_in_grid(xs, ys)
    assert used.tolist() == [3, 2, 1, 1]
    assert np.allclose(x[:2], [10.1, 5.1]) and x[2] == 7.0 and x[3] == 1.0
    pair = combine_in_grid(np.array([[0.0], [3.0]]), np.zeros((2, 1)))  # two: no median to trust
    assert pair[0][0] == 1.5 and pair[2][0] == 2
    none = combine_in_grid(np.full((2, 1), np.nan), np.full((2, 1), np.nan))
    assert np.isnan(none[0][0]) and none[2][0] == 0


def test_the_catalog_places_only_point_sources_from_the_inputs() -> None:
    ra, dec = _stars()
    tx, ty = GRID.world_to_pixel_values(ra, dec)
    off = 0.3  # the mosaic's own (windowed) positions, off by 0.3 px
    n = ra.size
    ones = np.ones(n)
    table = Table({"x_centroid": tx + off, "y_centroid": ty.copy(),
                   "x_aperture": tx + off, "y_aperture": ty.copy(),
                   "is_extended": np.arange(n) % 5 == 0,
                   "pos_inputs": np.zeros(n, np.int16),
                   "aper90_flux": ones, "aper90_flux_err": 0.01 * ones,
                   "aper_total_ee": 0.9 * ones, "aper_total_flux": ones / 0.9,
                   "aper_total_flux_err": 0.01 * ones / 0.9, "aper_total_abmag": 9.0 * ones,
                   "aper_total_abmag_err": 0.01 * ones})
    table.meta["apertures"] = [{"radius_pix": 2.4, "encircled_energy": 0.9}]
    table.meta["total_flux_aperture"] = "aper90"
    table["ra"], table["dec"] = GRID.pixel_to_world_values(tx + off, ty)
    psf = MosaicPSF(FWHM / 0.7, (1 / 0.7, 1 / 0.7, 1.0, 1.0), inputs=3)
    placed = point_sources_from_inputs(
        table, GRID, ((*_input(w, ra, dec), w, FWHM, 1.0) for w in INPUTS), psf)
    point = ~np.asarray(table["is_extended"])
    assert placed == point.sum()
    assert (np.asarray(table["pos_inputs"])[point] == 3).all()
    assert (np.asarray(table["pos_inputs"])[~point] == 0).all()
    assert np.allclose(table["x_centroid"][~point], tx[~point] + off)  # untouched
    assert np.hypot(table["x_centroid"][point] - tx[point],
                    table["y_centroid"][point] - ty[point]).max() < 0.015
    x, y = GRID.world_to_pixel_values(np.asarray(table["ra"]), np.asarray(table["dec"]))
    assert np.allclose(x, table["x_centroid"], atol=1e-6)
    assert np.allclose(y, table["y_centroid"], atol=1e-6)
    assert "point sources" in table.meta["point_positions"]
    # own shares for point sources only (each its phases; totals follow), the others kept
    ee = np.asarray(table["aper_total_ee"])
    assert (ee[~point] == 0.9).all() and (np.abs(ee[point] - 0.9) > 1e-5).all()
    assert np.allclose(np.asarray(table["aper_total_flux"]) * ee, 1.0)
    assert np.allclose(np.asarray(table["aper_total_flux_err"]) * ee, 0.01)


def test_file_sections_read_in_bands_give_the_whole_arrays_result(tmp_path, monkeypatch) -> None:
    """The mosaic reads each ``_crf`` as sections of a file opened without a memory map, a band
    of rows at a time (the stamps' margin across band edges): the same positions bit for bit
    as the whole arrays in memory, DQ as stored (uint32 written as int32 with BZERO) included,
    and no input's data loaded whole."""
    ra, dec = _stars()
    paths, arrays = [], []
    for k, wcs in enumerate(INPUTS):
        sci, dq = _input(wcs, ra, dec)
        x, y = wcs.world_to_pixel_values(ra[k], dec[k])
        dq[int(round(float(y))) - 1, int(round(float(x)))] = DQ.DO_NOT_USE | DQ.OUTLIER
        path = tmp_path / f"in{k}.fits"
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sci.astype(">f4"), name="SCI"),
                      fits.ImageHDU(dq, name="DQ")]).writeto(path)
        paths.append(path)
        arrays.append((sci, dq))
    whole = [positions.measure_on_input(sci, dq, w, ra, dec, FWHM, half=5)
             for (sci, dq), w in zip(arrays, INPUTS, strict=True)]
    monkeypatch.setattr(positions, "_BAND_ROWS", 7)  # many band edges through the stamps
    banded = []
    for sci, dq, w, fwhm, _ in _position_inputs(paths, INPUTS, [FWHM] * 3, [1.0] * 3):
        assert isinstance(sci, fits.Section) and isinstance(dq, fits.Section)
        banded.append(positions.measure_on_input(sci, dq, w, ra, dec, fwhm, half=5))
        assert not sci.hdu._data_loaded and not dq.hdu._data_loaded  # bands only, never whole
    for k, (a, b) in enumerate(zip(whole, banded, strict=True)):
        assert np.isnan(a[0][k]) and np.isnan(b[0][k])  # the flagged pixel loses star k
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        # the stamps of used pixels (for the own aperture corrections) across band edges too
        np.testing.assert_array_equal(a.origin, b.origin)
        np.testing.assert_array_equal(a.good, b.good)
        assert a.good.shape == (ra.size, 11, 11) and not a.good.all() and a.good.sum() > 0.9 * a.good.size
        assert np.isfinite(b[0]).sum() == ra.size - 1
