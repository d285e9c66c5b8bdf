"""Least-squares fitting against independent solutions, and the fit/degrade commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SAMPLES
from PIL import Image
from scipy.linalg import null_space

import upconv
from upconv.cli import run
from upconv.degrade import degrade
from upconv.fit import DIHEDRAL, PROVISIONAL_ROWS, fit_kernel
from upconv.images import load_image
from upconv.kernels import Kernel
from upconv.metrics import psnr
from upconv.options import Boundary
from upconv.samples import to_float
from upconv.transpose import transposed_conv


@pytest.mark.parametrize("boundary", ["edge", "reflect", "zero"])
@pytest.mark.parametrize("s,size", [(2, 12), (3, 7), (4, 8), (2, 5)])
@pytest.mark.parametrize("per_channel", [False, True])
def test_fit_recovers_a_known_kernel(rng, boundary, s, size, per_channel):
    shape = (3, size, size) if per_channel else (size, size)
    truth = Kernel(rng.standard_normal(shape), stride=s)
    low = rng.random((19, 23, 3))
    high = transposed_conv(low, truth, Boundary(boundary))
    fitted = fit_kernel([(low, high)], size=size, boundary=boundary, per_channel=per_channel)
    assert fitted.stride == s and fitted.weights.shape == shape
    np.testing.assert_allclose(fitted.weights, truth.weights, atol=1e-8)


def explicit_design(low: np.ndarray, size: int, s: int, boundary: str) -> np.ndarray:
    """Columns = the output for each unit kernel: the model's design matrix, built whole."""
    columns = []
    for k in range(size * size):
        unit = np.zeros(size * size)
        unit[k] = 1
        out = transposed_conv(low, Kernel(unit.reshape(size, size), stride=s), Boundary(boundary))
        columns.append(out.ravel())
    return np.stack(columns, axis=1)


def test_unconstrained_fit_is_the_least_squares_optimum(rng):
    low, high = rng.random((9, 8, 2)), rng.random((18, 16, 2))  # no exact kernel exists
    fitted = fit_kernel([(low, high)], size=4)
    design = explicit_design(low, 4, 2, "edge")
    expected, *_ = np.linalg.lstsq(design, high.ravel(), rcond=None)
    np.testing.assert_allclose(fitted.weights.ravel(), expected, atol=1e-9)
    residual = design @ expected - high.ravel()
    assert fitted.info["fit"]["rms_residual"] == pytest.approx(np.sqrt(np.mean(residual ** 2)))


@pytest.mark.parametrize("s,size", [(2, 4), (2, 5), (3, 6)])
def test_checkerboard_free_fit_is_the_constrained_optimum(rng, s, size):
    low, high = rng.random((10, 9, 1)), rng.random((10 * s, 9 * s, 1))
    fitted = fit_kernel([(low, high)], size=size, checkerboard_free=True)
    sums = Kernel(fitted.weights, stride=s).phase_sums()
    np.testing.assert_allclose(sums, sums[0, 0], atol=1e-9)
    # Independent solution: parametrise the feasible set by the null space of the
    # constraints "phase sum (p, q) - phase sum (0, 0) = 0" and solve there.
    phase = np.arange(size)[:, None] % s * s + np.arange(size)[None, :] % s
    constraints = np.array([(phase.ravel() == k) * 1.0 - (phase.ravel() == 0)
                            for k in range(1, s * s)])
    basis = null_space(constraints)
    design = explicit_design(low, size, s, "edge")
    coefficients, *_ = np.linalg.lstsq(design @ basis, high.ravel(), rcond=None)
    np.testing.assert_allclose(fitted.weights.ravel(), basis @ coefficients, atol=1e-8)


def test_several_pairs_pool_their_data(rng):
    pairs = [(rng.random((7, 8, 1)), rng.random((14, 16, 1))) for _ in range(2)]
    fitted = fit_kernel(pairs, size=4)
    design = np.concatenate([explicit_design(low, 4, 2, "edge") for low, _ in pairs])
    target = np.concatenate([high.ravel() for _, high in pairs])
    expected, *_ = np.linalg.lstsq(design, target, rcond=None)
    np.testing.assert_allclose(fitted.weights.ravel(), expected, atol=1e-9)
    assert fitted.info["fit"]["pairs"] == 2


