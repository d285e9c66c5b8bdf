"""JPEG writing from numpy samples, without Pillow's copy of the image.

Pillow keeps an RGB image at 4 bytes a pixel, so handing it a 12000 x 8000
output costs another 384 MB before encoding starts. libjpeg-turbo, through
``imagecodecs.jpeg8_encode``, reads the numpy array as it is (the same
library as Pillow's encoder: the pixels decode identically for the same
quality and subsampling). It writes only a JFIF header, so upconv splices in
the metadata segments itself: the density (dpi) in APP0, EXIF in APP1 and
the ICC profile in APP2 chunks, as the JPEG, JFIF, EXIF and ICC
specifications lay them out.
"""

from __future__ import annotations

import struct

import numpy as np

__all__ = ["encode_jpeg", "MAX_SEGMENT"]

SOI = b"\xff\xd8"
#: Largest segment body (after the 2-byte length).
MAX_SEGMENT = 65533
ICC_MARKER = b"ICC_PROFILE\0"
#: ICC data per APP2 chunk: the segment, less its marker, sequence number and count.
ICC_CHUNK = MAX_SEGMENT - len(ICC_MARKER) - 2


def _segment(marker: int, body: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body


def encode_jpeg(samples: np.ndarray, quality: int = 92, subsampling: str = "420",
                icc_profile: bytes | None = None, exif: bytes | None = None,
                dpi: tuple[float, float] | None = None) -> tuple[bytes, list[str]]:
    """Encode (H, W, 1) or (H, W, 3) uint8 samples as a baseline JPEG.

    Parameters
    ----------
    samples : ndarray
        Gray or RGB, uint8.
    quality : int
        1-100, libjpeg's scale (as Pillow's ``quality``).
    subsampling : {"444", "422", "420"}
        Chroma subsampling of an RGB image.
    icc_profile, exif : bytes, optional
        Written as APP2 and APP1 segments (EXIF with or without its
        ``Exif\\0\\0`` header).
    dpi : (float, float), optional
        Written as the JFIF density, in dots per inch.

    Returns
    -------
    bytes, list of str
        The file, and notes about metadata that could not be written (an EXIF
        block larger than one segment).

    Examples
    --------
    >>> import io
    >>> from PIL import Image
    >>> data, notes = encode_jpeg(np.full((16, 16, 3), 200, np.uint8), dpi=(300, 300))
    >>> Image.open(io.BytesIO(data)).info["dpi"], notes
    ((300, 300), [])
    """
    import imagecodecs

    plane = samples[:, :, 0] if samples.shape[2] == 1 else samples
    colour = samples.shape[2] == 3
    data = imagecodecs.jpeg8_encode(np.ascontiguousarray(plane), level=quality,
                                    subsampling=subsampling if colour else None)
    notes: list[str] = []
    if data[:2] != SOI:  # pragma: no cover - libjpeg always starts with SOI
        raise ValueError("the JPEG encoder did not write a JPEG")
    rest = data[2:]
    app0 = b""
    if rest[:2] == b"\xff\xe0":  # the JFIF header: keep it, with the density set
        length = struct.unpack(">H", rest[2:4])[0]
        app0, rest = bytearray(rest[:2 + length]), rest[2 + length:]
        if dpi is not None and app0[4:9] == b"JFIF\0":
            x, y = (max(1, min(65535, round(d))) for d in dpi)
            app0[11:16] = struct.pack(">BHH", 1, x, y)
        app0 = bytes(app0)
    segments = [SOI, app0]
    if exif:
        body = exif if exif.startswith(b"Exif\0\0") else b"Exif\0\0" + exif
        if len(body) <= MAX_SEGMENT:
            segments.append(_segment(0xE1, body))
        else:
            notes.append(f"the EXIF block ({len(body)} bytes) is larger than a JPEG segment "
                         "can hold; it was left out")
    if icc_profile:
        chunks = [icc_profile[i:i + ICC_CHUNK] for i in range(0, len(icc_profile), ICC_CHUNK)]
        if len(chunks) <= 255:
            for number, chunk in enumerate(chunks, 1):
                segments.append(_segment(0xE2, ICC_MARKER + bytes([number, len(chunks)])
                                         + chunk))
        else:  # pragma: no cover - a profile of over 16 MB
            notes.append("the ICC profile is too large for a JPEG; it was left out")
    segments.append(rest)
    return b"".join(segments), notes
