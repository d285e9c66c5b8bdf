"""The deep-learning workflow from the command line: a decoder's checkpoint is audited,
its layers applied exactly as ``conv_transpose2d`` applies them (zeros inserted, a
convolution, the padding cropped, the bias added: written out here, no torch), chained
through pipes, fixed and initialised. Checkpoints are written by the tests with
safetensors and numpy; the committed ``.pt`` fixture is read without PyTorch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, SAMPLES

from upconv import checkpoints
from upconv.checkpoints import load_tensors, save_tensors
from upconv.cli import run
from upconv.kernels import Kernel
from upconv.layers import fix_checkerboard, layer_figures, phase_sums
from upconv.transpose import zero_insertion_transpose

UPCONV = [sys.executable, "-m", "upconv"]


def conv_transpose2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                     stride: int, padding: int, output_padding: int = 0) -> np.ndarray:
    """PyTorch's conv_transpose2d on (C_in, H, W): the textbook route, per channel pair."""
    out = np.stack([sum(zero_insertion_transpose(x[i], weight[i, o], stride, padding,
                                                 output_padding)
                        for i in range(weight.shape[0]))
                    for o in range(weight.shape[1])])
    return out if bias is None else out + bias[:, None, None]


@pytest.fixture
def decoder(tmp_path, rng):
    """A seeded random decoder's state_dict, as safetensors: two upsampling layers."""
    tensors = {"dec.up1.weight": rng.normal(size=(5, 4, 4, 4)).astype(np.float32),
               "dec.up1.bias": rng.normal(size=4).astype(np.float32),
               "dec.up2.weight": rng.normal(size=(4, 2, 3, 3)).astype(np.float32),
               "dec.up2.bias": rng.normal(size=2).astype(np.float32),
               "dec.head.weight": rng.normal(size=(2, 2, 1, 1)).astype(np.float32)}
    path = tmp_path / "decoder.safetensors"
    save_tensors(tensors, path)
    return path, tensors


# ------------------------------------------------------------------ applying

@pytest.mark.parametrize("layout,shape", [("chw", (5, 9, 7)), (None, (1, 5, 9, 7)),
                                          ("hwc", (9, 7, 5))])
def test_a_layer_applied_from_the_checkpoint_equals_conv_transpose2d(tmp_path, capsys,
                                                                     decoder, layout, shape):
    path, tensors = decoder
    rng = np.random.default_rng(3)
    x = rng.normal(size=shape).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npy"
    args = ["scale", str(tmp_path / "x.npy"), str(out), "--method", "transpose", "-f", "2",
            "--kernel", f"{path}:up1.weight", "--padding", "1", "--output-padding", "1",
            "--bias", f"{path}:dec.up1.bias", "--quiet"]
    assert run(args + (["--layout", layout] if layout else [])) == 0, capsys.readouterr().err
    planes = x.reshape(shape[-3:]) if layout != "hwc" else np.moveaxis(x, -1, 0)
    expected = conv_transpose2d(planes.astype(np.float64), tensors["dec.up1.weight"],
                                tensors["dec.up1.bias"], 2, 1, 1)
    result = np.load(out)
    assert result.shape == ((1,) if len(shape) == 4 else ()) + (
        expected.shape if layout != "hwc" else np.moveaxis(expected, 0, -1).shape)
    got = result.reshape(expected.shape) if layout != "hwc" else np.moveaxis(result, -1, 0)
    # float32 input and weights, sums of 5 x 4 products: float32 round-off
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)


