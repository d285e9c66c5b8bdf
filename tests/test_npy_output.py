"""Where a streamed ``.npy`` goes: devices, FIFOs and stdout written into; a full disk.

A big ``.npy`` into ``.npy`` is streamed band by band (``--tile N`` forces it
for a small one). These tests check that it treats its output exactly as the
in-memory path does (same bytes, same targets, same errors), with the
in-memory result as the reference, and that a disk too small for it is a
one-line error before any work.
"""

from __future__ import annotations

import errno
import io
import os
import pty
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import FifoReader, limited_run

import upconv.fileio
import upconv.pipeline
from upconv.cli import run

UPCONV = [sys.executable, "-m", "upconv"]
#: Forces the streamed path: tiles of 16 output rows (5 bands for 40 input rows at x2).
STREAM = ["--tile", "16"]


@pytest.fixture
def source(tmp_path, rng) -> Path:
    path = tmp_path / "in.npy"
    np.save(path, rng.random((40, 36, 3)).astype(np.float32))
    return path


@pytest.fixture
def streamed_only(monkeypatch):
    """Call it before a job that must stream: loading an input whole then fails the test."""
    def whole_load(*args, **kwargs):
        raise AssertionError("the input was loaded whole: the job was not streamed")

    return lambda: monkeypatch.setattr(upconv.pipeline, "load_image", whole_load)


def reference(tmp_path: Path, source: Path, *extra: str) -> bytes:
    """The in-memory path's output file: the whole array upsampled at once."""
    out = tmp_path / "reference.npy"
    assert run(["scale", str(source), str(out), "-f", "2", "-m", "bilinear", "--quiet",
                "-y", *extra]) == 0
    return out.read_bytes()


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------ written into, in order

@pytest.mark.parametrize("shape", [(40, 36), (40, 36, 3)])
def test_streamed_npy_into_a_fifo_sends_the_in_memory_bytes(tmp_path, rng, shape,
                                                            streamed_only, capsys):
    np.save(tmp_path / "in.npy", rng.random(shape).astype(np.float32))
    expected = reference(tmp_path, tmp_path / "in.npy")
    streamed_only()
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    status = run(["scale", str(tmp_path / "in.npy"), str(fifo), "-f", "2", "-m", "bilinear",
                  *STREAM])
    received = reader.result()
    assert status == 0, capsys.readouterr().err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # written into, not replaced by a file
    np.testing.assert_array_equal(np.load(io.BytesIO(received)),
                                  np.load(io.BytesIO(expected)))
    assert received == expected  # header included: the same file either way
    assert "measured on the middle tile" in capsys.readouterr().err


def test_streamed_npy_to_stdout_sends_the_in_memory_bytes(tmp_path, source, streamed_only,
                                                          capfdbinary, monkeypatch):
    expected = reference(tmp_path, source)
    streamed_only()
    monkeypatch.chdir(tmp_path)  # "-" is standard output, never a file named "-" here
    capfdbinary.readouterr()
    assert run(["scale", str(source), "-", "-f", "2", "-m", "bilinear", "--format", "npy",
                "--quiet", *STREAM]) == 0
    assert capfdbinary.readouterr().out == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy", "reference.npy"]


