"""Outputs keep what the user had: EXIF (orientation reset once applied), ICC, physical size,
a JPEG's chroma subsampling; ``strip`` drops them; JPEG subsampling and progressive on request.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageCms, JpegImagePlugin

from upconv.images import SaveOptions
from upconv.methods import Method
from upconv.pipeline import ScaleSettings, scale_file

MAKE, ORIENTATION = 0x010F, 0x0112
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
SAMPLINGS = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def photo_like(height: int = 48, width: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 4 % 256, y * 5 % 256, (x + y) * 2 % 256], axis=2).astype(np.uint8)


def jpeg_input(path, orientation: int = 1, subsampling: str = "4:2:0", dpi=(300, 300)) -> str:
    exif = Image.Exif()
    exif[MAKE] = "upconv camera"
    exif[ORIENTATION] = orientation
    Image.fromarray(photo_like()).save(path, exif=exif.tobytes(), icc_profile=SRGB, dpi=dpi,
                                       subsampling=subsampling, quality=95)
    return str(path)


def scale(source: str, target: str, **save) -> Image.Image:
    scale_file(source, target, ScaleSettings(method=Method.NEAREST, factor=(2.0, 2.0),
                                             save=SaveOptions(**save)))
    image = Image.open(target)
    image.load()
    return image


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tiff"])
def test_exif_and_icc_kept_and_orientation_reset(tmp_path, suffix):
    source = jpeg_input(tmp_path / "in.jpg", orientation=6)  # stored rotated a quarter turn
    out = scale(source, str(tmp_path / f"out{suffix}"))
    exif = out.getexif()
    assert exif[MAKE] == "upconv camera"
    assert exif.get(ORIENTATION, 1) == 1  # the pixels are upright now
    assert out.info["icc_profile"] == SRGB
    assert out.size == (48 * 2, 64 * 2)  # 64 x 48 stored, turned upright: 48 x 64


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tiff"])
def test_physical_size_kept(tmp_path, suffix):
    source = jpeg_input(tmp_path / "in.jpg", orientation=6, dpi=(300, 150))
    out = scale(source, str(tmp_path / f"out{suffix}"))
    # a quarter turn swaps the axes; PNG stores whole pixels per metre
    assert out.info["dpi"] == pytest.approx((150, 300), abs=0.02)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tiff"])
def test_strip_drops_metadata(tmp_path, suffix):
    source = jpeg_input(tmp_path / "in.jpg")
    out = scale(source, str(tmp_path / f"out{suffix}"), strip=True)
    assert MAKE not in out.getexif()
    assert "icc_profile" not in out.info and "exif" not in out.info
    if suffix == ".tiff":  # Pillow's TIFF writer always writes a resolution: 1 per unit
        assert out.info["resolution"] == (1, 1)
    else:
        assert "dpi" not in out.info


@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:2", "4:2:0"])
def test_jpeg_keeps_the_input_subsampling(tmp_path, subsampling):
    source = jpeg_input(tmp_path / "in.jpg", subsampling=subsampling)
    with Image.open(source) as check:
        assert JpegImagePlugin.get_sampling(check) == SAMPLINGS[subsampling]
    out = scale(source, str(tmp_path / "out.jpg"))
    assert JpegImagePlugin.get_sampling(out) == SAMPLINGS[subsampling]


@pytest.mark.parametrize("asked,expected", [("444", "4:4:4"), ("422", "4:2:2"),
                                            ("420", "4:2:0")])
def test_jpeg_subsampling_on_request(tmp_path, asked, expected):
    source = jpeg_input(tmp_path / "in.jpg", subsampling="4:4:4")
    out = scale(source, str(tmp_path / "out.jpg"), subsampling=asked)
    assert JpegImagePlugin.get_sampling(out) == SAMPLINGS[expected]


def test_jpeg_from_png_defaults_to_420_and_progressive_on_request(tmp_path):
    source = tmp_path / "in.png"
    Image.fromarray(photo_like()).save(source)
    out = scale(str(source), str(tmp_path / "out.jpg"))
    assert JpegImagePlugin.get_sampling(out) == 2 and not out.info.get("progressive")
    out = scale(str(source), str(tmp_path / "prog.jpg"), progressive=True)
    assert out.info.get("progressive") and out.info.get("progression")


def test_png_exif_survives_16_bit_colour(tmp_path):
    """16-bit colour PNGs are read by upconv's own reader: its eXIf and pHYs are kept."""
    from upconv.png import encode_png

    exif = Image.Exif()
    exif[MAKE] = "deep camera"
    exif[ORIENTATION] = 3  # upside down
    samples = (photo_like().astype(np.uint16) * 257)
    source = tmp_path / "in16.png"
    source.write_bytes(encode_png(samples, SRGB, exif.tobytes(), (200, 200)))
    out = scale(str(source), str(tmp_path / "out16.png"))
    assert out.getexif()[MAKE] == "deep camera" and out.getexif().get(ORIENTATION, 1) == 1
    assert out.info["icc_profile"] == SRGB
    assert out.info["dpi"] == pytest.approx((200, 200), abs=0.02)


