"""The checkerboard report as one self-contained HTML page (``upconv report --html``).

:func:`image_figures` draws the pictures of one image (where its batch
worker runs, so only small PNGs travel); :func:`report_page` and
:func:`batch_page` put them, the figures and the ``--json`` document into a
page. Pictures are inlined as ``data:`` URLs and the style sheet is in the
page: it needs no network, no script and no other file, and can be mailed or
attached to a CI run as it is.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass

import numpy as np

from . import __version__
from .kernels import Kernel
from .pictures import (
    HEAT_SCALE_TOP,
    colour_map,
    diverging_colours,
    heat_layer,
    heat_top,
    png_bytes,
    preview,
    render_kernel,
    render_spectrum,
    tile_scores,
    worst_tile,
)
from .report import Report

__all__ = ["ImageFigures", "image_figures", "report_page", "batch_page"]


@dataclass(frozen=True)
class ImageFigures:
    """The pictures of one measured image, as PNG file contents.

    ``heat`` has one pixel per tile and covers ``heat_extent`` (width, height)
    of the image, as fractions (the tiles that fit whole). ``worst_at`` is the
    worst tile's top-left pixel (x, y) in the image, ``worst_score`` its score
    and ``magnified`` its magnification. ``spectrum`` is None in a thumbnail.
    """

    preview: bytes
    shrink: int
    heat: bytes
    heat_extent: tuple[float, float]
    heat_top: float
    tile: int
    worst: bytes
    worst_at: tuple[int, int]
    worst_score: float
    magnified: int
    spectrum: bytes | None


def image_figures(image: np.ndarray, period: int, tile: int = 64,
                  thumbnail: bool = False) -> ImageFigures:
    """Draw the pictures for an image's report: preview, heat layer, worst tile, spectrum.

    Parameters
    ----------
    image : ndarray (H, W, C) in [0, 1]
        The image measured.
    period : int
        The period s measured (the report's factor, or its strongest candidate).
    tile : int
        Side of the heat map's tiles in pixels (rounded down to a multiple of s).
    thumbnail : bool
        Small pictures for a row of a batch page, and no spectrum; the heat
        scale is then fixed (0 to :data:`~upconv.pictures.HEAT_SCALE_TOP`,
        clipped), the same for every row.

    Examples
    --------
    >>> board = (np.indices((64, 64)).sum(axis=0) % 2)[:, :, None] * 0.02 + 0.5
    >>> figures = image_figures(board, 2, tile=32)
    >>> figures.worst_at, figures.magnified, figures.heat_extent
    ((0, 0), 12, (1.0, 1.0))
    """
    tiles = tile_scores(image, period, tile)
    picture, shrink = preview(image, 192 if thumbnail else 1024)
    worst = worst_tile(image, tiles, 128 if thumbnail else 384)
    height, width = image.shape[:2]
    rows, cols = tiles.scores.shape
    row, col = tiles.worst
    top = HEAT_SCALE_TOP if thumbnail else heat_top(tiles)
    return ImageFigures(
        preview=png_bytes(picture), shrink=shrink, heat=png_bytes(heat_layer(tiles, top)),
        heat_extent=(min(1.0, cols * tiles.tile / width), min(1.0, rows * tiles.tile / height)),
        heat_top=top, tile=tiles.tile,
        worst=png_bytes(worst), worst_at=(col * tiles.tile, row * tiles.tile),
        worst_score=float(tiles.scores[row, col]), magnified=worst.width // tiles.tile,
        spectrum=None if thumbnail else png_bytes(render_spectrum(image, period)))


# ------------------------------------------------------------------ pages

_STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px;
       color: #1d1d1f; background: #fafafa; max-width: 1400px; }
h1 { font-size: 22px; margin: 0 0 4px; word-break: break-all; }
h2 { font-size: 17px; margin: 28px 0 8px; }
.lead { color: #555; margin: 0 0 16px; }
.verdict { display: inline-block; padding: 1px 10px; border-radius: 10px; color: #fff;
           font-weight: 600; }
.v-none { background: #2e7d32; } .v-faint { background: #9e9d24; }
.v-visible { background: #ef6c00; } .v-strong { background: #c62828; }
.v-error { background: #616161; }
.figures { display: flex; flex-wrap: wrap; gap: 20px; align-items: flex-start; }
figure { margin: 0; background: #fff; padding: 10px; border: 1px solid #ddd;
         border-radius: 6px; }
figcaption { font-size: 13px; color: #555; margin-top: 6px; max-width: 520px; }
.overlay { position: relative; display: inline-block; line-height: 0; }
.overlay img { display: block; max-width: min(720px, 90vw); height: auto; }
.overlay img.heat { position: absolute; left: 0; top: 0; max-width: none;
                    image-rendering: pixelated; opacity: 0.6; }
.pixels { image-rendering: pixelated; }
.bar { height: 12px; width: 220px; display: inline-block; vertical-align: middle;
       border: 1px solid #999; }
table { border-collapse: collapse; background: #fff; }
td, th { border: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th { background: #f0f0f0; } .name { text-align: left; word-break: break-all; }
table.phases td { width: 64px; font-variant-numeric: tabular-nums; }
pre { background: #fff; border: 1px solid #ddd; padding: 10px; overflow-x: auto;
      font-size: 12px; }
footer { color: #888; font-size: 12px; margin-top: 32px; }
"""

_VERDICTS = ("none", "faint", "visible", "strong")


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
            f"<body>\n{body}\n<footer>Written by upconv {html.escape(__version__)}. "
            "Scores are the RMS amplitude of the period-s pattern in 8-bit grey levels "
            "(noise subtracted); see the README's \"Checkerboard report\" section."
            "</footer>\n</body>\n</html>\n")


