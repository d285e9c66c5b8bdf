"""A small PNG codec for 16-bit colour images, which Pillow reduces to 8 bits.

Pillow has no 16-bit RGB or RGBA mode, so it would silently drop the low
byte of a 48- or 64-bit PNG. upconv reads and writes those itself: the
format is zlib-compressed scanlines with a per-row filter. Gray 16-bit PNGs
go through Pillow (mode ``I;16``), which handles them exactly.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from .errors import UpconvError

__all__ = ["is_16bit_colour_png", "read_png16", "write_png16"]

SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour types with more than one sample per pixel, and their channels.
COLOUR_CHANNELS = {2: 3, 4: 2, 6: 4}


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


def _chunks(data: bytes):
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if len(body) != length or pos + 12 + length > len(data):
            raise UpconvError("truncated PNG file")
        crc = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0]
        if zlib.crc32(kind + body) & 0xFFFFFFFF != crc:
            raise UpconvError(f"corrupt PNG file (bad checksum in {kind.decode('latin-1')} chunk)")
        yield kind, body
        pos += 12 + length
        if kind == b"IEND":
            return
    raise UpconvError("truncated PNG file (no IEND chunk)")


def _unfilter(raw: np.ndarray, height: int, stride: int, bpp: int) -> np.ndarray:
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


def read_png16(data: bytes, max_pixels: int) -> tuple[np.ndarray, bytes | None]:
    """Decode a 16-bit colour PNG into (H, W, C) uint16 samples and its ICC profile."""
    width, height, depth, colour, interlace = _header(data)
    if width == 0 or height == 0:
        raise UpconvError("corrupt PNG file (zero size)")
    if width * height > max_pixels:
        raise UpconvError(f"image is {width}x{height} = {width * height} pixels, over the "
                          f"limit of {max_pixels} (--max-pixels); refusing a possible "
                          "decompression bomb")
    if interlace:
        raise UpconvError("interlaced 16-bit colour PNGs are not supported; "
                          "re-save without interlacing")
    channels = COLOUR_CHANNELS[colour]
    idat, icc, key, orientation = [], None, None, 1
    for kind, body in _chunks(data):
        if kind == b"IDAT":
            idat.append(body)
        elif kind == b"iCCP":
            icc = _icc_profile(body)
        elif kind == b"tRNS" and colour == 2 and len(body) == 6:
            key = np.frombuffer(body, ">u2").astype(np.uint16)  # RGB colour key
        elif kind == b"eXIf":
            orientation = _exif_orientation(body)
    stride = width * channels * 2
    expected = height * (stride + 1)
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(b"".join(idat), expected)
    except zlib.error as exc:
        raise UpconvError(f"corrupt PNG file ({exc})") from None
    if len(raw) != expected:
        raise UpconvError("truncated PNG file (image data too short)")
    pixels = _unfilter(np.frombuffer(raw, np.uint8), height, stride, channels * 2)
    samples = pixels.view(">u2").reshape(height, width, channels).astype(np.uint16)
    if key is not None:  # colour-key transparency becomes an alpha channel
        opaque = np.where((samples == key).all(axis=2), 0, 65535).astype(np.uint16)
        samples = np.concatenate([samples, opaque[:, :, None]], axis=2)
    return orient(samples, orientation), icc


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


def write_png16(samples: np.ndarray, icc_profile: bytes | None = None) -> bytes:
    """Encode (H, W, C) uint16 samples (C in 2, 3, 4) as a 16-bit PNG.

    Rows use the "Sub" filter, which is vectorised here and compresses
    photographic 16-bit data well.
    """
    height, width, channels = samples.shape
    colour = {2: 4, 3: 2, 4: 6}[channels]
    bpp = channels * 2
    big = samples.astype(">u2").reshape(height, width * bpp // 2).view(np.uint8)
    big = big.reshape(height, width * bpp)
    filtered = big.copy()
    filtered[:, bpp:] = big[:, bpp:] - big[:, :-bpp]  # uint8 arithmetic wraps mod 256
    rows = np.concatenate([np.ones((height, 1), np.uint8), filtered], axis=1)
    out = [SIGNATURE, _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour, 0, 0, 0))]
    if icc_profile:
        out.append(_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc_profile)))
    out.append(_chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)))
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)