def test_streamed_npy_to_stdout_in_a_real_pipe(tmp_path, source):
    expected = reference(tmp_path, source)
    done = subprocess.run(UPCONV + ["scale", str(source), "-", "-f", "2", "-m", "bilinear",
                                    "--format", "npy", "--quiet", *STREAM],
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == expected


def device_targets(tmp_path: Path) -> list[tuple[str, Path]]:
    """Character devices to write into: a private null device, a link to /dev/null and,
    unless root (where a regression would replace the machine's), /dev/null itself."""
    targets = [("link", tmp_path / "null.npy")]
    os.symlink("/dev/null", targets[0][1])
    try:
        os.mknod(tmp_path / "private_null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        targets.append(("node", tmp_path / "private_null"))
    except OSError:
        pass
    if os.geteuid() != 0:
        targets.append(("dev", Path("/dev/null")))
    return targets


def test_streamed_npy_into_dev_null_keeps_the_device(tmp_path, source, streamed_only,
                                                     capsys):
    streamed_only()
    for kind, target in device_targets(tmp_path):
        status = run(["scale", str(source), str(target), "-f", "2", "--format", "npy",
                      "--quiet", *STREAM])
        assert status == 0, (kind, capsys.readouterr().err)
        assert stat.S_ISCHR(os.stat(target).st_mode), kind
    assert not list(tmp_path.glob(".*.part"))


def test_values_are_checked_before_a_pipe_gets_any_byte(tmp_path, capsys):
    array = np.zeros((40, 36), np.float32)
    array[35, 3] = np.nan  # in the last band
    np.save(tmp_path / "in.npy", array)
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    status = run(["scale", str(tmp_path / "in.npy"), str(fifo), "-f", "2", *STREAM])
    received = reader.result()
    assert status == 1 and "NaN" in one_error_line(capsys.readouterr().err)
    assert received == b""  # refused before anything was sent


def test_streamed_npy_is_never_written_to_a_terminal(source):
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(UPCONV + ["scale", str(source), "-", "-f", "2", "--format",
                                        "npy", *STREAM], stdout=follower,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 1 and "terminal" in one_error_line(done.stderr)


# ------------------------------------------------------------------ a full disk

def test_a_disk_too_small_for_a_streamed_npy_is_one_line_and_no_file(tmp_path, source):
    (tmp_path / "out.npy").write_bytes(b"the old output")
    # The output is 80 x 72 x 3 float32 (69 kB): a limit of 30 kB cannot hold it.
    done = limited_run(["scale", "in.npy", "out.npy", "-f", "2", "-y", "--quiet", *STREAM],
                       tmp_path, 30_000)
    assert done.returncode == 1
    assert one_error_line(done.stderr) == "upconv: error: out.npy: cannot write (File too large)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy", "out.npy"]  # no .part
    assert (tmp_path / "out.npy").read_bytes() == b"the old output"


def test_without_preallocation_a_full_disk_is_still_an_error_not_a_crash(tmp_path, source):
    """Where the filesystem cannot preallocate, rows are written with ordinary writes: the
    one that finds the disk full fails cleanly (no SIGBUS, as a store into a map would)."""
    code = ("import errno, os\n"
            "import upconv.fileio\n"
            "def unsupported(fd, offset, length):\n"
            "    raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))\n"
            "upconv.fileio.allocate_space = lambda fd, size: False  # (as on NFS)\n"
            "os.posix_fallocate = unsupported\n"
            "os.ftruncate = lambda fd, size: None  # a sparse file that is not grown yet\n")
    done = limited_run(["scale", "in.npy", "out.npy", "-f", "2", "--quiet", *STREAM],
                       tmp_path, 30_000, code)
    assert done.returncode == 1, done.stderr
    assert one_error_line(done.stderr) == "upconv: error: out.npy: cannot write (File too large)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy"]


def test_lack_of_space_is_found_before_any_band_is_computed(tmp_path, source, monkeypatch,
                                                            capsys):
    def no_space(fd, size):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    computed = []
    real_compute = upconv.pipeline.compute_band
    monkeypatch.setattr(upconv.fileio, "allocate_space", no_space)
    monkeypatch.setattr(upconv.pipeline, "compute_band",
                        lambda *args: computed.append(args) or real_compute(*args))
    status = run(["scale", str(source), str(tmp_path / "out.npy"), "-f", "2", *STREAM])
    assert status == 1
    assert one_error_line(capsys.readouterr().err) == (
        f"upconv: error: {tmp_path / 'out.npy'}: cannot write (No space left on device)")
    assert computed == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy"]


def test_a_write_failing_midway_names_the_file_and_leaves_nothing(tmp_path, source,
                                                                  monkeypatch, capsys):
    writes = []
    real_pwrite = os.pwrite

    def fills_up(fd, data, offset):
        writes.append(offset)
        if len(writes) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", fills_up)
    out = tmp_path / "out.npy"
    assert run(["scale", str(source), str(out), "-f", "2", *STREAM]) == 1
    assert one_error_line(capsys.readouterr().err) == (
        f"upconv: error: {out}: cannot write (No space left on device)")
    assert len(writes) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy"]


def test_without_preallocation_the_result_is_the_same(tmp_path, source, monkeypatch):
    expected = reference(tmp_path, source)

    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(upconv.fileio, "allocate_space", lambda fd, size: False)  # (NFS)
    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    out = tmp_path / "out.npy"
    assert run(["scale", str(source), str(out), "-f", "2", "-m", "bilinear", "--quiet",
                *STREAM]) == 0
    assert out.read_bytes() == expected


def test_streamed_file_output_equals_the_in_memory_bytes(tmp_path, source, streamed_only):
    expected = reference(tmp_path, source)
    streamed_only()
    out = tmp_path / "out.npy"
    assert run(["scale", str(source), str(out), "-f", "2", "-m", "bilinear", "--quiet",
                *STREAM]) == 0
    assert out.read_bytes() == expected


def test_reserve_space_never_writes_a_byte_per_block(tmp_path, monkeypatch):
    """Where the file system cannot allocate (NFS), the file is extended, sparse: glibc's
    posix_fallocate, which would write into every block, is not called on Linux."""
    if upconv.fileio._fallocate() is None:
        pytest.skip("fallocate(2) is Linux's")
    called = []
    monkeypatch.setattr(upconv.fileio, "allocate_space", lambda fd, size: False)
    monkeypatch.setattr(os, "posix_fallocate", lambda *args: called.append(args))
    with open(tmp_path / "f", "wb") as handle:
        assert upconv.fileio.reserve_space(handle.fileno(), 1 << 20) is False
    assert called == [] and os.stat(tmp_path / "f").st_size == 1 << 20


def test_reserve_space_allocates_the_blocks(tmp_path):
    """Preallocated, not sparse: the blocks exist before anything is written."""
    with open(tmp_path / "f", "wb") as handle:
        allocated = upconv.fileio.reserve_space(handle.fileno(), 1 << 20)
    size = os.stat(tmp_path / "f")
    assert size.st_size == 1 << 20
    if allocated:
        assert size.st_blocks * 512 >= 1 << 20


# ------------------------------------------------------------------ lying and cut inputs

def corrupt_inputs(tmp_path: Path, rng) -> dict[str, Path]:
    """An .npy cut short, one with bytes after its array, and headers cut short."""
    buffer = io.BytesIO()
    np.save(buffer, rng.random((40, 36)).astype(np.float32))
    data = buffer.getvalue()
    files = {"short": data[:-100], "long": data + b"\0" * 100, "header": data[:30],
             "magic": data[:6], "claims_more": data.replace(b"(40, 36)", b"(90, 36)")}
    paths = {}
    for name, content in files.items():
        paths[name] = tmp_path / f"{name}.npy"
        paths[name].write_bytes(content)
    return paths


@pytest.mark.parametrize("how", ["whole", "streamed"])
@pytest.mark.parametrize("case, fragment", [
    ("short", "truncated .npy file: its header says 40x36 float32 (5760 bytes of data), "
              "but it holds 5660"),
    ("long", "corrupt .npy file: its header says 40x36 float32 (5760 bytes of data), but "
             "100 more bytes follow"),
    ("claims_more", "truncated .npy file: its header says 90x36 float32"),
    ("header", "corrupt .npy file (EOF: reading array header"),
    ("magic", "corrupt .npy file (EOF: reading magic string"),
])
def test_a_lying_or_cut_npy_is_one_line_naming_it(tmp_path, rng, capsys, how, case,
                                                   fragment):
    path = corrupt_inputs(tmp_path, rng)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    extra = STREAM if how == "streamed" else []
    status = run(["scale", str(path), str(tmp_path / "out.npy"), "-f", "2", *extra])
    line = one_error_line(capsys.readouterr().err)
    assert status == 1
    assert line.startswith(f"upconv: error: {path}: ") and fragment in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_lying_npy_is_refused_from_stdin_too(tmp_path, rng):
    data = corrupt_inputs(tmp_path, rng)["short"].read_bytes()
    done = subprocess.run(UPCONV + ["scale", "-", "-", "-f", "2", "--format", "npy"],
                          input=data, capture_output=True, timeout=120)
    err = done.stderr.decode()
    assert done.returncode == 1 and done.stdout == b""
    assert one_error_line(err).startswith("upconv: error: standard input: truncated .npy")


def test_a_small_fortran_order_npy_is_processed(tmp_path, rng, capsys):
    values = rng.random((20, 12, 3)).astype(np.float32)
    np.save(tmp_path / "f.npy", np.asfortranarray(values))
    np.save(tmp_path / "c.npy", values)
    for extra in ([], STREAM):  # --tile: tiled in memory, since its rows cannot be mapped
        for name in ("f", "c"):
            assert run(["scale", str(tmp_path / f"{name}.npy"), str(tmp_path / f"{name}_up.npy"),
                        "-f", "2", "-m", "bilinear", "-y", "--quiet", *extra]) == 0
        assert capsys.readouterr().err == ""
        np.testing.assert_array_equal(np.load(tmp_path / "f_up.npy"),
                                      np.load(tmp_path / "c_up.npy"))
