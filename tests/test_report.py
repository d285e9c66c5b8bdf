"""The checkerboard report: its measures behave as promised, and the command around them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import SAMPLES
from PIL import Image

import upconv
import upconv.degrade
import upconv.metrics
from upconv.cli import run
from upconv.fit import fit_kernel
from upconv.images import load_image
from upconv.kernels import Kernel, builtin_kernel
from upconv.metrics import measure_pattern, ssim
from upconv.report import build_report
from upconv.samples import to_float


def photo(name: str = "coffee.png") -> np.ndarray:
    values = to_float(load_image(str(SAMPLES / name)).samples).astype(np.float64)
    return values[:, :, :3] if values.shape[2] == 4 else values


def board(shape: tuple[int, ...], s: int = 2) -> np.ndarray:
    """A +/-1 checkerboard of period s (cells of s/2 for even s... here: phase parity)."""
    y, x = np.indices(shape[:2])
    pattern = ((y % s) + (x % s)) % 2 * 2.0 - 1.0
    return pattern[:, :, None] if len(shape) == 3 else pattern


def score(image: np.ndarray, factor: int | None = 2) -> float:
    return build_report(image, factor).checkerboard.score


def test_flat_and_interpolated_images_score_near_zero():
    assert score(np.full((64, 64, 1), 0.5)) == 0.0
    low = photo()
    for method in ("bilinear", "bicubic"):
        report = build_report(upconv.scale(low, 2, method=method), 2)
        assert report.checkerboard.score < 0.1
        assert report.checkerboard.verdict == "none"


def test_checkerboard_free_fit_scores_near_zero():
    high = photo("astronaut.png")
    low = upconv.degrade.degrade(high, 2, "area")
    kernel = fit_kernel([(low, high)], size=6, checkerboard_free=True)
    assert kernel.spread() == pytest.approx(0, abs=1e-12)
    out = upconv.scale(photo()[:, :, :], 2, method="transpose", kernel=kernel)
    report = build_report(np.clip(out, 0, 1), 2)
    assert report.checkerboard.verdict == "none"
    assert report.checkerboard.score < 0.1


def test_uneven_overlap_scores_far_above_bilinear():
    low = photo()
    ones = upconv.scale(low, 2, method="transpose", kernel=Kernel(np.ones((3, 3)), stride=2))
    bilinear = upconv.scale(low, 2, method="bilinear")
    report = build_report(ones, 2)
    assert report.checkerboard.verdict in ("visible", "strong")
    assert report.checkerboard.score >= 10 * max(score(bilinear), 0.01)


def test_score_rises_in_proportion_to_the_pattern():
    smooth = upconv.scale(photo("camera.png"), 2, method="bicubic")
    amplitudes = [0.5, 1, 2, 4, 8]
    scores = [score(smooth + a * board(smooth.shape) / 255) for a in amplitudes]
    assert all(b > a for a, b in zip(scores, scores[1:], strict=False))
    np.testing.assert_allclose(np.array(scores) / amplitudes, 1.0, atol=0.1)
    three = upconv.scale(photo("camera.png"), 3, method="bicubic")
    pattern = (np.indices(three.shape[:2]) % 3 == 0).all(axis=0) * 1.0  # a dot every 3x3
    assert measure_pattern(three + 6 * pattern[:, :, None] / 255, 3).score > 1.5


def test_one_grey_level_checkerboard_on_a_smooth_image_is_detected():
    y, x = np.mgrid[0:512, 0:512] / 512
    smooth = (0.3 + 0.4 * np.sin(3 * x) * np.cos(2 * y))[:, :, None]
    report = build_report(smooth + board(smooth.shape) / 255)
    assert report.factor == 2 and report.factor_detected
    assert report.checkerboard.verdict != "none"
    assert report.checkerboard.score == pytest.approx(1.0, abs=0.01)


def test_nearest_neighbour_blocks_are_not_a_checkerboard():
    for factor in (2, 3):
        blocks = upconv.scale(photo(), factor, method="nearest")
        report = build_report(blocks, factor)
        assert report.checkerboard.verdict == "none"
        assert report.checkerboard.score < 0.1


def test_flips_and_rotations_barely_change_the_score():
    image = upconv.scale(photo(), 2, method="transpose",
                         kernel=Kernel(np.ones((3, 3)) / 2.25, stride=2))
    base = score(image)
    for variant in (image[::-1], image[:, ::-1], np.rot90(image), np.rot90(image, 3)):
        assert score(np.ascontiguousarray(variant)) == pytest.approx(base, rel=0.02)


@pytest.mark.parametrize("name", ["coffee.png", "astronaut.png", "camera.png"])
def test_photos_never_upsampled_score_low_and_no_factor_is_found(name):
    report = build_report(photo(name))
    assert report.factor is None and not report.factor_detected
    assert report.checkerboard.verdict == "none"
    assert report.checkerboard.score < 0.5


def test_period_detection_finds_each_factor():
    low = photo()
    for s in (2, 3, 4):
        kernel = Kernel(np.ones((s + 1, s + 1)) * s * s / (s + 1) ** 2, stride=s)
        report = build_report(upconv.scale(low, s, method="transpose", kernel=kernel))
        assert report.factor == s and report.factor_detected


def test_kernel_analysis():
    assert build_report(None, kernel=builtin_kernel("bilinear", 2)).kernel.spread == 0.0
    uneven = build_report(None, kernel=Kernel(np.ones((3, 3)), stride=2)).to_dict()["kernel"]
    assert uneven["spread"] > 0 and not uneven["flat_stays_flat"]
    assert uneven["phase_sums"] == [[1.0, 2.0], [2.0, 4.0]]  # output phases (y mod 2, x mod 2)


def test_ssim_matches_an_independent_formulation(rng):
    x = rng.random((40, 50, 1))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    # Independent: explicit 11x11 Gaussian window, direct sums over every window.
    g = np.exp(-0.5 * (np.arange(-5, 6) / 1.5) ** 2)
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    values = []
    for i in range(5, 35):
        for j in range(5, 45):
            a, b = x[i - 5:i + 6, j - 5:j + 6, 0], y[i - 5:i + 6, j - 5:j + 6, 0]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * a * a).sum() - ma * ma, (w * b * b).sum() - mb * mb
            cov = (w * a * b).sum() - ma * mb
            values.append((2 * ma * mb + c1) * (2 * cov + c2)
                          / ((ma * ma + mb * mb + c1) * (va + vb + c2)))
    assert ssim(y, x) == pytest.approx(np.mean(values), abs=1e-6)
    assert ssim(x, x) == 1.0


# ------------------------------------------------------------------- the command

def save(tmp_path, name, values):
    path = tmp_path / name
    Image.fromarray(np.rint(np.clip(values, 0, 1) * 255).astype(np.uint8).squeeze()).save(path)
    return str(path)


def test_report_json_shape(tmp_path, capsys):
    high = photo()
    low = upconv.degrade.degrade(high, 2, "area")
    out = save(tmp_path, "out.png", upconv.scale(low, 2, method="bicubic"))
    truth = save(tmp_path, "truth.png", high[:low.shape[0] * 2, :low.shape[1] * 2])
    assert run(["report", out, "--json", "--reference", truth, "--kernel", "bilinear"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"factor", "factor_detected", "checkerboard", "kernel", "reference"}
    board_part = report["checkerboard"]
    assert set(board_part) >= {"score", "verdict", "phase_means", "spectral_peak_db"}
    assert board_part["verdict"] in ("none", "faint", "visible", "strong")
    assert report["factor"] == 2  # from the kernel's stride
    assert np.array(board_part["phase_means"]).shape == (2, 2)
    assert report["kernel"]["spread"] == 0.0
    assert 25 < report["reference"]["psnr"] < 60 and 0.5 < report["reference"]["ssim"] <= 1


def test_report_reads_stdin_and_gates_with_exit_3(tmp_path):
    low = photo()
    bad = upconv.scale(low, 2, method="transpose", kernel=Kernel(np.ones((3, 3)) / 2.25, stride=2))
    path = save(tmp_path, "bad.png", bad)
    with open(path, "rb") as stdin:
        done = subprocess.run([sys.executable, "-m", "upconv", "report", "-", "--json",
                               "--fail-above", "1"], stdin=stdin, capture_output=True,
                              text=True, check=False)
    assert done.returncode == 3
    assert json.loads(done.stdout)["checkerboard"]["verdict"] in ("visible", "strong")
    assert "above --fail-above" in done.stderr
    help_text = subprocess.run([sys.executable, "-m", "upconv", "report", "--help"],
                               capture_output=True, text=True, check=False).stdout
    assert "Exit status 3" in help_text


def test_kernel_only_report(capsys, tmp_path):
    (tmp_path / "k.txt").write_text("1 1 1\n1 1 1\n1 1 1\n")
    assert run(["report", "--kernel", str(tmp_path / "k.txt"), "--factor", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["checkerboard"] is None and report["kernel"]["spread"] > 0


def test_map_and_spectrum_pictures(tmp_path, capsys):
    image = upconv.scale(photo(), 2, method="bicubic")
    image[64:192, 640:896] += 6 * board((128, 256, 1)) / 255  # artifact top right
    path = save(tmp_path, "art.png", image)
    assert run(["report", path, "-f", "2", "--map", str(tmp_path / "map.png"),
                "--spectrum", str(tmp_path / "spectrum.png"), "--tile", "64"]) == 0
    with Image.open(tmp_path / "map.png") as heat:
        assert heat.mode == "RGB"
        pixels = np.asarray(heat).astype(int)
    tiles = upconv.metrics.local_checkerboard(to_float(load_image(path).samples), 2, 64)
    hot = np.unravel_index(np.argmax(tiles), tiles.shape)
    assert 1 <= hot[0] <= 2 and 10 <= hot[1] <= 13  # the tiles the test painted
    # the brightest (yellow) part of the picture is there too, left of the colour bar
    heat_part = pixels[30:, :pixels.shape[1] - 110].sum(axis=2)
    cell = heat_part.shape[1] // tiles.shape[1]
    y, x = np.unravel_index(np.argmax(heat_part), heat_part.shape)
    assert (y // cell, x // cell) in {(r, c) for r in (1, 2) for c in range(10, 14)}
    with Image.open(tmp_path / "spectrum.png") as spectrum:
        assert spectrum.mode == "RGB" and max(spectrum.size) <= 512


@pytest.mark.parametrize("args,status,fragment", [
    (["{img}", "-f", "1"], 2, ">= 2"),
    (["{img}", "-f", "5000"], 1, "larger than"),
    (["{small}"], 1, "too small"),
    (["{img}", "--reference", "{small}"], 1, "must match"),
    ([], 2, "give an IMAGE"),
    (["--kernel", "{d}/missing.json"], 1, "no such kernel file"),
])
def test_report_bad_input(tmp_path, capsys, args, status, fragment):
    img = save(tmp_path, "img.png", upconv.scale(photo(), 2, method="bilinear"))
    small = save(tmp_path, "small.png", np.full((10, 10), 0.5))
    filled = [a.format(img=img, small=small, d=tmp_path) for a in args]
    assert run(["report", *filled]) == status
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1, err


def test_scale_report_file_and_summary(tmp_path, capsys):
    out, report_path = tmp_path / "out.png", tmp_path / "out.json"
    assert run(["scale", str(SAMPLES / "coffee.png"), str(out), "-m", "transpose", "-f", "2",
                "-k", "bilinear", "--report", str(report_path)]) == 0
    summary = capsys.readouterr().err.strip().splitlines()
    assert len(summary) == 1
    assert "1200x800, transpose (bilinear), checkerboard" in summary[0] and "(none)" in summary[0]
    report = json.loads(report_path.read_text())
    assert report["factor"] == 2 and report["kernel"]["spread"] == 0.0
    assert report["image"] == str(out)
    assert run(["scale", str(SAMPLES / "coffee.png"), str(out), "-f", "2", "--report", "-",
                "--quiet", "--overwrite"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and json.loads(captured.out)["factor"] == 2
    assert run(["scale", str(SAMPLES / "coffee.png"), "-", "-f", "2", "--format", "png",
                "--report", "-"]) == 2


# ------------------------------------------------------------------- review fixes

def test_no_period_found_means_score_zero_and_no_gate(tmp_path, capsys, rng):
    noise = save(tmp_path, "noise.png", rng.random((150, 150)))
    up = tmp_path / "up.png"
    assert run(["scale", noise, str(up), "-f", "3", "-m", "bilinear", "--quiet"]) == 0
    assert run(["report", str(up), "--fail-above", "0.5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["factor"] is None and report["checkerboard"]["score"] == 0.0
    assert "strongest_candidate" in report["checkerboard"]
    for name in ("horse.png", "chelsea.png"):
        assert build_report(to_float(load_image(str(SAMPLES / name)).samples)[:, :, :3]
                            ).checkerboard.score == 0.0


def test_file_names_with_brackets(tmp_path, capsys):
    image = upconv.scale(photo(), 2, method="bilinear")
    (tmp_path / "q[").mkdir()
    for name in ("[a].png", "q[/q].png"):  # the second is q].png in the folder q[
        path = save(tmp_path, name, image)
        assert run(["report", path, "-f", "2"]) == 0
        assert name in capsys.readouterr().out.replace("\n", "")


def test_report_folder_refuses_single_image_options(tmp_path, capsys):
    save(tmp_path, "a.png", np.full((40, 40), 0.5))
    assert run(["report", str(tmp_path), "--map", str(tmp_path / "m.png")]) == 2
    assert "need one IMAGE" in capsys.readouterr().err


def test_map_of_an_image_smaller_than_a_tile(tmp_path, capsys):
    path = save(tmp_path, "s.png", np.full((40, 40), 0.5))
    assert run(["report", path, "-f", "2", "--map", str(tmp_path / "m.png")]) == 0
    with Image.open(tmp_path / "m.png") as heat:
        assert heat.mode == "RGB"


def test_the_gate_and_the_verdict_agree_on_noise(tmp_path, capsys):
    """A score that is only noise (not significant) has the verdict none and passes the gate."""
    noise = (np.random.default_rng(3).random((96, 96)) * 255).astype(np.uint8)
    path = tmp_path / "noise.png"
    Image.fromarray(noise).save(path)
    assert run(["report", str(path), "-f", "2", "--json", "--fail-above", "0.5"]) == 0
    board = json.loads(capsys.readouterr().out)["checkerboard"]
    assert board["score"] > 0.5 and not board["significant"] and board["verdict"] == "none"
    board_image = tmp_path / "board.png"
    checker = (np.indices((96, 96)).sum(axis=0) % 2 * 6 + 120).astype(np.uint8)
    Image.fromarray(checker).save(board_image)
    assert run(["report", str(board_image), "-f", "2", "--fail-above", "0.5", "--json"]) == 3


def test_the_summary_measures_pytorch_geometry_at_the_stride(tmp_path, capsys):
    out = tmp_path / "out.png"
    assert run(["scale", str(SAMPLES / "camera.png"), str(out), "-m", "transpose", "-k",
                "bilinear", "-f", "2", "--padding", "1"]) == 0
    summary = capsys.readouterr().err
    assert "1024x1024" in summary and "checkerboard 0.00 grey levels (none)" in summary
    ones3 = tmp_path / "ones3.txt"
    ones3.write_text("1 1 1\n1 1 1\n1 1 1\n")
    assert run(["scale", str(SAMPLES / "camera.png"), str(tmp_path / "bad.npy"), "-m",
                "transpose", "-k", str(ones3), "-f", "2", "--padding", "1"]) == 0
    assert "(strong)" in capsys.readouterr().err


@pytest.mark.parametrize("size, stride, padding", [(3, 2, None), (4, 2, None), (5, 3, None),
                                                   (4, 3, None), (4, 2, 1), (5, 2, 2)])
def test_a_kernels_phase_sums_predict_the_pattern_measured_on_its_output(size, stride,
                                                                          padding):
    """Phases are numbered as in the image: pixel (y, x) is in phase (y mod s, x mod s)."""
    weights = np.random.default_rng(size * 10 + stride).random((size, size)) + 0.2
    kernel = Kernel(weights, stride=stride, padding=padding)
    flat = np.full((96, 96), 0.1)
    # An edge boundary in both geometries: a flat image extended stays flat, so the border
    # carries the same pattern as the inside (zeros would darken it), and nothing clips.
    out = upconv.scale(flat, method="transpose", kernel=kernel, boundary="edge")
    sums = kernel.phase_sums()
    # Away from the borders a flat input c comes out as c * S[y mod s, x mod s] ...
    inner = out[2 * stride * 3:-2 * stride * 3, 2 * stride * 3:-2 * stride * 3]
    rows, cols = np.indices(inner.shape) + 2 * stride * 3
    np.testing.assert_allclose(inner, 0.1 * sums[rows % stride, cols % stride], rtol=1e-12)
    # ... and the report measures that pattern, centred, in grey levels, phase for phase.
    board = build_report(out[:, :, None], stride).checkerboard
    assert out.max() <= 1
    expected = 255 * 0.1 * (sums - sums.mean())
    np.testing.assert_allclose(board.phase_means, expected, atol=1e-3 * abs(expected).max())
