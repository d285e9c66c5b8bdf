"""Every write error is one line naming the file: a full device, a full disk, stdout.

Two ways to fill a disk without root: ``/dev/full`` (every write fails with
ENOSPC; a device is written into, reached here through a link named like the
output) and a file-size limit (``RLIMIT_FSIZE``: writes past it fail with
EFBIG, as they would on a full disk, and a regular file is written as usual:
to a temporary file, renamed when whole).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES, limited_run
from PIL import Image

#: (id, arguments, the output that cannot be written, outputs written before it)
CASES = [
    ("scale", ["scale", "a.png", "out.png", "-f", "2", "--quiet"], "out.png", []),
    ("scale npy", ["scale", "in.npy", "out.npy", "-f", "2", "--quiet"], "out.npy", []),
    ("scale streamed npy", ["scale", "in.npy", "out.npy", "-f", "2", "--tile", "16",
                            "--quiet"], "out.npy", []),
    # the image and its report are committed together: neither is written
    ("scale --report", ["scale", "flat.png", "big.png", "-f", "2", "--report", "r.json",
                        "--quiet"], "r.json", []),
    ("batch --report", ["scale", "folder", "-o", "out", "-f", "2", "--jobs", "1", "--quiet",
                        "--report", "r.jsonl"], "r.jsonl", ["out/flat_x2.png"]),
    ("fit -o", ["fit", "low.png", "high.png", "-o", "k.json", "--size", "4"], "k.json", []),
    ("kernel matrix --out", ["kernel", "matrix", "bilinear", "--input-size", "4x4",
                             "--stride", "2", "--out", "C.npy"], "C.npy", []),
    ("report --map", ["report", "high.png", "--factor", "2", "--map", "heat.png"],
     "heat.png", []),
    ("report --spectrum", ["report", "high.png", "--factor", "2", "--spectrum", "spec.png"],
     "spec.png", []),
    ("degrade", ["degrade", "high.png", "low2.png", "-f", "2"], "low2.png", []),
]
IDS = [case[0] for case in CASES]


def make_inputs(folder: Path) -> None:
    """Small inputs for every command; ``flat.png`` compresses to far less than its report."""
    folder.mkdir()
    with Image.open(SAMPLES / "coffee.png") as photo:
        high = photo.convert("RGB").resize((32, 24))
    high.save(folder / "high.png")
    high.resize((16, 12)).save(folder / "low.png")
    high.resize((16, 12)).save(folder / "a.png")
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(folder / "flat.png")
    (folder / "folder").mkdir()
    shutil.copy(folder / "flat.png", folder / "folder" / "flat.png")
    np.save(folder / "in.npy", np.random.default_rng(0).random((40, 36, 3)).astype(np.float32))


def upconv(args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "upconv", *args], cwd=cwd, text=True,
                          stderr=subprocess.PIPE, stdout=kwargs.pop("stdout", subprocess.PIPE),
                          timeout=300, **kwargs)


def assert_one_line(done: subprocess.CompletedProcess, name: str, reason: str) -> None:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [f"upconv: error: {name}: cannot write "
                                                f"({reason})"], done.stderr


def temporaries(folder: Path) -> list[Path]:
    return list(folder.rglob("*.part"))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_full_device_is_one_line_naming_the_output(tmp_path, case):
    _, args, failing, before = case
    folder = tmp_path / "work"
    make_inputs(folder)
    os.symlink("/dev/full", folder / failing)  # written into, as a device is
    done = upconv(args, folder)
    assert_one_line(done, failing, "No space left on device")
    assert os.path.realpath(folder / failing) == "/dev/full"
    assert all((folder / name).is_file() for name in before)
    assert temporaries(folder) == []
    if case[0] == "scale --report":
        assert not (folder / "big.png").exists()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_full_disk_is_one_line_naming_the_output(tmp_path, case):
    _, args, failing, before = case
    # Measure what the run writes, then allow less than the failing output needs (and
    # enough for the outputs written before it).
    measured = tmp_path / "measure"
    make_inputs(measured)
    assert upconv(args, measured).returncode == 0
    needed = (measured / failing).stat().st_size
    earlier = max([(measured / name).stat().st_size for name in before], default=0)
    limit = (earlier + needed) // 2
    assert earlier < limit < needed
    folder = tmp_path / "work"
    make_inputs(folder)
    done = limited_run(args, folder, limit)
    assert_one_line(done, failing, "File too large")
    if failing != "r.jsonl":  # a batch's log is written as images finish, not atomically
        assert not (folder / failing).exists()
    assert all((folder / name).is_file() for name in before)
    assert temporaries(folder) == []


@pytest.mark.parametrize("args", [
    ["kernel", "show", "bilinear", "-f", "2", "--json"],
    ["kernel", "show", "bilinear", "-f", "2"],
    ["report", "high.png", "--json"],
    ["scale", "a.png", "-", "-f", "2", "--format", "png"],
    ["scale", "in.npy", "-", "-f", "2", "--format", "npy", "--tile", "16"],
], ids=["json", "tables", "report json", "image", "streamed npy"])
def test_a_full_standard_output_is_one_line_naming_it(tmp_path, args):
    folder = tmp_path / "work"
    make_inputs(folder)
    with open("/dev/full", "w") as full:
        done = upconv(args, folder, stdout=full)
    assert_one_line(done, "standard output", "No space left on device")
    with open(tmp_path / "stdout", "w") as small:
        done = limited_run(args, folder, 64, stdout=small)
    assert_one_line(done, "standard output", "File too large")
    assert temporaries(folder) == []
