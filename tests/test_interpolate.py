"""upconv.scale against independent references: scipy.ndimage.zoom per channel and np.kron."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_images_close, zoom_per_channel
from hypothesis import example, given, settings
from hypothesis import strategies as st

import upconv
import upconv.methods
from upconv.interpolate import axis_phases, axis_taps
from upconv.scaling import output_shape_for

METHODS = ["nearest", "bilinear", "bicubic"]
BOUNDARIES = ["edge", "reflect", "zero"]


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("factor", [2, 3, 4, (2, 3), 1.5, 2.37, (1.25, 3.5), 0.6])
def test_equals_scipy_zoom_per_channel(rng, method, boundary, factor):
    image = rng.random((23, 31, 3)).astype(np.float32)
    fy, fx = factor if isinstance(factor, tuple) else (factor, factor)
    expected = zoom_per_channel(image, (fy, fx), method, boundary)
    actual = upconv.scale(image, factor, method=method, boundary=boundary)
    assert actual.dtype == np.float32
    assert_images_close(actual, expected, 1e-5, f"{method}/{boundary}/{factor}")


@pytest.mark.parametrize("channels", [None, 1, 2, 4])
@pytest.mark.parametrize("method", METHODS)
def test_any_channel_count_and_planar_images(rng, channels, method):
    shape = (17, 12) if channels is None else (17, 12, channels)
    image = rng.random(shape)
    actual = upconv.scale(image, 2, method=method)
    assert actual.dtype == np.float64
    assert_images_close(actual, zoom_per_channel(image, (2, 2), method, "edge"), 1e-9)


@settings(max_examples=60, deadline=None)
# A factor that rounds to the input's size is interpolated (scipy only returns its input for
# a zoom of exactly 1), which on images this small differs from the input by ~1e-4:
@example(height=1, width=2, fy=1.0, fx=1.25, method="bicubic", boundary="reflect", seed=0)
@example(height=2, width=2, fy=1.25, fx=1.25, method="bicubic", boundary="reflect", seed=0)
@example(height=3, width=2, fy=1.0, fx=1.0, method="bicubic", boundary="reflect", seed=0)
@given(height=st.integers(1, 24), width=st.integers(1, 24),
       fy=st.floats(0.5, 5.0), fx=st.floats(0.5, 5.0),
       method=st.sampled_from(METHODS), boundary=st.sampled_from(BOUNDARIES),
       seed=st.integers(0, 2 ** 32 - 1))
def test_random_shapes_and_factors_match_zoom(height, width, fy, fx, method, boundary, seed):
    image = np.random.default_rng(seed).random((height, width, 2))
    expected = zoom_per_channel(image, (fy, fx), method, boundary)
    if min(expected.shape[:2]) < 1:
        return  # zoom itself produces an empty image; upconv refuses those (tested below)
    actual = upconv.scale(image, (fy, fx), method=method, boundary=boundary)
    assert_images_close(actual, expected, 1e-9, f"{method}/{boundary}")


@pytest.mark.parametrize("factor", [2, 3, 5])
def test_nearest_at_integer_factors_is_pixel_replication(rng, factor):
    image = rng.integers(0, 256, (9, 14, 3), dtype=np.uint8)
    expected = np.kron(image, np.ones((factor, factor, 1), np.uint8))
    actual = upconv.scale(image, factor, method="nearest")
    assert actual.dtype == np.uint8
    np.testing.assert_array_equal(actual, expected)


def test_nearest_keeps_uint16_exactly(rng):
    image = rng.integers(0, 65536, (5, 7), dtype=np.uint16)
    np.testing.assert_array_equal(upconv.scale(image, 2, method="nearest"),
                                  np.kron(image, np.ones((2, 2), np.uint16)))


@pytest.mark.parametrize("method", ["bilinear", "bicubic"])
def test_threads_do_not_change_the_result(rng, method):
    image = rng.random((150, 40, 3)).astype(np.float32)  # several bands
    one = upconv.scale(image, 2, method=method, threads=1)
    two = upconv.scale(image, 2, method=method, threads=2)
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("name", list(upconv.methods.METHODS))
@pytest.mark.parametrize("factor", [2, 3, 4])
def test_polyphase_operator_equals_the_general_one(name, factor):
    n = 7
    method = upconv.methods.METHODS[name]
    taps = axis_taps(n, n * factor, method, pad=3)
    phases = axis_phases(factor, method, pad=3)
    for i in range(n * factor):
        m, p = divmod(i, factor)
        np.testing.assert_array_equal(taps.index[i], m + phases.start[p] + np.arange(method.taps))
        np.testing.assert_allclose(taps.weights[i], phases.weights[p], atol=1e-12)


def test_flat_image_stays_flat_with_every_method_and_boundary():
    flat = np.full((10, 13, 3), 0.3, np.float32)
    for method in METHODS:
        for boundary in ("edge", "reflect"):
            out = upconv.scale(flat, 2.5, method=method, boundary=boundary)
            np.testing.assert_allclose(out, 0.3, atol=1e-6)


def test_zero_boundary_darkens_the_border_and_edge_does_not():
    flat = np.ones((8, 8), np.float32)
    assert upconv.scale(flat, 2, method="bilinear", boundary="zero")[0, 0] < 0.99
    assert upconv.scale(flat, 2, method="bilinear", boundary="edge")[0, 0] == pytest.approx(1)


def test_output_shape_keeps_aspect_ratio():
    assert output_shape_for((1080, 1920), output_shape=(None, 960)) == (540, 960)
    assert output_shape_for((1080, 1920), output_shape=(720, None)) == (720, 1280)
    out = upconv.scale(np.zeros((30, 40), np.float32), output_shape=(None, 100))
    assert out.shape == (75, 100)


@pytest.mark.parametrize("factor", [0, -1, float("nan"), float("inf"), "two"])
def test_bad_factors_are_refused(factor):
    with pytest.raises(upconv.UpconvError, match="factor"):
        upconv.scale(np.zeros((4, 4), np.float32), factor)


def test_factor_that_rounds_to_an_empty_image_is_refused():
    with pytest.raises(upconv.UpconvError, match="side of 0"):
        upconv.scale(np.zeros((4, 4), np.float32), 0.1)


def test_exactly_one_of_factor_and_shape():
    image = np.zeros((4, 4), np.float32)
    with pytest.raises(upconv.UpconvError, match="exactly one"):
        upconv.scale(image)
    with pytest.raises(upconv.UpconvError, match="exactly one"):
        upconv.scale(image, 2, output_shape=(8, 8))


def test_unknown_method_lists_the_choices():
    with pytest.raises(upconv.UpconvError, match="'nearest', 'bilinear', 'bicubic'"):
        upconv.scale(np.zeros((4, 4), np.float32), 2, method="sinc")


@pytest.mark.parametrize("shape", [(0, 4), (4,), (2, 2, 2, 2)])
def test_bad_array_shapes_are_refused(shape):
    with pytest.raises(upconv.UpconvError, match="H x W"):
        upconv.scale(np.zeros(shape, np.float32), 2)


def test_integer_input_needs_nearest():
    with pytest.raises(upconv.UpconvError, match="float"):
        upconv.scale(np.zeros((4, 4), np.uint8), 2, method="bilinear")


@pytest.mark.parametrize("method", ["nearest", "bilinear", "bicubic", "lanczos"])
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_a_factor_of_one_keeps_the_samples(rng, method, boundary):
    """As scipy.ndimage.zoom with a zoom of 1, and a size equal to the input's."""
    for shape in [(1, 2, 3), (2, 2, 1), (7, 5, 2)]:
        image = rng.random(shape)
        np.testing.assert_array_equal(upconv.scale(image, 1, method, boundary), image)
        np.testing.assert_array_equal(
            upconv.scale(image, output_shape=shape[:2], method=method, boundary=boundary), image)


