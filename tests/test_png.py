"""The 16-bit colour PNG decoder: libpng (through imagecodecs) and the numpy fallback.

Every decoding test runs three times, through the ``decoder`` fixture: with
imagecodecs decoding the pixels in one call, with imagecodecs decoding them
strip by strip while another thread inflates (strips of one row, so even the
small test images take that path), and with ``import imagecodecs`` failing, so
the numpy/Python unfilter (the reference) does it. The expected samples
come from an independent, vectorised encoder here, from Pillow's 8-bit
reading of the same file, or (for the committed photo) from the integer
recipe that made it.

Run ``python tests/test_png.py`` to rewrite ``sample_images/photo_rgb16_paeth.png``.
"""

from __future__ import annotations

import io
import struct
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from upconv import png
from upconv.errors import UpconvError
from upconv.images import load_image
from upconv.png import read_png16

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"
PHOTO = SAMPLES / "photo_rgb16_paeth.png"
#: Rows of the committed photo cycle through these filters: Paeth, Paeth, Average.
PHOTO_FILTERS = (4, 4, 3)

# Adam7, as the PNG specification tabulates it, pass by pass.
STARTING_ROW = (0, 0, 4, 0, 2, 0, 1)
STARTING_COL = (0, 4, 0, 2, 0, 1, 0)
ROW_INCREMENT = (8, 8, 8, 4, 4, 2, 2)
COL_INCREMENT = (8, 8, 4, 4, 2, 2, 1)


# ----------------------------------------------------------- an independent encoder

