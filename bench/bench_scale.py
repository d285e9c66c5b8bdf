"""Benchmark ``upconv.scale`` against Pillow, scipy.ndimage.zoom and (if present) OpenCV.

What it measures, on a 1920x1080 RGB image (``sample_images/coffee.png`` resized with
Pillow LANCZOS) upsampled by a factor of 2:

1. Speed. All contenders run in this one process, timed with ``time.perf_counter``,
   interleaved round-robin (A, B, C, A, B, C, ...) so machine noise hits them all alike;
   each figure is the median of ``--repeat`` runs (default 15) after one untimed warm-up.
   upconv bilinear/bicubic take the image as float32 HxWx3 in [0, 1]; upconv nearest takes
   the uint8 array (it keeps integer dtype, as the CLI does for 8-bit images). The
   scipy.ndimage.zoom baseline zooms each float32 channel separately
   (``grid_mode=True, mode="nearest"``) and stacks them; it is slow, so it runs in only the
   first ``--zoom-repeat`` rounds (default 3). Pillow and OpenCV resize the uint8 image.
   The script also checks that upconv matches per-channel zoom (max abs difference) and
   that upconv nearest equals pixel replication.
2. Peak memory. The image is written to a temporary PNG and ``upconv scale`` is run under
   ``/usr/bin/time -v`` for each method; the maximum resident set size of the whole
   process is compared to 4x the output image held as float32.

Run it from anywhere::

    python bench/bench_scale.py [--repeat N] [--zoom-repeat N]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL
import scipy
from PIL import Image
from scipy.ndimage import zoom

import upconv
from upconv.polyphase import default_threads

ROOT = Path(__file__).resolve().parent.parent
SOURCE_IMAGE = ROOT / "sample_images" / "coffee.png"
WIDTH, HEIGHT, FACTOR = 1920, 1080, 2
OUT_W, OUT_H = WIDTH * FACTOR, HEIGHT * FACTOR
METHODS = ("nearest", "bilinear", "bicubic")
ZOOM_ORDER = {"bilinear": 1, "bicubic": 3}
PIL_FILTER = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
CV2_FLAG_NAME = {"nearest": "INTER_NEAREST", "bilinear": "INTER_LINEAR", "bicubic": "INTER_CUBIC"}
MEMORY_LIMIT_BYTES = 4 * OUT_H * OUT_W * 3 * 4  # 4x the output as float32
MB = 1e6

# Targets: upconv vs per-channel zoom speed-up, and upconv/Pillow time ratio ceilings.
MIN_ZOOM_SPEEDUP = 4.0
MAX_PILLOW_RATIO = {"nearest": 1.5, "bilinear": 1.0, "bicubic": 1.0}

Bench = Callable[[], object]


def load_test_image() -> np.ndarray:
    """The deterministic 1920x1080 RGB uint8 test image."""
    with Image.open(SOURCE_IMAGE) as img:
        rgb = img.convert("RGB")
    return np.asarray(rgb.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS))


def zoom_per_channel(x32: np.ndarray, order: int) -> np.ndarray:
    """scipy.ndimage.zoom applied to each channel separately, then stacked."""
    channels = [
        zoom(x32[..., c], FACTOR, order=order, grid_mode=True, mode="nearest")
        for c in range(x32.shape[2])
    ]
    return np.stack(channels, axis=-1)


def try_import_cv2() -> object | None:
    """OpenCV's module, or None if it is not installed."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def build_contenders(u8: np.ndarray, cv2: object | None) -> dict[tuple[str, str], Bench]:
    """Zero-argument callables keyed by (library, method)."""
    x32 = u8.astype(np.float32) / 255.0
    pil_image = Image.fromarray(u8)
    benches: dict[tuple[str, str], Bench] = {}
    for method in METHODS:
        source = u8 if method == "nearest" else x32
        benches["upconv", method] = lambda s=source, m=method: upconv.scale(s, FACTOR, method=m)
        benches["pillow", method] = lambda f=PIL_FILTER[method]: pil_image.resize((OUT_W, OUT_H), f)
        if cv2 is not None:
            flag = getattr(cv2, CV2_FLAG_NAME[method])
            benches["opencv", method] = lambda f=flag: cv2.resize(
                u8, (OUT_W, OUT_H), interpolation=f)
        if method in ZOOM_ORDER:
            benches["zoom", method] = lambda o=ZOOM_ORDER[method]: zoom_per_channel(x32, o)
    return benches


