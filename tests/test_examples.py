"""Every example in every ``--help`` and in the README's command blocks runs as written.

Each runs in a fresh scratch folder of small generated images and kernels named as the
examples name them, through bash (globs, pipes and redirections included), with ``jq`` and
the other programs the examples pipe into standing in as readers. Examples that need a Dask
cluster or install things are left out (the Dask ones are tested in test_batch.py).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

from upconv.auditing import fix_layers
from upconv.checkpoints import save_tensors
from upconv.cli import run
from upconv.kernels import Kernel, builtin_kernel

SKIP = ("--dask", "pip install", "python3 -m venv", "dask scheduler", "dask worker")
COMMANDS = [["scale"], ["fit"], ["degrade"], ["report"], ["kernel", "show"],
            ["kernel", "matrix"], ["kernel", "audit"], ["kernel", "fix"], ["kernel", "init"]]
#: Options that take a value, to tell a command's positional arguments apart.
VALUED = {"-f", "--factor", "-m", "--method", "-s", "--size", "-b", "--boundary", "-k",
          "--kernel", "--padding", "--output-padding", "--post-kernel", "--format", "-q",
          "--quality", "--max-pixels", "--threads", "--tile", "--report", "-o", "--output",
          "--output-dir", "--name", "-j", "--jobs", "--fit", "--ridge", "--margin",
          "--degrade", "--reference", "--map", "--spectrum", "--input-size", "--stride",
          "--out", "--fail-above", "--layer", "--bias", "--layout", "--in", "--seed",
          "--key", "--chunks", "--pyramid", "--storage-option"}
#: Options whose value is a file or folder the example writes.
WRITES = {"-o", "--output", "--output-dir", "--map", "--spectrum", "--out", "--report"}


def help_examples() -> list[str]:
    found = []
    for command in COMMANDS:
        result = subprocess.run([sys.executable, "-m", "upconv", *command, "--help"],
                                capture_output=True, text=True, check=True)
        block = result.stdout.split("Examples:", 1)[1].lstrip("\n").split("\n\n", 1)[0]
        found += [line.strip() for line in block.splitlines() if "upconv " in line]
    return found


def readme_examples() -> list[str]:
    text = (ROOT / "README.md").read_text()
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line.startswith(("upconv ", "cat ")) and "upconv " in line:
                found.append(line)
    return found


EXAMPLES = sorted({e for e in help_examples() + readme_examples()
                   if not any(skip in e for skip in SKIP)})


def save(path, pixels) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """Small images, kernels and folders named as the examples name them."""
    base = tmp_path_factory.mktemp("scratch")
    rng = np.random.default_rng(7)
    # A photo with no pattern. (At 96x80 the report's period detection calls chance
    # structure a period-8 pattern: too few blocks for its noise estimate.)
    with Image.open(ROOT / "sample_images" / "chelsea.png") as cat:
        smooth = np.asarray(cat.convert("RGB").resize((192, 160), Image.Resampling.LANCZOS))
    for name in ("photo.png", "photo.jpg", "scan.tif", "a.png", "b.png", "b.jpg", "c.png",
                 "in.png", "out.png", "truth.png", "decoder_out.png", "photos/p1.png",
                 "photos/p2.png", "scans/s1.png", "scans/deep/s2.png", "outputs/o1.png"):
        save(base / name, smooth)
    for index, stem in enumerate(("", "1", "2")):
        high = np.roll(smooth, 3 * index, axis=1)
        save(base / f"high{stem}.png", high)
        save(base / f"low{stem}.png",
             np.asarray(Image.fromarray(high).resize((96, 80), Image.Resampling.BOX)))
        if stem:
            save(base / f"h{stem}.png", high)
            save(base / f"l{stem}.png", np.asarray(Image.open(base / f"low{stem}.png")))
    shutil.copy(base / "high.png", base / "h.png")
    shutil.copy(base / "low.png", base / "l.png")
    for name in ("data.npy", "in.npy", "huge.npy"):
        np.save(base / name, rng.random((24, 20, 3)))
    builtin_kernel("bilinear", 2).save(base / "k.json")
    np.save(base / "k.npy", builtin_kernel("bilinear", 2).weights)
    np.save(base / "w.npy", rng.random((4, 4)) / 4)
    (base / "ones3.txt").write_text("1 1 1\n1 1 1\n1 1 1\n")
    for name in ("k3.txt", "k3x3.txt"):
        (base / name).write_text("1 2 3\n4 5 6\n7 8 9\n")
    assert isinstance(Kernel.load(base / "k.json"), Kernel)
    decoder = {"dec.up1.weight": rng.normal(size=(8, 4, 4, 4)).astype(np.float32),
               "dec.up1.bias": rng.normal(size=4).astype(np.float32),
               "dec.up2.weight": rng.normal(size=(4, 3, 4, 4)).astype(np.float32),
               "dec.up2.bias": rng.normal(size=3).astype(np.float32),
               "dec.up3.weight": rng.normal(size=(3, 3, 8, 8)).astype(np.float32)}
    save_tensors(decoder, base / "decoder.safetensors")
    save_tensors(decoder, base / "decoder.npz")
    save_tensors(fix_layers(decoder, ["dec.up*.weight"], ["2", "dec.up3.*=4"])[0],
                 base / "fixed.safetensors")
    shutil.copy(ROOT / "tests" / "data" / "tiny_decoder.pt", base / "decoder.pt")
    np.save(base / "x.npy", rng.random((1, 8, 12, 10)).astype(np.float32))
    make_zarr_stores(base, rng)
    return base


def make_zarr_stores(base, rng) -> None:
    """The Zarr stores the examples name: an OME-Zarr image (cells.zarr), a plain RGB array
    (scene.zarr, uploaded to the bucket) and a tczyx array in a group (stack.zarr:raw/0)."""
    import zarr

    cells = zarr.open_group(str(base / "cells.zarr"), mode="w")
    cells.attrs.put({"ome": {"version": "0.5", "multiscales": [{
        "axes": [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"},
                 {"name": "x", "type": "space"}],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, 0.5, 0.5]}]}]}]}})
    cells.create_array("0", shape=(2, 40, 48), chunks=(1, 16, 16), dtype="uint16")[...] = (
        rng.random((2, 40, 48)) * 65535).astype(np.uint16)
    scene = zarr.create_array(str(base / "scene.zarr"), shape=(32, 40, 3), chunks=(16, 16, 3),
                              dtype="float32")
    scene[...] = rng.random((32, 40, 3)).astype(np.float32)
    stack = zarr.open_group(str(base / "stack.zarr"), mode="w")
    stack.create_array("raw/0", shape=(1, 2, 3, 24, 20), chunks=(1, 1, 1, 16, 16),
                       dtype="float32")[...] = rng.random((1, 2, 3, 24, 20))


def destinations(example: str) -> list[str]:
    """What the upconv command of an example writes, to clear it from the scratch folder."""
    command = next(part for part in example.split("|") if "upconv " in part)
    words = shlex.split(command.split("<")[0].split(">")[0])
    words = words[words.index("upconv") + 1:]
    written, positional, index = [], [], 1
    while index < len(words):
        word = words[index]
        if word in VALUED:
            if word in WRITES:
                written.append(words[index + 1])
            index += 2
            continue
        if not word.startswith("-") or word == "-":
            positional.append(word)
        index += 1
    if words[0] in ("scale", "degrade") and len(positional) == 2:
        written.append(positional[1])
    return [w for w in written if w != "-"]


def fill_the_bucket(server, scratch) -> None:
    """The objects the object-store examples name, in a bucket called ``bucket`` on the
    local S3 server (each example's outputs are removed first)."""
    client = server.client()
    try:
        client.create_bucket(Bucket="bucket")
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    listed = client.list_objects_v2(Bucket="bucket").get("Contents", [])
    for item in listed:
        client.delete_object(Bucket="bucket", Key=item["Key"])
    for key, name in (("in/photo.png", "photo.png"), ("in/deeper/a.png", "a.png"),
                      ("out/photo_x2.png", "out.png"), ("low.png", "low.png"),
                      ("high.png", "high.png"), ("k.json", "k.json")):
        client.put_object(Bucket="bucket", Key=key, Body=(scratch / name).read_bytes())
    for path in sorted((scratch / "scene.zarr").rglob("*")):
        if path.is_file():
            client.put_object(Bucket="bucket",
                              Key=f"scene.zarr/{path.relative_to(scratch / 'scene.zarr')}",
                              Body=path.read_bytes())


@pytest.mark.parametrize("example", EXAMPLES)
def test_the_example_runs(example, scratch, tmp_path, request):
    folder = tmp_path / "run"
    shutil.copytree(scratch, folder)
    if "s3://" in example:  # run against the local S3 server
        server = request.getfixturevalue("s3_env")
        fill_the_bucket(server, scratch)
        client = server.client()
        for target in destinations(example):  # an object, or every object under a prefix
            if target.startswith("s3://bucket/"):
                key = target.removeprefix("s3://bucket/")
                listed = client.list_objects_v2(Bucket="bucket", Prefix=key).get(
                    "Contents", [])
                for item in listed:
                    if item["Key"] == key or key.endswith("/"):
                        client.delete_object(Bucket="bucket", Key=item["Key"])
    for target in destinations(example):
        path = folder / target
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    script = ("set -o pipefail\n"
              f'upconv() {{ "{sys.executable}" -m upconv "$@"; }}\n'
              "jq() { cat > /dev/null; }\ndisplay() { cat > /dev/null; }\n"
              "other-tool() { cat > /dev/null; }\n" + example + "\n")
    result = subprocess.run(["bash", "-c", script], cwd=folder, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, f"{example}\n{result.stderr}"


def test_the_examples_were_found():
    assert len(EXAMPLES) >= 30
    assert any(e.startswith("upconv fit low*.png high*.png") for e in EXAMPLES)
    assert run(["--version"]) == 0
