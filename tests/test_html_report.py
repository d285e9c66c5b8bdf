"""Pictures of reports: ``report --kernel K --map``, and ``report --html`` for one image or many.

Pages are parsed with :mod:`html.parser` and their inlined pictures decoded;
what they show is compared with independent computations (``np.kron`` for
the magnified tile, the ``--json`` document, a painted pattern's place, the
kernel's phase sums). ``scripts/check_html_render.py`` renders them in
headless Chromium where it is installed.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

from upconv.cli import run
from upconv.kernels import Kernel, builtin_kernel
from upconv.pictures import flat_response, render_kernel

TILE = 32


class Page(HTMLParser):
    """What a page holds: its images, links, scripts, tables' cells and <pre> text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.tags: list[str] = []
        self.tables: list[list[list[str]]] = []
        self.pre = ""
        self._cell: list[str] | None = None
        self._in_pre = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(attributes)
        for key in ("href", "src"):
            if key in attributes and tag != "img":
                self.links.append(attributes[key])
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "pre":
            self._in_pre = True

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "pre":
            self._in_pre = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._in_pre:
            self.pre += data

    def picture(self, alt: str) -> np.ndarray:
        """The decoded pixels of the image whose alt text starts with ``alt``."""
        found = [i for i in self.images if i.get("alt", "").startswith(alt)]
        assert len(found) == 1, f"{len(found)} images with alt {alt!r}"
        return decode(found[0]["src"])


def decode(source: str) -> np.ndarray:
    prefix = "data:image/png;base64,"
    assert source.startswith(prefix), source[:40]
    with Image.open(io.BytesIO(base64.b64decode(source[len(prefix):]))) as picture:
        assert picture.format == "PNG"
        return np.asarray(picture.convert("RGB"))