def time_round_robin(benches: dict[tuple[str, str], Bench], repeat: int,
                     zoom_repeat: int) -> dict[tuple[str, str], float]:
    """Median wall time per contender, runs interleaved round-robin after one warm-up."""
    for bench in benches.values():
        bench()
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in benches}
    for round_index in range(max(repeat, zoom_repeat)):
        for key, bench in benches.items():
            limit = zoom_repeat if key[0] == "zoom" else repeat
            if round_index >= limit:
                continue
            start = time.perf_counter()
            bench()
            samples[key].append(time.perf_counter() - start)
    return {key: statistics.median(times) for key, times in samples.items()}


def check_correctness(u8: np.ndarray) -> list[tuple[str, bool]]:
    """Print upconv-vs-reference differences; return (description, passed) pairs."""
    x32 = u8.astype(np.float32) / 255.0
    results = []
    print("Correctness:")
    for method, order in ZOOM_ORDER.items():
        diff = float(np.max(np.abs(
            upconv.scale(x32, FACTOR, method=method) - zoom_per_channel(x32, order))))
        ok = diff < 1e-5
        print(f"  {method:8s} max |upconv - zoom per channel| = {diff:.3g}"
              f"  {'PASS' if ok else 'FAIL'} (< 1e-5)")
        results.append((f"{method} matches per-channel zoom", ok))
    near = upconv.scale(u8, FACTOR, method="nearest")
    replicated = np.repeat(np.repeat(u8, FACTOR, axis=0), FACTOR, axis=1)
    same = near.dtype == u8.dtype and np.array_equal(near, replicated)
    print(f"  nearest  equals pixel replication (dtype {near.dtype}): "
          f"{'PASS' if same else 'FAIL'}")
    results.append(("nearest equals pixel replication", same))
    return results


def print_environment(cv2: object | None) -> None:
    cv2_version = getattr(cv2, "__version__", "not installed")
    print(f"Python {platform.python_version()}, numpy {np.__version__}, "
          f"scipy {scipy.__version__}, Pillow {PIL.__version__}, OpenCV {cv2_version}")
    print(f"CPUs: os.cpu_count() = {os.cpu_count()}, "
          f"upconv.polyphase.default_threads() = {default_threads()}")


def speed_rows(medians: dict[tuple[str, str], float]) -> list[dict[str, float | None]]:
    rows = []
    for method in METHODS:
        ours, pil = medians["upconv", method], medians["pillow", method]
        zoomed = medians.get(("zoom", method))
        rows.append({
            "method": method, "upconv": ours, "pillow": pil, "ratio": ours / pil,
            "zoom": zoomed, "speedup": zoomed / ours if zoomed is not None else None,
            "opencv": medians.get(("opencv", method)),
        })
    return rows


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def print_speed_table(rows: list[dict], has_cv2: bool) -> None:
    header = (f"{'method':9s} {'upconv s':>9s} {'Pillow s':>9s} {'upconv/Pillow':>14s} "
              f"{'zoom/ch s':>10s} {'vs zoom':>8s}")
    if has_cv2:
        header += f" {'OpenCV s':>9s}"
    print(header)
    for row in rows:
        line = (f"{row['method']:9s} {row['upconv']:9.4f} {row['pillow']:9.4f} "
                f"{row['ratio']:14.2f} {fmt(row['zoom'], '10.4f'):>10s} "
                f"{fmt(row['speedup'], '.1f', 'x'):>8s}")
        if has_cv2:
            line += f" {fmt(row['opencv'], '9.4f'):>9s}"
        print(line)


def print_markdown_table(rows: list[dict], has_cv2: bool) -> None:
    cols = ["Method", "upconv (s)", "Pillow (s)", "upconv / Pillow",
            "zoom per channel (s)", "speed-up vs zoom"]
    if has_cv2:
        cols.append("OpenCV (s)")
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(cols) - 1)) + "|")
    for row in rows:
        cells = [row["method"], f"{row['upconv']:.4f}", f"{row['pillow']:.4f}",
                 f"{row['ratio']:.2f}", fmt(row["zoom"], ".3f"),
                 fmt(row["speedup"], ".1f", "x")]
        if has_cv2:
            cells.append(fmt(row["opencv"], ".4f"))
        print("| " + " | ".join(cells) + " |")


