"""Many files: planning outputs, running them (here or on a cluster), progress, failures.

A batch is a list of :class:`Job` (one input, one output). :func:`run_jobs`
runs them in this process, in worker processes, or on a Dask cluster, and
yields each :class:`Outcome` as it finishes; one bad file never stops the
others unless asked. Workers are started once and reused, so the cost of
starting Python and importing numpy and scipy is paid once per worker, not
per file. Outputs are written atomically by the workers, so a batch stopped
by Ctrl-C or a crash can be resumed with ``--skip-existing``; how a batch
stops, and what it leaves, is described in :func:`run_jobs`.
"""

from __future__ import annotations

import itertools
import os
import select
import signal
import string
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:  # (multiprocessing is imported only where workers start)
    from multiprocessing.connection import Connection

from .errors import BadInputError, UpconvError, WorkerError
from .fileio import abandon_unfinished, is_url, url_path
from .images import FORMATS
from .polyphase import default_threads
from .stopping import BatchStop, batch_stopping, raise_if_stopped

__all__ = ["Job", "Outcome", "check_template", "expand_inputs", "listed_size", "plan_outputs",
           "run_jobs", "start_worker_server", "IMAGE_SUFFIXES"]

#: Suffixes of the files a folder contributes to a batch.
IMAGE_SUFFIXES = tuple(sorted({suffix for _, suffixes, *_ in FORMATS.values()
                               for suffix in suffixes} | {".pbm", ".gif"}))

TEMPLATE_FIELDS = ("stem", "ext", "factor", "size", "method", "name", "parent")


@dataclass(frozen=True)
class Job:
    """One file to process."""

    input: str
    output: str
    #: The input's size, when a listing gave it (objects): read without asking it again.
    input_size: int | None = None


@dataclass
class Outcome:
    """What became of a job: done (with the work's result) or failed (with why)."""

    job: Job
    status: str  # "done" or "failed"
    error: str | None = None
    result: Any = None


def expand_inputs(paths: Iterable[str], recursive: bool) -> list[tuple[str, Path]]:
    """Files to process, each with the folder its relative output path starts from.

    A folder contributes its image files (sorted; with ``recursive``, those
    of its subfolders too, keeping their relative paths). Files are taken as
    they are, even if missing: they fail in the batch, like any bad file.
    """
    found: list[tuple[str, Path]] = []
    for path in paths:
        if is_url(path):
            found += _expand_url(path, recursive)
            continue
        base = Path(path)
        if base.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(p for p in base.glob(pattern)
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                           and not p.name.startswith("."))
            found += [(str(p), p.parent.relative_to(base)) for p in files]
        else:
            found.append((path, Path()))
    return found


def _expand_url(url: str, recursive: bool) -> list[tuple[str, Path]]:
    """An object URL as it is, or the image objects under a prefix (a "folder"), each
    with its relative folder (with ``recursive``, those under deeper prefixes too)."""
    from .storage import is_folder, list_files

    if not is_folder(url):
        return [(url, Path())]
    base = url.rstrip("/") + "/"
    found = []
    for object_url in list_files(url, recursive, IMAGE_SUFFIXES):
        relative = PurePosixPath(object_url[len(base):]).parent
        if not PurePosixPath(object_url).name.startswith("."):
            found.append((object_url, Path(*relative.parts)))
    return found


def _output_location(folder: str, relative: Path, name: str) -> str:
    """Where an output goes: a path in ``folder``, or an object under a URL prefix."""
    if is_url(folder):
        from .storage import join

        return join(folder, "/".join([*relative.parts, name]))
    return str(Path(folder) / relative / name)


def listed_size(path: str) -> int | None:
    """An object's size as the listing of its prefix gave it (None for files), for
    :attr:`Job.input_size`."""
    if not is_url(path):
        return None
    from .storage import known_size

    return known_size(path)


def _real(path: str) -> str:
    """What identifies a file: its real path, or a URL as it is."""
    return path if is_url(path) else os.path.realpath(path)