def _verdict_badge(verdict: str) -> str:
    kind = verdict if verdict in _VERDICTS else "error"
    return f'<span class="verdict v-{kind}">{html.escape(verdict)}</span>'


def _colour_bar(top: float) -> str:
    stops = ", ".join(f"rgb{tuple(int(v) for v in colour_map(np.array(t)))} {t * 100:.0f}%"
                      for t in np.linspace(0, 1, 8))
    return (f'0 <span class="bar" style="background: linear-gradient(to right, {stops})">'
            f'</span> {top:.2f} grey levels')


def _overlay(figures: ImageFigures, alt: str, width: int | None = None) -> str:
    """The image with the heat layer laid over the tiles it covers."""
    fraction_x, fraction_y = figures.heat_extent
    size = f' style="width: {width}px"' if width else ""
    return (f'<div class="overlay"><img src="{_data_url(figures.preview)}" alt="{alt}"{size}>'
            f'<img class="heat" src="{_data_url(figures.heat)}" alt="heat map" '
            f'style="width: {fraction_x * 100:.4f}%; height: {fraction_y * 100:.4f}%"></div>')


def _phase_table(phase_means: tuple[tuple[float, ...], ...]) -> str:
    values = np.asarray(phase_means, dtype=np.float64)
    s = values.shape[0]
    limit = float(np.abs(values).max()) or 1.0
    colours = diverging_colours(values, limit)
    head = "".join(f"<th>x mod {s} = {q}</th>" for q in range(s))
    rows = []
    for p in range(s):
        cells = "".join(f'<td style="background: rgb{tuple(int(c) for c in colours[p, q])}; '
                        f'color: {"#fff" if int(colours[p, q].sum()) < 450 else "#000"}">'
                        f"{values[p, q]:+.3f}</td>" for q in range(s))
        rows.append(f"<tr><th>y mod {s} = {p}</th>{cells}</tr>")
    return (f'<table class="phases"><tr><th></th>{head}</tr>{"".join(rows)}</table>')