def speed_targets(rows: list[dict]) -> list[tuple[str, bool]]:
    results = []
    for row in rows:
        method = row["method"]
        if row["speedup"] is not None:
            results.append((f"{method}: >= {MIN_ZOOM_SPEEDUP:g}x faster than per-channel zoom "
                            f"(got {row['speedup']:.1f}x)", row["speedup"] >= MIN_ZOOM_SPEEDUP))
        limit = MAX_PILLOW_RATIO[method]
        results.append((f"{method}: upconv/Pillow <= {limit:g} (got {row['ratio']:.2f})",
                        row["ratio"] <= limit))
    return results


def upconv_command() -> list[str]:
    """How to run the ``upconv`` CLI with this interpreter's environment."""
    script = Path(sys.executable).parent / "upconv"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "upconv"]


def peak_rss_bytes(time_bin: str, args: list[str]) -> int:
    """Run ``args`` under ``time -v`` and return its maximum resident set size in bytes."""
    proc = subprocess.run([time_bin, "-v", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    match = re.search(r"Maximum resident set size \(kbytes\):\s*(\d+)", proc.stderr)
    if match is None:
        raise RuntimeError(f"no maximum RSS in time -v output:\n{proc.stderr}")
    return int(match.group(1)) * 1024


def measure_memory(u8: np.ndarray) -> list[tuple[str, bool]]:
    """Peak RSS of ``upconv scale`` per method, against 4x the float32 output."""
    time_bin = "/usr/bin/time"
    if not shutil.which(time_bin):
        print(f"Peak memory: skipped ({time_bin} not found)")
        return []
    print(f"Peak memory of `upconv scale in.png out.png --factor {FACTOR} --method M` "
          f"(max RSS via {time_bin} -v)")
    print(f"  limit: 4 x output as float32 = 4 x {OUT_W}*{OUT_H}*3*4 B = "
          f"{MEMORY_LIMIT_BYTES / MB:.1f} MB")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.png"
        Image.fromarray(u8).save(src)
        for method in ("bicubic", "bilinear", "nearest"):
            out = Path(tmp) / f"out-{method}.png"
            rss = peak_rss_bytes(time_bin, [*upconv_command(), "scale", str(src), str(out),
                                            "--factor", str(FACTOR), "--method", method,
                                            "--overwrite"])
            ok = rss <= MEMORY_LIMIT_BYTES
            print(f"  {method:8s} {rss / MB:7.1f} MB  {'PASS' if ok else 'FAIL'}")
            results.append((f"{method}: peak RSS {rss / MB:.1f} MB <= "
                            f"{MEMORY_LIMIT_BYTES / MB:.1f} MB", ok))
    return results


def print_summary(results: list[tuple[str, bool]]) -> None:
    print("Targets:")
    for description, ok in results:
        print(f"  [{'PASS' if ok else 'FAIL'}] {description}")
    failed = sum(not ok for _, ok in results)
    print(f"{len(results) - failed} passed, {failed} failed")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=15,
                        help="timed runs per contender; the median is reported (default 7)")
    parser.add_argument("--zoom-repeat", type=int, default=3,
                        help="timed runs of the slow per-channel zoom baseline (default 3)")
    args = parser.parse_args()
    if args.repeat < 1 or args.zoom_repeat < 1:
        parser.error("--repeat and --zoom-repeat must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    cv2 = try_import_cv2()
    print(f"upconv {upconv.__version__} scale benchmark: {WIDTH}x{HEIGHT} RGB -> "
          f"{OUT_W}x{OUT_H} (factor {FACTOR}), image from {SOURCE_IMAGE.relative_to(ROOT)}")
    print_environment(cv2)
    if cv2 is None:
        print("OpenCV: skipped (cv2 is not installed)")
    u8 = load_test_image()
    print()
    results = check_correctness(u8)
    print()
    print(f"Speed: median of {args.repeat} runs (per-channel zoom: {args.zoom_repeat} runs), "
          "interleaved round-robin, one warm-up each; time.perf_counter")
    print("  upconv bilinear/bicubic: float32 HxWx3 in [0,1]; upconv nearest: uint8; "
          "Pillow/OpenCV: uint8; zoom: float32 per channel")
    medians = time_round_robin(build_contenders(u8, cv2), args.repeat, args.zoom_repeat)
    rows = speed_rows(medians)
    print_speed_table(rows, cv2 is not None)
    results += speed_targets(rows)
    print()
    print("Markdown:")
    print()
    print_markdown_table(rows, cv2 is not None)
    print()
    results += measure_memory(u8)
    print()
    print_summary(results)
    return 0 if all(ok for _, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
