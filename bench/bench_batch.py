"""Benchmark batches: 200 small images with ``--jobs 2`` against ``--jobs 1``.

Makes 200 different 512x512 RGB PNGs (shifted crops of ``sample_images/
astronaut.png`` and ``coffee.png``) in a temporary folder, then runs
``upconv scale FOLDER -o OUT --factor 2 --method bicubic --quiet`` with
``--jobs 1`` and ``--jobs 2``, interleaved, median of ``--repeat`` wall times
(``time.perf_counter``). Target: ``--jobs 2`` at most 0.6x the time of
``--jobs 1``. It also checks the two runs' outputs are byte-identical, and
compares the batch's time per file with one ``upconv scale`` process for a
single file (what a shell loop would pay per file: start-up and imports).

Run it from anywhere::

    python bench/bench_batch.py [--repeat N] [--files N]
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import upconv

ROOT = Path(__file__).resolve().parent.parent


def make_inputs(folder: Path, count: int) -> None:
    sources = []
    for name in ("astronaut.png", "coffee.png"):
        with Image.open(ROOT / "sample_images" / name) as photo:
            big = photo.convert("RGB").resize((1024, 1024), Image.Resampling.BICUBIC)
        sources.append(np.asarray(big))
    for index in range(count):
        source = sources[index % 2]
        y, x = (index * 37) % 512, (index * 53) % 512
        Image.fromarray(source[y:y + 512, x:x + 512]).save(folder / f"img{index:03d}.png")


def wall(command: list[str], env: dict[str, str] | None = None) -> float:
    """Wall time (s) of one whole command, which must succeed."""
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--files", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        inputs, out1, out2 = (Path(folder) / name for name in ("in", "out1", "out2"))
        inputs.mkdir()
        make_inputs(inputs, args.files)
        base = [sys.executable, "-m", "upconv", "scale", str(inputs), "--factor", "2",
                "--method", "bicubic", "--quiet", "--overwrite"]
        times: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(args.repeat):
            for jobs, out in ((1, out1), (2, out2)):
                shutil.rmtree(out, ignore_errors=True)
                times[jobs].append(wall(base + ["-o", str(out), "--jobs", str(jobs)]))
        identical = all(filecmp.cmp(a, out2 / a.name, shallow=False)
                        for a in sorted(out1.iterdir()))
        single = statistics.median(wall([sys.executable, "-m", "upconv", "scale",
                                         str(inputs / "img000.png"),
                                         str(Path(folder) / "one.png"), "--factor", "2",
                                         "--quiet", "-y"]) for _ in range(3))
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"upconv {upconv.__version__}: {args.files} images 512x512 RGB, x2 bicubic, "
          f"median of {args.repeat}")
    print(f"  --jobs 1: {one:.2f} s   --jobs 2: {two:.2f} s   ratio {two / one:.2f} "
          "(target <= 0.6)")
    print(f"  outputs of --jobs 1 and --jobs 2 byte-identical: {identical}")
    print(f"  per file in the --jobs 1 batch: {one / args.files * 1000:.0f} ms; one "
          f"`upconv scale` process for one file: {single * 1000:.0f} ms")
    return 0 if two / one <= 0.6 and identical else 1


if __name__ == "__main__":
    sys.exit(main())