def plan_outputs(inputs: list[tuple[str, Path]], folder: str, template: str,
                 fields: dict[str, str], fmt_suffix: str | None) -> list[Job]:
    """The output path of every input, from the name template.

    ``fields`` holds ``factor`` and ``method``; ``stem``, ``ext`` and ``name``
    come from each input (``ext`` is the output format's suffix when a
    format is forced). Files that are themselves outputs of this batch (an
    earlier run's, when the output folder is inside an input folder) are left
    out. Two inputs that would write the same output, or an output that is
    one of the inputs, are refused.
    """
    check_template(template)
    planned = []
    for path, relative in inputs:
        # (a URL's name is its path's: a signed URL's query is no part of it)
        source = PurePosixPath(url_path(path)) if is_url(path) else Path(path)
        parent = source.parent.name if is_url(path) else Path(path).resolve().parent.name
        ext = fmt_suffix or source.suffix.lstrip(".").lower() or "png"
        name = template.format_map({**fields, "stem": source.stem, "ext": ext,
                                    "name": source.name, "parent": parent})
        planned.append((path, _output_location(folder, relative, name)))
    # A file that another input's output would be is a product of this batch, not an input.
    makers = {_real(output): _real(path) for path, output in planned}
    planned = [(path, output) for path, output in planned
               if makers.get(_real(path), _real(path)) == _real(path)]
    input_files = {_real(path) for path, _ in planned}
    jobs, seen = [], {}
    for path, output in planned:
        real = _real(output)
        if real in input_files:
            raise BadInputError(f"{output}: would overwrite an input of this batch; change --name "
                              "or the output folder")
        if real in seen:
            field = _telling_field(seen[real], path)
            hint = (f"change --name (add {field}, which tells them apart)" if field else
                    "scale them into different output folders")
            raise BadInputError(f"{seen[real]} and {path} would both write {output}; {hint}")
        seen[real] = path
        jobs.append(Job(path, output, listed_size(path)))
    return jobs


def _telling_field(first: str, second: str) -> str | None:
    """A --name field whose values differ for two inputs, or None."""
    a, b = Path(first), Path(second)
    if a.stem != b.stem:
        return "{stem}"
    if a.suffix.lower() != b.suffix.lower():
        return "{ext}"
    if a.resolve().parent.name != b.resolve().parent.name:
        return "{parent}"
    return None


def check_template(template: str) -> None:
    """Refuse a --name template that upconv cannot fill, or that leaves the output folder."""
    sample = {"stem": "photo", "ext": "png", "factor": "2", "size": "1920w",
              "method": "bicubic", "name": "photo.png", "parent": "photos"}
    try:
        names = [field for _, field, _, _ in string.Formatter().parse(template)
                 if field is not None]
        unknown = [n for n in names if n not in TEMPLATE_FIELDS]
        if unknown:
            raise BadInputError(f"--name {template!r}: unknown field {{{unknown[0]}}}; use "
                              + ", ".join("{" + f + "}" for f in TEMPLATE_FIELDS))
        filled = template.format_map(sample)
    except (ValueError, IndexError, KeyError) as exc:
        raise BadInputError(f"--name {template!r}: {exc}") from None
    parts = Path(filled).parts
    if not filled or Path(filled).is_absolute() or ".." in parts:
        raise BadInputError(f"--name {template!r} must name a file inside the output folder")


# --------------------------------------------------------------------- running

def run_safely(work: Callable[[Job], Any], job: Job) -> Outcome:
    """Run one job; turn expected failures into an Outcome (exceptions don't cross processes
    well, and one bad file must not stop the batch)."""
    if job.input_size is not None:  # (from the listing: the worker need not ask it)
        from .storage import expect_size

        expect_size(job.input, job.input_size)
    try:
        return Outcome(job, "done", result=work(job))
    except UpconvError as exc:  # FileAccessError included: its message names the file
        return Outcome(job, "failed", error=str(exc))
    except MemoryError:
        return Outcome(job, "failed", error="out of memory")
    except OSError as exc:
        return Outcome(job, "failed", error=f"{exc.strerror or exc}")
    except Exception as exc:  # noqa: BLE001 - reported per file, the batch goes on
        return Outcome(job, "failed", error=f"unexpected {type(exc).__name__}: {exc}")


