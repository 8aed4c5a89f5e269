"""Sky matching recovers injected sky offsets on scenes the simulator does not make
(a steep gradient, a crowded field), with rotated and dithered images."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS

from obsflow.exceptions import ConfigError
from obsflow.models.dq import DQ
from obsflow.stage3.skymatch import SkyImage, match_sky, pair_difference, sky_keywords

SCALE = 0.1 / 3600  # degrees per pixel
RA0, DEC0 = 150.0, 2.0


def _wcs(dx_pix: float, dy_pix: float, rot_deg: float, shape: tuple[int, int]) -> WCS:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [RA0 + dx_pix * SCALE / np.cos(np.deg2rad(DEC0)), DEC0 + dy_pix * SCALE]
    w.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    c, s = np.cos(np.deg2rad(rot_deg)), np.sin(np.deg2rad(rot_deg))
    w.wcs.cd = np.array([[-c, s], [s, c]]) * SCALE
    return w


def _scene(kind: str, rng: np.random.Generator):
    """Surface brightness at sky positions (ra, dec), MJy/sr: the same for every image."""
    n = 40 if kind == "gradient" else 1500
    ra = RA0 + rng.uniform(-15, 15, n) / 3600
    dec = DEC0 + rng.uniform(-15, 15, n) / 3600
    peak = rng.uniform(0.5, 30.0, n)

    def brightness(x_ra: np.ndarray, x_dec: np.ndarray) -> np.ndarray:
        east = (x_ra - RA0) * np.cos(np.deg2rad(DEC0)) * 3600
        north = (x_dec - DEC0) * 3600
        value = 0.2 + (0.03 * east + 0.02 * north if kind == "gradient" else 0.0)
        for r, d, p in zip(ra, dec, peak, strict=True):
            de = (x_ra - r) * np.cos(np.deg2rad(DEC0)) * 3600
            dn = (x_dec - d) * 3600
            near = (np.abs(de) < 1.0) & (np.abs(dn) < 1.0)
            value = value + np.where(near, p * np.exp(-(de**2 + dn**2) / (2 * 0.08**2)), 0.0)
        return value
    return brightness


def _images(kind: str, offsets: list[float], placements: list[tuple[float, float, float]],
            noise: float = 0.05, seed: int = 1) -> list[SkyImage]:
    rng = np.random.default_rng(seed)
    scene = _scene(kind, rng)
    shape = (160, 180)
    out = []
    for level, (dx, dy, rot) in zip(offsets, placements, strict=True):
        w = _wcs(dx, dy, rot, shape)
        y, x = np.mgrid[0:shape[0], 0:shape[1]]
        ra, dec = w.pixel_to_world_values(x, y)
        sci = (scene(ra, dec) + level + rng.normal(0, noise, shape)).astype(np.float32)
        dq = np.zeros(shape, np.uint32)
        dq[rng.random(shape) < 0.01] = DQ.DO_NOT_USE
        sci[dq != 0] = 1e4  # flagged pixels carry garbage: must not count
        out.append(SkyImage(sci, dq, w))
    return out


PLACES = [(0, 0, 0), (40, 25, 0), (-30, 35, 20), (20, -45, -35)]


@pytest.mark.parametrize("kind", ["gradient", "crowded"])
def test_match_recovers_injected_offsets(kind: str) -> None:
    offsets = [0.10, 0.35, -0.20, 0.05]
    images = _images(kind, offsets, PLACES)
    result = match_sky(images, "match")
    truth = np.array(offsets) - min(offsets)
    np.testing.assert_allclose(result.relative, truth, atol=0.004)
    assert result.global_level == 0.0 and len(result.pairs) == 6
    both = match_sky(images)  # global+match: the darkest image's own sky added
    np.testing.assert_allclose(both.relative, result.relative)
    if kind == "gradient":  # the darkest image's median sky: 0.2 + its share of the gradient
        assert both.global_level == pytest.approx(0.2 + min(offsets), abs=0.2)
    np.testing.assert_allclose(both.levels - both.levels.min(), truth, atol=0.004)


def test_pair_difference_is_antisymmetric_and_ignores_tiny_overlaps() -> None:
    a, b, far = _images("crowded", [0.3, 0.1, 0.0], [(0, 0, 0), (30, 10, 10), (400, 0, 0)])
    ab, ba = pair_difference(a, b), pair_difference(b, a)
    assert ab is not None and ba is not None
    assert ab[0] == pytest.approx(0.2, abs=0.004) and ba[0] == pytest.approx(-0.2, abs=0.004)
    assert pair_difference(a, far) is None  # no overlap at all
    result = match_sky([a, b, far], "match")
    assert [(i, j) for i, j, _, _ in result.pairs] == [(0, 1)]
    assert result.relative[2] == 0.0  # alone in its group: its own zero


def test_global_is_one_level_for_all_and_bad_method_is_refused() -> None:
    images = _images("gradient", [0.1, 0.4], PLACES[:2])
    result = match_sky(images, "global")
    assert np.all(result.relative == 0) and np.all(result.levels == result.global_level)
    with pytest.raises(ConfigError, match="expected one of match, global, global\\+match"):
        match_sky(images, "local")
    with pytest.raises(ConfigError, match="at least one image"):
        match_sky([])
    assert sky_keywords(0.25, "global+match", False)["BKGMETH"][0] == "global+match"
