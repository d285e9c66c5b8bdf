"""PNG writing: upconv's ``--compression fast`` and ``small`` against Pillow and libvips.

The picture is a 3840x2160 RGB output of upconv (a 1920x1080 mosaic of the
CC0 sample photos doubled, bicubic: what ``upconv scale`` writes in the
README's main job). Each encoder writes the same pixels to memory; times are
medians of ``--repeat`` interleaved runs in this process
(``time.perf_counter``). libvips (``pyvips`` is not a dependency) is run as
``vips copy in.png out.png`` and timed as a whole command, start-up
included, when it is installed.

``--libraries`` also deflates the same filtered rows with each candidate
library and level (ISA-L, zlib-ng when installed, the standard zlib): the
measurements behind the choice of ISA-L.

    python bench/bench_png_write.py [--repeat 5] [--libraries]
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cli import mosaic  # noqa: E402

import upconv  # noqa: E402
from upconv.png import encode_png  # noqa: E402
from upconv.samples import from_float  # noqa: E402


def pillow(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(samples).save(buffer, format="PNG")  # zlib level 6, adaptive filters
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--libraries", action="store_true",
                        help="also compare deflate libraries on the filtered rows")
    args = parser.parse_args()
    low = mosaic(1920, 1080).astype(np.float32) / 255
    samples = from_float(upconv.scale(low, 2, method="bicubic"), np.uint8)
    encoders = {
        "upconv --compression fast (ISA-L)": lambda: encode_png(samples, compression="fast"),
        "upconv --compression small (zlib 6)": lambda: encode_png(samples, compression="small"),
        "Pillow (zlib 6, adaptive filters)": lambda: pillow(samples),
    }
    folder = Path(tempfile.mkdtemp(prefix="upconv-bench-png-"))
    try:
        source = folder / "in.png"
        source.write_bytes(encode_png(samples))
        if shutil.which("vips"):
            def vips() -> bytes:
                subprocess.run(["vips", "copy", str(source), str(folder / "out.png")],
                               check=True)
                return (folder / "out.png").read_bytes()
            encoders["vips copy (default, whole command)"] = vips
        times: dict[str, list[float]] = {name: [] for name in encoders}
        sizes: dict[str, int] = {}
        for _ in range(args.repeat):
            for name, encode in encoders.items():
                start = time.perf_counter()
                data = encode()
                times[name].append(time.perf_counter() - start)
                sizes[name] = len(data)
                with Image.open(io.BytesIO(data)) as check:
                    assert np.array_equal(np.asarray(check.convert("RGB")), samples), name
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if args.libraries:
        compare_libraries(samples, args.repeat)
    base_time = statistics.median(times["Pillow (zlib 6, adaptive filters)"])
    base_size = sizes["Pillow (zlib 6, adaptive filters)"]
    print(f"# bench_png_write: 3840x2160 RGB, median of {args.repeat}")
    print("| encoder | time | size | time / Pillow | size / Pillow |")
    print("|---|---|---|---|---|")
    for name in encoders:
        median = statistics.median(times[name])
        print(f"| {name} | {median * 1000:.0f} ms | {sizes[name] / 1e6:.2f} MB | "
              f"{median / base_time:.3f} | {sizes[name] / base_size:.3f} |")


def compare_libraries(samples: np.ndarray, repeat: int) -> None:
    """Deflate the Average-filtered rows with each library and level; print time and size."""
    import zlib

    from upconv.png import average_filter

    rows = samples.reshape(samples.shape[0], -1)
    raw = average_filter(rows, None, samples.shape[2]).tobytes()
    candidates = [("zlib", zlib, level) for level in (1, 6)]
    try:
        from isal import isal_zlib
        candidates += [("isal", isal_zlib, level) for level in (0, 1, 2, 3)]
    except ImportError:
        print("# isal not installed")
    try:
        from zlib_ng import zlib_ng
        candidates += [("zlib-ng", zlib_ng, level) for level in (1, 2, 3, 6)]
    except ImportError:
        print("# zlib-ng not installed (pip install zlib-ng)")
    print(f"# deflating {len(raw) / 1e6:.1f} MB of filtered rows, median of {repeat}")
    print("| library | level | time | size |")
    print("|---|---|---|---|")
    for name, module, level in candidates:
        timings = []
        for _ in range(repeat):
            start = time.perf_counter()
            size = len(module.compress(raw, level))
            timings.append(time.perf_counter() - start)
        print(f"| {name} | {level} | {statistics.median(timings) * 1000:.0f} ms | "
              f"{size / 1e6:.2f} MB |")


if __name__ == "__main__":
    main()