def run_jobs(jobs: list[Job], work: Callable[[Job], Any], workers: int = 1,
             dask_address: str | None = None) -> Iterator[Outcome]:
    """Run ``work(job)`` for every job and yield the outcomes as they finish.

    ``work`` must be picklable (a module-level function or a
    ``functools.partial`` of one) when ``workers > 1`` or on Dask.

    Stopping (with the command line's signal handling, :mod:`upconv.stopping`):
    a first Ctrl-C or SIGTERM starts no new job, lets the jobs in progress
    finish, yields their outcomes and then raises KeyboardInterrupt or
    :class:`~upconv.stopping.Terminated`; a second one stops at once. In
    every case (stopped at once, a worker that died, a consumer that stops
    iterating early) an output this batch wrote for a job whose outcome was
    not yielded is removed, with a warning: every output the batch leaves
    was reported. Worker processes end by themselves when this process does,
    even when it is killed outright. Worker processes (``workers > 1``, Dask) run the
    jobs with this process's storage options (:func:`options_with`).
    """
    # Dask's long-lived workers always (never an earlier job's options); a batch's new
    # processes, forked from a server that has none, when there are any to give.
    if dask_address is not None or (workers > 1 and len(jobs) > 1
                                    and "upconv.storage" in sys.modules):
        work = options_with(work)
    if dask_address is not None:
        from .cluster import map_on_dask

        for _, outcome in map_on_dask(partial(run_safely, work), jobs, dask_address):
            yield outcome
        return
    if workers <= 1 or len(jobs) <= 1:
        yield from _run_here(jobs, work)
    else:
        yield from _run_in_workers(jobs, work, workers)


def options_with(task: Callable[[Any], Any], options: dict | None = None
                 ) -> Callable[[Any], Any]:
    """``task``, to run in another process (a batch's worker, a Dask worker) with exactly
    ``options`` (default: this process's ``--storage-option`` values, none if none were
    given): what an earlier task left in that process is never used
    (:func:`upconv.storage.with_storage_options`)."""
    if options is None:
        options = {}
        if "upconv.storage" in sys.modules:  # (no options were set without it)
            from .storage import storage_options

            options = storage_options()
    from .storage import with_storage_options

    return partial(with_storage_options, options, task)


#: What tells a file apart from one that replaced it: (device, inode, mtime), None if none.
FileIdentity = tuple[int, int, int] | None


def _identity(path: str) -> FileIdentity:
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino, info.st_mtime_ns


def _forget_unreported(unreported: list[tuple[Job, FileIdentity]]) -> None:
    """Remove the outputs that these jobs wrote (the file changed since it was submitted)
    although their outcomes were never yielded: what is not reported is not left."""
    removed = []
    for job, before in unreported:
        after = _identity(job.output)
        if after is not None and after != before:
            try:
                os.unlink(os.path.realpath(job.output))
            except OSError:
                continue
            removed.append(job.output)
    if removed:
        shown = ", ".join(removed[:3]) + (" ..." if len(removed) > 3 else "")
        warnings.warn(f"removed {len(removed)} output(s) finished as the batch stopped, too "
                      f"late to be reported: {shown}", stacklevel=2)


def _run_here(jobs: list[Job], work: Callable[[Job], Any]) -> Iterator[Outcome]:
    """Run the jobs one after the other in this process."""
    stop = BatchStop()
    with batch_stopping(stop):
        for job in jobs:
            raise_if_stopped()
            before = _identity(job.output)
            stop.interruptible = True
            try:
                outcome = run_safely(work, job)
                stop.interruptible = False
            except BaseException:  # stopped at once, in the job or just after it
                stop.interruptible = False
                _forget_unreported([(job, before)])
                raise
            yield outcome
        raise_if_stopped()


