"""Render upconv's HTML reports in headless Chromium and check what a person would see.

Writes three pages from the sample images (one image with a checkerboard and
its kernel, a batch, a kernel alone), screenshots each with Chromium
(Debian's ``chromium`` package: ``chromium --headless --screenshot``) and
checks the screenshots: the page drew (not blank), the inlined pictures
drew (the heat map's colours and the verdict badge's colour are on screen),
and nothing was fetched from the network (Chromium runs with the network
switched off, so a page that needed it would lose its pictures).

Exits 0 when every check passes, 1 when one fails, and 0 with a "skipped"
line when Chromium is not installed. ``--keep DIR`` keeps the pages and the
screenshots, to look at them.

    python scripts/check_html_render.py --keep /tmp/pages
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
#: The "visible" verdict badge's colour (#ef6c00).
BADGE_VISIBLE = (239, 108, 0)
#: The kernel picture's colour for its largest positive weight.
KERNEL_RED = (180, 4, 38)


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def upconv(*args: str, cwd: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "upconv", *args], cwd=cwd,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"upconv {' '.join(args)} failed: {done.stderr.strip()}")


def make_pages(folder: Path) -> dict[str, Path]:
    """The pages to look at: one image with a kernel, a batch, a kernel alone."""
    from upconv.kernels import Kernel, builtin_kernel

    weights = builtin_kernel("bilinear", 2).weights.copy()
    weights[1, 1] *= 1.08  # phase (0, 0) gets 4 % more: a visible checkerboard
    Kernel(weights, stride=2, name="bumpy").save(folder / "bumpy.json")
    upconv("degrade", str(ROOT / "sample_images" / "coffee.png"), "low.png", "-f", "2",
           cwd=folder)
    batch = folder / "batch"
    batch.mkdir()
    upconv("scale", "low.png", "batch/bumpy.png", "-m", "transpose", "-k", "bumpy.json",
           cwd=folder)
    upconv("scale", "low.png", "batch/bicubic.png", "-f", "2", cwd=folder)
    shutil.copy(ROOT / "sample_images" / "checkerboard.png", batch / "checkerboard.png")
    upconv("report", "batch/bumpy.png", "--kernel", "bumpy.json", "--html", "image.html",
           cwd=folder)
    upconv("report", "batch", "--html", "batch.html", "--quiet", cwd=folder)
    upconv("report", "--kernel", "bumpy.json", "--html", "kernel.html", cwd=folder)
    return {name: folder / f"{name}.html" for name in ("image", "batch", "kernel")}


def screenshot(browser: str, page: Path, picture: Path, height: int = 1600) -> None:
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
               f"--window-size=1400,{height}", f"--screenshot={picture}", page.as_uri()]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=120)


def has_colour(pixels: np.ndarray, colour: tuple[int, int, int], count: int,
               tolerance: int = 12) -> bool:
    near = np.abs(pixels.astype(int) - np.array(colour)).max(axis=-1) <= tolerance
    return int(near.sum()) >= count


def check(name: str, picture: Path) -> list[str]:
    """What is wrong with a screenshot (nothing: an empty list)."""
    with Image.open(picture) as shot:
        pixels = np.asarray(shot.convert("RGB"))
    problems = []
    if pixels.std() < 10:
        problems.append(f"{name}: the page looks blank")
    if name == "kernel":
        if not has_colour(pixels, KERNEL_RED, 400):
            problems.append(f"{name}: the kernel picture is not on screen")
        return problems
    if not has_colour(pixels, BADGE_VISIBLE, 200):
        problems.append(f"{name}: no 'visible' verdict badge on screen")
    # Inlined photos: many distinct colours (text and tables alone have a few hundred).
    colours = len(np.unique(pixels.reshape(-1, 3)[::7], axis=0))
    if colours < 5000:
        problems.append(f"{name}: only {colours} colours on screen; pictures missing?")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="keep pages and screenshots in this folder")
    args = parser.parse_args()
    browser = find_browser()
    if browser is None:
        print("skipped: Chromium is not installed (Debian: apt-get install chromium)")
        return 0
    folder = Path(args.keep or tempfile.mkdtemp(prefix="upconv-html-"))
    folder.mkdir(parents=True, exist_ok=True)
    problems = []
    try:
        for name, page in make_pages(folder).items():
            picture = folder / f"{name}.png"
            screenshot(browser, page, picture)
            found = check(name, picture)
            problems += found
            print(f"{name}: {page.stat().st_size / 1e3:.0f} kB page, screenshot {picture}"
                  f"{'' if found else ': looks right'}")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    for problem in problems:
        print(f"FAIL {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
