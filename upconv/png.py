"""upconv's PNG codec: a fast streamed writer for every PNG upconv writes, and a reader
for 16-bit colour PNGs, which Pillow reduces to 8 bits.

**Writing** (:class:`PngWriter`, :func:`encode_png`): 8- and 16-bit gray,
gray + alpha, RGB and RGBA, band by band, with the ICC profile, EXIF and
physical size. Every row gets the Average filter (each byte minus the mean
of its left and upper neighbours), computed in numpy in one vectorised step,
since encoding, unlike decoding, needs only the original bytes. The rows are
deflated with ISA-L (the ``isal`` package, level 2) for ``compression="fast"``,
or with the standard ``zlib`` at level 6 for ``"small"``; ``"fast"`` falls back
to ``zlib`` at level 1 where ``isal`` cannot be imported. On a 3840 x 2160
output (``bench/bench_png_write.py``): "fast" takes 0.031 x Pillow's time for
a file 1.089 x its size, "small" 0.7 x its time for 1.020 x its size.

**Reading 16-bit colour**: Pillow has no 16-bit RGB or RGBA mode, so it would
silently drop the low byte of a 48- or 64-bit PNG. This module reads
the chunks (checksums, iCCP, tRNS, eXIf) and hands only the image data to
libpng, through ``imagecodecs.png_decode``, to unfilter. Undoing the Paeth
filter is serial along each row, and a 16-bit image has twice the bytes of
an 8-bit one, so one libpng call takes about 2.5 x Pillow's time for the same
picture at 8 bits; tall images are therefore inflated by one thread while
libpng unfilters the strip before (:func:`_decode_in_strips`), which brings a
12 MP 16-bit RGB PNG with Paeth rows to about 1.6 x (0.44 s against 0.27 s,
``bench/bench_png16.py``), against about 30 s for the numpy/Python unfilter
below (the fallback without imagecodecs). pyspng is no faster in one call
(0.72 s) and far smaller, but cannot decode 16-bit gray+alpha and lacks some
wheels. Gray 16-bit PNGs go through Pillow (mode ``I;16``).
"""

from __future__ import annotations

import io
import queue
import struct
import threading
import zlib
from collections.abc import Iterator

import numpy as np

from .errors import UpconvError

__all__ = ["is_16bit_colour_png", "read_png16", "png_metadata", "PngWriter", "encode_png",
           "COMPRESSIONS"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
IEND = b"\0\0\0\0IEND\xaeB`\x82"
#: PNG colour types with more than one sample per pixel, and their channels.
COLOUR_CHANNELS = {2: 3, 4: 2, 6: 4}
#: The Adam7 passes: first column, first row, column step, row step.
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2))
#: libpng refuses wider or taller images (its default user limit).
LIBPNG_MAX_SIDE = 1_000_000
#: Bytes of image data per strip when inflating and unfiltering run side by side
#: (:func:`_decode_in_strips`): a few megabytes (128 rows of a 4000-pixel RGB image),
#: at least one row.
STRIP_BYTES = 3 << 20
#: Compressed bytes fed to the inflater at a time.
INFLATE_PIECE = 1 << 18


def _header(data: bytes) -> tuple[int, int, int, int, int]:
    if len(data) < 33 or not data.startswith(SIGNATURE) or data[12:16] != b"IHDR":
        raise UpconvError("not a PNG file")
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return width, height, depth, colour, interlace


def is_16bit_colour_png(data: bytes) -> bool:
    """Whether ``data`` is a PNG with 16-bit samples and more than one channel."""
    try:
        _, _, depth, colour, _ = _header(data)
    except UpconvError:
        return False
    return depth == 16 and colour in COLOUR_CHANNELS


def _chunks(data: bytes) -> Iterator[tuple[bytes, memoryview, memoryview]]:
    """Each chunk's type, body and whole bytes (views into ``data``), checksum verified."""
    view = memoryview(data)
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data):
            raise UpconvError("truncated PNG file")
        body = view[pos + 8:end - 4]
        if zlib.crc32(body, zlib.crc32(kind)) != struct.unpack_from(">I", data, end - 4)[0]:
            raise UpconvError(f"corrupt PNG file (bad checksum in {kind.decode('latin-1')} chunk)")
        yield kind, body, view[pos:end]
        pos = end
        if kind == b"IEND":
            return
    raise UpconvError("truncated PNG file (no IEND chunk)")


