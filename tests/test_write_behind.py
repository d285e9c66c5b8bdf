"""Big positioned writes are written behind (upconv.fileio.write_at): the same bytes as a
plain write, each piece's write-back started, waited for and dropped from the page cache,
and plain writes where the platform or file system cannot do that."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import numpy as np
import pytest

from upconv import fileio
from upconv.errors import FileAccessError
from upconv.npy import NpyFile, create_npy

PIECE = 3 * 4096 + 5  # not a whole number of pages: ranges need not be page-aligned


@pytest.fixture
def small_pieces(monkeypatch):
    """Pieces of a few pages, so that small test data is written behind; none on the way."""
    monkeypatch.setattr(fileio, "WRITE_BEHIND_PIECE", PIECE)
    monkeypatch.setattr(fileio, "_on_the_way", type(fileio._on_the_way)())
    monkeypatch.setattr(fileio, "_on_the_way_bytes", 0)


class Recorder:
    """Wraps the syncer (the real ``sync_file_range``, where there is one) and records
    each call; ``answer`` replaces the real call's result when given."""

    def __init__(self, real, answer=None):
        self.real, self.answer, self.calls, self.files = real, answer, [], []

    def __call__(self, fd, offset, length, flags):
        self.calls.append((offset, length, flags))
        if os.path.isdir("/proc/self/fd"):
            self.files.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        if self.answer is not None:
            return self.answer
        return self.real(fd, offset, length, flags) if self.real is not None else 0