def painted(shape=(160, 224), amplitude=6.0, where=(1, 4), seed=3) -> np.ndarray:
    """A smooth grey image with a +/- ``amplitude`` grey-level checkerboard in one TILE."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:shape[0], 0:shape[1]]
    image = 0.5 + 0.2 * np.sin(x / 23.0) * np.cos(y / 31.0) + rng.normal(0, 0.002, shape)
    row, col = where
    board = (np.indices((TILE, TILE)).sum(axis=0) % 2 * 2.0 - 1.0) * amplitude / 255
    image[row * TILE:(row + 1) * TILE, col * TILE:(col + 1) * TILE] += board
    return np.clip(image, 0, 1)[:, :, None]


def write(path: Path, image: np.ndarray) -> str:
    """An 8-bit PNG of an (H, W, 1) image in [0, 1]."""
    Image.fromarray(np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8).squeeze()).save(path)
    return str(path)


def self_contained(page: Page) -> None:
    """No script, no link to anything outside the page, every picture inlined."""
    assert "script" not in page.tags and "link" not in page.tags
    assert page.links == [] and page.images
    for image in page.images:
        assert image["src"].startswith("data:image/png;base64,")


def test_one_image_page(tmp_path, capsys):
    path = write(tmp_path / "art.png", painted())
    html_path = tmp_path / "art.html"
    assert run(["report", path, "-f", "2", "--tile", str(TILE), "--html", str(html_path),
                "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    page = Page(html_path.read_text(encoding="utf-8"))
    self_contained(page)
    # The JSON in the page is the --json document.
    assert json.loads(page.pre) == printed
    # The worst tile is the painted one, magnified with nearest-neighbour pixels: np.kron.
    with Image.open(path) as saved:
        pixels = np.asarray(saved.convert("RGB"))
    crop = pixels[1 * TILE:2 * TILE, 4 * TILE:5 * TILE]
    worst = page.picture("the worst tile")
    magnify = worst.shape[0] // TILE
    assert magnify >= 4 and worst.shape[:2] == (TILE * magnify, TILE * magnify)
    np.testing.assert_array_equal(worst, np.kron(crop, np.ones((magnify, magnify, 1),
                                                                np.uint8)))
    # The heat layer has a pixel per whole tile, and is brightest at the painted tile.
    heat = page.picture("heat map").astype(int).sum(axis=2)
    assert heat.shape == (160 // TILE, 224 // TILE)
    assert np.unravel_index(np.argmax(heat), heat.shape) == (1, 4)
    # The image itself, and the spectrum.
    np.testing.assert_array_equal(page.picture("the image"), pixels)
    assert page.picture("log power spectrum").ndim == 3
    # The phase-means table holds the JSON's phase means.
    table = next(t for t in page.tables if t and t[0][1:] == ["x mod 2 = 0", "x mod 2 = 1"])
    shown = [[float(v) for v in row[1:]] for row in table[1:]]
    np.testing.assert_allclose(shown, printed["checkerboard"]["phase_means"], atol=5e-4)
    figures = {row[0]: row[1] for row in page.tables[0]}
    assert figures["verdict"] == printed["checkerboard"]["verdict"]
    assert figures["score"].startswith(f"{printed['checkerboard']['score']:.3f}")


def test_one_image_page_with_kernel_and_big_image(tmp_path, capsys):
    image = np.repeat(np.repeat(painted((96, 96), where=(1, 1)), 12, axis=0), 12, axis=1)
    path = write(tmp_path / "big.png", image)
    kernel = tmp_path / "k.json"
    builtin_kernel("bilinear", 2).save(kernel)
    html_path = tmp_path / "big.html"
    assert run(["report", path, "--kernel", str(kernel), "--html", str(html_path)]) == 0
    text = html_path.read_text(encoding="utf-8")
    page = Page(text)
    self_contained(page)
    shown = page.picture("the image")
    assert shown.shape[:2] == (576, 576) and "shown at 1/2 size" in text
    assert page.picture("the kernel").shape[0] > 100


def test_batch_page_sorted_by_score(tmp_path, capsys):
    folder = tmp_path / "outs"
    folder.mkdir()
    amplitudes = {"a.png": 1.0, "b.png": 8.0, "c.png": 3.0, "d.png": 0.0}
    for name, amplitude in amplitudes.items():
        write(folder / name, painted((128, 128), amplitude, where=(1, 1), seed=ord(name[0])))
    (folder / "e.png").write_bytes(b"not a png")
    html_path = tmp_path / "batch.html"
    status = run(["report", str(folder), "-f", "2", "--json", "--quiet", "--html",
                  str(html_path), "--jobs", "2"])
    assert status == 1  # e.png failed; the page is written all the same, and says so
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    scores = {Path(line["file"]).name: line["checkerboard"]["score"] for line in lines}
    page = Page(html_path.read_text(encoding="utf-8"))
    self_contained(page)
    rows = page.tables[0][1:]
    names = [Path(row[3]).name for row in rows]
    assert names == sorted(scores, key=lambda n: -scores[n])
    assert names[:3] == ["b.png", "c.png", "a.png"]  # the painted amplitudes' order
    assert [float(row[6]) for row in rows] == pytest.approx(
        [scores[n] for n in names], abs=5e-4)
    not_measured = page.tables[-1]
    assert Path(not_measured[1][0]).name == "e.png" and "not an image" in not_measured[1][1]


def test_kernel_map_and_page(tmp_path, capsys):
    kernel = tmp_path / "ones3.json"
    Kernel(np.ones((3, 3)), stride=2, name="ones3").save(kernel)
    picture = tmp_path / "k.png"
    page_path = tmp_path / "k.html"
    assert run(["report", "--kernel", str(kernel), "--map", str(picture), "--html",
                str(page_path)]) == 0
    with Image.open(picture) as drawn:
        assert drawn.format == "PNG" and drawn.width >= 640
        pixels = np.asarray(drawn.convert("RGB"))
    np.testing.assert_array_equal(pixels, np.asarray(render_kernel(Kernel.load(kernel))))
    page = Page(page_path.read_text(encoding="utf-8"))
    self_contained(page)
    assert "Kernel report: ones3.json" in page_path.read_text(encoding="utf-8")
    np.testing.assert_array_equal(page.picture("the kernel"), pixels)


@pytest.mark.parametrize("kernel", [
    Kernel(np.arange(1.0, 10.0).reshape(3, 3), stride=2),          # K - s odd
    Kernel(np.arange(1.0, 17.0).reshape(4, 4), stride=2),          # K - s even
    Kernel(np.arange(1.0, 26.0).reshape(5, 5), stride=3),
    Kernel(np.arange(1.0, 17.0).reshape(4, 4), stride=2, padding=1),
    Kernel(np.arange(2 * 16.0).reshape(2, 4, 4), stride=2),
    Kernel(np.random.default_rng(1).normal(size=(3, 5, 4, 4)), stride=2, padding=1),
])
def test_flat_response_drawn_is_the_phase_sums(kernel):
    """The picture's flat-input tile (the kernel applied) shows the phase sums, tiled."""
    response = flat_response(kernel, periods=2)
    sums = kernel.phase_sums().reshape(-1, kernel.stride, kernel.stride)
    np.testing.assert_allclose(response, np.tile(sums, (1, 2, 2)), rtol=1e-12, atol=1e-12)
    assert render_kernel(kernel).mode == "RGB"


