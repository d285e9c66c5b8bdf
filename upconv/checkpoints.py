"""Weights files: the named tensors of a checkpoint, read without running its code.

Formats (the suffix decides), for :func:`load_tensors`:

- ``.safetensors``: through the optional ``safetensors`` package
  (``pip install 'upconv[models]'``) and its numpy API. Types numpy lacks
  (bfloat16, the float8 kinds) are refused with a hint to convert them.
- ``.pt``/``.pth``: PyTorch's ``torch.save`` zip archives. With PyTorch
  installed, ``torch.load(..., weights_only=True)``; without it, a restricted
  unpickler that knows only what rebuilding tensors takes (see
  :data:`_SAFE_GLOBALS`) and reads each storage's bytes from the archive.
  Either way, a checkpoint whose pickle names anything else (a class, a
  function to call) is refused: upconv never runs a checkpoint's code.
  bfloat16 tensors come back as float32 (exactly: every bfloat16 is a
  float32). Legacy (non-zip) files are refused with a hint to re-save them.
- ``.npz``: every array (pickled object arrays are refused).

Names are PyTorch's: a state_dict nested in a checkpoint is found, and each
tensor is named by its dotted path (``{"model": {"up1.weight": T}}`` gives
``"model.up1.weight"``); items of lists and tuples are named by their index,
as PyTorch names the layers of an ``nn.Sequential`` (``"layers.0.weight"``);
a file holding one bare tensor names it ``""``. Values that are not tensors
(the epoch, notes, learning rates) are read but not returned.
:func:`tensor_named` also takes the end of a name when only one tensor's name
ends so (``up1.weight`` for ``model.up1.weight``).

:func:`save_tensors` writes ``.safetensors`` (keeping the key order in its
metadata) or ``.npz``.
"""

from __future__ import annotations

import difflib
import importlib.util
import io
import json
import math
import os
import pickle
import re
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from types import ModuleType

import numpy as np

from .errors import BadInputError, UpconvError
from .fileio import read_bytes, write_output

__all__ = ["WEIGHT_SUFFIXES", "load_tensors", "save_tensors", "split_spec", "tensor_named",
           "tensors_matching"]

#: The suffixes of the weights files :func:`load_tensors` reads.
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".npz")
#: The files a ``FILE:KEY`` spec may name before its ':' when no such file exists: weights
#: files and kernel files (``upconv.kernel_files.KERNEL_SUFFIXES``, which is not imported:
#: the kernel files may come to read weights files through this module).
SPEC_SUFFIXES = WEIGHT_SUFFIXES + (".json", ".npy", ".txt", ".csv")
#: The ``.safetensors`` metadata entry in which :func:`save_tensors` keeps the key order
#: (the format itself sorts the tensors by name).
KEY_ORDER_METADATA = "upconv.key_order"
#: How the optional dependency for ``.safetensors`` is installed.
INSTALL_MODELS = "pip install 'upconv[models]'"
#: How deep values may nest in a checkpoint (a state_dict in a dict is two levels).
MAX_NESTING = 100
#: How many suggestions or keys a message lists.
SHOWN_KEYS = 5
#: A tensor may repeat its storage's values (a stride of 0, as ``expand`` makes) up to this
#: many bytes: a hostile file cannot make the reader allocate more than it holds beyond it.
MAX_EXPANSION = 1 << 28