def _figures_table(report: Report) -> str:
    board = report.checkerboard
    rows = []
    if report.size is not None:
        rows.append(("size", f"{report.size[0]} x {report.size[1]}"))
    if board is not None:
        if report.factor is None:
            period = f"none found (strongest candidate {board.period})"
        else:
            period = f"{report.factor}{' (detected)' if report.factor_detected else ''}"
        rows += [("period", period),
                 ("score", f"{board.score:.3f} grey levels RMS"),
                 ("noise", f"{board.noise:.3f}"),
                 ("verdict", _verdict_badge(board.verdict)),
                 ("spectral peak", f"{board.spectral_peak_db:.1f} dB over its neighbours")]
        if board.scores_by_period:
            rows.append(("detection (grey image)", ", ".join(
                f"{p}: {v:.2f}" for p, v in board.scores_by_period.items())))
    if report.checkerboard_error:
        rows.append(("not measured", html.escape(report.checkerboard_error)))
    if report.reference is not None:
        r = report.reference
        rows += [("PSNR", "identical" if r.psnr is None else f"{r.psnr:.2f} dB"),
                 ("SSIM", f"{r.ssim:.4f} (mean over {html.escape(r.channels)})")]
    if report.kernel is not None:
        k = report.kernel
        rows.append(("kernel", f"{html.escape(k.name)}, {' x '.join(map(str, k.shape))}, "
                               f"stride {k.stride}"))
        if k.layer is not None:
            layer = k.layer
            rows.append(("checkerboard", f"{layer['checkerboard_percent']:.3g} % "
                         f"({layer['verdict']}"
                         + (f", worst output channel {layer['worst_output_channel']}"
                            if len(layer["per_output_channel"]) > 1 else "")
                         + "): the RMS pattern a flat input prints, against the RMS "
                           "response to white noise"))
        if len(k.shape) < 4:  # summed over C_in, the spread means nothing for a layer
            rows.append(("phase-sum spread",
                         ("infinite" if k.spread is None else f"{k.spread:.4g}")
                         + (" (a flat input stays flat)" if k.flat_stays_flat else
                            " (a flat input gets a checkerboard)")))
        if k.dc_gain is not None:
            gains = np.atleast_1d(np.asarray(k.dc_gain, dtype=np.float64))
            rows.append(("DC gain", ", ".join(f"{g:.4g}" for g in gains)))
    body = "".join(f"<tr><th>{name}</th><td class=\"name\">{value}</td></tr>"
                   for name, value in rows)
    return f"<table>{body}</table>"


def report_page(report: Report, figures: ImageFigures | None = None,
                kernel: Kernel | None = None, title: str = "") -> str:
    """The HTML page of one report: figures, pictures, phase means, kernel and JSON.

    ``figures`` (from :func:`image_figures`) is None for a kernel-only report
    or an image that could not be measured; ``kernel`` (with its stride) adds
    the kernel's picture.

    Examples
    --------
    >>> from upconv.report import build_report
    >>> page = report_page(build_report(None, kernel=Kernel(np.ones((3, 3)), stride=2)),
    ...                    kernel=Kernel(np.ones((3, 3)), stride=2), title="ones")
    >>> page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    True
    """
    board = report.checkerboard
    if board is None and report.image is None and report.kernel is not None:
        title, heading = title or report.kernel.name, "Kernel report"
    else:
        title, heading = title or report.image or "image", "Checkerboard report"
    parts = [f"<h1>{heading}: {html.escape(title)}</h1>"]
    if board is not None:
        parts.append(f'<p class="lead">{_verdict_badge(board.verdict)} score '
                     f"{board.score:.3f} grey levels at period {board.period}</p>")
    parts.append(_figures_table(report))
    if figures is not None and board is not None:
        shrunk = (f", shown at 1/{figures.shrink} size" if figures.shrink > 1 else "")
        x, y = figures.worst_at
        parts.append("<h2>Where the pattern is</h2><div class=\"figures\">")
        parts.append(f"<figure>{_overlay(figures, 'the image')}<figcaption>The image{shrunk}, "
                     f"with the score of each {figures.tile} px tile laid over it: "
                     f"{_colour_bar(figures.heat_top)}.</figcaption></figure>")
        parts.append(f'<figure><img class="pixels" src="{_data_url(figures.worst)}" '
                     f'alt="the worst tile, magnified"><figcaption>The worst tile (pixels '
                     f"{x}-{x + figures.tile - 1}, {y}-{y + figures.tile - 1}; score "
                     f"{figures.worst_score:.2f}), magnified {figures.magnified}x with "
                     f"nearest-neighbour pixels.</figcaption></figure>")
        if figures.spectrum is not None:
            parts.append(f'<figure><img src="{_data_url(figures.spectrum)}" '
                         f'alt="log power spectrum"><figcaption>Log power spectrum of the grey '
                         f"image, DC at the centre; the circles mark the grid frequencies "
                         f"(k/{board.period}, l/{board.period}) where a period-{board.period} "
                         "pattern puts its energy.</figcaption></figure>")
        parts.append("</div>")
    if board is not None:
        parts.append(f"<h2>Phase means (grey levels, centred)</h2><p class=\"lead\">The mean "
                     f"of each phase: output pixel (y, x) is in phase (y mod {board.period}, "
                     f"x mod {board.period}).</p>{_phase_table(board.phase_means)}")
    if kernel is not None and kernel.stride is not None:
        picture = _data_url(png_bytes(render_kernel(kernel)))
        parts.append(f'<h2>Kernel</h2><figure><img src="{picture}" alt="the kernel, its '
                     "phases and its flat-input response\"></figure>")
    parts.append(f"<details open><summary><h2 style=\"display: inline\">JSON</h2> (what "
                 f"--json prints)</summary><pre>{html.escape(report.to_json())}</pre></details>")
    return _page(f"upconv {heading.lower()}: {title}", "\n".join(parts))