@pytest.mark.parametrize("dtype,atol", [(np.float32, 1e-6), (np.float64, 1e-10)])
@pytest.mark.parametrize("shape", [(1, 900, 1), (3, 500, 4), (40, 37, 3), (2, 1, 3)])
@pytest.mark.parametrize("boundary", ["edge", "zero"])
def test_prefilter_along_x_equals_scipy(rng, dtype, atol, shape, boundary):
    """The prefilter along x (recursive doubling on whole rows) against scipy's own
    recursion on the same extension, on the columns that interpolation reads (the real
    ones and 2 beyond; the two start-up rules differ at the extension's far end, by less
    at each sample inwards): float32 to its round-off, float64 far below 1e-9."""
    from scipy import ndimage

    from upconv.interpolate import SPLINE_PREPAD, x_coefficients
    from upconv.options import Boundary

    rows = rng.random(shape).astype(dtype)
    pad = ((0, 0), (SPLINE_PREPAD, SPLINE_PREPAD), (0, 0))
    expected = np.pad(rows.astype(np.float64), pad,
                      mode="edge" if boundary == "edge" else "constant")
    ndimage.spline_filter1d(expected, 3, axis=1, mode="nearest" if boundary == "edge"
                            else "grid-constant", output=expected)
    actual = x_coefficients(rows, Boundary(boundary), threads=2)
    assert actual.dtype == dtype and actual.shape == expected.shape
    read = slice(SPLINE_PREPAD - 2, SPLINE_PREPAD + shape[1] + 2)
    np.testing.assert_allclose(actual[:, read], expected[:, read], rtol=0, atol=atol)


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("height", [1, 2, 3, 7])
def test_boundary_window_equals_the_whole_image_extended(rng, boundary, height):
    """Any rows of the extended image, read through a window of the image's own rows,
    equal the same rows of the whole image extended (mirrors repeat on tiny images)."""
    from upconv.options import Boundary

    rule = Boundary(boundary)
    image = rng.random((height, 3, 2))
    pad = 9
    whole = rule.extend(image, (pad, pad), (2, 1))
    asked = []

    def read(first, last):
        asked.append((first, last))
        return image[first:last]

    for first in range(-pad, height + pad):
        for last in range(first + 1, height + pad + 1):
            np.testing.assert_array_equal(rule.window(read, height, first, last, (2, 1)),
                                          whole[first + pad:last + pad])
    assert all(0 <= a < b <= height for a, b in asked)


