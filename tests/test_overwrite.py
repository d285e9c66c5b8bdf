"""upconv never replaces an existing file unless asked (-y/--overwrite), on every command."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import SAMPLES
from PIL import Image

from upconv.cli import run

PHOTO = SAMPLES / "camera.png"


@pytest.fixture
def two_photos(tmp_path):
    for name in ("a.png", "b.png"):
        shutil.copy(PHOTO, tmp_path / name)
    return tmp_path


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_glob_of_two_images_does_not_replace_the_second(two_photos, capsys):
    """`upconv scale *.png -f 2` in a folder of two images: refused, nothing touched."""
    before = snapshot(two_photos)
    status = run(["scale", str(two_photos / "a.png"), str(two_photos / "b.png"), "-f", "2"])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1
    assert "b.png: exists" in err and "-y/--overwrite" in err and "-o DIR" in err
    assert snapshot(two_photos) == before


def test_overwrite_replaces_and_y_is_its_short_form(two_photos):
    for flag in ("--overwrite", "-y"):
        assert run(["scale", str(two_photos / "a.png"), str(two_photos / "b.png"), "-f", "2",
                    "--quiet", flag]) == 0
        assert (two_photos / "b.png").read_bytes() != PHOTO.read_bytes()


def write_cases(folder):
    """(arguments, the existing file each would replace) for every command that writes."""
    low = folder / "low.png"
    return [
        (["scale", str(PHOTO), str(folder / "o.png"), "-f", "2"], "o.png"),
        (["scale", str(PHOTO), str(folder / "o2.png"), "-f", "2", "--report",
          str(folder / "r.json")], "r.json"),
        (["fit", "--degrade", "area", str(PHOTO), "--size", "4", "-o", str(folder / "k.json")],
         "k.json"),
        (["degrade", str(PHOTO), str(low), "-f", "2"], "low.png"),
        (["report", str(PHOTO), "--map", str(folder / "m.png")], "m.png"),
        (["report", str(PHOTO), "--spectrum", str(folder / "s.png")], "s.png"),
        (["kernel", "matrix", "bilinear", "--input-size", "4x4", "--out",
          str(folder / "C.npy")], "C.npy"),
        (["kernel", "matrix", "bilinear", "--input-size", "4x4", "--out",
          str(folder / "D.npy")], "D_T.npy"),
    ]


@pytest.mark.parametrize("case", range(8))
def test_every_command_refuses_to_replace_a_file(tmp_path, capsys, case):
    args, existing = write_cases(tmp_path)[case]
    (tmp_path / existing).write_bytes(b"keep me")
    before = snapshot(tmp_path)
    assert run(args) == 1
    err = capsys.readouterr().err
    assert f"{existing}: exists" in err and "--overwrite" in err
    assert snapshot(tmp_path) == before  # nothing written, not even the other outputs
    assert run(args + ["--overwrite"]) == 0
    assert (tmp_path / existing).read_bytes() != b"keep me"


def test_standard_output_and_devices_are_not_files_to_protect(tmp_path, capsys):
    assert run(["scale", str(PHOTO), "/dev/null", "-f", "2", "--format", "png",
                "--quiet"]) == 0
    assert run(["degrade", str(PHOTO), "/dev/null", "-f", "2", "--format", "png"]) == 0


def test_a_batch_refuses_to_replace_outputs_unless_asked(two_photos, capsys):
    out = two_photos / "out"
    assert run(["scale", str(two_photos / "a.png"), str(two_photos / "b.png"), "-o", str(out),
                "-f", "2", "--quiet", "--jobs", "1"]) == 0
    first = snapshot(out)
    (out / "a_x2.png").write_bytes(b"edited by hand")
    capsys.readouterr()
    args = ["scale", str(two_photos / "a.png"), str(two_photos / "b.png"), "-o", str(out),
            "-f", "2", "--quiet", "--jobs", "1"]
    assert run(args) == 1
    err = capsys.readouterr().err
    assert "a_x2.png: exists (2 of the outputs do)" in err and "--skip-existing" in err
    assert (out / "a_x2.png").read_bytes() == b"edited by hand"
    assert run(args + ["--skip-existing"]) == 0
    assert (out / "a_x2.png").read_bytes() == b"edited by hand"
    assert run(args + ["-y"]) == 0
    assert snapshot(out) == first


def test_a_batch_report_file_is_protected_unless_resuming(two_photos, capsys):
    report = two_photos / "rep.jsonl"
    report.write_text("earlier lines\n")
    args = ["scale", str(two_photos / "a.png"), "-o", str(two_photos / "out"), "-f", "2",
            "--quiet", "--report", str(report)]
    assert run(args) == 1 and "rep.jsonl: exists" in capsys.readouterr().err
    assert not (two_photos / "out").exists()
    assert run(args + ["--skip-existing"]) == 0  # resuming appends to the report
    lines = report.read_text().splitlines()
    assert lines[0] == "earlier lines" and len(lines) == 2


def test_the_library_api_is_unchanged(tmp_path):
    """Python callers replace files as numpy and Pillow do: the rule is the command line's."""
    from upconv.images import Picture, save_image

    path = tmp_path / "x.png"
    path.write_bytes(b"old")
    save_image(Picture(np.zeros((2, 2, 1), np.uint8)), str(path), "png")
    assert path.read_bytes() != b"old"


