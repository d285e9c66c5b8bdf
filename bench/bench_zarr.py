"""Benchmark a big Zarr job on a Dask cluster: 2 workers against 1, and against ``.npy``.

Writes a 16000x16000 RGB float32 Zarr array (chunks 2048x2048x3; zarr's default
codec, zstd, or with ``--codec none`` raw chunks; a smooth pattern plus noise, 3 GB)
and the same values as an ``.npy``, then doubles it to 32000x32000 (12 GB out) with
the default method (bicubic):

- ``upconv scale in.zarr out.zarr -f 2 --dask ADDRESS`` on a
  ``dask.distributed.LocalCluster`` of 1, then 2, single-threaded worker
  processes (a new cluster for each run, started before the clock);
- ``upconv scale in.npy out.npy -f 2``: the streamed ``.npy`` path on one machine
  (two threads, the machine's CPUs).

Each is a whole command timed with ``time.perf_counter``, runs interleaved,
median of ``--repeat``, after an untimed warm-up run (of the ``.npy`` job: the
first 12 GB written to a fresh part of a virtual disk can go at half speed).
Before each run the last run's output is deleted and its writes written back
(``os.sync``, untimed; the page cache is kept, so inputs are read from memory),
so that no run pays for the write-back of the one before it (12 GB, more than
the kernel lets wait). Each worker's peak memory is its process's peak resident
set size (``VmHWM``), asked of the workers after the run; the time the tasks took is
added up over the workers from Dask's task stream (the same tasks: how much longer
each takes beside another worker), and the machine's CPU time while the command ran
(``/proc/stat``): how many CPUs were busy on average, in the workers' processes
(``getrusage``) or elsewhere, and what the host took (``steal``), and what the workers
fetched from each other (edges of blocks). In each round, the disk's own speed, for files
written around the page cache (as ``dd oflag=direct``), from one writer and from two at
once, and from two while two processes keep the CPUs moving memory as the tasks do (on a
virtual machine a disk's writes go through the same CPUs and memory): the least time the
job's writes can take alone, and an estimate of what they take beside the tasks. Targets:
2 workers at least 1.6x faster than 1, every worker under 1 GB, and the 2-worker
Zarr job no slower than the ``.npy`` job by more than 20 %. A few output rows are
checked against upsampling the same input rows in memory.

Needs about 35 GB of free disk (in a temporary folder beside this script) and
``pip install 'upconv[dask]'``::

    python bench/bench_zarr.py [--size 16000] [--chunk 2048] [--repeat 2] [--codec none]
        [--baseline PYTHON]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import upconv


def make_inputs(folder: Path, size: int, chunk: int, codec: str) -> tuple[Path, Path]:
    """The same RGB float32 image as a Zarr array and as an .npy, written band by band."""
    import zarr

    zarr_path, npy_path = folder / "in.zarr", folder / "in.npy"
    compressors = "auto" if codec == "default" else None
    array = zarr.create_array(str(zarr_path), shape=(size, size, 3), chunks=(chunk, chunk, 3),
                              dtype="f4", compressors=compressors)
    npy = np.lib.format.open_memmap(npy_path, mode="w+", dtype=np.float32,
                                    shape=(size, size, 3))
    rng = np.random.default_rng(0)
    x = np.linspace(0, 8 * np.pi, size, dtype=np.float32)
    for first in range(0, size, chunk):
        rows = np.arange(first, min(size, first + chunk), dtype=np.float32)[:, None, None]
        band = 0.5 + 0.25 * np.sin(x[None, :, None] + np.arange(3, dtype=np.float32)) * \
            np.cos(rows * 8 * np.pi / size)
        band = band + rng.normal(0, 0.02, band.shape).astype(np.float32)
        array[first:first + band.shape[0]] = band
        npy[first:first + band.shape[0]] = band
    npy.flush()
    del npy
    return zarr_path, npy_path


@dataclass
class ClusterRun:
    """What one run of a command on a LocalCluster measured."""

    elapsed: float  #: the command's wall time, s
    peaks: list[float]  #: each worker's peak resident memory, MiB
    tasks: float  #: the time its tasks took, added up over the workers (task stream), s
    faults: int  #: the page faults the workers took
    cpu: tuple[float, float, float]  #: CPUs busy, of them in the workers, taken by the host
    moved: tuple[float, float]  #: GB the workers fetched from each other, and in what time


def run_on_cluster(workers: int, command: list[str], python: str | None = None
                   ) -> ClusterRun:
    """Wall time of ``command + [ADDRESS]`` on a new LocalCluster, each worker's peak
    resident memory (MiB), the time its tasks took, added up over the workers (Dask's
    task stream), the page faults the workers took, where the machine's CPU time
    went while the command ran (:func:`_machine_cpu_seconds`), and what the workers
    fetched from one another (a task's inputs computed on another worker: each worker's
    ``transfer_incoming_log``).

    With ``python`` (an interpreter of some environment), the workers are started with
    ``PYTHON -m distributed.cli.dask_worker`` instead, as on a cluster, so that they run
    that environment's upconv (which is checked)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=0 if python else workers, threads_per_worker=1,
                      processes=True, host="127.0.0.1", dashboard_address=":0",
                      memory_limit=0) as cluster, \
            Client(cluster.scheduler_address) as client, \
            _worker_processes(python, cluster.scheduler_address, workers):
        client.wait_for_workers(workers)
        if python:
            expected = subprocess.run([python, "-c", "import upconv; print(upconv.__file__)"],
                                      capture_output=True, text=True, check=True).stdout
            assert set(client.run(_upconv_file).values()) == {expected.strip()}
        client.get_task_stream()  # (starts recording)
        began = time.time()
        workers_before = sum(client.run(_cpu_seconds).values())
        machine_before = _machine_cpu_seconds()
        start = time.perf_counter()
        subprocess.run(command + [cluster.scheduler_address], check=True)
        elapsed = time.perf_counter() - start
        machine_after = _machine_cpu_seconds()
        workers_cpu = sum(client.run(_cpu_seconds).values()) - workers_before
        peaks = client.run(_peak_rss_mb)
        faults = sum(client.run(_minor_faults).values())
        tasks = sum(part["stop"] - part["start"]
                    for record in client.get_task_stream(start=began)
                    for part in record["startstops"] if part["action"] == "compute")
        fetched = client.run(_fetched_since, began)
    busy, steal = (after - before for before, after in zip(machine_before, machine_after,
                                                            strict=True))
    return ClusterRun(elapsed, sorted(peaks.values()), tasks, faults, (
        busy / elapsed, workers_cpu / elapsed, steal / elapsed),
        tuple(sum(f[i] for f in fetched.values()) for i in range(2)))


