"""Kernel files: reading and writing the formats, and finding a kernel by name or path.

Formats (the suffix decides):

- ``.json``: self-describing (``format``, ``stride``, ``alignment``, ``shape``,
  ``weights``, optional ``padding``, ``output_padding``, ``bias`` and
  provenance), an exact round trip;
- ``.npy``: the weights (read with ``allow_pickle=False``);
- ``.npz``: array ``weights``, optional ``stride``, ``padding``,
  ``output_padding``, ``bias`` and ``boundary`` (other arrays are left alone);
- ``.txt``/``.csv``: a 2-D grid of numbers.

Every format is read by the same rules (:func:`_checked_weights`,
:func:`_from_fields`): weights are numbers (not booleans, strings or null),
``stride`` and ``padding`` whole numbers, ``boundary`` one of the boundaries;
a file without the weights says which keys or arrays it has.

:func:`resolve_kernel` turns what a user gives (a :class:`~upconv.kernels.Kernel`,
a built-in name or a file) into a kernel with its stride settled;
:func:`default_kernel` is the fitted default shipped for a factor.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import replace
from pathlib import Path, PurePosixPath

import numpy as np

from .errors import BadInputError, UpconvError
from .fileio import read_bytes, shown, url_path, write_output
from .kernels import POST_KERNELS, Kernel, builtin_kernel
from .methods import BUILTIN_KERNELS
from .options import Boundary, choice

__all__ = ["KERNEL_SUFFIXES", "load_kernel", "save_kernel", "resolve_kernel",
           "default_kernel", "post_weights", "DEFAULTS_FOLDER", "tensor_from_spec",
           "is_checkpoint_spec", "load_bias"]

#: The file suffixes kernels are read from and written to.
KERNEL_SUFFIXES = (".json", ".npy", ".npz", ".txt", ".csv")
#: The array or key that holds the weights in ``.npz`` and ``.json`` files.
WEIGHTS_KEY = "weights"
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
        if kernel.output_padding:
            extra["output_padding"] = np.array(kernel.output_padding)
        if kernel.bias is not None:
            extra["bias"] = kernel.bias
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
    name = str(path)  # a URL stays whole (Path would fold its "//")
    data = kernel_bytes(kernel, os.path.splitext(name)[1].lower(), name)
    write_output(name, data, "kernel")


def load_kernel(path: str | Path) -> Kernel:
    """Read a kernel file (``.json``, ``.npy``, ``.npz``, ``.txt``, ``.csv``)."""
    url = str(path)  # a URL stays whole (Path would fold its "//")
    name = shown(url)  # (in messages: without a signed URL's signature)
    path = PurePosixPath(url_path(url))
    data = read_bytes(url, kind="kernel", stdin=False)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _from_json(data, name)
    if suffix == ".npy":
        return Kernel(_checked_weights(_load_npy(data, name), name, "the weights"),
                      name=path.name)
    if suffix == ".npz":
        return _from_npz(data, name)
    if suffix in (".txt", ".csv"):
        return Kernel(_checked_weights(_load_text(data, name), name, "the weights"),
                      name=path.name)
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


def _from_npz(data: bytes, name: str, key: str = WEIGHTS_KEY) -> Kernel:
    """A kernel from an ``.npz``: the weights in array ``key``, the rest as in ``.json``."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = list(archive.keys())
            if key not in arrays:
                raise BadInputError(_missing(name, f"array named {key!r}", arrays))
            fields: dict[str, object] = {WEIGHTS_KEY: archive[key]}
            for field in ("stride", "padding", "boundary", "output_padding", "bias"):
                if field in arrays:
                    fields[field] = archive[field].tolist()
    except UpconvError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise BadInputError(f"{name}: object or pickled arrays are refused") from None
        raise BadInputError(f"{name}: not a valid .npz file ({exc})") from None
    except (OSError, EOFError, TypeError, KeyError, zipfile.BadZipFile) as exc:
        raise BadInputError(f"{name}: corrupt .npz file ({exc})") from None
    return _from_fields(fields, name)


