"""Benchmark ``upconv report`` against the ``upconv scale`` run that makes its input.

The issue's comparison: ``upconv report`` on a 3840x2160 RGB image must take no
longer than ``upconv scale --method bilinear`` producing that image from a
1920x1080 one. Both run as whole commands (``python -m upconv ...``), side by
side, interleaved, median of ``--repeat`` runs of wall time
(``time.perf_counter``). The report is the full one: period detection over
2-8, spectral peak, tables; ``--factor`` is not given. The 1920x1080 input is
``sample_images/coffee.png`` resized with Pillow LANCZOS. It also times the
two in one process (``build_report`` vs ``upconv.scale``) to show where the
time goes.

Run it from anywhere::

    python bench/bench_report.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import upconv
from upconv.report import build_report

ROOT = Path(__file__).resolve().parent.parent


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with Image.open(ROOT / "sample_images" / "coffee.png") as photo:
        small = photo.convert("RGB").resize((1920, 1080), Image.Resampling.LANCZOS)
    with tempfile.TemporaryDirectory() as folder:
        source, big = Path(folder) / "in.png", Path(folder) / "big.png"
        small.save(source)
        scale = [sys.executable, "-m", "upconv", "scale", str(source), str(big), "--factor",
                 "2", "--method", "bilinear", "--quiet", "--overwrite"]
        report = [sys.executable, "-m", "upconv", "report", str(big)]
        wall(scale)
        wall(report)
        scale_times, report_times = [], []
        for _ in range(args.repeat):
            scale_times.append(wall(scale))
            report_times.append(wall(report))
    scale_s, report_s = statistics.median(scale_times), statistics.median(report_times)
    print(f"upconv {upconv.__version__}: whole commands, median of {args.repeat} interleaved")
    print(f"  upconv scale 1920x1080 -> 3840x2160 --method bilinear: {scale_s:.2f} s")
    print(f"  upconv report on that 3840x2160 image:                  {report_s:.2f} s")
    print(f"  ratio report / scale: {report_s / scale_s:.2f} (target <= 1)")

    values = np.asarray(small, dtype=np.float32) / 255
    big_values = upconv.scale(values, 2, method="bilinear")
    start = time.perf_counter()
    upconv.scale(values, 2, method="bilinear")
    compute_scale = time.perf_counter() - start
    start = time.perf_counter()
    build_report(big_values)
    compute_report = time.perf_counter() - start
    print(f"  in one process: scale {compute_scale:.3f} s, build_report {compute_report:.3f} s "
          "(the commands also decode and encode PNGs)")
    return 0 if report_s <= scale_s else 1


if __name__ == "__main__":
    sys.exit(main())
