"""Each point source's own aperture correction (stage3.apcorr) against drizzled stars.

The stars: the simulator's pixel-integrated Moffat stamps (its own 4-node
rule; the model integrates with 6 nodes through a local affine map) at known
sky positions in three dithered, slightly rotated 80 x 80 inputs (the scene of
test_positions.py, no sky), drizzled by the Resampler through exact pixel
maps onto a grid of 0.7 the input scale rotated by 17 degrees.  The truth: the
light each drizzled star has inside an aperture, measured on the mosaic with
photutils' exact overlaps; its share of the star's flux is what
:func:`own_encircled_energy` has to give, star by star, for every kernel.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from photutils.aperture import CircularAperture, aperture_photometry
from tests.stage3.test_positions import FWHM, GRID, INPUTS, _input, _stars

from obsflow.exceptions import CatalogError
from obsflow.models.dq import DQ
from obsflow.stage3.apcorr import InputSampling, own_encircled_energy, pixel_light, sampling_half
from obsflow.stage3.catalog import CatalogOptions, point_sources_from_inputs, source_catalog
from obsflow.stage3.pixmap import exact_pixel_map
from obsflow.stage3.positions import measure_on_input
from obsflow.stage3.psfmodel import MosaicPSF, encircled_energy

FLUX = 2000.0
"""Each star's flux in the inputs' units (SCI x pixel)."""
OUT_PER_IN = 1.0 / 0.7
"""An input pixel's side in the grid's pixels."""
RADIUS = 2.4
"""Aperture radius, grid pixels (holding ~90% of the light)."""


def _scene(masked: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """The three inputs' SCI (stars only) and DQ; ``masked``: one core pixel of star 7 and
    the pixel beside star 12's core DO_NOT_USE in the second input."""
    ra, dec = _stars()
    out = []
    for k, wcs in enumerate(INPUTS):
        sci, dq = _input(wcs, ra, dec)
        sci -= 5.0  # (the scene's flat sky)
        if masked and k == 1:
            for star, dy in ((7, 0), (12, 1)):
                x, y = wcs.world_to_pixel_values(ra[star], dec[star])
                dq[int(round(float(y))) + dy, int(round(float(x)))] = DQ.DO_NOT_USE
        out.append((sci, dq))
    return out


def _drizzle(scene: list[tuple[np.ndarray, np.ndarray]], kernel: str, pixfrac: float,
             weights: tuple[float, ...] = (1.0, 1.0, 1.0)) -> np.ndarray:
    from obsflow.stage3.resample import Resampler, input_weight

    resampler = Resampler(GRID, kernel, pixfrac)
    for (sci, dq), wcs, w in zip(scene, INPUTS, weights, strict=True):
        weight = input_weight(sci, dq, None, "exptime", exptime=w)
        resampler.add(sci, weight, exact_pixel_map(wcs, sci.shape, GRID))
    return np.nan_to_num(resampler.finish().sci)


def _samplings(scene: list[tuple[np.ndarray, np.ndarray]], kernel: str, pixfrac: float,
               weights: tuple[float, ...] = (1.0, 1.0, 1.0)) -> list[InputSampling]:
    ra, dec = _stars()
    half = sampling_half(RADIUS, kernel, pixfrac, OUT_PER_IN)
    out = []
    for (sci, dq), wcs, w in zip(scene, INPUTS, weights, strict=True):
        found = measure_on_input(sci, dq, wcs, ra, dec, FWHM, half)
        out.append(InputSampling(wcs, w, found.origin, found.good))
    return out


def _truth_shares(mosaic: np.ndarray, aperture: np.ndarray) -> np.ndarray:
    sums = aperture_photometry(mosaic, CircularAperture(aperture, RADIUS), method="exact")
    return np.asarray(sums["aperture_sum"]) / OUT_PER_IN**2 / FLUX  # (SCI per input pixel)


def _centres() -> tuple[np.ndarray, np.ndarray]:
    """The stars' true grid positions and aperture centres 0.1 px off them (as a windowed
    centroid would be)."""
    ra, dec = _stars()
    tx, ty = GRID.world_to_pixel_values(ra, dec)
    centre = np.column_stack([tx, ty])
    rng = np.random.default_rng(5)
    return centre, centre + rng.normal(0.0, 0.1, centre.shape)


@pytest.mark.parametrize(("kernel", "pixfrac"), [
    ("square", 1.0), ("square", 0.7), ("turbo", 0.8), ("point", 1.0), ("gaussian", 1.0),
    ("lanczos3", 1.0)])
def test_each_star_gets_its_own_share_of_light_for_every_kernel(kernel: str,
                                                                pixfrac: float) -> None:
    scene = _scene()
    centre, aperture = _centres()
    truth = _truth_shares(_drizzle(scene, kernel, pixfrac), aperture)
    own = own_encircled_energy(GRID, centre, aperture, RADIUS, FWHM * OUT_PER_IN,
                               _samplings(scene, kernel, pixfrac), kernel, pixfrac)
    # the phase-averaged model (square kernel's boxes) misses each star by its phases
    psf = MosaicPSF(FWHM * OUT_PER_IN, (OUT_PER_IN, pixfrac * OUT_PER_IN, 1.0, 1.0), inputs=3)
    average = float(encircled_energy(psf, [RADIUS])[0])
    own_err = np.abs(own / truth - 1.0)
    avg_err = np.abs(average / truth - 1.0)
    print(f"{kernel} {pixfrac}: own max {own_err.max():.2e}, phase average max "
          f"{avg_err.max():.2e} (spread of the truth {np.std(truth) / np.mean(truth):.2e})")
    assert own_err.max() < 2e-4
    assert np.std(truth) / np.mean(truth) > 10 * own_err.max()  # the phases matter


