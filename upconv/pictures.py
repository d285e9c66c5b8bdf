"""Pictures of a report: heat maps, the spectrum, a kernel's phases, the worst tile.

Everything here draws with Pillow what the measuring code computes (the
local score per tile of :func:`upconv.metrics.local_checkerboard`, the
spectrum of :func:`upconv.metrics.log_power_spectrum`, a kernel's polyphase
components); it loads no console library, so a batch worker can draw the
pictures of an HTML report (:mod:`upconv.html_report`) next to its
measurements.
"""

from __future__ import annotations

import colorsys
import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .kernels import Kernel
from .layers import layer_figures, verdict_for
from .metrics import grey, local_checkerboard, log_power_spectrum
from .report import check_measurable, colour_channels, measurable_colour
from .transpose import transposed_conv

__all__ = ["colour_map", "diverging_colours", "render_map", "render_spectrum",
           "render_kernel", "TileScores", "tile_scores", "heat_layer", "heat_top", "worst_tile",
           "preview", "png_bytes"]

_INFERNO = np.array([(0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99), (212, 72, 66),
                     (245, 125, 21), (250, 193, 39), (252, 255, 164)], np.float64)
_NEGATIVE = np.array((59, 76, 192), np.float64)
_POSITIVE = np.array((180, 4, 38), np.float64)
_BLACK, _GREY, _WHITE = (0, 0, 0), (110, 110, 110), (255, 255, 255)


