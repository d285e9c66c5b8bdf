"""Reading and writing images: formats, bit depth, alpha, ICC, pipes, atomic writes.

The numeric core works on float arrays; this module turns files (or standard
input) into :class:`Picture` objects holding the stored samples, and back.
Samples keep their stored dtype (uint8, uint16 or float) so that nothing is
rounded that does not need to be: nearest-neighbour upsampling never leaves
the integer domain, and ``.npy`` arrays keep their float precision.
"""

from __future__ import annotations

import io
import os
import stat
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from .errors import OutputClosedError, UpconvError
from .png16 import is_16bit_colour_png, read_png16, write_png16

__all__ = [
    "DEFAULT_MAX_PIXELS", "FORMATS", "Picture", "load_image", "save_image",
    "format_for", "atomic_output", "to_float", "from_float", "check_writable", "read_bytes",
    "temporary_beside", "commit", "discard",
]

#: Default limit on the pixels of an input or output image (16384 x 16384).
DEFAULT_MAX_PIXELS = 2 ** 28

#: Output formats: name -> (Pillow format or "NPY", suffixes, can hold alpha,
#: highest integer bit depth, can hold an ICC profile).
FORMATS: dict[str, tuple[str, tuple[str, ...], bool, int, bool]] = {
    "png": ("PNG", (".png",), True, 16, True),
    "jpeg": ("JPEG", (".jpg", ".jpeg", ".jpe"), False, 8, True),
    "tiff": ("TIFF", (".tif", ".tiff"), True, 16, True),
    "webp": ("WEBP", (".webp",), True, 8, True),
    "bmp": ("BMP", (".bmp",), False, 8, False),  # Pillow reads its 32-bit BMPs back as RGB
    "pnm": ("PPM", (".pnm", ".ppm", ".pgm"), False, 16, False),
    "npy": ("NPY", (".npy",), True, 0, False),
}
_FORMAT_ALIASES = {"jpg": "jpeg", "tif": "tiff", "ppm": "pnm", "pgm": "pnm"}
#: Largest side each encoder can write (beyond it they fail after all the work).
MAX_FORMAT_SIDE = {"webp": 16383, "jpeg": 65535}

NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class Picture:
    """An image as stored: samples plus what is needed to write it back.

    Attributes
    ----------
    samples : ndarray, shape (H, W, C)
        uint8, uint16 or floating point (float values nominally in [0, 1]).
        C is 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA).
    icc_profile : bytes or None
        The embedded colour profile, carried over to the output.
    planar : bool
        The input was a 2-D ``.npy`` array; a ``.npy`` output is 2-D too.
    """

    samples: np.ndarray
    icc_profile: bytes | None = None
    planar: bool = False  # a 2-D .npy array: written back as 2-D

    @property
    def has_alpha(self) -> bool:
        return self.samples.shape[2] in (2, 4)

    @property
    def bit_depth(self) -> int:
        """8 or 16 for integer samples, 0 for float samples."""
        kind = self.samples.dtype
        return 8 if kind == np.uint8 else 16 if kind == np.uint16 else 0


def to_float(samples: np.ndarray) -> np.ndarray:
    """Integer samples to float32 in [0, 1]; float samples unchanged.

    Examples
    --------
    >>> to_float(np.array([0, 255], np.uint8))
    array([0., 1.], dtype=float32)
    """
    if samples.dtype == np.uint8:
        return samples.astype(np.float32) * np.float32(1 / 255)
    if samples.dtype == np.uint16:
        return samples.astype(np.float32) * np.float32(1 / 65535)
    return samples


