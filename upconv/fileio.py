"""Reading whole files and writing them atomically: the one place upconv touches the disk
(with :mod:`upconv.direct_writes`, which writes big Zarr chunk files around the page cache).

Every output upconv writes (images, kernels, reports, heat maps, matrices,
streamed ``.npy`` arrays) goes through :func:`output_writer` (or
:func:`write_output`, its one-shot form): standard output (``-``) and an
existing device, FIFO or socket are written into, in order; anything else is
a file written atomically, to a temporary file beside the target that is
renamed over it only when complete. On any error or Ctrl-C the temporary file
is removed and an existing file is left untouched; a replaced file keeps its
permissions. A streamed ``.npy`` written by bands into a file uses the same
pieces (:func:`temporary_beside`, :func:`reserve_space`, :func:`sync_file`,
:func:`commit`, :func:`discard`). Every write error, a full disk included,
is a one-line :class:`~upconv.errors.FileAccessError` naming the file.

A temporary file is named ``.NAME.PID.XXXXXXXX.part``: hidden, beside NAME,
with the writer's process id. A process killed outright (``kill -9``, a power
cut) cannot remove it; :func:`remove_stale_temporaries` finds such files by
that name when NAME is written next, and removes those whose writer is no
longer running.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO

from .errors import BadInputError, FileAccessError, OutputClosedError

if TYPE_CHECKING:
    from .storage import PartUpload

__all__ = ["is_url", "shown", "url_path", "read_bytes", "standard_stream", "temporary_beside",
           "commit", "finish", "finish_upload", "outputs_together", "discard",
           "abandon_unfinished",
           "remove_stale_temporaries", "TEMPORARY_NAME", "write_error", "reserve_space",
           "allocate_space",
           "sync_file", "written_in_place",
           "output_target", "atomic_output", "output_writer", "write_output", "TextLog",
           "open_text_log"]

#: A function that writes bytes (or any buffer) to an output, in order.
Writer = Callable[[bytes | memoryview], None]

#: A temporary file's name: ``.NAME.PID.XXXXXXXX.part`` (``tempfile`` makes the random part).
TEMPORARY_NAME = re.compile(r"\.(?P<target>.+)\.(?P<pid>[0-9]+)\.[a-z0-9_]+\.part")

#: The temporary files this process has made and not yet committed or discarded, and the
#: lock that makes each change to them (made and listed, renamed and struck off) one step.
_unfinished: set[str] = set()
_unfinished_lock = threading.Lock()


def standard_stream(stream: IO | None, which: str) -> IO:
    """sys.stdin or sys.stdout, or a clear error when the shell closed it (``<&-``)."""
    try:
        if stream is None:
            raise ValueError
        stream.fileno()
    except (ValueError, OSError):
        raise FileAccessError(f"standard {which} is closed") from None
    return stream


def url_path(path: str) -> str:
    """The path part of a URL (without its query, whose parameters may sign it, or its
    fragment), for its name and suffix; anything else as it is.

    Examples
    --------
    >>> url_path("https://host/k/up.npy?X-Amz-Signature=abc"), url_path("k/up.npy")
    ('/k/up.npy', 'k/up.npy')
    """
    if not is_url(path):
        return path
    from urllib.parse import urlsplit

    return urlsplit(path).path


def shown(path: str) -> str:
    """``path`` as messages and reports show it: a URL without the secrets it may carry
    (a signed URL's signature, a password; :func:`upconv.storage.redact`), anything
    else as it is.

    Examples
    --------
    >>> shown("https://user:pa55word@host/a.png?X-Amz-Signature=5ec7e7&size=2")
    'https://user:***@host/a.png?X-Amz-Signature=***&size=2'
    >>> shown("photos/a.png")
    'photos/a.png'
    """
    if not is_url(path):
        return path
    from .storage import redact

    return redact(path)


def is_url(path: str) -> bool:
    """Whether ``path`` is an object-store or web URL (``s3://b/k``, ``gs://``, ``https://``):
    read and written through :mod:`upconv.storage`, which is loaded only for such paths.

    Examples
    --------
    >>> is_url("s3://bucket/a.png"), is_url("photos/a.png"), is_url("-")
    (True, False, False)
    """
    if "://" not in path and "::" not in path:
        return False
    from .storage import is_url as names_an_object

    return names_an_object(path)


def read_bytes(path: str, kind: str = "image", stdin: bool = True) -> bytes:
    """The whole file (or standard input for ``"-"``, or an object for a URL: see
    :func:`is_url`), or a one-line error naming it.

    ``kind`` names what the file should hold, for the messages.

    Examples
    --------
    >>> read_bytes("/no/such/kernel.json", kind="kernel")
    Traceback (most recent call last):
    ...
    upconv.errors.FileAccessError: /no/such/kernel.json: no such kernel file
    """
    article = "an" if kind[0] in "aeiou" else "a"
    if path == "-" and stdin:
        stream = standard_stream(sys.stdin, "input")
        if stream.isatty():
            raise BadInputError(f"-: standard input is a terminal; pipe {article} {kind} "
                                "into it")
        try:
            data = stream.buffer.read()
        except OSError as exc:
            raise FileAccessError(f"cannot read standard input ({exc.strerror or exc})"
                                  ) from None
        name = "standard input"
    elif is_url(path):
        from .storage import read_bytes as read_object

        name = path
        data = read_object(path)
    else:
        name = path
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            raise FileAccessError(f"{path}: no such {kind} file" if kind != "image"
                                  else f"{path}: no such file") from None
        except IsADirectoryError:
            raise FileAccessError(f"{path}: is a directory, not {article} {kind} file"
                                  ) from None
        except PermissionError:
            raise FileAccessError(f"{path}: permission denied") from None
        except OSError as exc:
            raise FileAccessError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not data:
        raise BadInputError(f"{name}: empty file")
    return data


def temporary_beside(path: str, shown: str | None = None) -> IO[bytes]:
    """An open temporary file in ``path``'s folder (``.NAME.PID.XXXXXXXX.part``), for atomic
    writes; :func:`commit` or :func:`discard` it.

    Errors name ``shown`` (the path as the user typed it), else ``path``.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    name = shown or path
    shown_folder = str(Path(name).parent) if shown else str(folder)
    try:
        with _unfinished_lock:
            handle = tempfile.NamedTemporaryFile(dir=folder,
                                                 prefix=f".{target.name}.{os.getpid()}.",
                                                 suffix=".part", delete=False)
            _unfinished.add(handle.name)
    except FileNotFoundError:
        raise FileAccessError(f"{name}: folder {shown_folder!r} does not exist") from None
    except PermissionError:
        raise FileAccessError(f"{name}: folder {shown_folder!r} is not writable") from None
    except OSError as exc:
        raise FileAccessError(f"{name}: cannot write there ({exc.strerror or exc})") from None
    return handle


def commit(temporary: str, path: str, shown: str | None = None) -> None:
    """Rename a finished temporary file over ``path``, keeping the mode a file there had."""
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    try:
        os.chmod(temporary, mode)
        with _unfinished_lock:
            os.replace(temporary, path)
            _unfinished.discard(temporary)
    except OSError as exc:
        raise write_error(shown or path, exc) from None


class _PendingFile:
    """A finished temporary file, renamed over its target when the block commits."""

    def __init__(self, temporary: str, path: str, shown: str | None) -> None:
        self.temporary, self.path, self.shown = temporary, path, shown

    def commit(self) -> None:
        commit(self.temporary, self.path, self.shown)

    def discard(self) -> None:
        discard(self.temporary)

    def undo(self) -> None:
        """A rename cannot be taken back; renames are the block's last, surest steps."""


class _PendingObject:
    """An object to be made when the block commits (:class:`_PendingUpload`,
    :class:`_PendingParts`)."""

    url: str
    replaced = True  # until known: an undo must not remove what was there

    def commit(self) -> None:
        from .storage import exists

        self.replaced = exists(self.url)
        self.make()

    def make(self) -> None:
        raise NotImplementedError

    def discard(self) -> None:
        raise NotImplementedError

    def undo(self) -> None:
        """Remove the object this block uploaded where there was none (an object store has
        no multi-object commit): the block's new outputs are then all absent rather than
        some written. An object it replaced stays replaced: its old contents are gone."""
        from .storage import remove

        if self.replaced:
            return
        try:
            remove(self.url)
        except Exception:  # noqa: BLE001 - the first failure is the one to report
            pass


class _PendingUpload(_PendingObject):
    """An object's whole contents, uploaded (one PUT, or a completed multipart upload)
    when the block commits."""

    def __init__(self, url: str, data: bytes) -> None:
        self.url, self.data = url, data

    def make(self) -> None:
        from .storage import write_bytes

        write_bytes(self.url, self.data)

    def discard(self) -> None:
        self.data = b""


class _PendingParts(_PendingObject):
    """An upload of parts (S3 multipart, Azure blocks) whose parts are all sent, completed
    when the block commits and given up if it does not."""

    def __init__(self, upload: PartUpload, parts: list[dict]) -> None:
        self.url, self.upload, self.parts = upload.url, upload, parts

    def make(self) -> None:
        self.upload.complete(self.parts)

    def discard(self) -> None:
        self.upload.abort()


_deferred: ContextVar[list[_PendingFile | _PendingObject] | None] = ContextVar(
    "upconv_deferred_commits", default=None)


@contextmanager
def outputs_together() -> Iterator[None]:
    """Commit every file written inside this block together, at its end, or none of them.

    Inside the block, :func:`finish` (and so :func:`atomic_output`,
    :func:`write_output` and streamed ``.npy`` outputs) leaves each finished
    temporary file in place; when the block ends normally they are all renamed
    over their targets, and on any error or Ctrl-C they are all removed. A
    command that writes an image and its report, or a map and a spectrum,
    thus writes both or neither. Standard output, devices and FIFOs cannot
    wait: they are written at once.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> try:
    ...     with outputs_together():
    ...         write_output(str(folder / "a.txt"), b"a", "text")
    ...         raise ValueError("the second output failed")
    ... except ValueError:
    ...     pass
    >>> list(folder.iterdir())
    []
    """
    pending: list[_PendingFile | _PendingObject] = []
    token = _deferred.set(pending)
    try:
        yield
    except BaseException:
        for item in pending:
            item.discard()
        raise
    finally:
        _deferred.reset(token)
    # Objects are uploaded first and files renamed last: a failed upload (the likelier
    # failure) then leaves every file as it was, and the objects already sent are removed.
    pending.sort(key=lambda item: isinstance(item, _PendingFile))
    for index, item in enumerate(pending):
        try:
            item.commit()
        except BaseException:
            for done in pending[:index]:
                done.undo()
            for left in pending[index:]:
                left.discard()
            raise


def finish(temporary: str, path: str, shown: str | None = None) -> None:
    """Commit a finished temporary file now, or at the end of :func:`outputs_together`."""
    pending = _deferred.get()
    if pending is None:
        commit(temporary, path, shown)
    else:
        pending.append(_PendingFile(temporary, path, shown))


def _upload(url: str, data: bytes) -> None:
    """Upload a finished object now, or at the end of :func:`outputs_together`."""
    pending = _deferred.get()
    if pending is None:
        from .storage import write_bytes

        write_bytes(url, data)
    else:
        pending.append(_PendingUpload(url, data))


def finish_upload(upload: PartUpload, parts: list[dict]) -> None:
    """Complete an upload of parts whose ``parts`` are all sent (giving it up if that
    fails) now, or at the end of :func:`outputs_together`."""
    pending = _deferred.get()
    if pending is not None:
        pending.append(_PendingParts(upload, parts))
        return
    try:
        upload.complete(parts)
    except BaseException:
        upload.abort()
        raise


def discard(temporary: str) -> None:
    """Remove a temporary file that will not be committed."""
    with _unfinished_lock:
        _unfinished.discard(temporary)
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass


def abandon_unfinished() -> None:
    """Remove every temporary file this process has not committed, and let no other thread
    make or commit one any more: for a process about to end at once (a batch worker told
    to stop). Each output it was writing is then as it was before, or already whole.
    """
    _unfinished_lock.acquire()  # never released: the process ends
    for temporary in _unfinished:
        try:
            os.unlink(temporary)
        except OSError:
            pass
    _unfinished.clear()


def remove_stale_temporaries(targets: Iterable[str]) -> list[str]:
    """Remove the temporary files that killed runs left for ``targets``; the paths removed.

    Only files named exactly as :func:`temporary_beside` names them for one of
    ``targets`` (``.NAME.PID.XXXXXXXX.part`` in NAME's folder) are candidates,
    and only those whose writer (PID, on this machine) is no longer running are
    removed (a folder so named is a Zarr store a killed run was writing). A
    target that is a symbolic link is written through, so its target's folder
    is searched too. Each folder is read once; folders that
    cannot be read are left alone.
    """
    wanted: dict[str, tuple[str, set[str]]] = {}  # real folder: (folder as given, names)
    for target in targets:
        if is_url(target):  # objects have no temporary files
            continue
        for path in (target, os.path.realpath(target)):
            folder, name = os.path.split(path)
            folder = folder or "."
            wanted.setdefault(os.path.realpath(folder), (folder, set()))[1].add(name)
    removed = []
    for folder, names in wanted.values():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            match = TEMPORARY_NAME.fullmatch(entry.name)
            if (match is None or match["target"] not in names
                    or _process_is_running(int(match["pid"]))):
                continue
            try:
                if entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
                    removed.append(entry.path)
                elif entry.is_dir(follow_symlinks=False):  # a Zarr store being written
                    shutil.rmtree(entry.path)
                    removed.append(entry.path)
            except OSError:
                pass
    return removed


def _process_is_running(pid: int) -> bool:
    """Whether a process with this id runs here (or might: when in doubt, True)."""
    if os.name != "posix" or pid <= 0 or pid == os.getpid():
        return True  # os.kill would end the process on Windows; 0 means a process group
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs, as another user
        return True
    return True


def write_error(name: str, exc: OSError) -> FileAccessError:
    """The one-line error for a failed write to ``name`` (a full disk included).

    Examples
    --------
    >>> print(write_error("out.png", OSError(errno.ENOSPC, "No space left on device")))
    out.png: cannot write (No space left on device)
    """
    if isinstance(exc, FileAccessError):
        return exc
    if isinstance(exc, PermissionError):
        return FileAccessError(f"{name}: permission denied")
    return FileAccessError(f"{name}: cannot write ({exc.strerror or exc})")


def reserve_space(fd: int, size: int) -> bool:
    """Make the open file ``size`` bytes long, with its disk space allocated now.

    A disk too full (or a file-size limit too low) for ``size`` bytes is an
    :class:`OSError` here, before any work, rather than at some later write.
    Where the filesystem or platform cannot preallocate, the file is only
    extended (sparse), and False is returned: its blocks are then allocated
    as it is written, so its writes must be ordinary writes, whose errors are
    errors, never stores into a memory map (which die of SIGBUS on a full
    disk). On Linux the space is asked for in one request
    (:func:`allocate_space`), never by glibc's ``posix_fallocate`` fallback,
    which writes a byte into every block of a file system that cannot
    allocate (NFS): for a 12 GB ``.npy``, three million small writes.
    """
    if allocate_space(fd, size):
        return True
    allocate = getattr(os, "posix_fallocate", None)
    if _fallocate() is None and allocate is not None:  # (not Linux)
        try:
            allocate(fd, 0, size)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
    os.ftruncate(fd, size)
    return False


def allocate_space(fd: int, size: int) -> bool:
    """Allocate the disk space of the open file's first ``size`` bytes now, in one
    request to the file system (Linux's ``fallocate(2)``), never emulated; whether it
    was. False where the platform or the file system cannot (then nothing is done:
    glibc's ``posix_fallocate`` would instead write a byte into every block, which on
    a network file system is thousands of small writes per file). A disk too full is
    an :class:`OSError` here, before any byte is written.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryFile() as handle:
    ...     done = allocate_space(handle.fileno(), 1 << 20)
    ...     os.fstat(handle.fileno()).st_size == (1 << 20 if done else 0)
    True
    """
    fallocate = _fallocate()
    if fallocate is None:
        return False
    if fallocate(fd, 0, 0, size) == 0:
        return True
    failure = ctypes.get_errno()
    if failure in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.ENODEV):
        return False
    raise OSError(failure, os.strerror(failure))


@functools.lru_cache(maxsize=1)
def _fallocate() -> Callable[[int, int, int, int], int] | None:
    """Linux's ``fallocate(2)`` through the C library (:func:`upconv.libc.libc_function`:
    ``os`` binds only ``posix_fallocate``); None elsewhere."""
    from .libc import libc_function

    return libc_function("fallocate", (ctypes.c_int, ctypes.c_int, ctypes.c_int64,
                                       ctypes.c_int64))


#: Positioned writes at least this long are written behind (:func:`write_at`), this many
#: bytes at a time.
WRITE_BEHIND_PIECE = 8 << 20
#: How many bytes written behind with ``later`` may still be on their way to the disk,
#: in one process, before the oldest are waited for.
WRITE_BEHIND_LAG = 256 << 20

_SYNC_FILE_RANGE_WAIT_BEFORE, _SYNC_FILE_RANGE_WRITE, _SYNC_FILE_RANGE_WAIT_AFTER = 1, 2, 4


@functools.lru_cache(maxsize=1)
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """Linux's ``sync_file_range(2)`` (:func:`upconv.libc.libc_function`: ``os`` has no
    binding for it), returning 0 or the errno; None where there is none."""
    import ctypes

    from .libc import libc_function

    function = libc_function("sync_file_range", (ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                                                 ctypes.c_uint))
    if function is None or not hasattr(os, "posix_fadvise"):
        return None

    def call(fd: int, offset: int, length: int, flags: int) -> int:
        return 0 if function(fd, offset, length, flags) == 0 else ctypes.get_errno()

    return call


#: At most this many pieces go to one ``preadv(2)`` or ``pwritev(2)`` (Linux's ``IOV_MAX``).
MOST_PIECES = 1024


def vectored_all(call: Callable[[int, list, int], int], fd: int, pieces: list,
                 offset: int) -> None:
    """Every byte of ``pieces`` (bytes-like objects) read or written by ``call``
    (``os.preadv`` or ``os.pwritev``) from ``offset`` in the file on, :data:`MOST_PIECES`
    at a time: a short transfer goes on from where it stopped, and one of no bytes at all
    (a file that ends first) is an :class:`OSError`. The same bytes at the same places
    each time, so a call may be made again from the start.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryFile() as handle:
    ...     vectored_all(os.pwritev, handle.fileno(), [b"spam", b" eggs"], 0)
    ...     got = [bytearray(3), bytearray(6)]
    ...     vectored_all(os.preadv, handle.fileno(), got, 0)
    >>> got
    [bytearray(b'spa'), bytearray(b'm eggs')]
    """
    pieces = [memoryview(piece).cast("B") for piece in pieces]
    done = 0  # pieces read or written whole
    while done < len(pieces):
        count = call(fd, pieces[done:done + MOST_PIECES], offset)
        if not count:
            raise OSError(errno.EIO, "the file ended before the bytes asked for"
                          if call is getattr(os, "preadv", None) else "nothing written")
        offset += count
        while done < len(pieces) and count >= len(pieces[done]):
            count -= len(pieces[done])
            done += 1
        if count:
            pieces[done] = pieces[done][count:]


def _pwrite_all(fd: int, data: memoryview, position: int) -> None:
    while data:
        written = os.pwrite(fd, data, position)
        data, position = data[written:], position + written


_WAIT_FOR_RANGE = (_SYNC_FILE_RANGE_WAIT_BEFORE | _SYNC_FILE_RANGE_WRITE
                   | _SYNC_FILE_RANGE_WAIT_AFTER)
_UNSUPPORTED = (errno.EINVAL, errno.ESPIPE, errno.ENOSYS, errno.EOPNOTSUPP)
#: Ranges written behind with ``later`` and not yet waited for: (path, offset, length).
_on_the_way: deque[tuple[str, int, int]] = deque()
_on_the_way_bytes = 0
_on_the_way_lock = threading.Lock()


def write_at(fd: int, data: bytes | memoryview, position: int = 0,
             later: str | None = None) -> None:
    """Write every byte of ``data`` into the open file at ``position`` (``pwrite``);
    a write of :data:`WRITE_BEHIND_PIECE` (8 MiB) or more is *written behind*.

    Written behind, the bytes go to the disk as they are written, 8 MiB at a
    time, and leave the page cache once they are on it: each piece's write-back
    is started (``sync_file_range(2)``), the piece before it is waited for and
    dropped (``posix_fadvise(POSIX_FADV_DONTNEED)``), and the call returns when
    the last piece is on the disk (PostgreSQL's ``*_flush_after`` settings use
    ``sync_file_range`` so, and GNU dd's ``oflag=nocache`` drops written pages
    so). This is write-back, not durability: the file's metadata is not
    synced, and :func:`sync_file` is still what makes a file safe before it is
    committed. Left to the kernel, a job that writes gigabytes fills the page
    cache with dirty pages until every writer is throttled to the speed of the
    kernel's own write-back, and then with clean pages that must be reclaimed
    before memory is handed out again (``bench/bench_zarr.py``, which writes
    12 GB, went from 21.1 s to 17.8 s on one worker and from 16.3 s to 11.8 s
    on two when its chunks were first written behind, together with the
    allocator change in :mod:`upconv.memory`). What is written is the same; only
    when it reaches the disk changes, so where the platform or the file system
    has no ``sync_file_range`` the write is an ordinary one.

    With ``later``, the path the file will have once the caller is done with
    it (after renaming it), the call returns as soon as its last piece is
    handed to the disk, while the disk writes it and the caller computes what
    it writes next; the bytes still on their way are waited for (reopening
    the file by that path, if it is still there) only when more than
    :data:`WRITE_BEHIND_LAG` (256 MiB) of this process's are (a call's own
    pieces are counted with the process's, so threads writing at the same
    time may each have up to that much on the way). An I/O error found
    waiting for an earlier file's bytes fails the call that waits. Without
    ``later``, the call waits for its own last piece.

    Errors are :class:`OSError`, as from ``os.pwrite`` (an I/O error found while
    writing back included, also one found waiting for an earlier file's bytes).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryFile() as handle:
    ...     write_at(handle.fileno(), b"spam", 2)
    ...     os.pread(handle.fileno(), 6, 0)
    b'\\x00\\x00spam'
    """
    writer = WriteBehind(fd, position, later)
    writer.write(data)
    writer.finish()


class WriteBehind:
    """Bytes written into an open file one after another from ``position``, as
    :func:`write_at` writes them: ordinary writes until :data:`WRITE_BEHIND_PIECE`
    bytes are written, then written behind a piece at a time (``later``: see
    :func:`write_at`). :meth:`finish` hands over the last piece.

    For a file written as it is computed, a band at a time (a chunk of a Zarr
    array): each band is copied into the page cache while it is still in the
    CPU's cache, and no buffer as big as the file is needed. :meth:`write` takes
    a list of pieces too, written with one ``pwritev(2)`` per
    :data:`WRITE_BEHIND_PIECE` or so (the rows of a band that are a chunk's,
    say, without a copy).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryFile() as handle:
    ...     writer = WriteBehind(handle.fileno())
    ...     writer.write(b"spam")
    ...     writer.write([b" and ", b"eggs"])
    ...     writer.finish()
    ...     os.pread(handle.fileno(), 13, 0)
    b'spam and eggs'
    """

    def __init__(self, fd: int, position: int = 0, later: str | None = None) -> None:
        self.fd, self.position, self.later = fd, position, later
        self._start = position
        self._handed = position  # bytes before this are on their way to the disk
        self._syncer = _sync_file_range()
        self._mine: deque[tuple[int, int]] = deque()  # this file's ranges on their way

    def write(self, data: object) -> None:
        """Write ``data`` (a bytes-like object, or a list of them) at the next position."""
        if not isinstance(data, list):
            view = memoryview(data).cast("B")
            for start in range(0, len(view), WRITE_BEHIND_PIECE):
                self._write_pieces([view[start:start + WRITE_BEHIND_PIECE]])
            return
        group: list[memoryview] = []
        size = 0
        for piece in data:
            view = memoryview(piece).cast("B")
            group.append(view)
            size += len(view)
            if size >= WRITE_BEHIND_PIECE or len(group) == MOST_PIECES:
                self._write_pieces(group)
                group, size = [], 0
        if group:
            self._write_pieces(group)

    def _write_pieces(self, pieces: list[memoryview]) -> None:
        if len(pieces) == 1:  # (pwrite: where there is no pwritev too)
            _pwrite_all(self.fd, pieces[0], self.position)
        else:
            vectored_all(os.pwritev, self.fd, pieces, self.position)
        self.position += sum(len(piece) for piece in pieces)
        while (self._syncer is not None and self.position - self._start >= WRITE_BEHIND_PIECE
               and self.position - self._handed >= WRITE_BEHIND_PIECE):
            self._hand_over(WRITE_BEHIND_PIECE)

    def _hand_over(self, length: int) -> None:
        """Start the write-back of the next ``length`` bytes, waiting for older ones."""
        syncer = self._syncer
        assert syncer is not None
        failure = syncer(self.fd, self._handed, length, _SYNC_FILE_RANGE_WRITE)
        if failure in _UNSUPPORTED:  # (a file system without it: plain writes, then)
            self._syncer = None
            return
        if failure:
            raise OSError(failure, os.strerror(failure))
        self._mine.append((self._handed, length))
        self._handed += length
        if self.later is None:
            _wait_for_some(syncer, self.fd, self._mine, keep=length, others=False)
        else:
            _wait_for_some(syncer, self.fd, self._mine, keep=WRITE_BEHIND_LAG, others=True)

    def finish(self) -> None:
        """Hand over the last bytes; without ``later``, wait until all are on the disk."""
        global _on_the_way_bytes
        if self._syncer is None or self.position - self._start < WRITE_BEHIND_PIECE:
            return
        if self.position > self._handed:
            self._hand_over(self.position - self._handed)
        syncer = self._syncer
        if syncer is None:
            return
        if self.later is None:
            _wait_for_some(syncer, self.fd, self._mine, keep=0, others=False)
            return
        with _on_the_way_lock:
            _on_the_way.extend((self.later, offset, length) for offset, length in self._mine)
            _on_the_way_bytes += sum(length for _, length in self._mine)
        self._mine.clear()


def _wait_for_some(syncer: Callable[[int, int, int, int], int], fd: int,
                   mine: deque[tuple[int, int]], keep: int, others: bool) -> None:
    """Wait for the oldest ranges on their way to the disk, and drop them from the page
    cache, until at most ``keep`` bytes are: first, with ``others``, the process's (from
    earlier calls with ``later``), then this call's own (``mine``, in the open file
    ``fd``)."""
    global _on_the_way_bytes
    while True:
        with _on_the_way_lock:
            process = _on_the_way_bytes if others else 0
            if process + sum(length for _, length in mine) <= keep:
                return
            if others and _on_the_way:
                path, offset, length = _on_the_way.popleft()
                _on_the_way_bytes -= length
            elif mine:
                path = None
            else:
                return
        if path is None:
            offset, length = mine.popleft()
            _wait_and_drop(syncer, fd, offset, length)
            continue
        try:
            other = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:  # renamed or removed since: nothing to wait for
            continue
        try:
            _wait_and_drop(syncer, other, offset, length)
        finally:
            os.close(other)


def _wait_and_drop(syncer: Callable[[int, int, int, int], int], fd: int, offset: int,
                   length: int) -> None:
    failure = syncer(fd, offset, length, _WAIT_FOR_RANGE)
    if failure and failure not in _UNSUPPORTED:
        raise OSError(failure, os.strerror(failure))
    os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def sync_file(path: str, shown: str | None = None) -> None:
    """Flush a file written by others (worker processes) to the disk, before committing it."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise write_error(shown or path, exc) from None


def written_in_place(path: str) -> bool:
    """Whether ``path`` is written into rather than replaced: standard output (``"-"``)
    or an existing device, FIFO or socket (through symbolic links).

    Such an output is written once, in order: it cannot be seeked, mapped or
    renamed over.

    Examples
    --------
    >>> written_in_place("-"), written_in_place("/dev/null"), written_in_place("/no/file.png")
    (True, True, False)
    """
    if path == "-":
        return True
    try:
        return not stat.S_ISREG(os.stat(path).st_mode) and not os.path.isdir(path)
    except OSError:
        return False


def output_target(path: str) -> str:
    """The real path an output file ``path`` is written to (symbolic links are written
    through, as other tools do); a directory is refused."""
    target = os.path.realpath(path)
    if os.path.isdir(target):
        raise FileAccessError(f"{path}: is a directory; give an output file name")
    return target


@contextmanager
def atomic_output(path: str, shown: str | None = None) -> Iterator[BinaryIO]:
    """Write a file atomically: a temporary file in the same folder, then rename.

    On any exception (including KeyboardInterrupt) the temporary file is
    removed and an existing ``path`` is left untouched. A write that fails
    (a full disk, a file-size limit), whether in the body, on flushing or on
    closing, is a one-line :class:`~upconv.errors.FileAccessError` naming
    ``shown`` (the path as the user typed it), else ``path``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_output(str(target)) as handle:
    ...     _ = handle.write(b"done")
    >>> target.read_bytes()
    b'done'
    """
    handle = temporary_beside(path, shown)
    try:
        try:
            yield handle  # type: ignore[misc]
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        except OSError as exc:
            raise write_error(shown or path, exc) from None
        finish(handle.name, path, shown)
    except BaseException:
        _close_quietly(handle)
        discard(handle.name)
        raise


@contextmanager
def output_writer(path: str, what: str = "image") -> Iterator[Writer]:
    """Write an output in order, piece by piece: ``with output_writer(p) as write: write(b)``.

    ``"-"`` is standard output; a device, FIFO or socket (``/dev/null``, a
    named pipe) is written into, since renaming over it would replace the
    node with a file; a URL (:func:`is_url`) is gathered in memory and sent
    as one object when complete (:func:`upconv.storage.write_bytes`); anything
    else is a file written atomically
    (:func:`atomic_output`). Symbolic links are written through, as other
    tools do. Binary data (``what`` other than ``"text"``) is never written
    to a terminal. Failed writes are one-line errors naming the output; a
    reader of standard output or of a pipe that went away raises
    :class:`~upconv.errors.OutputClosedError`.
    """
    binary = what != "text"
    if path == "-":
        stream = standard_stream(sys.stdout, "output")
        if binary and stream.isatty():
            raise BadInputError(f"refusing to write binary {what} data to a terminal; "
                                "redirect standard output or give an output file")
        stream.flush()
        fd = stream.fileno()
        yield lambda data: _write_all(fd, data, "standard output")
        return
    if is_url(path):  # gathered, then sent whole: never half an object under its key
        chunks: list[bytes] = []
        yield lambda data: chunks.append(bytes(data))
        _upload(path, b"".join(chunks))
        return
    target = output_target(path)
    if not written_in_place(target):
        with atomic_output(target, shown=path) as handle:
            yield lambda data: _write_to(handle, data, path)
        return
    try:
        handle = open(target, "wb", buffering=0)
    except OSError as exc:
        raise write_error(path, exc) from None
    with handle:
        if binary and handle.isatty():
            raise BadInputError(f"{path}: refusing to write binary {what} data to a "
                                "terminal")
        yield lambda data: _write_all(handle.fileno(), data, path)


def write_output(path: str, data: bytes, what: str = "image") -> None:
    """Write ``data`` to ``path`` (``"-"``: standard output), atomically where it is a file.

    The one-shot form of :func:`output_writer`, which says where and how.
    """
    with output_writer(path, what) as write:
        write(data)


class TextLog:
    """A text file written line by line, each line flushed; errors name the file."""

    def __init__(self, handle: IO[str], path: str) -> None:
        self.handle, self.path = handle, path

    def write_line(self, line: str) -> None:
        """Write ``line`` and a newline, and flush them to the file."""
        try:
            self.handle.write(line + "\n")
            self.handle.flush()
        except OSError as exc:
            raise write_error(self.path, exc) from None

    def close(self) -> None:
        """Close the file (a failed write still pending is dropped, not raised twice)."""
        _close_quietly(self.handle)

    def __enter__(self) -> TextLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ObjectLog(TextLog):
    """A batch's report lines for an object: gathered, and uploaded whole when the batch
    ends (stopped or not), after the object's old lines when resuming (``append``)."""

    def __init__(self, url: str, append: bool) -> None:
        from .storage import exists
        from .storage import read_bytes as read_object

        self.path, self.closed = url, False
        self.lines = [read_object(url).decode("utf-8")] if append and exists(url) else []

    def write_line(self, line: str) -> None:
        self.lines.append(line + "\n")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        from .storage import write_bytes

        write_bytes(self.path, "".join(self.lines).encode("utf-8"))

    def __exit__(self, *exc: object) -> None:
        try:
            self.close()
        except Exception:
            if exc[0] is None:  # else the batch's own error is the one to tell
                raise


def open_text_log(path: str, append: bool) -> TextLog:
    """A text file written line by line as results come in, for ``--report PATH`` of a batch.

    Not atomic on purpose: a stopped batch keeps the lines of the images it
    finished, and a resumed one (``append``) adds to them. Errors, opening or
    writing, are one line naming the file. For an object (a URL) the lines are
    uploaded together when the batch ends (:class:`ObjectLog`).
    """
    if is_url(path):
        return ObjectLog(path, append)
    try:
        return TextLog(open(path, "a" if append else "w", encoding="utf-8"), path)
    except IsADirectoryError:
        raise FileAccessError(f"{path}: is a directory; give a file name") from None
    except FileNotFoundError:
        raise FileAccessError(f"{path}: folder {os.path.dirname(path)!r} does not exist"
                              ) from None
    except OSError as exc:
        raise write_error(path, exc) from None


def _write_to(handle: IO[bytes], data: bytes | memoryview, name: str) -> None:
    """Write to an open file; a failure is the one-line error naming ``name``."""
    try:
        handle.write(data)
    except OSError as exc:
        raise write_error(name, exc) from None


def _write_all(fd: int, data: bytes | memoryview, name: str) -> None:
    """Write every byte or fail: a short write is retried, EPIPE raises OutputClosedError."""
    view = memoryview(data).cast("B")
    while view:
        try:
            written = os.write(fd, view)
        except BrokenPipeError:
            raise OutputClosedError(name) from None
        except OSError as exc:
            raise write_error(name, exc) from None
        view = view[written:]


def _close_quietly(handle: IO) -> None:
    """Close a file being abandoned; an error flushing what was left is not news."""
    try:
        handle.close()
    except OSError:
        pass
