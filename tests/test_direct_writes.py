"""Files written around the page cache (upconv.direct_writes): the same bytes as given,
lent or copied, in any pieces; the file cut to its length; a file system that refuses
the alignment or O_DIRECT itself written through the page cache instead; errors from
the next call; a forked child with a writer of its own."""

from __future__ import annotations

import errno
import multiprocessing
import os
import threading

import numpy as np
import pytest

from upconv import direct_writes
from upconv.direct_writes import ALIGNMENT, PIECE, DirectWriter, open_direct

FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL


def written(path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


@pytest.mark.parametrize("start", [0, 3 * ALIGNMENT, 5])
def test_the_file_holds_the_bytes_given_lent_or_copied(tmp_path, rng, start):
    """Pieces of every size, lent (aligned and not) and copied, over several of the
    writer's own buffers, from a start that is aligned or not: the file is the bytes,
    not a byte longer (its padded last block cut off)."""
    path = tmp_path / "file"
    fd, direct = open_direct(path, FLAGS)
    band = direct_writes.aligned_band(4 * ALIGNMENT * 64)
    band[...] = rng.integers(0, 256, band.size, dtype=np.uint8)
    pieces = [(band[:ALIGNMENT * 64], True),  # aligned and lent: written from where it is
              (rng.bytes(PIECE + 1234), False),  # copied, over two buffers
              (band[ALIGNMENT * 64:ALIGNMENT * 128], True),  # lent, but after odd bytes
              ([rng.bytes(7), rng.bytes(ALIGNMENT)], False)]
    expected = bytearray(b"\0" * start)
    writer = DirectWriter(fd, direct, start)
    try:
        for data, kept in pieces:
            writer.write(data, kept=kept)
            for piece in (data if isinstance(data, list) else [data]):
                expected += bytes(piece)
        writer.finish()
    finally:
        writer.abandon()
        os.close(fd)
    assert written(path) == bytes(expected)
    assert writer.position == len(expected)


def test_aligned_lent_rows_are_not_copied_and_wait_for_their_ticket(tmp_path, rng):
    """Lent, aligned rows are written from the caller's memory (no buffer of the
    writer's), and once wait_for(latest_ticket()) returns they are in the file, so the
    caller may write over them."""
    if not direct_writes._O_DIRECT:
        pytest.skip("no O_DIRECT on this platform")
    path = tmp_path / "file"
    fd, direct = open_direct(path, FLAGS)
    given = []
    writer = DirectWriter(fd, direct)
    real = writer._give
    writer._give = lambda views, position, buffer: (given.append(buffer), real(
        views, position, buffer))[1]
    band = direct_writes.aligned_band(8 * ALIGNMENT)
    band[...] = rng.integers(0, 256, band.size, dtype=np.uint8)
    rows = [band[i * 2 * ALIGNMENT:(i * 2 + 1) * ALIGNMENT] for i in range(4)]  # strided
    writer.write(rows, kept=True)
    direct_writes.wait_for(direct_writes.latest_ticket())
    expected = b"".join(bytes(row) for row in rows)
    band[...] = 0  # (the caller's again)
    writer.finish()
    os.close(fd)
    if direct:
        assert given == [None]
    assert written(path) == expected


def test_a_file_system_that_refuses_the_alignment_gets_the_page_cache(tmp_path, rng,
                                                                       monkeypatch):
    """A write refused with EINVAL (a disk of larger blocks) turns O_DIRECT off for the
    file and is written again; the file is whole."""
    real = os.pwritev
    refused = []

    def pwritev(fd, views, position):
        import fcntl

        if fcntl.fcntl(fd, fcntl.F_GETFL) & direct_writes._O_DIRECT:
            refused.append(fd)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, views, position)

    monkeypatch.setattr(os, "pwritev", pwritev)
    path = tmp_path / "file"
    fd, direct = open_direct(path, FLAGS)
    data = rng.bytes(3 * PIECE // 2)
    writer = DirectWriter(fd, direct)
    writer.write(data)
    writer.finish()
    os.close(fd)
    assert written(path) == data
    assert not writer.direct and bool(refused) == direct


def test_a_file_system_without_o_direct_is_written_through_the_page_cache(tmp_path, rng,
                                                                          monkeypatch):
    """A file system that refuses O_DIRECT (tmpfs before Linux 6.6, ramfs) does so once the
    file is made: the file made with O_EXCL is kept and written through the page cache
    (a chunk file then written behind, as before)."""
    import fcntl

    from upconv import fileio
    from upconv.zarr_local import ChunkFile

    real = fcntl.fcntl

    def refusing(fd, command, argument=0):
        if command == fcntl.F_SETFL and argument & direct_writes._O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, command, argument)

    monkeypatch.setattr(fcntl, "fcntl", refusing)
    fd, direct = open_direct(tmp_path / "file", FLAGS)
    assert not direct
    writer = DirectWriter(fd, direct)
    data = rng.bytes(1000)
    writer.write(data)
    writer.finish()
    os.close(fd)
    assert written(tmp_path / "file") == data
    with pytest.raises(FileExistsError):  # (any other error is the caller's)
        open_direct(tmp_path / "file", FLAGS)
    with ChunkFile(tmp_path / "c" / "0", len(data), direct=True) as chunk:
        assert isinstance(chunk.writer, fileio.WriteBehind)
        chunk.write(data)
        chunk.commit()
    assert written(tmp_path / "c" / "0") == data