def load_tensors(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor in a weights file, by name, in file order.

    Parameters
    ----------
    path
        A ``.safetensors``, ``.pt``, ``.pth`` or ``.npz`` file.

    Returns
    -------
    dict
        Each tensor's name (PyTorch's dotted path: ``"model.up1.weight"``) and
        its values: a numpy array of the tensor's type and shape, C-contiguous,
        writable, sharing memory with no other. Tensors of a ``.safetensors`` file come in the order
        :func:`save_tensors` kept, else in the order of their data.

    Raises
    ------
    BadInputError
        An unknown suffix, a truncated or corrupt file, a checkpoint that holds
        more than tensors and plain values, a type numpy lacks, a file without
        tensors, or ``.safetensors`` without the ``safetensors`` package.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "w.npz"
    >>> save_tensors({"up1.weight": np.ones((2, 1, 4, 4)), "up1.bias": np.zeros(1)}, path)
    >>> {key: array.shape for key, array in load_tensors(path).items()}
    {'up1.weight': (2, 1, 4, 4), 'up1.bias': (1,)}
    """
    name = str(path)  # a URL stays whole (Path would fold its "//")
    suffix = PurePosixPath(name).suffix.lower()
    reader = _READERS.get(suffix)
    if reader is None:
        raise BadInputError(f"{name}: unknown weights file suffix {suffix!r}; use "
                            f"{_listed(WEIGHT_SUFFIXES)}")
    tensors = reader(read_bytes(name, kind="weights", stdin=False), name)
    if not tensors:
        raise BadInputError(f"{name}: no tensors in the file")
    return tensors


def save_tensors(tensors: Mapping[str, np.ndarray], path: str | Path) -> None:
    """Write named arrays to a ``.safetensors`` or ``.npz`` file, atomically.

    ``.safetensors`` needs the ``safetensors`` package; the key order is kept
    in its metadata, so :func:`load_tensors` gives the tensors back in order.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "w.safetensors"
    >>> save_tensors({"b": np.arange(3), "a": np.eye(2, dtype=np.float32)}, path)
    >>> loaded = load_tensors(path)
    >>> list(loaded), loaded["b"].dtype
    (['b', 'a'], dtype('int64'))
    """
    name = str(path)  # a URL stays whole (Path would fold its "//")
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in (".safetensors", ".npz"):
        raise BadInputError(f"{name}: write .safetensors or .npz; PyTorch reads .safetensors "
                            "with safetensors.torch.load_file")
    arrays = _checked_arrays(tensors, name)
    data = _safetensors_bytes(arrays, name) if suffix == ".safetensors" else _npz_bytes(arrays)
    write_output(name, data, "weights")


def split_spec(spec: str) -> tuple[str, str | None]:
    """A ``FILE:KEY`` spec as the file and the key (None: no key given).

    The whole text is the file when such a file exists; else it is split at
    the first ':' whose left part is an existing file; else at the first ':'
    if its left part ends with a weights or kernel file suffix (the file is
    then missing, and whoever opens it says so); else there is no key.

    Examples
    --------
    >>> split_spec("ckpt.safetensors:dec.up1.weight")
    ('ckpt.safetensors', 'dec.up1.weight')
    >>> split_spec("kernel.json")
    ('kernel.json', None)
    >>> split_spec("notes:draft")
    ('notes:draft', None)
    >>> split_spec("s3://bucket/ckpt.pt:up1.weight")
    ('s3://bucket/ckpt.pt', 'up1.weight')
    """
    scheme = re.match(r"[A-Za-z][A-Za-z0-9+.\-]*://", spec)
    if scheme:  # a URL: its file ends at the first ':' after a weights or kernel suffix
        colons = [index for index, character in enumerate(spec)
                  if character == ":" and index >= scheme.end()]
        for index in colons:
            if spec[:index].lower().endswith(SPEC_SUFFIXES):
                return spec[:index], spec[index + 1:]
        return spec, None
    if os.path.isfile(spec):
        return spec, None
    colons = [index for index, character in enumerate(spec) if character == ":"]
    for index in colons:
        if os.path.isfile(spec[:index]):
            return spec[:index], spec[index + 1:]
    if colons and spec[:colons[0]].lower().endswith(SPEC_SUFFIXES):
        return spec[:colons[0]], spec[colons[0] + 1:]
    return spec, None


def tensor_named(tensors: Mapping[str, np.ndarray], key: str, name: str) -> np.ndarray:
    """The tensor called ``key``, or the only one whose name ends with ``"." + key``.

    ``name`` is the file, for the message when there is no such tensor (or
    more than one ends so), which suggests names close to ``key``.

    Examples
    --------
    >>> tensors = {"model.up1.weight": np.ones(2), "model.up2.weight": np.zeros(2)}
    >>> tensor_named(tensors, "up1.weight", "ckpt.pt")
    array([1., 1.])
    >>> tensor_named(tensors, "up1.wieght", "ckpt.pt")
    Traceback (most recent call last):
    ...
    upconv.errors.BadInputError: ckpt.pt: no tensor named 'up1.wieght'; did you mean: \
