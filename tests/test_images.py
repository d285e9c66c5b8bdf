"""Reading and writing: formats, modes, bit depth, ICC, EXIF, the 16-bit PNG codec."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from conftest import SAMPLES
from PIL import Image, ImageCms

from upconv.errors import UpconvError
from upconv.images import Picture, format_for, load_image, save_image
from upconv.png16 import read_png16


def roundtrip(tmp_path, samples: np.ndarray, fmt: str, suffix: str, icc=None) -> Picture:
    path = str(tmp_path / f"image{suffix}")
    save_image(Picture(samples, icc), path, fmt)
    return load_image(path)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_roundtrip_is_exact_in_8_and_16_bit(tmp_path, rng, channels, dtype):
    samples = rng.integers(0, np.iinfo(dtype).max + 1, (9, 13, channels)).astype(dtype)
    back = roundtrip(tmp_path, samples, "png", ".png")
    assert back.samples.dtype == dtype
    np.testing.assert_array_equal(back.samples, samples)


@pytest.mark.parametrize("fmt,suffix", [("bmp", ".bmp"), ("pnm", ".ppm"), ("tiff", ".tif")])
def test_lossless_8bit_formats_roundtrip(tmp_path, rng, fmt, suffix):
    samples = rng.integers(0, 256, (6, 7, 3)).astype(np.uint8)
    np.testing.assert_array_equal(roundtrip(tmp_path, samples, fmt, suffix).samples, samples)


@pytest.mark.parametrize("fmt,suffix", [("tiff", ".tif"), ("pnm", ".pgm")])
def test_16bit_gray_tiff_and_pgm_stay_16bit(tmp_path, rng, fmt, suffix):
    samples = rng.integers(0, 65536, (6, 7, 1)).astype(np.uint16)
    back = roundtrip(tmp_path, samples, fmt, suffix)
    assert back.samples.dtype == np.uint16
    np.testing.assert_array_equal(back.samples, samples)


def test_float_gray_tiff_keeps_float_samples(tmp_path, rng):
    samples = rng.random((5, 8, 1)).astype(np.float32)
    back = roundtrip(tmp_path, samples, "tiff", ".tiff")
    assert back.samples.dtype == np.float32
    np.testing.assert_array_equal(back.samples, samples)


def test_npy_keeps_float64_precision(tmp_path, rng):
    samples = rng.random((5, 8, 3))
    back = roundtrip(tmp_path, samples, "npy", ".npy")
    assert back.samples.dtype == np.float64
    np.testing.assert_array_equal(back.samples, samples)


@pytest.mark.parametrize("fmt,suffix", [("jpeg", ".jpg"), ("webp", ".webp")])
def test_lossy_formats_roundtrip_closely(tmp_path, fmt, suffix):
    smooth = np.linspace(0, 255, 32 * 24 * 3).reshape(24, 32, 3).astype(np.uint8)
    back = roundtrip(tmp_path, smooth, fmt, suffix).samples
    assert back.shape == smooth.shape
    assert np.abs(back.astype(int) - smooth).mean() < 4


def test_jpeg_drops_alpha_with_a_note(tmp_path, rng):
    samples = rng.integers(0, 256, (4, 4, 4)).astype(np.uint8)
    notes = save_image(Picture(samples), str(tmp_path / "a.jpg"), "jpeg")
    assert any("alpha" in note for note in notes)
    assert load_image(str(tmp_path / "a.jpg")).samples.shape == (4, 4, 3)


def test_palette_and_one_bit_inputs_are_converted(tmp_path):
    rgb = Image.new("RGB", (4, 3), (10, 200, 30))
    rgb.convert("P").save(tmp_path / "p.png")
    assert load_image(str(tmp_path / "p.png")).samples.shape == (3, 4, 3)
    with_transparency = Image.new("P", (4, 3), 0)
    with_transparency.putpalette([10, 200, 30] + [0] * 765)
    with_transparency.save(tmp_path / "pt.png", transparency=0)
    loaded = load_image(str(tmp_path / "pt.png")).samples
    assert loaded.shape == (3, 4, 4) and loaded[..., 3].max() == 0
    Image.new("1", (5, 2), 1).save(tmp_path / "bits.png")
    bits = load_image(str(tmp_path / "bits.png")).samples
    assert bits.shape == (2, 5, 1) and bits.dtype == np.uint8 and bits.min() == 255


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    samples = load_image(str(tmp_path / "c.jpg")).samples
    assert samples.shape == (4, 4, 3)
    assert samples[..., 0].mean() > 200 and samples[..., 1].mean() < 60  # red


def srgb_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("fmt,suffix,dtype", [("png", ".png", np.uint8), ("png", ".png", np.uint16),
                                              ("jpeg", ".jpg", np.uint8),
                                              ("tiff", ".tif", np.uint8),
                                              ("webp", ".webp", np.uint8)])
def test_icc_profile_is_carried_over(tmp_path, fmt, suffix, dtype):
    profile = srgb_profile()
    samples = np.full((4, 4, 3), 100, dtype)
    assert roundtrip(tmp_path, samples, fmt, suffix, icc=profile).icc_profile == profile


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (6, 2), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image.save(tmp_path / "o.jpg", exif=exif)
    assert load_image(str(tmp_path / "o.jpg")).samples.shape == (6, 2, 3)


# ----------------------------------------------------------- 16-bit PNG codec

def paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def encode_png_reference(samples: np.ndarray, filters: list[int]) -> bytes:
    """An independent, slow PNG encoder using the given filter for each row."""
    height, width, channels = samples.shape
    colour = {2: 4, 3: 2, 4: 6}[channels]
    bpp = 2 * channels
    raw = bytearray()
    prev = [0] * (width * bpp)
    for y in range(height):
        line = list(samples[y].astype(">u2").tobytes())
        kind = filters[y % len(filters)]
        out = []
        for x, value in enumerate(line):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]
            out.append((value - pred) % 256)
        raw += bytes([kind] + out)
        prev = line

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b""))


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_png16_decoder_handles_every_row_filter(rng, channels):
    samples = rng.integers(0, 65536, (10, 6, channels)).astype(np.uint16)
    data = encode_png_reference(samples, filters=[0, 1, 2, 3, 4])
    decoded, icc = read_png16(data, max_pixels=10 ** 6)
    assert icc is None
    np.testing.assert_array_equal(decoded, samples)


def test_png16_decoder_refuses_corruption(rng):
    samples = rng.integers(0, 65536, (4, 4, 3)).astype(np.uint16)
    data = bytearray(encode_png_reference(samples, [1]))
    data[40] ^= 0xFF  # inside IDAT: checksum no longer matches
    with pytest.raises(UpconvError, match="corrupt"):
        read_png16(bytes(data), 10 ** 6)
    with pytest.raises(UpconvError, match="truncated"):
        read_png16(bytes(data[:45]), 10 ** 6)


def test_sample_16bit_images_load_as_16bit():
    assert load_image(str(SAMPLES / "gradient16.png")).samples.dtype == np.uint16
    colour = load_image(str(SAMPLES / "gradient_rgb16.png")).samples
    assert colour.dtype == np.uint16 and colour.shape[2] == 3


# ----------------------------------------------------------- format names

@pytest.mark.parametrize("name,expected", [("a.PNG", "png"), ("b.jpeg", "jpeg"), ("c.jpg", "jpeg"),
                                           ("d.tif", "tiff"), ("e.npy", "npy"), ("f.pgm", "pnm")])
def test_format_from_suffix(name, expected):
    assert format_for(name, None) == expected


def test_explicit_format_wins_and_aliases_work():
    assert format_for("out.png", "JPG") == "jpeg"
    with pytest.raises(UpconvError, match="unknown format"):
        format_for("out.png", "gif2")
    with pytest.raises(UpconvError, match="unknown image suffix"):
        format_for("out.xyz", None)


def test_pillow_reads_what_we_write_for_16bit_colour(tmp_path, rng):
    samples = rng.integers(0, 65536, (5, 6, 3)).astype(np.uint16)
    save_image(Picture(samples), str(tmp_path / "c.png"), "png")
    with Image.open(tmp_path / "c.png") as image:  # a second decoder accepts the file
        image.load()
        assert image.size == (6, 5)
    data = (tmp_path / "c.png").read_bytes()
    assert data[24] == 16  # bit depth byte of IHDR
    assert isinstance(io.BytesIO(data), io.BytesIO)