def _missing(name: str, what: str, present: list[str]) -> str:
    """The message for a kernel file without its weights, listing what it has."""
    has = ", ".join(present) if present else "nothing"
    return f"{name}: no {what} (it has: {has})"


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


def _from_json(data: bytes, name: str) -> Kernel:
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, huge integers
        raise BadInputError(f"{name}: not valid JSON ({str(exc)[:80]})") from None
    if not isinstance(document, dict):
        raise BadInputError(f"{name}: a kernel .json needs an object with \"{WEIGHTS_KEY}\"")
    if WEIGHTS_KEY not in document:
        raise BadInputError(_missing(name, f"key \"{WEIGHTS_KEY}\"", list(document)))
    return _from_fields(document, name)


def _checked_weights(value: object, name: str, label: str) -> np.ndarray:
    """Weights from any format as float64: numbers only, never booleans, strings or null.

    ``value`` is an array (``.npy``, ``.npz``) or nested lists (``.json``);
    ``label`` names them in messages.
    """
    if isinstance(value, np.ndarray):
        offender = None if value.dtype.kind in "iuf" else _ARRAY_KINDS.get(
            value.dtype.kind, str(value.dtype))
    else:
        offender = _first_non_number(value)
    if offender is not None:
        raise BadInputError(f"{name}: {label} must be an array of numbers, not {offender}")
    try:
        return np.array(value, dtype=np.float64)
    except (ValueError, TypeError, RecursionError, OverflowError):
        raise BadInputError(f"{name}: {label} must be a rectangular array of numbers "
                            "(ragged rows or non-numeric cells)") from None


#: What an array of a non-numeric kind holds, for messages.
_ARRAY_KINDS = {"b": "true/false values (bool)", "U": "strings", "S": "bytes",
                "c": "complex numbers", "M": "dates", "m": "time spans"}


def _first_non_number(value: object, depth: int = 0) -> str | None:
    """The first cell of nested lists that is not a JSON number, as JSON shows it."""
    if isinstance(value, list):
        if depth >= 8:
            return "arrays nested that deep"
        for item in value:
            offender = _first_non_number(item, depth + 1)
            if offender is not None:
                return offender
        return None
    return None if _is_json_number(value) else json.dumps(value, default=repr)[:40]


def _from_fields(document: dict, name: str) -> Kernel:
    """A kernel from a file's fields (a ``.json`` object, or an ``.npz``'s arrays as values).

    One set of rules for every self-describing format: the weights are
    numbers, ``stride`` and ``padding`` whole numbers, ``boundary`` a known
    one, ``alignment`` agrees with ``padding`` and ``shape`` with the weights.
    Other fields are kept as provenance (``info``).
    """
    weights = _checked_weights(document[WEIGHTS_KEY], name, f"\"{WEIGHTS_KEY}\"")
    for key in ("stride", "padding", "output_padding"):
        value = document.get(key)
        values = value if isinstance(value, list) else [value]
        if value is not None and not all(_is_json_number(v) for v in values):
            raise BadInputError(f"{name}: \"{key}\" must be a whole number, not {value!r}")
    boundary = document.get("boundary")
    if boundary is not None:
        if not isinstance(boundary, str):
            raise BadInputError(f"{name}: \"boundary\" must be one of "
                                f"{', '.join(b.value for b in Boundary)}, not {boundary!r}")
        try:
            choice(boundary, Boundary, "boundary")
        except BadInputError as exc:
            raise BadInputError(f"{name}: {exc}") from None
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
    bias = document.get("bias")
    if bias is not None:
        bias = _checked_weights(bias, name, "\"bias\"")
    known = {"format", "version", "stride", "alignment", "shape", WEIGHTS_KEY, "padding",
             "output_padding", "bias"}
    info = {k: v for k, v in document.items() if k not in known}
    return Kernel(weights, stride=document.get("stride"), padding=padding,
                  name=PurePosixPath(url_path(name)).name, info=info,
                  output_padding=document.get("output_padding") or 0, bias=bias)


