"""Reports for people: rich tables on a console.

Everything here prints what the measuring code computed (a
:class:`upconv.report.Report`, :mod:`upconv.training`, the kernel analysis);
nothing here measures. Only the command line imports this module, so batch
workers never load rich. Pictures (PNG heat maps, spectra, kernels) are drawn
by :mod:`upconv.pictures`, and the HTML report by :mod:`upconv.html_report`.
"""

from __future__ import annotations

import math

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .kernels import Kernel
from .layers import verdict_for
from .report import Report, keeps_brightness

__all__ = ["print_report", "print_kernel_summary", "print_fit_summary", "matrix_table",
           "channel_table", "figure_text"]


def print_report(report: Report, console: Console, title: str = "report") -> None:
    """A :class:`~upconv.report.Report` as rich tables: one per part that is set.

    Examples
    --------
    >>> import io
    >>> from upconv.kernels import Kernel
    >>> from upconv.report import build_report
    >>> console = Console(file=io.StringIO(), width=80, color_system=None)
    >>> print_report(build_report(None, kernel=Kernel(np.ones((3, 3)), stride=2)), console)
    >>> "a flat input gets a checkerboard" in console.file.getvalue()
    True
    """
    board = report.checkerboard
    if board is not None:
        table = Table(title=escape(f"checkerboard: {title}"), show_header=False)
        if report.factor_detected:
            period = f"{report.factor} (detected)"
        elif report.factor is None and board.strongest_candidate is not None:
            candidate = board.strongest_candidate
            period = (f"none found (strongest candidate: period {candidate.period}, "
                      f"{candidate.score:.3f} grey levels, not significant)")
        else:
            period = str(report.factor)
        table.add_row("period", period)
        table.add_row("score", f"{board.score:.3f} grey levels RMS (noise {board.noise:.3f})")
        table.add_row("verdict", board.verdict)
        table.add_row("spectral peak", f"{board.spectral_peak_db:.1f} dB over its neighbours")
        if len(board.phase_means) <= 4:
            table.add_row("phase means", "\n".join(" ".join(f"{v:+7.2f}" for v in row)
                                                   for row in board.phase_means))
        if board.scores_by_period is not None:
            measured = ", ".join(f"{p}: {v:.2f}" for p, v in board.scores_by_period.items())
            skipped = [str(p) for p in range(2, 9) if p not in board.scores_by_period]
            if skipped:
                measured += f" ({', '.join(skipped)}: no spectral peak, not measured)"
            table.add_row("detection\n(grey image)", measured or "no spectral peak")
        console.print(table)
    if report.kernel is not None:
        k = report.kernel
        table = Table(title=escape(f"kernel: {k.name}"), show_header=False)
        table.add_row("shape / stride", f"{' x '.join(map(str, k.shape))} / {k.stride}")
        sums = np.array(k.phase_sums)
        if sums.ndim == 2:
            table.add_row("phase sums", "\n".join(" ".join(f"{v:9.4g}" for v in row)
                                                  for row in sums))
        if len(k.shape) < 4:  # summed over C_in, the spread means nothing for a layer
            table.add_row("spread", ("infinite" if k.spread is None else f"{k.spread:.4g}")
                          + " ("
                          + ("a flat input stays flat" if k.flat_stays_flat else
                             "a flat input gets a checkerboard") + ")")
        if k.layer is not None:
            table.add_row("checkerboard", figure_text(k.layer, multi=sums.ndim > 2))
        if k.dc_gain is not None and sums.ndim == 2:
            table.add_row("DC gain", _gain_text(k.dc_gain))
        console.print(table)
        if k.layer is not None and sums.ndim > 2:
            console.print(channel_table(k.layer, sums, mixes=len(k.shape) == 4))
    if report.reference is not None:
        r = report.reference
        table = Table(title="against the reference", show_header=False)
        table.add_row("PSNR", "identical" if r.psnr is None else f"{r.psnr:.2f} dB")
        table.add_row("SSIM", f"{r.ssim:.4f} (mean over {r.channels})")
        console.print(table)