def test_ridge_and_margin(rng):
    low, high = rng.random((12, 12, 1)), rng.random((24, 24, 1))
    plain = fit_kernel([(low, high)], size=4)
    shrunk = fit_kernel([(low, high)], size=4, ridge=10.0)
    assert np.linalg.norm(shrunk.weights) < 0.5 * np.linalg.norm(plain.weights)
    margin = fit_kernel([(low, high)], size=4, margin=2)
    assert margin.info["fit"]["samples"] == 8 * 8 * 4


def test_integer_samples_fit_like_floats(rng):
    low = rng.integers(0, 256, (9, 10, 3)).astype(np.uint8)
    high = rng.integers(0, 256, (18, 20, 3)).astype(np.uint8)
    np.testing.assert_allclose(fit_kernel([(low, high)], size=4).weights,
                               fit_kernel([(low / 255, high / 255)], size=4).weights, atol=1e-9)


def test_augmented_fit_gives_a_symmetric_kernel(rng):
    low, high = rng.random((10, 10, 1)), rng.random((20, 20, 1))
    weights = fit_kernel([(low, high)], size=6, augment=True).weights
    np.testing.assert_allclose(weights, weights[::-1], atol=1e-9)
    np.testing.assert_allclose(weights, weights.T, atol=1e-9)


def test_flat_image_warns_and_applies_ridge():
    flat = np.full((12, 12, 1), 0.5)
    kernel = fit_kernel([(flat, np.full((24, 24, 1), 0.5))], size=4)
    assert np.isfinite(kernel.weights).all()
    assert kernel.info["fit"]["ridge"] > 0
    assert "do not determine" in kernel.info["fit_notes"][0]


@pytest.mark.parametrize("low,high,fragment", [
    (np.zeros((6, 6)), np.zeros((12, 12)), "blank"),
    (np.ones((1, 1)), np.ones((2, 2)), "too few pixels"),
    (np.full((4, 4), np.nan), np.ones((8, 8)), "NaN"),
    (np.ones((4, 4)), np.ones((9, 12)), "not 2 times"),
    (np.ones((4, 4)), np.ones((4, 4)), "at least twice"),
])
def test_degenerate_data_gives_clear_errors(low, high, fragment):
    with pytest.raises(upconv.UpconvError, match=fragment):
        fit_kernel([(low, high)], size=4)


def test_odd_high_sizes_are_cropped(rng):
    low = rng.random((9, 8, 1))
    truth = Kernel(rng.random((4, 4)), stride=2)
    high = np.pad(transposed_conv(low, truth), ((0, 1), (0, 1), (0, 0)), constant_values=7)
    np.testing.assert_allclose(fit_kernel([(low, high)], size=4).weights, truth.weights,
                               atol=1e-9)


# ---------------------------------------------------------------- degradations

def test_degradations(rng):
    high = rng.random((12, 18, 3))
    area = degrade(high, 3, "area")
    np.testing.assert_allclose(area[1, 2], high[3:6, 6:9].mean(axis=(0, 1)))
    gaussian = degrade(high, 2, "gaussian")
    assert gaussian.shape == (6, 9, 3)
    np.testing.assert_allclose(degrade(np.full((8, 8, 1), 0.3), 2, "gaussian"), 0.3)
    bicubic = degrade(high.astype(np.float32), 2, "bicubic")
    pillow = Image.fromarray(high[:, :, 0].astype(np.float32), mode="F").resize(
        (9, 6), Image.Resampling.BICUBIC)
    np.testing.assert_allclose(bicubic[:, :, 0], np.asarray(pillow))


def test_degrade_command(tmp_path, capsys):
    out = tmp_path / "low.png"
    assert run(["degrade", str(SAMPLES / "chelsea.png"), str(out), "-f", "2"]) == 0
    assert "cropped 1 column" in capsys.readouterr().err
    high = load_image(str(SAMPLES / "chelsea.png")).samples
    expected = degrade(to_float(high), 2, "area")
    np.testing.assert_allclose(to_float(load_image(str(out)).samples), expected, atol=0.5 / 255)


# ---------------------------------------------------------------- the command

def write_pair(tmp_path, rng, truth: Kernel, boundary="edge"):
    low = rng.random((20, 24, 3))
    high = transposed_conv(low, truth, Boundary(boundary))
    np.save(tmp_path / "low.npy", low)
    np.save(tmp_path / "high.npy", high)
    return low, high


