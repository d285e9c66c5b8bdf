"""Lanczos-3 against independent references: Pillow's LANCZOS (float and 8-bit), a direct
evaluation of the windowed sinc, the built-in ``lanczos3`` transposed-convolution kernel,
the CLI, tiles, alpha and linear light."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from conftest import SAMPLES, assert_images_close
from PIL import Image

import upconv
from upconv.cli import run
from upconv.images import load_image
from upconv.methods import Method
from upconv.pipeline import ScaleSettings, scale_file
from upconv.samples import from_float, to_float

TAPS = 6  # Lanczos-3 reads the 6 input samples floor(c) - 2 ... floor(c) + 3
EPS32 = float(np.finfo(np.float32).eps)
#: Largest sum of |weights| of one output sample along one axis (factor 4's outer phases;
#: factor 2 gives 1.403): how much an error in the samples can grow in one pass.
ABS_WEIGHT_SUM = 1.51


def coordinates(n_in: int, n_out: int) -> np.ndarray:
    """The half-pixel grid: output i samples input coordinate (i + 0.5) * n_in / n_out - 0.5."""
    return (np.arange(n_out) + 0.5) * n_in / n_out - 0.5


def interior(n_in: int, n_out: int) -> np.ndarray:
    """Output samples whose 6 taps all lie inside the image (Pillow does not shorten them)."""
    first = np.floor(coordinates(n_in, n_out)).astype(int) - 2
    return (first >= 0) & (first + TAPS - 1 <= n_in - 1)


def inside(image: np.ndarray, in_shape: tuple[int, int]) -> np.ndarray:
    """The interior block of an upsampled image of an input of ``in_shape``."""
    rows = interior(in_shape[0], image.shape[0])
    cols = interior(in_shape[1], image.shape[1])
    assert rows.any() and cols.any(), "the test image is too small to have an interior"
    return image[rows][:, cols]


def pillow_float(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pillow's LANCZOS on each channel as a mode "F" (float32) image."""
    channels = []
    for c in range(image.shape[2]):
        plane = Image.fromarray(np.ascontiguousarray(image[:, :, c], dtype=np.float32))
        assert plane.mode == "F"
        resized = plane.resize((shape[1], shape[0]), Image.Resampling.LANCZOS)
        channels.append(np.asarray(resized, dtype=np.float64))
    return np.stack(channels, axis=-1)


def astronaut_crop() -> np.ndarray:
    with Image.open(SAMPLES / "astronaut.png") as image:
        return np.asarray(image.convert("RGB"))[100:228, 150:278]  # face, helmet, flag


