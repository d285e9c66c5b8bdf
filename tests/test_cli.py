"""The command line: results, pipelines, exit codes, and every kind of bad input."""

from __future__ import annotations

import io
import os
import pty
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES, zoom_per_channel
from PIL import Image

import upconv
from upconv import fileio
from upconv.cli import run
from upconv.images import load_image
from upconv.samples import from_float, to_float

PHOTO = SAMPLES / "chelsea.png"
UPCONV = [sys.executable, "-m", "upconv"]


def upconv_cli(*args: str, capsys=None) -> tuple[int, str]:
    """Run the CLI in-process; returns (exit status, stderr)."""
    status = run([str(a) for a in args])
    err = capsys.readouterr().err if capsys else ""
    return status, err


def size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------ results

@pytest.mark.parametrize("method", ["nearest", "bilinear", "bicubic"])
def test_cli_output_equals_the_library(tmp_path, capsys, method):
    out = tmp_path / "out.png"
    status, err = upconv_cli("scale", PHOTO, out, "--factor", "2", "--method", method,
                             capsys=capsys)
    assert status == 0, err
    source = load_image(str(PHOTO)).samples
    if method == "nearest":
        expected = upconv.scale(source, 2, method=method)
    else:
        expected = from_float(upconv.scale(to_float(source), 2, method=method), np.uint8)
    np.testing.assert_array_equal(load_image(str(out)).samples, expected)


@pytest.mark.parametrize("method", ["nearest", "bilinear", "bicubic"])
@pytest.mark.parametrize("shape", [(1, 9), (9, 1), (7, 5)])
def test_cli_equals_scipy_zoom_per_channel(tmp_path, capsys, rng, method, shape):
    values = rng.random(shape + (3,))
    np.save(tmp_path / "in.npy", values)
    out = tmp_path / "out.npy"
    assert run(["scale", str(tmp_path / "in.npy"), str(out), "-f", "2.5x3",
                "-m", method]) == 0, capsys.readouterr().err
    expected = zoom_per_channel(values, (3, 2.5), method, "edge")
    np.testing.assert_allclose(np.load(out), expected, atol=1e-9)


def test_cli_nearest_png_is_pixel_replication(tmp_path, capsys):
    out = tmp_path / "out.png"
    assert run(["scale", str(PHOTO), str(out), "-f", "3", "-m", "nearest"]) == 0
    source = np.asarray(Image.open(PHOTO))
    np.testing.assert_array_equal(load_image(str(out)).samples,
                                  np.kron(source, np.ones((3, 3, 1), np.uint8)))


def test_size_keeps_aspect_ratio_and_factor_takes_x_then_y(tmp_path, capsys):
    assert upconv_cli("scale", PHOTO, tmp_path / "a.png", "--size", "902x", capsys=capsys)[0] == 0
    assert size_of(tmp_path / "a.png") == (902, 600)
    assert upconv_cli("scale", PHOTO, tmp_path / "b.png", "--factor", "2x3", capsys=capsys)[0] == 0
    assert size_of(tmp_path / "b.png") == (902, 900)
    assert upconv_cli("scale", PHOTO, tmp_path / "c.png", "--size", "x150", capsys=capsys)[0] == 0
    assert size_of(tmp_path / "c.png") == (226, 150)


def test_16bit_in_gives_16bit_out(tmp_path, capsys):
    for name in ("gradient16.png", "gradient_rgb16.png"):
        out = tmp_path / name
        assert upconv_cli("scale", SAMPLES / name, out, "-f", "2", capsys=capsys)[0] == 0
        assert load_image(str(out)).samples.dtype == np.uint16


def test_gray_and_alpha_are_kept(tmp_path, capsys):
    for name, channels in (("camera.png", 1), ("horse.png", 4), ("soft_alpha.png", 4)):
        out = tmp_path / name
        assert upconv_cli("scale", SAMPLES / name, out, "-f", "1.5", capsys=capsys)[0] == 0
        assert load_image(str(out)).samples.shape[2] == channels


def test_transparent_magenta_does_not_bleed(tmp_path, capsys):
    out = tmp_path / "soft.png"
    assert upconv_cli("scale", SAMPLES / "soft_alpha.png", out, "-f", "3",
                      capsys=capsys)[0] == 0
    rgba = load_image(str(out)).samples.astype(int)
    visible = rgba[..., 3] >= 8
    magenta = (rgba[..., 0] > 200) & (rgba[..., 1] < 50) & (rgba[..., 2] > 200)
    assert not (visible & magenta).any()