def filter_rows(samples: np.ndarray, filters: list[int] | tuple[int, ...]) -> bytes:
    """The filtered scanlines of (H, W, C) uint16 samples, row y using filters[y % n].

    Filtering works on the original bytes, so unlike unfiltering it vectorises.
    """
    height, width, channels = samples.shape
    bpp = 2 * channels
    lines = samples.astype(">u2").view(np.uint8).reshape(height, width * bpp).astype(np.int32)
    left, up, up_left = (np.zeros_like(lines) for _ in range(3))
    left[:, bpp:] = lines[:, :-bpp]
    up[1:] = lines[:-1]
    up_left[1:, bpp:] = lines[:-1, :-bpp]
    p = left + up - up_left
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - up_left)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, up_left))
    predictions = (np.zeros_like(lines), left, up, (left + up) // 2, paeth)
    kinds = np.array([filters[y % len(filters)] for y in range(height)], np.uint8)
    filtered = np.choose(kinds[:, None], predictions)
    filtered = ((lines - filtered) % 256).astype(np.uint8)
    return np.concatenate([kinds[:, None], filtered], axis=1).tobytes()


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(
        ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def encode_png16(samples: np.ndarray, filters: list[int] | tuple[int, ...] = (0, 1, 2, 3, 4),
                 interlace: bool = False, extra: tuple[tuple[bytes, bytes], ...] = (),
                 image_data: bytes | None = None, level: int = 6) -> bytes:
    """A 16-bit PNG of (H, W, C) samples (C = 2, 3 or 4), optionally Adam7-interlaced."""
    height, width, channels = samples.shape
    if interlace:
        passes = [samples[row::dy, col::dx] for row, col, dy, dx
                  in zip(STARTING_ROW, STARTING_COL, ROW_INCREMENT, COL_INCREMENT, strict=True)]
        raw = b"".join(filter_rows(p, filters) for p in passes if p.size)
    else:
        raw = filter_rows(samples, filters)
    colour = {2: 4, 3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 16, colour, 0, 0, int(interlace))
    body = zlib.compress(raw, level) if image_data is None else image_data
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + b"".join(chunk(kind, content) for kind, content in extra)
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def photo_samples() -> np.ndarray:
    """The committed photo's samples, made again from ``astronaut.png`` in integers.

    A 128x128 crop (the face) upsampled 2x by bilinear interpolation with
    weights 9/16, 3/16, 3/16, 1/16 and edge replication, in 16 bits:
    ``(sum of weight * 257 * sample + 8) // 16``. The 8-bit samples times 257
    give the high bytes; the interpolation gives real low-byte detail.
    """
    with Image.open(SAMPLES / "astronaut.png") as photo:
        crop = np.asarray(photo.convert("RGB"))[20:148, 150:278].astype(np.int64)
    padded = np.pad(crop, ((1, 1), (1, 1), (0, 0)), mode="edge")
    rows = np.empty((256, 130, 3), np.int64)
    rows[0::2] = 3 * padded[1:-1] + padded[:-2]
    rows[1::2] = 3 * padded[1:-1] + padded[2:]
    both = np.empty((256, 256, 3), np.int64)
    both[:, 0::2] = 3 * rows[:, 1:-1] + rows[:, :-2]
    both[:, 1::2] = 3 * rows[:, 1:-1] + rows[:, 2:]
    return ((both * 257 + 8) // 16).astype(np.uint16)


def write_photo() -> None:
    PHOTO.write_bytes(encode_png16(photo_samples(), PHOTO_FILTERS, level=9))


# ----------------------------------------------------------- the two decoders

@pytest.fixture(params=["libpng", "strips", "numpy"])
def decoder(request, monkeypatch) -> str:
    """Decode with imagecodecs (libpng) whole, in strips, then with ``import imagecodecs``
    failing."""
    if request.param in ("libpng", "strips"):
        pytest.importorskip("imagecodecs")
        if request.param == "strips":
            monkeypatch.setattr(png, "STRIP_BYTES", 1)  # strips of a row: 3 rows or more
    else:
        monkeypatch.setitem(sys.modules, "imagecodecs", None)
    return request.param


@pytest.fixture
def libpng_calls(monkeypatch) -> list[bytes]:
    """The PNGs handed to ``imagecodecs.png_decode``, recorded."""
    imagecodecs = pytest.importorskip("imagecodecs")
    calls: list[bytes] = []
    real = imagecodecs.png_decode

    def spy(data, *args, **kwargs):
        calls.append(bytes(data))
        return real(data, *args, **kwargs)

    monkeypatch.setattr(imagecodecs, "png_decode", spy)
    return calls


def chunk_types(data: bytes) -> list[bytes]:
    kinds, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        kinds.append(kind)
        pos += 12 + length
    return kinds


@pytest.mark.parametrize("interlace", [False, True])
@pytest.mark.parametrize("channels", [2, 3, 4])
def test_every_row_filter_decodes_exactly(decoder, rng, channels, interlace):
    samples = rng.integers(0, 65536, (13, 11, channels)).astype(np.uint16)
    decoded, icc = read_png16(encode_png16(samples, interlace=interlace), 10 ** 6)
    assert icc is None and decoded.dtype == np.uint16
    np.testing.assert_array_equal(decoded, samples)


@pytest.mark.parametrize("filters", [[3], [4], [0, 4, 3, 2, 1]])
def test_smooth_rows_decode_exactly(decoder, filters):
    """Ramps and flat runs: the Paeth ties and small differences random data rarely hits."""
    y, x = np.mgrid[0:9, 0:17]
    samples = np.stack([x * 3855, y * 7000 + x, np.full_like(x, 40000)], axis=-1)
    samples = samples.astype(np.uint16)
    decoded, _ = read_png16(encode_png16(samples, filters), 10 ** 6)
    np.testing.assert_array_equal(decoded, samples)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (3, 5), (8, 8)])
def test_small_interlaced_images_with_empty_passes(decoder, rng, shape):
    samples = rng.integers(0, 65536, (*shape, 3)).astype(np.uint16)
    decoded, _ = read_png16(encode_png16(samples, [4, 3], interlace=True), 10 ** 6)
    np.testing.assert_array_equal(decoded, samples)


def test_interlaced_photo_agrees_with_pillow(decoder, tmp_path):
    """Pillow decodes interlaced 16-bit RGB too, keeping the high bytes: a second decoder."""
    samples = photo_samples()[40:137, 30:141]  # odd sizes: partial Adam7 blocks
    path = tmp_path / "interlaced.png"
    path.write_bytes(encode_png16(samples, PHOTO_FILTERS, interlace=True))
    decoded, _ = read_png16(path.read_bytes(), 10 ** 6)
    with Image.open(path) as image:
        assert image.info.get("interlace")
        high = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(decoded >> 8, high)
    np.testing.assert_array_equal(decoded, samples)


# ----------------------------------------------------------- the committed photo

def test_the_photo_is_a_16bit_paeth_and_average_filtered_png():
    data = PHOTO.read_bytes()
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    assert (width, height, depth, colour, interlace) == (256, 256, 16, 2, 0)
    idat = b"".join(data[pos + 8:pos + 8 + length] for pos, length in _idat_chunks(data))
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, width * 6 + 1)
    assert set(raw[:, 0].tolist()) == {3, 4} and (raw[:, 0] == 4).sum() > height / 2
    samples = photo_samples()
    assert ((samples & 0xFF) != samples >> 8).mean() > 0.5  # a low byte that carries detail