def test_masked_input_pixels_and_unequal_weights_are_followed() -> None:
    """A DO_NOT_USE pixel in one input's star core moves that star's share; inputs weighted
    1 : 3 : 0.5 move every share: the model follows both."""
    scene = _scene(masked=True)
    centre, aperture = _centres()
    weights = (1.0, 3.0, 0.5)
    truth = _truth_shares(_drizzle(scene, "square", 1.0, weights), aperture)
    own = own_encircled_energy(GRID, centre, aperture, RADIUS, FWHM * OUT_PER_IN,
                               _samplings(scene, "square", 1.0, weights), "square", 1.0)
    clean = _truth_shares(_drizzle(_scene(), "square", 1.0, weights), aperture)
    assert abs(truth[7] / clean[7] - 1.0) > 1e-3  # (the masked pixel matters)
    assert np.abs(own / truth - 1.0).max() < 2e-4


def test_pixel_light_integrates_the_moffat_through_the_map() -> None:
    """Pixel shares sum to the Moffat's light in the stamp's footprint: the whole flux less
    the analytic tail beyond a large stamp, for a rotated, anisotropic map."""
    from obsflow.stage3.psfmodel import _moffat_enclosed

    jac = np.array([[[1.3 * np.cos(0.3), -1.3 * np.sin(0.3)], [1.2 * np.sin(0.3),
                                                                 1.2 * np.cos(0.3)]]])
    light = pixel_light(np.array([-40.3]), np.array([-40.6]), jac, 81, 2.0)
    # the footprint (an 81 x 81 pixel parallelogram) holds all light within ~47 grid px
    inner = float(_moffat_enclosed(1.2 * 40.0, 2.0, 2.5))
    outer = float(_moffat_enclosed(1.3 * 40.9 * np.sqrt(2.0), 2.0, 2.5))
    assert inner <= light.sum() <= outer
    assert light[0, 40, 40] > light[0, 40, 39]  # the peak pixel holds the centre


def test_the_catalog_gives_point_sources_their_own_total_flux() -> None:
    """Through the catalog: on the square-kernel mosaic with a little noise (1e-4 of a star's
    flux in its aperture), point sources' total fluxes from their own shares are within
    0.05% of the truth, where the PSF model's average share leaves them several times
    farther (the scene's phases)."""
    scene = _scene()
    drizzled = _drizzle(scene, "square", 1.0)
    wht = (drizzled != 0).astype(np.float32)
    noise = 0.02
    mosaic = drizzled + np.random.default_rng(2).normal(0.0, noise, drizzled.shape)
    psf = MosaicPSF(FWHM * OUT_PER_IN, (OUT_PER_IN, OUT_PER_IN, 1.0, 1.0), inputs=3)
    err = np.full(mosaic.shape, noise, np.float32)
    result = source_catalog(mosaic.astype(np.float32), err, wht, GRID, psf,
                            CatalogOptions(box_pix=12))  # (a small field)
    table: Table = result.table
    average = np.asarray(table["aper_total_flux"]).copy()
    placed = point_sources_from_inputs(table, GRID, ((sci, dq, w, FWHM, 1.0) for (sci, dq), w in
                                                      zip(scene, INPUTS, strict=True)), psf)
    assert placed == int((~np.asarray(table["is_extended"])).sum()) >= 20
    own = np.asarray(table["aper_total_flux"])
    to_flux = FLUX * table.meta["pixel_area_sr"] * 1e6  # (SCI per input pixel: x 2.04 per grid pixel)
    own_err = np.abs(own / (to_flux * OUT_PER_IN**2) - 1.0)
    avg_err = np.abs(average / (to_flux * OUT_PER_IN**2) - 1.0)
    print(f"own {np.median(own_err):.2e} max {own_err.max():.2e}; average "
          f"{np.median(avg_err):.2e} max {avg_err.max():.2e}")
    assert own_err.max() < 5e-4 and avg_err.max() > 3 * own_err.max()
    assert (np.asarray(table["aper_total_ee"]) != table.meta["apertures"][-1]["encircled_energy"]
            ).all()
    assert "own_aperture_correction" in table.meta


def test_sources_no_input_holds_get_nan_and_bad_shapes_are_refused() -> None:
    centre, aperture = _centres()
    far = centre + 5000.0
    scene = _scene()
    samplings = _samplings(scene, "square", 1.0)
    assert np.isnan(own_encircled_energy(GRID, far, far, RADIUS, 1.5, samplings)).all()
    with pytest.raises(CatalogError, match="aperture centres"):
        own_encircled_energy(GRID, centre, aperture[:3], RADIUS, 1.5, samplings)
    with pytest.raises(CatalogError, match="kernel"):
        own_encircled_energy(GRID, centre, aperture, RADIUS, 1.5, samplings, "box")


def test_sources_in_batches_give_the_same_shares(monkeypatch: pytest.MonkeyPatch) -> None:
    import obsflow.stage3.apcorr as apcorr

    scene = _scene()
    centre, aperture = _centres()
    samplings = _samplings(scene, "square", 1.0)
    whole = own_encircled_energy(GRID, centre, aperture, RADIUS, 1.5, samplings)
    monkeypatch.setattr(apcorr, "SOURCES_AT_ONCE", 7)  # 25 sources: batches of 7, 7, 7, 4
    # (equal but for the rounding of canvas coordinates, which depend on a block's row)
    np.testing.assert_allclose(
        own_encircled_energy(GRID, centre, aperture, RADIUS, 1.5, samplings), whole, rtol=1e-12)
