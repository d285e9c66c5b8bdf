"""Reading and writing images: formats, bit depth, alpha, ICC, pipes, atomic writes.

The numeric core works on float arrays; this module turns files (or standard
input) into :class:`Picture` objects holding the stored samples, and back.
Samples keep their stored dtype (uint8, uint16 or float) so that nothing is
rounded that does not need to be: nearest-neighbour upsampling never leaves
the integer domain, and ``.npy`` arrays keep their float precision.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from .errors import BadInputError, UpconvError
from .fileio import output_writer, read_bytes, write_output
from .jpeg import encode_jpeg
from .limits import DEFAULT_MAX_PIXELS
from .npy import (
    NPY_MAGIC,
    NpyFile,
    array_to_hwc,
    check_npy_image,
    hwc_to_array,
    npy_samples,
    read_npy_header,
)
from .png import PngWriter, encode_png, is_16bit_colour_png, png_metadata, read_png16
from .samples import convert_samples, to_float

__all__ = ["DEFAULT_MAX_PIXELS", "FORMATS", "Picture", "SaveOptions", "SUBSAMPLINGS",
           "load_image", "save_image", "image_writer",
           "format_for", "check_writable", "with_samples", "is_npy_file", "image_shape"]


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


@dataclass(frozen=True)
class Picture:
    """An image as stored: samples plus what is needed to write it back.

    Attributes
    ----------
    samples : ndarray, shape (H, W, C)
        uint8, uint16 or floating point (float values nominally in [0, 1]).
        In an image file C is 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA);
        an ``.npy`` array may have any number of channels, none of them alpha.
    icc_profile : bytes or None
        The embedded colour profile, carried over to the output.
    layout : str or None
        An ``.npy`` array's layout (``hw``, ``hwc``, ``chw``, ``nchw``: see
        :mod:`upconv.npy`), which a ``.npy`` output keeps; None for image files.
    exif, dpi, subsampling
        Metadata carried over to outputs that can hold it (see :class:`SaveOptions`).
    """

    samples: np.ndarray
    icc_profile: bytes | None = None
    layout: str | None = None
    #: EXIF (TIFF-structured bytes), with the orientation tag reset to 1 once applied
    exif: bytes | None = None
    #: pixels per inch (x, y), when the file said
    dpi: tuple[float, float] | None = None
    #: a JPEG input's chroma subsampling: "4:4:4", "4:2:2" or "4:2:0"
    subsampling: str | None = None

    @property
    def has_alpha(self) -> bool:
        """Whether an image file would take the last channel as alpha (2 or 4 channels)."""
        return self.samples.shape[2] in (2, 4)

    @property
    def bit_depth(self) -> int:
        """8 or 16 for integer samples, 0 for float samples."""
        kind = self.samples.dtype
        return 8 if kind == np.uint8 else 16 if kind == np.uint16 else 0


def format_for(path: str, explicit: str | None) -> str:
    """The output format name from ``--format`` or else from the file suffix."""
    if explicit:
        name = _FORMAT_ALIASES.get(explicit.lower(), explicit.lower())
        if name not in FORMATS:
            raise BadInputError(f"unknown format {explicit!r}; use one of {', '.join(FORMATS)}")
        return name
    if path == "-":
        raise BadInputError("writing to standard output needs --format (e.g. --format png)")
    suffix = Path(path).suffix.lower()
    for name, (_, suffixes, *_rest) in FORMATS.items():
        if suffix in suffixes:
            return name
    if not suffix:
        raise BadInputError(f"{path}: no file suffix to tell the format from; add one or "
                          "use --format")
    raise BadInputError(f"{path}: unknown image suffix {suffix!r}; use one of "
                      f"{', '.join(s for f in FORMATS.values() for s in f[1])} or --format")


# --------------------------------------------------------------------------- reading

def _load_npy(data: bytes, name: str, max_pixels: int, layout: str | None) -> Picture:
    header = read_npy_header(io.BytesIO(data), name)
    found = check_npy_image(header, name, max_pixels, layout)
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise BadInputError(f"{name}: corrupt or truncated .npy file ({exc})") from None
    samples = npy_samples(array_to_hwc(array, found), name)
    return Picture(np.ascontiguousarray(samples), layout=found)


def image_shape(path: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """The (height, width) of an image file, from its header (nothing is decoded).

    Standard input (``"-"``) cannot be read twice: it gives (0, 0).
    """
    if path == "-":
        return 0, 0
    if is_npy_file(path):
        header = NpyFile.open(path)
        return (int(header.shape[0]), int(header.shape[1])) if len(header.shape) >= 2 else (0, 0)
    try:
        with _PILLOW_LIMIT_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                return image.height, image.width
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        picture = load_image(path, max_pixels)  # the one-line error that names the problem
        return picture.samples.shape[0], picture.samples.shape[1]


def is_npy_file(path: str) -> bool:
    """Whether the file at ``path`` starts like an ``.npy`` array (False if unreadable)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(NPY_MAGIC)) == NPY_MAGIC
    except OSError:
        return False


