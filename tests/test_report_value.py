"""The report as a typed value: its JSON shape, its figures, pickling, rendering, imports."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import ROOT, SAMPLES
from PIL import Image
from rich.console import Console

from upconv.cli import run
from upconv.images import load_image
from upconv.kernels import Kernel, builtin_kernel
from upconv.pipeline import ScaleSettings, scale_file
from upconv.render import print_report
from upconv.report import (
    SCORE_UNIT,
    CheckerboardFigures,
    KernelAnalysis,
    Report,
    build_report,
)
from upconv.reporting import ReportSettings, report_about, report_file
from upconv.samples import to_float

TOP = ["factor", "factor_detected", "checkerboard", "kernel", "reference"]
BOARD = ["score", "verdict", "unit", "period", "phase_means", "spectral_peak_db", "noise",
         "significant"]
KERNEL = ["name", "shape", "stride", "phase_sums", "spread", "flat_stays_flat", "dc_gain",
          "layer"]
REFERENCE = ["psnr", "ssim", "channels"]


def periodic(pattern: np.ndarray, shape: tuple[int, int] = (96, 128),
             base: float = 0.5) -> np.ndarray:
    """A flat image plus ``pattern`` (grey levels) repeated with period ``len(pattern)``."""
    s = pattern.shape[0]
    y, x = np.indices(shape)
    return (base + pattern[y % s, x % s] / 255)[:, :, None]


def centred(pattern: np.ndarray) -> np.ndarray:
    return pattern - pattern.mean()


def chelsea() -> np.ndarray:
    return to_float(load_image(str(SAMPLES / "chelsea.png")).samples)[:, :, :3]


def json_types_only(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and json_types_only(v) for k, v in value.items())
    if isinstance(value, list):
        return all(json_types_only(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


# ------------------------------------------------------------------ the JSON shape

def test_kernel_only_report_keys():
    document = build_report(None, kernel=builtin_kernel("bilinear", 2)).to_dict()
    assert list(document) == TOP
    assert document["checkerboard"] is None and document["reference"] is None
    assert list(document["kernel"]) == KERNEL


def test_given_factor_has_the_core_keys_only():
    report = build_report(periodic(centred(np.array([[2.0, -1.0], [0.0, 1.0]]))), 2)
    document = report.to_dict()
    assert list(document) == TOP and document["factor"] == 2
    assert document["factor_detected"] is False
    assert list(document["checkerboard"]) == BOARD  # no scores_by_period, no candidate
    assert document["checkerboard"]["unit"] == SCORE_UNIT
    assert report.checkerboard.scores_by_period is None
    assert report.checkerboard.strongest_candidate is None


def test_detected_period_adds_scores_by_period():
    pattern = centred(np.array([[6.0, 0, 0], [0, 0, 0], [0, 0, -3.0]]))
    report = build_report(periodic(pattern))
    document = report.to_dict()
    assert document["factor"] == 3 and document["factor_detected"] is True
    assert list(document["checkerboard"]) == [*BOARD, "scores_by_period"]
    by_period = document["checkerboard"]["scores_by_period"]
    assert all(key.isdigit() for key in by_period) and "3" in by_period
    assert by_period["3"] == report.checkerboard.scores_by_period[3]


def test_nothing_significant_adds_the_strongest_candidate():
    report = build_report(chelsea())
    document = report.to_dict()
    assert document["factor"] is None and document["factor_detected"] is False
    assert list(document["checkerboard"]) == [*BOARD, "scores_by_period",
                                              "strongest_candidate"]
    candidate = document["checkerboard"]["strongest_candidate"]
    assert list(candidate) == ["period", "score", "noise"]
    assert document["checkerboard"]["score"] == 0.0
    assert candidate["period"] == document["checkerboard"]["period"]


def test_reference_keys_and_identical_images():
    image = periodic(centred(np.array([[1.0, -1.0], [-1.0, 1.0]]))).astype(np.float32)
    same = build_report(image, 2, reference=image).to_dict()
    assert list(same) == TOP and list(same["reference"]) == REFERENCE
    assert same["reference"] == {"psnr": None, "ssim": 1.0, "channels": "gray"}


def test_infinite_spread_is_null():
    analysis = build_report(None, kernel=Kernel(np.array([[1.0, -1.0], [-1.0, 1.0]]),
                                                stride=2)).kernel
    assert analysis.spread is None and analysis.flat_stays_flat is False
    assert analysis.to_dict()["spread"] is None and '"spread": null' in analysis.to_json()


def test_file_layer_adds_image_and_size(tmp_path):
    report, image = report_file(str(SAMPLES / "chelsea.png"), ReportSettings(factor=2))
    document = report.to_dict()
    assert list(document) == [*TOP, "image", "size"]
    assert document["image"] == str(SAMPLES / "chelsea.png")
    assert document["size"] == [image.shape[1], image.shape[0]]


def test_scale_report_adds_method_and_the_error_of_a_tiny_image(tmp_path):
    tiny, big = tmp_path / "tiny.png", tmp_path / "big.png"
    Image.fromarray(np.full((5, 6), 128, np.uint8)).save(tiny)
    Image.fromarray(np.full((40, 40), 128, np.uint8)).save(big)
    settings = ScaleSettings(factor=(2.0, 2.0), full_report=True)
    small = scale_file(str(tiny), str(tmp_path / "tiny_x2.png"), settings)
    document = small.report.to_dict()
    assert list(document) == [*TOP, "checkerboard_error", "image", "size", "method"]
    assert document["checkerboard"] is None and "too small" in document["checkerboard_error"]
    assert document["size"] == [12, 10] and document["method"] == "bicubic"
    assert small.checkerboard == "checkerboard n/a"
    fine = scale_file(str(big), str(tmp_path / "big_x2.png"), settings)
    assert list(fine.report.to_dict()) == [*TOP, "image", "size", "method"]
    assert fine.score == fine.report.checkerboard.score


def test_report_about_keeps_the_kernel_when_the_image_is_too_small():
    report = report_about(np.zeros((10, 10, 1), np.float32), 2, builtin_kernel("bilinear", 2))
    assert report.checkerboard is None and report.kernel.name == "bilinear"
    assert "too small" in report.checkerboard_error


# ------------------------------------------------------------------ the figures

def test_figures_of_a_known_pattern_match_an_independent_computation():
    pattern = centred(np.array([[4.0, -2.0, 1.0], [0.5, 3.0, -1.5], [-2.5, 1.0, 0.0]]))
    board = build_report(periodic(pattern, (144, 144)), 3).checkerboard
    # On a flat image the phase means are the pattern itself, its score its RMS.
    np.testing.assert_allclose(board.phase_means, pattern, atol=1e-3)
    assert board.score == pytest.approx(math.sqrt(np.mean(pattern ** 2)), abs=1e-3)
    assert board.period == 3 and board.significant and board.verdict == "visible"


def test_kernel_figures_match_an_independent_computation(rng):
    weights = rng.random((5, 5))
    analysis = build_report(None, kernel=Kernel(weights, stride=2)).kernel
    # Output phase (p, q) gets the taps k with (k - 2) mod 2 = p: tap k of input pixel i
    # lands at 2i + (2 - 5) // 2 + k = 2i - 2 + k.
    sums = np.array([[weights[p::2, q::2].sum() for q in range(2)] for p in range(2)])
    np.testing.assert_allclose(analysis.phase_sums, sums)
    assert analysis.spread == pytest.approx((sums.max() - sums.min()) / sums.mean())
    assert analysis.shape == (5, 5) and analysis.stride == 2


def test_reference_figures_match_an_independent_psnr(rng):
    image = periodic(np.zeros((2, 2)))
    truth = np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1)
    figures = build_report(image, 2, reference=truth).reference
    mse = np.mean((image.astype(np.float32).astype(np.float64) - truth) ** 2)
    assert figures.psnr == pytest.approx(10 * math.log10(1 / mse), rel=1e-5)


# ------------------------------------------------------------------ the value

@pytest.mark.parametrize("make", [
    lambda: build_report(None, kernel=builtin_kernel("bicubic", 3)),
    lambda: build_report(chelsea(), reference=chelsea()),
    lambda: build_report(chelsea(), 2, kernel=builtin_kernel("bilinear", 2)),
    lambda: report_file(str(SAMPLES / "camera.png"), ReportSettings())[0],
], ids=["kernel", "searched", "given", "file"])
def test_to_json_to_dict_and_pickle_agree(make):
    report = make()
    document = report.to_dict()
    assert json_types_only(document)
    assert json.loads(report.to_json()) == document
    assert report.to_json(indent=None) == json.dumps(document)
    again = pickle.loads(pickle.dumps(report))
    assert again == report and again.to_json() == report.to_json()


def test_the_value_is_frozen_and_with_file_copies():
    report = build_report(None, kernel=builtin_kernel("bilinear", 2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.factor = 3
    located = report.with_file("a.png", [20, 10], "bilinear")
    assert (located.image, located.size, located.method) == ("a.png", (20, 10), "bilinear")
    assert report.image is None and list(report.to_dict()) == TOP


def test_a_new_field_reaches_the_json_by_itself():
    """Adding a metric is a field: to_dict needs no change (the renderer gets a line)."""
    extended = dataclasses.make_dataclass(
        "Extended", [("contrast", float)], bases=(CheckerboardFigures,), frozen=True,
        kw_only=True)
    base = build_report(periodic(np.zeros((2, 2))), 2).checkerboard
    figures = extended(**{f.name: getattr(base, f.name)
                          for f in dataclasses.fields(base)}, contrast=0.25)
    assert list(figures.to_dict()) == [*BOARD, "contrast"]
    assert json.loads(figures.to_json())["contrast"] == 0.25


def test_the_command_prints_the_values_json(tmp_path, capsys):
    path = str(SAMPLES / "chelsea.png")
    assert run(["report", path, "--json", "-k", "bilinear"]) == 0
    expected, _ = report_file(path, ReportSettings(kernel=builtin_kernel("bilinear", 2)))
    assert capsys.readouterr().out == expected.to_json() + "\n"
    assert isinstance(expected.kernel, KernelAnalysis)


# ------------------------------------------------------------------ rendering

def rendered(report: Report, title: str = "x.png") -> str:
    console = Console(file=io.StringIO(), width=80, color_system=None)
    print_report(report, console, title=title)
    return console.file.getvalue()


def test_print_report_is_deterministic_and_shows_the_figures():
    pattern = centred(np.array([[6.0, 0, 0], [0, 0, 0], [0, 0, -3.0]]))
    image = periodic(pattern).astype(np.float32)
    report = build_report(image, kernel=builtin_kernel("bilinear", 3), reference=image)
    text = rendered(report)
    assert text == rendered(report)
    assert all(len(line) <= 80 for line in text.splitlines())
    board = report.checkerboard
    assert f"{board.score:.3f} grey levels RMS" in text
    assert f"verdict       │ {board.verdict}" in text
    assert "3 (detected)" in text and "checkerboard: x.png" in text
    assert "kernel: bilinear" in text and "identical" in text and "mean over gray" in text
    assert "\x1b" not in text  # no colour codes


def test_print_report_of_a_kernel_only_and_an_undetected_report():
    kernel_only = rendered(build_report(None, kernel=Kernel(np.ones((3, 3)), stride=2)))
    assert "checkerboard:" not in kernel_only and "a flat input gets a checkerboard" in kernel_only
    report = build_report(chelsea())
    text = rendered(report)
    candidate = report.checkerboard.strongest_candidate
    assert f"strongest candidate: period {candidate.period}" in text.replace("\n", " ")
    assert "verdict       │ none" in text


# ------------------------------------------------------------------ workers

def test_measuring_workers_do_not_import_rich(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        import upconv.batch, upconv.pipeline, upconv.report, upconv.reporting
        from upconv.pipeline import ScaleSettings, scale_file
        from upconv.reporting import ReportSettings, report_file

        report, _ = report_file({str(SAMPLES / "chelsea.png")!r}, ReportSettings(factor=2))
        report.to_json()
        scale_file({str(SAMPLES / "camera.png")!r}, {str(tmp_path / "out.png")!r},
                   ScaleSettings(factor=(2.0, 2.0), full_report=True)).report.to_json()
        loaded = [name for name in sys.modules
                  if name in ("rich", "upconv.render", "PIL.ImageDraw")
                  or name.startswith("rich.")]
        print(",".join(loaded))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    assert done.stdout.strip() == "", f"workers imported {done.stdout.strip()}"
