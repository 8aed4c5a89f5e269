"""Previews: block means against a brute-force loop, sizes, NaN handling; the stretch on
simulated deep and crowded fields."""

from __future__ import annotations

import numpy as np
import pytest

from obsflow.archive.previews import (
    PREVIEW_SIZE,
    background_noise,
    block_mean,
    render_previews,
    stretch,
)


def _brute(image: np.ndarray, factor: int) -> np.ndarray:
    ny, nx = image.shape[0] // factor, image.shape[1] // factor
    out = np.full((ny, nx), np.nan)
    for i in range(ny):
        for j in range(nx):
            block = image[i * factor:(i + 1) * factor, j * factor:(j + 1) * factor]
            good = block[np.isfinite(block)]
            if good.size:
                out[i, j] = good.mean()
    return out


def test_block_mean_equals_a_loop_with_nans_and_ragged_edges() -> None:
    rng = np.random.default_rng(4)
    image = rng.normal(5.0, 2.0, (71, 53))
    image[rng.random(image.shape) < 0.05] = np.nan
    image[0:4, 0:4] = np.inf  # a block with nothing finite
    got = block_mean(image, max_side=20)  # factor 4
    assert got.shape == (17, 13)
    assert np.allclose(got, _brute(image, 4), equal_nan=True)
    assert np.isnan(got[0, 0])
    clean = rng.normal(size=(64, 48))
    assert np.allclose(block_mean(clean, max_side=16), _brute(clean, 4))
    assert block_mean(clean, max_side=64) is clean  # fits already: untouched


def test_full_frame_previews_are_capped_and_small_ones_kept() -> None:
    big = render_previews(np.random.default_rng(1).normal(10, 1, (2048, 2040)))
    assert [(r.kind, r.width, r.height) for r in big][:2] == [
        ("png", 1020, PREVIEW_SIZE), ("jpeg", 1020, PREVIEW_SIZE)]
    small = render_previews(np.ones((40, 30)))
    assert (small[0].width, small[0].height) == (30, 40)


# -- the stretch on simulated deep and crowded fields -------------------------------------------

def _field(cluster_stars: int, star_mag: tuple[float, float], seed: int
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A simulated field (e-/s, Poisson and read noise of 1000 s), its noiseless scene minus the
    background, and the pixel positions (x, y) of its stars."""
    from obsflow.models.pointing import detector_wcs
    from obsflow.profiles import load_profile
    from obsflow.simulate.sky import SceneOptions, make_catalog, render_scene

    inst = load_profile("webb_like").instruments[0]
    filt = inst.filter("F200W")
    shape = (256, 256)
    wcs = detector_wcs(10.0, 20.0, 0.0, (0.0, 0.0, 0.0), inst.pixel_scale_arcsec,
                       (256, 256, 1, 1, 256, 256))
    rng = np.random.default_rng(seed)
    options = SceneOptions(star_density=2000.0, galaxy_density=600.0, star_mag=star_mag,
                           galaxy_mag=(24.0, 29.0), cluster_stars=cluster_stars,
                           cluster_core_arcsec=2.0)
    catalog = make_catalog(10.0, 20.0, 6.0, [filt], rng, options)
    scene = render_scene(catalog, wcs, shape, filt, inst).astype(np.float64)
    sky = render_scene(catalog[:0], wcs, shape, filt, inst).astype(np.float64)
    exptime = 1000.0
    noisy = (rng.poisson(scene * exptime) + rng.normal(0.0, 10.0, shape)) / exptime
    stars = catalog[catalog["kind"] == "star"]
    x, y = wcs.world_to_pixel_values(np.asarray(stars["ra"]), np.asarray(stars["dec"]))
    inside = (x > 3) & (x < shape[1] - 4) & (y > 3) & (y < shape[0] - 4)
    return noisy, scene - sky, np.round(np.stack([x[inside], y[inside]])).astype(int)


@pytest.mark.parametrize(("name", "cluster", "mags"), [
    ("deep", 0, (24.0, 28.0)), ("crowded", 1500, (16.0, 24.0))])
def test_stretch_keeps_background_grey_and_stars_unsaturated(
        name: str, cluster: int, mags: tuple[float, float]) -> None:
    image, sources, (x, y) = _field(cluster, mags, seed=len(name))
    shown = stretch(image)
    background, sigma = background_noise(image)
    empty = sources < 0.5 * sigma  # pixels the simulator put (almost) nothing on
    assert empty.mean() > 0.05, name
    grey = shown[empty]
    # the background's noise is drawn in greys: neither clipped to black nor washed out to white
    assert ((grey > 10) & (grey < 245)).mean() > 0.85, name
    assert 15 <= np.median(grey) <= 160, name
    # at least 25 grey levels (the crowded field: 30 since the simulator draws faint stars
    # exactly; a clipped or washed-out background gives a handful)
    assert len(np.unique(grey)) >= 25, name
    # stars stand out above the background, and few of them saturate
    peaks = shown[y, x]
    assert x.size >= 5 and np.median(peaks) > np.median(grey), name
    assert (peaks == 255).mean() < 0.2, name
    assert (shown == 255).mean() < 0.002, name


def test_background_noise_is_robust_to_sources() -> None:
    rng = np.random.default_rng(7)
    image = rng.normal(100.0, 5.0, (300, 300))
    image[rng.random(image.shape) < 0.1] += 1e4  # a tenth of the pixels on bright sources
    background, sigma = background_noise(image)
    assert background == pytest.approx(100.0, abs=0.5)
    assert sigma == pytest.approx(5.0, rel=0.1)
    assert background_noise(np.full((10, 10), 3.0)) == (3.0, 1.0)  # flat: sigma stays defined
    assert stretch(np.full((4, 4), np.nan)).max() == 0