def test_npy_pipeline_is_exact(tmp_path, capsys, rng):
    values = rng.random((12, 10, 3))
    np.save(tmp_path / "in.npy", values)
    assert upconv_cli("scale", tmp_path / "in.npy", tmp_path / "out.npy", "-f", "2.5",
                      "-m", "bilinear", "-b", "reflect", capsys=capsys)[0] == 0
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"),
                                  upconv.scale(values, 2.5, "bilinear", "reflect"))


def test_linear_light_flag(tmp_path, capsys):
    out = tmp_path / "lin.npy"
    assert upconv_cli("scale", PHOTO, out, "-f", "2", "--linear-light", capsys=capsys)[0] == 0
    expected = upconv.scale(to_float(load_image(str(PHOTO)).samples), 2, linear_light=True)
    np.testing.assert_allclose(np.load(out), expected, atol=1e-6)


def test_help_documents_exit_codes_and_version(capsys):
    assert upconv_cli("--help", capsys=None) == (0, "")
    out = capsys.readouterr().out
    assert "Exit status" in out and "130" in out and "usage error" in out
    assert run(["scale", "-h"]) == 0
    assert "--max-pixels" in capsys.readouterr().out
    assert run(["--version"]) == 0
    assert upconv.__version__ in capsys.readouterr().out