model.up1.weight, model.up2.weight?
    """
    if key in tensors:
        return tensors[key]
    ending = [known for known in tensors if known.endswith("." + key)]
    if len(ending) == 1:
        return tensors[ending[0]]
    problem = (f"{key!r} could name {len(ending)} tensors" if ending
               else f"no tensor named {key!r}")
    raise BadInputError(_not_found(name, problem, key, list(tensors), ending))


def tensors_matching(tensors: Mapping[str, np.ndarray], pattern: str,
                     name: str) -> dict[str, np.ndarray]:
    """The tensors whose names match the glob ``pattern``, in file order.

    ``*`` matches dots too (``'dec.*.weight'``, ``'*.weight'``); ``?`` and
    ``[...]`` as in :func:`fnmatch.fnmatchcase`. No match is an error naming
    ``name`` (the file) and suggesting names close to ``pattern``.

    Examples
    --------
    >>> tensors = {"dec.up1.weight": np.ones(1), "dec.up1.bias": np.ones(1),
    ...            "dec.up2.weight": np.ones(1)}
    >>> list(tensors_matching(tensors, "dec.*.weight", "ckpt.pt"))
    ['dec.up1.weight', 'dec.up2.weight']
    """
    found = {key: array for key, array in tensors.items() if fnmatchcase(key, pattern)}
    if not found:
        ending = [key for key in tensors if fnmatchcase(key, "*." + pattern)]
        raise BadInputError(_not_found(name, f"no tensor name matches {pattern!r}", pattern,
                                       list(tensors), ending))
    return found


# Messages


def _listed(suffixes: tuple[str, ...]) -> str:
    """``'.a, .b or .c'``."""
    return ", ".join(suffixes[:-1]) + " or " + suffixes[-1]


def _not_found(name: str, problem: str, key: str, keys: list[str],
               ending: list[str]) -> str:
    """The message for a key or pattern that finds no tensor (or several): the names that
    end with it (``ending``), else the names close to it, else the first few there are."""
    near = ending or _close_names(key, keys)
    if near:
        return f"{name}: {problem}; did you mean: {', '.join(near[:SHOWN_KEYS])}?"
    shown = ", ".join(keys[:SHOWN_KEYS])
    more = f", ... ({len(keys)} in all)" if len(keys) > SHOWN_KEYS else ""
    return f"{name}: {problem} (it has: {shown}{more})"


def _close_names(key: str, keys: list[str]) -> list[str]:
    """The names close to ``key``, whole or by their last parts (as many as ``key`` has:
    ``up1.wieght`` is close to ``model.up1.weight``), closest first."""
    depth = key.count(".") + 1
    by_tail: dict[str, list[str]] = {}
    for known in keys:
        by_tail.setdefault(".".join(known.split(".")[-depth:]), []).append(known)
    close = difflib.get_close_matches(key, keys, n=SHOWN_KEYS, cutoff=0.5)
    close_tails = difflib.get_close_matches(key, list(by_tail), n=SHOWN_KEYS, cutoff=0.5)
    return list(dict.fromkeys(close + [known for tail in close_tails
                                       for known in by_tail[tail]]))


def _refusal(name: str, what: str) -> str:
    """The message for a checkpoint whose pickle names more than tensors."""
    return (f"{name}: refusing to load {what}: the checkpoint holds more than tensors "
            "(upconv never runs a checkpoint's code)")


def _first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (some are paragraphs)."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]


# .npz


def _read_npz(data: bytes, name: str) -> dict[str, np.ndarray]:
    if not data.startswith(b"PK"):
        raise BadInputError(f"{name}: not an .npz file (not a zip archive)")
    key = None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {}
            for key in archive.files:
                arrays[key] = np.asarray(archive[key], order="C")
            return arrays
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise BadInputError(f"{name}: array {key!r} holds Python objects, which are "
                                "refused (unpickling them can run code); save plain numbers"
                                ) from None
        raise BadInputError(f"{name}: not a valid .npz file ({_first_line(exc)})") from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise BadInputError(f"{name}: truncated or corrupt .npz file ({_first_line(exc)})"
                            ) from None


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The arrays as ``np.savez`` lays them out (one stored ``KEY.npy`` each), written
    here so that any key works: ``np.savez`` takes ``file`` and ``allow_pickle`` for its
    own arguments."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for key, array in arrays.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, array, allow_pickle=False)
    return buffer.getvalue()


def _checked_arrays(tensors: Mapping[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    """The tensors to write: names that are text, arrays of numbers or booleans."""
    if not tensors:
        raise BadInputError(f"{name}: no tensors to write")
    arrays = {}
    for key, value in tensors.items():
        if not isinstance(key, str):
            raise BadInputError(f"{name}: tensor names must be text, not {key!r}")
        array = np.asarray(value)
        if array.dtype.kind not in "biufc":
            raise BadInputError(f"{name}: tensor {key!r} holds {array.dtype}, not numbers")
        arrays[key] = array
    return arrays


# .safetensors


def _safetensors_package(name: str, doing: str) -> ModuleType:
    """The ``safetensors`` package with its numpy API loaded, or the error saying how to
    install it (``doing``: "reading" or "writing")."""
    try:
        import safetensors
        import safetensors.numpy  # noqa: F401  (loads the submodule)
    except ImportError:
        raise BadInputError(f"{name}: {doing} .safetensors needs the safetensors package: "
                            f"{INSTALL_MODELS}") from None
    return safetensors


def _read_safetensors(data: bytes, name: str) -> dict[str, np.ndarray]:
    safetensors = _safetensors_package(name, "reading")
    try:
        arrays = safetensors.numpy.load(data)
    except KeyError as exc:  # the header is sound, but numpy has no such type
        raise BadInputError(_lacking_type(data, name, str(exc.args[0]))) from None
    except (safetensors.SafetensorError, ValueError, OverflowError) as exc:
        raise BadInputError(f"{name}: truncated or corrupt .safetensors file "
                            f"({_first_line(exc)})") from None
    header = _safetensors_header(data)
    order = _kept_order(header, arrays) or sorted(
        arrays, key=lambda key: header[key]["data_offsets"][0])
    return {key: np.array(arrays[key]) for key in order}  # owned, writable copies


def _safetensors_header(data: bytes) -> dict:
    """The JSON header of a ``.safetensors`` file the package has accepted."""
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + length])


def _kept_order(header: dict, arrays: dict[str, np.ndarray]) -> list[str] | None:
    """The key order :func:`save_tensors` kept in the metadata, if it names these arrays."""
    metadata = header.get("__metadata__") or {}
    try:
        order = json.loads(metadata.get(KEY_ORDER_METADATA, "null"))
    except (ValueError, TypeError):
        return None
    if (isinstance(order, list) and len(order) == len(arrays)
            and all(isinstance(key, str) for key in order) and set(order) == set(arrays)):
        return order
    return None


def _lacking_type(data: bytes, name: str, dtype: str) -> str:
    """The message for a ``.safetensors`` tensor of a type numpy lacks (``BF16``...)."""
    header = _safetensors_header(data)
    holders = [key for key, entry in header.items()
               if key != "__metadata__" and entry.get("dtype") == dtype]
    which = f"tensor {holders[0]!r} is" if holders else "tensors are"
    return (f"{name}: {which} {dtype}, a type numpy lacks; convert the tensors to float32 "
            "in PyTorch ({k: v.float() for k, v in state.items()}) and save again")


def _safetensors_bytes(arrays: dict[str, np.ndarray], name: str) -> bytes:
    safetensors = _safetensors_package(name, "writing")
    try:
        return safetensors.numpy.save(
            {key: np.asarray(array, order="C") for key, array in arrays.items()},
            metadata={KEY_ORDER_METADATA: json.dumps(list(arrays))})
    except (safetensors.SafetensorError, ValueError, TypeError, KeyError) as exc:
        raise BadInputError(f"{name}: cannot write as .safetensors ({_first_line(exc)})"
                            ) from None


# .pt / .pth


def _torch_module() -> ModuleType | None:
    """PyTorch, imported now if it is installed, else None (then the restricted
    unpickler reads ``.pt`` files; tests replace this function to force that)."""
    if importlib.util.find_spec("torch") is None:
        return None
    try:
        import torch
    except ImportError:  # installed but broken: read without it
        return None
    return torch


def _read_torch(data: bytes, name: str) -> dict[str, np.ndarray]:
    archive, folder = _torch_archive(data, name)
    torch = _torch_module()
    if torch is not None:
        archive.close()
        return _load_with_torch(torch, data, name)
    with archive:
        return _read_torch_restricted(archive, folder, name)


def _read_torch_restricted(archive: zipfile.ZipFile, folder: str,
                           name: str) -> dict[str, np.ndarray]:
    """The tensors of a checkpoint as :class:`_TensorUnpickler` reads them (no PyTorch)."""
    byteorder = "little"  # what PyTorch assumes of archives without the record
    if f"{folder}byteorder" in archive.namelist():
        byteorder = _member(archive, f"{folder}byteorder", name).decode("ascii", "replace")
        if byteorder not in ("little", "big"):
            raise BadInputError(f"{name}: unknown byte order {byteorder[:20]!r}")
    unpickler = _TensorUnpickler(_member(archive, f"{folder}data.pkl", name), archive,
                                 folder, byteorder, name)
    try:
        loaded = unpickler.load()
    except UpconvError:
        raise
    except _Malformed as exc:
        raise BadInputError(f"{name}: corrupt checkpoint: {exc}") from None
    except Exception as exc:  # hostile or damaged bytes can make an unpickler raise anything
        raise BadInputError(f"{name}: corrupt checkpoint ({type(exc).__name__}: "
                            f"{_first_line(exc)})") from None
    return _named_tensors(loaded, lambda value, _: value.array if isinstance(value, _Tensor)
                          else None, name)


def _torch_archive(data: bytes, name: str) -> tuple[zipfile.ZipFile, str]:
    """The zip archive of a ``torch.save`` file and the folder its records are in
    (``"archive/"``); legacy and damaged files are one-line errors."""
    if not data.startswith(b"PK"):
        if data.startswith(b"\x80"):
            raise BadInputError(f"{name}: a legacy PyTorch checkpoint (a pickle, not a zip "
                                "archive); re-save it with a current PyTorch: "
                                "torch.save(torch.load(path), path)")
        raise BadInputError(f"{name}: not a PyTorch checkpoint (not a zip archive)")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise BadInputError(f"{name}: truncated or corrupt PyTorch checkpoint "
                            f"({_first_line(exc)})") from None
    pickles = [member for member in archive.namelist()
               if member.endswith("/data.pkl") and member.count("/") == 1]
    if not pickles:
        raise BadInputError(f"{name}: a zip archive without data.pkl, not a PyTorch "
                            "checkpoint")
    return archive, pickles[0][:-len("data.pkl")]


def _member(archive: zipfile.ZipFile, member: str, name: str) -> bytes:
    """One record of a checkpoint's archive, whole and checked (CRC)."""
    try:
        return archive.read(member)
    except KeyError:
        raise BadInputError(f"{name}: the checkpoint has no record {member!r}") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise BadInputError(f"{name}: truncated or corrupt PyTorch checkpoint "
                            f"({_first_line(exc)})") from None


