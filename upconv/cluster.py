"""Running batches and big-image tiles on a dask.distributed cluster (``--dask ADDRESS``).

Needs the optional extra: ``pip install 'upconv[dask]'``, on the client and
on every worker (the workers run upconv's own functions). Files are read and
written by the workers, so they must live on storage every worker sees at the
same path. Outputs are written atomically, so when a worker dies mid-task and
Dask reruns the task elsewhere, nothing is lost or half-written.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from .errors import BadInputError
from .stopping import signals_counted, signals_received, tell

__all__ = ["map_on_dask", "stop_tasks", "warm_up_for_zarr"]


def _client(address: str):
    try:
        from distributed import Client
    except ImportError:
        raise BadInputError("--dask needs the dask extra: pip install 'upconv[dask]'") from None
    try:
        return Client(address, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise BadInputError(f"cannot reach the Dask scheduler at {address} ({exc})") from None


async def warm_up_for_zarr(dask_worker: Any = None) -> None:
    """On a worker, import what a Zarr job's tasks run (zarr, upconv's engine and its
    Zarr modules) before its first task comes, so that the task does not wait for
    them: sent to every worker as a job connects (``Client.run(..., wait=False)``,
    :class:`upconv.zarr_arrays.JobRunner`), while the command still opens its input.

    The modules are imported in the worker's event loop, the thread that unpickles
    its tasks, and not once the worker has a task: imported by two threads at once,
    zarr's modules (which import one another) can come half made, and the worker
    then loses its connection (seen with a thread of its own for this).

    Examples
    --------
    >>> import asyncio
    >>> asyncio.run(warm_up_for_zarr())
    """
    if dask_worker is not None and dask_worker.state.tasks:
        return
    try:
        _import_zarr_engine()
    except Exception:  # (a worker without zarr: its tasks report it)
        pass


def _import_zarr_engine() -> None:
    import importlib

    for name in ("upconv.zarr_arrays", "upconv.zarr_local", "upconv.zarr_zstd",
                 "upconv.direct_writes", "upconv.scaling", "upconv.interpolate"):
        importlib.import_module(name)


def map_on_dask(function: Callable[[Any], Any], items: list, address: str,
                ordered: bool = False) -> Iterator[tuple[Any, Any]]:
    """Yield ``(item, function(item))`` as tasks finish on the cluster (``ordered``: in
    the order of ``items``, for results that must be written one after another).

    Tasks are impure (files are their effect) and a worker lost mid-task is
    replaced by running the task again; exceptions come back as they are.
    """
    from distributed import as_completed

    client = _client(address)
    futures: dict[Any, Any] = {}
    done = False
    try:
        # No retries of exceptions (they are deterministic); a lost worker's task is
        # rerun by the scheduler anyway.
        for item in items:  # (one at a time: an interruption midway knows what was sent)
            futures[client.submit(function, item, pure=False)] = item
        for future in (futures if ordered else as_completed(futures)):
            yield futures[future], future.result()
        done = True
    finally:
        try:
            if not done and futures:
                stop_tasks(client, list(futures))
        finally:
            client.close()


#: How long :func:`stop_tasks` waits for tasks that are already running to end.
RUNNING_TASKS_WAIT_SECONDS = 60.0


def stop_tasks(client: Any, futures: list[Any],
               wait: float = RUNNING_TASKS_WAIT_SECONDS) -> bool:
    """Cancel a job's tasks, and wait for those already running to end (up to ``wait``
    seconds); whether none is left running (else a warning says how many).

    Dask cannot stop a task that is running: cancelled, it runs on to its end on its
    worker. When a job fails or is interrupted, its caller then undoes what the job did
    (aborts an upload, removes a temporary store), and a task still running could redo
    part of it afterwards (send a part after the upload was given up). So the caller
    gets control back only once no task of the job runs any more: once the scheduler has
    let go of them all, and two asks of the workers in a row (the scheduler's word to
    a worker may still be on its way at the first) find none running; or after ``wait``
    seconds (a task stuck in a service that does not answer); or, in a command, once a
    Ctrl-C or SIGTERM comes after the one that stopped the job, if one did
    (:func:`upconv.stopping.signals_counted`: it ends the wait and raises nothing, so
    that a failed job's own error is still the one reported). A worker that does not
    answer is not waited for. A command says what it waits for when tasks are found
    running (:func:`upconv.stopping.tell`).

    Examples
    --------
    >>> from distributed import Client, LocalCluster
    >>> with LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as cluster:
    ...     with Client(cluster) as client:
    ...         futures = [client.submit(sum, [1, 2], pure=False) for _ in range(3)]
    ...         stop_tasks(client, futures)
    True
    """
    unfinished = [future for future in futures if not future.done()]
    if not unfinished:
        return True
    keys = {future.key for future in unfinished}
    deadline = time.monotonic() + wait
    # Signals that end the wait: those after the one that stopped the run, if one did
    # (a second Ctrl-C pressed before the wait began counts), else any.
    baseline = min(signals_received(), 1)
    quiet, running, told = 0, None, False

    def waiting() -> bool:
        return time.monotonic() < deadline and signals_received() <= baseline

    with signals_counted():
        try:
            client.cancel(unfinished)
            while client.run_on_scheduler(_known, keys) and waiting():
                time.sleep(0.05)  # (the cancel is sent without an answer)
            while waiting():
                answers = client.run(_running, keys, on_error="return")
                running = sum(len(found) for found in answers.values()
                              if not isinstance(found, BaseException))
                quiet = quiet + 1 if not running else 0
                if quiet == 2:
                    return True
                if running and not told:
                    told = True
                    tell(f"waiting for {running} task(s) still running on the cluster to end "
                         f"(at most {wait:.0f} s; interrupt {'again ' if baseline else ''}"
                         "to stop waiting)")
                time.sleep(0.05)  # (a worker tells no one when a cancelled task ends)
        except Exception:  # noqa: BLE001 - the scheduler gone: nothing left to ask
            return False
    why = f"after {wait:.0f} s" if signals_received() <= baseline else "when interrupted"
    what = (f"{running} task(s) still running" if running is not None
            else "the job's tasks may still be running")
    warnings.warn(f"{what} on the cluster {why}; what they write may land after this job "
                  "was undone", stacklevel=2)
    return False


def _known(keys: set, dask_scheduler: Any = None) -> bool:
    """Whether the scheduler still has any of ``keys`` (run on it by :func:`stop_tasks`)."""
    return any(key in dask_scheduler.tasks for key in keys)


def _running(keys: set, dask_worker: Any = None) -> list:
    """The tasks of ``keys`` this worker is running (run on each worker by
    :func:`stop_tasks`; ``dask_worker`` is given by ``Client.run``)."""
    tasks = dask_worker.state.tasks
    return [key for key in keys if key in tasks and tasks[key].state in (
        "executing", "long-running", "cancelled", "resumed")]
