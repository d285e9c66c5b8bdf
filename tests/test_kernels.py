"""Kernel files, built-ins, bad kernels, and the `upconv kernel` commands."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from conftest import SAMPLES
from rich.console import Console

import upconv
from upconv.cli import run
from upconv.images import load_image
from upconv.kernels import Kernel, builtin_kernel
from upconv.methods import keys_cubic
from upconv.render import print_kernel_summary
from upconv.report import kernel_summary

PHOTO = SAMPLES / "chelsea.png"


@pytest.mark.parametrize("suffix", [".json", ".npy", ".npz", ".txt", ".csv"])
def test_kernel_files_roundtrip_exactly(tmp_path, rng, suffix):
    kernel = Kernel(rng.standard_normal((5, 4)) / 3, stride=2, name="k")
    kernel.save(tmp_path / f"k{suffix}")
    loaded = Kernel.load(tmp_path / f"k{suffix}")
    np.testing.assert_array_equal(loaded.weights, kernel.weights)
    if suffix in (".json", ".npz"):
        assert loaded.stride == 2


@pytest.mark.parametrize("shape", [(3, 2, 4), (3, 4, 5, 5)])
def test_multichannel_kernels_roundtrip(tmp_path, rng, shape):
    kernel = Kernel(rng.standard_normal(shape), stride=2, padding=1)
    for suffix in (".json", ".npz"):
        kernel.save(tmp_path / f"k{suffix}")
        loaded = Kernel.load(tmp_path / f"k{suffix}")
        np.testing.assert_array_equal(loaded.weights, kernel.weights)
        assert (loaded.stride, loaded.padding) == (2, 1)


def test_json_kernel_is_self_describing(tmp_path):
    builtin_kernel("bilinear", 2).save(tmp_path / "k.json")
    document = json.loads((tmp_path / "k.json").read_text())
    assert document["stride"] == 2 and document["alignment"] == "centred"
    assert document["weights"][1][1] == 0.5625


def test_builtin_kernels_for_any_stride():
    for s in (2, 3, 4, 5):
        for name in ("nearest", "bilinear", "bicubic"):
            kernel = builtin_kernel(name, s)
            assert kernel.spread() == pytest.approx(0, abs=1e-12)  # partition of unity
            np.testing.assert_allclose(kernel.phase_sums(), 1, atol=1e-12)
    assert builtin_kernel("bilinear", 2).spread() == 0.0  # exactly


def test_keys_cubic_is_pillow_bicubic():
    # Keys a = -0.5 at the half-pixel phases of 2x: taps used by Pillow's BICUBIC
    np.testing.assert_allclose(keys_cubic(np.array([0.25, 0.75, 1.25, 1.75])),
                               [0.8671875, 0.2265625, -0.0703125, -0.0234375])


def test_spread_of_uneven_overlap():
    assert Kernel(np.ones((3, 3)), stride=2).spread() > 0
    # Output phases: tap 0 lands at i*s - 1, so output phase 1 gets taps 0 and 2 (sum 2 a side)
    np.testing.assert_array_equal(Kernel(np.ones((3, 3)), stride=2).phase_sums(),
                                  [[1, 2], [2, 4]])


# -------------------------------------------------------------------- bad kernels

def write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


@pytest.fixture
def bad_kernels(tmp_path):
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan], [0, 1]]))
    np.save(tmp_path / "inf.npy", np.array([[1.0, np.inf], [0, 1]]))
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    np.save(tmp_path / "flat.npy", np.ones(4))
    np.save(tmp_path / "objects.npy", np.array([[{}]], dtype=object), allow_pickle=True)
    np.save(tmp_path / "huge.npy", np.zeros((1100, 4), np.float32))
    np.save(tmp_path / "small.npy", np.ones((1, 1)))
    np.save(tmp_path / "plain.npy", np.ones((4, 4)) / 4)
    np.save(tmp_path / "channels.npy", np.ones((2, 4, 4)))
    write(tmp_path, "ragged.txt", "1 2 3\n4 5\n")
    write(tmp_path, "words.csv", "1,2\n3,x\n")
    write(tmp_path, "blank.txt", "# nothing\n")
    write(tmp_path, "stride3.json", json.dumps({"stride": 3, "weights": np.ones((6, 6)).tolist()}))
    write(tmp_path, "ragged.json", json.dumps({"stride": 2, "weights": [[1, 2], [3]]}))
    write(tmp_path, "broken.json", "{\"stride\": 2, ")
    write(tmp_path, "k.bin", b"\x00\x01")
    return tmp_path


@pytest.mark.parametrize("name,extra,fragment", [
    ("nan.npy", ["-f", "2"], "NaN"),
    ("inf.npy", ["-f", "2"], "infinite"),
    ("empty.npy", ["-f", "2"], "empty"),
    ("flat.npy", ["-f", "2"], "2-D"),
    ("objects.npy", ["-f", "2"], "pickled"),
    ("huge.npy", ["-f", "2"], "absurdly large"),
    ("small.npy", ["-f", "2"], "smaller than its stride"),
    ("channels.npy", ["-f", "2"], "image has 3"),
    ("ragged.txt", ["-f", "2"], "ragged"),
    ("words.csv", ["-f", "2"], "'x' is not a number"),
    ("blank.txt", ["-f", "2"], "no numbers"),
    ("stride3.json", ["-f", "2"], "stride is 3"),
    ("ragged.json", ["-f", "2"], "rectangular"),
    ("broken.json", ["-f", "2"], "not valid JSON"),
    ("k.bin", ["-f", "2"], "unknown kernel file suffix"),
    ("plain.npy", [], "give --factor"),
    ("missing.npy", ["-f", "2"], "no such kernel file"),
])
def test_bad_kernels_get_one_line_and_exit_1(bad_kernels, capsys, name, extra, fragment):
    out = bad_kernels / "out.png"
    status = run(["scale", str(PHOTO), str(out), "--method", "transpose",
                  "--kernel", str(bad_kernels / name), *extra])
    err = capsys.readouterr().err
    assert status == 1, err
    assert len(err.strip().splitlines()) == 1 and fragment in err, err
    assert "Traceback" not in err and not out.exists()


# -------------------------------------------------------------------- the CLI

def test_cli_transpose_matches_the_library(tmp_path, capsys, rng):
    kernel = Kernel(rng.random((6, 6)) / 9, stride=2)
    kernel.save(tmp_path / "k.json")
    out = tmp_path / "out.npy"
    assert run(["scale", str(PHOTO), str(out), "-m", "transpose", "-k",
                str(tmp_path / "k.json")]) == 0
    image = upconv.samples.to_float(load_image(str(PHOTO)).samples)
    np.testing.assert_allclose(np.load(out), upconv.scale(image, method="transpose",
                                                          kernel=kernel), atol=1e-6)


def test_cli_pytorch_geometry_defaults_to_zero_boundary(tmp_path, capsys, rng):
    values = rng.random((5, 6))
    np.save(tmp_path / "in.npy", values)
    out = tmp_path / "out.npy"
    assert run(["scale", str(tmp_path / "in.npy"), str(out), "-m", "transpose", "-f", "2",
                "-k", "bilinear", "--padding", "1", "--output-padding", "1"]) == 0
    expected = upconv.transposed_conv(values[:, :, None], builtin_kernel("bilinear", 2),
                                      upconv.Boundary.ZERO, padding=1, output_padding=1)
    np.testing.assert_allclose(np.load(out), expected[:, :, 0], atol=1e-12)
    assert np.load(out).shape == ((5 - 1) * 2 - 2 + 4 + 1, (6 - 1) * 2 - 2 + 4 + 1)


@pytest.mark.parametrize("args,status,fragment", [
    (["-m", "transpose", "--size", "10x10"], 2, "use --factor"),
    (["-m", "bicubic", "-f", "2", "--kernel", "bilinear"], 2, "--method transpose only"),
    (["-m", "bicubic", "-f", "2", "--padding", "1"], 2, "--method transpose only"),
    (["-m", "transpose", "-f", "2", "--output-padding", "1"], 1, "needs the PyTorch geometry"),
    (["-m", "transpose", "-f", "2.5"], 2, "whole factor"),
    (["-m", "transpose", "-f", "2x3"], 2, "one stride"),
    (["-m", "transpose"], 1, "needs a factor"),
    (["-m", "transpose", "-f", "2", "--post-kernel", "gauss9"], 1, "no such kernel file"),
])
def test_cli_transpose_usage_errors(tmp_path, capsys, args, status, fragment):
    out = tmp_path / "o.png"
    assert run(["scale", str(PHOTO), str(out), *args]) == status
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_kernel_show_json_reports_phases(capsys):
    assert run(["kernel", "show", "bilinear", "-f", "2", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["stride"] == 2 and document["spread"] == 0.0
    assert document["flat_stays_flat"] is True
    assert len(document["phases"]) == 4
    # Output phase (1, 1) takes taps 0 and 2 of each axis: tap k of pixel i lands at
    # 2i - 1 + k (centred, offset (2 - 4) // 2), an odd output pixel when k is even.
    weights = np.array(document["weights"])
    assert document["phases"][3]["phase"] == [1, 1]
    assert document["phases"][3]["weights"] == weights[0::2, 0::2].tolist()
    assert document["phases"][0]["weights"] == weights[1::2, 1::2].tolist()


def test_kernel_show_table_renders(tmp_path, capsys):
    (tmp_path / "k.txt").write_text("1 1 1\n1 1 1\n1 1 1\n")
    assert run(["kernel", "show", str(tmp_path / "k.txt"), "-f", "2"]) == 0
    out = capsys.readouterr().out
    assert "4 polyphase components" in out and "y mod 2 = p, x mod 2 = q" in out
    assert "spread" in out and "unequal" in out
    kernel = Kernel.load(tmp_path / "k.txt").with_stride(2)
    buffer = io.StringIO()
    print_kernel_summary(kernel, kernel_summary(kernel),
                         Console(file=buffer, width=80, color_system=None))
    assert "(1, 1)" in buffer.getvalue()


def test_kernel_matrix_seed_example(tmp_path, capsys):
    (tmp_path / "k.txt").write_text("1 2 3\n4 5 6\n7 8 9\n")
    assert run(["kernel", "matrix", str(tmp_path / "k.txt"), "--input-size", "4x4",
                "--out", str(tmp_path / "C.npy")]) == 0
    out = capsys.readouterr().out
    assert "C: 4 x 16" in out
    matrix = np.load(tmp_path / "C.npy")
    assert matrix.shape == (4, 16)
    np.testing.assert_array_equal(np.load(tmp_path / "C_T.npy"), matrix.T)
    x = np.arange(16.0).reshape(4, 4)
    weights = np.arange(1.0, 10.0).reshape(3, 3)
    direct = [[(x[i:i + 3, j:j + 3] * weights).sum() for j in range(2)] for i in range(2)]
    np.testing.assert_array_equal((matrix @ x.ravel()).reshape(2, 2), direct)
    assert run(["kernel", "matrix", str(tmp_path / "k.txt"), "--input-size", "4x4",
                "--out", str(tmp_path / "C.csv")]) == 0
    np.testing.assert_array_equal(np.loadtxt(tmp_path / "C.csv", delimiter=","), matrix)


def test_kernel_matrix_refuses_bad_sizes(tmp_path, capsys):
    assert run(["kernel", "matrix", "bilinear", "--input-size", "2x2"]) == 1
    assert "does not fit" in capsys.readouterr().err
    assert run(["kernel", "matrix", "bilinear", "--input-size", "4"]) == 2


# -------------------------------------------------------------------- review fixes

def test_a_kernel_with_pytorch_padding_defaults_to_the_zero_boundary(tmp_path, rng):
    weights = rng.random((4, 4))
    Kernel(weights, stride=2, padding=1).save(tmp_path / "k.json")
    x = rng.random((5, 6))
    from_file = upconv.scale(x, method="transpose", kernel=tmp_path / "k.json")
    explicit = upconv.transposed_conv(x[:, :, None], Kernel(weights, stride=2),
                                      upconv.Boundary.ZERO, padding=1)[:, :, 0]
    np.testing.assert_allclose(from_file, explicit, atol=1e-12)


@pytest.mark.parametrize("document,fragment", [
    ({"stride": 2, "weights": [[1, 1], [1, 1]], "alignment": "pytorch"}, "needs a"),
    ({"stride": 2, "weights": [[1, 1], [1, 1]], "alignment": "centred", "padding": 1},
     "contradicts"),
    ({"stride": 2, "weights": [[1, 1], [1, 1]], "alignment": "sideways"}, "unknown alignment"),
    ({"stride": 2, "weights": [[1, 1], [1, 1]], "padding": "x"}, "whole number"),
    ({"stride": 2, "weights": [[1, 1], [1, 1]], "padding": True}, "whole number"),
    ({"stride": 2, "weights": [[1, 1], [1, 1]], "shape": [3, 3]}, "does not match"),
])
def test_json_alignment_and_padding_are_validated(tmp_path, document, fragment):
    (tmp_path / "k.json").write_text(json.dumps(document))
    with pytest.raises(upconv.UpconvError, match=fragment):
        Kernel.load(tmp_path / "k.json")


def test_padding_without_alignment_means_pytorch(tmp_path):
    (tmp_path / "k.json").write_text(json.dumps({"stride": 2, "weights": [[1, 1], [1, 1]],
                                                 "padding": 1}))
    assert Kernel.load(tmp_path / "k.json").padding == 1


@pytest.mark.parametrize("name", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize("s", [3, 5, 6, 7])
def test_built_ins_are_flat_up_to_round_off(name, s):
    kernel = builtin_kernel(name, s)
    assert kernel.spread() == 0.0 and kernel.flat_stays_flat


def test_npz_keeps_the_fitted_boundary(tmp_path, rng):
    kernel = Kernel(rng.random((4, 4)), stride=2, info={"boundary": "reflect"})
    kernel.save(tmp_path / "k.npz")
    assert Kernel.load(tmp_path / "k.npz").info["boundary"] == "reflect"


def test_text_kernels_refuse_odd_cells(tmp_path):
    (tmp_path / "bom.csv").write_bytes("\ufeff1,2\n3,4\n".encode())
    np.testing.assert_array_equal(Kernel.load(tmp_path / "bom.csv").weights, [[1, 2], [3, 4]])
    for name, text in (("empty.csv", "1,,2\n3,4,5\n"), ("under.txt", "1_0 2\n3 4\n")):
        (tmp_path / name).write_text(text)
        with pytest.raises(upconv.UpconvError, match="not a number|empty cell"):
            Kernel.load(tmp_path / name)


def test_kernel_show_handles_zero_mean_sums_and_big_strides(tmp_path, capsys):
    (tmp_path / "k.txt").write_text("1 -1\n1 -1\n")
    assert run(["kernel", "show", str(tmp_path / "k.txt"), "-f", "2", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)  # valid JSON: no Infinity
    assert document["spread"] is None and document["flat_stays_flat"] is False
    assert run(["kernel", "show", "bilinear", "-f", "20"]) == 0
    assert "400 polyphase components: sums from 1 to 1" in capsys.readouterr().out


def test_kernel_show_says_when_the_centre_cannot_land_on_the_grid(capsys, tmp_path):
    (tmp_path / "k.txt").write_text("1 2 1\n2 4 2\n1 2 1\n")
    assert run(["kernel", "show", str(tmp_path / "k.txt"), "-f", "2"]) == 0
    assert "half an output" in capsys.readouterr().out


def test_a_kernel_that_brightens_is_warned_about_everywhere(tmp_path, capsys):
    """ones3 at stride 2 has DC gain 9/4: scale warns, kernel show and report say so."""
    ones3 = tmp_path / "ones3.txt"
    ones3.write_text("1 1 1\n1 1 1\n1 1 1\n")
    flat = np.full((32, 32), 0.2)
    np.save(tmp_path / "flat.npy", flat)
    assert run(["scale", str(tmp_path / "flat.npy"), str(tmp_path / "out.npy"), "-m",
                "transpose", "-k", str(ones3), "-f", "2"]) == 0
    err = capsys.readouterr().err
    assert "warning: ones3.txt: a flat image comes out 2.25 times as bright" in err
    out = np.load(tmp_path / "out.npy")
    assert out[8:-8, 8:-8].mean() == pytest.approx(0.2 * 2.25)  # what the warning says
    assert run(["kernel", "show", str(ones3), "-f", "2"]) == 0
    assert "DC gain (mean of the phase sums): 2.25" in capsys.readouterr().out
    assert run(["kernel", "show", str(ones3), "-f", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dc_gain"] == 2.25
    assert run(["report", "--kernel", str(ones3), "-f", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kernel"]["dc_gain"] == 2.25
    assert run(["scale", str(tmp_path / "flat.npy"), str(tmp_path / "ok.npy"), "-m",
                "transpose", "-k", "bilinear", "-f", "2"]) == 0
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("text, fragment", [
    ('{"stride": 2, "weights": [[true, false], [1, 1]]}', "array of numbers"),
    ('{"stride": 2, "weights": [["1", 1], [1, 1]]}', "array of numbers"),
    ('{"stride": "2", "weights": [[1, 1], [1, 1]]}', '"stride" must be a whole number'),
    ('{"stride": true, "weights": [[1, 1], [1, 1]]}', '"stride" must be a whole number'),
    ('{"stride": 2, "alignment": "pytorch", "padding": "1", "weights": [[1, 1], [1, 1]]}',
     '"padding" must be a whole number'),
])
def test_kernel_json_is_strict(tmp_path, text, fragment):
    path = tmp_path / "k.json"
    path.write_text(text)
    with pytest.raises(upconv.UpconvError, match=fragment):
        Kernel.load(path)


def test_semicolons_are_not_kernel_text_separators(tmp_path):
    path = tmp_path / "k.txt"
    path.write_text("1;2\n3;4\n")
    with pytest.raises(upconv.UpconvError, match="line 1: ';' is not a separator"):
        Kernel.load(path)


def test_a_huge_integer_in_kernel_json_names_the_file(tmp_path):
    path = tmp_path / "k.json"
    path.write_text('{"stride": 2, "weights": [[' + "9" * 5000 + ', 1], [1, 1]]}')
    with pytest.raises(upconv.UpconvError, match="k.json: not valid JSON"):
        Kernel.load(path)


@pytest.mark.parametrize("size, stride, padding, shape", [
    ((3, 3), 1, 0, (4, 4)), ((3, 3), 2, 0, (7, 7)), ((4, 4), 2, 1, (8, 8)),
    ((3, 3), 2, 0, (8, 7)), ((2, 3), 3, 2, (9, 10)), ((5, 5), 2, 4, (6, 6))])
def test_zero_insertion_then_convolution_is_the_transposed_convolution(rng, size, stride,
                                                                      padding, shape):
    from scipy.signal import correlate2d

    from upconv.cli.kernel import zero_inserted

    weights = rng.standard_normal(size)
    matrix = upconv.conv_matrix(weights, shape, stride, padding)
    out_h = (shape[0] + 2 * padding - size[0]) // stride + 1
    out_w = (shape[1] + 2 * padding - size[1]) // stride + 1
    y = rng.standard_normal((out_h, out_w))
    route = correlate2d(zero_inserted(y, stride, size, padding, shape), weights[::-1, ::-1],
                        mode="valid")
    np.testing.assert_allclose(route, (matrix.T @ y.ravel()).reshape(shape), atol=1e-12)


def test_kernel_matrix_prints_the_products_a_student_checks(tmp_path, capsys):
    (tmp_path / "k.txt").write_text("1 2 3\n4 5 6\n7 8 9\n")
    x = " ".join(str(v) for v in range(1, 17))
    assert run(["kernel", "matrix", str(tmp_path / "k.txt"), "--input-size", "4x4", "--x", x,
                "--y", "1 0 0 2", "--zero-insertion"]) == 0
    out = capsys.readouterr().out
    assert "y00" in out and "x33" in out
    # C @ x: (1*1 + 2*2 + 3*3 + 4*5 + 5*6 + 6*7 + 7*9 + 8*10 + 9*11) = 348 at y00
    assert "348" in out and "their ordinary convolution, equal to C.T @ y" in out
    assert run(["kernel", "matrix", str(tmp_path / "k.txt"), "--input-size", "4x4",
                "--x", "1 2"]) == 2
    assert "16" in capsys.readouterr().err


@pytest.mark.parametrize("factor", ["2", "3", "4"])
def test_the_shipped_defaults_keep_the_brightness_and_get_no_warning(tmp_path, capsys,
                                                                     factor):
    np.save(tmp_path / "flat.npy", np.full((24, 24), 0.5))
    assert run(["scale", str(tmp_path / "flat.npy"), str(tmp_path / "out.npy"), "-m",
                "transpose", "-f", factor]) == 0
    assert "warning" not in capsys.readouterr().err


# ------------------------------------------------------------------ strict .npz and .npy

#: The same mistakes in a .json kernel and in an .npz one: (.json fields, .npz arrays,
#: what the one-line message says). Fields the .npz stores as arrays are 0-d arrays.
SAME_MISTAKES = [
    ({"w": [[1, 1], [1, 1]]}, {"w": np.ones((2, 2))}, "no {what} (it has: w)"),
    ({"stride": 2, "b": [0.5]}, {"stride": np.array(2), "b": np.zeros(1)},
     "no {what} (it has: stride, b)"),
    ({"weights": [[True, False], [True, True]]}, {"weights": np.eye(2, dtype=bool)},
     '"weights" must be an array of numbers, not '),
    ({"weights": [["1", "2"], ["3", "4"]]}, {"weights": np.array([["1", "2"], ["3", "4"]])},
     '"weights" must be an array of numbers, not '),
    ({"weights": [[1, 1], [1, 1]], "stride": True},
     {"weights": np.ones((2, 2)), "stride": np.array(True)},
     '"stride" must be a whole number, not True'),
    ({"weights": [[1, 1], [1, 1]], "stride": "2"},
     {"weights": np.ones((2, 2)), "stride": np.array("2")},
     "\"stride\" must be a whole number, not '2'"),
    ({"weights": [[1, 1], [1, 1]], "stride": 2.5},
     {"weights": np.ones((2, 2)), "stride": np.array(2.5)},
     "a transposed convolution needs a whole stride >= 2, not 2.5"),
    ({"weights": [[1, 1], [1, 1]], "stride": 2, "padding": False},
     {"weights": np.ones((2, 2)), "stride": np.array(2), "padding": np.array(False)},
     '"padding" must be a whole number, not False'),
    ({"weights": [[1, 1], [1, 1]], "stride": 2, "padding": "1"},
     {"weights": np.ones((2, 2)), "stride": np.array(2), "padding": np.array("1")},
     "\"padding\" must be a whole number, not '1'"),
    ({"weights": [[1, 1], [1, 1]], "stride": 2, "boundary": "sideways"},
     {"weights": np.ones((2, 2)), "stride": np.array(2), "boundary": np.array("sideways")},
     "unknown boundary 'sideways'"),
    ({"weights": [[1, 1], [1, 1]], "stride": 2, "boundary": 3},
     {"weights": np.ones((2, 2)), "stride": np.array(2), "boundary": np.array(3)},
     '"boundary" must be one of edge, reflect, zero, not 3'),
]


@pytest.mark.parametrize("fields, arrays, fragment", SAME_MISTAKES)
def test_npz_kernels_are_read_by_the_json_rules(tmp_path, fields, arrays, fragment):
    """The same mistake gets the same one-line refusal, naming the file, in either format."""
    (tmp_path / "k.json").write_text(json.dumps(fields))
    np.savez(tmp_path / "k.npz", **arrays)
    for suffix, what in ((".json", 'key "weights"'), (".npz", "array named 'weights'")):
        path = tmp_path / f"k{suffix}"
        with pytest.raises(upconv.BadInputError) as caught:
            Kernel.load(path)
        message = str(caught.value)
        assert "\n" not in message and fragment.format(what=what) in message
        # Values the Kernel type refuses are named by the file's name, as in its reports.
        assert message.split(": ")[0] in (str(path), path.name), message


def test_an_npz_without_weights_is_refused_by_the_command_line(tmp_path, capsys):
    np.savez(tmp_path / "k.npz", w=np.ones((4, 4)) / 4, b=np.zeros(1))
    status = run(["scale", str(PHOTO), str(tmp_path / "out.png"), "-m", "transpose",
                  "-k", str(tmp_path / "k.npz"), "-f", "2"])
    err = capsys.readouterr().err
    assert status == 1
    assert err.strip().splitlines() == [
        f"upconv: error: {tmp_path / 'k.npz'}: no array named 'weights' (it has: w, b)"]
    assert not (tmp_path / "out.png").exists()


def test_an_unnamed_array_is_not_taken_for_the_weights(tmp_path):
    np.savez(tmp_path / "k.npz", np.ones((4, 4)) / 4)  # numpy names it arr_0
    with pytest.raises(upconv.BadInputError, match=r"no array named 'weights' \(it has: arr_0\)"):
        Kernel.load(tmp_path / "k.npz")
    np.savez(tmp_path / "empty.npz")
    with pytest.raises(upconv.BadInputError, match=r"\(it has: nothing\)"):
        Kernel.load(tmp_path / "empty.npz")


def test_npz_with_valid_fields_and_other_arrays_loads(tmp_path, rng):
    weights = rng.random((4, 4))
    np.savez(tmp_path / "k.npz", weights=weights, stride=np.array(2), padding=np.array(1),
             boundary=np.array("reflect"), notes=np.arange(3))
    kernel = Kernel.load(tmp_path / "k.npz")
    np.testing.assert_array_equal(kernel.weights, weights)
    assert (kernel.stride, kernel.padding, kernel.info) == (2, 1, {"boundary": "reflect"})


@pytest.mark.parametrize("array, fragment", [
    (np.eye(3, dtype=bool), "true/false values (bool)"),
    (np.ones((3, 3), np.complex128), "complex numbers"),
    (np.array([["a", "b"], ["c", "d"]]), "strings"),
])
def test_npy_kernels_must_hold_numbers(tmp_path, array, fragment):
    np.save(tmp_path / "k.npy", array)
    with pytest.raises(upconv.BadInputError, match=re.escape(
            f"k.npy: the weights must be an array of numbers, not {fragment}")):
        Kernel.load(tmp_path / "k.npy")