def _load_with_torch(torch: ModuleType, data: bytes, name: str) -> dict[str, np.ndarray]:
    """The tensors as PyTorch's own weights-only loader reads them."""
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # "... unsupported GLOBAL posix.system ..."
        named = re.search(r"GLOBAL ([\w.]+)", str(exc))
        raise BadInputError(_refusal(name, named.group(1) if named else "a global it names")
                            ) from None
    except Exception as exc:  # RuntimeError from the zip reader, and others
        raise BadInputError(f"{name}: truncated or corrupt PyTorch checkpoint "
                            f"({_first_line(exc)})") from None

    def as_array(value: object, path: str) -> np.ndarray | None:
        if not isinstance(value, torch.Tensor):
            return None
        tensor = value.detach().cpu()
        if tensor.dtype == torch.bfloat16:
            tensor = tensor.float()  # exact: numpy has no bfloat16
        try:
            return np.array(tensor.numpy(), order="C")  # a copy, not PyTorch's memory
        except (TypeError, RuntimeError):  # float8, quantized or sparse tensors
            raise BadInputError(f"{name}: tensor {path!r} is {tensor.dtype}, which numpy "
                                "cannot hold; convert it to float32 in PyTorch and save "
                                "again") from None

    return _named_tensors(loaded, as_array, name)