def from_float(values: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """Float values in [0, 1] to ``dtype`` samples: clipped and rounded to nearest.

    Float targets keep the values (no clipping). ``values`` may be modified.

    Examples
    --------
    >>> from_float(np.array([-0.1, 0.5, 1.2], np.float32), np.uint8)
    array([  0, 128, 255], dtype=uint8)
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return values.astype(dtype, copy=False)
    top = float(np.iinfo(dtype).max)
    if not values.flags.writeable or values.dtype.kind != "f":
        values = values.astype(np.float32)
    values *= top
    np.clip(values, 0.0, top, out=values)
    np.rint(values, out=values)
    return values.astype(dtype)


def format_for(path: str, explicit: str | None) -> str:
    """The output format name from ``--format`` or else from the file suffix."""
    if explicit:
        name = _FORMAT_ALIASES.get(explicit.lower(), explicit.lower())
        if name not in FORMATS:
            raise UpconvError(f"unknown format {explicit!r}; use one of {', '.join(FORMATS)}")
        return name
    if path == "-":
        raise UpconvError("writing to standard output needs --format (e.g. --format png)")
    suffix = Path(path).suffix.lower()
    for name, (_, suffixes, *_rest) in FORMATS.items():
        if suffix in suffixes:
            return name
    if not suffix:
        raise UpconvError(f"{path}: no file suffix to tell the format from; add one or "
                          "use --format")
    raise UpconvError(f"{path}: unknown image suffix {suffix!r}; use one of "
                      f"{', '.join(s for f in FORMATS.values() for s in f[1])} or --format")


# --------------------------------------------------------------------------- reading

def _standard_stream(stream, which: str):
    """sys.stdin or sys.stdout, or a clear error when the shell closed it (``<&-``)."""
    try:
        if stream is None:
            raise ValueError
        stream.fileno()
    except (ValueError, OSError):
        raise UpconvError(f"standard {which} is closed") from None
    return stream


def read_bytes(path: str, kind: str = "image", stdin: bool = True) -> bytes:
    """The whole file (or standard input for ``"-"``), or a one-line UpconvError naming it."""
    if path == "-" and stdin:
        stream = _standard_stream(sys.stdin, "input")
        if stream.isatty():
            raise UpconvError(f"-: standard input is a terminal; pipe an {kind} into it")
        try:
            data = stream.buffer.read()
        except OSError as exc:
            raise UpconvError(f"cannot read standard input ({exc.strerror or exc})") from None
        name = "standard input"
    else:
        name = path
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            raise UpconvError(f"{path}: no such {kind} file" if kind != "image"
                              else f"{path}: no such file") from None
        except IsADirectoryError:
            raise UpconvError(f"{path}: is a directory, not an {kind} file"
                              if kind == "image" else
                              f"{path}: is a directory, not a {kind} file") from None
        except PermissionError:
            raise UpconvError(f"{path}: permission denied") from None
        except OSError as exc:
            raise UpconvError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not data:
        raise UpconvError(f"{name}: empty file")
    return data


def _load_npy(data: bytes, name: str, max_pixels: int) -> Picture:
    handle = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(handle)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(handle)
    except (ValueError, OSError) as exc:
        raise UpconvError(f"{name}: corrupt .npy file ({exc})") from None
    if dtype.hasobject or dtype.kind not in "fiub":
        raise UpconvError(f"{name}: .npy arrays must hold numbers, not {dtype}")
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 2, 3, 4)):
        raise UpconvError(f"{name}: .npy image must be H x W or H x W x C with C in 1..4, "
                          f"got shape {shape}")
    if 0 in shape:
        raise UpconvError(f"{name}: .npy image is empty (shape {shape})")
    if shape[0] * shape[1] > max_pixels:
        raise UpconvError(f"{name}: image is {shape[1]}x{shape[0]} pixels, over the limit of "
                          f"{max_pixels} (--max-pixels)")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UpconvError(f"{name}: corrupt or truncated .npy file ({exc})") from None
    planar = array.ndim == 2
    if planar:
        array = array[:, :, None]
    if array.dtype in (np.uint8, np.uint16):
        return Picture(np.ascontiguousarray(array), planar=planar)  # stored samples, as images
    if array.dtype.kind != "f":
        # bool, other integers: must already be values in [0, 1]
        array = array.astype(np.float64)
        if array.min() < 0 or array.max() > 1:
            raise UpconvError(f"{name}: integer .npy images must be uint8 or uint16 samples, "
                              f"or values in [0, 1]; got {dtype} from {array.min():g} to "
                              f"{array.max():g}")
    elif array.dtype.itemsize < 4:
        array = array.astype(np.float32)
    _refuse_non_finite(array, name)
    return Picture(np.ascontiguousarray(array), planar=planar)


def _refuse_non_finite(array: np.ndarray, name: str) -> None:
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise UpconvError(f"{name}: the image contains NaN or infinite values")


def _pillow_samples(image: Image.Image) -> np.ndarray:
    """Samples of a Pillow image as (H, W, C) in a dtype that keeps them exact."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image).astype(np.uint16)[:, :, None]
    if mode == "I":
        values = np.asarray(image)
        if values.min() < 0 or values.max() > 65535:
            raise UpconvError("32-bit integer images are not supported; save as 16-bit")
        return values.astype(np.uint16)[:, :, None]
    if mode == "F":
        return np.asarray(image, dtype=np.float32)[:, :, None].copy()
    keyed = "transparency" in image.info  # a tRNS colour key (or palette alpha)
    if mode == "1":
        image = image.convert("L")
    elif mode == "P":
        image = image.convert("RGBA" if keyed else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode == "La":
        image = image.convert("LA")
    elif mode == "RGBa":
        image = image.convert("RGBA")
    elif mode == "L" and keyed:
        image = image.convert("LA")
    elif mode == "RGB" and keyed:
        image = image.convert("RGBA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGB")  # YCbCr, HSV, RGBX (CMYK and LAB: see _to_srgb)
    samples = np.asarray(image)
    return samples[:, :, None] if samples.ndim == 2 else samples


_PILLOW_LIMIT_LOCK = threading.Lock()


def _to_srgb(image: Image.Image, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """CMYK and LAB images to RGB, through their ICC profile when they have one.

    The profile described the old colour space, so it is not carried over:
    the result is sRGB.
    """
    if image.mode not in ("CMYK", "LAB"):
        return image, icc
    if icc:
        try:
            converted = ImageCms.profileToProfile(image, io.BytesIO(icc),
                                                  ImageCms.createProfile("sRGB"),
                                                  outputMode="RGB")
            if converted is not None:
                return converted, None
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken profile: fall back to the plain conversion
    return image.convert("RGB"), None


def load_image(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """Read an image file (or ``"-"`` for standard input).

    The format is recognised from the content, not the name. EXIF
    orientation is applied; palette and 1-bit images become RGB(A) or gray;
    colour-key (tRNS) transparency becomes an alpha channel; CMYK and LAB
    become sRGB; 16-bit images stay 16-bit; ``.npy`` float arrays stay float.

    Raises
    ------
    UpconvError
        With a one-line message naming the file, for anything unreadable.
    """
    data = read_bytes(path)
    name = "standard input" if path == "-" else path
    if data.startswith(NPY_MAGIC):
        return _load_npy(data, name, max_pixels)
    if is_16bit_colour_png(data):
        try:
            samples, icc = read_png16(data, max_pixels)
        except UpconvError as exc:
            raise UpconvError(f"{name}: {exc}") from None
        return Picture(samples, icc)
    try:
        # Pillow's bomb limit is process-wide: set it under a lock, for threads.
        with _PILLOW_LIMIT_LOCK, warnings.catch_warnings():
            previous_limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = max_pixels
            try:
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as image:
                    icc = image.info.get("icc_profile") or None
                    image = ImageOps.exif_transpose(image)
                    image.load()
                    image, icc = _to_srgb(image, icc)
                    samples = _pillow_samples(image)
            finally:
                Image.MAX_IMAGE_PIXELS = previous_limit
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UpconvError(f"{name}: over the limit of {max_pixels} pixels (--max-pixels); "
                          f"refusing a possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise UpconvError(f"{name}: not an image file upconv can read") from None
    except UpconvError as exc:
        raise UpconvError(f"{name}: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UpconvError(f"{name}: truncated or corrupt image ({exc})") from None
    _refuse_non_finite(samples, name)
    return Picture(np.ascontiguousarray(samples), icc)


def check_writable(fmt: str, width: int, height: int) -> None:
    """Refuse, before any work, an output size the format's encoder cannot write."""
    limit = MAX_FORMAT_SIDE.get(fmt)
    if limit is not None and max(width, height) > limit:
        raise UpconvError(f"{fmt.upper()} images can be at most {limit} pixels on a side; "
                          f"the output would be {width}x{height} (use PNG or TIFF)")


# --------------------------------------------------------------------------- writing

def _encode(picture: Picture, fmt: str, quality: int | None) -> tuple[bytes, list[str]]:
    """Encode for ``fmt``; returns the bytes and notes about what was lost."""
    pillow_format, _, holds_alpha, max_depth, holds_icc = FORMATS[fmt]
    notes: list[str] = []
    samples = picture.samples
    if pillow_format == "NPY":
        buffer = io.BytesIO()
        values = to_float(samples)
        np.save(buffer, values[:, :, 0] if picture.planar and values.shape[2] == 1 else values,
                allow_pickle=False)
        return buffer.getvalue(), notes
    if picture.has_alpha and not holds_alpha:
        samples = samples[:, :, :-1]
        notes.append(f"{fmt.upper()} cannot hold transparency; the alpha channel was dropped")
    if samples.shape[2] == 2 and fmt == "webp":
        samples = samples[:, :, [0, 0, 0, 1]]  # WebP has no gray + alpha mode: RGBA
    channels = samples.shape[2]
    depth = _output_depth(samples.dtype, channels, fmt)
    source = "32-bit float" if samples.dtype.kind == "f" else f"{picture.bit_depth}-bit"
    if depth == 8 and source != "8-bit":
        notes.append(f"{fmt.upper()} output holds 8-bit samples; reduced from {source}")
    icc = picture.icc_profile if holds_icc else None

    if depth == 16 and channels > 1:
        if fmt != "png":
            raise UpconvError(f"16-bit colour cannot be written as {fmt}")  # pragma: no cover
        return write_png16(_convert(samples, np.uint16), icc), notes

    if depth == 0:
        image = Image.fromarray(samples[:, :, 0].astype(np.float32), mode="F")
    elif depth == 16:
        image = Image.fromarray(_convert(samples, np.uint16)[:, :, 0])
    else:
        eight = _convert(samples, np.uint8)
        image = Image.fromarray(eight[:, :, 0] if channels == 1 else eight)
    options: dict[str, object] = {}
    if icc:
        options["icc_profile"] = icc
    if fmt in ("jpeg", "webp"):
        options["quality"] = quality if quality is not None else 92
    if fmt == "tiff":
        options["compression"] = "tiff_deflate"
    buffer = io.BytesIO()
    image.save(buffer, format=pillow_format, **options)
    return buffer.getvalue(), notes


def _output_depth(dtype: np.dtype, channels: int, fmt: str) -> int:
    """Bits per sample to write (0 for float): as deep as the input, if the format can."""
    if fmt == "tiff" and channels == 1 and dtype.kind == "f":
        return 0
    deep = dtype.kind == "f" or dtype == np.uint16
    if deep and (fmt == "png" or (fmt in ("tiff", "pnm") and channels == 1)):
        return 16
    return 8


def _convert(samples: np.ndarray, dtype: type) -> np.ndarray:
    if samples.dtype == dtype:
        return samples
    if samples.dtype == np.uint16 and dtype == np.uint8:
        # exact rounding of v * 255 / 65535
        return ((samples.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if samples.dtype == np.uint8 and dtype == np.uint16:
        return samples.astype(np.uint16) * 257
    return from_float(np.array(samples, dtype=np.float32), dtype)


def temporary_beside(path: str):
    """An open temporary file in ``path``'s folder (``.NAME.XXXX.part``), for atomic writes."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        return tempfile.NamedTemporaryFile(dir=folder, prefix=f".{target.name}.",
                                           suffix=".part", delete=False)
    except FileNotFoundError:
        raise UpconvError(f"{path}: folder {str(folder)!r} does not exist") from None
    except PermissionError:
        raise UpconvError(f"{path}: folder {str(folder)!r} is not writable") from None
    except OSError as exc:
        raise UpconvError(f"{path}: cannot write there ({exc.strerror or exc})") from None


def commit(temporary: str, path: str) -> None:
    """Rename a finished temporary file over ``path``, keeping the mode a file there had."""
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(temporary, mode)
    os.replace(temporary, path)


def discard(temporary: str) -> None:
    """Remove a temporary file that will not be committed."""
    try:
        os.unlink(temporary)
    except FileNotFoundError:
        pass


@contextmanager
def atomic_output(path: str) -> Iterator[BinaryIO]:
    """Write a file atomically: a temporary file in the same folder, then rename.

    On any exception (including KeyboardInterrupt) the temporary file is
    removed and an existing ``path`` is left untouched.
    """
    handle = temporary_beside(path)
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        commit(handle.name, path)
    except BaseException:
        discard(handle.name)
        raise


def save_image(picture: Picture, path: str, fmt: str, quality: int | None = None) -> list[str]:
    """Write ``picture`` to ``path`` (``"-"`` for standard output) as ``fmt``.

    The image is encoded in memory first, so a failure leaves nothing behind;
    files are then written atomically. Returns notes about anything the
    format could not hold (alpha, bit depth), for the caller to show.
    """
    data, notes = _encode(picture, fmt, quality)
    if path == "-":
        stream = _standard_stream(sys.stdout, "output")
        if stream.isatty():
            raise UpconvError("refusing to write binary image data to a terminal; "
                              "redirect standard output or give an output file")
        stream.flush()
        _write_all(stream.fileno(), data, "standard output")
        return notes
    target = os.path.realpath(path)  # write through symbolic links, as other tools do
    if os.path.isdir(target):
        raise UpconvError(f"{path}: is a directory; give an output file name")
    try:
        if os.path.exists(target) and not stat.S_ISREG(os.stat(target).st_mode):
            # A device, FIFO or socket (/dev/null, a named pipe): write into it;
            # renaming over it would replace the device node with a file.
            with open(target, "wb", buffering=0) as handle:
                if handle.isatty():
                    raise UpconvError(f"{path}: refusing to write binary image data to a "
                                      "terminal")
                _write_all(handle.fileno(), data, path)
        else:
            with atomic_output(target) as handle:
                handle.write(data)
    except PermissionError:
        raise UpconvError(f"{path}: permission denied") from None
    except OSError as exc:
        raise UpconvError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return notes


def _write_all(fd: int, data: bytes, name: str) -> None:
    """Write every byte or fail: a short write is retried, EPIPE raises OutputClosedError."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BrokenPipeError:
            raise OutputClosedError(name) from None
        except OSError as exc:
            raise UpconvError(f"cannot write {name} ({exc.strerror or exc})") from None
        view = view[written:]


def with_samples(picture: Picture, samples: np.ndarray) -> Picture:
    """The same picture metadata with new samples."""
    return replace(picture, samples=samples)