def test_fit_command_writes_a_self_describing_kernel(tmp_path, capsys, rng):
    truth = Kernel(rng.standard_normal((6, 6)), stride=2)
    low, _ = write_pair(tmp_path, rng, truth, "reflect")
    out = tmp_path / "k.json"
    assert run(["fit", str(tmp_path / "low.npy"), str(tmp_path / "high.npy"), "-o", str(out),
                "--size", "6", "--boundary", "reflect", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert "fitted kernel" in captured.err  # the rich summary goes to stderr
    assert summary["stride"] == 2 and summary["boundary"] == "reflect"
    # An exact pair: the residual is round-off. The bound is reliable because the
    # statistic is accumulated relative to a provisional kernel, so it cancels only at
    # ~eps times the residual's own scale, not at ~1e-8 of the signal energy (which
    # differs between BLAS kernels); see test_rms_residual_of_an_exact_pair.
    assert summary["rms_residual"] < 1e-9 and summary["samples"] == 20 * 24 * 4 * 3
    document = json.loads(out.read_text())
    assert document["stride"] == 2 and document["alignment"] == "centred"
    assert document["boundary"] == "reflect"
    assert {"samples", "training_psnr", "rms_residual", "condition_number"} <= set(
        document["fit"])
    # scale applies it exactly as fitted: with its own (reflect) boundary
    assert run(["scale", str(tmp_path / "low.npy"), str(tmp_path / "up.npy"), "-m",
                "transpose", "-k", str(out)]) == 0
    expected = transposed_conv(low, truth, Boundary.REFLECT)
    np.testing.assert_allclose(np.load(tmp_path / "up.npy"), expected, atol=1e-8)


def direct_rms(pairs, fitted: Kernel, boundary: str, augment: bool = False) -> float:
    """The RMS of the fitted kernel's error over every HIGH sample, computed on the data."""
    squares, count = 0.0, 0
    for low, high in pairs:
        for transform in (DIHEDRAL if augment else DIHEDRAL[:1]):
            error = (transposed_conv(np.ascontiguousarray(transform(low)), fitted,
                                     Boundary(boundary)) - transform(high))
            squares += float(np.sum(error ** 2))
            count += error.size
    return float(np.sqrt(squares / count))


@pytest.mark.parametrize("sigma", [0.01, 1e-6])
@pytest.mark.parametrize("options", [
    {}, {"boundary": "reflect", "per_channel": True}, {"augment": True},
    {"boundary": "zero", "checkerboard_free": True}, {"size": 6, "ridge": 0.01}])
def test_rms_residual_is_the_rms_on_the_data(rng, options, sigma):
    # A realistic pair: a smooth kernel, and noise of sigma 0.01 on HIGH. With
    # sigma 1e-6 the plain statistic would keep only about 5 digits.
    taps = np.array([-1, 3, 10, 20, 20, 10, 3, -1]) / 32
    truth = Kernel(np.outer(taps, taps), stride=2)
    boundary = options.get("boundary", "edge")
    pairs = []
    for rows in (PROVISIONAL_ROWS + 23, 17):  # pair 1 is taller than the provisional band
        low = rng.random((rows, 30, 3))
        high = transposed_conv(low, truth, Boundary(boundary))
        pairs.append((low, high + rng.normal(0, sigma, high.shape)))
    options = dict(options)
    size = options.pop("size", 8)
    fitted = fit_kernel(pairs, size=size, **options)
    report = fitted.info["fit"]
    copies = 8 if options.get("augment") else 1
    assert report["samples"] == copies * (PROVISIONAL_ROWS + 40) * 30 * 3 * 4
    expected = direct_rms(pairs, fitted, boundary, options.get("augment", False))
    if size == 8:  # (a 6x6 kernel also misses some of the truth)
        assert 0.9 * sigma < expected < 1.1 * sigma
    assert report["rms_residual"] == pytest.approx(expected, rel=1e-9, abs=0)
    assert report["training_psnr"] == pytest.approx(-20 * np.log10(expected), rel=1e-9)


@pytest.mark.parametrize("rows,per_channel", [(PROVISIONAL_ROWS + 20, False),
                                              (PROVISIONAL_ROWS + 20, True), (9, False)])
def test_rms_residual_of_an_exact_pair(rng, rows, per_channel):
    # Noise-free float64: what is left is round-off, at ~1e-16 of the signal. With
    # h0 = 0, energy - 2 h.rhs + h.G.h cancels at ~1e-8 here (depending on the BLAS).
    truth = Kernel(rng.standard_normal((3, 6, 6) if per_channel else (6, 6)), stride=2)
    low = rng.random((rows, 24, 3))
    high = transposed_conv(low, truth, Boundary.REFLECT)
    fitted = fit_kernel([(low, high)], size=6, boundary="reflect", per_channel=per_channel)
    np.testing.assert_allclose(fitted.weights, truth.weights, atol=1e-9)
    assert direct_rms([(low, high)], fitted, "reflect") < 1e-13
    assert fitted.info["fit"]["rms_residual"] < 1e-12


def test_fit_command_validates_against_bicubic_and_bilinear(tmp_path, capsys):
    low = tmp_path / "low.png"
    assert run(["degrade", str(SAMPLES / "camera.png"), str(low), "-f", "2"]) == 0
    capsys.readouterr()
    assert run(["fit", "--degrade", "area", str(SAMPLES / "coffee.png"), "-o",
                str(tmp_path / "k.json"), "--validate", str(low), str(SAMPLES / "camera.png"),
                "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    row = summary["validation"][0]
    assert row["fitted"] > row["bilinear"] and row["bicubic"] > row["bilinear"]
    assert summary["degradation"] == "area"


@pytest.mark.parametrize("args,status,fragment", [
    (["{d}/low.npy"], 2, "even number"),
    (["{d}/low.npy", "{d}/low.npy"], 1, "do not pair"),
    (["{d}/low.npy", "{d}/gray.npy"], 1, "channels"),
    (["{d}/nan.npy", "{d}/high.npy"], 1, "NaN"),
    (["{d}/low.npy", "{d}/high.npy", "--size", "300"], 1, "--size 126 or less"),
    (["{d}/low.npy", "{d}/high.npy", "--size", "2000"], 1, "kernel size"),
])
def test_fit_command_bad_input(tmp_path, capsys, rng, args, status, fragment):
    write_pair(tmp_path, rng, Kernel(np.ones((4, 4)) / 4, stride=2))
    np.save(tmp_path / "gray.npy", np.zeros((40, 48)))
    np.save(tmp_path / "nan.npy", np.full((20, 24, 3), np.nan))
    out = tmp_path / "k.json"
    assert run(["fit", *[a.format(d=tmp_path) for a in args], "-o", str(out)]) == status
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


# ---------------------------------------------------------------- the shipped defaults

@pytest.mark.parametrize("factor", [2, 3, 4])
def test_transpose_without_a_kernel_uses_the_fitted_default(factor, rng):
    image = rng.random((8, 9, 3))
    shipped = Kernel.load(upconv.kernel_files.DEFAULTS_FOLDER / f"default_x{factor}.json")
    assert shipped.stride == factor and shipped.shape == (6 * factor, 6 * factor)
    assert shipped.info["degradation"] == "area"
    np.testing.assert_allclose(upconv.scale(image, factor, method="transpose"),
                               upconv.scale(image, factor, method="transpose", kernel=shipped))


def test_other_factors_fall_back_to_bilinear(rng):
    image = rng.random((6, 5))
    np.testing.assert_allclose(upconv.scale(image, 5, method="transpose"),
                               upconv.scale(image, 5, method="bilinear"), atol=1e-12)


def test_x2_default_beats_bicubic_on_held_out_photos():
    # astronaut and camera were not among the training photos (chelsea, coffee)
    kernel = Kernel.load(upconv.kernel_files.DEFAULTS_FOLDER / "default_x2.json")
    assert not {"sample_images/astronaut.png", "sample_images/camera.png"} & set(
        kernel.info["trained_on"])
    gains = []
    for name in ("astronaut.png", "camera.png"):
        high = to_float(load_image(str(SAMPLES / name)).samples).astype(np.float64)
        low = degrade(high, 2, "area")
        fitted = psnr(np.clip(upconv.scale(low, 2, method="transpose"), 0, 1), high)
        bicubic = psnr(np.clip(upconv.scale(low, 2, method="bicubic"), 0, 1), high)
        gains.append(fitted - bicubic)
    assert np.mean(gains) >= 0.3, gains


# ---------------------------------------------------------------- review fixes

def test_ridge_is_relative_to_each_phase_gram_diagonal(rng):
    low, high = rng.random((9, 8, 1)), rng.random((18, 16, 1))
    fitted = fit_kernel([(low, high)], size=4, ridge=0.3)
    design = explicit_design(low, 4, 2, "edge")
    gram = design.T @ design  # block diagonal by phase: each output reads one phase's weights
    phase = (np.arange(4)[:, None] % 2 * 2 + np.arange(4)[None, :] % 2).ravel()
    penalty = np.zeros(16)
    for k in range(4):
        members = phase == k
        penalty[members] = 0.3 * np.mean(np.diag(gram)[members])
    expected = np.linalg.solve(gram + np.diag(penalty), design.T @ high.ravel())
    np.testing.assert_allclose(fitted.weights.ravel(), expected, atol=1e-10)


def test_margin_is_the_fit_on_the_inner_pixels(rng):
    low, high = rng.random((10, 9, 1)), rng.random((20, 18, 1))
    fitted = fit_kernel([(low, high)], size=4, margin=2)
    design = explicit_design(low, 4, 2, "edge").reshape(20, 18, 16)
    inner = design[4:16, 4:14].reshape(-1, 16)
    expected, *_ = np.linalg.lstsq(inner, high[4:16, 4:14].ravel(), rcond=None)
    np.testing.assert_allclose(fitted.weights.ravel(), expected, atol=1e-9)


@pytest.mark.parametrize("args,status,fragment", [
    (["-o", "{d}/k.png"], 2, "suffixes"),
    (["-o", "-"], 2, "suffixes"),
])
def test_fit_output_path_is_checked(tmp_path, capsys, rng, args, status, fragment):
    write_pair(tmp_path, rng, Kernel(np.ones((4, 4)) / 4, stride=2))
    before = (tmp_path / "low.npy").read_bytes()
    filled = [a.format(d=tmp_path) for a in args]
    assert run(["fit", str(tmp_path / "low.npy"), str(tmp_path / "high.npy"), "--size", "4",
                *filled]) == status
    assert fragment in capsys.readouterr().err
    assert (tmp_path / "low.npy").read_bytes() == before


def test_fit_refuses_to_overwrite_an_input_with_a_kernel_suffix(tmp_path, capsys, rng):
    write_pair(tmp_path, rng, Kernel(np.ones((4, 4)) / 4, stride=2))
    assert run(["fit", str(tmp_path / "low.npy"), str(tmp_path / "high.npy"), "--size", "4",
                "-o", str(tmp_path / "low.npy")]) == 1
    assert "overwrite the input" in capsys.readouterr().err


def test_failed_validation_leaves_no_kernel(tmp_path, capsys, rng):
    write_pair(tmp_path, rng, Kernel(np.ones((4, 4)) / 4, stride=2))
    np.save(tmp_path / "gray_low.npy", np.zeros((20, 24)))
    out = tmp_path / "k.json"
    assert run(["fit", str(tmp_path / "low.npy"), str(tmp_path / "high.npy"), "--size", "4",
                "-o", str(out), "--validate", str(tmp_path / "gray_low.npy"),
                str(tmp_path / "high.npy")]) == 1
    assert "must match" in capsys.readouterr().err and not out.exists()


def test_fit_degrade_and_degrade_agree_on_alpha_images(tmp_path, capsys):
    low_file = tmp_path / "low.npy"
    assert run(["degrade", str(SAMPLES / "soft_alpha.png"), str(low_file), "-f", "2"]) == 0
    from upconv.training import degrade_picture
    picture = load_image(str(SAMPLES / "soft_alpha.png"))
    np.testing.assert_allclose(np.load(low_file), degrade_picture(picture, 2, "area"),
                               atol=1e-6)


def test_per_channel_kernel_fitted_on_colour_applies_to_rgba(rng):
    kernel = Kernel(rng.random((3, 4, 4)) / 4, stride=2)
    rgba = rng.random((6, 5, 4))
    out = upconv.scale(rgba, method="transpose", kernel=kernel, alpha=True)
    assert out.shape == (12, 10, 4)