def _named_tensors(loaded: object, as_array: Callable[[object, str], np.ndarray | None],
                   name: str) -> dict[str, np.ndarray]:
    """Every tensor in a loaded checkpoint by its dotted path, in order.

    ``as_array(value, path)`` gives a value's array if it is a tensor, else None. Dicts are
    walked by key, lists and tuples by index; other values are skipped, and
    so is a container met again inside itself. The first of two tensors whose
    paths read the same (keys 1 and "1") is kept.
    """
    found: dict[str, np.ndarray] = {}
    walking: set[int] = set()

    def visit(value: object, path: str) -> None:
        array = as_array(value, path)
        if array is not None:
            found.setdefault(path, array)
            return
        if isinstance(value, dict):
            items = [(str(key), item) for key, item in value.items()]
        elif isinstance(value, (list, tuple)):
            items = [(str(index), item) for index, item in enumerate(value)]
        else:
            return
        if id(value) in walking:
            return
        if len(walking) >= MAX_NESTING:
            raise BadInputError(f"{name}: values nested more than {MAX_NESTING} deep")
        walking.add(id(value))
        for key, item in items:
            visit(item, f"{path}.{key}" if path else key)
        walking.discard(id(value))

    visit(loaded, "")
    return found


class _Malformed(ValueError):
    """A tensor's description in a checkpoint that no tensor can have."""