def test_unparsable_exif_is_dropped_not_copied(tmp_path):
    source = tmp_path / "in.jpg"
    Image.fromarray(photo_like()).save(source, exif=b"Exif\0\0garbage that is not TIFF")
    out = scale(str(source), str(tmp_path / "out.jpg"))
    assert "exif" not in out.info


@pytest.mark.parametrize("channels,subsampling", [(3, "444"), (3, "422"), (3, "420"),
                                                  (1, "420")])
def test_jpeg_writer_decodes_as_pillows_encoder(rng, channels, subsampling):
    """The same libjpeg settings as Pillow's encoder: the same decoded pixels."""
    from upconv.jpeg import encode_jpeg

    samples = rng.integers(0, 256, (37, 51, channels), dtype=np.uint8)
    data, notes = encode_jpeg(samples, 85, subsampling)
    buffer = io.BytesIO()
    pillow = Image.fromarray(samples[:, :, 0] if channels == 1 else samples)
    pillow.save(buffer, format="JPEG", quality=85,
                subsampling={"444": "4:4:4", "422": "4:2:2", "420": "4:2:0"}[subsampling])
    with Image.open(io.BytesIO(data)) as ours, Image.open(buffer) as theirs:
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
        if channels == 3:
            assert JpegImagePlugin.get_sampling(ours) == SAMPLINGS[
                {"444": "4:4:4", "422": "4:2:2", "420": "4:2:0"}[subsampling]]
    assert notes == []


def test_jpeg_writer_splits_a_big_icc_profile_and_notes_a_huge_exif(rng):
    from upconv.jpeg import encode_jpeg

    icc = bytes(rng.integers(0, 256, 150_000, dtype=np.uint8))  # three APP2 chunks
    samples = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    data, notes = encode_jpeg(samples, icc_profile=icc, exif=b"Exif\0\0" + bytes(70_000))
    with Image.open(io.BytesIO(data)) as image:
        assert image.info["icc_profile"] == icc
        assert "exif" not in image.info
    assert len(notes) == 1 and "EXIF block" in notes[0]


def test_command_line_options(tmp_path):
    from upconv.cli import run

    source = jpeg_input(tmp_path / "in.jpg", subsampling="4:2:0")
    out = tmp_path / "out.jpg"
    assert run(["scale", source, str(out), "-f", "2", "--subsampling", "444", "--strip",
                "--progressive", "--quiet"]) == 0
    with Image.open(out) as image:
        assert JpegImagePlugin.get_sampling(image) == 0 and image.info.get("progressive")
        assert "exif" not in image.info and "icc_profile" not in image.info
    assert run(["scale", source, str(tmp_path / "o.jpg"), "-f", "2",
                "--subsampling", "411"]) == 2


def test_bands_rounded_into_the_image_equal_bands_written(tmp_path, rng):
    """from_float(out=...) into the image's next rows gives the same file as write(rows)."""
    from upconv.images import Picture, image_writer
    from upconv.samples import from_float

    values = rng.random((40, 30, 3)).astype(np.float32)
    picture = Picture(np.zeros((1, 1, 3), np.uint8))
    paths = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    for index, path in enumerate(paths):
        with image_writer(picture, (40, 30, 3), np.uint8, str(path), "jpeg") as output:
            for start in range(0, 40, 16):
                band = values[start:start + 16].copy()
                if index == 0:
                    rows = from_float(band, np.uint8, out=output.next_rows(band.shape[0]))
                else:
                    rows = from_float(band, np.uint8)
                output.write(rows)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    expected = from_float(values.copy(), np.uint8)
    np.testing.assert_array_equal(from_float(values.copy(), np.uint8,
                                             out=np.empty((40, 30, 3), np.uint8)), expected)
