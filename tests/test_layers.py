"""Layer figures, the checkerboard fix and the initialisations, against direct simulations
of the layer (the textbook transposed convolution: zeros inserted, then a convolution)
and an independent least-squares projection."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from upconv.errors import BadInputError
from upconv.layers import (
    bilinear_init,
    fix_checkerboard,
    guess_stride,
    icnr_init,
    layer_figures,
    phase_sums,
)
from upconv.transpose import zero_insertion_transpose

LAYERS = [((3, 4, 4, 4), 2), ((2, 3, 5, 5), 2), ((3, 2, 6, 6), 3), ((2, 2, 5, 4), 3),
          ((1, 1, 3, 3), 2)]


def simulate(image: np.ndarray, weights: np.ndarray, stride: int) -> np.ndarray:
    """The layer applied the textbook way: (C_in, H, W) -> (C_out, H', W')."""
    return np.stack([sum(zero_insertion_transpose(image[i], weights[i, o], stride)
                         for i in range(weights.shape[0]))
                     for o in range(weights.shape[1])])


def interior_cells(output: np.ndarray, stride: int, margin: int) -> np.ndarray:
    """(C, cells, s, s): whole s x s output cells away from the border."""
    channels, height, width = output.shape
    inner = output[:, margin:height - margin, margin:width - margin]
    rows, cols = inner.shape[1] // stride * stride, inner.shape[2] // stride * stride
    inner = inner[:, :rows, :cols].reshape(channels, rows // stride, stride, cols // stride,
                                           stride)
    return inner.transpose(0, 1, 3, 2, 4).reshape(channels, -1, stride, stride)


@pytest.mark.parametrize("shape,stride", LAYERS)
def test_flat_figures_equal_a_simulation_on_constant_inputs(rng, shape, stride):
    weights = rng.normal(size=shape)
    figures = layer_figures(weights, stride)
    margin = 2 * max(shape[2:])
    periodic_each = np.zeros(shape[1])
    for i in range(shape[0]):  # a flat 1 in input channel i alone
        image = np.zeros((shape[0], 12, 12))
        image[i] = 1.0
        cells = interior_cells(simulate(image, weights, stride), stride, margin)
        assert np.allclose(cells, cells[:, :1], atol=1e-12)  # every cell alike: flat input
        pattern = cells[:, 0]
        deviation = pattern - pattern.mean(axis=(1, 2), keepdims=True)
        periodic_each += (deviation ** 2).mean(axis=(1, 2))
    np.testing.assert_allclose(figures.flat_each, np.sqrt(periodic_each), rtol=1e-10)
    cells = interior_cells(simulate(np.ones((shape[0], 12, 12)), weights, stride), stride,
                           margin)[:, 0]
    together = cells - cells.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(figures.flat_together,
                               np.sqrt((together ** 2).mean(axis=(1, 2))), atol=1e-12)
    np.testing.assert_allclose(figures.mean_response, cells.mean(axis=(1, 2)), atol=1e-12)


@pytest.mark.parametrize("shape,stride", LAYERS[:3])
def test_gain_is_the_rms_response_to_white_noise(rng, shape, stride):
    noise = rng.normal(size=(shape[0], 160, 160))
    weights = rng.normal(size=shape)
    output = simulate(noise, weights, stride)
    margin = 2 * max(shape[2:])
    inner = output[:, margin:-margin, margin:-margin]
    measured = np.sqrt((inner ** 2).mean(axis=(1, 2)))
    # ~100 000 output samples, correlated over a kernel: a few percent of sampling error
    np.testing.assert_allclose(layer_figures(weights, stride).gain, measured, rtol=0.05)


@pytest.mark.parametrize("shape,stride", LAYERS[:3])
def test_figure_predicts_the_checkerboard_of_smooth_inputs(rng, shape, stride):
    """Smooth independent input channels of unit RMS: each output cell's deviation from its
    own mean is the flat pattern weighted by the local inputs, of RMS ``flat_each``."""
    fields = ndimage.gaussian_filter(rng.normal(size=(shape[0], 400, 400)), (0, 24, 24))
    fields -= fields.mean(axis=(1, 2), keepdims=True)
    fields /= np.sqrt((fields ** 2).mean(axis=(1, 2), keepdims=True))
    weights = rng.normal(size=shape)
    cells = interior_cells(simulate(fields, weights, stride), stride, 100)
    deviation = cells - cells.mean(axis=(2, 3), keepdims=True)
    measured = np.sqrt((deviation ** 2).mean(axis=(1, 2, 3)))
    np.testing.assert_allclose(measured, layer_figures(weights, stride).flat_each, rtol=0.12)


def test_figure_is_scale_invariant_and_finite_for_zero_mean_channels(rng):
    weights = rng.normal(size=(3, 5, 4, 4))
    weights -= weights.mean(axis=(0, 2, 3), keepdims=True)  # every output channel's mean 0
    figures = layer_figures(weights, 2)
    assert np.abs(figures.mean_response).max() < 1e-12
    assert np.isfinite(figures.checkerboard).all() and figures.figure < 400
    np.testing.assert_allclose(layer_figures(1e-3 * weights, 2).checkerboard,
                               figures.checkerboard, rtol=1e-9)
    assert layer_figures(np.zeros((2, 2, 4, 4)), 2).figure == 0.0


@pytest.mark.parametrize("shape,stride", LAYERS)
def test_fix_is_the_least_squares_projection(rng, shape, stride):
    weights = rng.normal(size=shape)
    fixed = fix_checkerboard(weights, stride)
    sums = phase_sums(fixed, stride)
    np.testing.assert_allclose(sums, sums[..., :1, :1] * np.ones_like(sums), atol=1e-12)
    assert layer_figures(fixed, stride).figure == 0.0
    # Independently: project each pair onto {w : every phase sum equals phase (0, 0)'s}.
    k_h, k_w = shape[2:]
    phase = (np.arange(k_h)[:, None] % stride) * stride + np.arange(k_w)[None, :] % stride
    indicator = np.stack([(phase == g).ravel() for g in range(stride * stride)]).astype(float)
    constraints = indicator[1:] - indicator[0]
    projector = np.eye(k_h * k_w) - constraints.T @ np.linalg.solve(
        constraints @ constraints.T, constraints)
    expected = (weights.reshape(-1, k_h * k_w) @ projector.T).reshape(shape)
    np.testing.assert_allclose(fixed, expected, atol=1e-12)


def test_fix_keeps_the_dtype_and_leaves_a_fixed_layer_alone(rng):
    weights = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    fixed = fix_checkerboard(weights, 2)
    assert fixed.dtype == np.float32
    np.testing.assert_allclose(fix_checkerboard(fixed, 2), fixed, atol=1e-6)


@pytest.mark.parametrize("size,stride", [(4, 2), (3, 2), (6, 3), (5, 3), (8, 4), (7, 2)])
def test_initialisations_keep_flat_inputs_flat(rng, size, stride):
    for weights in (bilinear_init(3, 3, size, stride),
                    icnr_init(3, 5, size, stride, np.random.default_rng(1))):
        assert layer_figures(weights, stride).figure == 0.0
        output = simulate(np.ones((weights.shape[0], 10, 10)), weights, stride)
        cells = interior_cells(output, stride, 2 * size)
        np.testing.assert_allclose(cells, cells[:, :1, :1, :1] * np.ones_like(cells),
                                   atol=1e-12)


def test_bilinear_init_is_fcn_and_icnr_is_seeded(rng):
    # Long, Shelhamer and Darrell's upsample_filt(4): factor 2, centre 1.5
    og = np.ogrid[:4, :4]
    fcn = (1 - abs(og[0] - 1.5) / 2) * (1 - abs(og[1] - 1.5) / 2)
    weights = bilinear_init(2, 2, 4, 2)
    np.testing.assert_array_equal(weights[0, 0], fcn)
    np.testing.assert_array_equal(weights[1, 1], fcn)
    assert not weights[0, 1].any()
    for size, stride in [(3, 2), (5, 3), (7, 2), (8, 4)]:  # interpolating: every phase sums to 1
        np.testing.assert_allclose(phase_sums(bilinear_init(1, 1, size, stride), stride), 1.0,
                                   atol=1e-12)
    first = icnr_init(2, 3, 4, 2, np.random.default_rng(5))
    np.testing.assert_array_equal(first, icnr_init(2, 3, 4, 2, np.random.default_rng(5)))
    assert not np.array_equal(first, icnr_init(2, 3, 4, 2, np.random.default_rng(6)))
    # the layer is nearest-neighbour upsampling then a stride-1 convolution: sums of
    # every phase equal the seed kernel's sum
    assert np.abs(first).max() <= 4 * 1 / np.sqrt(2 * 9)


def test_bad_initialisations_are_refused():
    with pytest.raises(BadInputError, match="as many input as output"):
        bilinear_init(3, 4, 4, 2)
    with pytest.raises(BadInputError, match="at least 3"):
        bilinear_init(2, 2, 2, 2)
    with pytest.raises(BadInputError, match="smaller than its stride"):
        icnr_init(2, 2, 2, 3, np.random.default_rng(0))


def test_stride_guess():
    assert [guess_stride(k) for k in (2, 3, 4, 5, 6, 7, 8)] == [2, 2, 2, 3, 3, 4, 4]


def test_float32_round_off_is_not_a_checkerboard_but_a_small_pattern_is(rng):
    """A fixed layer stored in float32 is exactly checkerboard-free (its phase sums differ
    by round-off only); a pattern a thousand times the round-off is still measured."""
    fixed = fix_checkerboard(rng.normal(size=(6, 5, 4, 4)), 2).astype(np.float32)
    assert layer_figures(fixed, 2).figure == 0.0
    nudged = fixed.copy()
    nudged[0, 0, 0, 0] += 1e-4 * np.abs(fixed).max()
    assert 0.0 < layer_figures(nudged, 2).figure < 0.1
