"""Make the synthetic test patterns in sample_images/ (deterministic).

Run from the repository root::

    python scripts/make_test_patterns.py

Writes:

- ``zone_plate.png``: 256x256 8-bit gray, cos(k r^2): every frequency up to
  Nyquist, the classic test of interpolation aliasing.
- ``checkerboard.png``: 128x128 8-bit gray, 2x2-pixel checks, the finest
  pattern that survives; shows blur and ringing at once.
- ``gradient16.png``: 256x192 16-bit gray smooth ramp, for bit-depth keeping
  (an 8-bit pipeline would show 256 bands).
- ``gradient_rgb16.png``: 160x120 16-bit RGB ramps, for 16-bit colour.
- ``soft_alpha.png``: 160x120 RGBA, colour bars under a soft radial alpha,
  with saturated colour under the fully transparent corners (it must not
  bleed into the output).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from upconv.png import encode_png  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "sample_images"


def zone_plate(size: int = 256) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] - (size - 1) / 2
    k = np.pi / size  # reaches Nyquist (pi rad/pixel) at the edge midpoints
    return 0.5 + 0.5 * np.cos(k * (x * x + y * y))


def checkerboard(size: int = 128, cell: int = 2) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] // cell
    return ((x + y) % 2).astype(float)


def gradient(width: int = 256, height: int = 192) -> np.ndarray:
    x = np.linspace(0, 1, width)[None, :]
    y = np.linspace(0, 1, height)[:, None]
    return 0.8 * x + 0.2 * y * y


def rgb_gradient(width: int = 160, height: int = 120) -> np.ndarray:
    x = np.linspace(0, 1, width)[None, :]
    y = np.linspace(0, 1, height)[:, None]
    return np.stack(np.broadcast_arrays(x * np.ones_like(y), y * np.ones_like(x),
                                        0.5 + 0.5 * np.sin(6 * x) * np.cos(4 * y)), axis=-1)


def soft_alpha(width: int = 160, height: int = 120) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    bars = np.zeros((height, width, 3))
    for i, colour in enumerate([(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0)]):
        bars[:, i * width // 4:(i + 1) * width // 4] = colour
    r = np.hypot((x - width / 2) / (width / 2), (y - height / 2) / (height / 2))
    alpha = np.clip(1.5 - 1.5 * r, 0, 1)
    bars[alpha == 0] = (1, 0, 1)  # loud magenta where nothing is visible
    return np.concatenate([bars, alpha[..., None]], axis=-1)


def to8(values: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(values, 0, 1) * 255).astype(np.uint8)


def to16(values: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(values, 0, 1) * 65535).astype(np.uint16)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    Image.fromarray(to8(zone_plate())).save(OUT / "zone_plate.png")
    Image.fromarray(to8(checkerboard())).save(OUT / "checkerboard.png")
    Image.fromarray(to16(gradient())).save(OUT / "gradient16.png")
    (OUT / "gradient_rgb16.png").write_bytes(encode_png(to16(rgb_gradient())))
    Image.fromarray(to8(soft_alpha()), mode="RGBA").save(OUT / "soft_alpha.png")
    print(f"wrote test patterns to {OUT}")


if __name__ == "__main__":
    main()