@dataclass(frozen=True)
class BatchEntry:
    """One row of a batch page: the file, its report (None if it failed) and pictures."""

    path: str
    report: Report | None
    figures: ImageFigures | None = None
    error: str | None = None

    @property
    def why(self) -> str:
        """Why the image was not measured."""
        if self.error:
            return self.error
        return (self.report.checkerboard_error if self.report is not None else None) or ""

    @property
    def score(self) -> float:
        board = self.report.checkerboard if self.report is not None else None
        return board.score if board is not None else -math.inf


def batch_page(entries: list[BatchEntry], title: str = "upconv batch report") -> str:
    """One page for many images: a row per image, highest score first; failures last.

    Ties keep the input order, so the page is the same however the batch ran.
    """
    measured = sorted((e for e in entries if e.report is not None and
                       e.report.checkerboard is not None), key=lambda e: -e.score)
    shown = {id(e) for e in measured}
    others = [e for e in entries if id(e) not in shown]
    counts = {v: 0 for v in _VERDICTS}
    for entry in measured:
        counts[entry.report.checkerboard.verdict] += 1
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    rows = []
    for rank, entry in enumerate(measured, 1):
        board, figures = entry.report.checkerboard, entry.figures
        size = entry.report.size
        pictures = ("" if figures is None else
                    f"<td>{_overlay(figures, html.escape(entry.path), width=192)}</td>"
                    f'<td><img class="pixels" src="{_data_url(figures.worst)}" '
                    f'alt="worst tile" width="128"></td>')
        rows.append(f"<tr><td>{rank}</td>{pictures}"
                    f'<td class="name">{html.escape(entry.path)}</td>'
                    f"<td>{'' if size is None else f'{size[0]} x {size[1]}'}</td>"
                    f"<td>{board.period}{'' if entry.report.factor is not None else '?'}</td>"
                    f"<td>{board.score:.3f}</td><td>{board.noise:.3f}</td>"
                    f"<td>{_verdict_badge(board.verdict)}</td></tr>")
    head = ("<tr><th>#</th><th>image and heat map</th><th>worst tile</th>"
            '<th class="name">file</th>'
            "<th>size</th><th>period</th><th>score</th><th>noise</th><th>verdict</th></tr>")
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="lead">{len(measured)} image(s) measured'
             f"{': ' + summary if summary else ''}; highest score first. Scores in grey "
             "levels RMS; a period with ? was not significant (strongest candidate). "
             f"Heat maps: score per tile, {_colour_bar(HEAT_SCALE_TOP)} and above.</p>",
             f'<table class="batch">{head}{"".join(rows)}</table>']
    if others:
        items = "".join(f'<tr><td class="name">{html.escape(e.path)}</td>'
                        f'<td class="name">{html.escape(e.why)}</td></tr>' for e in others)
        parts.append(f"<h2>Not measured ({len(others)})</h2><table>"
                     f'<tr><th class="name">file</th><th class="name">why</th></tr>{items}'
                    "</table>")
    return _page(title, "\n".join(parts))


def report_with_figures(settings, tile: int, job) -> tuple[Report, ImageFigures | None]:
    """A batch job for ``--html``: the report of ``job.input`` and its row's pictures,
    drawn in the worker (picklable with :func:`functools.partial`)."""
    from .reporting import report_file

    report, image = report_file(job.input, settings)
    board = report.checkerboard
    figures = image_figures(image, board.period, tile, thumbnail=True) if board else None
    return report, figures
