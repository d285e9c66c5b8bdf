"""``upconv kernel show`` and ``upconv kernel matrix``: looking at kernels."""

from __future__ import annotations

import io
import json
import os
import re

import click
import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .cli import CONTEXT, EPILOG, _parse_factor, main
from .errors import UpconvError
from .images import atomic_output
from .kernels import Kernel, conv_matrix, conv_output_shape, resolve_kernel
from .report import kernel_report
from .scaling import stride_from_factor


@main.group("kernel", context_settings=CONTEXT, epilog=EPILOG)
def kernel_group() -> None:
    """Look at transposed-convolution kernels: weights, phases, the matrix view."""


def _load_kernel_for_cli(spec: str, factor_text: str | None) -> Kernel:
    stride = stride_from_factor(_parse_factor(factor_text)) if factor_text else None
    return resolve_kernel(spec, stride, builtin_stride=2, require_stride=False)


@kernel_group.command("show", context_settings=CONTEXT, epilog=EPILOG)
@click.argument("spec", metavar="KERNEL")
@click.option("-f", "--factor", "factor_text", metavar="S",
              help="Stride, if the kernel file does not state it (built-ins default to 2).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def kernel_show(spec: str, factor_text: str | None, as_json: bool) -> None:
    """Show a kernel: shape, stride, weights, its s*s polyphase components and their sums.

    Equal phase sums mean a flat input stays flat; their spread,
    (max - min) / mean, is 0 exactly for checkerboard-free kernels.

    \b
    Examples:
      upconv kernel show bilinear --factor 2
      upconv kernel show k.npy --factor 2 --json | jq .spread
    """
    kernel = _load_kernel_for_cli(spec, factor_text)
    summary = kernel_summary(kernel)
    if as_json:
        click.echo(json.dumps(summary, indent=1))
        return
    print_kernel_summary(kernel, summary, Console(highlight=False))


@kernel_group.command("matrix", context_settings=CONTEXT, epilog=EPILOG)
@click.argument("spec", metavar="KERNEL")
@click.option("--input-size", "size_text", required=True, metavar="HxW",
              help="Size of the convolution's input (the transposed convolution's output).")
@click.option("--stride", type=click.IntRange(1), default=None,
              help="Stride (default: the kernel's, else 1).")
@click.option("--padding", type=click.IntRange(0), default=0, show_default=True,
              help="Zero padding of the convolution.")
@click.option("--out", "out_path", metavar="FILE",
              help="Write C to FILE (.npy or .csv) and its transpose to FILE_T.")
def kernel_matrix(spec: str, size_text: str, stride: int | None, padding: int,
                  out_path: str | None) -> None:
    """The convolution matrix C of a 2-D kernel, and its transpose.

    Convolution in the deep-learning sense (element-wise multiply and sum,
    no kernel flip): each row of C is one placement of the kernel, so
    C @ x.ravel() is the convolution of x and C.T @ y.ravel() the transposed
    convolution of y. For a 3x3 kernel on a 4x4 input at stride 1, C is 4x16.

    \b
    Examples:
      upconv kernel matrix k3x3.txt --input-size 4x4
      upconv kernel matrix bilinear --input-size 8x8 --stride 2 --padding 1 --out C.npy
    """
    height, width = _parse_hw(size_text)
    # A built-in is made for the stride asked (2 when that is 1 or not given).
    kernel = resolve_kernel(spec, None, builtin_stride=max(2, stride or 2),
                            require_stride=False)
    if kernel.weights.ndim != 2:
        raise UpconvError(f"{spec}: the matrix view is for 2-D kernels (this one has shape "
                          f"{kernel.weights.shape})")
    stride = stride or kernel.stride or 1
    rows, _ = conv_output_shape(kernel.shape, (height, width), stride, padding)
    if rows * height * width > 50_000_000:
        raise UpconvError(f"that matrix would have {rows * height * width} entries; use a "
                          "smaller --input-size")
    matrix = conv_matrix(kernel.weights, (height, width), stride, padding)
    if out_path:
        _write_matrix(matrix, out_path)
        stem, suffix = os.path.splitext(out_path)
        _write_matrix(matrix.T, f"{stem}_T{suffix}")
    console = Console(highlight=False)
    console.print(f"C: {matrix.shape[0]} x {matrix.shape[1]} (rows: kernel placements; "
                  f"stride {stride}, padding {padding}); C.T: {matrix.shape[1]} x "
                  f"{matrix.shape[0]}")
    if matrix.shape[1] <= 36 and matrix.shape[0] <= 36:
        console.print(_matrix_table("C", matrix))
        console.print(_matrix_table("C.T", matrix.T))
    elif not out_path:
        console.print("too large to print; write it with --out FILE.npy")


def _parse_hw(text: str) -> tuple[int, int]:
    match = re.match(r"^\s*(\d+)\s*x\s*(\d+)\s*$", text, re.IGNORECASE | re.ASCII)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise click.BadParameter(f"{text!r} is not HxW (e.g. 4x4)", param_hint="--input-size")
    return int(match.group(1)), int(match.group(2))


def _write_matrix(matrix: np.ndarray, path: str) -> None:
    suffix = os.path.splitext(path)[1].lower()
    buffer = io.BytesIO()
    if suffix == ".npy":
        np.save(buffer, matrix, allow_pickle=False)
    elif suffix == ".csv":
        np.savetxt(buffer, matrix, fmt="%.17g", delimiter=",")
    else:
        raise UpconvError(f"{path}: write the matrix as .npy or .csv")
    with atomic_output(path) as handle:
        handle.write(buffer.getvalue())


def _number(value: float) -> str:
    return "0" if value == 0 else f"{value:.4g}"


def _matrix_table(title: str, matrix: np.ndarray) -> Table:
    table = Table(title=title, show_header=False, box=None, pad_edge=False)
    for _ in range(matrix.shape[1]):
        table.add_column(justify="right")
    for row in matrix:
        table.add_row(*[_number(v) if v != 0 else "." for v in row])
    return table


def kernel_summary(kernel: Kernel) -> dict:
    """What ``kernel show`` reports, as plain data (the ``--json`` document)."""
    s = kernel.stride
    summary: dict = {"name": kernel.name, "shape": list(kernel.weights.shape),
                     "stride": s, "alignment": kernel.alignment, "padding": kernel.padding,
                     "weights": kernel.weights.tolist()}
    if s is not None:
        analysis = kernel_report(kernel)  # phase sums, spread, flat_stays_flat
        sums = np.asarray(analysis["phase_sums"])
        summary.update({
            "phases": [{"phase": [p, q], "weights": kernel.weights[..., p::s, q::s].tolist(),
                        "sum": sums[..., p, q].tolist()} for p in range(s) for q in range(s)],
            "phase_sums": analysis["phase_sums"],
            "spread": analysis["spread"],
            "flat_stays_flat": analysis["flat_stays_flat"],
            "half_pixel_aligned": kernel.padding is None and all(
                (k - s) % 2 == 0 for k in kernel.shape),
        })
    return summary


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
        console.print(_matrix_table("weights", kernel.weights))
    else:
        w = kernel.weights
        console.print(f"weights: min {w.min():.4g}, max {w.max():.4g}, sum {w.sum():.4g}")
    if kernel.stride is None:
        return
    s = kernel.stride
    sums = np.asarray(summary["phase_sums"])
    if s * s <= 64:
        table = Table(title=escape(f"{s * s} polyphase components h[p::{s}, q::{s}]"))
        table.add_column("phase (p, q)")
        table.add_column("sub-kernel")
        table.add_column("sum", justify="right")
        for p in range(s):
            for q in range(s):
                block = kernel.weights[..., p::s, q::s]
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
    console.print(f"spread (max - min) / mean of the phase sums: {shown}; {verdict}")