def _passes(width: int, height: int, interlace: int) -> list[tuple[int, int, int, int, int, int]]:
    """The sub-images stored one after another in the image data.

    Returns
    -------
    list of (x0, y0, dx, dy, w, h)
        Each sub-image holds the pixels ``[y0::dy, x0::dx]`` and is ``w`` x ``h``;
        one for a plain image, up to seven (the empty ones left out) for Adam7.
    """
    if not interlace:
        return [(0, 0, 1, 1, width, height)]
    passes = []
    for x0, y0, dx, dy in ADAM7:
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w > 0 and h > 0:
            passes.append((x0, y0, dx, dy, w, h))
    return passes


def _unfilter(raw: np.ndarray, height: int, stride: int, bpp: int) -> np.ndarray:
    """Undo the row filters of ``height`` rows of ``stride`` bytes (the reference decoder).

    Paeth and Average rows depend on the reconstructed byte to their left, so
    they run byte by byte in Python: about 30 s for 12 MP of 16-bit RGB.
    """
    rows = raw.reshape(height, stride + 1)
    filters = rows[:, 0]
    data = rows[:, 1:].astype(np.int32)
    out = np.zeros((height, stride), np.int32)
    prev = np.zeros(stride, np.int32)
    for y in range(height):
        line = data[y]
        kind = filters[y]
        if kind == 0:
            cur = line
        elif kind == 1:  # Sub: running sum of each byte lane, mod 256
            cur = np.cumsum(line.reshape(-1, bpp), axis=0).ravel() & 0xFF
        elif kind == 2:  # Up
            cur = (line + prev) & 0xFF
        elif kind in (3, 4):  # Average, Paeth: depend on the reconstructed left pixel
            cur = line.copy()
            for x in range(stride):
                left = cur[x - bpp] if x >= bpp else 0
                up = prev[x]
                if kind == 3:
                    pred = (left + up) >> 1
                else:
                    up_left = prev[x - bpp] if x >= bpp else 0
                    p = left + up - up_left
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                    pred = left if pa <= pb and pa <= pc else (up if pb <= pc else up_left)
                cur[x] = (cur[x] + pred) & 0xFF
        else:
            raise UpconvError(f"corrupt PNG file (unknown row filter {kind})")
        out[y] = cur
        prev = cur
    return out.astype(np.uint8)


def _decode_in_python(idat: list[memoryview], width: int, height: int, channels: int,
                      interlace: int) -> np.ndarray:
    """Inflate and unfilter the image data with zlib and numpy (the fallback)."""
    bpp = 2 * channels
    passes = _passes(width, height, interlace)
    expected = sum(h * (w * bpp + 1) for *_, w, h in passes)
    try:
        raw = zlib.decompressobj().decompress(b"".join(idat), expected)
    except zlib.error as exc:
        raise UpconvError(f"corrupt PNG file ({exc})") from None
    if len(raw) != expected:
        raise UpconvError("truncated PNG file (image data too short)")
    flat = np.frombuffer(raw, np.uint8)
    pixels = np.empty((height, width, bpp), np.uint8)
    start = 0
    for x0, y0, dx, dy, w, h in passes:
        size = h * (w * bpp + 1)
        pixels[y0::dy, x0::dx] = _unfilter(flat[start:start + size], h, w * bpp, bpp).reshape(
            h, w, bpp)
        start += size
    return pixels.view(">u2").reshape(height, width, channels).astype(np.uint16)


