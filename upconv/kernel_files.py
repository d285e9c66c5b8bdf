"""Kernel files: reading and writing the formats, and finding a kernel by name or path.

Formats (the suffix decides):

- ``.json``: self-describing (``format``, ``stride``, ``alignment``, ``shape``,
  ``weights``, optional ``padding`` and provenance), an exact round trip;
- ``.npy``: the weights (read with ``allow_pickle=False``);
- ``.npz``: array ``weights`` (or the only array), optional ``stride``,
  ``padding`` and ``boundary``;
- ``.txt``/``.csv``: a 2-D grid of numbers.

:func:`resolve_kernel` turns what a user gives (a :class:`~upconv.kernels.Kernel`,
a built-in name or a file) into a kernel with its stride settled;
:func:`default_kernel` is the fitted default shipped for a factor.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from .errors import BadInputError, UpconvError
from .fileio import read_bytes, write_output
from .kernels import POST_KERNELS, Kernel, builtin_kernel
from .methods import BUILTIN_KERNELS

__all__ = ["KERNEL_SUFFIXES", "load_kernel", "save_kernel", "resolve_kernel",
           "default_kernel", "post_weights", "DEFAULTS_FOLDER"]

#: The file suffixes kernels are read from and written to.
KERNEL_SUFFIXES = (".json", ".npy", ".npz", ".txt", ".csv")
#: Where the fitted default kernels live (package data).
DEFAULTS_FOLDER = Path(__file__).resolve().parent / "data"


def kernel_bytes(kernel: Kernel, suffix: str, name: str = "kernel") -> bytes:
    """The kernel encoded for a file with ``suffix`` (default, unknown: ``.json``).

    ``.json`` and ``.npz`` keep stride and padding; ``.npy``, ``.txt`` and
    ``.csv`` hold only the weights (text formats only 2-D ones). Every format
    round-trips the weights exactly.
    """
    buffer = io.BytesIO()
    if suffix == ".npy":
        np.save(buffer, kernel.weights, allow_pickle=False)
    elif suffix == ".npz":
        extra = {} if kernel.stride is None else {"stride": np.array(kernel.stride)}
        if kernel.padding is not None:
            extra["padding"] = np.array(kernel.padding)
        if kernel.info.get("boundary"):
            extra["boundary"] = np.array(kernel.info["boundary"])
        np.savez(buffer, weights=kernel.weights, **extra)
    elif suffix in (".txt", ".csv"):
        if kernel.weights.ndim != 2:
            raise BadInputError(f"{name}: text files hold 2-D kernels only; use .json or .npy")
        np.savetxt(buffer, kernel.weights, fmt="%.17g",
                   delimiter="," if suffix == ".csv" else " ")
    else:
        buffer.write(kernel.to_json().encode())
    return buffer.getvalue()


def save_kernel(kernel: Kernel, path: str | Path) -> None:
    """Write ``kernel`` to ``path`` atomically; the format follows the suffix."""
    path = Path(path)
    data = kernel_bytes(kernel, path.suffix.lower(), str(path))
    write_output(str(path), data, "kernel")


def load_kernel(path: str | Path) -> Kernel:
    """Read a kernel file (``.json``, ``.npy``, ``.npz``, ``.txt``, ``.csv``)."""
    path = Path(path)
    name = str(path)
    data = read_bytes(name, kind="kernel", stdin=False)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _from_json(data, name)
    if suffix == ".npy":
        return Kernel(_load_npy(data, name), name=path.name)
    if suffix == ".npz":
        return _from_npz(data, name)
    if suffix in (".txt", ".csv"):
        return Kernel(_load_text(data, name), name=path.name)
    raise BadInputError(f"{name}: unknown kernel file suffix {suffix!r}; use .json, .npy, "
                        ".npz, .txt or .csv")


def _load_npy(data: bytes, name: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "pickle" in str(exc).lower():
            raise BadInputError(f"{name}: object or pickled arrays are refused "
                              "(they can run code); save plain numbers") from None
        raise BadInputError(f"{name}: not a valid .npy file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise BadInputError(f"{name}: corrupt .npy file ({exc})") from None


def _from_npz(data: bytes, name: str) -> Kernel:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            keys = list(archive.keys())
            if "weights" in archive:
                weights = archive["weights"]
            elif len(keys) == 1:
                weights = archive[keys[0]]
            else:
                raise BadInputError(f"{name}: .npz needs an array named 'weights' (has {keys})")
            stride = archive["stride"].tolist() if "stride" in archive else None
            padding = archive["padding"].tolist() if "padding" in archive else None
            boundary = str(archive["boundary"]) if "boundary" in archive else None
    except UpconvError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise BadInputError(f"{name}: object or pickled arrays are refused") from None
        raise BadInputError(f"{name}: not a valid .npz file ({exc})") from None
    except (OSError, EOFError, TypeError, KeyError) as exc:
        raise BadInputError(f"{name}: corrupt .npz file ({exc})") from None
    return Kernel(weights, stride=stride, padding=padding, name=Path(name).name,
                  info={"boundary": boundary} if boundary else {})


def _load_text(data: bytes, name: str) -> np.ndarray:
    try:
        text = data.decode("utf-8-sig")  # a spreadsheet's "CSV UTF-8" starts with a BOM
    except UnicodeDecodeError:
        raise BadInputError(f"{name}: not a text file") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if ";" in line:
            raise BadInputError(f"{name}: line {number}: ';' is not a separator; separate "
                                "numbers by spaces or commas")
        if "," in line:
            cells = [c.strip() for c in line.split(",")]
        else:
            cells = line.split()
        for cell in cells:
            if not _is_number(cell):
                shown = cell if cell else "an empty cell"
                raise BadInputError(f"{name}: line {number}: {shown!r} is not a number"
                                  if cell else f"{name}: line {number}: {shown}")
        rows.append([float(c) for c in cells])
    if not rows:
        raise BadInputError(f"{name}: no numbers in the file")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise BadInputError(f"{name}: ragged rows (lengths {sorted(widths)}); a kernel is a "
                          "rectangular grid")
    return np.array(rows)


def _is_number(text: str) -> bool:
    if not text or not text.isascii() or "_" in text:  # float() takes "1_0" and "٣"
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_json_number(value: object) -> bool:
    """A JSON number: int or float, not a boolean (which Python counts as an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _only_numbers(value: object, depth: int = 0) -> bool:
    """Whether nested lists hold only JSON numbers."""
    if isinstance(value, list):
        return depth < 8 and all(_only_numbers(item, depth + 1) for item in value)
    return _is_json_number(value)


def _from_json(data: bytes, name: str) -> Kernel:
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, huge integers
        raise BadInputError(f"{name}: not valid JSON ({str(exc)[:80]})") from None
    if not isinstance(document, dict) or "weights" not in document:
        raise BadInputError(f"{name}: a kernel .json needs an object with \"weights\"")
    if not _only_numbers(document["weights"]):
        raise BadInputError(f"{name}: \"weights\" must be an array of numbers (not true, "
                            "false, strings or null)")
    for key in ("stride", "padding"):
        value = document.get(key)
        values = value if isinstance(value, list) else [value]
        if value is not None and not all(_is_json_number(v) for v in values):
            raise BadInputError(f"{name}: \"{key}\" must be a whole number, not {value!r}")
    try:
        weights = np.array(document["weights"], dtype=np.float64)
    except (ValueError, TypeError, RecursionError, OverflowError):
        raise BadInputError(f"{name}: \"weights\" must be a rectangular array of numbers "
                          "(ragged rows or non-numeric cells)") from None
    alignment = document.get("alignment")
    padding = document.get("padding")
    if alignment is None:
        alignment = "centred" if padding is None else "pytorch"
    if alignment in ("centred", "centered"):
        if padding is not None:
            raise BadInputError(f"{name}: \"padding\" contradicts \"alignment\": "
                              f"\"{alignment}\"; use \"pytorch\" for a padded kernel")
    elif alignment == "pytorch":
        if padding is None:
            raise BadInputError(f"{name}: \"alignment\": \"pytorch\" needs a \"padding\"")
    else:
        raise BadInputError(f"{name}: unknown alignment {alignment!r}; use \"centred\" or "
                          "\"pytorch\"")
    if "shape" in document and list(document["shape"]) != list(weights.shape):
        raise BadInputError(f"{name}: \"shape\" {document['shape']} does not match the weights "
                          f"{list(weights.shape)}")
    known = {"format", "version", "stride", "alignment", "shape", "weights", "padding"}
    info = {k: v for k, v in document.items() if k not in known}
    return Kernel(weights, stride=document.get("stride"), padding=padding,
                  name=Path(name).name, info=info)


def resolve_kernel(spec: Kernel | str | Path, factor: int | None,
                   builtin_stride: int | None = None, require_stride: bool = True) -> Kernel:
    """A kernel from a ``Kernel``, a built-in name or a file path, with its stride settled.

    The stride is the kernel's own, else ``factor`` (a mismatch is an error).
    A built-in is made for ``factor``, else ``builtin_stride``. With
    ``require_stride=False`` a file kernel may stay without a stride (to look
    at it).

    Examples
    --------
    >>> resolve_kernel("bilinear", 3).shape
    (5, 5)
    """
    if isinstance(spec, Kernel):
        return spec.with_stride(factor)
    text = str(spec)
    if text in BUILTIN_KERNELS:
        stride = factor if factor is not None else builtin_stride
        if stride is None:
            raise BadInputError(f"the built-in kernel {text!r} needs a factor (--factor)")
        return builtin_kernel(text, stride)
    kernel = load_kernel(text)
    if factor is None and kernel.stride is None and not require_stride:
        return kernel
    return kernel.with_stride(factor)


def default_kernel(stride: int | None) -> Kernel | str:
    """The kernel ``method="transpose"`` uses when none is given.

    The fitted default shipped for that factor (2, 3 or 4), else the built-in
    bilinear kernel.
    """
    if stride is not None:
        path = DEFAULTS_FOLDER / f"default_x{stride}.json"
        if path.is_file():
            return replace(load_kernel(path), name=f"default x{stride}")
    return "bilinear"


def post_weights(post_kernel: np.ndarray | str | Path) -> np.ndarray | str:
    """A post-kernel as weights (2-D array) or a built-in name, loading a file once."""
    if isinstance(post_kernel, np.ndarray) or (isinstance(post_kernel, str)
                                               and post_kernel in POST_KERNELS):
        return post_kernel
    loaded = load_kernel(post_kernel)
    if loaded.weights.ndim != 2:
        raise BadInputError(f"{post_kernel}: a post-kernel must be 2-D")
    return loaded.weights