def _idat_chunks(data: bytes) -> list[tuple[int, int]]:
    found, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            found.append((pos, length))
        pos += 12 + length
    return found


def test_the_photo_decodes_to_its_samples(decoder):
    decoded, icc = read_png16(PHOTO.read_bytes(), 10 ** 6)
    assert icc is None
    np.testing.assert_array_equal(decoded, photo_samples())


def test_the_photo_loads_through_load_image():
    samples = load_image(str(PHOTO)).samples
    assert samples.dtype == np.uint16 and samples.shape == (256, 256, 3)
    np.testing.assert_array_equal(samples, photo_samples())
    with Image.open(PHOTO) as image:  # Pillow keeps the high bytes
        np.testing.assert_array_equal(samples >> 8, np.asarray(image))


# ----------------------------------------------------------- which decoder runs

def test_libpng_sees_only_the_image_data(libpng_calls, rng):
    samples = rng.integers(0, 65536, (4, 5, 3)).astype(np.uint16)
    samples[0, 0] = (1, 2, 3)
    exif = Image.Exif()
    exif[0x0112] = 3
    data = encode_png16(samples, extra=((b"tRNS", struct.pack(">HHH", 1, 2, 3)),
                                        (b"iCCP", b"p\0\0" + zlib.compress(b"profile")),
                                        (b"eXIf", exif.tobytes()[6:]),
                                        (b"tEXt", b"Comment\0hello")))
    decoded, icc = read_png16(data, 10 ** 6)
    assert len(libpng_calls) == 1
    assert chunk_types(libpng_calls[0]) == [b"IHDR", b"IDAT", b"IEND"]
    assert icc == b"profile" and decoded.shape == (4, 5, 4)
    assert decoded[-1, -1, 3] == 0 and (decoded[..., 3] == 0).sum() == 1  # rotated 180 degrees
    np.testing.assert_array_equal(decoded[..., :3], samples[::-1, ::-1])


