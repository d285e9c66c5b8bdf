"""``upconv kernel show`` and ``upconv kernel matrix``: looking at kernels."""

from __future__ import annotations

import io
import json
import os

import click
import numpy as np

from ..errors import BadInputError
from ..fileio import outputs_together, shown, write_output
from ..kernel_files import resolve_kernel
from ..kernels import conv_matrix, conv_output_shape
from ..report import kernel_summary
from .common import (
    CONTEXT,
    EXIT_ABOVE,
    FILE_COMMAND_EPILOG,
    HW,
    REPORT_EPILOG,
    STRIDE,
    error,
    overwrite_option,
    prepare_destinations,
    storage_option,
)


@click.group("kernel", context_settings=CONTEXT)
def kernel_group() -> None:
    """Kernels and PyTorch layers: show, matrix, audit, fix and init.

    Look at transposed-convolution kernels (weights, phases, the matrix view),
    audit a checkpoint's ConvTranspose2d layers for checkerboards, fix them,
    or make checkerboard-free initial weights.
    """


@kernel_group.command("show", context_settings=CONTEXT, epilog=FILE_COMMAND_EPILOG)
@click.argument("spec", metavar="KERNEL[:KEY]")
@click.option("-f", "--factor", type=STRIDE, default=None, metavar="S",
              help="Stride, if the kernel file does not state it (built-ins default to 2).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@storage_option
def kernel_show(spec: str, factor: int | None, as_json: bool) -> None:
    """Show a kernel: shape, stride, weights, its s*s polyphase components and their sums.

    Equal phase sums mean a flat input stays flat; their spread,
    (max - min) / mean, is 0 exactly for checkerboard-free kernels. The
    checkerboard figure (percent, per output channel for several channels) is
    the RMS pattern a flat input prints against the RMS response to white
    noise: meaningful for zero-mean channels too (see the README).

    \b
    Examples:
      upconv kernel show bilinear --factor 2
      upconv kernel show k.npy --factor 2 --json | jq .spread
      upconv kernel show decoder.safetensors:up1.weight --factor 2
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
@storage_option
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


def _stride_option(command):
    """``--stride``, shared by ``audit`` and ``fix``."""
    return click.option(
        "--stride", "strides", multiple=True, metavar="N|PATTERN=N",
        help="The stride of every layer (N), or of the layers matching PATTERN; repeatable, "
             "the last match wins. [default: guessed from the kernel size, K = 2s or 2s - 1, "
             "and shown as guessed]")(command)


def _checkpoint(spec: str) -> tuple[dict, dict]:
    """A checkpoint's tensors (only KEY's for ``FILE:KEY``), and ``(stride, padding)`` of
    those whose file records them: a weights file (.safetensors, .pt, .pth, .npz) records
    neither; a kernel file (.json, .npy, .txt, .csv) is one layer, named by the file,
    with what it says."""
    import numpy as np

    from ..checkpoints import WEIGHT_SUFFIXES, load_tensors, split_spec, tensor_named
    from ..kernel_files import load_kernel
    from ..layers import as_layer

    path, key = split_spec(spec)
    if os.path.splitext(path)[1].lower() in WEIGHT_SUFFIXES:
        tensors = load_tensors(path)
        if key is None:
            return tensors, {}
        chosen = tensor_named(tensors, key, path)
        full = next(name for name, value in tensors.items() if value is chosen)
        return {full: chosen}, {}
    kernel = load_kernel(path)
    name = os.path.basename(path)
    padding = "centred" if kernel.padding is None else kernel.padding
    return ({name: as_layer(kernel.weights)} if kernel.weights.ndim != 4
            else {name: np.asarray(kernel.weights)}), {name: (kernel.stride, padding)}


@kernel_group.command("audit", context_settings=CONTEXT, epilog=REPORT_EPILOG)
@click.argument("checkpoint", metavar="CHECKPOINT[:KEY]")
@click.option("--layer", "layers", multiple=True, metavar="PATTERN",
              help="Only the tensors matching this glob ('dec.*.weight'); repeatable. "
                   "[default: every 4-D tensor named *.weight with a kernel of at least "
                   "2 x 2]")
@_stride_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one document) instead of "
              "the table.")
@click.option("--fail-above", type=click.FloatRange(0), default=None, metavar="PERCENT",
              help="Exit with status 3 when a layer's checkerboard figure is above PERCENT.")
@storage_option
def kernel_audit(checkpoint: str, layers: tuple[str, ...], strides: tuple[str, ...],
                 as_json: bool, fail_above: float | None) -> None:
    """Audit every ConvTranspose2d layer of a checkpoint for checkerboards.

    CHECKPOINT is a .safetensors (pip install 'upconv[models]'), .pt/.pth
    (read without running its code) or .npz file, or a kernel file (one
    layer, with the stride and padding it records). Each layer's figure is, for
    its worst output channel, the RMS checkerboard a flat input prints (each
    input channel holding its own unit value) in percent of the RMS response
    to unit white noise: 0 when every (C_in, C_out) pair has equal phase sums
    (bilinear and ICNR initialisations, 'kernel fix' output). Verdicts: none
    (under 1e-6 %), faint (under 1 %), visible (under 10 %), strong.

    \b
    Examples:
      upconv kernel audit decoder.safetensors
      upconv kernel audit decoder.pt --layer 'model.up*.weight' --stride 2 --json
      upconv kernel audit fixed.safetensors --stride 'dec.up3.*=4' --fail-above 1
    """
    from ..auditing import audit

    tensors, recorded = _checkpoint(checkpoint)
    if recorded and not layers:  # a kernel file: its one layer, whatever its name
        layers = tuple(recorded)
    rows = audit(tensors, layers, strides, checkpoint, recorded)
    if as_json:
        click.echo(json.dumps({"checkpoint": shown(checkpoint),
                               "layers": [row.as_dict() for row in rows]}, indent=1))
    else:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=escape(f"checkerboard audit: {shown(checkpoint)}"))
        # The layer's name folds when the screen is narrow; the figures never do.
        table.add_column("layer", overflow="fold", ratio=1)
        for column, justify in (("shape", "left"), ("stride", "left"), ("padding", "left"),
                                ("figure %", "right"), ("worst out", "right"),
                                ("verdict", "left")):
            table.add_column(column, justify=justify, no_wrap=True)
        for row in rows:
            table.add_row(escape(row.name), "x".join(map(str, row.shape)),
                          f"{row.stride}?" if row.stride_guessed else str(row.stride),
                          "-" if row.padding is None else str(row.padding),
                          f"{row.figures.figure:.3g}", str(row.figures.worst_output),
                          row.figures.verdict)
        console = Console(highlight=False)
        console.print(table)
        notes = ["figure %: the checkerboard, the RMS pattern a flat input prints, against "
                 "the RMS response to white noise, for the worst output channel (each channel: "
                 "'upconv kernel show CHECKPOINT:KEY' or --json)."]
        if any(row.stride_guessed for row in rows):
            notes.append("N?: a stride guessed from the kernel size (K = 2s or 2s - 1); give "
                         "--stride if it is not.")
        if any(row.padding is None for row in rows):
            notes.append("padding -: not recorded in a state_dict (the figure does not "
                         "depend on it).")
        console.print(" ".join(notes))
    worst = [row for row in rows if fail_above is not None and row.figures.figure > fail_above]
    if worst:
        names = ", ".join(f"{row.name} {row.figures.figure:.3g} %" for row in worst)
        error(f"above --fail-above {fail_above:g} %: {names}")
        raise click.exceptions.Exit(EXIT_ABOVE)


@kernel_group.command("fix", context_settings=CONTEXT, epilog=FILE_COMMAND_EPILOG)
@click.argument("checkpoint", metavar="CHECKPOINT")
@click.option("-o", "--output", "output_path", required=True, metavar="FILE",
              help="The fixed checkpoint: .safetensors or .npz.")
@click.option("--layer", "layers", multiple=True, required=True, metavar="PATTERN",
              help="The ConvTranspose2d weights to fix: a name or a glob ('dec.up*.weight'); "
                   "repeatable. Required: a state_dict does not say which 4-D tensors are "
                   "transposed convolutions.")
@_stride_option
@click.option("--prefix", metavar="PREFIX",
              help="Write only the tensors named PREFIX... with PREFIX taken off: the "
                   "state_dict of a training checkpoint ({'model': state_dict, ...}: "
                   "--prefix model.), ready for model.load_state_dict.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@storage_option
@overwrite_option
def kernel_fix(checkpoint: str, output_path: str, layers: tuple[str, ...],
               strides: tuple[str, ...], prefix: str | None, as_json: bool,
               overwrite: bool) -> None:
    """Make a checkpoint's ConvTranspose2d layers checkerboard-free.

    Each chosen layer's weights are replaced by the nearest weights (least
    squares, Frobenius norm) whose s x s phase sums are equal for every
    (C_in, C_out) pair, so that a flat input stays flat; biases and every
    other tensor are copied unchanged (non-tensor entries of a .pt, such as
    an epoch number, are not; bfloat16 tensors are written as float32, which
    numpy can hold). Prints each layer's relative weight change and its
    figure before and after. Load the result in PyTorch with
    model.load_state_dict(safetensors.torch.load_file(FILE)).

    \b
    Examples:
      upconv kernel fix decoder.safetensors -o fixed.safetensors --layer 'dec.up*.weight'
      upconv kernel fix decoder.pt -o fixed.safetensors --layer 'model.up*.weight' --prefix model.
    """
    from ..auditing import fix_layers
    from ..checkpoints import save_tensors

    prepare_destinations([output_path], [checkpoint], overwrite)
    from ..checkpoints import load_tensors

    tensors = load_tensors(checkpoint)
    fixed, done = fix_layers(tensors, layers, strides, checkpoint)
    if prefix:
        fixed = {key[len(prefix):]: value for key, value in fixed.items()
                 if key.startswith(prefix) and len(key) > len(prefix)}
        if not fixed:
            raise BadInputError(f"{checkpoint}: no tensor is named {prefix}...")
    save_tensors(fixed, output_path)
    if as_json:
        click.echo(json.dumps({"checkpoint": shown(checkpoint), "output": shown(output_path),
                               "layers": [row.as_dict() for row in done]}, indent=1))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"fixed: {shown(checkpoint)} -> {shown(output_path)}"))
    table.add_column("layer", overflow="fold")
    for column in ("stride", "checkerboard % before", "after", "weight change"):
        table.add_column(column, justify="left" if column == "stride" else "right")
    for row in done:
        table.add_row(escape(row.name),
                      f"{row.stride} (guessed)" if row.stride_guessed else str(row.stride),
                      f"{row.before.figure:.3g}", f"{row.after.figure:.3g}",
                      f"{100 * row.relative_change:.3g} %")
    Console(highlight=False).print(table)


@kernel_group.command("init", context_settings=CONTEXT, epilog=FILE_COMMAND_EPILOG)
@click.option("--in", "channels_in", type=click.IntRange(1), required=True, metavar="C_IN",
              help="Input channels.")
@click.option("--out", "channels_out", type=click.IntRange(1), required=True,
              metavar="C_OUT", help="Output channels.")
@click.option("--size", type=click.IntRange(1), required=True, metavar="K",
              help="Kernel size (K x K).")
@click.option("--stride", type=click.IntRange(2), required=True, metavar="S", help="Stride.")
@click.option("--method", type=click.Choice(["bilinear", "icnr"], case_sensitive=False),
              required=True,
              help="bilinear: FCN's fixed bilinear upsampling (needs C_IN = C_OUT); icnr: "
                   "random, nearest upsampling then a stride-1 convolution.")
@click.option("--seed", type=int, default=None, help="icnr: the random seed (default: fresh "
              "randomness).")
@click.option("-o", "--output", "output_path", required=True, metavar="FILE",
              help=".safetensors or .npz (the weight under --key, float32), or .json/.npy "
                   "(an upconv kernel).")
@click.option("--key", default="weight", show_default=True,
              help="The tensor's name in a .safetensors or .npz file.")
@storage_option
@overwrite_option
def kernel_init(channels_in: int, channels_out: int, size: int, stride: int, method: str,
                seed: int | None, output_path: str, key: str, overwrite: bool) -> None:
    """Checkerboard-free initial weights for a ConvTranspose2d(C_IN, C_OUT, K, S).

    The weight has PyTorch's shape (C_IN, C_OUT, K, K). Its phase sums are
    equal for every (C_in, C_out) pair, so a flat input stays flat at the
    start of training. Copy it in with
    layer.weight.data.copy_(safetensors.torch.load_file(FILE)["weight"]).

    \b
    Examples:
      upconv kernel init --in 64 --out 32 --size 4 --stride 2 --method icnr -o up1.safetensors
      upconv kernel init --in 16 --out 8 --size 3 --stride 2 --method icnr --seed 0 -o up.npz
      upconv kernel init --in 3 --out 3 --size 4 --stride 2 --method bilinear -o up.json
    """
    import numpy as np

    from ..layers import bilinear_init, icnr_init, layer_figures

    suffix = os.path.splitext(output_path)[1].lower()
    if suffix not in (".safetensors", ".npz", ".json", ".npy"):
        raise BadInputError(f"{output_path}: write .safetensors or .npz (a checkpoint's tensor), "
                            "or .json or .npy (an upconv kernel)")
    prepare_destinations([output_path], [], overwrite)
    if method.lower() == "bilinear":
        weights = bilinear_init(channels_in, channels_out, size, stride)
    else:
        weights = icnr_init(channels_in, channels_out, size, stride,
                            np.random.default_rng(seed))
    if suffix in (".json", ".npy"):
        from ..kernel_files import save_kernel
        from ..kernels import Kernel

        save_kernel(Kernel(weights, stride=stride, name=os.path.basename(output_path),
                           info={"init": method.lower(), "seed": seed}), output_path)
    else:
        from ..checkpoints import save_tensors

        save_tensors({key: weights.astype(np.float32)}, output_path)
    figures = layer_figures(weights, stride)
    click.echo(f"{output_path}: {method.lower()} {channels_in} x {channels_out} x {size} x {size}, "
               f"stride {stride}; checkerboard {figures.figure:.3g} % ({figures.verdict}), DC "
               f"gain {float(figures.mean_response.mean()):.4g}", err=True)