def _pillow_samples(image: Image.Image) -> np.ndarray:
    """Samples of a Pillow image as (H, W, C) in a dtype that keeps them exact."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image).astype(np.uint16)[:, :, None]
    if mode == "I":
        values = np.asarray(image)
        if values.min() < 0 or values.max() > 65535:
            raise BadInputError("32-bit integer images are not supported; save as 16-bit")
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


def load_image(path: str, max_pixels: int = DEFAULT_MAX_PIXELS,
               layout: str | None = None) -> Picture:
    """Read an image file (or ``"-"`` for standard input).

    The format is recognised from the content, not the name. EXIF
    orientation is applied; palette and 1-bit images become RGB(A) or gray;
    colour-key (tRNS) transparency becomes an alpha channel; CMYK and LAB
    become sRGB; 16-bit images stay 16-bit; ``.npy`` float arrays stay float,
    with any number of channels, read in ``layout`` (``"hwc"`` or ``"chw"``
    for 3-D arrays; see :func:`upconv.npy.array_layout`).

    Raises
    ------
    UpconvError
        With a one-line message naming the file, for anything unreadable.
    """
    data = read_bytes(path)
    name = "standard input" if path == "-" else path
    if data.startswith(NPY_MAGIC):
        return _load_npy(data, name, max_pixels, layout)
    if is_16bit_colour_png(data):
        try:
            samples, icc = read_png16(data, max_pixels)
            exif, dpi = png_metadata(data)
        except UpconvError as exc:
            raise BadInputError(f"{name}: {exc}") from None
        return Picture(samples, icc, exif=_reset_orientation(exif), dpi=dpi)
    try:
        # Pillow's bomb limit is process-wide: set it under a lock, for threads.
        with _PILLOW_LIMIT_LOCK, warnings.catch_warnings():
            previous_limit = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = max_pixels
            try:
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as image:
                    icc = image.info.get("icc_profile") or None
                    exif, dpi = image.info.get("exif") or None, _dpi(image.info.get("dpi"))
                    subsampling = _jpeg_subsampling(image)
                    if _orientation(exif) in (5, 6, 7, 8) and dpi is not None:
                        dpi = (dpi[1], dpi[0])  # a quarter turn swaps the axes
                    image.load()
                    # In place: no copy of an upright image (a 24 MP photo's is 96 MB).
                    ImageOps.exif_transpose(image, in_place=True)
                    image, icc = _to_srgb(image, icc)
                    samples = _pillow_samples(image)
            finally:
                Image.MAX_IMAGE_PIXELS = previous_limit
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadInputError(f"{name}: over the limit of {max_pixels} pixels (--max-pixels); "
                          f"refusing a possible decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise BadInputError(f"{name}: not an image file upconv can read") from None
    except UpconvError as exc:
        raise BadInputError(f"{name}: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadInputError(f"{name}: truncated or corrupt image ({exc})") from None
    if samples.dtype.kind == "f" and not np.isfinite(samples).all():
        raise BadInputError(f"{name}: the image contains NaN or infinite values")
    return Picture(np.ascontiguousarray(samples), icc, exif=_reset_orientation(exif), dpi=dpi,
                   subsampling=subsampling)


_SUBSAMPLING_NAMES = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}


def _jpeg_subsampling(image: Image.Image) -> str | None:
    """A JPEG's chroma subsampling ("4:4:4", "4:2:2", "4:2:0"), None for others."""
    if image.format != "JPEG" or image.mode != "RGB":
        return None
    from PIL import JpegImagePlugin

    return _SUBSAMPLING_NAMES.get(JpegImagePlugin.get_sampling(image))


def _dpi(value: object) -> tuple[float, float] | None:
    """Pillow's ``dpi`` info as two positive numbers, else None."""
    try:
        x, y = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return (x, y) if x > 0 and y > 0 and np.isfinite([x, y]).all() else None


def _orientation(exif: bytes | None) -> int:
    if not exif:
        return 1
    try:
        return int(_parse_exif(exif).get(_ORIENTATION, 1))
    except (ValueError, TypeError, SyntaxError, OSError):
        return 1


_ORIENTATION = 0x0112


def _parse_exif(exif: bytes) -> Image.Exif:
    parsed = Image.Exif()
    parsed.load(exif)
    return parsed


