"""Reading whole files and writing them atomically: the one place upconv touches the disk.

Every output upconv writes (images, kernels, reports, heat maps, matrices,
streamed ``.npy`` arrays) goes through :func:`atomic_output` or
:func:`write_output`: the bytes go to a temporary file beside the target,
which is renamed over it only when complete. On any error or Ctrl-C the
temporary file is removed and an existing file is left untouched; a replaced
file keeps its permissions.

A temporary file is named ``.NAME.PID.XXXXXXXX.part``: hidden, beside NAME,
with the writer's process id. A process killed outright (``kill -9``, a power
cut) cannot remove it; :func:`remove_stale_temporaries` finds such files by
that name when NAME is written next, and removes those whose writer is no
longer running.
"""

from __future__ import annotations

import os
import re
import stat
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO

from .errors import BadInputError, FileAccessError, OutputClosedError

__all__ = ["read_bytes", "standard_stream", "temporary_beside", "commit", "discard",
           "abandon_unfinished", "atomic_output", "write_output", "open_text_log",
           "remove_stale_temporaries", "TEMPORARY_NAME"]

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


def read_bytes(path: str, kind: str = "image", stdin: bool = True) -> bytes:
    """The whole file (or standard input for ``"-"``), or a one-line error naming it.

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
    except PermissionError:
        raise FileAccessError(f"{shown or path}: permission denied") from None
    except OSError as exc:
        raise FileAccessError(f"{shown or path}: cannot write ({exc.strerror or exc})"
                              ) from None


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
    removed. A target that is a symbolic link is written through, so its
    target's folder is searched too. Each folder is read once; folders that
    cannot be read are left alone.
    """
    wanted: dict[str, tuple[str, set[str]]] = {}  # real folder: (folder as given, names)
    for target in targets:
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


@contextmanager
def atomic_output(path: str, shown: str | None = None) -> Iterator[BinaryIO]:
    """Write a file atomically: a temporary file in the same folder, then rename.

    On any exception (including KeyboardInterrupt) the temporary file is
    removed and an existing ``path`` is left untouched. Errors name ``shown``
    (the path as the user typed it), else ``path``.

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
        with handle:
            try:
                yield handle  # type: ignore[misc]
                handle.flush()
                os.fsync(handle.fileno())
            except OSError as exc:
                if isinstance(exc, FileAccessError):
                    raise
                raise FileAccessError(f"{shown or path}: cannot write "
                                      f"({exc.strerror or exc})") from None
        commit(handle.name, path, shown)
    except BaseException:
        discard(handle.name)
        raise


def write_output(path: str, data: bytes, what: str = "image") -> None:
    """Write ``data`` to ``path`` (``"-"``: standard output), atomically where it is a file.

    Symbolic links are written through, as other tools do; a device, FIFO or
    socket (``/dev/null``, a named pipe) is written into, since renaming over
    it would replace the node with a file. Binary data is never written to a
    terminal. A reader of standard output that went away raises
    :class:`~upconv.errors.OutputClosedError`.
    """
    binary = what != "text"
    if path == "-":
        stream = standard_stream(sys.stdout, "output")
        if binary and stream.isatty():
            raise BadInputError(f"refusing to write binary {what} data to a terminal; "
                                "redirect standard output or give an output file")
        stream.flush()
        _write_all(stream.fileno(), data, "standard output")
        return
    target = os.path.realpath(path)
    if os.path.isdir(target):
        raise FileAccessError(f"{path}: is a directory; give an output file name")
    try:
        special = os.path.exists(target) and not stat.S_ISREG(os.stat(target).st_mode)
        if special:
            with open(target, "wb", buffering=0) as handle:
                if binary and handle.isatty():
                    raise BadInputError(f"{path}: refusing to write binary {what} data to a "
                                        "terminal")
                _write_all(handle.fileno(), data, path)
            return
    except PermissionError:
        raise FileAccessError(f"{path}: permission denied") from None
    except OSError as exc:
        if isinstance(exc, FileAccessError):
            raise
        raise FileAccessError(f"{path}: cannot write ({exc.strerror or exc})") from None
    with atomic_output(target, shown=path) as handle:
        handle.write(data)


def open_text_log(path: str, append: bool) -> IO[str]:
    """A text file written line by line as results come in, for ``--report PATH`` of a batch.

    Not atomic on purpose: a stopped batch keeps the lines of the images it
    finished, and a resumed one (``append``) adds to them. Errors are one line
    naming the file.
    """
    try:
        return open(path, "a" if append else "w", encoding="utf-8")
    except IsADirectoryError:
        raise FileAccessError(f"{path}: is a directory; give a file name") from None
    except FileNotFoundError:
        raise FileAccessError(f"{path}: folder {os.path.dirname(path)!r} does not exist"
                              ) from None
    except PermissionError:
        raise FileAccessError(f"{path}: permission denied") from None
    except OSError as exc:
        raise FileAccessError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _write_all(fd: int, data: bytes, name: str) -> None:
    """Write every byte or fail: a short write is retried, EPIPE raises OutputClosedError."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BrokenPipeError:
            raise OutputClosedError(name) from None
        except OSError as exc:
            raise FileAccessError(f"cannot write {name} ({exc.strerror or exc})") from None
        view = view[written:]
