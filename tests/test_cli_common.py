"""What every command shares: -f/--factor means one thing, and a bad one is a usage error."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import SAMPLES

from upconv.cli import run

PHOTO = str(SAMPLES / "camera.png")

#: Every command with -f/--factor: (arguments before -f, whether it wants a stride).
COMMANDS = {
    "scale": (["scale", PHOTO, "{out}/o.png"], False),
    "scale -m transpose": (["scale", PHOTO, "{out}/o.png", "-m", "transpose"], True),
    "fit --degrade": (["fit", "--degrade", "area", PHOTO, "-o", "{out}/k.json"], True),
    "degrade": (["degrade", PHOTO, "{out}/low.png"], True),
    "kernel show": (["kernel", "show", "bilinear"], True),
    "report": (["report", PHOTO], True),
}
NOT_FACTORS = ["0", "-2", "nan", "inf", "two", "2x", "x2", "2x3x4", "1_0", ""]
NOT_STRIDES = ["1", "1.5", "2x3", "2.5x2.5"]


def args_for(command: str, value: str, folder) -> list[str]:
    base, _ = COMMANDS[command]
    return [a.replace("{out}", str(folder)) for a in base] + ["-f", value]


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("value", NOT_FACTORS)
def test_a_bad_factor_is_a_usage_error_everywhere(tmp_path, capsys, command, value):
    assert run(args_for(command, value, tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "factor" in err and "--help" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [c for c, (_, stride) in COMMANDS.items() if stride])
@pytest.mark.parametrize("value", NOT_STRIDES)
def test_where_a_stride_is_meant_a_fraction_is_a_usage_error(tmp_path, capsys, command, value):
    assert run(args_for(command, value, tmp_path)) == 2
    err = capsys.readouterr().err
    assert "whole factor" in err or "one stride" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_same_factor_is_read_the_same_everywhere(tmp_path, command):
    """``2`` and ``2x2`` are the same factor for every command."""
    status = run(args_for(command, "2x2", tmp_path) + (["--size", "4"] if "fit" in command
                                                       else []))
    assert status == 0


def test_scale_reads_separate_factors_x_then_y(tmp_path):
    assert run(["scale", PHOTO, str(tmp_path / "o.npy"), "-f", "1.5x2", "--quiet"]) == 0
    assert np.load(tmp_path / "o.npy").shape[:2] == (1024, 768)


COMMAND_LINES = [["scale"], ["fit"], ["degrade"], ["report"], ["kernel", "show"],
                 ["kernel", "matrix"]]


@pytest.mark.parametrize("command", COMMAND_LINES, ids=" ".join)
def test_help_texts_keep_their_layout_and_list_their_own_exit_statuses(command, capsys):
    assert run([*command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "\\b" not in text and "\b" not in text  # click's no-rewrap marker never shows
    assert "Examples:\n    upconv" in text  # the examples are not re-wrapped
    statuses = [line.split()[0] for line in text.split("Exit status:")[1].splitlines()
                if line.strip()]
    assert statuses == (["0", "1", "2", "3", "130", "141", "143"] if command == ["report"]
                        else ["0", "1", "2", "130", "141", "143"])


def test_the_whole_exit_status_table_is_under_upconv_help(capsys):
    assert run(["--help"]) == 0
    text = capsys.readouterr().out
    assert "3    report, kernel audit: the checkerboard score" in text and "141" in text


@pytest.mark.parametrize("command", [["scale", PHOTO, "-", "-f", "2"],
                                     ["degrade", PHOTO, "-", "-f", "2"]], ids=["scale",
                                                                                "degrade"])
def test_standard_output_without_a_format_is_a_usage_error(command, capsys):
    assert run(command) == 2
    assert "needs --format" in capsys.readouterr().err


@pytest.mark.parametrize("fit, expected", [(None, (1080, 1080)), ("inside", (1080, 1080)),
                                           ("cover", (1920, 1920)), ("fill", (1080, 1920))])
def test_size_keeps_the_aspect_ratio_as_imagemagick_does(tmp_path, fit, expected):
    """camera.png is square: 1920x1080 fits it inside by default, not stretched."""
    out = tmp_path / "o.npy"
    args = ["scale", PHOTO, str(out), "--size", "1920x1080", "-m", "bilinear", "--quiet"]
    assert run(args + (["--fit", fit] if fit else [])) == 0
    assert np.load(out).shape[:2] == expected


def test_the_default_batch_name_for_a_size_is_readable(tmp_path):
    assert run(["scale", PHOTO, "-o", str(tmp_path), "--size", "1920x", "--quiet"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["camera_1920w.png"]


def test_the_name_collision_hint_suggests_a_field_that_works(tmp_path, capsys):
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        shutil.copy(PHOTO, tmp_path / folder / "a.png")
    inputs = [str(tmp_path / "one" / "a.png"), str(tmp_path / "two" / "a.png")]
    assert run(["scale", *inputs, "-o", str(tmp_path / "out"), "-f", "2"]) == 1
    assert "add {parent}" in capsys.readouterr().err
    assert run(["scale", *inputs, "-o", str(tmp_path / "out"), "-f", "2", "--quiet",
                "--name", "{parent}_{stem}.{ext}"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["one_a.png", "two_a.png"]