def _reset_orientation(exif: bytes | None) -> bytes | None:
    """EXIF with its orientation tag set to 1 (the pixels are stored upright now).

    EXIF that cannot be parsed is dropped rather than carried over wrong.
    """
    if not exif:
        return None
    try:
        parsed = _parse_exif(exif)
        if parsed.get(_ORIENTATION, 1) != 1:
            parsed[_ORIENTATION] = 1
        return parsed.tobytes()
    except (ValueError, TypeError, SyntaxError, OSError, KeyError):
        return None


def check_writable(fmt: str, width: int, height: int) -> None:
    """Refuse, before any work, an output size the format's encoder cannot write."""
    limit = MAX_FORMAT_SIDE.get(fmt)
    if limit is not None and max(width, height) > limit:
        raise BadInputError(f"{fmt.upper()} images can be at most {limit} pixels on a side; "
                          f"the output would be {width}x{height} (use PNG or TIFF)")


# --------------------------------------------------------------------------- writing

#: ``--subsampling`` values and Pillow's names for them.
SUBSAMPLINGS = {"444": "4:4:4", "422": "4:2:2", "420": "4:2:0"}


@dataclass(frozen=True)
class SaveOptions:
    """How to write an image, beyond its format.

    Attributes
    ----------
    quality : int, optional
        JPEG and WebP quality (default 92).
    compression : {"fast", "small"}
        PNG deflate setting (:data:`upconv.png.COMPRESSIONS`).
    subsampling : {"444", "422", "420"}, optional
        JPEG chroma subsampling; by default a JPEG input's own, else 4:2:0.
    progressive : bool
        Write a progressive JPEG.
    strip : bool
        Leave out EXIF, the ICC profile and the physical size.
    """

    quality: int | None = None
    compression: str = "fast"
    subsampling: str | None = None
    progressive: bool = False
    strip: bool = False


def _encode(picture: Picture, fmt: str, options: SaveOptions) -> tuple[bytes, list[str]]:
    """Encode for ``fmt``; returns the bytes and notes about what was lost."""
    pillow_format, _, holds_alpha, max_depth, holds_icc = FORMATS[fmt]
    quality = options.quality
    notes: list[str] = []
    samples = picture.samples
    if pillow_format == "NPY":
        buffer = io.BytesIO()
        values = to_float(samples)
        np.save(buffer, hwc_to_array(values, picture.layout or "hwc"), allow_pickle=False)
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
    icc = picture.icc_profile if holds_icc and not options.strip else None
    exif = picture.exif if not options.strip else None
    dpi = picture.dpi if not options.strip else None

    if fmt == "png":
        return encode_png(convert_samples(samples, np.uint16 if depth == 16 else np.uint8), icc,
                          exif, dpi, options.compression), notes
    chosen = options.subsampling
    subsampling = chosen or {v: k for k, v in SUBSAMPLINGS.items()}.get(picture.subsampling
                                                                        or "", "420")
    if fmt == "jpeg" and not options.progressive:  # no 4-byte-per-pixel copy in Pillow
        data, jpeg_notes = encode_jpeg(convert_samples(samples, np.uint8),
                                       quality if quality is not None else 92, subsampling,
                                       icc, exif, dpi)
        return data, notes + jpeg_notes

    if depth == 0:
        image = Image.fromarray(samples[:, :, 0].astype(np.float32), mode="F")
    elif depth == 16:
        image = Image.fromarray(convert_samples(samples, np.uint16)[:, :, 0])
    else:
        eight = convert_samples(samples, np.uint8)
        image = Image.fromarray(eight[:, :, 0] if channels == 1 else eight)
    settings: dict[str, object] = {}
    if icc:
        settings["icc_profile"] = icc
    if exif and fmt in ("jpeg", "webp", "tiff"):
        settings["exif"] = exif
    if dpi and fmt in ("jpeg", "tiff"):
        settings["dpi"] = dpi
    if fmt in ("jpeg", "webp"):
        settings["quality"] = quality if quality is not None else 92
    if fmt == "jpeg":  # progressive: libjpeg through Pillow
        settings["subsampling"] = SUBSAMPLINGS[subsampling]
        settings["progressive"] = True
    if fmt == "tiff":
        settings["compression"] = "tiff_deflate"
    buffer = io.BytesIO()
    image.save(buffer, format=pillow_format, **settings)
    return buffer.getvalue(), notes


def _output_depth(dtype: np.dtype, channels: int, fmt: str) -> int:
    """Bits per sample to write (0 for float): as deep as the input, if the format can."""
    if fmt == "tiff" and channels == 1 and dtype.kind == "f":
        return 0
    deep = dtype.kind == "f" or dtype == np.uint16
    if deep and (fmt == "png" or (fmt in ("tiff", "pnm") and channels == 1)):
        return 16
    return 8