def test_python_dash_m_works(tmp_path):
    done = subprocess.run(UPCONV + ["--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and upconv.__version__ in done.stdout


# ------------------------------------------------------------------ pipelines

def test_stdin_to_stdout_pipeline():
    with open(PHOTO, "rb") as stdin:
        done = subprocess.run(UPCONV + ["scale", "-", "-", "-f", "2", "--format", "png"],
                              stdin=stdin, capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"\x89PNG")
    assert done.stderr.decode().startswith("upconv: stdout 902x600, bicubic, checkerboard ")
    with open(PHOTO, "rb") as stdin:
        quiet = subprocess.run(UPCONV + ["scale", "-", "-", "-f", "2", "--format", "png",
                                         "--quiet"], stdin=stdin, capture_output=True, check=False)
    assert quiet.returncode == 0 and quiet.stderr == b""
    with Image.open(io.BytesIO(done.stdout)) as image:
        assert image.size == (902, 600)


def test_piping_into_head_gives_no_traceback(tmp_path):
    command = (f"{sys.executable} -m upconv scale {SAMPLES / 'astronaut.png'} - -f 4 "
               "--format png | head -c 100 > " + str(tmp_path / "head.bin"))
    done = subprocess.run(["bash", "-c", "set -o pipefail; " + command],
                          capture_output=True, text=True, check=False)
    assert "Traceback" not in done.stderr and done.stderr == ""
    assert done.returncode == 141  # upconv's status: GNU tools die of SIGPIPE (128 + 13)
    assert (tmp_path / "head.bin").stat().st_size == 100


def test_binary_is_never_written_to_a_terminal():
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(UPCONV + ["scale", str(PHOTO), "-", "-f", "2", "--format", "png"],
                              stdout=follower, stderr=subprocess.PIPE, check=False)
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 1
    assert b"terminal" in done.stderr and b"Traceback" not in done.stderr


def test_closed_stdout_is_named_as_such():
    done = subprocess.run(["bash", "-c", f"{sys.executable} -m upconv scale {PHOTO} - -f 2 "
                           "--format png >&-"], capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "standard output is closed" in done.stderr


def test_bare_upconv_prints_help():
    done = subprocess.run(UPCONV, capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.startswith("Usage: upconv")


def test_stdout_needs_a_format(tmp_path, capsys):
    status, err = upconv_cli("scale", PHOTO, "-", "-f", "2", capsys=capsys)
    assert status == 2 and "--format" in err  # a usage error (exit 2)


# ------------------------------------------------------------------ atomic output

def test_interrupt_while_writing_leaves_nothing_and_keeps_the_old_output(tmp_path, capsys,
                                                                        monkeypatch):
    out = tmp_path / "out.png"
    out.write_bytes(b"previous result")

    def interrupted_write(self, data):
        raise KeyboardInterrupt

    real = fileio.atomic_output

    def patched(path, *args, **kwargs):
        context = real(path, *args, **kwargs)
        handle = context.__enter__()

        class Wrapper:
            def __enter__(self_inner):
                return type("H", (), {"write": interrupted_write})()

            def __exit__(self_inner, *exc):
                return context.__exit__(*exc)

        del handle
        return Wrapper()

    monkeypatch.setattr(fileio, "atomic_output", patched)
    status, err = upconv_cli("scale", PHOTO, out, "-f", "2", "--overwrite", capsys=capsys)
    assert status == 130 and "interrupted" in err
    assert out.read_bytes() == b"previous result"
    assert leftovers(tmp_path) == ["out.png"]


def test_ctrl_c_during_a_long_job_leaves_no_partial_output(tmp_path):
    """Ctrl-C once the output is being written (its temporary file has appeared): the run
    stops with 130 and leaves nothing, or (the signal landing after the rename, or after
    the end) the output is whole; never a temporary file or half an image."""
    out = tmp_path / "big.png"
    process = subprocess.Popen(UPCONV + ["scale", str(SAMPLES / "astronaut.png"), str(out),
                                         "-f", "10"], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while (process.poll() is None and time.monotonic() < deadline
           and not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]):
        time.sleep(0.005)  # polling for the event, not waiting a fixed time
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert b"Traceback" not in err
    assert process.returncode in (0, 130), err
    assert leftovers(tmp_path) in ([], ["big.png"])
    if leftovers(tmp_path):
        assert size_of(out) == (5120, 5120)
        with Image.open(out) as image:
            image.load()  # whole: every row decodes
    elif process.returncode == 0:
        raise AssertionError("a run that succeeded left no output")


def test_output_keeps_permissions_of_the_file_it_replaces(tmp_path, capsys):
    out = tmp_path / "out.png"
    out.write_bytes(b"x")
    os.chmod(out, 0o640)
    assert upconv_cli("scale", PHOTO, out, "-f", "1.1", "-y", capsys=capsys)[0] == 0
    assert (out.stat().st_mode & 0o777) == 0o640


# ------------------------------------------------------------------ bad input

def bad_input_case(tmp_path, capsys, args, expected_status, fragment):
    out = tmp_path / "result.png"
    status, err = upconv_cli(*args, capsys=capsys)
    assert status == expected_status, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("upconv: error:")
    assert fragment.lower() in err.lower(), err
    assert "Traceback" not in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


@pytest.fixture
def files(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    data = PHOTO.read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "corrupt.png").write_bytes(data[:64] + bytes(200) + data[264:])
    (tmp_path / "notes.txt").write_text("not an image\n")
    (tmp_path / "folder").mkdir()
    (tmp_path / "a_file").write_text("x")
    np.save(tmp_path / "nan.npy", np.array([[0.5, np.nan]]))
    np.save(tmp_path / "objects.npy", np.array([[object()]], dtype=object), allow_pickle=True)
    np.save(tmp_path / "wrong.npy", np.zeros((2, 2, 2, 2, 2)))
    np.save(tmp_path / "seven.npy", np.zeros((2, 2, 7)))
    (tmp_path / "bomb.png").write_bytes(png_header_only(30000, 30000))
    return tmp_path


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims a huge size: a decompression bomb as far as a reader can tell."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(bytes(width + 1))) + chunk(b"IEND", b""))


@pytest.mark.parametrize("args,status,fragment", [
    (["scale", "{d}/missing.png", "{out}", "-f", "2"], 1, "no such file"),
    (["scale", "{d}/folder", "{out}", "-f", "2"], 1, "is a directory"),
    (["scale", "{d}/empty.png", "{out}", "-f", "2"], 1, "empty file"),
    (["scale", "{d}/truncated.png", "{out}", "-f", "2"], 1, "truncated"),
    (["scale", "{d}/corrupt.png", "{out}", "-f", "2"], 1, "corrupt"),
    (["scale", "{d}/notes.txt", "{out}", "-f", "2"], 1, "not an image"),
    (["scale", "{d}/nan.npy", "{out}", "-f", "2"], 1, "NaN"),
    (["scale", "{d}/objects.npy", "{out}", "-f", "2"], 1, "numbers"),
    (["scale", "{d}/wrong.npy", "{out}", "-f", "2"], 1, "H x W x C"),
    (["scale", "{d}/seven.npy", "{out}", "-f", "2"], 1, "only .npy output can hold"),
    (["scale", "{photo}", "{d}/result.xyz", "-f", "2"], 1, "unknown image suffix"),
    (["scale", "{photo}", "{d}/result", "-f", "2"], 1, "no file suffix"),
    (["scale", "{photo}", "{out}", "-f", "2", "--format", "gif9"], 2, "unknown format"),
    (["scale", "{photo}", "{d}/wide.webp", "--size", "20000x"], 1, "at most 16383"),
    (["scale", "{photo}", "{out}", "-f", "1_0"], 2, "not a number"),
    (["scale", "{photo}", "{out}", "-f", "0"], 2, "positive"),
    (["scale", "{photo}", "{out}", "-f", "-2"], 2, "positive"),
    (["scale", "{photo}", "{out}", "-f", "nan"], 2, "positive"),
    (["scale", "{photo}", "{out}", "-f", "inf"], 2, "positive"),
    (["scale", "{photo}", "{out}", "-f", "two"], 2, "not a number"),
    (["scale", "{photo}", "{out}", "-f", "1000"], 1, "over the limit"),
    (["scale", "{photo}", "{out}", "-f", "1e308"], 1, "longer than"),
    (["scale", "{photo}", "{out}", "--size", "99999999999999999999x"], 1, "longer than"),
    (["scale", "{d}/bomb.png", "{out}", "-f", "2"], 1, "decompression bomb"),
    (["scale", "{photo}", "{out}", "-f", "0.0001"], 1, "side of 0"),
    (["scale", "{photo}", "{out}", "--size", "0x10"], 2, "side of 0"),
    (["scale", "{photo}", "{out}", "--size", "axb"], 2, "WxH"),
    (["scale", "{photo}", "{out}"], 2, "exactly one"),
    (["scale", "{photo}", "{out}", "-f", "2", "--size", "10x10"], 2, "exactly one"),
    (["scale", "{photo}", "{out}", "-f", "2", "--max-pixels", "100000"], 1, "over the limit"),
    (["scale", "{photo}", "{out}", "-f", "2", "--max-pixels", "1000"], 1, "decompression bomb"),
    (["scale", "{photo}", "{out}", "-f", "2", "--method", "sinc"], 2, "method"),
    (["scale", "{photo}", "{d}/no/such/folder/out.png", "-f", "2"], 1, "does not exist"),
    (["scale", "{photo}", "{d}/a_file/out.png", "-f", "2"], 1, "cannot write"),
    (["scale", "{photo}", "{d}/folder", "-f", "2", "--format", "png"], 1, "is a directory"),
    (["scale", "{photo}", "{photo}", "-f", "2"], 1, "overwrite the input"),
])
def test_bad_input_gives_one_line_and_no_output(files, capsys, args, status, fragment):
    filled = [a.format(d=files, out=files / "result.png", photo=PHOTO) for a in args]
    bad_input_case(files, capsys, filled, status, fragment)


def test_an_error_keeps_the_existing_output(tmp_path, capsys):
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert upconv_cli("scale", tmp_path / "bad.png", out, "-f", "2", capsys=capsys)[0] == 1
    assert out.read_bytes() == b"keep me"


def test_debug_shows_a_traceback(tmp_path, capsys):
    status, err = upconv_cli("--debug", "scale", tmp_path / "nope.png", tmp_path / "o.png",
                             "-f", "2", capsys=capsys)
    assert status == 1 and "Traceback" in err


def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    """SIGTERM mid-batch: exit 143, a one-line message, whole outputs only, no temporary files.

    The signal is sent once the first output exists (an event, not a delay); the batch has
    many more files to go.
    """
    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(40):
        shutil.copy(SAMPLES / "coffee.png", folder / f"c{index:02d}.png")
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "upconv", "scale", str(folder), "-o",
                                str(out), "-f", "3", "--jobs", "1", "--quiet"],
                               stderr=subprocess.PIPE, text=True)
    while process.poll() is None and not (out.exists() and any(out.glob("*.png"))):
        time.sleep(0.01)  # polling for the event; the outcome does not depend on timing
    process.send_signal(signal.SIGTERM)
    err = process.communicate(timeout=120)[1]
    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1] == "upconv: error: terminated"
    assert not list(out.glob(".*.part"))
    outputs = sorted(out.glob("*.png"))
    assert 1 <= len(outputs) < 40
    expected = load_image(str(outputs[0])).samples.shape
    assert all(load_image(str(path)).samples.shape == expected for path in outputs)


def test_library_warnings_become_one_upconv_line_each(tmp_path, capsys, monkeypatch):
    import warnings

    import upconv.pipeline

    real = upconv.pipeline.load_image

    def warning_loader(*args, **kwargs):
        warnings.warn("Corrupt EXIF data.  Expecting to read 12 bytes but only got 2.",
                      UserWarning, stacklevel=1)
        warnings.warn("Corrupt EXIF data.  Expecting to read 12 bytes but only got 2.",
                      UserWarning, stacklevel=1)
        return real(*args, **kwargs)

    monkeypatch.setattr(upconv.pipeline, "load_image", warning_loader)
    status, err = upconv_cli("scale", PHOTO, tmp_path / "o.png", "-f", "2", "--quiet",
                             capsys=capsys)
    assert status == 0
    assert err == ("upconv: warning: Corrupt EXIF data. Expecting to read 12 bytes but only "
                   "got 2.\n")
