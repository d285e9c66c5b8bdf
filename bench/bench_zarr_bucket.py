"""What a Zarr job's workers hold when its output is a store in a bucket: each worker's
peak memory, writing to moto's S3 server on loopback, beside the same job into a local
store.

Writes an RGB float32 Zarr array (``--size``, chunks 2048x2048x3 as in
``bench/bench_zarr.py``; zarr's default codec, zstd, or with ``--codec none`` raw
chunks) and doubles it bicubic, on a ``dask.distributed.LocalCluster`` of 2
single-threaded worker processes (a new cluster for each run):

- ``upconv scale in.zarr s3://bench/out.zarr -f 2 --dask ADDRESS`` (the credentials and
  the endpoint given with ``--storage-option``, which travel with the tasks), each
  4096x4096x3 output chunk (201 MB before compression) sent to S3 as its rows are
  computed, in parts of ``upconv.storage.PART_SIZE``;
- ``upconv scale in.zarr out.zarr -f 2 --dask ADDRESS``, into a local store.

A worker's memory depends on the chunks, not on the array's size, so the array is
smaller than the 16000x16000 of ``bench/bench_zarr.py`` by default (moto keeps the
objects in memory). Each worker's peak memory is its process's peak resident set size
(``VmHWM``); the times are whole commands, median of ``--repeat``. The bucket's output is
read back and compared with the local one. Targets (the Zarr issue's): every worker
under 1 GB.

Needs ``pip install 'upconv[dask,cloud]' 'moto[server]' waitress``; skipped cleanly
without moto::

    python bench/bench_zarr_bucket.py [--size 8192] [--repeat 2] [--codec none]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_s3 import start_moto  # noqa: E402
from bench_zarr import make_inputs, run_on_cluster  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--codec", choices=["default", "none"], default="default")
    args = parser.parse_args()
    started = start_moto()
    if started is None:
        return 0
    server, endpoint, _, _ = started
    try:
        folder = Path(tempfile.mkdtemp(prefix="tmp_zarr_bucket_", dir=Path(__file__).parent))
        try:
            return _run(args, folder, endpoint)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        server.stop()


def _run(args: argparse.Namespace, folder: Path, endpoint: str) -> int:
    import zarr

    zarr_in, _ = make_inputs(folder, args.size, args.chunk, args.codec)
    bucket_out, local_out = "s3://bench/out.zarr", folder / "out.zarr"
    upconv = [sys.executable, "-m", "upconv", "scale", str(zarr_in)]
    options = ["--storage-option", f"endpoint_url={endpoint}", "--storage-option", "key=bench",
               "--storage-option", "secret=bench"]
    runs = {"into the bucket": upconv + [bucket_out, "-f", "2", "-y", "--quiet", *options,
                                         "--dask"],
            "into a local store": upconv + [str(local_out), "-f", "2", "-y", "--quiet",
                                            "--dask"]}
    times: dict[str, list[float]] = {label: [] for label in runs}
    peaks: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(args.repeat):
        for label, command in runs.items():
            shutil.rmtree(local_out, ignore_errors=True)
            os.sync()
            run = run_on_cluster(2, command)
            times[label].append(run.elapsed)
            peaks[label].extend(run.peaks)
            print(f"{label}: {run.elapsed:.1f} s, worker peaks "
                  f"{', '.join(f'{p:.0f} MiB' for p in run.peaks)}", flush=True)
    storage_options = {"endpoint_url": endpoint, "key": "bench", "secret": "bench"}
    got = zarr.open_array(bucket_out, mode="r", storage_options=storage_options)
    local = zarr.open_array(str(local_out), mode="r")
    rows = slice(args.size - 32, args.size + 32)
    difference = float(np.abs(got[rows] - local[rows]).max())
    print(f"\n{args.size}x{args.size} RGB float32 -> {2 * args.size}x{2 * args.size}, "
          f"bicubic, chunks {args.chunk} -> {2 * args.chunk}, codec {args.codec}, "
          f"2 workers, median of {args.repeat}:")
    for label in runs:
        print(f"  {label}: {statistics.median(times[label]):.1f} s, peak memory per worker "
              f"{max(peaks[label]):.0f} MiB (target: under 1 GB, {1e9 / 2**20:.0f} MiB)")
    print(f"  64 middle output rows, bucket against local: largest difference "
          f"{difference:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
