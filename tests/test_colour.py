"""Linear-light and premultiplied-alpha resampling against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_images_close, zoom_per_channel

import upconv
from upconv.colour import linear_to_srgb, srgb_to_linear


def reference_srgb_decode(v: np.ndarray) -> np.ndarray:
    # IEC 61966-2-1, written out independently of upconv.colour
    return np.piecewise(v, [v <= 0.04045, v > 0.04045],
                        [lambda t: t / 12.92, lambda t: ((t + 0.055) / 1.055) ** 2.4])


def test_srgb_functions_match_the_standard_and_invert_each_other():
    values = np.linspace(0, 1, 1001)
    np.testing.assert_allclose(srgb_to_linear(values), reference_srgb_decode(values), atol=1e-12)
    np.testing.assert_allclose(linear_to_srgb(srgb_to_linear(values)), values, atol=1e-12)


@pytest.mark.parametrize("method", ["bilinear", "bicubic"])
def test_linear_light_is_decode_resample_encode(rng, method):
    image = rng.random((12, 9, 3))
    expected = zoom_per_channel(reference_srgb_decode(image), (2, 2), method, "edge")
    expected = np.sign(expected) * np.where(np.abs(expected) <= 0.0031308,
                                            np.abs(expected) * 12.92,
                                            1.055 * np.abs(expected) ** (1 / 2.4) - 0.055)
    actual = upconv.scale(image, 2, method=method, linear_light=True)
    assert_images_close(actual, expected, 1e-9)


def test_linear_light_keeps_fine_detail_brighter():
    # A black/white pixel checkerboard averages to 50% *light*, which is sRGB 0.735,
    # not 0.5: the gamma-naive result is visibly too dark.
    board = (np.indices((16, 16)).sum(axis=0) % 2).astype(np.float64)
    naive = upconv.scale(board, 2.5, method="bilinear")
    linear = upconv.scale(board, 2.5, method="bilinear", linear_light=True)
    assert linear.mean() > naive.mean() + 0.1


@pytest.mark.parametrize("method", ["bilinear", "bicubic"])
def test_alpha_is_resampled_premultiplied(rng, method):
    image = rng.random((10, 11, 4))
    image[..., 3] = rng.random((10, 11)) > 0.3  # some fully transparent pixels
    premultiplied = image.copy()
    premultiplied[..., :3] *= image[..., 3:]
    resampled = zoom_per_channel(premultiplied, (3, 3), method, "edge")
    alpha = np.clip(resampled[..., 3:], 0, 1)
    colour = np.minimum(np.maximum(resampled[..., :3], 0), alpha)  # premultiplied: 0..alpha
    visible = alpha >= 0.5 / 65535
    expected = np.concatenate(
        [np.where(visible, colour / np.where(visible, alpha, 1), 0), alpha], axis=-1)
    actual = upconv.scale(image, 3, method=method, alpha=True)
    assert_images_close(actual, expected, 1e-9)


def test_nearly_transparent_pixels_keep_sane_colours(rng):
    image = np.dstack([rng.uniform(0.02, 0.97, (9, 9)), (rng.random((9, 9)) > 0.5) * 1.0])
    out = upconv.scale(image, 2, method="bicubic", alpha=True)
    assert out[..., 0].min() >= 0 and out[..., 0].max() <= 1


def test_transparent_colour_does_not_bleed():
    # Opaque gray next to transparent pixels whose colour is black.
    image = np.zeros((4, 8, 4))
    image[:, :4] = (0.5, 0.5, 0.5, 1.0)
    out = upconv.scale(image, 4, method="bilinear", alpha=True)
    visible = out[..., 3] > 0
    np.testing.assert_allclose(out[visible][:, :3], 0.5, atol=1e-12)
    naive = upconv.scale(image, 4, method="bilinear")
    assert naive[..., :3][naive[..., 3] > 0].min() < 0.45  # the dark halo we avoid


def test_nearest_ignores_colour_options(rng):
    image = rng.integers(0, 256, (5, 6, 4), dtype=np.uint8)
    plain = upconv.scale(image, 2, method="nearest")
    np.testing.assert_array_equal(
        upconv.scale(image, 2, method="nearest", alpha=True, linear_light=True), plain)
