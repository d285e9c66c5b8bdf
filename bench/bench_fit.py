"""Benchmark ``upconv fit``: its time against one transposed-convolution pass, and its memory.

The job of the issue: fit a 12x12 factor-2 kernel on a 1920x1080 LOW /
3840x2160 HIGH RGB pair (``sample_images/coffee.png`` resized to 3840x2160
with Pillow LANCZOS as HIGH; LOW is its 2x2 area average), and compare with
one ``scale --method transpose`` pass with that kernel on the same LOW image.

1. In one process, interleaved round-robin, median of ``--repeat`` runs
   (``time.perf_counter``): ``upconv.fit_kernel`` on the 8-bit pair (as the CLI
   passes it) against ``upconv.transposed_conv`` on LOW as float32.
2. The same as whole commands: ``upconv fit low.png high.png --size 12 -o k.json``
   against ``upconv scale low.png out.png --method transpose --kernel k.json``
   (wall time, median of 3), and the fit process's peak resident memory
   (``/usr/bin/time -v``) against 2x the two images held as float32.

Run it from anywhere::

    python bench/bench_fit.py [--repeat N]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import upconv
from upconv.degrade import degrade
from upconv.fit import fit_kernel
from upconv.polyphase import default_threads
from upconv.transpose import transposed_conv

ROOT = Path(__file__).resolve().parent.parent


def test_pair() -> tuple[np.ndarray, np.ndarray]:
    with Image.open(ROOT / "sample_images" / "coffee.png") as photo:
        high = np.asarray(photo.convert("RGB").resize((3840, 2160), Image.Resampling.LANCZOS))
    low = degrade(high / 255.0, 2, "area")
    return np.rint(low * 255).astype(np.uint8), high


def in_process(low: np.ndarray, high: np.ndarray, repeat: int) -> tuple[float, float]:
    kernel = fit_kernel([(low, high)], size=12)
    low_float = low.astype(np.float32) / 255
    fit_times, pass_times = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        fit_kernel([(low, high)], size=12)
        fit_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        transposed_conv(low_float, kernel)
        pass_times.append(time.perf_counter() - start)
    return statistics.median(fit_times), statistics.median(pass_times)


def run_timed(command: list[str]) -> tuple[float, float | None]:
    """Wall time of a command, and its peak RSS in MB when /usr/bin/time is there."""
    timer = Path("/usr/bin/time")
    prefix = [str(timer), "-v"] if timer.exists() else []
    start = time.perf_counter()
    done = subprocess.run(prefix + command, capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - start
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    return elapsed, (int(match.group(1)) * 1024 / 1e6 if match else None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    low, high = test_pair()
    print(f"upconv {upconv.__version__} fit benchmark: 12x12 kernel, x2, LOW 1920x1080 / HIGH "
          f"3840x2160 RGB; {default_threads()} threads")
    fit_s, pass_s = in_process(low, high, args.repeat)
    print(f"\nin one process (median of {args.repeat}, interleaved):")
    print(f"  fit_kernel {fit_s:.3f} s, transposed_conv {pass_s:.3f} s, "
          f"ratio {fit_s / pass_s:.2f} (target <= 5)")
    failures = fit_s / pass_s > 5
    with tempfile.TemporaryDirectory() as folder:
        paths = {name: str(Path(folder) / name) for name in ("low.png", "high.png", "k.json",
                                                             "out.png")}
        Image.fromarray(low).save(paths["low.png"])
        Image.fromarray(high).save(paths["high.png"])
        fit_command = [sys.executable, "-m", "upconv", "fit", paths["low.png"],
                       paths["high.png"], "--size", "12", "-o", paths["k.json"], "-y"]
        scale_command = [sys.executable, "-m", "upconv", "scale", paths["low.png"],
                         paths["out.png"], "--method", "transpose", "--kernel", paths["k.json"],
                         "-y"]
        run_timed(fit_command)
        fits, scales, peaks = [], [], []
        for _ in range(3):
            elapsed, peak = run_timed(fit_command)
            fits.append(elapsed)
            peaks.append(peak)
            scales.append(run_timed(scale_command)[0])
    fit_wall, scale_wall = statistics.median(fits), statistics.median(scales)
    print("\nwhole commands (median of 3, interleaved):")
    print(f"  upconv fit {fit_wall:.2f} s, upconv scale --method transpose {scale_wall:.2f} s, "
          f"ratio {fit_wall / scale_wall:.2f}")
    limit = 2 * (1920 * 1080 + 3840 * 2160) * 3 * 4 / 1e6
    if peaks[0] is None:
        print("peak memory: /usr/bin/time not found, skipped")
    else:
        peak = max(peaks)
        failures += peak > limit
        print(f"  peak RSS of upconv fit: {peak:.0f} MB (limit: 2 x the two images as float32 "
              f"= {limit:.0f} MB)")
    print("\ntargets:", "all met" if not failures else f"{failures} missed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
