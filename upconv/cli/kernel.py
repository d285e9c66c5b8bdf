"""``upconv kernel show`` and ``upconv kernel matrix``: looking at kernels."""

from __future__ import annotations

import io
import json
import os

import click
import numpy as np

from ..errors import BadInputError
from ..fileio import write_output
from ..kernel_files import resolve_kernel
from ..kernels import conv_matrix, conv_output_shape
from ..report import kernel_summary
from .common import (
    CONTEXT,
    FILE_COMMAND_EPILOG,
    HW,
    STRIDE,
    check_destinations,
    overwrite_option,
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
@overwrite_option
def kernel_matrix(spec: str, input_size: tuple[int, int], stride: int | None, padding: int,
                  out_path: str | None, overwrite: bool) -> None:
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
    height, width = input_size
    if out_path:
        check_destinations([out_path, _transpose_path(out_path)], [spec], overwrite)
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
        _write_matrix(matrix, out_path)
        _write_matrix(matrix.T, _transpose_path(out_path))
    from rich.console import Console

    from ..render import matrix_table

    console = Console(highlight=False)
    console.print(f"C: {matrix.shape[0]} x {matrix.shape[1]} (rows: kernel placements; "
                  f"stride {stride}, padding {padding}); C.T: {matrix.shape[1]} x "
                  f"{matrix.shape[0]}")
    if matrix.shape[1] <= 36 and matrix.shape[0] <= 36:
        console.print(matrix_table("C", matrix))
        console.print(matrix_table("C.T", matrix.T))
    elif not out_path:
        console.print("too large to print; write it with --out FILE.npy")


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
