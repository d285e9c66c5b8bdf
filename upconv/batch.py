"""Many files: planning outputs, running them (here or on a cluster), progress, failures.

A batch is a list of :class:`Job` (one input, one output). :func:`run_jobs`
runs them in this process, in worker processes, or on a Dask cluster, and
yields each :class:`Outcome` as it finishes; one bad file never stops the
others unless asked. Workers are started once and reused, so the cost of
starting Python and importing numpy and scipy is paid once per worker, not
per file. Outputs are written atomically by the workers, so a batch stopped
by Ctrl-C or a crash can be resumed with ``--skip-existing``.
"""

from __future__ import annotations

import multiprocessing
import os
import string
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from .errors import BadInputError, UpconvError
from .images import FORMATS
from .polyphase import default_threads

__all__ = ["Job", "Outcome", "check_template", "expand_inputs", "plan_outputs", "run_jobs",
           "IMAGE_SUFFIXES"]

#: Suffixes of the files a folder contributes to a batch.
IMAGE_SUFFIXES = tuple(sorted({suffix for _, suffixes, *_ in FORMATS.values()
                               for suffix in suffixes} | {".pbm", ".gif"}))

TEMPLATE_FIELDS = ("stem", "ext", "factor", "size", "method", "name", "parent")


@dataclass(frozen=True)
class Job:
    """One file to process."""

    input: str
    output: str


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
        source = Path(path)
        ext = fmt_suffix or source.suffix.lstrip(".").lower() or "png"
        name = template.format_map({**fields, "stem": source.stem, "ext": ext,
                                    "name": source.name,
                                    "parent": source.resolve().parent.name})
        planned.append((path, str(Path(folder) / relative / name)))
    # A file that another input's output would be is a product of this batch, not an input.
    makers = {os.path.realpath(output): os.path.realpath(path) for path, output in planned}
    planned = [(path, output) for path, output in planned
               if makers.get(os.path.realpath(path), os.path.realpath(path))
               == os.path.realpath(path)]
    input_files = {os.path.realpath(path) for path, _ in planned}
    jobs, seen = [], {}
    for path, output in planned:
        real = os.path.realpath(output)
        if real in input_files:
            raise BadInputError(f"{output}: would overwrite an input of this batch; change --name "
                              "or the output folder")
        if real in seen:
            field = _telling_field(seen[real], path)
            hint = (f"change --name (add {field}, which tells them apart)" if field else
                    "scale them into different output folders")
            raise BadInputError(f"{seen[real]} and {path} would both write {output}; {hint}")
        seen[real] = path
        jobs.append(Job(path, output))
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


def _worker_init(threads: int) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))


def run_jobs(jobs: list[Job], work: Callable[[Job], Any], workers: int = 1,
             dask_address: str | None = None) -> Iterator[Outcome]:
    """Run ``work(job)`` for every job and yield the outcomes as they finish.

    ``work`` must be picklable (a module-level function or a
    ``functools.partial`` of one) when ``workers > 1`` or on Dask.
    """
    if dask_address is not None:
        from .cluster import map_on_dask

        for _, outcome in map_on_dask(partial(run_safely, work), jobs, dask_address):
            yield outcome
        return
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield run_safely(work, job)
        return
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["upconv.pipeline"])
    threads = max(1, default_threads() // workers)
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init,
                               initargs=(threads,))
    pending: set[Future] = set()
    queue = iter(jobs)
    try:
        # Keep a couple of jobs per worker in flight: no long queue to cancel on Ctrl-C.
        for job in queue:
            pending.add(pool.submit(run_safely, work, job))
            if len(pending) >= 2 * workers:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
                following = next(queue, None)
                if following is not None:
                    pending.add(pool.submit(run_safely, work, following))
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