def _decode_with_libpng(ihdr: memoryview, idat: list[memoryview]) -> np.ndarray | None:
    """Inflate and unfilter the image data with libpng, or None without imagecodecs.

    libpng sees only IHDR, the IDAT chunks and IEND, so it returns the stored
    samples untouched: transparency, profile and orientation are handled here.
    """
    try:
        from imagecodecs import PngError, png_decode
    except ImportError:
        return None
    try:
        return png_decode(b"".join([SIGNATURE, ihdr, *idat, IEND]))
    except PngError as exc:
        if "not enough image data" in str(exc).lower():
            raise UpconvError("truncated PNG file (image data too short)") from None
        raise UpconvError(f"corrupt PNG file ({exc})") from None


def strip_rows(row_bytes: int) -> int:
    """Rows per strip for rows of ``row_bytes`` (filter byte included): at least one."""
    return max(1, STRIP_BYTES // row_bytes)


def _decode_in_strips(idat: list[memoryview], width: int, height: int, colour: int,
                      channels: int) -> np.ndarray | None:
    """Inflate and unfilter a plain (not interlaced) image side by side, strip by strip.

    A thread inflates the image data (zlib releases the GIL) into strips of
    about :data:`STRIP_BYTES` while this one has libpng unfilter the previous
    strip: each strip becomes a small PNG whose stored (uncompressed) image
    data starts with the row above it, already reconstructed, as an
    unfiltered row, so libpng sees every row's true neighbour above. On two
    CPUs this takes about the time of the slower of the two stages instead of
    their sum. Returns None without imagecodecs.
    """
    try:
        from imagecodecs import PngError, png_decode
    except ImportError:
        return None
    row_bytes = width * channels * 2 + 1
    strip_bytes = strip_rows(row_bytes) * row_bytes
    total = height * row_bytes
    samples = np.empty((height, width, channels), np.uint16)  # before the thread starts
    strips: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def hand_over(item: object) -> bool:
        """Queue an item for the unfilterer; False once it has stopped listening."""
        while not stop.is_set():
            try:
                strips.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def inflate() -> None:
        outcome: object = None  # None: the data ended; or the exception that stopped it
        try:
            inflater = zlib.decompressobj()
            pending = bytearray()
            produced = 0
            for body in idat:
                for first in range(0, len(body), INFLATE_PIECE):
                    data = body[first:first + INFLATE_PIECE]
                    while data and produced < total:
                        piece = inflater.decompress(data, min(strip_bytes, total - produced))
                        produced += len(piece)
                        pending += piece
                        data = inflater.unconsumed_tail
                        if len(pending) >= strip_bytes:
                            if not hand_over(bytes(pending[:strip_bytes])):
                                return
                            del pending[:strip_bytes]
                    if produced >= total:
                        break
            if pending and not hand_over(bytes(pending)):
                return
        except zlib.error as exc:
            outcome = UpconvError(f"corrupt PNG file ({exc})")
        except BaseException as exc:  # noqa: BLE001 - MemoryError and the like: hand it over
            outcome = exc
        finally:
            hand_over(outcome)

    worker = threading.Thread(target=inflate, name="upconv-png-inflate", daemon=True)
    worker.start()
    above = b""  # the reconstructed row above the next strip, as stored (big-endian)
    row = 0
    try:
        while row < height:
            item = _next_strip(strips, worker)
            if isinstance(item, BaseException):
                raise item
            rows = 0 if item is None else len(item) // row_bytes
            if rows == 0:
                raise UpconvError("truncated PNG file (image data too short)")
            stored = zlib.compressobj(0)
            payload = [stored.compress(b"\0" + above) if above else b"",
                       stored.compress(item[:rows * row_bytes]), stored.flush()]
            count = rows + (1 if above else 0)
            header = struct.pack(">IIBBBBB", width, count, 16, colour, 0, 0, 0)
            try:
                decoded = png_decode(b"".join([SIGNATURE, _chunk(b"IHDR", header),
                                               _chunk(b"IDAT", b"".join(payload)), IEND]))
            except PngError as exc:
                raise UpconvError(f"corrupt PNG file ({exc})") from None
            decoded = np.asarray(decoded).reshape(count, width, channels)
            samples[row:row + rows] = decoded[count - rows:]
            above = decoded[-1].astype(">u2").tobytes()
            row += rows
    finally:
        stop.set()
        worker.join()
    return samples


def _next_strip(strips: queue.Queue, worker: threading.Thread) -> object:
    """The next item the inflating thread handed over; an error if it died without one."""
    while True:
        try:
            return strips.get(timeout=0.5)
        except queue.Empty:
            if not worker.is_alive() and strips.empty():
                raise UpconvError("the PNG decoder's inflating thread stopped unexpectedly"
                                  ) from None


def read_png16(data: bytes, max_pixels: int) -> tuple[np.ndarray, bytes | None]:
    """Decode a 16-bit colour PNG into (H, W, C) uint16 samples and its ICC profile.

    Parameters
    ----------
    data : bytes
        The whole file: 16-bit gray+alpha, RGB or RGBA, plain or Adam7-interlaced.
    max_pixels : int
        Refuse larger images before inflating anything (decompression bombs).

    Returns
    -------
    samples : ndarray
        uint16, C = 2 (gray+alpha), 3 or 4; an RGB colour key (tRNS) becomes an
        alpha channel, and the EXIF orientation (eXIf) is applied.
    icc : bytes or None
        The ICC profile (iCCP), None when absent or unreadable.

    Raises
    ------
    UpconvError
        With a one-line message, for a truncated or corrupt file or one too large.
    """
    width, height, depth, colour, interlace = _header(data)
    if width == 0 or height == 0:
        raise UpconvError("corrupt PNG file (zero size)")
    if width * height > max_pixels:
        raise UpconvError(f"image is {width}x{height} = {width * height} pixels, over the "
                          f"limit of {max_pixels} (--max-pixels); refusing a possible "
                          "decompression bomb")
    if interlace not in (0, 1):
        raise UpconvError(f"corrupt PNG file (unknown interlace method {interlace})")
    channels = COLOUR_CHANNELS[colour]
    ihdr, idat, icc, key, orientation = None, [], None, None, 1
    for kind, body, chunk in _chunks(data):
        if kind == b"IHDR":
            ihdr = chunk
        elif kind == b"IDAT":
            idat.append(chunk)
        elif kind == b"iCCP":
            icc = _icc_profile(bytes(body))
        elif kind == b"tRNS" and colour == 2 and len(body) == 6:
            key = np.frombuffer(body, ">u2").astype(np.uint16)  # RGB colour key
        elif kind == b"eXIf":
            orientation = _exif_orientation(bytes(body))
    if not idat:
        raise UpconvError("truncated PNG file (no image data)")
    samples = None
    if max(width, height) <= LIBPNG_MAX_SIDE:
        if not interlace and height > 2 * strip_rows(width * channels * 2 + 1):
            bodies = [chunk[8:-4] for chunk in idat]
            samples = _decode_in_strips(bodies, width, height, colour, channels)
        else:
            samples = _decode_with_libpng(ihdr, idat)
    if samples is None:
        bodies = [chunk[8:-4] for chunk in idat]
        samples = _decode_in_python(bodies, width, height, channels, interlace)
    if key is not None:  # colour-key transparency becomes an alpha channel
        opaque = np.where((samples == key).all(axis=2), 0, 65535).astype(np.uint16)
        samples = np.concatenate([samples, opaque[:, :, None]], axis=2)
    return orient(samples, orientation), icc


def png_metadata(data: bytes) -> tuple[bytes | None, tuple[float, float] | None]:
    """A PNG's EXIF (eXIf) and its pixels per inch (pHYs in metres), or None for each.

    Examples
    --------
    >>> png_metadata(encode_png(np.zeros((1, 1, 1), np.uint8), dpi=(300, 300)))[1]
    (299.9994, 299.9994)
    """
    exif, dpi = None, None
    for kind, body, _ in _chunks(data):
        if kind == b"eXIf":
            exif = b"Exif\0\0" + bytes(body)
        elif kind == b"pHYs" and len(body) == 9:
            x, y, unit = struct.unpack(">IIB", body)
            if unit == 1 and x and y:
                dpi = (round(x * 0.0254, 4), round(y * 0.0254, 4))
        elif kind == b"IDAT":
            break  # both come before the image data
    return exif, dpi


def _icc_profile(body: bytes) -> bytes | None:
    """The profile of an iCCP chunk; a damaged one is ignored, as browsers do."""
    try:
        name_end = body.index(b"\0")
        return zlib.decompress(body[name_end + 2:])
    except (ValueError, zlib.error):
        return None


def _exif_orientation(body: bytes) -> int:
    from PIL import Image

    try:
        exif = Image.Exif()
        exif.load(body)
        value = int(exif.get(0x0112, 1))
    except Exception:  # noqa: BLE001 - malformed EXIF: keep the image as stored
        return 1
    return value if 1 <= value <= 8 else 1


def orient(samples: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to (H, W, C) samples, as Pillow's exif_transpose.

    Examples
    --------
    >>> orient(np.arange(6).reshape(2, 3, 1), 6)[..., 0]
    array([[3, 0],
           [4, 1],
           [5, 2]])
    """
    flips = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(flips[orientation](samples))


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(
        ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)




# --------------------------------------------------------------------------- writing

#: ``--compression`` settings: name -> what they trade.
COMPRESSIONS = {
    "fast": "ISA-L deflate, level 2: about a thirtieth of Pillow's time, files ~10% bigger",
    "small": "zlib deflate, level 6: 0.7 x Pillow's time, files within 2% of Pillow's",
}
#: PNG colour type for each number of channels.
COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}
#: Filtered bytes deflated at a time, and the largest IDAT chunk written.
DEFLATE_PIECE = 1 << 20
IDAT_BYTES = 1 << 20


def _deflater(compression: str):
    """A zlib-format compressor object for ``compression`` ("fast" or "small")."""
    if compression == "small":
        return zlib.compressobj(6)
    if compression != "fast":
        raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, "
                         f"not {compression!r}")
    try:
        from isal import isal_zlib
    except ImportError:  # pragma: no cover - isal has wheels where upconv runs
        return zlib.compressobj(1)
    return isal_zlib.compressobj(2)


def average_filter(rows: np.ndarray, previous: np.ndarray | None, bpp: int) -> np.ndarray:
    """PNG's Average filter (type 3) of byte rows, each prefixed with its filter byte.

    ``rows`` is (n, stride) uint8, ``previous`` the unfiltered row above the
    first one (None at the top of the image), ``bpp`` the bytes per pixel.

    Examples
    --------
    >>> average_filter(np.array([[10, 20, 30]], np.uint8), None, 1).tolist()
    [[3, 10, 15, 20]]
    """
    n, stride = rows.shape
    above = np.empty((n, stride), np.uint16)
    above[0] = 0 if previous is None else previous
    above[1:] = rows[:-1]
    above[:, bpp:] += rows[:, :-bpp]
    above >>= 1
    out = np.empty((n, stride + 1), np.uint8)
    out[:, 0] = 3
    np.subtract(rows, above, out=out[:, 1:], casting="unsafe")
    return out


class PngWriter:
    """Write a PNG to a binary stream, band of rows by band of rows.

    Parameters
    ----------
    stream : binary file
        Where the bytes go, as they are made.
    width, height, channels : int
        The image; ``channels`` 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA).
    depth : {8, 16}
        Bits per sample; rows are given as uint8 or uint16.
    icc_profile, exif : bytes, optional
        Written as iCCP and eXIf chunks (the EXIF without JPEG's ``Exif\\0\\0``).
    dpi : (float, float), optional
        Pixels per inch, written as a pHYs chunk.
    compression : {"fast", "small"}

    Examples
    --------
    >>> import io
    >>> from PIL import Image
    >>> buffer = io.BytesIO()
    >>> writer = PngWriter(buffer, 3, 2, 1, 8)
    >>> writer.write(np.array([[[1], [2], [3]]], np.uint8))
    >>> writer.write(np.array([[[4], [5], [6]]], np.uint8))
    >>> writer.close()
    >>> np.asarray(Image.open(buffer)).tolist()
    [[1, 2, 3], [4, 5, 6]]
    """

    def __init__(self, stream, width: int, height: int, channels: int, depth: int, *,
                 icc_profile: bytes | None = None, exif: bytes | None = None,
                 dpi: tuple[float, float] | None = None, compression: str = "fast") -> None:
        if channels not in COLOUR_TYPES or depth not in (8, 16):
            raise ValueError(f"PNG cannot hold {channels} channels of {depth} bits")
        if not (0 < width < 2 ** 31 and 0 < height < 2 ** 31):
            raise ValueError(f"a PNG cannot be {width}x{height}")
        self._stream = stream
        self._shape = (height, width, channels)
        self._dtype = np.dtype(np.uint8 if depth == 8 else ">u2")
        self._bpp = channels * depth // 8
        self._deflater = _deflater(compression)
        self._previous: np.ndarray | None = None
        self._rows = 0
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        header = struct.pack(">IIBBBBB", width, height, depth, COLOUR_TYPES[channels], 0, 0, 0)
        stream.write(SIGNATURE + _chunk(b"IHDR", header))
        if dpi is not None and all(d > 0 for d in dpi):
            per_metre = [round(d / 0.0254) for d in dpi]
            stream.write(_chunk(b"pHYs", struct.pack(">IIB", *per_metre, 1)))
        if icc_profile:
            stream.write(_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc_profile)))
        if exif:
            stream.write(_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\0\0") else exif))

    def write(self, rows: np.ndarray) -> None:
        """Append rows, shape (n, width, channels), of the depth's sample type."""
        height, width, channels = self._shape
        rows = np.asarray(rows)
        if rows.ndim != 3 or rows.shape[1:] != (width, channels):
            raise ValueError(f"rows of shape {rows.shape} for a {width}x{height}x{channels} PNG")
        if self._rows + rows.shape[0] > height:
            raise ValueError(f"more than the {height} rows of the PNG")
        if rows.dtype.itemsize != self._dtype.itemsize or rows.dtype.kind != "u":
            raise ValueError(f"{rows.dtype} samples for rows of {self._dtype.itemsize * 8}-bit "
                             "samples")
        data = rows.astype(self._dtype, copy=False).reshape(rows.shape[0], -1).view(np.uint8)
        step = max(1, DEFLATE_PIECE // data.shape[1])
        for start in range(0, data.shape[0], step):
            piece = data[start:start + step]
            self._emit(self._deflater.compress(average_filter(piece, self._previous, self._bpp)))
            self._previous = piece[-1]
        self._rows += rows.shape[0]

    def close(self) -> None:
        """Finish the image data and write the end chunk; every row must have been given."""
        if self._rows != self._shape[0]:
            raise ValueError(f"{self._rows} of the PNG's {self._shape[0]} rows were written")
        self._emit(self._deflater.flush(), final=True)
        self._stream.write(IEND)

    def _emit(self, data: bytes, final: bool = False) -> None:
        if data:
            self._pending.append(data)
            self._pending_bytes += len(data)
        if self._pending_bytes >= IDAT_BYTES or (final and self._pending_bytes):
            self._stream.write(_chunk(b"IDAT", b"".join(self._pending)))
            self._pending, self._pending_bytes = [], 0


def encode_png(samples: np.ndarray, icc_profile: bytes | None = None, exif: bytes | None = None,
               dpi: tuple[float, float] | None = None, compression: str = "fast") -> bytes:
    """A whole (H, W, C) uint8 or uint16 image as PNG file contents (see :class:`PngWriter`).

    Examples
    --------
    >>> data = encode_png(np.zeros((2, 2, 3), np.uint16))
    >>> data[:8] == SIGNATURE and data[24:26] == bytes([16, 2])  # 16 bits, RGB
    True
    """
    buffer = io.BytesIO()
    height, width, channels = samples.shape
    writer = PngWriter(buffer, width, height, channels, samples.dtype.itemsize * 8,
                       icc_profile=icc_profile, exif=exif, dpi=dpi, compression=compression)
    writer.write(samples)
    writer.close()
    return buffer.getvalue()
