"""Benchmark a big ``.npy`` job: peak memory of streaming a 16000x16000 float32 image 2x.

Writes a 16000x16000 float32 gray ``.npy`` (1 GB; a smooth pattern plus noise)
to a temporary folder, then runs ``upconv scale big.npy out.npy --factor 2``
(bilinear by default, ``--method`` to change) under ``/usr/bin/time -v``: the
output is 32000x32000 float32, 4 GB. The job is tiled automatically (it is
over 64 megapixels) and streamed, so neither array is ever whole in memory.
Prints the wall time and the peak resident memory against the 1.5 GB target,
and checks a few output rows against upsampling the same input rows directly.

Run it from anywhere (needs about 5 GB of free disk)::

    python bench/bench_big.py [--method bilinear] [--size 16000]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import upconv


def make_input(path: Path, size: int) -> None:
    """A float32 size x size image written band by band (never whole in memory)."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(size, size))
    rng = np.random.default_rng(0)
    x = np.linspace(0, 8 * np.pi, size, dtype=np.float32)
    for first in range(0, size, 1000):
        rows = np.arange(first, min(size, first + 1000), dtype=np.float32)[:, None]
        band = 0.5 + 0.25 * np.sin(x[None, :]) * np.cos(rows * 8 * np.pi / size)
        band += rng.normal(0, 0.02, band.shape).astype(np.float32)
        out[first:first + band.shape[0]] = band
        out.flush()
    del out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", default="bilinear")
    parser.add_argument("--size", type=int, default=16000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent) as folder:
        source, target = Path(folder) / "big.npy", Path(folder) / "out.npy"
        make_input(source, args.size)
        command = [sys.executable, "-m", "upconv", "scale", str(source), str(target),
                   "--factor", "2", "--method", args.method, "--overwrite"]
        timer = Path("/usr/bin/time")
        start = time.perf_counter()
        done = subprocess.run(([str(timer), "-v"] if timer.exists() else []) + command,
                              capture_output=True, text=True, check=True)
        elapsed = time.perf_counter() - start
        match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
        peak = int(match.group(1)) * 1024 / 1e9 if match else None
        out = np.load(target, mmap_mode="r")
        middle = args.size // 2
        rows = np.load(source, mmap_mode="r")[middle - 40:middle + 40]  # 35 rows of context
        expected = upconv.scale(np.array(rows), 2, method=args.method)
        got = np.array(out[2 * middle - 10:2 * middle + 10])
        check = float(np.abs(got - expected[70:90]).max())
        shape = out.shape
        del out
    print(f"upconv {upconv.__version__}: {args.size}x{args.size} float32 .npy -> "
          f"{shape[1]}x{shape[0]} float32 .npy ({shape[0] * shape[1] * 4 / 1e9:.1f} GB), "
          f"--method {args.method}")
    print(f"  wall time {elapsed:.1f} s")
    if peak is None:
        print("  peak memory: /usr/bin/time not found, skipped")
        return 0
    print(f"  peak resident memory {peak:.2f} GB (target < 1.5 GB)")
    print(f"  middle rows vs direct upsampling of those rows: max difference {check:.1e}")
    return 0 if peak < 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