def test_no_output_may_be_an_input_even_with_overwrite(two_photos, capsys):
    """--report, --map and --spectrum are checked against the inputs, as OUTPUT is."""
    a, b = str(two_photos / "a.png"), str(two_photos / "b.png")
    npy = two_photos / "x.npy"  # an input a kernel file could be written over (.npy)
    np.save(npy, np.random.default_rng(0).random((32, 32)))
    before = snapshot(two_photos)
    for args in (["scale", a, str(two_photos / "c.png"), "-f", "2", "--report", a],
                 ["report", a, "--map", a], ["report", a, "--spectrum", a],
                 ["report", a, "--reference", b, "--map", b],
                 ["scale", a, "-o", str(two_photos / "out"), "-f", "2", "--report", a],
                 ["fit", "--degrade", "area", str(npy), "--size", "4", "-o", str(npy)]):
        assert run([*args, "-y"]) == 1, args
        assert "overwrite the input" in capsys.readouterr().err
    assert snapshot(two_photos) == before


def test_a_run_that_would_fail_later_writes_nothing(two_photos, capsys):
    """Every destination is checked before the image is computed or written."""
    keep = two_photos / "keep.png"
    keep.write_bytes(b"keep me")
    assert run(["scale", str(two_photos / "a.png"), str(keep), "-f", "2", "-y", "--report",
                str(two_photos / "nodir" / "r.json")]) == 1
    assert "folder" in capsys.readouterr().err and keep.read_bytes() == b"keep me"
    assert run(["scale", str(two_photos / "a.png"), str(two_photos / "same.png"), "-f", "2",
                "--report", str(two_photos / "same.png")]) == 1
    assert "are the same file" in capsys.readouterr().err
    assert not (two_photos / "same.png").exists()


def test_outputs_of_one_command_are_committed_together(tmp_path, monkeypatch, capsys):
    """A failure on the last output leaves none of the command's outputs (nor temporaries)."""
    import upconv.cli.report as report_cli
    from upconv.cli import run
    from upconv.errors import FileAccessError

    image = tmp_path / "img.png"
    values = (np.indices((64, 64)).sum(axis=0) % 2 * 40 + 100).astype(np.uint8)
    Image.fromarray(values).save(image)
    real = report_cli.write_output
    calls = []

    def failing_on_the_third(path, data, what="image"):
        calls.append(path)
        if len(calls) == 3:
            raise FileAccessError(f"{path}: cannot write (No space left on device)")
        real(path, data, what)

    monkeypatch.setattr(report_cli, "write_output", failing_on_the_third)
    paths = [tmp_path / "m.png", tmp_path / "s.png", tmp_path / "r.html"]
    assert run(["report", str(image), "-f", "2", "--map", str(paths[0]), "--spectrum",
                str(paths[1]), "--html", str(paths[2])]) == 1
    assert len(calls) == 3 and not any(p.exists() for p in paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png"]
    monkeypatch.setattr(report_cli, "write_output", real)
    assert run(["report", str(image), "-f", "2", "--map", str(paths[0]), "--spectrum",
                str(paths[1]), "--html", str(paths[2])]) == 0
    assert all(p.is_file() for p in paths)