def _fetched_since(since: float, dask_worker=None) -> tuple[float, float]:
    """GB this worker fetched from other workers since ``since`` (a ``time.time()``),
    and the seconds those fetches took (they overlap the worker's computing)."""
    log = [entry for entry in dask_worker.transfer_incoming_log if entry["start"] >= since]
    return (sum(entry["total"] for entry in log) / 1e9,
            sum(entry["duration"] for entry in log))


def _machine_cpu_seconds() -> tuple[float, float]:
    """The CPU time this machine's CPUs have spent busy, and the time its host took
    from them (``steal``: a virtual machine's), in seconds, from ``/proc/stat`` (NaN
    elsewhere)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(f) for f in stat.readline().split()[1:]]
    except OSError:
        return float("nan"), float("nan")
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle, iowait
    steal = fields[7] if len(fields) > 7 else 0
    return (sum(fields[:8]) - idle - steal) / tick, steal / tick


def _cpu_seconds() -> float:
    """The CPU time (user and system) this process has taken, its threads' included."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def _worker_processes(python: str | None, address: str, workers: int):
    """``dask worker`` processes of the interpreter ``python`` for the scheduler at
    ``address`` while the block runs (none without ``python``)."""
    if not python:
        yield
        return
    process = subprocess.Popen(
        [python, "-m", "distributed.cli.dask_worker", address, "--nworkers", str(workers),
         "--nthreads", "1", "--memory-limit", "0", "--no-dashboard"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        process.terminate()
        process.wait()


def _upconv_file() -> str:
    import upconv as imported

    return imported.__file__


def _minor_faults() -> int:
    """The page faults this process took without reading a disk (``ru_minflt``): each one
    a page the kernel found or zeroed for it, a 4 KiB or a 2 MiB one."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _peak_rss_mb() -> float:
    """This process's peak resident memory (MiB): ``VmHWM`` of ``/proc/self/status``, which
    belongs to the process's own memory map. (``getrusage``'s ``ru_maxrss`` would report
    the benchmark's own peak for a worker forked from it and then exec'd.)"""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _move_memory(started, stop) -> None:
    """Until ``stop`` is set: what a task's engine does to memory, a band of output rows
    (512 x 4096 RGB float32, 25 MB) computed from another, over and over."""
    source = np.ones(512 * 4096 * 3, np.float32)
    band = np.empty_like(source)
    started.set()
    while not stop.is_set():
        np.multiply(source, 0.5, out=band)
        band += source


@contextlib.contextmanager
def _memory_busy(processes: int):
    """``processes`` processes moving memory as the job's tasks do (:func:`_move_memory`),
    each started before the block runs and stopped after it."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    stop = context.Event()
    started = [context.Event() for _ in range(processes)]
    busy = [context.Process(target=_move_memory, args=(event, stop)) for event in started]
    for process in busy:
        process.start()
    try:
        for event in started:
            if not event.wait(timeout=60):
                raise RuntimeError("a process meant to keep the CPUs busy did not start")
        yield
    finally:
        stop.set()
        for process in busy:
            process.join()


def disk_write_speed(folder: Path, writers: int = 1, total: int = 4 << 30,
                     busy: int = 0) -> float:
    """GB/s at which this disk takes new 200 MB files written around the page cache, 8 MiB
    at a time, as GNU dd's ``oflag=direct bs=8M`` writes them, by ``writers`` threads at
    once (each its own files, as each worker writes its own chunks): the disk's own speed,
    which bounds a job that writes 12 GB however many workers it has (NaN where the file
    system refuses ``O_DIRECT``). With ``busy``, while that many processes keep the CPUs
    moving memory, as the job's tasks do, and busier (the tasks leave a CPU idle while
    they wait for their writes, these never do): on a virtual machine the disk's writes
    go through the same memory and CPUs. An estimate of the disk's speed beside the
    tasks, if anything too low."""
    import mmap
    from concurrent.futures import ThreadPoolExecutor

    size, piece = 200 << 20, 8 << 20
    count = total // size // writers * writers
    data = mmap.mmap(-1, size)  # (page-aligned, as O_DIRECT asks)
    data.write(b"\x07" * size)
    view = memoryview(data)

    def write_files(first: int) -> None:
        for index in range(first, count, writers):
            fd = os.open(folder / f"disk_test_{index}",
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_DIRECT", 0))
            try:
                for offset in range(0, size, piece):
                    os.pwrite(fd, view[offset:offset + piece], offset)
            finally:
                os.close(fd)

    os.sync()
    try:
        with _memory_busy(busy):
            start = time.perf_counter()
            try:
                with ThreadPoolExecutor(writers) as pool:  # (os.pwrite lets the GIL go)
                    list(pool.map(write_files, range(writers)))
            except OSError:
                return float("nan")
            finally:
                elapsed = time.perf_counter() - start
    finally:
        for index in range(count):
            (folder / f"disk_test_{index}").unlink(missing_ok=True)
        view.release()
        data.close()
    return count * size / elapsed / 1e9


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def check_rows(zarr_out: Path, npy_in: Path, size: int) -> float:
    """The largest difference between 64 output rows in the middle and the same rows
    computed in memory from the input rows around them (50 rows of context)."""
    import zarr

    source = np.load(npy_in, mmap_mode="r")
    first = size // 2 - 50
    window = np.array(source[first:first + 132])
    expected = upconv.scale(window, 2, "bicubic")[100:164]
    got = zarr.open(str(zarr_out), mode="r")[size:size + 64]
    return float(np.abs(got - expected).max())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=16000)
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--baseline", metavar="PYTHON",
                        help="also time the Zarr jobs with the upconv of another environment, "
                             "interleaved (its interpreter: a venv with an earlier commit "
                             "installed); every Zarr run's workers are then started with "
                             "'python -m distributed.cli.dask_worker'")
    parser.add_argument("--codec", choices=["default", "none"], default="default",
                        help="the input's (and so the output's) compressor: zarr's default "
                             "(zstd) or none (raw chunks, as an .npy is raw)")
    args = parser.parse_args()
    try:
        import distributed  # noqa: F401
        import zarr  # noqa: F401
    except ImportError:
        print("skipped: needs pip install 'upconv[dask]'")
        return 0
    upconv_cmd = [sys.executable, "-m", "upconv", "scale"]
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent) as name:
        folder = Path(name)
        start = time.perf_counter()
        zarr_in, npy_in = make_inputs(folder, args.size, args.chunk, args.codec)
        print(f"inputs: {args.size}x{args.size} RGB float32, chunks {args.chunk}, "
              f"codec {args.codec}, "
              f"written in {time.perf_counter() - start:.0f} s")
        zarr_out, npy_out = folder / "out.zarr", folder / "out.npy"
        # Warm-up, untimed: the first 12 GB written to a fresh part of this machine's
        # (virtual) disk went at half speed, and would have charged it to the first run.
        start = time.perf_counter()
        wall(upconv_cmd + [str(npy_in), str(npy_out), "-f", "2", "-y", "--quiet"])
        npy_out.unlink()
        print(f"warm-up (.npy job, untimed): {time.perf_counter() - start:.1f} s", flush=True)
        runs = [("1 worker", 1, None), ("2 workers", 2, None)]
        if args.baseline:
            runs = [("1 worker", 1, sys.executable), ("2 workers", 2, sys.executable),
                    ("baseline, 1 worker", 1, args.baseline),
                    ("baseline, 2 workers", 2, args.baseline)]
        times: dict[str, list[float]] = {label: [] for label, _, _ in runs}
        times["npy"] = []
        peaks: dict[str, list[float]] = {label: [] for label, _, _ in runs}
        tasks: dict[str, list[float]] = {label: [] for label, _, _ in runs}
        faults: dict[str, list[int]] = {label: [] for label, _, _ in runs}
        cpus: dict[str, list[tuple[float, float, float]]] = {label: [] for label, _, _ in runs}
        moved: dict[str, list[tuple[float, float]]] = {label: [] for label, _, _ in runs}
        disks: dict[str, list[float]] = {"1 writer": [], "2 writers": [],
                                         "2 writers, CPUs busy": []}
        for _ in range(args.repeat):
            for label, workers, python in runs:
                shutil.rmtree(zarr_out, ignore_errors=True)
                os.sync()  # the last run's writes written back: each starts from a quiet disk
                command = [python or sys.executable, "-m", "upconv", "scale"]
                run = run_on_cluster(workers, command + [
                    str(zarr_in), str(zarr_out), "-f", "2", "-y", "--quiet", "--dask"],
                    python)
                times[label].append(run.elapsed)
                peaks[label] += run.peaks
                tasks[label].append(run.tasks)
                faults[label].append(run.faults)
                cpus[label].append(run.cpu)
                moved[label].append(run.moved)
                print(f"{label}: {run.elapsed:.1f} s, worker peaks "
                      f"{', '.join(f'{p:.0f} MiB' for p in run.peaks)}, tasks {run.tasks:.1f} s, "
                      f"page faults {run.faults:,}, CPUs busy {run.cpu[0]:.2f} "
                      f"(workers {run.cpu[1]:.2f}, taken by the host {run.cpu[2]:.2f}), "
                      f"fetched from other workers {run.moved[0]:.2f} GB in {run.moved[1]:.1f} s",
                      flush=True)
            npy_out.unlink(missing_ok=True)
            os.sync()
            times["npy"].append(wall(upconv_cmd + [str(npy_in), str(npy_out), "-f", "2", "-y",
                                                   "--quiet"]))
            print(f"npy: {times['npy'][-1]:.1f} s", flush=True)
            # The disk's speed moves from minute to minute: measured in every round.
            disks["1 writer"].append(disk_write_speed(folder))
            disks["2 writers"].append(disk_write_speed(folder, writers=2))
            disks["2 writers, CPUs busy"].append(disk_write_speed(folder, writers=2,
                                                                  busy=2))
            print("disk: " + ", ".join(f"{k} {v[-1]:.2f} GB/s" for k, v in disks.items()),
                  flush=True)
        disk, disk_two, disk_busy = (statistics.median(v) for v in disks.values())
        error = check_rows(zarr_out, npy_in, args.size)
        one, two, npy = (statistics.median(times[k]) for k in ("1 worker", "2 workers", "npy"))
        worst = max(max(peaks["1 worker"]), max(peaks["2 workers"]))
        print(f"\n{args.size}x{args.size} RGB float32 -> {2 * args.size}x{2 * args.size}, "
              f"bicubic, chunks {args.chunk}, codec {args.codec}, median of {args.repeat}:")
        print(f"  Zarr, LocalCluster of 1 worker:  {one:6.1f} s")
        print(f"  Zarr, LocalCluster of 2 workers: {two:6.1f} s   speed-up {one / two:.2f}x "
              f"(target >= 1.6x)")
        print(f"  .npy streamed on this machine:   {npy:6.1f} s   Zarr/npy {two / npy:.2f} "
              f"(target <= 1.2)")
        print(f"  peak memory per worker: {worst:.0f} MiB "
              f"(target: under 1 GB, {1e9 / 2**20:.0f} MiB)")
        one_tasks, two_tasks = (statistics.median(tasks[k]) for k in ("1 worker", "2 workers"))
        print(f"  the tasks' time, added up over the workers: 1 worker {one_tasks:.1f} s, "
              f"2 workers {two_tasks:.1f} s ({two_tasks / one_tasks - 1:+.0%})")
        one_faults, two_faults = (int(statistics.median(faults[k]))
                                  for k in ("1 worker", "2 workers"))
        print(f"  page faults, added up over the workers: 1 worker {one_faults:,}, "
              f"2 workers {two_faults:,}")
        for label in ("1 worker", "2 workers"):
            busy, in_workers, steal = (statistics.median(c[i] for c in cpus[label])
                                       for i in range(3))
            print(f"  {label}: the machine's {os.cpu_count()} CPUs busy {busy:.2f} on average, "
                  f"{in_workers:.2f} of them in the workers, {busy - in_workers:.2f} "
                  f"elsewhere (scheduler, command, the kernel's own threads); "
                  f"{steal:.2f} taken by the host")
        fetched, fetching = (statistics.median(m[i] for m in moved["2 workers"])
                             for i in range(2))
        print(f"  2 workers fetched {fetched:.2f} GB from each other (tasks' inputs), "
              f"in {fetching:.1f} s of transfers")
        written = sum(f.stat().st_size for f in zarr_out.rglob("*") if f.is_file()) / 1e9
        print(f"  2 workers wrote {written:.1f} GB at {written / two:.2f} GB/s; this disk "
              f"takes direct writes (4 GB, one measure a round) at {disk:.2f} GB/s from one "
              f"writer, {disk_two:.2f} GB/s from two at once, and {disk_busy:.2f} GB/s from "
              f"two while both CPUs move memory (as the tasks do, and busier): writing "
              f"{written:.1f} GB takes it at least {written / disk_two:.1f} s alone, and "
              f"about {written / disk_busy:.1f} s beside such work")
        if args.baseline:
            base_one, base_two = (statistics.median(times[f"baseline, {k}"])
                                  for k in ("1 worker", "2 workers"))
            print(f"  baseline ({args.baseline}): 1 worker {base_one:.1f} s, 2 workers "
                  f"{base_two:.1f} s, speed-up {base_one / base_two:.2f}x; this code's time "
                  f"against it: 1 worker {one / base_one:.2f}, 2 workers {two / base_two:.2f}")
        print(f"  64 middle output rows against the same rows in memory: {error:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
