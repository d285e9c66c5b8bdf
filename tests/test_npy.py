"""One rule for the values of an .npy image, whether it is read whole, in tiles or streamed."""

from __future__ import annotations

import numpy as np
import pytest

import upconv
from upconv.cli import run
from upconv.images import load_image
from upconv.npy import npy_samples
from upconv.samples import to_float

#: (dtype, values): integer arrays of other types must hold values in [0, 1].
ACCEPTED = [
    (np.uint8, lambda rng, shape: rng.integers(0, 256, shape)),
    (np.uint16, lambda rng, shape: rng.integers(0, 65536, shape)),
    (np.uint32, lambda rng, shape: rng.integers(0, 2, shape)),
    (np.int64, lambda rng, shape: rng.integers(0, 2, shape)),
    (np.bool_, lambda rng, shape: rng.integers(0, 2, shape)),
    (np.float16, lambda rng, shape: rng.random(shape)),
    (np.float32, lambda rng, shape: rng.random(shape)),
    (np.float64, lambda rng, shape: rng.random(shape)),
]


def three_ways(tmp_path, source, method="bilinear"):
    """The same job whole (.npy out), tiled (.npy out via a PNG-free path) and streamed."""
    base = [str(source), None, "-f", "2", "-m", method, "--quiet"]
    results = {}
    for how, extra in (("whole", []), ("streamed", ["--tile", "16"])):
        out = tmp_path / f"{how}.npy"
        args = base.copy()
        args[1] = str(out)
        results[how] = (run(["scale", *args, *extra]), out)
    # Tiled but not streamed: the output is not .npy, so the input is loaded whole.
    for how, extra in (("whole_png", []), ("tiled_png", ["--tile", "16"])):
        out = tmp_path / f"{how}.png"
        args = base.copy()
        args[1] = str(out)
        results[how] = (run(["scale", *args, *extra]), out)
    return results


@pytest.mark.parametrize("dtype, make", ACCEPTED, ids=[np.dtype(d).name for d, _ in ACCEPTED])
@pytest.mark.parametrize("shape", [(40, 36), (40, 36, 3)])
def test_every_dtype_gets_the_same_values_whole_tiled_and_streamed(tmp_path, rng, dtype, make,
                                                                    shape):
    array = make(rng, shape).astype(dtype)
    source = tmp_path / "in.npy"
    np.save(source, array)
    results = three_ways(tmp_path, source)
    assert {status for status, _ in results.values()} == {0}
    whole, streamed = (np.load(results[k][1]) for k in ("whole", "streamed"))
    # The values the file stands for, by the one rule, upsampled directly.
    values = to_float(npy_samples(array, "in.npy"))
    expected = upconv.scale(values, 2, method="bilinear")
    assert whole.dtype == streamed.dtype == expected.dtype
    np.testing.assert_array_equal(whole, expected)
    np.testing.assert_array_equal(streamed, expected)
    np.testing.assert_array_equal(load_image(str(results["whole_png"][1])).samples,
                                  load_image(str(results["tiled_png"][1])).samples)


@pytest.mark.parametrize("dtype", [np.uint32, np.int16, np.int64])
def test_integers_outside_0_1_are_refused_the_same_way_everywhere(tmp_path, capsys, dtype):
    source = tmp_path / "in.npy"
    np.save(source, np.arange(40 * 36).reshape(40, 36).astype(dtype))
    capsys.readouterr()
    results = three_ways(tmp_path, source)
    messages = capsys.readouterr().err.strip().splitlines()
    assert {status for status, _ in results.values()} == {1}
    assert len(messages) == 4 and len(set(messages)) == 1, messages
    assert "must be uint8 or uint16 samples, or values in [0, 1]" in messages[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy"]  # nothing written


def test_nan_is_refused_whole_and_streamed(tmp_path, capsys):
    array = np.zeros((40, 36), np.float32)
    array[30, 3] = np.nan  # in a later tile: streaming refuses it when it gets there
    source = tmp_path / "in.npy"
    np.save(source, array)
    results = three_ways(tmp_path, source)
    assert {status for status, _ in results.values()} == {1}
    assert "NaN" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npy"]


@pytest.mark.parametrize("layout", ["big-endian uint16", "big-endian float32", "fortran order",
                                    "big-endian fortran"])
def test_byte_order_and_memory_order_do_not_change_the_answer(tmp_path, rng, layout):
    """A file is the values it stores, whatever its byte order or memory layout."""
    native = rng.integers(0, 65536, (40, 36, 3)).astype(np.uint16)
    if "float" in layout:
        native = rng.random((40, 36, 3)).astype(np.float32)
    stored = native.astype(native.dtype.newbyteorder(">")) if "big" in layout else native
    if "fortran" in layout:
        stored = np.asfortranarray(stored)
    source = tmp_path / "in.npy"
    np.save(source, stored)
    results = three_ways(tmp_path, source)
    assert {status for status, _ in results.values()} == {0}
    expected = upconv.scale(to_float(native), 2, method="bilinear")
    for how in ("whole", "streamed"):
        out = np.load(results[how][1])
        assert out.dtype.isnative
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("method", ["nearest", "bilinear", "transpose"])
def test_npy_output_of_an_8_bit_image_holds_values_in_0_1(tmp_path, capsys, method):
    """Every method writes the same kind of values to .npy: samples / 255, nearest too."""
    from conftest import SAMPLES

    from upconv.cli import run
    from upconv.images import load_image
    from upconv.samples import to_float

    out = tmp_path / "out.npy"
    assert run(["scale", str(SAMPLES / "chelsea.png"), str(out), "-f", "2", "-m", method,
                "--quiet"]) == 0
    values = np.load(out)
    # (a fitted kernel may overshoot [0, 1] a little; samples would reach 255)
    assert values.dtype == np.float32 and -0.5 < values.min() and values.max() < 1.5
    if method == "nearest":
        source = to_float(load_image(str(SAMPLES / "chelsea.png")).samples)
        np.testing.assert_array_equal(values, np.kron(source, np.ones((2, 2, 1))))