def colour_map(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] to RGB uint8 with an inferno-like map (dark = low, yellow = high).

    Examples
    --------
    >>> colour_map(np.array([0.0, 1.0])).tolist()
    [[0, 0, 4], [252, 255, 164]]
    """
    position = np.clip(values, 0, 1) * (len(_INFERNO) - 1)
    low = np.floor(position).astype(int).clip(0, len(_INFERNO) - 2)
    fraction = (position - low)[..., None]
    rgb = _INFERNO[low] * (1 - fraction) + _INFERNO[low + 1] * fraction
    return rgb.round().astype(np.uint8)


def diverging_colours(values: np.ndarray, limit: float) -> np.ndarray:
    """Signed values to RGB uint8: blue below 0, white at 0, red above, saturated at ``limit``.

    Examples
    --------
    >>> diverging_colours(np.array([-1.0, 0.0, 1.0]), 1.0).tolist()
    [[59, 76, 192], [255, 255, 255], [180, 4, 38]]
    """
    t = np.clip(np.asarray(values, np.float64) / (limit if limit > 0 else 1.0), -1, 1)[..., None]
    white = np.array(_WHITE, np.float64)
    rgb = np.where(t < 0, white + (white - _NEGATIVE) * t, white + (_POSITIVE - white) * t)
    return rgb.round().astype(np.uint8)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at ``size`` pixels (its bitmap font where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def png_bytes(picture: Image.Image) -> bytes:
    """A picture as PNG file contents."""
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


# ------------------------------------------------------------------ images

@dataclass(frozen=True)
class TileScores:
    """The local score per tile: ``scores[i, j]`` covers rows ``i*tile:(i+1)*tile``."""

    scores: np.ndarray
    tile: int
    period: int

    @property
    def worst(self) -> tuple[int, int]:
        """(row, column) of the tile with the highest score."""
        index = np.unravel_index(int(np.argmax(self.scores)), self.scores.shape)
        return int(index[0]), int(index[1])


def tile_scores(image: np.ndarray, period: int, tile: int = 64) -> TileScores:
    """The score of the period-``period`` pattern in each ``tile`` x ``tile`` tile.

    ``tile`` is rounded down to a multiple of the period, and to the image's
    shorter side. ``image`` is (H, W, C) in [0, 1].

    Examples
    --------
    >>> board = (np.indices((64, 64)).sum(axis=0) % 2)[:, :, None] * 0.02 + 0.5
    >>> tiles = tile_scores(board, 2, 32)
    >>> tiles.scores.shape, tiles.worst
    ((2, 2), (0, 0))
    """
    colour = measurable_colour(image)
    check_measurable(colour.shape, period)
    tile = max(period, min(tile, min(colour.shape[:2])) // period * period)
    return TileScores(local_checkerboard(colour, period, tile), tile, period)


def render_map(image: np.ndarray, factor: int, tile: int = 64) -> Image.Image:
    """A heat map of the local score per tile, with a colour bar in grey levels."""
    tiles = tile_scores(image, factor, tile)
    scores = tiles.scores
    top = max(float(scores.max()), 1.0)
    cell = max(1, min(512 // max(scores.shape), 64))
    heat = colour_map(scores / top).repeat(cell, axis=0).repeat(cell, axis=1)
    height = max(heat.shape[0], 160)
    canvas = Image.new("RGB", (heat.shape[1] + 110, height + 30), _WHITE)
    canvas.paste(Image.fromarray(heat), (0, 30))
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 2), f"checkerboard per {tiles.tile}px tile (period {factor})", fill=_BLACK)
    bar = colour_map(np.linspace(1, 0, height)[:, None].repeat(20, axis=1))
    canvas.paste(Image.fromarray(bar), (heat.shape[1] + 10, 30))
    for value, y in ((top, 30), (top / 2, 30 + height // 2), (0.0, 30 + height - 10)):
        draw.text((heat.shape[1] + 34, y), f"{value:.2f}", fill=_BLACK)
    draw.text((heat.shape[1] + 34, 30 + height // 4), "grey", fill=_BLACK)
    draw.text((heat.shape[1] + 34, 42 + height // 4), "levels", fill=_BLACK)
    return canvas


#: Heat maps laid over images share one scale from 0 to at least this many grey levels
#: (where "strong" begins), so a pattern that is only noise stays dark.
HEAT_SCALE_TOP = 5.0


def heat_top(tiles: TileScores) -> float:
    """The top of an overlaid heat map's scale: the highest tile score, at least
    :data:`HEAT_SCALE_TOP`."""
    return max(float(tiles.scores.max()), HEAT_SCALE_TOP)


def heat_layer(tiles: TileScores, top: float) -> Image.Image:
    """One pixel per tile, inferno-coloured from 0 to ``top`` grey levels (clipped above):
    a layer to lay over the image, scaled without smoothing."""
    return Image.fromarray(colour_map(tiles.scores / top))


def _to_8bit(image: np.ndarray) -> np.ndarray:
    """Colour channels of an (H, W, C) image in [0, 1] as uint8 gray or RGB."""
    colour = colour_channels(image)
    values = np.clip(colour, 0, 1) * 255 + 0.5
    samples = values.astype(np.uint8)
    return samples[:, :, 0] if samples.shape[2] == 1 else samples


def preview(image: np.ndarray, longest: int = 1024) -> tuple[Image.Image, int]:
    """The image as 8-bit, shrunk by a whole factor (box filter) to at most ``longest``
    pixels a side; returns the picture and the factor it was shrunk by."""
    picture = Image.fromarray(_to_8bit(image))
    shrink = max(1, math.ceil(max(picture.size) / longest))
    return (picture.reduce(shrink) if shrink > 1 else picture), shrink


def worst_tile(image: np.ndarray, tiles: TileScores, size: int = 384) -> Image.Image:
    """The tile with the highest score, magnified by a whole factor with nearest-neighbour
    pixels (each image pixel a sharp square) to about ``size`` pixels a side."""
    row, col = tiles.worst
    t = tiles.tile
    crop = _to_8bit(image[row * t:(row + 1) * t, col * t:(col + 1) * t])
    magnify = max(1, size // t)
    return Image.fromarray(crop).resize((crop.shape[1] * magnify, crop.shape[0] * magnify),
                                        Image.Resampling.NEAREST)


def render_spectrum(image: np.ndarray, factor: int, size: int = 512) -> Image.Image:
    """The log power spectrum (DC at the centre), with the grid frequencies (k/s, l/s) circled."""
    colour = colour_channels(image).astype(np.float32, copy=False)
    channel = grey(colour)
    rows, cols = channel.shape[0] // factor * factor, channel.shape[1] // factor * factor
    spectrum = log_power_spectrum(channel[:rows, :cols])
    # Shrink by block means so the picture stays a readable size.
    step = max(1, math.ceil(max(rows, cols) / size))
    shrunk = spectrum[:rows // step * step, :cols // step * step]
    shrunk = shrunk.reshape(rows // step, step, cols // step, step).mean(axis=(1, 3))
    low, high = np.percentile(shrunk, [1, 99.9])
    picture = Image.fromarray(colour_map((shrunk - low) / max(high - low, 1e-9)))
    draw = ImageDraw.Draw(picture)
    centre_y, centre_x = rows // 2, cols // 2
    for k in range(-factor, factor + 1):
        for j in range(-factor, factor + 1):
            if k == 0 and j == 0:
                continue
            y = (centre_y + k * rows // factor) / step
            x = (centre_x + j * cols // factor) / step
            if 0 <= y < picture.height and 0 <= x < picture.width:
                draw.ellipse((x - 6, y - 6, x + 6, y + 6), outline=(0, 255, 255), width=2)
    draw.text((4, 4), f"log power; circles: (k/{factor}, l/{factor})", fill=(0, 255, 255))
    return picture


# ------------------------------------------------------------------ kernels

#: Kernels with more channels than this are drawn for their first channels only.
KERNEL_CHANNELS_DRAWN = 4
_PAD = 16


def phase_colours(stride: int) -> list[tuple[int, int, int]]:
    """One distinct, dark enough hue per output phase, in phase order (p * s + q)."""
    count = stride * stride
    return [tuple(round(255 * v) for v in colorsys.hsv_to_rgb(i / count, 0.85, 0.75))
            for i in range(count)]


def flat_response(kernel: Kernel, periods: int = 2) -> np.ndarray:
    """What a flat input of 1 (in every input channel) comes out as, away from the borders:
    a ``periods * s`` square tile starting at an output pixel in phase (0, 0),
    shape ``(C_out, n, n)``. Computed by applying the kernel, not from its sums.

    Examples
    --------
    >>> flat_response(Kernel(np.ones((3, 3)), stride=2), periods=1)[0].round(12).tolist()
    [[1.0, 2.0], [2.0, 4.0]]
    """
    s = kernel.stride
    if s is None:
        raise ValueError("the kernel needs its stride")
    channels = kernel.weights.shape[0] if kernel.weights.ndim >= 3 else 1
    side = max(kernel.shape) // s + periods + 4
    out = transposed_conv(np.ones((side, side, channels)), kernel, "edge", threads=1)
    start = (side // 2) * s  # a multiple of s: phase (0, 0), far from both borders
    tile = out[start:start + periods * s, start:start + periods * s]
    return np.moveaxis(tile, -1, 0)


def render_kernel(kernel: Kernel) -> Image.Image:
    """A kernel as a picture: its weights, its s x s phases with their sums, and what a
    flat input comes out as.

    Each weight's frame has the colour of the output phase its tap lands on
    (pixel (y, x) is in phase (y mod s, x mod s)); the phases are drawn in the
    same colours, each titled with its sum, and the flat-input tile shows the
    pattern those sums print. Weights are blue below 0 and red above. One row
    per channel (the first :data:`KERNEL_CHANNELS_DRAWN`); a channel-mixing
    kernel is drawn per output channel, summed over the input channels (what
    a grey input, equal in every channel, meets).

    Examples
    --------
    >>> render_kernel(Kernel(np.ones((3, 3)), stride=2)).mode
    'RGB'
    """
    s = kernel.stride
    if s is None:
        raise ValueError("the kernel needs its stride")
    weights = kernel.weights
    figures = layer_figures(kernel.weights, s)
    if weights.ndim == 4:
        weights, label = weights.sum(axis=0), "output channel {} (summed over C_in)"
    elif weights.ndim == 3:
        label = "channel {}"
    else:
        weights, label = weights[None], ""
    channels = weights.shape[0]
    drawn = min(channels, KERNEL_CHANNELS_DRAWN)
    response = flat_response(kernel)
    limit = float(np.abs(weights[:drawn]).max()) or 1.0
    colours = phase_colours(s)
    rows = [_kernel_row(kernel, weights[c], response[c], limit, colours,
                        label.format(c) + (f": checkerboard {figures.checkerboard[c]:.3g} % "
                                           f"({verdict_for(figures.checkerboard[c])})"
                                           if channels > 1 else "") if label else "")
            for c in range(drawn)]
    title_font, font = _font(18), _font(13)
    head = [f"kernel {kernel.name}: {' x '.join(map(str, kernel.weights.shape))}, stride {s}, "
            f"{kernel.alignment}"]
    gains = np.atleast_1d(kernel.dc_gain())
    foot = [f"checkerboard {figures.figure:.3g} % ({figures.verdict}"
            + (f", worst output channel {figures.worst_output}" if channels > 1 else "")
            + "):",
            "the RMS pattern a flat input prints, against the RMS response to white noise",
            f"DC gain {', '.join(f'{g:.4g}' for g in gains[:drawn])}"
            f"{' ...' if len(gains) > drawn else ''}",
            "weights: blue < 0 < red; frame colour = the output phase (y mod s, x mod s) "
            "the tap lands on;",
            "flat-input shades run from its minimum (dark) to its maximum (light)"]
    if channels > drawn:
        foot.append(f"channels 0-{drawn - 1} of {channels} drawn; "
                    "'upconv kernel show --json' lists them all")
    width = max(max(row.width for row in rows) + 2 * _PAD, 640)
    height = 40 + sum(row.height + _PAD for row in rows) + 20 * len(foot) + _PAD
    canvas = Image.new("RGB", (width, height), _WHITE)
    draw = ImageDraw.Draw(canvas)
    draw.text((_PAD, 10), head[0], fill=_BLACK, font=title_font)
    y = 40
    for row in rows:
        canvas.paste(row, (_PAD, y))
        y += row.height + _PAD
    for line in foot:
        grey = line.startswith(("weights", "chan", "flat", "the RMS"))
        draw.text((_PAD, y), line, fill=_GREY if grey else _BLACK, font=font)
        y += 20
    return canvas


def _kernel_row(kernel: Kernel, weights: np.ndarray, response: np.ndarray, limit: float,
                colours: list[tuple[int, int, int]], label: str) -> Image.Image:
    """One channel: weights, phases, flat-input tile, side by side."""
    panels = [_weights_panel(kernel, weights, limit, colours)]
    if kernel.stride <= 8:
        panels.append(_phases_panel(kernel, weights, limit, colours))
    panels.append(_response_panel(response, kernel.stride))
    top = 22 if label else 0
    width = sum(p.width for p in panels) + 2 * _PAD * (len(panels) - 1)
    height = top + max(p.height for p in panels)
    row = Image.new("RGB", (width, height), _WHITE)
    if label:
        ImageDraw.Draw(row).text((0, 0), label, fill=_BLACK, font=_font(15))
    x = 0
    for panel in panels:
        row.paste(panel, (x, top))
        x += panel.width + 2 * _PAD
    return row


def _cell_size(cells: int, room: int, smallest: int = 4, largest: int = 52) -> int:
    return max(smallest, min(largest, room // max(cells, 1)))


def _grid(draw: ImageDraw.ImageDraw, origin: tuple[int, int], values: np.ndarray, cell: int,
          fills: np.ndarray, frames: np.ndarray | None = None, labels: bool = True) -> None:
    """Cells at ``origin``: filled, optionally framed per cell, labelled when big enough."""
    x0, y0 = origin
    font = _font(max(9, cell // 4))
    show = labels and cell >= 34
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            box = (x0 + j * cell, y0 + i * cell, x0 + (j + 1) * cell - 1, y0 + (i + 1) * cell - 1)
            frame = tuple(frames[i, j]) if frames is not None else (200, 200, 200)
            draw.rectangle(box, fill=tuple(int(v) for v in fills[i, j]), outline=frame,
                           width=3 if frames is not None and cell >= 12 else 1)
            text = _fitting(values[i, j], font, cell - 6) if show else None
            if text:
                fill = _WHITE if sum(int(v) for v in fills[i, j]) < 300 else _BLACK
                draw.text(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2), text, fill=fill,
                          font=font, anchor="mm")


def _short(value: float, digits: int = 3) -> str:
    """A number in ``digits`` significant digits, short exponents."""
    if value == 0:
        return "0"
    text = f"{value:.{digits}g}"
    return text.replace("e-0", "e-").replace("e+0", "e")


def _fitting(value: float, font, room: float) -> str | None:
    """The number in as many digits (3 to 1) as fit in ``room`` pixels, or None."""
    for digits in (3, 2, 1):
        text = _short(value, digits)
        if font.getlength(text) <= room:
            return text
    return None


def _weights_panel(kernel: Kernel, weights: np.ndarray, limit: float,
                   colours: list[tuple[int, int, int]]) -> Image.Image:
    s = kernel.stride
    rows, cols = weights.shape
    cell = _cell_size(max(rows, cols), 320)
    oy, ox = kernel.phase_offsets()
    frames = np.array([[colours[((i + oy) % s) * s + (j + ox) % s] for j in range(cols)]
                       for i in range(rows)], np.uint8)
    panel = Image.new("RGB", (max(cols * cell, 150), rows * cell + 24), _WHITE)
    draw = ImageDraw.Draw(panel)
    draw.text((0, 2), f"weights {rows} x {cols}", fill=_BLACK, font=_font(14))
    _grid(draw, (0, 24), weights, cell, diverging_colours(weights, limit),
          frames if s * s <= 64 else None)
    return panel


def _phases_panel(kernel: Kernel, weights: np.ndarray, limit: float,
                  colours: list[tuple[int, int, int]]) -> Image.Image:
    s = kernel.stride
    oy, ox = kernel.phase_offsets()
    blocks = [[weights[(p - oy) % s::s, (q - ox) % s::s] for q in range(s)] for p in range(s)]
    tallest = max(b.shape[0] for row in blocks for b in row)
    widest = max(b.shape[1] for row in blocks for b in row)
    cell = _cell_size(max(tallest, widest) * s, 320, smallest=3, largest=40)
    box_w, box_h = max(widest * cell, 96) + 12, tallest * cell + 20 + 12
    panel = Image.new("RGB", (s * box_w, s * box_h + 24), _WHITE)
    draw = ImageDraw.Draw(panel)
    draw.text((0, 2), f"{s * s} phases (p, q) and their sums", fill=_BLACK, font=_font(14))
    font = _font(12)
    for p in range(s):
        for q in range(s):
            block = blocks[p][q]
            x, y = q * box_w, 24 + p * box_h
            colour = colours[p * s + q]
            draw.text((x, y), f"({p}, {q}) sum {_short(float(block.sum()))}", fill=colour,
                      font=font)
            frames = np.broadcast_to(np.array(colour, np.uint8), block.shape + (3,))
            _grid(draw, (x, y + 18), block, cell, diverging_colours(block, limit), frames)
    return panel


def _response_panel(response: np.ndarray, s: int) -> Image.Image:
    n = response.shape[0]
    cell = _cell_size(n, 240, largest=56)
    low, high = float(response.min()), float(response.max())
    span = high - low
    shades = (np.full(response.shape, 0.6) if span <= 1e-12 * max(abs(high), 1.0)
              else 0.2 + 0.75 * (response - low) / span)
    fills = (shades[..., None] * 255).round().astype(np.uint8).repeat(3, axis=-1)
    panel = Image.new("RGB", (max(n * cell + 30, 200), n * cell + 24 + 18), _WHITE)
    draw = ImageDraw.Draw(panel)
    draw.text((0, 2), "a flat input of 1 comes out as", fill=_BLACK, font=_font(14))
    font = _font(11)
    for k in range(n):  # y mod s and x mod s of each row and column
        draw.text((k * cell + cell / 2, 24 + n * cell + 9), str(k % s), fill=_GREY, font=font,
                  anchor="mm")
        draw.text((n * cell + 12, 24 + k * cell + cell / 2), str(k % s), fill=_GREY, font=font,
                  anchor="mm")
    _grid(draw, (0, 24), response, cell, fills)
    return panel