@pytest.mark.parametrize("strip_rows", [1, 3, 5])
@pytest.mark.parametrize("channels", [2, 3, 4])
def test_tall_images_decode_in_strips_beside_the_inflater(libpng_calls, monkeypatch, rng,
                                                          strip_rows, channels):
    """Strips of any size, the last one short, each unfiltered below its reconstructed row."""
    monkeypatch.setattr(png, "STRIP_BYTES", strip_rows * (7 * channels * 2 + 1))
    monkeypatch.setattr(png, "INFLATE_PIECE", 97)  # strips cut across compressed pieces
    samples = rng.integers(0, 65536, (23, 7, channels)).astype(np.uint16)
    samples[10:] = samples[10]  # runs of equal rows: Up and Paeth lean on the row above
    decoded, _ = read_png16(encode_png16(samples, [4, 3, 2, 1, 0]), 10 ** 6)
    np.testing.assert_array_equal(decoded, samples)
    assert len(libpng_calls) == -(-23 // strip_rows)
    assert all(chunk_types(call) == [b"IHDR", b"IDAT", b"IEND"] for call in libpng_calls)


def test_without_imagecodecs_the_numpy_unfilter_runs(monkeypatch, rng):
    monkeypatch.setitem(sys.modules, "imagecodecs", None)
    rows: list[int] = []
    real = png._unfilter

    def spy(raw, height, stride, bpp):
        rows.append(height)
        return real(raw, height, stride, bpp)

    monkeypatch.setattr(png, "_unfilter", spy)
    samples = rng.integers(0, 65536, (6, 4, 4)).astype(np.uint16)
    decoded, _ = read_png16(encode_png16(samples), 10 ** 6)
    np.testing.assert_array_equal(decoded, samples)
    assert rows == [6]


def test_images_wider_than_libpng_allows_use_the_numpy_unfilter(libpng_calls, rng):
    width = png.LIBPNG_MAX_SIDE + 1
    samples = rng.integers(0, 65536, (1, width, 3)).astype(np.uint16)
    decoded, _ = read_png16(encode_png16(samples, [1]), 2 * 10 ** 6)
    assert libpng_calls == []
    np.testing.assert_array_equal(decoded, samples)


# ----------------------------------------------------------- metadata and bad input

def test_metadata_is_read_whichever_decoder_runs(decoder, rng):
    samples = rng.integers(0, 65536, (3, 4, 3)).astype(np.uint16)
    samples[2, 1] = (7, 8, 9)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode_png16(samples, [4], extra=((b"iCCP", b"p\0\0" + zlib.compress(b"icc")),
                                             (b"tRNS", struct.pack(">HHH", 7, 8, 9)),
                                             (b"eXIf", exif.tobytes()[6:])))
    decoded, icc = read_png16(data, 10 ** 6)
    assert icc == b"icc"
    expected = np.rot90(samples, -1)
    np.testing.assert_array_equal(decoded[..., :3], expected)
    np.testing.assert_array_equal(decoded[..., 3] == 0, (expected == (7, 8, 9)).all(axis=2))


def _bad_image_data(samples: np.ndarray) -> dict[str, tuple[bytes, str]]:
    raw = filter_rows(samples, [4])
    compressed = zlib.compress(raw)
    bad_filter = bytearray(raw)
    bad_filter[0] = 7
    return {
        "garbage": (b"this is not zlib data", "corrupt PNG file"),
        "cut stream": (compressed[:len(compressed) // 2], "truncated PNG file"),
        "too few rows": (zlib.compress(raw[:-5]), "truncated PNG file"),
        "empty": (b"", "truncated PNG file"),
        "unknown filter": (zlib.compress(bytes(bad_filter)), "corrupt PNG file"),
    }


@pytest.mark.parametrize("case", ["garbage", "cut stream", "too few rows", "empty",
                                  "unknown filter"])
def test_bad_image_data_is_refused_in_one_line(decoder, rng, case):
    samples = rng.integers(0, 65536, (5, 6, 3)).astype(np.uint16)
    image_data, message = _bad_image_data(samples)[case]
    with pytest.raises(UpconvError, match=message) as error:
        read_png16(encode_png16(samples, image_data=image_data), 10 ** 6)
    assert "\n" not in str(error.value)


def test_missing_image_data_and_bad_checksums_are_refused(decoder, rng):
    samples = rng.integers(0, 65536, (2, 2, 3)).astype(np.uint16)
    data = encode_png16(samples)
    no_idat = data[:33] + chunk(b"IEND", b"")
    with pytest.raises(UpconvError, match="truncated PNG file"):
        read_png16(no_idat, 10 ** 6)
    damaged = bytearray(data)
    damaged[-20] ^= 1  # the last byte of the IDAT body
    with pytest.raises(UpconvError, match="bad checksum in IDAT"):
        read_png16(bytes(damaged), 10 ** 6)


def test_too_many_pixels_are_refused_before_decoding(decoder, monkeypatch):
    def no_decoding(*args):
        raise AssertionError("decoded despite the pixel limit")

    monkeypatch.setattr(png, "_decode_with_libpng", no_decoding)
    monkeypatch.setattr(png, "_decode_in_strips", no_decoding)
    monkeypatch.setattr(png, "_decode_in_python", no_decoding)
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 16, 6, 0, 0, 0)
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(bytes(10 ** 6))) + chunk(b"IEND", b""))
    with pytest.raises(UpconvError, match="max-pixels"):
        read_png16(bomb, 10 ** 6)


