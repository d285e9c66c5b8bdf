"""Temporary files that a killed run left behind: named after their writer, removed by the next
run that writes the same output once their writer is gone, and only then."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_images, temporary_files

from upconv import fileio

UPCONV = [sys.executable, "-m", "upconv"]


def dead_pid() -> int:
    """The id of a process that has exited and been reaped (so no process has it now)."""
    for _ in range(10):
        process = subprocess.Popen([sys.executable, "-c", "pass"])
        process.wait()
        try:
            os.kill(process.pid, 0)
        except ProcessLookupError:
            return process.pid
    pytest.skip("process ids are reused too fast here")


def test_temporary_files_are_named_after_their_writer(tmp_path):
    handle = fileio.temporary_beside(str(tmp_path / "out.png"))
    try:
        match = fileio.TEMPORARY_NAME.fullmatch(Path(handle.name).name)
        assert match and match["target"] == "out.png" and int(match["pid"]) == os.getpid()
    finally:
        handle.close()
        fileio.discard(handle.name)
    assert list(tmp_path.iterdir()) == []


def test_the_next_run_removes_temporaries_of_dead_writers_only(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead, live = dead_pid(), os.getpid()
    stale = out / f".one.png.{dead}.abcd1234.part"
    kept = [out / f".one.png.{live}.abcd1234.part",    # its writer runs: maybe still writing
            out / f".other.png.{dead}.abcd1234.part",  # not this run's output
            out / f"one.png.{dead}.abcd1234.part",     # not upconv's name (no leading dot)
            out / f".one.png.x{dead}.abcd1234.part"]   # nor this
    for path in [stale, *kept]:
        path.write_bytes(b"half an image")
    make_images(tmp_path, 1)
    done = subprocess.run(UPCONV + ["scale", str(tmp_path / "p00.png"), str(out / "one.png"),
                                    "-f", "2", "--quiet"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ("upconv: warning: removed 1 temporary file(s) left by an "
                           f"interrupted run: {stale}\n")
    assert sorted(p.name for p in out.iterdir()) == sorted(["one.png"]
                                                           + [p.name for p in kept])


def test_a_batch_removes_stale_temporaries_in_all_its_folders(tmp_path):
    inputs = tmp_path / "in"
    make_images(inputs, 2)
    make_images(inputs / "sub", 1)
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    dead = dead_pid()
    stale = [out / f".p00_x2.png.{dead}.abcd.part", out / "sub" / f".p00_x2.png.{dead}.q_7.part"]
    for path in stale:
        path.write_bytes(b"")
    done = subprocess.run(UPCONV + ["scale", str(inputs), "-o", str(out), "-f", "2", "-r",
                                    "--jobs", "2", "--quiet"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("upconv: warning: removed 2 temporary file(s) left by an "
                                  "interrupted run: ")
    assert done.stderr.count("\n") == 1
    assert temporary_files(out) == [] and len(list(out.rglob("*.png"))) == 3