def print_kernel_summary(kernel: Kernel, summary: dict, console: Console) -> None:
    """Rich tables for ``kernel show``."""
    head = Table(show_header=False, box=None)
    head.add_row("kernel", escape(kernel.name))
    head.add_row("shape", " x ".join(map(str, kernel.weights.shape)))
    head.add_row("stride", str(kernel.stride) if kernel.stride else "not stated (give --factor)")
    alignment = kernel.alignment
    if kernel.stride and kernel.padding is None and not summary["half_pixel_aligned"]:
        alignment += (" (size - stride is odd: the centre lands half an output pixel up and "
                      "left of the half-pixel grid)")
    head.add_row("alignment", alignment)
    console.print(head)
    if kernel.weights.ndim == 2 and max(kernel.shape) <= 16:
        console.print(matrix_table("weights", kernel.weights))
    else:
        w = kernel.weights
        console.print(f"weights: min {w.min():.4g}, max {w.max():.4g}, sum {w.sum():.4g}")
    if kernel.stride is None:
        return
    s = kernel.stride
    sums = np.asarray(summary["phase_sums"])
    if kernel.weights.ndim > 2:
        console.print(f"phase (p, q): the taps landing on output pixels (y, x), y mod {s} = p, "
                      f"x mod {s} = q; each channel's {s * s} phase sums are in the table below "
                      "(--json has every sub-kernel)")
    elif s * s <= 64:
        console.print(f"phase (p, q): the taps landing on output pixels (y, x), "
                      f"y mod {s} = p, x mod {s} = q")
        table = Table(title=escape(f"{s * s} polyphase components"))
        table.add_column("phase (p, q)")
        table.add_column("sub-kernel")
        table.add_column("sum", justify="right")
        for p in range(s):
            for q in range(s):
                block = kernel.sub_kernel(p, q)
                text = ("\n".join(" ".join(f"{v:8.4g}" for v in row) for row in block)
                        if block.ndim == 2 and max(block.shape) <= 8 else f"shape {block.shape}")
                table.add_row(f"({p}, {q})", text,
                              " ".join(f"{v:.6g}" for v in np.ravel(sums[..., p, q])))
        console.print(table)
    else:
        console.print(f"{s * s} polyphase components: sums from {sums.min():.6g} to "
                      f"{sums.max():.6g} (use --json for all of them)")
    spread = summary["spread"]
    verdict = ("all equal: a flat input stays flat (no checkerboard from flat areas)"
               if summary["flat_stays_flat"] else "unequal: a flat input gets a "
               "stride-periodic (checkerboard) pattern")
    shown = "infinite (the sums average 0)" if spread is None else f"{spread:.6g}"
    if not kernel.mixes_channels:  # summed over C_in, the spread means nothing for a layer
        console.print(f"spread (max - min) / mean of the phase sums: {shown}; {verdict}")
    multi = sums.ndim > 2
    console.print(f"checkerboard: {figure_text(summary['layer'], multi)}")
    if multi:
        console.print(channel_table(summary["layer"], sums, kernel.mixes_channels))
    else:
        console.print(f"DC gain (mean of the phase sums): {_gain_text(summary['dc_gain'])}")


def figure_text(layer: dict, multi: bool) -> str:
    """The layer figure for people: percent, verdict, and the worst output channel."""
    text = (f"{layer['checkerboard_percent']:.3g} % ({layer['verdict']}): the RMS pattern a "
            "flat input prints, against the RMS response to white noise")
    if multi:
        text += f"; worst output channel {layer['worst_output_channel']}"
    return text