def _run_in_workers(jobs: list[Job], work: Callable[[Job], Any], workers: int
                    ) -> Iterator[Outcome]:
    """Run the jobs in ``workers`` worker processes, a couple per worker at a time."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    context = _worker_context(path for job in jobs for path in (job.input, job.output))
    threads = max(1, default_threads() // workers)
    in_flight: dict[Future, tuple[Job, FileIdentity]] = {}
    unreported: list[tuple[Job, FileIdentity]] = []
    reported = 0
    broken = False
    queue = iter(jobs)
    stop = BatchStop()
    with batch_stopping(stop):
        with _starting_workers():
            # Only this process holds the write end: workers take its closing as "stop now".
            parent_alive, alive_writer = context.Pipe(duplex=False)
            pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init,
                                       initargs=(threads, parent_alive))

        def submit(job: Job) -> None:
            before = _identity(job.output)  # before a worker can write it
            with _starting_workers():  # a submission may start a worker
                in_flight[pool.submit(run_safely, work, job)] = (job, before)

        try:
            # A couple of jobs per worker in flight: little to wait for when stopping.
            for job in itertools.islice(queue, 2 * workers):
                if stop.requested:
                    break
                submit(job)
            while in_flight:
                if stop.at_once:
                    raise_if_stopped()
                if stop.requested:
                    for future in in_flight:
                        future.cancel()  # succeeds for those no worker has taken yet
                stop.interruptible = True
                try:
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                finally:
                    stop.interruptible = False
                for future in done:
                    job, before = in_flight.pop(future)
                    if future.cancelled():
                        continue
                    error = future.exception()
                    if isinstance(error, BrokenProcessPool):  # a worker died
                        unreported.append((job, before))
                        broken = True
                        continue
                    reported += 1
                    yield (future.result() if error is None else
                           Outcome(job, "failed",
                                   error=f"unexpected {type(error).__name__}: {error}"))
                    if not (stop.requested or broken):
                        following = next(queue, None)
                        if following is not None:
                            submit(following)
            raise_if_stopped()
            if broken:
                raise WorkerError(f"a worker process stopped unexpectedly (killed, or out of "
                                  f"memory?); {len(jobs) - reported} of {len(jobs)} files "
                                  "not done: --skip-existing resumes the batch")
        finally:
            if in_flight:  # stopping before the jobs in progress are done: end the workers
                alive_writer.close()
            pool.shutdown(wait=True, cancel_futures=True)
            unreported += [(job, before) for future, (job, before) in in_flight.items()
                           if not future.cancelled()]
            alive_writer.close()
            parent_alive.close()
            _forget_unreported(unreported)


def _worker_context(paths: Iterable[str]) -> Any:
    """The multiprocessing context workers start from: a server process, forked for each
    worker, that has imported upconv's pipeline and, when ``paths`` hold URLs, the storage
    backends for them (s3fs and botocore take longer to import than numpy and scipy), once
    for every worker."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    urls = [path for path in paths if is_url(path)]
    backends = []
    if urls:
        from .storage import backend_modules

        backends = backend_modules(urls)
    context.set_forkserver_preload(["upconv.pipeline", *backends])
    return context


def start_worker_server(paths: Iterable[str]) -> None:
    """Start, now, the server that :func:`run_jobs` forks its worker processes from, so
    that its imports (see :func:`_worker_context`) are done while this process lists the
    prefixes of ``paths`` and checks the outputs, rather than after. It imports in a
    process of its own; an error starting it is left for :func:`run_jobs` to report."""
    import multiprocessing.forkserver

    _worker_context(paths)
    try:
        multiprocessing.forkserver.ensure_running()
    except Exception:  # noqa: BLE001 - told, clearly, when the workers start
        pass


@contextmanager
def _starting_workers() -> Iterator[None]:
    """Report a failure to start worker processes (their server or their Python could not
    start, a pipe to it broke) as one clear error."""
    from concurrent.futures.process import BrokenProcessPool

    try:
        yield
    except (OSError, EOFError, BrokenProcessPool) as exc:
        reason = (exc.strerror if isinstance(exc, OSError) and exc.strerror
                  else f"{type(exc).__name__}: {exc}")
        raise WorkerError(f"could not start worker processes ({reason}); --jobs 1 runs the "
                          "batch without them") from exc


def _worker_init(threads: int, parent_alive: Connection) -> None:
    """Set up a worker process: its share of the threads, and how it stops.

    The parent decides when a batch stops, so a worker ignores Ctrl-C (which a
    terminal sends to the whole process group). It ends at once, removing its
    unfinished temporary files, on SIGTERM and when ``parent_alive`` reaches
    end of file: the parent is gone (even killed outright) or stops the batch
    at once.
    """
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    terminated, on_sigterm = os.pipe()
    signal.signal(signal.SIGTERM, partial(_tell, on_sigterm))
    threading.Thread(target=_abandon_when_told, args=(parent_alive, terminated),
                     name="upconv-stop-watch", daemon=True).start()


def _tell(descriptor: int, signum: int, frame: object) -> None:
    """Signal handler: wake the thread that reads ``descriptor`` (and do nothing else, so
    that it is safe wherever the main thread is)."""
    os.write(descriptor, bytes([signum]))


def _abandon_when_told(parent_alive: Connection, terminated: int) -> NoReturn:
    """Wait until the parent's end of ``parent_alive`` closes or SIGTERM arrives, then end
    the process at once, leaving no temporary file and committing nothing more."""
    parent = parent_alive.fileno()
    status = 1
    while True:
        ready, _, _ = select.select([parent, terminated], [], [])
        if terminated in ready:
            status = 128 + signal.SIGTERM
            break
        if not os.read(parent, 1):  # end of file: the parent is gone or stops the batch
            break
    abandon_unfinished()
    os._exit(status)
