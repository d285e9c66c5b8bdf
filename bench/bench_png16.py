"""Benchmark loading a 12 MP 16-bit colour PNG whose rows use the Paeth filter.

The case of the issue: ``upconv.images.load_image`` on a 4000x3000 16-bit RGB
PNG with every row Paeth-filtered, against Pillow opening the same picture as
an 8-bit RGB PNG (``Image.open(...).load()`` and ``np.asarray``). Target:
upconv under 2x Pillow's time.

The picture is ``sample_images/coffee.png`` resized to 4000x3000 with Pillow
BICUBIC on float channels and scaled by 257, so the low bytes carry real
interpolated detail (a photo's low bytes are never constant); the 16-bit file
is written by a vectorised Paeth encoder here (zlib level 6), the 8-bit one
by Pillow with its defaults. Both go to a temporary folder.

In one process, interleaved round-robin, median of ``--repeat`` runs
(``time.perf_counter``) after one untimed warm-up. For context it also times
the decoders that were weighed, on the same bytes, when installed:
``imagecodecs.png_decode`` (libpng, what upconv uses), ``pyspng.load``
(libspng; it returns RGB as RGBA), and Python's ``zlib`` inflating the image
data alone, without any unfiltering. It checks that upconv returns exactly
the encoded samples.

Run it from anywhere::

    python bench/bench_png16.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

import upconv
from upconv.images import load_image

ROOT = Path(__file__).resolve().parent.parent
SOURCE_IMAGE = ROOT / "sample_images" / "coffee.png"
WIDTH, HEIGHT = 4000, 3000
MAX_PILLOW_RATIO = 2.0


def test_picture() -> np.ndarray:
    """The deterministic 4000x3000 RGB uint16 picture."""
    with Image.open(SOURCE_IMAGE) as photo:
        channels = photo.convert("RGB").split()
    planes = [np.asarray(c.convert("F").resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC))
              for c in channels]
    return np.rint(np.clip(np.stack(planes, axis=-1) * 257, 0, 65535)).astype(np.uint16)


def paeth_png16(samples: np.ndarray) -> bytes:
    """A 16-bit RGB PNG of ``samples`` with every row Paeth-filtered."""
    height, width, channels = samples.shape
    bpp = 2 * channels
    lines = samples.astype(">u2").view(np.uint8).reshape(height, width * bpp).astype(np.int16)
    left = np.zeros_like(lines)
    left[:, bpp:] = lines[:, :-bpp]
    up = np.zeros_like(lines)
    up[1:] = lines[:-1]
    up_left = np.zeros_like(lines)
    up_left[1:, bpp:] = lines[:-1, :-bpp]
    p = left + up - up_left
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - up_left)
    pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
    filtered = ((lines - pred) & 0xFF).astype(np.uint8)
    rows = np.concatenate([np.full((height, 1), 4, np.uint8), filtered], axis=1)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))


def contenders(path16: str, path8: str) -> dict[str, Callable[[], object]]:
    """What is timed: the two of the target first, then the context."""
    data = Path(path16).read_bytes()
    idat = data[41:-16]  # the one IDAT chunk's body: after signature, IHDR, length and type
    expected = HEIGHT * (WIDTH * 6 + 1)

    def pillow_8bit() -> np.ndarray:
        with Image.open(path8) as image:
            image.load()
            return np.asarray(image)

    benches: dict[str, Callable[[], object]] = {
        "upconv load_image, 16-bit": lambda: load_image(path16),
        "Pillow, 8-bit": pillow_8bit,
        "zlib inflate only, 16-bit": lambda: zlib.decompressobj().decompress(idat, expected),
    }
    try:
        import imagecodecs
    except ImportError:
        pass
    else:
        benches[f"imagecodecs {imagecodecs.__version__} png_decode, 16-bit"] = (
            lambda: imagecodecs.png_decode(data))
    try:
        import pyspng
    except ImportError:
        pass
    else:
        benches[f"pyspng {pyspng.__version__} load, 16-bit"] = lambda: pyspng.load(data)
    return benches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    try:
        import imagecodecs
        decoder = f"imagecodecs {imagecodecs.__version__} (libpng)"
    except ImportError:
        decoder = "the numpy fallback (imagecodecs not installed): expect minutes"
    print(f"upconv {upconv.__version__} 16-bit PNG load benchmark: {WIDTH}x{HEIGHT} RGB, Paeth "
          f"rows; Python {platform.python_version()}, numpy {np.__version__}, Pillow "
          f"{PIL.__version__}, {os.cpu_count()} CPUs; pixels decoded by {decoder}")
    samples = test_picture()
    with tempfile.TemporaryDirectory() as folder:
        path16, path8 = str(Path(folder) / "paeth16.png"), str(Path(folder) / "rgb8.png")
        Path(path16).write_bytes(paeth_png16(samples))
        Image.fromarray(np.rint(samples / 257).astype(np.uint8)).save(path8)
        print(f"files: 16-bit {os.path.getsize(path16) / 1e6:.1f} MB, "
              f"8-bit {os.path.getsize(path8) / 1e6:.1f} MB")
        benches = contenders(path16, path8)
        loaded = load_image(path16).samples  # the warm-up, and the check
        exact = loaded.dtype == np.uint16 and np.array_equal(loaded, samples)
        del loaded
        for bench in benches.values():
            bench()
        times: dict[str, list[float]] = {name: [] for name in benches}
        for _ in range(args.repeat):
            for name, bench in benches.items():
                start = time.perf_counter()
                bench()
                times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    pillow = median["Pillow, 8-bit"]
    print(f"\nmedian of {args.repeat}, interleaved (ms; x = times Pillow 8-bit):")
    for name, seconds in median.items():
        print(f"  {name:45s} {seconds * 1000:7.0f}  x{seconds / pillow:.2f}")
    ratio = median["upconv load_image, 16-bit"] / pillow
    print(f"\nupconv 16-bit / Pillow 8-bit = {ratio:.2f} (target < {MAX_PILLOW_RATIO:g}); "
          f"samples exact: {'yes' if exact else 'NO'}")
    failures = (ratio >= MAX_PILLOW_RATIO) + (not exact)
    print("targets:", "all met" if not failures else f"{failures} missed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
