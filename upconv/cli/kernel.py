"""``upconv kernel show`` and ``upconv kernel matrix``: looking at kernels."""

from __future__ import annotations

import io
import json
import os

import click
import numpy as np

from ..errors import BadInputError
from ..fileio import outputs_together, write_output
from ..kernel_files import resolve_kernel
from ..kernels import conv_matrix, conv_output_shape
from ..report import kernel_summary
from .common import (
    CONTEXT,
    FILE_COMMAND_EPILOG,
    HW,
    STRIDE,
    overwrite_option,
    prepare_destinations,
)


@click.group("kernel", context_settings=CONTEXT)
def kernel_group() -> None:
    """Look at transposed-convolution kernels: weights, phases, the matrix view."""


@kernel_group.command("show", context_settings=CONTEXT, epilog=FILE_COMMAND_EPILOG)
@click.argument("spec", metavar="KERNEL")
@click.option("-f", "--factor", type=STRIDE, default=None, metavar="S",
              help="Stride, if the kernel file does not state it (built-ins default to 2).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def kernel_show(spec: str, factor: int | None, as_json: bool) -> None:
    """Show a kernel: shape, stride, weights, its s*s polyphase components and their sums.

    Equal phase sums mean a flat input stays flat; their spread,
    (max - min) / mean, is 0 exactly for checkerboard-free kernels.

    \b
    Examples:
      upconv kernel show bilinear --factor 2
      upconv kernel show k.npy --factor 2 --json | jq .spread
    """
    kernel = resolve_kernel(spec, factor, builtin_stride=2, require_stride=False)
    summary = kernel_summary(kernel)
    if as_json:
        click.echo(json.dumps(summary, indent=1))
        return
    from rich.console import Console

    from ..render import print_kernel_summary

    print_kernel_summary(kernel, summary, Console(highlight=False))


@kernel_group.command("matrix", context_settings=CONTEXT, epilog=FILE_COMMAND_EPILOG)
@click.argument("spec", metavar="KERNEL")
@click.option("--input-size", "input_size", type=HW, required=True, metavar="HxW",
              help="Size of the convolution's input (the transposed convolution's output).")
@click.option("--stride", "-f", "--factor", "stride", type=click.IntRange(1), default=None,
              help="Stride of the convolution (-f/--factor: the same; default: the kernel's, "
                   "else 1).")
@click.option("--padding", type=click.IntRange(0), default=0, show_default=True,
              help="Zero padding of the convolution.")
@click.option("--out", "out_path", metavar="FILE",
              help="Write C to FILE (.npy or .csv) and its transpose to FILE_T.")
@click.option("--x", "x_values", metavar="NUMBERS",
              help="An input, H*W numbers row by row ('1 2 3 ...'): print it and C @ x, the "
                   "convolution.")
@click.option("--y", "y_values", metavar="NUMBERS",
              help="An output-sized input, row by row: print C.T @ y, the transposed "
                   "convolution.")
@click.option("--zero-insertion", is_flag=True,
              help="With --y: also show the same result as zeros inserted into y and an "
                   "ordinary convolution with the flipped kernel.")
@overwrite_option
def kernel_matrix(spec: str, input_size: tuple[int, int], stride: int | None, padding: int,
                  out_path: str | None, x_values: str | None, y_values: str | None,
                  zero_insertion: bool, overwrite: bool) -> None:
    """The convolution matrix C of a 2-D kernel, and its transpose.

    Convolution in the deep-learning sense (element-wise multiply and sum,
    no kernel flip): each row of C is one placement of the kernel, so
    C @ x.ravel() is the convolution of x and C.T @ y.ravel() the transposed
    convolution of y. For a 3x3 kernel on a 4x4 input at stride 1, C is 4x16.

    With --x, the input x and C @ x are printed as grids; with --y, C.T @ y,
    and with --zero-insertion the textbook route to it: y with s - 1 zeros
    between its pixels (and K - 1 - P around), convolved with the kernel
    turned by 180 degrees. Rows and columns of C are labelled with the output
    pixel y(r,c) and input pixel x(r,c) they belong to.

    \b
    Examples:
      upconv kernel matrix k3x3.txt --input-size 4x4
      upconv kernel matrix k3x3.txt --input-size 4x4 --x "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16"
      upconv kernel matrix k3x3.txt --input-size 4x4 --y "1 2 3 4" --zero-insertion
      upconv kernel matrix bilinear --input-size 8x8 --stride 2 --padding 1 --out C.npy
    """
    height, width = input_size
    if out_path:
        prepare_destinations([out_path, _transpose_path(out_path)], [spec], overwrite)
    # A built-in is made for the stride asked (2 when that is 1 or not given).
    kernel = resolve_kernel(spec, None, builtin_stride=max(2, stride or 2),
                            require_stride=False)
    if kernel.weights.ndim != 2:
        raise BadInputError(f"{spec}: the matrix view is for 2-D kernels (this one has shape "
                            f"{kernel.weights.shape})")
    stride = stride or kernel.stride or 1
    rows, _ = conv_output_shape(kernel.shape, (height, width), stride, padding)
    if rows * height * width > 50_000_000:
        raise BadInputError(f"that matrix would have {rows * height * width} entries; use a "
                            "smaller --input-size")
    matrix = conv_matrix(kernel.weights, (height, width), stride, padding)
    if out_path:
        with outputs_together():  # C and C.T: both or neither
            _write_matrix(matrix, out_path)
            _write_matrix(matrix.T, _transpose_path(out_path))
    from rich.console import Console

    from ..render import matrix_table

    console = Console(highlight=False)
    console.print(f"C: {matrix.shape[0]} x {matrix.shape[1]} (rows: kernel placements; "
                  f"stride {stride}, padding {padding}); C.T: {matrix.shape[1]} x "
                  f"{matrix.shape[0]}. Labels: yRC is output pixel (row R, column C) of the "
                  "convolution, xRC input pixel (R, C).")
    out_h = (height + 2 * padding - kernel.shape[0]) // stride + 1
    out_w = (width + 2 * padding - kernel.shape[1]) // stride + 1
    # Compact labels: yRC is output pixel (R, C), xRC input pixel (R, C).
    y_labels = [_label("y", r, c, out_h, out_w) for r in range(out_h) for c in range(out_w)]
    x_labels = [_label("x", r, c, height, width) for r in range(height) for c in range(width)]
    if matrix.shape[1] <= 36 and matrix.shape[0] <= 36:
        console.print(matrix_table("C", matrix, y_labels, x_labels))
        console.print(matrix_table("C.T", matrix.T, x_labels, y_labels))
    elif not out_path:
        console.print("too large to print; write it with --out FILE.npy")
    if x_values is not None:
        x = _numbers(x_values, height * width, "--x").reshape(height, width)
        _show(console, "x", x)
        _show(console, "C @ x, the convolution of x", (matrix @ x.ravel()).reshape(out_h, out_w))
    if y_values is not None:
        y = _numbers(y_values, out_h * out_w, "--y").reshape(out_h, out_w)
        _show(console, "y", y)
        result = (matrix.T @ y.ravel()).reshape(height, width)
        _show(console, "C.T @ y, the transposed convolution of y", result)
        if zero_insertion:
            inserted = zero_inserted(y, stride, kernel.shape, padding, (height, width))
            flipped = kernel.weights[::-1, ::-1]
            _show(console, f"zero insertion: y with {stride - 1} zero(s) between its pixels, "
                  f"padded by K - 1 - P = {kernel.shape[0] - 1 - padding}", inserted)
            _show(console, "the kernel turned by 180 degrees", flipped)
            from scipy.signal import correlate2d  # only here: scipy.signal is heavy

            same = correlate2d(inserted, flipped, mode="valid")
            _show(console, "their ordinary convolution, equal to C.T @ y", same)
    elif zero_insertion:
        raise click.UsageError("--zero-insertion shows the route to C.T @ y: give --y")


def zero_inserted(y: np.ndarray, stride: int, kernel_shape: tuple[int, int], padding: int,
                  shape: tuple[int, int]) -> np.ndarray:
    """``y`` with ``stride - 1`` zeros between its pixels, padded so that an ordinary
    (valid) convolution with the flipped kernel gives the transposed convolution of
    ``shape``; ``K - 1 - P`` around, more below and right for rows the stride left out.

    Examples
    --------
    >>> zero_inserted(np.array([[1.0, 2.0]]), 2, (1, 3), 0, (1, 5)).tolist()
    [[0.0, 0.0, 1.0, 0.0, 2.0, 0.0, 0.0]]
    """
    spread = np.zeros(((y.shape[0] - 1) * stride + 1, (y.shape[1] - 1) * stride + 1))
    spread[::stride, ::stride] = y
    pads = []
    for axis in (0, 1):
        before = kernel_shape[axis] - 1 - padding
        after = shape[axis] + kernel_shape[axis] - 1 - spread.shape[axis] - before
        pads.append((before, after))
    # Negative padding (P > K - 1) crops instead.
    grown = np.pad(spread, [(max(0, b), max(0, a)) for b, a in pads])
    rows = slice(max(0, -pads[0][0]), grown.shape[0] - max(0, -pads[0][1]))
    cols = slice(max(0, -pads[1][0]), grown.shape[1] - max(0, -pads[1][1]))
    return grown[rows, cols]


def _label(name: str, row: int, column: int, height: int, width: int) -> str:
    """``x12`` for pixel (1, 2) of a small grid, ``x1,12`` where a side reaches 10."""
    return f"{name}{row}{column}" if max(height, width) <= 10 else f"{name}{row},{column}"


def _show(console, caption: str, grid: np.ndarray) -> None:
    from ..render import matrix_table

    console.print(f"\n{caption}:")
    console.print(matrix_table("", grid, zeros="0"))


def _numbers(text: str, count: int, option: str) -> np.ndarray:
    cells = text.replace(",", " ").split()
    try:
        values = np.array([float(cell) for cell in cells])
    except ValueError:
        raise click.BadParameter(f"{text!r}: give numbers separated by spaces",
                                 param_hint=option) from None
    if values.size != count:
        raise click.BadParameter(f"{values.size} numbers given; this size needs {count}",
                                 param_hint=option)
    return values


def _transpose_path(path: str) -> str:
    """Where ``--out FILE`` puts C.T: ``FILE_T`` before the suffix."""
    stem, suffix = os.path.splitext(path)
    return f"{stem}_T{suffix}"


def _write_matrix(matrix: np.ndarray, path: str) -> None:
    suffix = os.path.splitext(path)[1].lower()
    buffer = io.BytesIO()
    if suffix == ".npy":
        np.save(buffer, matrix, allow_pickle=False)
    elif suffix == ".csv":
        np.savetxt(buffer, matrix, fmt="%.17g", delimiter=",")
    else:
        raise BadInputError(f"{path}: write the matrix as .npy or .csv")
    write_output(path, buffer.getvalue(), "matrix")