@dataclass(frozen=True, slots=True)
class _ElementType:
    """A torch dtype, or the storage class of one, as a pickle names it (``torch.float32``,
    ``torch.FloatStorage``): only which numbers it holds."""

    torch_name: str  # a key of _NUMPY_CODES


@dataclass(frozen=True, slots=True)
class _Storage:
    """A storage's bytes, from ``data/KEY`` in the archive."""

    data: bytes
    element: _ElementType
    byteorder: str


@dataclass(frozen=True, slots=True)
class _Tensor:
    """A tensor rebuilt from a checkpoint: its values, owning their data."""

    array: np.ndarray


#: numpy's type code (byte order apart) for the values of each torch element type;
#: bfloat16's 16 bits are read as unsigned integers, then widened to float32.
_NUMPY_CODES = {"float64": "f8", "float32": "f4", "float16": "f2", "bfloat16": "u2",
                "int64": "i8", "int32": "i4", "int16": "i2", "int8": "i1", "uint8": "u1",
                "bool": "b1", "complex64": "c8", "complex128": "c16", "uint16": "u2",
                "uint32": "u4", "uint64": "u8"}
#: The typed storage classes torch pickles for tensors (with ``_rebuild_tensor_v2``).
_STORAGE_CLASSES = {"DoubleStorage": "float64", "FloatStorage": "float32",
                    "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
                    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
                    "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
                    "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128"}


def _whole(value: object) -> bool:
    """A whole number, zero or more (not a boolean)."""
    return type(value) is int and value >= 0


