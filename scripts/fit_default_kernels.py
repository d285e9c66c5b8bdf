"""Fit the default transposed-convolution kernels shipped in upconv/data/, and evaluate them.

Run from the repository root::

    python scripts/fit_default_kernels.py

For factors 2, 3 and 4 it runs::

    upconv fit --degrade area --augment --factor S \\
        sample_images/chelsea.png sample_images/coffee.png -o upconv/data/default_xS.json

(a 6S x 6S kernel, edge boundary, fitted on area-downsampled copies of two
photos and their rotations and flips), then prints the mean PSNR of nearest,
bilinear, bicubic and the fitted kernel on the *held-out* photos
(astronaut.png, camera.png), downscaled by area averaging, as a Markdown table
for the README. ``--evaluate-only`` skips the fitting.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import upconv  # noqa: E402
from upconv.degrade import degrade  # noqa: E402
from upconv.images import load_image  # noqa: E402
from upconv.kernels import Kernel  # noqa: E402
from upconv.metrics import psnr  # noqa: E402
from upconv.samples import to_float  # noqa: E402

FACTORS = (2, 3, 4)
TRAINING = ("sample_images/chelsea.png", "sample_images/coffee.png")
HELD_OUT = ("sample_images/astronaut.png", "sample_images/camera.png")


def fit(factor: int) -> None:
    command = [sys.executable, "-m", "upconv", "fit", "--degrade", "area", "--augment",
               "--factor", str(factor), *TRAINING, "-o",
               f"upconv/data/default_x{factor}.json", "--overwrite"]
    print("$", " ".join(command[2:]), file=sys.stderr)
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def held_out_psnr(factor: int) -> dict[str, float]:
    """Mean PSNR (dB) of each method on the held-out photos, area-downscaled by ``factor``."""
    kernel = Kernel.load(ROOT / "upconv" / "data" / f"default_x{factor}.json")
    scores: dict[str, list[float]] = {"nearest": [], "bilinear": [], "bicubic": [],
                                      "fitted": []}
    for name in HELD_OUT:
        high = to_float(load_image(str(ROOT / name)).samples)
        high = high[:high.shape[0] // factor * factor, :high.shape[1] // factor * factor]
        low = degrade(high, factor, "area")
        for method in ("nearest", "bilinear", "bicubic"):
            up = upconv.scale(low, factor, method=method)
            scores[method].append(psnr(np.clip(up, 0, 1), high))
        up = upconv.scale(low, factor, method="transpose", kernel=kernel)
        scores["fitted"].append(psnr(np.clip(up, 0, 1), high))
    return {method: float(np.mean(values)) for method, values in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--evaluate-only", action="store_true")
    args = parser.parse_args()
    if not args.evaluate_only:
        for factor in FACTORS:
            fit(factor)
    print("| factor | nearest | bilinear | bicubic (B-spline) | fitted default | "
          "fitted - bicubic |")
    print("|---|---:|---:|---:|---:|---:|")
    for factor in FACTORS:
        r = held_out_psnr(factor)
        print(f"| x{factor} | {r['nearest']:.2f} | {r['bilinear']:.2f} | {r['bicubic']:.2f} | "
              f"{r['fitted']:.2f} | {r['fitted'] - r['bicubic']:+.2f} dB |")


if __name__ == "__main__":
    main()
