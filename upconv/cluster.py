"""Running batches and big-image tiles on a dask.distributed cluster (``--dask ADDRESS``).

Needs the optional extra: ``pip install 'upconv[dask]'``, on the client and
on every worker (the workers run upconv's own functions). Files are read and
written by the workers, so they must live on storage every worker sees at the
same path. Outputs are written atomically, so when a worker dies mid-task and
Dask reruns the task elsewhere, nothing is lost or half-written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .errors import BadInputError

__all__ = ["map_on_dask"]


def _client(address: str):
    try:
        from distributed import Client
    except ImportError:
        raise BadInputError("--dask needs the dask extra: pip install 'upconv[dask]'") from None
    try:
        return Client(address, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise BadInputError(f"cannot reach the Dask scheduler at {address} ({exc})") from None


def map_on_dask(function: Callable[[Any], Any], items: list, address: str,
                ordered: bool = False) -> Iterator[tuple[Any, Any]]:
    """Yield ``(item, function(item))`` as tasks finish on the cluster (``ordered``: in
    the order of ``items``, for results that must be written one after another).

    Tasks are impure (files are their effect) and a worker lost mid-task is
    replaced by running the task again; exceptions come back as they are.
    """
    from distributed import as_completed

    client = _client(address)
    try:
        # No retries of exceptions (they are deterministic); a lost worker's task is
        # rerun by the scheduler anyway.
        futures = {client.submit(function, item, pure=False): item
                   for item in items}
        for future in (futures if ordered else as_completed(futures)):
            yield futures[future], future.result()
    finally:
        client.close()
