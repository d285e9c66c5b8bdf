"""Reading and writing: formats, modes, bit depth, ICC, EXIF, the 16-bit PNG codec."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from conftest import SAMPLES
from PIL import Image, ImageCms

from upconv.errors import UpconvError
from upconv.images import Picture, format_for, load_image, save_image
from upconv.png import read_png16


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


def encode_png_reference(samples: np.ndarray, filters: list[int],
                         extra_chunks: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
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
            + b"".join(chunk(kind, body) for kind, body in extra_chunks)
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
    with Image.open(tmp_path / "c.png") as image:  # a second decoder: Pillow keeps 8 bits
        np.testing.assert_array_equal(np.asarray(image), (samples >> 8).astype(np.uint8))
    assert (tmp_path / "c.png").read_bytes()[24] == 16  # bit depth byte of IHDR


def test_16bit_colour_key_becomes_alpha(rng):
    samples = rng.integers(0, 65536, (4, 5, 3)).astype(np.uint16)
    samples[1, 2] = (1, 2, 3)
    data = encode_png_reference(samples, [0], ((b"tRNS", struct.pack(">HHH", 1, 2, 3)),))
    decoded, _ = read_png16(data, 10 ** 6)
    assert decoded.shape == (4, 5, 4)
    assert decoded[1, 2, 3] == 0 and (decoded[..., 3] == 0).sum() == 1


def test_16bit_png_exif_orientation_and_bad_icc(tmp_path, rng):
    samples = rng.integers(0, 65536, (2, 3, 3)).astype(np.uint16)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode_png_reference(samples, [0], ((b"eXIf", exif.tobytes()[6:]),
                                               (b"iCCP", b"broken\0\0not zlib")))
    (tmp_path / "o.png").write_bytes(data)
    loaded = load_image(str(tmp_path / "o.png"))
    np.testing.assert_array_equal(loaded.samples, np.rot90(samples, -1))
    assert loaded.icc_profile is None


@pytest.mark.parametrize("mode,key,channels", [("L", 7, 2), ("RGB", (1, 2, 3), 4)])
def test_8bit_colour_key_becomes_alpha(tmp_path, mode, key, channels):
    image = Image.new(mode, (4, 3), 200 if mode == "L" else (200, 100, 50))
    image.putpixel((1, 1), key)
    image.save(tmp_path / "k.png", transparency=key)
    samples = load_image(str(tmp_path / "k.png")).samples
    assert samples.shape == (3, 4, channels)
    assert samples[1, 1, -1] == 0 and (samples[..., -1] == 0).sum() == 1


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_moves_the_corner_where_pillow_says(tmp_path, orientation):
    array = np.zeros((2, 6, 3), np.uint8)
    array[0, 0] = (255, 0, 0)  # a red top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(array).save(tmp_path / "o.png", exif=exif)
    loaded = load_image(str(tmp_path / "o.png")).samples
    where = {3: (1, 5), 6: (0, 1), 8: (5, 0)}[orientation]
    assert tuple(np.argwhere(loaded[..., 0] == 255)[0]) == where


def test_nan_in_a_float_tiff_is_refused(tmp_path):
    Image.fromarray(np.array([[0.5, np.nan]], np.float32), mode="F").save(tmp_path / "n.tif")
    with pytest.raises(UpconvError, match="NaN"):
        load_image(str(tmp_path / "n.tif"))


def test_integer_npy_arrays(tmp_path):
    np.save(tmp_path / "u8.npy", np.full((2, 3), 128, np.uint8))
    picture = load_image(str(tmp_path / "u8.npy"))
    assert picture.samples.dtype == np.uint8 and picture.layout == "hw"
    np.save(tmp_path / "mask.npy", np.array([[True, False]]))
    np.testing.assert_array_equal(load_image(str(tmp_path / "mask.npy")).samples[..., 0], [[1, 0]])
    np.save(tmp_path / "big.npy", np.array([[0, 300]], np.int64))
    with pytest.raises(UpconvError, match="uint8 or uint16"):
        load_image(str(tmp_path / "big.npy"))


@pytest.mark.parametrize("fmt,suffix,channels", [("bmp", ".bmp", 1), ("webp", ".webp", 4)])
def test_gray_alpha_to_formats_without_that_mode(tmp_path, fmt, suffix, channels):
    samples = np.dstack([np.full((3, 4), 90, np.uint8), np.full((3, 4), 128, np.uint8)])
    notes = save_image(Picture(samples), str(tmp_path / f"o{suffix}"), fmt)
    back = load_image(str(tmp_path / f"o{suffix}")).samples
    assert back.shape == (3, 4, channels)
    assert abs(int(back[0, 0, 0]) - 90) <= 2
    assert bool(notes) == (fmt == "bmp")  # BMP drops the alpha and says so


def test_cmyk_profile_is_not_carried_onto_rgb():
    from upconv.images import _to_srgb

    image, icc = _to_srgb(Image.new("CMYK", (2, 2)), srgb_profile())  # mismatched profile
    assert image.mode == "RGB" and icc is None


def test_writing_through_symlinks_and_into_fifos(tmp_path, rng):
    import os
    import stat
    import threading

    samples = rng.integers(0, 256, (3, 4, 3)).astype(np.uint8)
    (tmp_path / "target.png").write_bytes(b"old")
    os.symlink(tmp_path / "target.png", tmp_path / "link.png")
    save_image(Picture(samples), str(tmp_path / "link.png"), "png")
    assert (tmp_path / "link.png").is_symlink()
    np.testing.assert_array_equal(load_image(str(tmp_path / "target.png")).samples, samples)

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    save_image(Picture(samples), str(fifo), "png")
    reader.join(timeout=10)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still a FIFO, not replaced by a file
    assert received and received[0].startswith(b"\x89PNG")