@pytest.fixture
def recorder(monkeypatch, small_pieces):
    recording = Recorder(fileio._sync_file_range())
    monkeypatch.setattr(fileio, "_sync_file_range", lambda: recording)
    dropped = []
    real_fadvise = getattr(os, "posix_fadvise", None)

    def fadvise(fd, offset, length, advice):
        dropped.append((offset, length, advice))
        if real_fadvise is not None:
            real_fadvise(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", fadvise, raising=False)
    recording.dropped = dropped
    return recording


def write_and_read(path, data: bytes, position: int, before: bytes, later=None) -> bytes:
    path.write_bytes(before)
    fd = os.open(path, os.O_RDWR)
    try:
        fileio.write_at(fd, data, position, later=later)
    finally:
        os.close(fd)
    return path.read_bytes()


def expected(before: bytes, data: bytes, position: int) -> bytes:
    result = bytearray(before)
    if len(result) < position + len(data):
        result += bytes(position + len(data) - len(result))
    result[position:position + len(data)] = data
    return bytes(result)


@pytest.mark.parametrize("length", [0, 1, PIECE - 1, PIECE, PIECE + 1, 5 * PIECE + 7])
@pytest.mark.parametrize("position", [0, 100, 3 * 4096])
@pytest.mark.parametrize("later", [False, True])
def test_the_bytes_are_those_of_a_plain_write(tmp_path, rng, recorder, monkeypatch, length,
                                              position, later):
    monkeypatch.setattr(fileio, "WRITE_BEHIND_LAG", 2 * PIECE)
    data = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    before = rng.integers(0, 256, 7 * PIECE, dtype=np.uint8).tobytes()
    path = tmp_path / "f"
    assert write_and_read(path, data, position, before, str(path) if later else None
                          ) == expected(before, data, position)


def test_each_piece_is_started_then_waited_for_and_dropped(tmp_path, rng, recorder):
    """Every piece's write-back is started as it is written, and waited for and dropped
    once the next is started; the last is waited for before the call returns."""
    length, position = 4 * PIECE + 9, 100
    data = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    write_and_read(tmp_path / "f", data, position, b"")
    pieces = [(position + start, min(PIECE, length - start))
              for start in range(0, length, PIECE)]
    started = [(o, n) for o, n, flags in recorder.calls if flags == 2]
    waited = [(o, n) for o, n, flags in recorder.calls if flags == 1 | 2 | 4]
    assert started == pieces and waited == pieces
    assert [(o, n) for o, n, _ in recorder.dropped] == pieces
    assert {advice for _, _, advice in recorder.dropped} == {os.POSIX_FADV_DONTNEED}
    # each piece is waited for only after the next one is started
    order = [(flags, o) for o, n, flags in recorder.calls]
    for first, second in zip(pieces, pieces[1:], strict=False):
        assert order.index((2, second[0])) < order.index((7, first[0]))


def test_a_small_write_is_plain(tmp_path, rng, recorder):
    data = rng.integers(0, 256, PIECE - 1, dtype=np.uint8).tobytes()
    assert write_and_read(tmp_path / "f", data, 0, b"") == data
    assert recorder.calls == [] and recorder.dropped == []


@pytest.mark.parametrize("failure", [errno.EINVAL, errno.ESPIPE, errno.ENOSYS,
                                     errno.EOPNOTSUPP])
def test_a_file_system_without_it_gets_plain_writes(tmp_path, rng, monkeypatch, small_pieces,
                                                    failure):
    recording = Recorder(None, answer=failure)
    monkeypatch.setattr(fileio, "_sync_file_range", lambda: recording)
    data = rng.integers(0, 256, 4 * PIECE, dtype=np.uint8).tobytes()
    assert write_and_read(tmp_path / "f", data, 5, b"x" * 9) == expected(b"x" * 9, data, 5)
    assert len(recording.calls) == 1  # asked once, then plain writes


def test_a_platform_without_it_gets_plain_writes(tmp_path, rng, monkeypatch, small_pieces):
    monkeypatch.setattr(fileio, "_sync_file_range", lambda: None)
    data = rng.integers(0, 256, 4 * PIECE, dtype=np.uint8).tobytes()
    assert write_and_read(tmp_path / "f", data, 0, b"") == data


def test_an_io_error_writing_back_is_a_write_error(tmp_path, monkeypatch, small_pieces):
    """An error found while writing back (EIO) fails the write: for a streamed .npy, the
    one-line error naming the output."""
    monkeypatch.setattr(fileio, "_sync_file_range", lambda: Recorder(None, answer=errno.EIO))
    with pytest.raises(OSError) as caught:
        write_and_read(tmp_path / "f", bytes(2 * PIECE), 0, b"")
    assert caught.value.errno == errno.EIO
    target = create_npy(str(tmp_path / "out.npy"), (64, 64, 3), np.float32)
    try:
        with pytest.raises(FileAccessError, match=r"out\.npy: cannot write \(Input/output"):
            target.write_rows(0, np.zeros((64, 64, 3), np.float32))
    finally:
        fileio.discard(target.path)


def test_streamed_npy_bands_are_written_behind(tmp_path, rng, lagging):
    recorder = lagging
    target = create_npy(str(tmp_path / "out.npy"), (200, 33, 3), np.float32)
    values = rng.random((200, 33, 3)).astype(np.float32)
    for first in range(0, 200, 70):
        target.write_rows(first, values[first:first + 70])
    fileio.commit(target.path, str(tmp_path / "out.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), values)
    assert {flags for _, _, flags in recorder.calls} == {2, 7}
    assert isinstance(NpyFile.open(str(tmp_path / "out.npy")), NpyFile)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux")
def test_linux_has_sync_file_range():
    """On Linux (CI's platform) the write-behind is really in use, not the fallback."""
    assert fileio._sync_file_range() is not None


@pytest.fixture
def lagging(monkeypatch, recorder):
    """A lag of 3 pieces."""
    monkeypatch.setattr(fileio, "WRITE_BEHIND_LAG", 3 * PIECE)
    return recorder


def test_with_later_the_last_pieces_are_left_on_their_way(tmp_path, rng, lagging):
    """With ``later``, a call returns once its pieces are handed to the disk; the oldest
    are waited for (reopened by their later path) only when more than the lag are on
    their way, and a file renamed away since is passed over."""
    waits = lagging.calls

    def write(name, pieces):
        data = rng.integers(0, 256, pieces * PIECE, dtype=np.uint8).tobytes()
        temporary, final = tmp_path / f".{name}.part", tmp_path / name
        write_and_read(temporary, data, 0, b"", later=str(final))
        temporary.rename(final)
        return data

    first = write("a", 2)
    assert [flags for _, _, flags in waits] == [2, 2]  # started, none waited for
    assert fileio._on_the_way_bytes == 2 * PIECE
    second = write("b", 2)  # 4 pieces on their way: a's first is waited for, by its path
    waited = [(file, offset) for (offset, _, flags), file in zip(waits, lagging.files,
                                                                 strict=True) if flags == 7]
    assert waited == [("a", 0)]
    assert [(o, n) for o, n, _ in lagging.dropped] == [(0, PIECE)]
    (tmp_path / "a").rename(tmp_path / "gone")
    write("c", 2)  # a's second piece: renamed away, passed over; then b's first
    waited = [(file, offset) for (offset, _, flags), file in zip(waits, lagging.files,
                                                                 strict=True) if flags == 7]
    assert waited == [("a", 0), ("b", 0)]
    assert fileio._on_the_way_bytes == 3 * PIECE
    assert (tmp_path / "gone").read_bytes() == first and (tmp_path / "b").read_bytes() == second


def test_a_long_call_waits_for_its_own_pieces_beyond_the_lag(tmp_path, rng, lagging):
    data = rng.integers(0, 256, 6 * PIECE, dtype=np.uint8).tobytes()
    path = tmp_path / "f"
    assert write_and_read(path, data, 0, b"", later=str(path)) == data
    assert [o for o, _, flags in lagging.calls if flags == 7] == [0, PIECE, 2 * PIECE]
    assert fileio._on_the_way_bytes == 3 * PIECE


def test_allocate_space_fails_before_writing_when_there_is_no_room(tmp_path):
    """A file-size limit below the request (as a disk too full): an OSError, nothing
    allocated. (In a child process: the limit is the process's.)"""
    script = (
        "import errno, os, resource, sys\n"
        "from upconv import fileio\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))\n"
        f"fd = os.open({str(tmp_path / 'big')!r}, os.O_WRONLY | os.O_CREAT)\n"
        "if fileio._fallocate() is None:\n"
        "    sys.exit('no fallocate here')\n"
        "try:\n"
        "    fileio.allocate_space(fd, 8 << 20)\n"
        "except OSError as exc:\n"
        "    print(errno.errorcode[exc.errno], os.fstat(fd).st_size)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == ["EFBIG", "0"], done.stdout + done.stderr


def test_allocate_space_does_nothing_where_the_file_system_cannot(tmp_path, monkeypatch):
    monkeypatch.setattr(fileio, "_fallocate", lambda: lambda *args: -1)
    monkeypatch.setattr(fileio.ctypes, "get_errno", lambda: errno.EOPNOTSUPP)
    with open(tmp_path / "file", "wb") as handle:
        assert fileio.allocate_space(handle.fileno(), 1 << 20) is False
        assert os.fstat(handle.fileno()).st_size == 0


@pytest.mark.parametrize("short", [False, True])
@pytest.mark.parametrize("unsupported", [False, True])
def test_pieces_written_one_after_another_are_the_bytes_of_one_write(
        tmp_path, rng, recorder, monkeypatch, short, unsupported):
    """WriteBehind: lists of pieces (rows of a band) and single buffers, written one after
    another, give the bytes of one plain write, each PIECE handed to the disk as it
    fills; a short ``pwritev`` (which may write less than asked) is finished piece by
    piece, and a file system without ``sync_file_range`` gets plain writes."""
    if unsupported:
        recorder.answer = errno.EOPNOTSUPP
    if short:
        real_pwritev = os.pwritev

        def pwritev(fd, buffers, offset):  # at most half, cut inside a piece
            total = sum(len(memoryview(b)) for b in buffers)
            cut = total // 2 + 1
            views, left = [], cut
            for buffer in buffers:
                view = memoryview(buffer)[:left]
                views.append(view)
                left -= len(view)
                if not left:
                    break
            return real_pwritev(fd, views, offset)

        monkeypatch.setattr(os, "pwritev", pwritev)
    data = rng.integers(0, 256, 6 * PIECE + 11, dtype=np.uint8).tobytes()
    rows = [data[start:start + 997] for start in range(0, 4 * PIECE, 997)]
    path = tmp_path / "f"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        writer = fileio.WriteBehind(fd, 3)
        writer.write(rows)
        writer.write(data[sum(map(len, rows)):])
        writer.finish()
    finally:
        os.close(fd)
    assert path.read_bytes() == bytes(3) + data
    started = [length for _, length, flags in recorder.calls if flags == 2]
    if unsupported:
        assert len(recorder.calls) == 1  # asked once, then plain writes
    else:
        assert sum(started) == len(data) and max(started) == PIECE
