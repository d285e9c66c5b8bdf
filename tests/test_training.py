"""The file layer of fitting, called as a notebook would: paths in, kernels and notes out."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SAMPLES

import upconv
from upconv.degrade import Degradation, degrade
from upconv.images import load_image
from upconv.kernels import Kernel
from upconv.samples import to_float
from upconv.training import (
    FitSettings,
    degrade_file,
    degrade_picture,
    fit_files,
    kernel_suffix,
    validate_kernel,
)


def write_pair(tmp_path, rng, truth: Kernel):
    low = rng.random((18, 22, 3))
    high = upconv.transposed_conv(low, truth)
    np.save(tmp_path / "low.npy", low)
    np.save(tmp_path / "high.npy", high)
    return low, high


def test_fit_files_equals_fit_kernel_on_the_arrays(tmp_path, rng):
    truth = Kernel(rng.standard_normal((4, 4)), stride=2)
    low, high = write_pair(tmp_path, rng, truth)
    result = fit_files([str(tmp_path / "low.npy"), str(tmp_path / "high.npy")],
                       str(tmp_path / "k.json"), FitSettings(size=4))
    direct = upconv.fit_kernel([(low, high)], size=4)
    np.testing.assert_allclose(result.kernel.weights, direct.weights, atol=1e-12)
    np.testing.assert_allclose(result.kernel.weights, truth.weights, atol=1e-9)
    saved = Kernel.load(tmp_path / "k.json")
    np.testing.assert_array_equal(saved.weights, result.kernel.weights)
    assert saved.info["trained_on"] == [str(tmp_path / "low.npy"), str(tmp_path / "high.npy")]
    assert result.summary["kernel"] == str(tmp_path / "k.json")
    assert result.summary["stride"] == 2 and result.notes == []


def test_fit_files_with_a_degradation_fits_on_degraded_highs(tmp_path):
    photo = str(SAMPLES / "camera.png")
    result = fit_files([photo], str(tmp_path / "k.npz"),
                       FitSettings(size=4, degradation=Degradation.AREA))
    picture = load_image(photo)
    high = to_float(picture.samples)
    low = degrade_picture(picture, 2, "area")
    height, width = low.shape[0] * 2, low.shape[1] * 2
    direct = upconv.fit_kernel([(low, high[:height, :width])], size=4, degradation="area")
    np.testing.assert_allclose(result.kernel.weights, direct.weights, rtol=1e-6, atol=1e-9)
    assert any("keeps the stride and boundary" in note for note in result.notes)  # .npz
    assert (tmp_path / "k.npz").exists()


def test_validation_compares_with_bicubic_and_bilinear(tmp_path):
    low = tmp_path / "low.png"
    degrade_file(str(SAMPLES / "camera.png"), str(low), 2)
    kernel = upconv.kernel_files.default_kernel(2)
    row = validate_kernel(kernel, str(low), str(SAMPLES / "camera.png"))
    assert set(row) == {"low", "high", "fitted", "bicubic", "bilinear"}
    assert row["fitted"] > row["bicubic"] > row["bilinear"] > 20


def test_a_failed_validation_leaves_no_kernel_file(tmp_path, rng):
    truth = Kernel(rng.standard_normal((4, 4)), stride=2)
    write_pair(tmp_path, rng, truth)
    with pytest.raises(upconv.UpconvError, match="no such file"):
        fit_files([str(tmp_path / "low.npy"), str(tmp_path / "high.npy")],
                  str(tmp_path / "k.json"), FitSettings(size=4),
                  validation=[(str(tmp_path / "missing.png"), str(tmp_path / "high.npy"))])
    assert not (tmp_path / "k.json").exists()


def test_degrade_file_returns_its_notes(tmp_path):
    out = tmp_path / "low.png"
    notes = degrade_file(str(SAMPLES / "chelsea.png"), str(out), 2)
    assert any("cropped 1 column" in note for note in notes)
    high = to_float(load_image(str(SAMPLES / "chelsea.png")).samples)
    np.testing.assert_allclose(to_float(load_image(str(out)).samples), degrade(high, 2, "area"),
                               atol=0.5 / 255 + 1e-6)


@pytest.mark.parametrize("path", ["k.png", "k", "-"])
def test_kernel_suffix_lists_the_choices(path):
    with pytest.raises(upconv.BadInputError, match=r"\.json, \.npy"):
        kernel_suffix(path)


def test_validation_warnings_reach_the_notes(tmp_path, rng):
    truth = Kernel(rng.standard_normal((4, 4)), stride=2)
    low, high = write_pair(tmp_path, rng, truth)
    alpha = np.ones(low.shape[:2] + (1,))
    np.save(tmp_path / "low_rgba.npy", np.concatenate([low, alpha], axis=2))
    result = fit_files([str(tmp_path / "low.npy"), str(tmp_path / "high.npy")],
                       str(tmp_path / "k.json"), FitSettings(size=4),
                       validation=[(str(tmp_path / "low_rgba.npy"), str(tmp_path / "high.npy"))])
    assert any("low_rgba.npy: alpha channel ignored" in note for note in result.notes)


def test_pairs_are_alternating_or_halves_as_the_sizes_say(tmp_path):
    from upconv.training import pair_inputs

    for name, shape in (("low1", (8, 9)), ("low2", (10, 11)), ("high1", (16, 18)),
                        ("high2", (20, 22))):
        np.save(tmp_path / f"{name}.npy", np.zeros(shape))
    low1, low2, high1, high2 = (str(tmp_path / f"{n}.npy")
                                for n in ("low1", "low2", "high1", "high2"))
    assert pair_inputs([low1, high1, low2, high2]) == [(low1, high1), (low2, high2)]
    assert pair_inputs([low1, low2, high1, high2]) == [(low1, high1), (low2, high2)]
    # Neither layout pairs them: kept alternating, for fitting to say which pair fails.
    assert pair_inputs([high1, low1, high2, low2]) == [(high1, low1), (high2, low2)]
    with pytest.raises(upconv.UpconvError, match="no such file"):
        pair_inputs([low1, low2, high1, str(tmp_path / "missing.png")])


def test_fit_takes_a_shell_glob_of_lows_then_highs(tmp_path, rng):
    truth = Kernel(rng.standard_normal((4, 4)), stride=2)
    lows = [rng.random((16, 18, 3)) for _ in range(2)]
    for index, low in enumerate(lows, 1):
        np.save(tmp_path / f"low{index}.npy", low)
        np.save(tmp_path / f"high{index}.npy", upconv.transposed_conv(low, truth))
    paths = [str(tmp_path / name) for name in ("low1.npy", "low2.npy", "high1.npy",
                                                "high2.npy")]
    result = fit_files(paths, str(tmp_path / "k.json"), FitSettings(size=4))
    np.testing.assert_allclose(result.kernel.weights, truth.weights, atol=1e-9)