@pytest.mark.parametrize("method,factor,options", [
    ("bilinear", 2, {}), ("bicubic", 2, {}), ("bicubic", 3, {"boundary": "reflect"}),
    ("lanczos", 2, {}), ("bicubic", 2.37, {}), ("bilinear", (2, 1.5), {"boundary": "zero"}),
    ("nearest", 2, {}), ("transpose", 2, {}), ("bicubic", 2, {"alpha": True})])
@pytest.mark.parametrize("columns", [(0, 8), (6, 30), (13, 27), (25, None)])
@pytest.mark.parametrize("band", [(5, 17), (4, 16)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_bands_columns_computed_alone_are_the_whole_bands_columns(rng, method, factor,
                                                                    options, columns, band,
                                                                    dtype):
    """``resample_band(columns=...)`` computes only those output columns (or whole rows
    cut, where the engine cannot): bit for bit the same columns of the whole band, into
    ``out`` (straight, where rows and columns are whole periods, as a Zarr block's are) or
    not, for periodic and general factors, whole periods or not; and an ``out`` of the
    other float type gets the same values, wherever the band falls."""
    from upconv.scaling import plan_resampling, resample_band

    image = rng.random((21, 23, 4)).astype(dtype)
    plan = plan_resampling(image.shape, factor, method, **options)
    first, last = columns[0], plan.shape[1] if columns[1] is None else columns[1]
    whole = resample_band(lambda a, b: image[a:b], plan, band)
    alone = resample_band(lambda a, b: image[a:b], plan, band, columns=(first, last))
    assert alone.dtype == whole.dtype == dtype
    np.testing.assert_array_equal(alone, whole[:, first:last])
    out = np.full((band[1] - band[0], last - first, 4), np.nan, dtype)
    assert resample_band(lambda a, b: image[a:b], plan, band, out=out,
                         columns=(first, last)) is out
    np.testing.assert_array_equal(out, whole[:, first:last])
    other = np.full(out.shape, np.nan, np.float32 if dtype == np.float64 else np.float64)
    resample_band(lambda a, b: image[a:b], plan, band, out=other, columns=(first, last))
    np.testing.assert_array_equal(other, whole[:, first:last].astype(other.dtype))