def _strided_copy(storage: object, element: object, offset: object, size: object,
                  stride: object) -> np.ndarray:
    """The values a tensor views in its storage (``size``, ``stride`` and ``offset``
    in elements of ``element``), copied; a view reaching past the storage is refused."""
    if not (isinstance(storage, _Storage) and isinstance(element, _ElementType)
            and _whole(offset) and isinstance(size, tuple) and isinstance(stride, tuple)
            and len(size) == len(stride) and all(map(_whole, size + stride))):
        raise _Malformed("a tensor's storage, offset, size or stride is malformed")
    code = ("<" if storage.byteorder == "little" else ">") + _NUMPY_CODES[element.torch_name]
    values = np.frombuffer(storage.data, dtype=np.dtype(code),
                           count=len(storage.data) // np.dtype(code).itemsize)
    if 0 in size:
        view = np.empty(size, dtype=values.dtype)
    else:
        last = offset + sum((length - 1) * step for length, step in zip(size, stride, strict=True))
        if last >= len(values):
            raise _Malformed("a tensor reaches past the end of its storage")
        claimed = math.prod(size) * values.itemsize
        if claimed > max(len(storage.data), MAX_EXPANSION):  # repeats of a few values
            raise _Malformed(f"a tensor of {claimed} bytes repeats a storage of "
                             f"{len(storage.data)} bytes (over {MAX_EXPANSION} bytes)")
        view = np.lib.stride_tricks.as_strided(
            values[offset:], shape=size, strides=[step * values.itemsize for step in stride],
            writeable=False)
    array = view.astype(values.dtype.newbyteorder("="), order="C")  # a copy, native order
    if element.torch_name == "bfloat16":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _rebuild_tensor_v2(storage: object, storage_offset: object, size: object, stride: object,
                       requires_grad: object = False, backward_hooks: object = None,
                       metadata: object = None) -> _Tensor:
    """``torch._utils._rebuild_tensor_v2``: a tensor of its typed storage's type."""
    element = storage.element if isinstance(storage, _Storage) else None
    return _Tensor(_strided_copy(storage, element, storage_offset, size, stride))


def _rebuild_tensor_v3(storage: object, storage_offset: object, size: object, stride: object,
                       requires_grad: object, backward_hooks: object, dtype: object,
                       metadata: object = None) -> _Tensor:
    """``torch._utils._rebuild_tensor_v3``: a tensor of ``dtype`` over untyped bytes
    (torch writes it for the types without a storage class: uint16, uint32, uint64)."""
    return _Tensor(_strided_copy(storage, dtype, storage_offset, size, stride))


def _rebuild_parameter(data: object, requires_grad: object,
                       backward_hooks: object) -> _Tensor:
    """``torch._utils._rebuild_parameter``: an ``nn.Parameter`` is its tensor."""
    if not isinstance(data, _Tensor):
        raise _Malformed("a parameter without a tensor")
    return data


#: Everything the restricted unpickler lets a pickle name, as what it gets instead: what
#: torch 2.x writes for a checkpoint of tensors, state_dicts and plain values. A state_dict
#: is an OrderedDict (its ``_metadata`` attribute set by BUILD); ``torch.Size`` becomes a
#: tuple.
_SAFE_GLOBALS: dict[tuple[str, str], object] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "Size"): tuple,
    ("torch.storage", "UntypedStorage"): _ElementType("uint8"),
    **{("torch", storage): _ElementType(dtype) for storage, dtype in _STORAGE_CLASSES.items()},
    **{("torch", dtype): _ElementType(dtype) for dtype in _NUMPY_CODES},
}


#: The torch types and storage classes of tensors numpy cannot hold (``torch.float8_e4m3fn``,
#: ``torch.QInt8Storage``, ``torch.int4``...): named in a pickle, they are refused as
#: tensors of another type, not as code.
_TYPES_NUMPY_LACKS = re.compile(r"float8_\w+|complex32|ComplexHalfStorage|q(u)?int\w+"
                                r"|Q(U)?Int\w+Storage|bits\w+|u?int[1-7]")


class _TensorUnpickler(pickle.Unpickler):
    """An unpickler for a checkpoint's ``data.pkl`` that builds tensors and plain values
    only: it refuses every global not in :data:`_SAFE_GLOBALS`, and reads each storage
    (``('storage', type, key, location, numel)``) from ``data/KEY`` in the archive."""

    def __init__(self, pickled: bytes, archive: zipfile.ZipFile, folder: str,
                 byteorder: str, name: str) -> None:
        super().__init__(io.BytesIO(pickled))
        self.archive, self.folder, self.byteorder, self.name = archive, folder, byteorder, name
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> object:
        found = _SAFE_GLOBALS.get((module, name))
        if found is not None:
            return found
        if module == "torch" and _TYPES_NUMPY_LACKS.fullmatch(name):
            raise BadInputError(f"{self.name}: tensors of type torch.{name}, which numpy "
                                "cannot hold; convert them to float32 in PyTorch and save "
                                "again")
        raise BadInputError(_refusal(self.name, f"{module}.{name}"))

    def persistent_load(self, pid: object) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _ElementType) and isinstance(pid[2], str)
                and _whole(pid[4])):
            raise BadInputError(f"{self.name}: the checkpoint refers to something other than "
                                f"a storage ({str(pid)[:60]})")
        _, element, key, _, numel = pid
        if key not in self.storages:
            data = _member(self.archive, f"{self.folder}data/{key}", self.name)
            expected = numel * np.dtype(_NUMPY_CODES[element.torch_name]).itemsize
            if len(data) != expected:
                raise BadInputError(f"{self.name}: storage {key!r} holds {len(data)} bytes, "
                                    f"not {expected}")
            self.storages[key] = _Storage(data, element, self.byteorder)
        return self.storages[key]


#: The reader of each weights file suffix.
_READERS: dict[str, Callable[[bytes, str], dict[str, np.ndarray]]] = {
    ".safetensors": _read_safetensors, ".pt": _read_torch, ".pth": _read_torch,
    ".npz": _read_npz}
