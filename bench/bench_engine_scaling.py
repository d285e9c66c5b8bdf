"""How the Zarr job's own computing scales from 1 process to 2 on this machine, with no
disk, no Dask and no zarr: a ceiling for ``bench/bench_zarr.py``'s speed-up.

Each process resamples a middle block of that benchmark's job (16000x16000 RGB float32 in
chunks of 2048, doubled with bicubic: a 2048x2048 core with its halo, into 4096x4096
outputs, in bands of 512 rows computed into a reused buffer as a job's task computes
them; the rows are then dropped where a task writes them). One process resamples 2N
blocks; then two processes resample N each, at the same time (started together at a
barrier; the slower one's time counts, as the slower worker's does in a job). The
speed-up is the first time over the second. The same is measured for a plain copy of a
201 MB array (the memory system's own scaling: one output block's bytes), and for a loop
that stays in the CPU's own cache (the CPUs' scaling). Medians of ``--repeat``
interleaved runs::

    python bench/bench_engine_scaling.py [--blocks 4] [--repeat 5]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time

import numpy as np


def _block_work(blocks: int) -> float:
    """Seconds to resample ``blocks`` middle blocks of the benchmark's job."""
    from upconv.zarr_arrays import plan_zarr_job, scale_block

    job = plan_zarr_job((16000, 16000, 3), np.dtype(np.float32), "yxc", (2048, 2048, 3),
                        method="bicubic", factor=(2.0, 2.0))
    first_row, last_row, r0, r1 = job.rows.window(1)
    first_col, last_col, c0, c1 = job.cols.window(1)
    rng = np.random.default_rng(0)
    window = rng.random((last_row - first_row, last_col - first_col, 3), dtype=np.float32)
    bands: list[np.ndarray] = []

    def band_buffer(shape, dtype):  # (one buffer, reused: as a task's)
        if not bands:
            bands.append(np.empty(shape, dtype))
        return bands[0][:shape[0]]

    def drop(rows: np.ndarray) -> None:
        pass

    scale_block(window, job, (r0, r1), (c0, c1), sink=drop, band_buffer=band_buffer)  # warm
    return _timed(lambda: scale_block(window, job, (r0, r1), (c0, c1), sink=drop,
                                      band_buffer=band_buffer), blocks)


def _copy_work(blocks: int) -> float:
    """Seconds to copy a 201 MB array (an output block's bytes) ``blocks`` times."""
    source = np.ones(4096 * 4096 * 3, np.float32)
    target = np.empty_like(source)
    np.copyto(target, source)
    return _timed(lambda: np.copyto(target, source), blocks)


def _cached_work(blocks: int) -> float:
    """Seconds for ``blocks`` rounds of arithmetic on arrays that fit in a CPU's own
    cache (256 KB)."""
    values = np.ones(32768, np.float32)

    def rounds() -> None:
        for _ in range(3000):
            np.multiply(values, 1.0001, out=values)

    rounds()
    return _timed(rounds, blocks)


def _timed(work, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        work()
    return time.perf_counter() - start


WORKS = {"resampling a block (the engine)": _block_work,
         "copying 201 MB (memory)": _copy_work,
         "arithmetic in the CPU's cache": _cached_work}


def _child(name: str, blocks: int, barrier, results) -> None:
    work = WORKS[name]
    work(1)  # (imports and first allocations, before the clock)
    barrier.wait()
    results.put(work(blocks))


def run(name: str, processes: int, blocks: int) -> float:
    """Seconds for ``processes`` processes, each doing ``blocks`` blocks at the same time:
    the slowest one's."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    children = [context.Process(target=_child, args=(name, blocks, barrier, results))
                for _ in range(processes)]
    for child in children:
        child.start()
    times = [results.get() for _ in children]
    for child in children:
        child.join()
    return max(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, default=4,
                        help="blocks per process when two run (one process does twice as many)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    one: dict[str, list[float]] = {name: [] for name in WORKS}
    two: dict[str, list[float]] = {name: [] for name in WORKS}
    for _ in range(args.repeat):
        for name in WORKS:
            one[name].append(run(name, 1, 2 * args.blocks))
            two[name].append(run(name, 2, args.blocks))
            print(f"{name}: 1 process {one[name][-1]:.2f} s, 2 processes "
                  f"{two[name][-1]:.2f} s", flush=True)
    print(f"\nThe same work in 1 process and split over 2 at once, medians of {args.repeat}:")
    for name in WORKS:
        alone, together = statistics.median(one[name]), statistics.median(two[name])
        print(f"  {name:34s} 1 process {alone:6.2f} s, 2 processes {together:6.2f} s, "
              f"speed-up {alone / together:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