@pytest.mark.parametrize("args,status,fragment", [
    (["--kernel", "{k}", "--spectrum", "{d}/s.png"], 2, "need an IMAGE"),
    (["--kernel", "{k}", "--map", "-"], 2, "not '-'"),
    (["{img}", "--html", "-"], 2, "not '-'"),
    (["--kernel", "{nostride}", "--map", "{d}/m.png"], 1, "give --factor"),
    (["{img}", "--html", "{img}"], 1, "input"),
    (["{img}", "--html", "{existing}"], 1, "--overwrite"),
    (["{img}", "--html", "{d}/missing/r.html"], 1, "does not exist"),
])
def test_picture_bad_input(tmp_path, capsys, args, status, fragment):
    img = write(tmp_path / "img.png", painted((64, 64), where=(1, 1)))
    kernel = tmp_path / "k.json"
    builtin_kernel("bilinear", 2).save(kernel)
    (tmp_path / "nostride.txt").write_text("1 2 1\n2 4 2\n1 2 1\n")
    existing = tmp_path / "old.html"
    existing.write_text("keep me")
    filled = [a.format(img=img, k=kernel, d=tmp_path, existing=existing,
                       nostride=tmp_path / "nostride.txt") for a in args]
    assert run(["report", *filled]) == status
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1 and "Traceback" not in err
    assert existing.read_text() == "keep me"
    assert not (tmp_path / "m.png").exists() and not (tmp_path / "s.png").exists()


def test_kernel_map_with_factor_for_a_file_without_stride(tmp_path):
    (tmp_path / "k.txt").write_text("1 2 1\n2 4 2\n1 2 1\n")
    assert run(["report", "--kernel", str(tmp_path / "k.txt"), "-f", "2", "--map",
                str(tmp_path / "m.png")]) == 0
    with Image.open(tmp_path / "m.png") as drawn:
        assert drawn.format == "PNG"


def test_page_renders_in_headless_chromium(tmp_path):
    """scripts/check_html_render.py: the pages drawn by a real browser, with no network."""
    if not any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")):
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_html_render.py"),
                           "--keep", str(tmp_path)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("looks right") == 3


def test_a_layers_page_gives_its_checkerboard_figure_not_the_spread(tmp_path, capsys, rng):
    """For a C_in x C_out layer the phase-sum spread (summed over C_in) means nothing: the
    page's table names the layer's figure, its verdict and its worst output channel."""
    from upconv.layers import layer_figures

    weights = rng.normal(size=(3, 4, 4, 4))
    np.save(tmp_path / "layer.npy", weights)
    page = tmp_path / "layer.html"
    assert run(["report", "--kernel", str(tmp_path / "layer.npy"), "-f", "2",
                "--html", str(page)]) == 0
    text = page.read_text()
    figures = layer_figures(weights, 2)
    assert f"{figures.figure:.3g} % ({figures.verdict}" in text
    assert f"worst output channel {figures.worst_output}" in text
    assert "phase-sum spread" not in text