def test_an_unknown_interlace_method_is_refused(decoder, rng):
    samples = rng.integers(0, 65536, (2, 2, 3)).astype(np.uint16)
    data = bytearray(encode_png16(samples))
    data[28] = 2  # the interlace byte of IHDR
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    with pytest.raises(UpconvError, match="unknown interlace method 2"):
        read_png16(bytes(data), 10 ** 6)


if __name__ == "__main__":
    write_photo()
    print(f"wrote {PHOTO} ({PHOTO.stat().st_size} bytes)")


REAL_INFLATER = zlib.decompressobj


class FailingInflater:
    """A zlib inflater that runs out of memory after its first piece."""

    def __init__(self) -> None:
        self.inner = REAL_INFLATER()
        self.calls = 0

    @property
    def unconsumed_tail(self) -> bytes:
        return self.inner.unconsumed_tail

    def decompress(self, data, max_length=0):
        self.calls += 1
        if self.calls > 1:
            raise MemoryError
        return self.inner.decompress(data, max_length)


def test_a_failing_inflater_thread_is_reported_not_waited_for(monkeypatch, rng):
    """Any error in the inflating thread reaches the caller, and the thread ends."""
    pytest.importorskip("imagecodecs")
    monkeypatch.setattr(png, "STRIP_BYTES", 1)
    monkeypatch.setattr(png, "INFLATE_PIECE", 64)
    monkeypatch.setattr(png.zlib, "decompressobj", FailingInflater)
    samples = rng.integers(0, 65536, (40, 9, 3)).astype(np.uint16)
    data = encode_png16(samples, [4])
    before = threading.active_count()
    with pytest.raises(MemoryError):
        read_png16(data, 10 ** 6)
    assert threading.active_count() == before


def test_an_inflater_thread_that_dies_before_its_first_strip_is_an_error(monkeypatch, rng):
    pytest.importorskip("imagecodecs")
    monkeypatch.setattr(png, "STRIP_BYTES", 1)

    def broken():
        raise RecursionError("as if zlib could not even start")

    monkeypatch.setattr(png.zlib, "decompressobj", broken)
    samples = rng.integers(0, 65536, (12, 5, 3)).astype(np.uint16)
    with pytest.raises(RecursionError):
        read_png16(encode_png16(samples, [4]), 10 ** 6)


@pytest.mark.parametrize("case", ["garbage", "too few rows", "unknown filter"])
def test_errors_in_strips_leave_no_thread_behind(monkeypatch, rng, case):
    pytest.importorskip("imagecodecs")
    monkeypatch.setattr(png, "STRIP_BYTES", 1)
    samples = rng.integers(0, 65536, (30, 6, 3)).astype(np.uint16)
    image_data, message = _bad_image_data(samples)[case]
    before = threading.active_count()
    with pytest.raises(UpconvError, match=message):
        read_png16(encode_png16(samples, image_data=image_data), 10 ** 6)
    assert threading.active_count() == before


def test_very_wide_rows_make_strips_of_one_row(libpng_calls, monkeypatch, rng):
    """Strips are sized in bytes: a row longer than a strip is a strip of its own."""
    monkeypatch.setattr(png, "STRIP_BYTES", 100)
    samples = rng.integers(0, 65536, (5, 40, 4)).astype(np.uint16)  # 321-byte rows
    decoded, _ = read_png16(encode_png16(samples, [4]), 10 ** 6)
    np.testing.assert_array_equal(decoded, samples)
    assert len(libpng_calls) == 5


# --------------------------------------------------------------------------- the writer