def channel_table(layer: dict, sums: np.ndarray, mixes: bool, title: str = "per output channel"
                  ) -> Table:
    """One labelled row per output channel: its checkerboard figure, the input channel
    whose flat value prints the most (channel-mixing kernels), its DC gain (the mean
    response to 1 in every channel) and its phase sums (summed over the input channels)."""
    table = Table(title=escape(title))
    table.add_column("out", justify="right")
    table.add_column("checkerboard %", justify="right")
    table.add_column("verdict")
    if mixes:
        table.add_column("worst input", justify="right")
    table.add_column("DC gain", justify="right")
    table.add_column("phase sums (over inputs)" if mixes else "phase sums")
    small = sums.shape[-1] <= 3  # a 4 x 4 grid would wrap at 80 columns
    for index, row in enumerate(layer["per_output_channel"]):
        percent = row["checkerboard_percent"]
        cells = [str(index), f"{percent:.3g}", verdict_for(percent)]
        if mixes:
            cells.append(str(row["worst_input_channel"]))
        cells.append(f"{row['mean_response']:.4g}")
        block = sums[index]
        cells.append("\n".join(" ".join(f"{v:8.4g}" for v in line) for line in block) if small
                     else f"{block.min():.4g} to {block.max():.4g}")
        table.add_row(*cells)
    return table


def _gain_text(gain: float | tuple | list) -> str:
    """The DC gain for people: the value(s), and what a gain other than 1 does."""
    gains = np.atleast_1d(np.asarray(gain, dtype=np.float64))
    text = ", ".join(f"{g:.4g}" for g in gains)
    if keeps_brightness(gains):
        return f"{text} (a flat image keeps its brightness)"
    return f"{text} (a flat image comes out that many times as bright; 8-bit outputs clip)"


def print_fit_summary(summary: dict, console: Console) -> None:
    table = Table(title="fitted kernel", show_header=False)
    rows = [("written to", escape(summary["kernel"])),
            ("shape / stride", f"{' x '.join(map(str, summary['shape']))} / {summary['stride']}"),
            ("alignment, boundary", f"{summary['alignment']}, {summary['boundary']}"),
            ("degradation", str(summary["degradation"] or "given LOW images")),
            ("pairs / samples", f"{summary['pairs']} / {summary['samples']}"),
            ("training PSNR", _db(summary["training_psnr"])),
            ("RMS residual", f"{summary['rms_residual']:.4g}"),
            ("condition number", f"{summary['condition_number']:.3g}"),
            ("ridge", f"{summary['ridge']:g}"),
            ("phase-sum spread", f"{summary['spread']:.3g}"
             + (" (checkerboard-free)" if summary["checkerboard_free"] else ""))]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    if summary.get("validation"):
        check = Table(title="validation PSNR (dB)")
        for column in ("pair", "fitted", "bicubic", "bilinear"):
            check.add_column(column, justify="left" if column == "pair" else "right")
        for row in summary["validation"]:
            check.add_row(escape(f"{row['low']} -> {row['high']}"), _db(row["fitted"]),
                          _db(row["bicubic"]), _db(row["bilinear"]))
        console.print(check)


def _db(value: float | None) -> str:
    if value is None or math.isinf(value):
        return "exact"
    return f"{value:.2f} dB"


def _number(value: float) -> str:
    return "0" if value == 0 else f"{value:.4g}"


def matrix_table(title: str, matrix: np.ndarray, rows: list[str] | None = None,
                 columns: list[str] | None = None, zeros: str = ".") -> Table:
    """A matrix as a table, zeros shown as ``zeros``; ``rows`` and ``columns`` label it."""
    table = Table(title=title, show_header=columns is not None, box=None, pad_edge=False,
                  padding=(0, 0, 0, 1))
    if rows is not None:
        table.add_column("", justify="right", style="dim")
    for label in (columns if columns is not None else [""] * matrix.shape[1]):
        table.add_column(label, justify="right")
    for index, row in enumerate(np.atleast_2d(matrix)):
        cells = [_number(v) if v != 0 else zeros for v in row]
        table.add_row(*([rows[index]] if rows is not None else []), *cells)
    return table
