"""Transposed convolution against independent references: a scatter loop, the
explicit convolution matrix, and zero insertion followed by a convolution."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_images_close
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage, signal

import upconv
from upconv.kernels import Kernel, builtin_kernel, conv_matrix
from upconv.options import Boundary
from upconv.transpose import post_convolve, transposed_conv, zero_insertion_transpose


def scatter_reference(x: np.ndarray, w: np.ndarray, s: int, padding: int,
                      out_shape: tuple[int, int]) -> np.ndarray:
    """The definition, one pixel at a time: out[i*s - P + k] += w[k] * x[i]."""
    out = np.zeros(out_shape)
    for iy in range(x.shape[0]):
        for ix in range(x.shape[1]):
            for ky in range(w.shape[0]):
                for kx in range(w.shape[1]):
                    oy, ox = iy * s - padding + ky, ix * s - padding + kx
                    if 0 <= oy < out_shape[0] and 0 <= ox < out_shape[1]:
                        out[oy, ox] += w[ky, kx] * x[iy, ix]
    return out


def torch_size(n: int, k: int, s: int, p: int, q: int) -> int:
    return (n - 1) * s - 2 * p + k + q


@settings(max_examples=80, deadline=None)
@given(s=st.integers(2, 4), kh=st.integers(0, 5), kw=st.integers(0, 5),
       h=st.integers(1, 6), w=st.integers(1, 6), p=st.integers(0, 3), q=st.integers(0, 3),
       seed=st.integers(0, 2 ** 32 - 1))
def test_pytorch_geometry_equals_the_scatter_definition(s, kh, kw, h, w, p, q, seed):
    kh, kw, q = kh + s, kw + s, q % s
    out_h, out_w = torch_size(h, kh, s, p, q), torch_size(w, kw, s, p, q)
    if min(out_h, out_w) < 1:
        return
    rng = np.random.default_rng(seed)
    x, weights = rng.standard_normal((h, w)), rng.standard_normal((kh, kw))
    actual = transposed_conv(x[:, :, None], Kernel(weights, stride=s), Boundary.ZERO,
                             padding=p, output_padding=q)[:, :, 0]
    expected = scatter_reference(x, weights, s, p, (out_h, out_w))
    assert_images_close(actual, expected, 1e-10, f"s={s} k={kh}x{kw} P={p} Q={q}")
    assert_images_close(zero_insertion_transpose(x, weights, s, p, q), expected, 1e-10,
                        "zero insertion")


@pytest.mark.parametrize("s,k,size,padding", [(1, 3, (4, 4), 0), (2, 3, (7, 6), 1),
                                              (2, 4, (8, 8), 1), (3, 5, (9, 11), 2)])
def test_convolution_matrix_and_its_transpose(rng, s, k, size, padding):
    weights = rng.standard_normal((k, k))
    matrix = conv_matrix(weights, size, s, padding)
    x = rng.standard_normal(size)
    # C @ x: a direct strided correlation of the zero-padded input
    direct = signal.correlate2d(np.pad(x, padding), weights, mode="valid")[::s, ::s]
    np.testing.assert_allclose((matrix @ x.ravel()).reshape(direct.shape), direct, atol=1e-12)
    # C.T @ y: the transposed convolution back onto the input's size
    y = rng.standard_normal(direct.shape)
    q = (size[0] - torch_size(direct.shape[0], k, s, padding, 0),
         size[1] - torch_size(direct.shape[1], k, s, padding, 0))
    if s > 1:
        transposed = transposed_conv(y[:, :, None], Kernel(weights, stride=s), Boundary.ZERO,
                                     padding=padding, output_padding=q)[:, :, 0]
    else:
        transposed = scatter_reference(y, weights, 1, padding, size)
    np.testing.assert_allclose((matrix.T @ y.ravel()).reshape(size), transposed, atol=1e-12)


def test_seed_example_is_4_by_16():
    assert conv_matrix(np.ones((3, 3)), (4, 4)).shape == (4, 16)


@pytest.mark.parametrize("boundary", ["edge", "reflect", "zero"])
@pytest.mark.parametrize("s", [2, 3, 4])
def test_centred_geometry_equals_extend_then_scatter(rng, boundary, s):
    weights = rng.standard_normal((s + 3, s + 2))
    x = rng.random((6, 7))
    actual = transposed_conv(x[:, :, None], Kernel(weights, stride=s),
                             Boundary(boundary))[:, :, 0]
    # Independent: extend by e pixels, scatter with kernel origin floor((s - K)/2)
    # relative to the pixel's first output, crop the s*H x s*W window.
    e = 4
    mode = {"edge": "edge", "reflect": "symmetric", "zero": "constant"}[boundary]
    extended = np.pad(x, e, mode=mode)
    offset_y, offset_x = (s - weights.shape[0]) // 2, (s - weights.shape[1]) // 2
    big = np.zeros(((6 + 2 * e) * s + 20, (7 + 2 * e) * s + 20))
    for iy in range(extended.shape[0]):
        for ix in range(extended.shape[1]):
            oy, ox = iy * s + offset_y + 10, ix * s + offset_x + 10
            big[oy:oy + weights.shape[0], ox:ox + weights.shape[1]] += weights * extended[iy, ix]
    expected = big[10 + e * s:10 + e * s + 6 * s, 10 + e * s:10 + e * s + 7 * s]
    assert_images_close(actual, expected, 1e-10)


@pytest.mark.parametrize("boundary", ["edge", "reflect", "zero"])
@pytest.mark.parametrize("s", [2, 3, 4, 5])
def test_bilinear_kernel_equals_bilinear_interpolation(rng, boundary, s):
    image = rng.random((11, 14, 3)).astype(np.float32)
    transposed = upconv.scale(image, s, method="transpose", kernel="bilinear", boundary=boundary)
    assert transposed.shape == (11 * s, 14 * s, 3)
    interpolated = upconv.scale(image, s, method="bilinear", boundary=boundary)
    assert_images_close(transposed, interpolated, 1e-6, f"s={s} {boundary}")


@pytest.mark.parametrize("s", [2, 3])
def test_nearest_kernel_is_pixel_replication(rng, s):
    image = rng.random((5, 6, 2))
    out = upconv.scale(image, s, method="transpose", kernel="nearest")
    np.testing.assert_allclose(out, np.kron(image, np.ones((s, s, 1))), atol=1e-12)


def test_symmetric_kernel_commutes_with_flips(rng):
    half = rng.random((3, 3))
    symmetric = np.block([[half, half[:, ::-1]], [half[::-1], half[::-1, ::-1]]])  # 6x6
    kernel = Kernel(symmetric, stride=2)
    image = rng.random((9, 8, 1))
    out = transposed_conv(image, kernel)
    np.testing.assert_allclose(transposed_conv(image[::-1, ::-1], kernel), out[::-1, ::-1],
                               atol=1e-12)


def test_flat_image_borders_are_not_darkened():
    flat = np.full((6, 6, 1), 0.7)
    edge = upconv.scale(flat, 2, method="transpose", kernel="bicubic")
    np.testing.assert_allclose(edge, 0.7, atol=1e-12)
    zero = upconv.scale(flat, 2, method="transpose", kernel="bicubic", boundary="zero")
    assert zero[0, 0, 0] < 0.69


def test_per_channel_and_channel_mixing_kernels(rng):
    image = rng.random((5, 4, 3))
    per_channel = rng.standard_normal((3, 4, 4))
    out = transposed_conv(image, Kernel(per_channel, stride=2))
    for c in range(3):
        single = transposed_conv(image[:, :, c:c + 1], Kernel(per_channel[c], stride=2))
        np.testing.assert_allclose(out[:, :, c], single[:, :, 0], atol=1e-12)
    mixing = rng.standard_normal((3, 2, 5, 5))  # PyTorch (C_in, C_out, kH, kW)
    out = transposed_conv(image, Kernel(mixing, stride=2), Boundary.ZERO, padding=1)
    assert out.shape == (torch_size(5, 5, 2, 1, 0), torch_size(4, 5, 2, 1, 0), 2)
    for co in range(2):
        expected = sum(scatter_reference(image[:, :, ci], mixing[ci, co], 2, 1, out.shape[:2])
                       for ci in range(3))
        np.testing.assert_allclose(out[:, :, co], expected, atol=1e-12)


def test_non_separable_and_separable_paths_agree_with_the_reference(rng):
    x = rng.random((70, 9))  # more than one band of rows
    separable = np.outer(rng.random(6), rng.random(6))
    general = separable + 0.1 * rng.standard_normal((6, 6))
    for weights in (separable, general):
        out = transposed_conv(x[:, :, None], Kernel(weights, stride=2), Boundary.ZERO,
                              padding=2)[:, :, 0]
        expected = scatter_reference(x, weights, 2, 2, out.shape)
        np.testing.assert_allclose(out, expected, atol=1e-12)


def test_threads_do_not_change_the_result(rng):
    image = rng.random((200, 30, 3)).astype(np.float32)
    kernel = Kernel(rng.random((6, 6)), stride=2)
    np.testing.assert_array_equal(transposed_conv(image, kernel, threads=1),
                                  transposed_conv(image, kernel, threads=2))


def test_post_kernel_is_a_same_size_correlation(rng):
    image = rng.random((10, 12, 2))
    weights = rng.random((3, 3))
    out = post_convolve(image, weights, Boundary.EDGE)
    for c in range(2):
        np.testing.assert_allclose(out[:, :, c], ndimage.correlate(image[:, :, c], weights,
                                                                   mode="nearest"), atol=1e-12)


def test_post_kernel_softens_the_checkerboard_of_uneven_overlap():
    flat = np.full((12, 12), 0.5)
    ones = Kernel(np.ones((3, 3)) / 2.25, stride=2)

    def ripple(out: np.ndarray) -> float:
        phase_means = [out[4 + p:-4:2, 4 + q:-4:2].mean() for p in (0, 1) for q in (0, 1)]
        return float(np.std(phase_means))

    plain = upconv.scale(flat, 2, method="transpose", kernel=ones)
    smoothed = upconv.scale(flat, 2, method="transpose", kernel=ones, post_kernel="binomial3")
    assert ripple(plain) > 0.1
    assert ripple(smoothed) < ripple(plain) / 3


def test_api_takes_a_kernel_object_a_path_or_a_name(tmp_path, rng):
    image = rng.random((6, 5, 3)).astype(np.float32)
    kernel = builtin_kernel("bicubic", 3)
    kernel.save(tmp_path / "k.json")
    by_object = upconv.scale(image, 3, method="transpose", kernel=kernel)
    by_path = upconv.scale(image, method="transpose", kernel=tmp_path / "k.json")
    by_name = upconv.scale(image, 3, method="transpose", kernel="bicubic")
    np.testing.assert_array_equal(by_object, by_path)
    np.testing.assert_array_equal(by_object, by_name)
    assert by_object.dtype == np.float32 and by_object.shape == (18, 15, 3)


@pytest.mark.parametrize("kwargs,fragment", [
    ({"factor": (2, 3)}, "one stride"),
    ({"factor": 2.5}, "whole factor"),
    ({"factor": 1}, "whole factor"),
    ({"output_shape": (10, 10)}, "not an output shape"),
    ({"factor": 2, "kernel": "lanczos"}, "no such kernel file"),
    ({"factor": 2, "padding": -1}, "padding"),
    ({"factor": 2, "padding": 1, "output_padding": 2}, "output_padding"),
    ({"factor": 2, "output_padding": 1}, "output_padding"),
])
def test_transpose_api_refuses_bad_arguments(kwargs, fragment):
    with pytest.raises(upconv.UpconvError, match=fragment):
        upconv.scale(np.zeros((4, 4), np.float32), method="transpose", **kwargs)


@pytest.mark.parametrize("s,size", [(2, 4), (2, 8), (3, 5), (3, 9), (4, 6)])
def test_symmetric_kernels_with_even_size_minus_stride_are_half_pixel_aligned(rng, s, size):
    half = rng.random(((size + 1) // 2, (size + 1) // 2))
    full = np.concatenate([half, half[::-1][size % 2:]])
    symmetric = np.concatenate([full, full[:, ::-1][:, size % 2:]], axis=1)
    assert symmetric.shape == (size, size)
    kernel = Kernel(symmetric, stride=s)
    image = rng.random((7, 9, 1))
    out = transposed_conv(image, kernel)
    np.testing.assert_allclose(transposed_conv(image[::-1, ::-1], kernel), out[::-1, ::-1],
                               atol=1e-12)


def test_per_axis_padding_and_output_padding(rng):
    x, weights = rng.standard_normal((4, 5)), rng.standard_normal((5, 4))
    out = transposed_conv(x[:, :, None], Kernel(weights, stride=3), Boundary.ZERO,
                          padding=(1, 2), output_padding=(2, 0))[:, :, 0]
    expected_shape = (torch_size(4, 5, 3, 1, 2), torch_size(5, 4, 3, 2, 0))
    big = scatter_reference(x, weights, 3, 0, (expected_shape[0] + 2, expected_shape[1] + 4))
    np.testing.assert_allclose(out, big[1:1 + expected_shape[0], 2:2 + expected_shape[1]],
                               atol=1e-12)


def test_transposed_conv_takes_what_scale_takes(rng):
    """A boundary named by a string and a 2-D image, as upconv.scale accepts them."""
    image = rng.random((9, 11))
    kernel = Kernel(rng.standard_normal((4, 4)), stride=2)
    for boundary in ("edge", "reflect", "zero"):
        direct = transposed_conv(image, kernel, boundary)
        assert direct.shape == (18, 22)
        np.testing.assert_array_equal(
            direct, upconv.scale(image, method="transpose", kernel=kernel, boundary=boundary))
        np.testing.assert_array_equal(
            direct, transposed_conv(image[:, :, None], kernel, Boundary(boundary))[:, :, 0])
    with pytest.raises(upconv.UpconvError, match="unknown boundary 'wrap'"):
        transposed_conv(image, kernel, "wrap")