def _chunk_list(data: bytes) -> list[tuple[bytes, bytes]]:
    """Every chunk's type and body, each CRC checked independently of upconv's reader."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, kind
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    return chunks


@pytest.mark.parametrize("compression", ["fast", "small"])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("depth", [8, 16])
def test_writer_round_trips_every_colour_type(rng, channels, depth, compression):
    import imagecodecs

    dtype = np.uint8 if depth == 8 else np.uint16
    samples = rng.integers(0, np.iinfo(dtype).max + 1, (37, 53, channels), dtype=dtype)
    samples[:10] = samples[:1]  # flat stretches as well as noise
    data = png.encode_png(samples, compression=compression)
    chunks = _chunk_list(data)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    assert len(raw) == 37 * (1 + 53 * channels * depth // 8)
    # libpng (through imagecodecs) decodes every type and depth: an independent reader.
    decoded = imagecodecs.png_decode(data)
    np.testing.assert_array_equal(decoded.reshape(samples.shape), samples)
    if depth == 8 or channels == 1:  # the types Pillow keeps exactly
        with Image.open(io.BytesIO(data)) as image:
            pillow = np.asarray(image)
        np.testing.assert_array_equal(pillow.reshape(samples.shape), samples)
    else:
        np.testing.assert_array_equal(read_png16(data, 10 ** 6)[0], samples)


def test_writer_band_by_band_equals_whole(rng):
    samples = rng.integers(0, 256, (100, 40, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    writer = png.PngWriter(buffer, 40, 100, 3, 8)
    for start, stop in ((0, 1), (1, 33), (33, 34), (34, 100)):
        writer.write(samples[start:stop])
    writer.close()
    with Image.open(buffer) as image:
        np.testing.assert_array_equal(np.asarray(image), samples)


def test_writer_keeps_icc_exif_and_physical_size(rng):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "upconv test camera"  # Make
    exif[0x0112] = 1  # orientation: as stored
    samples = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    data = png.encode_png(samples, icc, exif.tobytes(), (300, 150))
    with Image.open(io.BytesIO(data)) as image:
        assert image.info["icc_profile"] == icc
        assert image.getexif()[0x010F] == "upconv test camera"
        # pHYs holds whole pixels per metre: 150 dpi is 5905.5, stored as 5906
        assert image.info["dpi"] == pytest.approx((300, 150), abs=0.0254 / 2 + 1e-9)


def test_writer_falls_back_to_zlib_without_isal(rng, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_isal(name, *args, **kwargs):
        if name.startswith("isal"):
            raise ImportError("no isal here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_isal)
    samples = rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    with Image.open(io.BytesIO(png.encode_png(samples))) as image:
        np.testing.assert_array_equal(np.asarray(image), samples)


@pytest.mark.parametrize("rows,problem", [
    (np.zeros((2, 5, 3), np.uint8), "rows of shape"),
    (np.zeros((2, 4, 3), np.uint16), "uint16 samples for rows of 8-bit"),
    (np.zeros((2, 4, 3), np.float32), "float32"),
])
def test_writer_refuses_wrong_rows(rows, problem):
    writer = png.PngWriter(io.BytesIO(), 4, 2, 3, 8)
    with pytest.raises(ValueError, match=problem):
        writer.write(rows)


def test_writer_refuses_to_close_short():
    writer = png.PngWriter(io.BytesIO(), 4, 2, 1, 8)
    writer.write(np.zeros((1, 4, 1), np.uint8))
    with pytest.raises(ValueError, match="1 of the PNG's 2 rows"):
        writer.close()
    with pytest.raises(ValueError, match="more than"):
        writer.write(np.zeros((2, 4, 1), np.uint8))
    with pytest.raises(ValueError, match="compression"):
        png.encode_png(np.zeros((1, 1, 1), np.uint8), compression="tiny")


def test_average_filter_matches_the_png_definition(rng):
    """Against the specification's formula, byte by byte in Python."""
    rows = rng.integers(0, 256, (4, 12), dtype=np.uint8)
    previous = rng.integers(0, 256, 12, dtype=np.uint8)
    bpp = 3
    filtered = png.average_filter(rows, previous, bpp)
    above = [int(v) for v in previous]
    for y in range(4):
        line = [int(v) for v in rows[y]]
        expected = [3] + [(line[x] - ((line[x - bpp] if x >= bpp else 0) + above[x]) // 2) % 256
                          for x in range(12)]
        assert filtered[y].tolist() == expected
        above = line
