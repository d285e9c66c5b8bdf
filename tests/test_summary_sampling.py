"""The one-line figure after ``scale`` measures a big image on sampled tiles.

It must give the full measure's verdict on the report tests' cases (flat,
interpolated, nearest blocks, a checkerboard-free fit, uneven overlap,
checkerboards of rising amplitude, period 3), here on images big enough to
be sampled, and scores close to the full measure's.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SAMPLES

import upconv
from upconv.images import load_image
from upconv.kernels import Kernel
from upconv.metrics import SampledPattern, measure_pattern, verdict
from upconv.reporting import SAMPLE_ABOVE, checkerboard_line, summary_sampler
from upconv.samples import to_float


def photo(name: str = "coffee.png") -> np.ndarray:
    values = to_float(load_image(str(SAMPLES / name)).samples)
    return values[:, :, :3] if values.shape[2] == 4 else values


def board(shape: tuple[int, ...], s: int = 2) -> np.ndarray:
    y, x = np.indices(shape[:2])
    return (((y % s) + (x % s)) % 2 * 2.0 - 1.0)[:, :, None].astype(np.float32)


def named_verdict(pattern) -> str:
    return verdict(pattern.score) if pattern.significant else "none"


def big(method: str, factor: int = 4, name: str = "coffee.png", **options) -> np.ndarray:
    """A sample photo upsampled to over SAMPLE_ABOVE pixels."""
    return np.clip(upconv.scale(photo(name), factor, method=method, **options), 0, 1)


CASES = {
    "flat": lambda: np.full((1500, 1500, 1), 0.5, np.float32),
    "bicubic": lambda: big("bicubic"),
    "bilinear": lambda: big("bilinear"),
    "nearest": lambda: big("nearest"),
    "uneven overlap": lambda: big("transpose", 4, kernel=Kernel(np.ones((5, 5)) / 25 * 16 / 1.1,
                                                                 stride=4)),
    "checkerboard-free": lambda: big("transpose", 4, kernel=Kernel(
        np.outer(*[np.convolve(np.ones(4), np.ones(4)) / 4] * 2) / 4, stride=4)),
}
for _amplitude in (0.5, 1, 2, 4, 8):
    CASES[f"board {_amplitude}"] = (
        lambda a=_amplitude: big("bicubic", name="camera.png") + a * board((2048, 2048)) / 255)


@pytest.mark.parametrize("case", sorted(CASES))
def test_sampled_figure_has_the_full_verdict(case):
    image = CASES[case]()
    period = 4 if case in ("uneven overlap", "checkerboard-free") else 2
    assert image.shape[0] * image.shape[1] > SAMPLE_ABOVE
    sampler = summary_sampler(image.shape, period)
    assert sampler is not None and len(sampler.windows) == 16
    sampler.add_rows(0, image)
    sampled, full = sampler.measure(), measure_pattern(image, period)
    assert named_verdict(sampled) == named_verdict(full), (sampled.score, full.score)
    # The same pattern seen through a sixteenth of the image: close, within the noise.
    assert abs(sampled.score - full.score) <= max(0.1 * full.score,
                                                  3 * sampled.noise + 3 * full.noise, 0.05)


def test_period_three_dots_on_a_sampled_image():
    three = big("bicubic", 6, name="camera.png")
    dots = (np.indices(three.shape[:2]) % 3 == 0).all(axis=0)[:, :, None] * 6 / 255
    image = three + dots.astype(np.float32)
    sampler = summary_sampler(image.shape, 3)
    sampler.add_rows(0, image)
    assert named_verdict(sampler.measure()) == named_verdict(measure_pattern(image, 3))
    assert sampler.measure().score > 1.5


def test_rows_fed_in_bands_equal_rows_fed_whole():
    image = big("transpose", 4, kernel=Kernel(np.ones((5, 5)) / 25 * 16 / 1.1, stride=4))
    whole = SampledPattern(image.shape, 4)
    whole.add_rows(0, image)
    banded = SampledPattern(image.shape, 4)
    for start in range(0, image.shape[0], 97):
        banded.add_rows(start, image[start:start + 97])
    a, b = banded.measure(), whole.measure()
    assert (a.score, a.noise) == (b.score, b.noise)
    np.testing.assert_array_equal(a.phase_means, b.phase_means)


def test_tiles_spread_over_the_image_and_line_up_with_the_phases():
    sampler = SampledPattern((3001, 4003, 3), 3)
    ys = sorted({y for y, _ in sampler.windows})
    xs = sorted({x for _, x in sampler.windows})
    side = sampler.tile + 2 * sampler.margin
    assert len(ys) == len(xs) == 4
    assert ys[0] == 0 and ys[-1] + side <= 3001 and ys[-1] + side > 3001 - 3 - side // 4
    assert xs[0] == 0 and xs[-1] + side <= 4003
    assert all((y + sampler.margin) % 3 == 0 for y in ys)
    assert all((x + sampler.margin) % 3 == 0 for x in xs)


def test_small_images_are_measured_whole():
    image = photo()
    assert summary_sampler(image.shape, 2) is None
    text, figure = checkerboard_line(image, 2)
    assert figure == pytest.approx(measure_pattern(image, 2).score)
    # too narrow to sample, however many pixels: measured whole
    assert summary_sampler((40, SAMPLE_ABOVE, 1), 2) is None


@pytest.mark.parametrize("s", [2, 3, 4, 5, 8])
def test_periodic_residual_is_the_box_filter_of_scipy(s, rng):
    """The numpy box filter against scipy.ndimage.correlate1d (mode "nearest")."""
    from scipy import ndimage

    from upconv.metrics import _box_weights, periodic_residual

    x = rng.random((67, 45)).astype(np.float32)
    weights = _box_weights(s).astype(np.float32)
    smooth = ndimage.correlate1d(x, weights, axis=0, mode="nearest")
    smooth = ndimage.correlate1d(smooth, weights, axis=1, mode="nearest")
    np.testing.assert_allclose(periodic_residual(x, s), x - smooth, atol=4 * 2.0 ** -23)
