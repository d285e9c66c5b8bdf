"""Whole commands against libvips and ImageMagick: time, output size, peak memory.

Every job is run as a user would run it, as a separate process, interleaved
(upconv, vips, convert, upconv, ...) so that a noisy machine slows all alike,
after one warm-up run each; the figures are medians of ``--repeat`` runs (at
least 5). Peak resident
memory is the child's own ``ru_maxrss`` (``os.wait4``), as ``/usr/bin/time -v``
reports it. ``vips`` and ``convert`` are skipped cleanly when not installed
(Debian: ``apt-get install libvips-tools imagemagick``).

Inputs are mosaics of the CC0 sample photos at their native resolution (real
detail, not an upsampled blur), with a little seeded sensor noise:

- a 1920x1080 PNG doubled to 3840x2160 PNG, bicubic;
- a 2400x1600 JPEG doubled to JPEG;
- a 6000x4000 JPEG doubled to 12000x8000 JPEG (peak memory), by bicubic and by a
  transposed convolution in PyTorch's geometry (``--padding 1``);
- 10 small photos (512x512 JPEG) scaled one command each in a shell loop;
- 100 small photos as one ``upconv scale DIR -o OUT`` batch, against a shell
  loop running ``vips resize`` on each file;
- ``upconv --version`` and ``upconv --help`` (start-up).

    python bench/bench_cli.py [--repeat 5] [--skip-big]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ["astronaut.png", "coffee.png", "chelsea.png", "camera.png", "horse.png"]
UPCONV = [sys.executable, "-m", "upconv"]
#: As a user's shell has it: Python may cache compiled modules (as pip's install does), so
#: no command pays for compiling its own source on every run.
USER_ENVIRONMENT = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def mosaic(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Sample photos tiled (mirrored in turn) at native resolution, plus light noise."""
    rng = np.random.default_rng(seed)
    tiles = []
    for name in PHOTOS:
        with Image.open(ROOT / "sample_images" / name) as photo:
            tiles.append(np.asarray(photo.convert("RGB")))
    canvas = np.zeros((height, width, 3), np.uint8)
    y, index = 0, 0
    while y < height:
        x, row_height = 0, 0
        while x < width:
            tile = tiles[index % len(tiles)]
            if index % 2:
                tile = tile[:, ::-1]
            index += 1
            h, w = min(tile.shape[0], height - y), min(tile.shape[1], width - x)
            canvas[y:y + h, x:x + w] = tile[:h, :w]
            x += w
            row_height = max(row_height, h)
        y += row_height
    noisy = canvas + rng.normal(0, 1.5, canvas.shape)
    return np.clip(noisy, 0, 255).round().astype(np.uint8)