def test_an_error_comes_from_the_next_call_and_abandon_waits_quietly(tmp_path, rng,
                                                                     monkeypatch):
    """A full disk met by the writer thread fails the next write or finish, with its
    own errno; abandon waits for the writes given and gives the buffer back, quietly."""
    real = os.pwritev
    monkeypatch.setattr(os, "pwritev", lambda fd, views, position: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    fd, direct = open_direct(tmp_path / "file", FLAGS)
    writer = DirectWriter(fd, direct)
    writer.write(rng.bytes(PIECE))  # (a whole buffer: given to the thread)
    direct_writes.wait_for(direct_writes.latest_ticket())
    with pytest.raises(OSError) as failure:
        writer.write(b"more")
    assert failure.value.errno == errno.ENOSPC
    with pytest.raises(OSError, match="No space"):
        writer.finish()
    monkeypatch.setattr(os, "pwritev", real)
    writer.abandon()
    os.close(fd)
    other, direct = open_direct(tmp_path / "other", FLAGS)  # (the thread writes on)
    writer = DirectWriter(other, direct)
    writer.write(b"fine")
    writer.finish()
    os.close(other)
    assert written(tmp_path / "other") == b"fine"


def test_threads_writing_files_at_once(tmp_path, rng):
    """Task threads share the writer thread: each file gets its own bytes."""
    datas = [rng.bytes(PIECE + 1000 * i) for i in range(4)]
    failures = []

    def write(index):
        try:
            fd, direct = open_direct(tmp_path / str(index), FLAGS)
            writer = DirectWriter(fd, direct)
            view = memoryview(datas[index])
            for start in range(0, len(view), 100_000):
                writer.write(view[start:start + 100_000])
            writer.finish()
            os.close(fd)
        except BaseException as exc:  # (reported below)
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert [written(tmp_path / str(i)) for i in range(4)] == datas


def _write_in_child(path: str) -> None:
    fd, direct = open_direct(path, FLAGS)
    writer = DirectWriter(fd, direct)
    writer.write(b"child" * PIECE)
    writer.finish()
    os.close(fd)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork:DeprecationWarning")
def test_a_forked_child_has_a_writer_thread_of_its_own(tmp_path):
    fd, direct = open_direct(tmp_path / "parent", FLAGS)
    writer = DirectWriter(fd, direct)
    writer.write(b"parent" * PIECE)  # (the parent's thread is running)
    writer.finish()
    os.close(fd)
    child = multiprocessing.get_context("fork").Process(
        target=_write_in_child, args=(str(tmp_path / "child"),))
    child.start()
    child.join(timeout=120)
    assert child.exitcode == 0
    assert written(tmp_path / "child") == b"child" * PIECE


def test_a_lent_piece_that_is_not_aligned_after_an_aligned_one(tmp_path, rng, monkeypatch):
    """Lent pieces are taken as aligned from the first one's address and all lengths; one
    further on that is not (its address) is refused by the kernel (here as a disk that
    asks the alignment refuses it), and the file is then written through the page cache:
    still the bytes given."""
    import fcntl

    real = os.pwritev

    def pwritev(fd, views, position):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & direct_writes._O_DIRECT and any(
                direct_writes._address(view) % ALIGNMENT for view in views):
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(fd, views, position)

    monkeypatch.setattr(os, "pwritev", pwritev)
    band = direct_writes.aligned_band(8 * ALIGNMENT)
    band[...] = rng.integers(0, 256, band.size, dtype=np.uint8)
    pieces = [band[:ALIGNMENT], band[ALIGNMENT + 8:2 * ALIGNMENT + 8]]
    fd, direct = open_direct(tmp_path / "file", FLAGS)
    writer = DirectWriter(fd, direct)
    writer.write(pieces, kept=True)
    writer.finish()
    os.close(fd)
    assert written(tmp_path / "file") == b"".join(bytes(piece) for piece in pieces)
    assert not writer.direct
