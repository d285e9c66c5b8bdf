"""Benchmark the polyphase transposed convolution against zero insertion and PyTorch.

What it measures, on a 1920x1080 RGB float32 image (``sample_images/coffee.png``
resized with Pillow LANCZOS), for random (non-separable) kernels: factor 2 with
4x4 and 6x6 kernels, factor 4 with an 8x8 kernel.

1. Speed, all contenders side by side in this one process, interleaved
   round-robin, median of ``--repeat`` runs after a warm-up, timed with
   ``time.perf_counter``:

   - upconv: ``transposed_conv`` (PyTorch geometry, zero boundary, padding
     ``(K - s) // 2``) on the H x W x 3 array;
   - zero insertion plus ``scipy.ndimage.convolve`` on each channel (the
     textbook route, :func:`upconv.transpose.zero_insertion_transpose`);
   - ``torch.nn.functional.conv_transpose2d(..., groups=3)`` if torch is
     installed (skipped otherwise), with torch's threads set to upconv's.

   It also checks that the three agree.
2. Peak memory of a whole ``upconv scale in.png out.png --method transpose``
   process with the 6x6 kernel (maximum resident set size from
   ``/usr/bin/time -v``), against 3x the output held as float32.

Run it from anywhere::

    python bench/bench_transpose.py [--repeat N]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

import upconv
from upconv.kernels import Kernel
from upconv.options import Boundary
from upconv.polyphase import default_threads
from upconv.transpose import transposed_conv, zero_insertion_transpose

ROOT = Path(__file__).resolve().parent.parent
CASES = [(2, 4), (2, 6), (4, 8)]  # (stride, kernel size)


def test_image() -> np.ndarray:
    with Image.open(ROOT / "sample_images" / "coffee.png") as photo:
        big = photo.convert("RGB").resize((1920, 1080), Image.Resampling.LANCZOS)
    return np.asarray(big, dtype=np.float32) / 255


def median_times(contenders: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Round-robin timing: every contender once per round, so noise hits all alike."""
    for run in contenders.values():
        run()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeat):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def torch_contender(image: np.ndarray, weights: np.ndarray, stride: int, padding: int):
    try:
        import torch
    except ImportError:
        return None, None
    torch.set_num_threads(default_threads())
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    w = torch.from_numpy(np.repeat(weights[None, None], 3, axis=0).astype(np.float32))

    def run() -> np.ndarray:
        with torch.no_grad():
            return torch.nn.functional.conv_transpose2d(x, w, stride=stride, padding=padding,
                                                        groups=3)

    return run, torch.__version__


def speed(image: np.ndarray, repeat: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for stride, size in CASES:
        weights = rng.random((size, size)) * 2 / size ** 2 * stride ** 2
        padding = (size - stride) // 2
        kernel = Kernel(weights, stride=stride)
        contenders: dict[str, Callable[[], object]] = {
            "upconv": lambda k=kernel, p=padding: transposed_conv(image, k, Boundary.ZERO, p),
            "zero insertion": lambda w=weights, s=stride, p=padding: [
                zero_insertion_transpose(image[:, :, c], w, s, p) for c in range(3)],
        }
        torch_run, torch_version = torch_contender(image, weights, stride, padding)
        if torch_run is not None:
            contenders["torch"] = torch_run
        ours = transposed_conv(image, kernel, Boundary.ZERO, padding)
        reference = np.stack([zero_insertion_transpose(image[:, :, c], weights, stride, padding)
                              for c in range(3)], axis=-1)
        agree = float(np.abs(ours - reference).max())
        if torch_run is not None:
            theirs = torch_run()[0].numpy().transpose(1, 2, 0)
            agree = max(agree, float(np.abs(ours - theirs).max()))
        times = median_times(contenders, repeat)
        rows.append({"case": f"x{stride}, {size}x{size}", "times": times, "agree": agree,
                     "torch": torch_version})
    return rows


def peak_memory() -> tuple[float, float] | None:
    time_binary = Path("/usr/bin/time")
    if not time_binary.exists():
        return None
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "in.png"
        Image.fromarray((test_image() * 255).round().astype(np.uint8)).save(source)
        kernel = Path(folder) / "k6.npy"
        np.save(kernel, np.random.default_rng(0).random((6, 6)) / 9)
        done = subprocess.run([str(time_binary), "-v", sys.executable, "-m", "upconv", "scale",
                               str(source), str(Path(folder) / "out.png"), "--method",
                               "transpose", "--kernel", str(kernel), "--factor", "2", "-y"],
                              capture_output=True, text=True, check=True)
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    assert match, done.stderr
    peak = int(match.group(1)) * 1024 / 1e6
    limit = 3 * 3840 * 2160 * 3 * 4 / 1e6
    return peak, limit


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per contender")
    args = parser.parse_args()
    image = test_image()
    print(f"upconv {upconv.__version__} transposed-convolution benchmark: 1920x1080 RGB "
          f"float32, {default_threads()} threads; median of {args.repeat} interleaved runs")
    rows = speed(image, args.repeat)
    if rows[0]["torch"] is None:
        print("torch: not installed, comparison skipped")
    else:
        print(f"torch {rows[0]['torch']} (conv_transpose2d, groups=3, "
              f"{default_threads()} threads)")
    failures = 0
    print("\n| Case | upconv (s) | zero insertion + ndimage.convolve (s) | speed-up | "
          "torch (s) | speed-up | max difference |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        t = row["times"]
        vs_zero = t["zero insertion"] / t["upconv"]
        torch_cells = "n/a | n/a"
        failures += vs_zero < 3
        if "torch" in t:
            vs_torch = t["torch"] / t["upconv"]
            torch_cells = f"{t['torch']:.3f} | {vs_torch:.1f}x"
            failures += vs_torch < 1.5
        failures += row["agree"] > 1e-4
        print(f"| {row['case']} | {t['upconv']:.3f} | {t['zero insertion']:.3f} | "
              f"{vs_zero:.1f}x | {torch_cells} | {row['agree']:.1e} |")
    memory = peak_memory()
    if memory is None:
        print("\npeak memory: /usr/bin/time not found, skipped")
    else:
        peak, limit = memory
        failures += peak > limit
        print(f"\npeak RSS of `upconv scale in.png out.png --method transpose --kernel k6.npy "
              f"--factor 2`: {peak:.0f} MB (limit 3 x output as float32 = {limit:.0f} MB)")
    print(f"\ntargets: >= 3x zero insertion, >= 1.5x torch, peak memory within limit: "
          f"{'all met' if not failures else f'{failures} missed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