def run(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall time (s) and peak resident memory (MiB) of one command, which must succeed.

    A command of one string runs in the shell. The memory is what GNU time
    (``/usr/bin/time -f %M``) reports: the largest resident set of the command
    and of every process it waited for; without GNU time, the child's own
    ``ru_maxrss`` from ``os.wait4``.
    """
    argv = ["sh", "-c", command[0]] if len(command) == 1 else command
    timer = ["/usr/bin/time", "-f", "%M"] if os.access("/usr/bin/time", os.X_OK) else []
    start = time.perf_counter()
    process = subprocess.Popen([*timer, *argv], cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env=USER_ENVIRONMENT)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    error = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command} failed: {error}")
    if timer:
        return elapsed, int(error.splitlines()[-1]) / 1024
    return elapsed, usage.ru_maxrss / 1024


def tools() -> dict[str, bool]:
    return {"vips": shutil.which("vips") is not None,
            "convert": shutil.which("convert") is not None}


def jobs(skip_big: bool) -> list[tuple[str, dict[str, list[str]], str | None]]:
    """(row name, {tool: command}, output file to size, "{}" the tool's initial) per row.

    A command of one string is a shell command line.
    """
    upconv = " ".join(UPCONV)
    ten = "small/p00[0-9].jpg"
    rows = [
        ("1920x1080 PNG -> 3840x2160 PNG, bicubic", {
            "upconv": [*UPCONV, "scale", "in1920.png", "out_u.png", "-f", "2", "-y"],
            "vips": ["vips", "resize", "in1920.png", "out_v.png", "2", "--kernel", "cubic"],
            "convert": ["convert", "in1920.png", "-filter", "Catrom", "-resize", "200%",
                        "out_c.png"]}, "out_{}.png"),
        ("2400x1600 JPEG -> JPEG, x2", {
            "upconv": [*UPCONV, "scale", "in2400.jpg", "out_u.jpg", "-f", "2", "-y"],
            "vips": ["vips", "resize", "in2400.jpg", "out_v.jpg", "2", "--kernel", "cubic"],
            "convert": ["convert", "in2400.jpg", "-filter", "Catrom", "-resize", "200%",
                        "out_c.jpg"]}, "out_{}.jpg"),
        ("upconv --version", {"upconv": [*UPCONV, "--version"]}, None),
        ("upconv --help", {"upconv": [*UPCONV, "--help"]}, None),
        ("a shell loop over 10 small photos", {
            "upconv": [f"for f in {ten}; do {upconv} scale -y -f 2 $f loop/${{f#small/}}; done"],
            "vips": [f"for f in {ten}; do vips resize $f loop/${{f#small/}} 2 --kernel cubic; "
                     "done"]}, None),
        ("batch of 100 small photos (-o DIR; vips: a shell loop)", {
            "upconv": [*UPCONV, "scale", "small", "-o", "batch", "-f", "2", "-y", "--quiet"],
            "vips": ["for f in small/*.jpg; do vips resize $f batch/${f#small/} 2 "
                     "--kernel cubic; done"]}, None),
    ]
    if not skip_big:
        rows.insert(2, ("6000x4000 JPEG x2 (peak memory)", {
            "upconv": [*UPCONV, "scale", "in6000.jpg", "out_big_u.jpg", "-f", "2", "-y"],
            "vips": ["vips", "resize", "in6000.jpg", "out_big_v.jpg", "2", "--kernel", "cubic"],
        }, "out_big_{}.jpg"))
        rows.insert(3, ("6000x4000 JPEG x2, transpose in PyTorch's geometry (peak memory)", {
            "upconv": [*UPCONV, "scale", "in6000.jpg", "out_pt_u.jpg", "-f", "2", "-y",
                       "-m", "transpose", "--padding", "1"],
        }, "out_pt_{}.jpg"))
    return rows


def make_inputs(folder: Path, skip_big: bool) -> None:
    Image.fromarray(mosaic(1920, 1080)).save(folder / "in1920.png")
    Image.fromarray(mosaic(2400, 1600, 1)).save(folder / "in2400.jpg", quality=92)
    if not skip_big:
        Image.fromarray(mosaic(6000, 4000, 2)).save(folder / "in6000.jpg", quality=92)
    for sub in ("small", "loop", "batch"):
        (folder / sub).mkdir(exist_ok=True)
    for i in range(100):
        Image.fromarray(mosaic(512, 512, 10 + i)[::-1] if i % 2 else mosaic(512, 512, 10 + i)
                        ).save(folder / "small" / f"p{i:03d}.jpg", quality=92)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-big", action="store_true", help="leave out the 6000x4000 row")
    parser.add_argument("--make-inputs", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_inputs:
        make_inputs(args.make_inputs, args.skip_big)
        return
    available = tools()
    folder = Path(tempfile.mkdtemp(prefix="upconv-bench-cli-"))
    try:
        # in a child process, so that this one stays small (forked children start as big)
        subprocess.run([sys.executable, __file__, "--make-inputs", str(folder)]
                       + (["--skip-big"] if args.skip_big else []), check=True)
        print(f"# bench_cli: median of {args.repeat} interleaved runs, "
              f"{os.cpu_count()} CPUs; tools: "
              + ", ".join(f"{t} {'yes' if ok else 'not installed'}"
                          for t, ok in available.items()))
        print("| job | upconv | vips | convert |")
        print("|---|---|---|---|")
        for name, commands, output in jobs(args.skip_big):
            chosen = {t: c for t, c in commands.items() if t == "upconv" or available.get(t)}
            times: dict[str, list[float]] = {t: [] for t in chosen}
            memory: dict[str, list[float]] = {t: [] for t in chosen}
            for command in chosen.values():  # one warm-up run each, not counted
                run(command, folder)
            for _ in range(args.repeat):
                for tool, command in chosen.items():
                    elapsed, peak = run(command, folder)
                    times[tool].append(elapsed)
                    memory[tool].append(peak)
            cells = []
            for tool in ("upconv", "vips", "convert"):
                if tool not in chosen:
                    cells.append("")
                    continue
                cell = f"{statistics.median(times[tool]):.2f} s, {max(memory[tool]):.0f} MiB"
                if output is not None:
                    size = (folder / output.format(tool[0])).stat().st_size
                    cell += f", {size / 1e6:.2f} MB"
                cells.append(cell)
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
