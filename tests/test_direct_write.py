"""Big new files written around the page cache (upconv.direct_write): the same bytes as the
buffer, whatever its size, alignment and the order its bytes are said to be ready; written
with O_DIRECT where it is there, and as any other file where it is not; a failed write
leaves no file."""

from __future__ import annotations

import errno
import fcntl
import multiprocessing
import os

import numpy as np
import pytest

from upconv import direct_write
from upconv.direct_write import ALIGNMENT, DirectWrite, aligned_empty, write_file_direct

PIECE = 4 * ALIGNMENT
SIZES = [0, 1, ALIGNMENT - 1, ALIGNMENT, ALIGNMENT + 1, PIECE - 1, PIECE, PIECE + 7,
         3 * PIECE + ALIGNMENT, 5 * PIECE + 1234]



@pytest.fixture
def direct_here(tmp_path) -> bool:
    """Whether the file system under tmp_path takes O_DIRECT (DirectWrite's own test)."""
    probe = tmp_path / "probe"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT)
    try:
        return direct_write._set_direct(fd, True) if hasattr(os, "O_DIRECT") else False
    finally:
        os.close(fd)
        probe.unlink()


@pytest.fixture(autouse=True)
def small_pieces(monkeypatch):
    monkeypatch.setattr(direct_write, "DIRECT_PIECE", PIECE)


@pytest.fixture
def writes(monkeypatch):
    """Every os.pwrite made: (whether its file was open with O_DIRECT, position, length)."""
    made = []
    real = os.pwrite

    def pwrite(fd, data, position):
        direct = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(os, "O_DIRECT", 0))
        made.append((direct, position, len(memoryview(data).cast("B"))))
        return real(fd, data, position)

    monkeypatch.setattr(os, "pwrite", pwrite)
    return made


def source(rng, size: int, aligned: bool) -> np.ndarray:
    data = aligned_empty(size) if aligned else aligned_empty(size + 3)[3:]
    data[...] = rng.integers(0, 256, size, dtype=np.uint8)
    return data


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("size", SIZES)
def test_the_file_is_the_buffer(tmp_path, rng, writes, direct_here, size, aligned):
    """Bytes said ready in uneven steps (the buffer filled meanwhile, as a block's bands
    are): the file is exactly the buffer; where the file system takes O_DIRECT, every
    write of a file of a whole block or more is a direct one, of whole blocks at aligned
    places."""
    data = source(rng, size, aligned)
    final = data.copy()
    data[...] = 0
    path = tmp_path / "out"
    writing = DirectWrite(str(path), data)
    done = 0
    while done < size:
        step = int(rng.integers(1, 2 * PIECE))
        data[done:done + step] = final[done:done + step]
        done = min(size, done + step)
        writing.ready(done)
    writing.finish()
    assert path.read_bytes() == final.tobytes()
    if size >= ALIGNMENT and direct_here:
        assert writes and all(direct and position % ALIGNMENT == 0 and length % ALIGNMENT == 0
                              for direct, position, length in writes)
        assert sum(length for _, _, length in writes) == -(-size // ALIGNMENT) * ALIGNMENT
    else:
        assert not any(direct for direct, _, _ in writes)


@pytest.mark.parametrize("size", [ALIGNMENT, 3 * PIECE + 5])
def test_a_file_system_without_o_direct_gets_an_ordinary_file(tmp_path, rng, monkeypatch,
                                                              writes, size):
    """O_DIRECT refused when it is turned on (EINVAL, as tmpfs before Linux 6.6 does)."""
    real = fcntl.fcntl

    def refusing(fd, command, *args):
        if command == fcntl.F_SETFL and args[0] & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, command, *args)

    monkeypatch.setattr(fcntl, "fcntl", refusing)
    data = source(rng, size, aligned=True)
    write_file_direct(str(tmp_path / "out"), data)
    assert (tmp_path / "out").read_bytes() == data.tobytes()
    assert writes and not any(direct for direct, _, _ in writes)


@pytest.mark.parametrize("refused", [{0, PIECE, 2 * PIECE, 3 * PIECE}, {PIECE}],
                         ids=["every-write", "one-write"])
def test_a_refused_direct_write_is_made_again_without(tmp_path, rng, monkeypatch, writes,
                                                      direct_here, refused):
    """A file system that takes O_DIRECT but refuses the writes (EINVAL), all of them or
    one: the whole file is written again, as any other."""
    real = os.pwrite
    tried = []

    def pwrite(fd, data, position):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(os, "O_DIRECT", 0):
            tried.append(position)
            if position in refused:
                raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, data, position)

    monkeypatch.setattr(os, "pwrite", pwrite)
    data = source(rng, 3 * PIECE + 5, aligned=True)
    write_file_direct(str(tmp_path / "out"), data)
    assert (tmp_path / "out").read_bytes() == data.tobytes()
    assert bool(tried) == direct_here
    assert not writes[-1][0]  # (the last write an ordinary one)


@pytest.mark.parametrize("size", [ALIGNMENT, 3 * PIECE + 5])
def test_a_failed_write_leaves_no_file(tmp_path, rng, monkeypatch, size):
    real = os.pwrite
    failing = min(2 * PIECE, size - 1)  # the write of this byte fails, direct or not

    def pwrite(fd, data, position):
        if position <= failing < position + len(memoryview(data).cast("B")):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, position)

    monkeypatch.setattr(os, "pwrite", pwrite)
    writing = DirectWrite(str(tmp_path / "out"), source(rng, size, aligned=True))
    writing.ready(size)
    with pytest.raises(OSError, match="No space"):
        writing.finish()
    assert os.listdir(tmp_path) == []


def test_a_full_disk_fails_before_any_write(tmp_path, rng, monkeypatch):
    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError, match="No space"):
        DirectWrite(str(tmp_path / "out"), source(rng, 2 * PIECE, aligned=True))
    assert os.listdir(tmp_path) == []


def test_abandon_removes_the_file_and_an_existing_one_is_never_written(tmp_path, rng):
    data = source(rng, 3 * PIECE, aligned=True)
    writing = DirectWrite(str(tmp_path / "out"), data)
    writing.ready(2 * PIECE)
    writing.abandon()
    assert os.listdir(tmp_path) == []
    (tmp_path / "kept").write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        DirectWrite(str(tmp_path / "kept"), data)
    assert (tmp_path / "kept").read_bytes() == b"mine"


def _write_in_child(path: str) -> None:
    write_file_direct(path, np.full(3 * PIECE + 1, 7, np.uint8))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                    reason="no fork here")
def test_a_forked_child_writes_with_threads_of_its_own(tmp_path, rng):
    """The writer threads are made once per process: a child forked after the parent has
    made them (a batch's worker processes) makes its own rather than waiting forever."""
    write_file_direct(str(tmp_path / "parent"), source(rng, 3 * PIECE, aligned=True))
    child = multiprocessing.get_context("fork").Process(
        target=_write_in_child, args=(str(tmp_path / "child"),))
    child.start()
    child.join(120)  # (a generous bound for a hang, which it would otherwise be)
    if child.is_alive():
        child.kill()
        child.join()
    assert child.exitcode == 0
    assert (tmp_path / "child").read_bytes() == b"\x07" * (3 * PIECE + 1)