def save_image(picture: Picture, path: str, fmt: str,
               options: SaveOptions = SaveOptions()) -> list[str]:
    """Write ``picture`` to ``path`` (``"-"`` for standard output) as ``fmt``.

    The image is encoded in memory first, so a failure leaves nothing behind;
    files are then written atomically (:func:`upconv.fileio.write_output`).
    Returns notes about anything the format could not hold (alpha, bit
    depth), for the caller to show. The ICC profile, EXIF and physical size
    are kept where the format holds them, unless ``options.strip``.
    """
    data, notes = _encode(picture, fmt, options)
    write_output(path, data, "image")
    return notes


class _WholeImage:
    """Bands gathered into one array, encoded when complete (every format but PNG)."""

    def __init__(self, shape: tuple[int, int, int], dtype: np.dtype) -> None:
        self.shape, self.dtype = shape, dtype
        self.samples: np.ndarray | None = None
        self.rows = 0
        self._lent: np.ndarray | None = None  # the rows next_rows() handed out

    def write(self, rows: np.ndarray) -> None:
        if self.samples is None and rows.shape == self.shape and rows.dtype == self.dtype:
            self.samples = rows  # the whole image at once: no copy
        elif rows is not self._lent:  # (rows filled in place are there already)
            self.next_rows(rows.shape[0])[...] = rows
        self._lent = None
        self.rows += rows.shape[0]

    def next_rows(self, count: int) -> np.ndarray:
        """Where the next ``count`` rows go: fill it, then :meth:`write` it (no copy)."""
        if self.samples is None:
            self.samples = np.empty(self.shape, self.dtype)
        self._lent = self.samples[self.rows:self.rows + count]
        return self._lent


class _StreamedPng:
    """Bands encoded and written as they come: a PNG never holds the image whole."""

    def __init__(self, write: Callable[[bytes], None], picture: Picture,
                 shape: tuple[int, int, int], dtype: np.dtype, options: SaveOptions) -> None:
        height, width, channels = shape
        depth = _output_depth(dtype, channels, "png")
        self.dtype = np.uint16 if depth == 16 else np.uint8
        keep = not options.strip
        self.png = PngWriter(_Stream(write), width, height, channels, depth,
                             icc_profile=picture.icc_profile if keep else None,
                             exif=picture.exif if keep else None,
                             dpi=picture.dpi if keep else None,
                             compression=options.compression)

    def write(self, rows: np.ndarray) -> None:
        self.png.write(convert_samples(rows, self.dtype))

    def next_rows(self, count: int) -> None:
        """Rows are encoded as they come: there is no image to fill."""
        return None


class _Stream:
    """A ``write`` function as the file object :class:`~upconv.png.PngWriter` takes."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self.write = write


@contextmanager
def image_writer(picture: Picture, shape: tuple[int, int, int], dtype: np.dtype | type,
                 path: str, fmt: str, options: SaveOptions = SaveOptions(),
                 notes: list[str] | None = None) -> Iterator[_WholeImage | _StreamedPng]:
    """Write an image band by band: ``with image_writer(...) as out: out.write(rows)``.

    ``picture`` gives the metadata (ICC, EXIF, dpi, subsampling; its samples
    are not used), ``shape`` (H, W, C) and ``dtype`` the output's samples,
    given in order from the top in bands of any height. A PNG is encoded and
    written as the bands come (:class:`upconv.png.PngWriter`), so it is never
    whole in memory; other formats are gathered and encoded at the end, as
    :func:`save_image` does. Either way the file appears only when complete
    (:func:`upconv.fileio.output_writer`). Notes about what the format could
    not hold are appended to ``notes``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = str(pathlib.Path(tempfile.mkdtemp()) / "bands.png")
    >>> with image_writer(Picture(np.zeros((1, 1, 1), np.uint8)), (4, 3, 1), np.uint8,
    ...                   path, "png") as out:
    ...     out.write(np.zeros((1, 3, 1), np.uint8))
    ...     out.write(np.full((3, 3, 1), 255, np.uint8))
    >>> np.asarray(Image.open(path)).tolist()
    [[0, 0, 0], [255, 255, 255], [255, 255, 255], [255, 255, 255]]
    """
    dtype = np.dtype(dtype)
    if fmt == "png":
        with output_writer(path, "image") as write:
            sink = _StreamedPng(write, picture, shape, dtype, options)
            yield sink
            sink.png.close()
        return
    whole = _WholeImage(shape, dtype)
    yield whole
    if whole.rows != shape[0]:
        raise ValueError(f"{whole.rows} of the image's {shape[0]} rows were written")
    written = save_image(with_samples(picture, whole.samples), path, fmt, options)
    if notes is not None:
        notes.extend(written)


def with_samples(picture: Picture, samples: np.ndarray) -> Picture:
    """The same picture metadata with new samples."""
    return replace(picture, samples=samples)