def pillow_u8(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    resized = Image.fromarray(image).resize((shape[1], shape[0]), Image.Resampling.LANCZOS)
    return np.asarray(resized).astype(int)


# ------------------------------------------------------------------ Pillow, float input

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("factor", [2, 3, 4, 1.5, 2.5, (1.7, 2.3)])
def test_interior_equals_pillow_lanczos_on_float_images(rng, dtype, factor):
    image = rng.random((23, 31, 3)).astype(dtype)
    actual = upconv.scale(image, factor, method="lanczos")
    assert actual.dtype == dtype
    expected = pillow_float(image, actual.shape[:2])
    # Pillow rounds the input, its intermediate (horizontal) pass and its output to float32
    # (half an ulp, <= EPS32 for values below 2); upconv's float32 path also rounds its
    # weights and sums to float32. Each rounding grows by at most ABS_WEIGHT_SUM per later
    # pass: a handful of EPS32 in all (measured: 2.5 EPS32 for float32, 1 for float64).
    assert_images_close(inside(actual, image.shape[:2]), inside(expected, image.shape[:2]),
                        8 * EPS32, f"{dtype.__name__} x{factor}")


# ------------------------------------------------------------------ Pillow, 8-bit input

def test_8bit_two_passes_equal_pillow_within_its_fixed_point_rounding():
    # Pillow resamples 8-bit images horizontally, rounds and clips to uint8, then resamples
    # vertically. Done the same way, upconv differs only where Pillow's 22-bit fixed-point
    # weights and upconv's float32 ones round a value within ~1e-4 of a half level apart.
    source = astronaut_crop()
    h, w = source.shape[:2]
    across = from_float(upconv.scale(to_float(source), (1, 2), method="lanczos"), np.uint8)
    ours = from_float(upconv.scale(to_float(across), (2, 1), method="lanczos"), np.uint8)
    diff = np.abs(inside(ours.astype(int) - pillow_u8(source, (2 * h, 2 * w)), (h, w)))
    assert diff.max() <= 1
    assert (diff == 0).mean() >= 0.999  # measured: 0.99997


def test_8bit_single_pass_is_within_pillow_intermediate_rounding():
    source = astronaut_crop()
    h, w = source.shape[:2]
    values = to_float(source)
    ours = from_float(upconv.scale(values, 2, method="lanczos"), np.uint8).astype(int)
    diff = np.abs(inside(ours - pillow_u8(source, (2 * h, 2 * w)), (h, w)))
    # Where Pillow's uint8 intermediate only rounded (error <= 0.5 level), its vertical pass
    # moves the result by <= 0.5 * 1.403 = 0.70 level (factor 2's sum of |weights|): the
    # two roundings to uint8 then differ by at most 1. Where the horizontal pass overshot
    # [0, 255] by more than half a level, Pillow's clipping loses the overshoot (measured:
    # up to 4 levels on this crop), so those output samples are left out.
    across = upconv.scale(values, (1, 2), method="lanczos") * 255
    clipped = (across < -0.5 + 1e-3) | (across > 255.5 - 1e-3)
    first = np.floor(coordinates(h, 2 * h)).astype(int) - 2
    reads_clipped = np.zeros(ours.shape, bool)
    for k in range(TAPS):
        reads_clipped |= clipped[np.clip(first + k, 0, h - 1)]
    reads_clipped = inside(reads_clipped, (h, w))
    assert reads_clipped.mean() < 0.2  # the comparison covers most of the crop
    assert diff[~reads_clipped].max() <= 1
    # Pillow's intermediate rounding (uniform in +-0.5 level, then weighted) moves about one
    # sample in five across a rounding boundary: measured 79.5 % equal.
    assert (diff == 0).mean() >= 0.75


# ------------------------------------------------------------------ the windowed sinc itself

def sinc(x: np.ndarray) -> np.ndarray:
    safe = np.where(x == 0, 1.0, x)
    return np.where(x == 0, 1.0, np.sin(math.pi * safe) / (math.pi * safe))


def lanczos3_axis(x: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    """Direct Lanczos-3 along ``axis``: normalised weights, indices clamped (edge)."""
    x = np.moveaxis(x, axis, 0)
    n_in = x.shape[0]
    out = np.zeros((n_out,) + x.shape[1:])
    for i, c in enumerate(coordinates(n_in, n_out)):
        j = np.floor(c) + np.arange(-2, 4)
        t = c - j
        weights = sinc(t) * sinc(t / 3)
        weights /= weights.sum()
        taps = x[np.clip(j.astype(int), 0, n_in - 1)]
        out[i] = np.tensordot(weights, taps, axes=1)
    return np.moveaxis(out, 0, axis)


@pytest.mark.parametrize("shape", [(7, 9), (2, 5), (1, 12)])
@pytest.mark.parametrize("factor", [2, 3, 4, 2.5, (1.7, 2.3)])
def test_equals_direct_windowed_sinc_including_borders(rng, shape, factor):
    image = rng.random(shape)
    actual = upconv.scale(image, factor, method="lanczos")
    expected = lanczos3_axis(lanczos3_axis(image, actual.shape[1], 1), actual.shape[0], 0)
    # float64 throughout; only the order of a few additions differs
    assert_images_close(actual, expected, 1e-12, f"{shape} x{factor}")


# ------------------------------------------------------------------ the lanczos3 kernel

@pytest.mark.parametrize("factor", [2, 3, 4])
def test_lanczos3_transpose_equals_lanczos_interpolation_everywhere(rng, factor):
    image = rng.random((11, 14, 3))
    transposed = upconv.scale(image, factor, method="transpose", kernel="lanczos3")
    interpolated = upconv.scale(image, factor, method="lanczos")
    assert_images_close(transposed, interpolated, 1e-12, f"x{factor}")


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_lanczos3_kernel_phases_sum_to_one(factor):
    kernel = upconv.builtin_kernel("lanczos3", factor)
    np.testing.assert_allclose(kernel.phase_sums(), 1.0, rtol=0, atol=1e-12)
    assert kernel.spread() == 0
    assert kernel.flat_stays_flat


# ------------------------------------------------------------------ CLI

@pytest.mark.parametrize("args", [["--method", "lanczos"], ["-m", "transpose", "-k", "lanczos3"]])
def test_cli_scales_with_lanczos(tmp_path, capsys, args):
    source = tmp_path / "in.png"
    Image.fromarray(astronaut_crop()[:40, :50]).save(source)
    out = tmp_path / "out.png"
    assert run(["scale", str(source), str(out), *args, "-f", "2"]) == 0, \
        capsys.readouterr().err
    written = load_image(str(out)).samples
    assert written.shape == (80, 100, 3) and written.dtype == np.uint8
    expected = from_float(upconv.scale(to_float(astronaut_crop()[:40, :50]), 2,
                                       method="lanczos"), np.uint8)
    # the two methods agree to 1e-12 before rounding: at most a tie rounds differently
    assert np.abs(written.astype(int) - expected).max() <= 1


def test_cli_kernel_show_lanczos3(capsys):
    assert run(["kernel", "show", "lanczos3", "--factor", "3", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["stride"] == 3 and document["flat_stays_flat"] is True
    assert document["spread"] == 0.0


# ------------------------------------------------------------------ tiles

@pytest.mark.parametrize("factor", [2, 3])
def test_tiles_equal_the_untiled_result(tmp_path, rng, factor):
    np.save(tmp_path / "in.npy", rng.random((41, 27, 3)))
    base = ScaleSettings(method=Method.LANCZOS, factor=(float(factor), float(factor)),
                         summary_line=False)
    scale_file(str(tmp_path / "in.npy"), str(tmp_path / "whole.npy"), base)
    scale_file(str(tmp_path / "in.npy"), str(tmp_path / "tiled.npy"), replace(base, tile=6))
    whole, tiled = np.load(tmp_path / "whole.npy"), np.load(tmp_path / "tiled.npy")
    assert whole.shape == (41 * factor, 27 * factor, 3)
    np.testing.assert_array_equal(tiled, whole)  # finite support: exactly the same sums


# ------------------------------------------------------------------ alpha, linear light

@pytest.mark.parametrize("linear_light", [False, True])
def test_alpha_and_linear_light(rng, linear_light):
    image = rng.random((15, 12, 4)).astype(np.float32)
    image[:6, :, 3] = 0.0  # transparent, with colour that must not bleed
    image[6:, :, :3] = (0.9, 0.0, 0.2)  # opaque red: a hard alpha edge makes Lanczos ring
    image[6:, :, 3] = 1.0
    out = upconv.scale(image, 2.5, method="lanczos", alpha=True, linear_light=linear_light)
    assert out.shape == (38, 30, 4) and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out[..., 3].min() >= 0.0 and out[..., 3].max() <= 1.0
    # alpha alone rings to [-0.10, 1.12] at this edge: clipped back, not wrapped or lost
    assert out[..., 3].min() == 0.0 and out[..., 3].max() == 1.0
    np.testing.assert_array_equal(out[..., 1], 0.0)  # premultiplied: no green bleeds in
    assert out[..., :3].min() >= 0.0 and out[..., :3].max() <= 1.0
