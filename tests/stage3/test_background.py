"""The mosaic background's banded helpers equal their whole-image forms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt
from scipy.signal import fftconvolve

from obsflow.exceptions import CatalogError
from obsflow.stage3 import background
from obsflow.stage3.background import dilated_source_mask, smooth, smoothing_kernel


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_banded_smoothing_equals_the_whole_image_fft_convolution(dtype: type) -> None:
    rng = np.random.default_rng(5)
    image = rng.normal(0.0, 1.0, (3 * background.SMOOTH_BAND_ROWS + 37, 301)).astype(dtype)
    image[100:104, 50:54] += 40.0  # a bright source across no band edge
    image[background.SMOOTH_BAND_ROWS - 2:background.SMOOTH_BAND_ROWS + 2, 200:204] += 40.0
    kernel = smoothing_kernel(3.2)
    got = smooth(image, kernel)
    want = fftconvolve(image.astype(np.float64), kernel, mode="same")
    assert got.dtype == dtype and got.shape == image.shape
    tol = 2e-5 if dtype == np.float32 else 1e-12
    assert np.max(np.abs(got - want)) < tol * np.max(np.abs(want))
    with pytest.raises(CatalogError, match="odd height"):
        smooth(image, np.ones((4, 4)))


def test_banded_source_mask_dilation_equals_one_distance_transform() -> None:
    rng = np.random.default_rng(9)
    ny, nx = 2 * background.SMOOTH_BAND_ROWS + 91, 157
    segm = np.zeros((ny, nx), np.int32)
    label = 0
    for size in (1, 2, 4, 9, 30, 70):  # radii classes from small to beyond a band's reach
        for _ in range(4):
            label += 1
            y, x = int(rng.integers(0, ny - size)), int(rng.integers(0, nx - size))
            segm[y:y + size, x:x + size] = label
    got = dilated_source_mask(segm, 1.0, 2.0)
    # the whole-image reference: each radius class dilated with one distance transform
    area = np.bincount(segm.ravel())
    radius = np.maximum(2.0, np.sqrt(area / np.pi))
    radius[0] = 0.0
    cls = np.ceil(2.0 * np.log2(np.maximum(radius, 1.0))).astype(np.int64)
    want = segm > 0
    for c in np.unique(cls[1:][area[1:] > 0]):
        sel = np.isin(segm, np.flatnonzero((cls == c) & (area > 0))[np.flatnonzero(
            (cls == c) & (area > 0)) > 0])
        want |= distance_transform_edt(~sel) <= 2.0 ** (c / 2.0)
    assert np.array_equal(got, want)
    assert want.sum() > 2 * (segm > 0).sum()


@pytest.mark.parametrize("kernel_side", [1, 2, 3])  # white noise, and two correlation lengths
def test_empty_aperture_factor_equals_the_exact_variance_of_correlated_noise(
        kernel_side: int) -> None:
    """White noise smoothed by a box kernel (a drizzle-like correlation): the empty-aperture
    factor equals the exact variance ratio sum((w * k)**2) / (sum(k**2) sum(w)), computed
    from the kernel and the aperture's pixel weights, within its sampling error; sources
    (masked) and their halos do not enter it."""
    from photutils.aperture import CircularAperture

    rng = np.random.default_rng(3)
    k = np.full((kernel_side, kernel_side), 1.0 / kernel_side**2)
    noise = fftconvolve(rng.normal(0.0, 1.0, (1400, 1400)), k, mode="same")[100:-100, 100:-100]
    sigma = float(np.sqrt(np.sum(k**2)))  # each pixel's own noise: what ERR says
    radius = 2.1
    w = CircularAperture((5, 5), radius).to_mask(method="exact").to_image((11, 11))
    exact = float(np.sum(fftconvolve(w, k) ** 2) / (np.sum(k**2) * w.sum()))
    data = noise.astype(np.float32)
    masked = np.zeros(data.shape, bool)
    yy, xx = np.mgrid[0:data.shape[0], 0:data.shape[1]]
    for cx, cy in rng.uniform(50, 1150, (40, 2)):  # bright sources with halos, masked
        r2 = (xx - cx) ** 2 + (yy - cy) ** 2
        data += (500.0 * (1 + r2 / 4.0) ** -2.5).astype(np.float32)
        masked |= r2 < 15.0**2
    found = background.empty_aperture_factor(data, np.full(data.shape, sigma, np.float32),
                                             masked, radius)
    assert found is not None
    factor, count = found
    assert count == 3000
    # sampling error of a MAD-based variance from 3000 apertures: ~4% (1 sigma)
    assert factor == pytest.approx(exact, rel=0.12), (factor, exact)
    assert background.empty_aperture_factor(data[:20, :20], np.ones((20, 20), np.float32),
                                            masked[:20, :20], radius) is None  # too few


def _correlated_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """n x n noise of unit pixel sigma, correlated like a drizzled image (2 x 2 box)."""
    k = np.full((2, 2), 0.25)
    raw = fftconvolve(rng.normal(0.0, 1.0, (n + 20, n + 20)), k, mode="same")[10:-10, 10:-10]
    return (raw / np.sqrt(np.sum(k**2))).astype(np.float32)


def test_background_level_is_not_pulled_down_by_masking_noise_peaks() -> None:
    """Noise of mean 0 plus bright sources with halos: the level under the sources' mask
    is 0.  A mask of every segment above the low threshold (``peak_nsigma`` equal to
    ``mask_nsigma``) takes positive noise out of the boxes and the level comes out low;
    segments masked only when their peak is a source's leave the noise whole."""
    rng = np.random.default_rng(5)
    n = 600
    data = _correlated_noise(rng, n)
    yy, xx = np.mgrid[0:n, 0:n]
    for cx, cy in rng.uniform(30, n - 30, (15, 2)):
        data += (300.0 * (1 + ((xx - cx) ** 2 + (yy - cy) ** 2) / 4.0) ** -2.5).astype(np.float32)
    bad = np.zeros(data.shape, bool)
    ours = background.estimate_background(data, bad, 2.0)
    every = background.estimate_background(data, bad, 2.0, peak_nsigma=2.0)
    # the level's own error: ~1.25 / sqrt(600^2 / 3 correlated pixels) = 0.004 sigma
    print(f"level {ours.level.mean():+.4f} sigma (every segment masked: "
          f"{every.level.mean():+.4f}); rms {np.median(ours.rms):.3f} ({np.median(every.rms):.3f})")
    assert abs(float(ours.level.mean())) < 0.02
    assert float(every.level.mean()) < -0.05  # measured -0.09
    assert float(np.median(ours.rms)) == pytest.approx(1.0, abs=0.03)
    assert ours.source_mask.mean() < every.source_mask.mean()


def test_significant_segments_keeps_the_segments_whose_peak_reaches_the_level() -> None:
    labels = np.array([[1, 1, 0, 2], [0, 3, 3, 2]], np.int32)
    smoothed = np.array([[1.0, 6.0, 9.0, 2.0], [0.0, 4.9, 5.0, 3.0]], np.float32)
    out = background.significant_segments(labels, smoothed, 5.0)
    assert out.tolist() == [[1, 1, 0, 0], [0, 3, 3, 0]]
    assert not background.significant_segments(np.zeros((2, 2), np.int32), smoothed[:, :2],
                                               5.0).any()