def resolve_kernel(spec: Kernel | str | Path, factor: int | None,
                   builtin_stride: int | None = None, require_stride: bool = True) -> Kernel:
    """A kernel from a ``Kernel``, a built-in name, a file path or a checkpoint's tensor
    (``FILE:KEY``; :func:`tensor_from_spec`), with its stride settled.

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
    if is_checkpoint_spec(text):
        weights, name = tensor_from_spec(text)
        kernel = Kernel(_checked_weights(weights, name, "the weights"), name=name)
        if factor is None and not require_stride:
            return kernel
        return kernel.with_stride(factor)
    if text in BUILTIN_KERNELS:
        stride = factor if factor is not None else builtin_stride
        if stride is None:
            raise BadInputError(f"the built-in kernel {text!r} needs a factor (--factor)")
        return builtin_kernel(text, stride)
    kernel = load_kernel(text)
    if factor is None and kernel.stride is None and not require_stride:
        return kernel
    return kernel.with_stride(factor)


def tensor_from_spec(spec: str, what: str = "kernel") -> tuple[np.ndarray, str]:
    """A tensor chosen by ``FILE:KEY`` (a checkpoint's ``.safetensors``, ``.pt``, ``.pth``
    or ``.npz``; see :mod:`upconv.checkpoints`), or a weight file's only tensor; and the
    name to show for it (``"ckpt.safetensors:up1.weight"``).

    A checkpoint without a key must hold exactly one tensor; otherwise the
    message lists them.
    """
    from .checkpoints import load_tensors, split_spec, tensor_named

    path, key = split_spec(spec)
    tensors = load_tensors(path)
    if key is not None:
        return tensor_named(tensors, key, path), f"{Path(path).name}:{key}"
    if len(tensors) != 1:
        shown = ", ".join(list(tensors)[:8]) + (", ..." if len(tensors) > 8 else "")
        raise BadInputError(f"{path}: holds {len(tensors)} tensors; choose the {what} with "
                            f"{path}:KEY (it has: {shown})")
    (key, tensor), = tensors.items()
    return tensor, f"{Path(path).name}:{key}"


def is_checkpoint_spec(spec: str) -> bool:
    """Whether ``spec`` names a checkpoint tensor (``FILE:KEY``, or a ``.safetensors``,
    ``.pt`` or ``.pth`` file) rather than a kernel file.

    Examples
    --------
    >>> is_checkpoint_spec("k.json"), is_checkpoint_spec("ckpt.pt"), is_checkpoint_spec("a.npz:w")
    (False, True, True)
    """
    checkpoint_suffixes = (".safetensors", ".pt", ".pth")
    if ":" not in spec and PurePosixPath(url_path(spec)).suffix.lower() not in (
            checkpoint_suffixes):
        return False  # (without loading the checkpoint reader)
    from .checkpoints import split_spec

    path, key = split_spec(spec)
    return key is not None or PurePosixPath(url_path(path)).suffix.lower() in (
        checkpoint_suffixes)


def load_bias(spec: str) -> np.ndarray:
    """A bias (one number per output channel) from ``FILE:KEY`` of a checkpoint, or from
    a ``.npy``, ``.txt`` or ``.csv`` file of numbers."""
    if is_checkpoint_spec(spec):
        values, name = tensor_from_spec(spec, "bias")
    else:
        name = shown(spec)
        data = read_bytes(spec, kind="bias", stdin=False)
        suffix = PurePosixPath(url_path(spec)).suffix.lower()
        if suffix == ".npy":
            values = _load_npy(data, name)
        elif suffix in (".txt", ".csv"):
            values = _load_text(data, name)
        else:
            raise BadInputError(f"{name}: a bias comes from FILE:KEY of a checkpoint, or a "
                                ".npy, .txt or .csv file")
    values = _checked_weights(np.asarray(values), name, "the bias")
    if values.ndim != 1:
        values = values.squeeze()
    if values.ndim != 1:
        raise BadInputError(f"{name}: a bias is one number per output channel; got shape "
                            f"{values.shape}")
    return values


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