def test_layers_chain_through_pipes(tmp_path, decoder):
    path, tensors = decoder
    x = np.random.default_rng(4).normal(size=(1, 5, 6, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    first = UPCONV + ["scale", "x.npy", "-", "--format", "npy", "-m", "transpose", "-f", "2",
                      "--kernel", f"{path}:up1.weight", "--bias", f"{path}:up1.bias",
                      "--padding", "1", "--quiet"]
    second = UPCONV + ["scale", "-", "y.npy", "--format", "npy", "-m", "transpose", "-f", "2",
                       "--kernel", f"{path}:up2.weight", "--bias", f"{path}:up2.bias",
                       "--padding", "1", "--output-padding", "1", "--quiet"]
    producer = subprocess.Popen(first, cwd=tmp_path, stdout=subprocess.PIPE)
    consumer = subprocess.run(second, cwd=tmp_path, stdin=producer.stdout, capture_output=True)
    producer.stdout.close()
    assert producer.wait() == 0 and consumer.returncode == 0, consumer.stderr
    hidden = conv_transpose2d(x[0].astype(np.float64), tensors["dec.up1.weight"],
                              tensors["dec.up1.bias"], 2, 1)
    hidden = hidden.astype(np.float32)  # what the first process writes
    expected = conv_transpose2d(hidden.astype(np.float64), tensors["dec.up2.weight"],
                                tensors["dec.up2.bias"], 2, 1, 1)
    result = np.load(tmp_path / "y.npy")
    assert result.shape == (1,) + expected.shape  # the N x C x H x W layout kept
    np.testing.assert_allclose(result[0], expected, rtol=0, atol=1e-4)


def test_feature_maps_of_any_width_are_interpolated_per_channel(tmp_path, capsys, rng):
    """Seven channels, and four that are not alpha in an array (premultiplying would
    change them): every channel interpolated on its own, as scipy does."""
    from conftest import zoom_per_channel

    for channels in (7, 4):
        values = rng.random((10, 8, channels))
        values[..., -1] = 0.1  # premultiplied by a dim "alpha" it would not come back equal
        np.save(tmp_path / "in.npy", values)
        assert run(["scale", str(tmp_path / "in.npy"), str(tmp_path / "out.npy"), "-f", "2",
                    "-m", "bicubic", "-y", "--quiet"]) == 0, capsys.readouterr().err
        np.testing.assert_allclose(np.load(tmp_path / "out.npy"),
                                   zoom_per_channel(values, (2, 2), "bicubic", "edge"),
                                   atol=1e-9)


@pytest.mark.parametrize("array,args,message", [
    (np.zeros((2, 3, 4, 4)), [], "a batch of 2"),
    (np.zeros((1, 3, 4, 4)), ["--layout", "hwc"], "N x C x H x W"),
    (np.zeros((4, 4, 9)), [], "only .npy output"),
])
def test_arrays_that_cannot_be_read_as_asked_are_refused(tmp_path, capsys, array, args,
                                                         message):
    np.save(tmp_path / "in.npy", array)
    out = "out.png" if message == "only .npy output" else "out.npy"
    assert run(["scale", str(tmp_path / "in.npy"), str(tmp_path / out), "-f", "2",
                *args]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / out).exists()


def test_kernel_files_hold_bias_and_output_padding(tmp_path, rng):
    weights = rng.normal(size=(2, 3, 4, 4))
    bias = rng.normal(size=3)
    kernel = Kernel(weights, stride=2, padding=1, output_padding=1, bias=bias)
    for suffix in (".json", ".npz"):
        kernel.save(tmp_path / f"k{suffix}")
        loaded = Kernel.load(tmp_path / f"k{suffix}")
        assert loaded.output_padding == 1 and loaded.padding == 1
        np.testing.assert_array_equal(loaded.bias, bias)
    x = rng.random((6, 5, 2))
    np.save(tmp_path / "x.npy", x)
    assert run(["scale", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "-m", "transpose",
                "--kernel", str(tmp_path / "k.json"), "--quiet"]) == 0
    expected = conv_transpose2d(np.moveaxis(x, -1, 0), weights, bias, 2, 1, 1)
    np.testing.assert_allclose(np.moveaxis(np.load(tmp_path / "y.npy"), -1, 0), expected,
                               atol=1e-12)


def test_a_bias_of_the_wrong_length_is_refused(tmp_path, capsys, decoder):
    path, _ = decoder
    np.save(tmp_path / "x.npy", np.zeros((1, 5, 4, 4), np.float32))
    assert run(["scale", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "-m", "transpose",
                "-f", "2", "--kernel", f"{path}:up1.weight", "--bias", f"{path}:up2.bias"]) == 1
    assert "the bias has 2 values, but the layer makes 4 channels" in capsys.readouterr().err
    assert not (tmp_path / "y.npy").exists()


def test_choosing_a_tensor_that_is_not_there_lists_the_near_ones(tmp_path, capsys, decoder):
    path, _ = decoder
    assert run(["kernel", "show", f"{path}:dec.up1.weights", "-f", "2"]) == 1
    err = capsys.readouterr().err
    assert "dec.up1.weight" in err and len(err.strip().splitlines()) == 1
    assert run(["kernel", "show", str(path), "-f", "2"]) == 1
    assert "holds 5 tensors" in capsys.readouterr().err


# ------------------------------------------------------------------ auditing

def test_audit_table_json_and_gate(tmp_path, capsys, decoder):
    path, tensors = decoder
    assert run(["kernel", "audit", str(path), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    rows = {row["layer"]: row for row in document["layers"]}
    assert list(rows) == ["dec.up1.weight", "dec.up2.weight"]  # the 1 x 1 head left out
    assert rows["dec.up1.weight"]["stride"] == 2 and rows["dec.up1.weight"]["stride_guessed"]
    expected = layer_figures(tensors["dec.up2.weight"], 2)
    assert rows["dec.up2.weight"]["checkerboard_percent"] == pytest.approx(expected.figure)
    assert rows["dec.up2.weight"]["worst_output_channel"] == expected.worst_output
    per_channel = rows["dec.up2.weight"]["per_output_channel"]
    assert [c["checkerboard_percent"] for c in per_channel] == pytest.approx(
        expected.checkerboard.tolist())
    assert run(["kernel", "audit", str(path), "--stride", "2", "--stride", "*up2*=3",
                "--json"]) == 0
    rows = {row["layer"]: row for row in json.loads(capsys.readouterr().out)["layers"]}
    assert (rows["dec.up1.weight"]["stride"], rows["dec.up2.weight"]["stride"]) == (2, 3)
    assert not rows["dec.up2.weight"]["stride_guessed"]
    assert run(["kernel", "audit", str(path)]) == 0
    table = capsys.readouterr().out
    assert "dec.up1.weight" in table and "2?" in table and "guessed" in table and "strong" in table
    assert run(["kernel", "audit", str(path), "--fail-above", "5"]) == 3
    assert "above --fail-above 5 %" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--layer", "dec.up1.bias"], "is 4-D"),
    (["--layer", "dec.upp1.*"], "dec.up1"),
    (["--stride", "two"], "whole number"),
    (["--stride", "up1*=1"], ">= 2"),
])
def test_audit_bad_choices(tmp_path, capsys, decoder, args, message):
    path, _ = decoder
    assert run(["kernel", "audit", str(path), *args]) in (1, 2)
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_audit_reads_the_pt_fixture_without_torch(capsys, monkeypatch):
    monkeypatch.setattr(checkpoints, "_torch_module", lambda: None)
    assert run(["kernel", "audit", str(ROOT / "tests" / "data" / "tiny_decoder.pt"),
                "--layer", "model.up*.weight", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["layers"]
    expected = np.load(ROOT / "tests" / "data" / "tiny_decoder_expected.npz")
    assert [row["layer"] for row in rows] == ["model.up1.weight", "model.up2.weight"]
    assert rows[0]["checkerboard_percent"] == pytest.approx(
        layer_figures(expected["model.up1.weight"], 2).figure)


def test_kernel_show_and_report_label_each_output_channel_and_gate(tmp_path, capsys,
                                                                   decoder):
    path, tensors = decoder
    spec = f"{path}:dec.up1.weight"
    assert run(["kernel", "show", spec, "-f", "2"]) == 0
    text = capsys.readouterr().out
    assert "per output channel" in text and "worst input" in text
    assert run(["kernel", "show", spec, "-f", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(summary["phase_sums_per_pair"],
                               phase_sums(tensors["dec.up1.weight"], 2, (-1, -1)) * 0
                               + phase_sums(tensors["dec.up1.weight"].astype(np.float64), 2,
                                            Kernel(tensors["dec.up1.weight"], stride=2)
                                            .phase_offsets()), atol=1e-12)
    assert len(summary["layer"]["per_output_channel"]) == 4
    figure = layer_figures(tensors["dec.up1.weight"], 2).figure
    assert run(["report", "--kernel", spec, "-f", "2", "--fail-above", f"{figure + 1}"]) == 0
    assert "per output channel" in capsys.readouterr().out
    assert run(["report", "--kernel", spec, "-f", "2", "--fail-above", f"{figure - 1}"]) == 3
    assert "above --fail-above" in capsys.readouterr().err
    assert run(["report", "--kernel", spec, "--fail-above", "1"]) == 1  # no stride: say so
    assert "give --factor" in capsys.readouterr().err


# ------------------------------------------------------------------ fixing

def test_fix_writes_every_tensor_with_the_layers_fixed(tmp_path, capsys, decoder):
    path, tensors = decoder
    out = tmp_path / "fixed.safetensors"
    assert run(["kernel", "fix", str(path), "-o", str(out), "--layer", "dec.up*.weight",
                "--stride", "2", "--json"]) == 0
    done = {row["layer"]: row for row in json.loads(capsys.readouterr().out)["layers"]}
    fixed = load_tensors(out)
    assert list(fixed) == list(tensors)
    for key, value in tensors.items():
        assert fixed[key].dtype == value.dtype and fixed[key].shape == value.shape
        if key in done:
            np.testing.assert_allclose(fixed[key], fix_checkerboard(value, 2), atol=1e-6)
            change = np.linalg.norm(fixed[key] - value) / np.linalg.norm(value)
            assert done[key]["relative_weight_change"] == pytest.approx(change, rel=1e-5)
            assert done[key]["checkerboard_percent_after"] == 0.0  # stored float32: exact
        else:
            np.testing.assert_array_equal(fixed[key], value)
    assert run(["kernel", "audit", str(out), "--stride", "2", "--fail-above", "0.001"]) == 0
    capsys.readouterr()
    assert run(["kernel", "fix", str(path), "-o", str(out), "--layer", "up1.weight"]) == 1
    assert "exists" in capsys.readouterr().err  # never replaced without --overwrite
    assert run(["kernel", "fix", str(path), "-o", str(path), "--layer", "up1.weight"]) == 1
    assert load_tensors(path).keys() == tensors.keys()  # the input untouched


def test_fix_refuses_a_format_it_cannot_write(tmp_path, capsys, decoder):
    path, _ = decoder
    assert run(["kernel", "fix", str(path), "-o", str(tmp_path / "fixed.pt"),
                "--layer", "up1.weight"]) == 1
    assert ".safetensors" in capsys.readouterr().err
    assert not (tmp_path / "fixed.pt").exists()


# ------------------------------------------------------------------ initialising

@pytest.mark.parametrize("method,channels", [("bilinear", (3, 3)), ("icnr", (4, 2))])
def test_init_writes_a_layer_that_keeps_flat_inputs_flat(tmp_path, capsys, method, channels):
    out = tmp_path / "init.safetensors"
    assert run(["kernel", "init", "--in", str(channels[0]), "--out", str(channels[1]),
                "--size", "4", "--stride", "2", "--method", method, "--seed", "1",
                "-o", str(out), "--key", "up.weight"]) == 0
    weight = load_tensors(out)["up.weight"]
    assert weight.shape == (*channels, 4, 4) and weight.dtype == np.float32
    flat = conv_transpose2d(np.ones((channels[0], 8, 8)), weight.astype(np.float64), None,
                            2, 1)[:, 3:-3, 3:-3]
    np.testing.assert_allclose(flat, flat[:, :1, :1] * np.ones_like(flat), atol=1e-6)
    assert "checkerboard 0 %" in capsys.readouterr().err
    again = tmp_path / "again.npz"
    assert run(["kernel", "init", "--in", str(channels[0]), "--out", str(channels[1]),
                "--size", "4", "--stride", "2", "--method", method, "--seed", "1",
                "-o", str(again), "--key", "up.weight"]) == 0
    np.testing.assert_array_equal(load_tensors(again)["up.weight"], weight)


def test_init_as_an_upconv_kernel_and_bad_requests(tmp_path, capsys):
    assert run(["kernel", "init", "--in", "1", "--out", "1", "--size", "4", "--stride", "2",
                "--method", "bilinear", "-o", str(tmp_path / "k.json")]) == 0
    assert Kernel.load(tmp_path / "k.json").stride == 2
    capsys.readouterr()
    assert run(["kernel", "init", "--in", "2", "--out", "3", "--size", "4", "--stride", "2",
                "--method", "bilinear", "-o", str(tmp_path / "b.safetensors")]) == 1
    assert "as many input as output" in capsys.readouterr().err
    assert not (tmp_path / "b.safetensors").exists()


def test_a_photo_through_a_fixed_layer_has_no_checkerboard(tmp_path, capsys, rng):
    """End to end: a random gray-to-gray layer prints a pattern on a photo; fixed, the
    report finds none."""
    layer = {"up.weight": rng.normal(1 / 16, 0.05, size=(1, 1, 4, 4)).astype(np.float32)}
    save_tensors(layer, tmp_path / "layer.safetensors")
    assert run(["kernel", "fix", str(tmp_path / "layer.safetensors"), "-o",
                str(tmp_path / "fixed.safetensors"), "--layer", "up.weight"]) == 0
    capsys.readouterr()
    for name, threshold in (("layer", None), ("fixed", 0.5)):
        out = tmp_path / f"{name}.png"
        assert run(["scale", str(SAMPLES / "camera.png"), str(out), "-m", "transpose",
                    "-f", "2", "--kernel", f"{tmp_path / name}.safetensors:up.weight",
                    "--padding", "1", "--quiet"]) == 0
        assert run(["report", str(out), "-f", "2", "--json"]) == 0
        score = json.loads(capsys.readouterr().out)["checkerboard"]["score"]
        if threshold is None:
            assert score > 2
        else:
            assert score < threshold


def test_audit_of_a_kernel_file_uses_its_stride_and_padding(tmp_path, capsys):
    Kernel(np.ones((3, 3)), stride=2, padding=1).save(tmp_path / "ones.json")
    assert run(["kernel", "audit", str(tmp_path / "ones.json"), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["layers"][0]
    assert (row["layer"], row["stride"], row["stride_guessed"], row["padding"]) == (
        "ones.json", 2, False, 1)
    assert row["checkerboard_percent"] == pytest.approx(layer_figures(np.ones((3, 3)), 2).figure)


def test_feature_maps_get_no_grey_level_figure_or_brightness_note(tmp_path, capsys,
                                                                   decoder):
    path, _ = decoder
    np.save(tmp_path / "x.npy", np.random.default_rng(5).normal(size=(1, 5, 6, 6)))
    assert run(["scale", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "-m", "transpose",
                "-f", "2", "--kernel", f"{path}:up1.weight", "--padding", "1"]) == 0
    err = capsys.readouterr().err
    assert "feature maps: not measured" in err and "bright" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_3d_tensor_where_a_layer_is_expected_is_refused(tmp_path, capsys):
    save_tensors({"up.weight": np.ones((2, 4, 4), np.float32)}, tmp_path / "odd.safetensors")
    for command in (["kernel", "audit"], ["kernel", "fix"]):
        extra = ["-o", str(tmp_path / "out.safetensors")] if command[1] == "fix" else []
        extra = [*extra, "--layer", "up.weight"]
        assert run([*command, str(tmp_path / "odd.safetensors"), *extra]) == 1
        err = capsys.readouterr().err
        assert "up.weight has shape [2, 4, 4]" in err and "4-D" in err
    assert not (tmp_path / "out.safetensors").exists()
    assert run(["kernel", "audit", str(tmp_path / "odd.safetensors")]) == 1
    assert "no 4-D" in capsys.readouterr().err


def test_audit_leaves_an_optimizer_alone_and_fix_needs_the_layers_named(tmp_path, capsys,
                                                                        rng):
    """A training checkpoint: a Conv2d weight, two ConvTranspose2d ones, and Adam's state.
    The audit's default takes parameters named *.weight, never the optimizer's state; a
    fix touches only the layers --layer names, and --prefix writes the model's part."""
    tensors = {"model.conv.weight": rng.normal(size=(16, 8, 3, 3)).astype(np.float32),
               "model.up1.weight": rng.normal(size=(8, 4, 4, 4)).astype(np.float32),
               "model.up1.bias": rng.normal(size=4).astype(np.float32),
               "optimizer.state.0.exp_avg_sq": rng.random((8, 4, 4, 4)).astype(np.float32)}
    save_tensors(tensors, tmp_path / "train.safetensors")
    assert run(["kernel", "audit", str(tmp_path / "train.safetensors"), "--json"]) == 0
    rows = [row["layer"] for row in json.loads(capsys.readouterr().out)["layers"]]
    assert rows == ["model.conv.weight", "model.up1.weight"]
    assert run(["kernel", "fix", str(tmp_path / "train.safetensors"), "-o",
                str(tmp_path / "out.safetensors")]) == 2
    assert "--layer" in capsys.readouterr().err
    assert run(["kernel", "fix", str(tmp_path / "train.safetensors"), "-o",
                str(tmp_path / "out.safetensors"), "--layer", "up1.weight",
                "--prefix", "model."]) == 0
    fixed = load_tensors(tmp_path / "out.safetensors")
    assert list(fixed) == ["conv.weight", "up1.weight", "up1.bias"]
    np.testing.assert_array_equal(fixed["conv.weight"], tensors["model.conv.weight"])
    assert layer_figures(fixed["up1.weight"], 2).figure == 0.0
    capsys.readouterr()
    assert run(["kernel", "audit", f"{tmp_path / 'train.safetensors'}:up1.weight",
                "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["layers"]
    assert [row["layer"] for row in rows] == ["model.up1.weight"]


def test_show_report_and_audit_agree_on_float32_round_off(tmp_path, capsys):
    """Weights read from a float32 file are widened to float64 for show and report; their
    round-off is still float32's, so a fixed layer reads 0 everywhere."""
    out = tmp_path / "init.safetensors"
    assert run(["kernel", "init", "--in", "3", "--out", "5", "--size", "4", "--stride", "2",
                "--method", "icnr", "--seed", "3", "-o", str(out)]) == 0
    capsys.readouterr()
    assert run(["report", "--kernel", f"{out}:weight", "-f", "2", "--fail-above", "0",
                "--json"]) == 0
    layer = json.loads(capsys.readouterr().out)["kernel"]["layer"]
    assert layer["checkerboard_percent"] == 0.0 and layer["verdict"] == "none"
    assert run(["kernel", "show", f"{out}:weight", "-f", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["layer"]["checkerboard_percent"] == 0.0


def test_a_chw_array_read_by_default_gets_a_hint(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((16, 32, 30), np.float32))  # PyTorch's C x H x W
    assert run(["scale", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "-f", "2",
                "-m", "bilinear"]) == 0
    err = capsys.readouterr().err
    assert "read as H x W x C = 16 x 32 x 30" in err and "--layout chw" in err
    assert "feature maps" in err and "kernel audit" not in err  # not a layer's job


def test_wide_audit_tables_keep_their_figures(tmp_path, capsys, rng):
    name = "decoder.blocks.3.upsample.conv_transpose.weight"
    save_tensors({name: rng.normal(size=(4, 4, 4, 4)).astype(np.float32)},
                 tmp_path / "long.safetensors")
    assert run(["kernel", "audit", str(tmp_path / "long.safetensors")]) == 0
    table = capsys.readouterr().out
    assert "strong" in table and "figure %" in table and "4x4x4x4" in table
