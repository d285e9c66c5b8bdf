"""Weights files: named tensors from .safetensors, .pt/.pth and .npz, read without running code.

PyTorch is never imported here: every .pt file is read by the restricted
unpickler (``_torch_module`` is replaced to say PyTorch is absent). The
committed fixture ``tests/data/tiny_decoder.pt`` and the arrays PyTorch saw
in it (``tiny_decoder_expected.npz``) come from
``scripts/make_checkpoint_fixture.py``; the hostile checkpoints are built
here, byte by byte.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT

from upconv import checkpoints
from upconv.checkpoints import (
    SPEC_SUFFIXES,
    WEIGHT_SUFFIXES,
    load_tensors,
    save_tensors,
    split_spec,
    tensor_named,
    tensors_matching,
)
from upconv.errors import BadInputError
from upconv.kernel_files import KERNEL_SUFFIXES

FIXTURE = ROOT / "tests" / "data" / "tiny_decoder.pt"
EXPECTED = ROOT / "tests" / "data" / "tiny_decoder_expected.npz"


@pytest.fixture(autouse=True)
def without_torch(monkeypatch):
    """Every .pt file goes through the restricted unpickler; PyTorch is never imported."""
    monkeypatch.setattr(checkpoints, "_torch_module", lambda: None)


def mixed_tensors() -> dict[str, np.ndarray]:
    """Several types and shapes, keys not in sorted order, one array not contiguous."""
    rng = np.random.default_rng(7)
    return {
        "dec.up2.weight": rng.standard_normal((2, 1, 4, 4)).astype(np.float32),
        "dec.up1.weight": rng.standard_normal((3, 2, 4, 4)),
        "alpha": np.array([1.5, -0.25, 65504.0], dtype=np.float16),
        "steps": np.array([-1, 2**40, 3], dtype=np.int64),
        "mask": np.array([True, False]),
        "transposed": np.arange(12, dtype=np.float32).reshape(3, 4).T,
        "scalar": np.array(2.5),
    }


# Round trips


def assert_same_tensors(loaded: dict, expected: dict) -> None:
    """Equal names, types, shapes and values; each array writeable and C-contiguous."""
    for key, array in expected.items():
        assert loaded[key].dtype == array.dtype, key
        assert loaded[key].shape == array.shape, key
        np.testing.assert_array_equal(loaded[key], array, err_msg=key)
        assert loaded[key].flags.writeable and loaded[key].flags.c_contiguous, key

@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_round_trip_keeps_names_order_types_and_values(tmp_path, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    tensors = mixed_tensors()
    path = tmp_path / f"w{suffix}"
    save_tensors(tensors, path)
    loaded = load_tensors(path)
    assert list(loaded) == list(tensors)
    assert_same_tensors(loaded, tensors)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporaries left


def test_npz_round_trip_takes_any_key(tmp_path):
    """np.savez would take these two keys for its own arguments."""
    tensors = {"file": np.ones(2), "allow_pickle": np.zeros(3, dtype=np.int32)}
    save_tensors(tensors, tmp_path / "w.npz")
    loaded = load_tensors(tmp_path / "w.npz")
    assert list(loaded) == ["file", "allow_pickle"]
    np.testing.assert_array_equal(loaded["allow_pickle"], np.zeros(3, dtype=np.int32))


def test_safetensors_from_elsewhere_come_in_the_order_of_their_data(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    tensors = {"z": np.ones(2, np.float32), "a": np.arange(3.0), "m": np.zeros(1, np.int64)}
    path = tmp_path / "w.safetensors"
    path.write_bytes(safetensors_numpy.save(tensors))
    loaded = load_tensors(path)
    length = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8:8 + length])
    by_offset = sorted(tensors, key=lambda key: header[key]["data_offsets"][0])
    assert list(loaded) == by_offset
    for key in tensors:
        np.testing.assert_array_equal(loaded[key], tensors[key])


def test_a_kept_order_that_names_other_tensors_is_ignored(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "w.safetensors"
    path.write_bytes(safetensors_numpy.save(
        {"b": np.ones(1), "a": np.zeros(1)},
        metadata={checkpoints.KEY_ORDER_METADATA: json.dumps(["b", "c"])}))
    assert sorted(load_tensors(path)) == ["a", "b"]


# The PyTorch fixture, through the restricted unpickler


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_the_restricted_unpickler_reads_what_pytorch_saved(tmp_path, suffix):
    path = tmp_path / f"tiny_decoder{suffix}"
    path.write_bytes(FIXTURE.read_bytes())
    loaded = load_tensors(path)
    with np.load(EXPECTED) as archive:
        expected = {key: archive[key] for key in archive.files}
    assert list(loaded) == list(expected)
    assert_same_tensors(loaded, expected)
    assert "torch" not in sys.modules


def test_the_fixture_holds_what_its_script_says():
    """The names, views and plain values the reader must get right are really there."""
    loaded = load_tensors(FIXTURE)
    assert [key for key in loaded if key.startswith("model.")] == [
        "model.up1.weight", "model.up1.bias", "model.up2.weight", "model.up2.bias",
        "model.smooth.weight", "model.smooth.bias"]
    assert loaded["model.up1.weight"].shape == (2, 2, 4, 4)
    np.testing.assert_array_equal(loaded["transposed"], np.arange(12.0).reshape(3, 4).T)
    np.testing.assert_array_equal(loaded["slice"], [3.0, 4.0, 5.0, 6.0])
    np.testing.assert_array_equal(loaded["tied"], loaded["model.up1.weight"])
    np.testing.assert_array_equal(loaded["brain"], np.array([1.0, -3.140625, 1.00025555e30],
                                                            dtype=np.float32))
    assert loaded["brain"].dtype == np.float32  # bfloat16, widened exactly
    np.testing.assert_array_equal(loaded["counts"], np.array([0, 65535], dtype=np.uint16))
    assert loaded["history.0"].tolist() == [1.0, 0.5]
    assert not {"epoch", "note", "optimizer.lr", "history.1"} & set(loaded)
    np.testing.assert_array_equal(tensor_named(loaded, "up1.weight", "f"),
                                  loaded["model.up1.weight"])


# Hand-built checkpoints: a few pickle opcodes, protocol 2


def op_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def op_text(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def op_int(number: int) -> bytes:
    return b"J" + struct.pack("<i", number)


def op_tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def op_call(function: bytes, *arguments: bytes) -> bytes:
    return function + op_tuple(*arguments) + b"R"


def op_tensor(key: str, numel: int, offset: int, size: tuple[int, ...],
              stride: tuple[int, ...], storage: str = "FloatStorage") -> bytes:
    """``torch._utils._rebuild_tensor_v2`` as torch 2.x pickles it."""
    storage_id = op_tuple(op_text("storage"), op_global("torch", storage), op_text(key),
                          op_text("cpu"), op_int(numel)) + b"Q"
    return op_call(op_global("torch._utils", "_rebuild_tensor_v2"), storage_id,
                   op_int(offset), op_tuple(*map(op_int, size)),
                   op_tuple(*map(op_int, stride)), b"\x89",
                   op_call(op_global("collections", "OrderedDict")))


def pickled_dict(entries: dict[str, bytes]) -> bytes:
    return b"\x80\x02}" + b"".join(op_text(k) + v + b"s" for k, v in entries.items()) + b"."


def torch_zip(pickled: bytes, storages: dict[str, bytes] | None = None,
              byteorder: str | None = "little") -> bytes:
    """A ``torch.save`` archive around a pickle and its storages."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickled)
        if byteorder is not None:
            archive.writestr("archive/byteorder", byteorder)
        for key, data in (storages or {}).items():
            archive.writestr(f"archive/data/{key}", data)
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


def write_pt(tmp_path: Path, data: bytes, name: str = "c.pt") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


FOUR_FLOATS = np.array([1.0, 2.0, 3.0, 4.0], dtype="<f4").tobytes()


def test_a_hand_built_checkpoint_reads_as_built(tmp_path):
    """The builder itself is right: strides, offsets and big-endian storages."""
    path = write_pt(tmp_path, torch_zip(pickled_dict({
        "t": op_tensor("0", 4, 0, (2, 2), (1, 2)),
        "tail": op_tensor("0", 4, 1, (3,), (1,))}), {"0": FOUR_FLOATS}))
    loaded = load_tensors(path)
    np.testing.assert_array_equal(loaded["t"], [[1.0, 3.0], [2.0, 4.0]])
    np.testing.assert_array_equal(loaded["tail"], [2.0, 3.0, 4.0])
    big = np.array([1.0, 2.0, 3.0, 4.0], dtype=">f4").tobytes()
    path = write_pt(tmp_path, torch_zip(pickled_dict({"t": op_tensor("0", 4, 0, (4,), (1,))}),
                                        {"0": big}, byteorder="big"))
    loaded = load_tensors(path)["t"]
    np.testing.assert_array_equal(loaded, [1.0, 2.0, 3.0, 4.0])
    assert loaded.dtype == np.float32 and loaded.dtype.isnative


def test_a_bare_tensor_and_tensors_in_lists_are_named_by_position(tmp_path):
    bare = write_pt(tmp_path, torch_zip(b"\x80\x02" + op_tensor("0", 4, 0, (4,), (1,)) + b".",
                                        {"0": FOUR_FLOATS}))
    assert list(load_tensors(bare)) == [""]
    listed = write_pt(tmp_path, torch_zip(
        b"\x80\x02" + op_tuple(op_int(5), op_tensor("0", 4, 0, (2,), (1,)),
                               op_tensor("0", 4, 2, (2,), (1,))) + b".", {"0": FOUR_FLOATS}))
    loaded = load_tensors(listed)
    assert list(loaded) == ["1", "2"]
    np.testing.assert_array_equal(loaded["2"], [3.0, 4.0])


class RunsACommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class Prints:
    def __reduce__(self):
        return print, ("the checkpoint ran code",)


def test_a_checkpoint_that_calls_os_system_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    path = write_pt(tmp_path, torch_zip(pickle.dumps({"w": RunsACommand(f"touch {marker}")},
                                                     protocol=2)))
    with pytest.raises(BadInputError) as caught:
        load_tensors(path)
    assert str(caught.value) == (
        f"{path}: refusing to load {os.system.__module__}.system: the checkpoint holds more "
        "than tensors (upconv never runs a checkpoint's code)")
    assert not marker.exists()


def test_a_checkpoint_that_calls_print_is_refused_and_prints_nothing(tmp_path, capsys):
    tensor = op_tensor("0", 4, 0, (4,), (1,))
    evil = pickle.dumps(Prints(), protocol=2)[2:-1]  # the call, without PROTO and STOP
    path = write_pt(tmp_path, torch_zip(pickled_dict({"w": tensor, "x": evil}),
                                        {"0": FOUR_FLOATS}))
    with pytest.raises(BadInputError, match=r"refusing to load __builtin__\.print: "):
        load_tensors(path)
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("module, name", [
    ("builtins", "eval"), ("builtins", "getattr"), ("torch", "load"),
    ("torch._utils", "_rebuild_tensor"), ("collections", "namedtuple"),
    ("collections", "OrderedDict.fromkeys"), ("numpy.core.multiarray", "_reconstruct")])
def test_every_global_outside_the_list_is_refused(tmp_path, module, name):
    path = write_pt(tmp_path, torch_zip(pickled_dict({
        "x": op_call(op_global(module, name), op_text("1"))})))
    with pytest.raises(BadInputError, match=rf"c\.pt: refusing to load {module}\.{name}:"):
        load_tensors(path)


@pytest.mark.parametrize("module, name", [("torch", "float8_e4m3fn"), ("torch", "int4"),
                                          ("torch", "QInt8Storage")])
def test_tensors_of_types_numpy_lacks_are_refused_as_such(tmp_path, module, name):
    tensor = op_call(op_global("torch._utils", "_rebuild_tensor_v3"), op_text("x"), op_int(0),
                     op_tuple(op_int(1)), op_tuple(op_int(1)), b"\x89",
                     op_call(op_global("collections", "OrderedDict")), op_global(module, name))
    path = write_pt(tmp_path, torch_zip(pickled_dict({"w": tensor})))
    with pytest.raises(BadInputError) as caught:
        load_tensors(path)
    assert str(caught.value) == (f"{path}: tensors of type torch.{name}, which numpy cannot "
                                 "hold; convert them to float32 in PyTorch and save again")


@pytest.mark.parametrize("tensor, storages, message", [
    (op_tensor("0", 4, 0, (3, 3), (3, 1)), {"0": FOUR_FLOATS},
     "corrupt checkpoint: a tensor reaches past the end of its storage"),
    (op_tensor("0", 4, 2, (3,), (1,)), {"0": FOUR_FLOATS},
     "corrupt checkpoint: a tensor reaches past the end of its storage"),
    (op_tensor("0", 4, 0, (2,), (-1,)), {"0": FOUR_FLOATS},
     "corrupt checkpoint: a tensor's storage, offset, size or stride is malformed"),
    (op_tensor("0", 8, 0, (2,), (1,)), {"0": FOUR_FLOATS},
     "storage '0' holds 16 bytes, not 32"),
    (op_tensor("1", 4, 0, (2,), (1,)), {"0": FOUR_FLOATS},
     "the checkpoint has no record 'archive/data/1'"),
    (op_text("not a storage") + b"Q", {},
     "the checkpoint refers to something other than a storage"),
    (op_tensor("0", 4, 0, (30000, 30000), (0, 0)), {"0": FOUR_FLOATS},  # 3.6 GB of one value
     "corrupt checkpoint: a tensor of 3600000000 bytes repeats a storage of 16 bytes"),
    (op_call(op_global("torch._utils", "_rebuild_parameter"), op_int(3), b"\x89",
             op_call(op_global("collections", "OrderedDict"))), {},
     "corrupt checkpoint: a parameter without a tensor"),
])
def test_malformed_tensors_are_refused_before_any_memory_is_read(tmp_path, tensor, storages,
                                                                 message):
    path = write_pt(tmp_path, torch_zip(pickled_dict({"w": tensor}), storages))
    with pytest.raises(BadInputError) as caught:
        load_tensors(path)
    assert str(caught.value).startswith(f"{path}: {message}")


def test_a_truncated_checkpoint_is_refused(tmp_path):
    data = FIXTURE.read_bytes()
    path = write_pt(tmp_path, data[:len(data) // 2])
    with pytest.raises(BadInputError, match=r"c\.pt: truncated or corrupt PyTorch checkpoint"):
        load_tensors(path)


def test_a_damaged_storage_is_refused(tmp_path):
    data = torch_zip(pickled_dict({"w": op_tensor("0", 4, 0, (4,), (1,))}),
                     {"0": FOUR_FLOATS})
    path = write_pt(tmp_path, data.replace(FOUR_FLOATS, FOUR_FLOATS[::-1]))
    with pytest.raises(BadInputError, match=r"c\.pt: truncated or corrupt PyTorch checkpoint"):
        load_tensors(path)


def test_a_legacy_checkpoint_is_refused_unread(tmp_path, capsys):
    path = write_pt(tmp_path, pickle.dumps({"w": Prints()}, protocol=2))
    with pytest.raises(BadInputError, match=r"c\.pt: a legacy PyTorch checkpoint .*re-save it"):
        load_tensors(path)
    assert capsys.readouterr() == ("", "")


def test_other_files_named_pt_are_refused(tmp_path):
    with pytest.raises(BadInputError, match=r"c\.pt: not a PyTorch checkpoint"):
        load_tensors(write_pt(tmp_path, b"hello"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(BadInputError, match=r"c\.pt: a zip archive without data\.pkl"):
        load_tensors(write_pt(tmp_path, buffer.getvalue()))


def test_a_checkpoint_without_tensors_says_so(tmp_path):
    path = write_pt(tmp_path, torch_zip(pickle.dumps({"epoch": 3, "note": "x"}, protocol=2)))
    with pytest.raises(BadInputError) as caught:
        load_tensors(path)
    assert str(caught.value) == f"{path}: no tensors in the file"


def test_containers_that_hold_themselves_are_walked_once(tmp_path):
    loop: list = [op_tensor]  # any placeholder, replaced below
    loop[0] = loop
    inner = pickle.dumps({"loop": loop}, protocol=2)[3:-1]  # the dict's items, no PROTO/}/STOP
    path = write_pt(tmp_path, torch_zip(
        b"\x80\x02}" + inner + op_text("w") + op_tensor("0", 4, 0, (4,), (1,)) + b"s.",
        {"0": FOUR_FLOATS}))
    assert list(load_tensors(path)) == ["w"]


def test_values_nested_too_deep_are_refused(tmp_path):
    deep: list = []
    for _ in range(checkpoints.MAX_NESTING + 5):
        deep = [deep]
    path = write_pt(tmp_path, torch_zip(pickle.dumps({"deep": deep}, protocol=2)))
    with pytest.raises(BadInputError, match=r"values nested more than 100 deep"):
        load_tensors(path)


# .safetensors and .npz that cannot be read


def test_a_truncated_safetensors_file_is_refused(tmp_path):
    pytest.importorskip("safetensors")
    path = tmp_path / "w.safetensors"
    save_tensors(mixed_tensors(), path)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(BadInputError) as caught:
        load_tensors(path)
    assert str(caught.value).startswith(f"{path}: truncated or corrupt .safetensors file (")
    assert "\n" not in str(caught.value)


def test_bfloat16_in_safetensors_says_to_convert_to_float32(tmp_path):
    pytest.importorskip("safetensors")
    header = json.dumps({"ok": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                         "brain": {"dtype": "BF16", "shape": [2], "data_offsets": [4, 8]}}
                        ).encode()
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    with pytest.raises(BadInputError) as caught:
        load_tensors(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: tensor 'brain' is BF16, a type numpy lacks; convert")
    assert "float32 in PyTorch" in message


def test_without_safetensors_reading_and_writing_say_how_to_install_it(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"anything")
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(BadInputError) as caught:
        load_tensors(path)
    assert str(caught.value) == (f"{path}: reading .safetensors needs the safetensors "
                                 "package: pip install 'upconv[models]'")
    with pytest.raises(BadInputError, match=r"writing \.safetensors needs the safetensors "
                                            r"package: pip install 'upconv\[models\]'"):
        save_tensors({"w": np.ones(1)}, path)
    assert path.read_bytes() == b"anything"


def test_an_npz_with_an_object_array_is_refused(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, fine=np.ones(2), bad=np.array([{"a": 1}], dtype=object))
    with pytest.raises(BadInputError) as caught:
        load_tensors(path)
    assert str(caught.value).startswith(f"{path}: array 'bad' holds Python objects, which "
                                        "are refused")


def test_npz_files_that_are_not_archives_or_hold_nothing_are_refused(tmp_path):
    path = tmp_path / "w.npz"
    np.save(tmp_path / "w.npy", np.ones(2))
    path.write_bytes((tmp_path / "w.npy").read_bytes())
    with pytest.raises(BadInputError, match=r"w\.npz: not an \.npz file"):
        load_tensors(path)
    np.savez(path)
    with pytest.raises(BadInputError, match=r"w\.npz: no tensors in the file"):
        load_tensors(path)
    np.savez(path, w=np.ones(100))
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(BadInputError, match=r"w\.npz: truncated or corrupt \.npz file"):
        load_tensors(path)


def test_unknown_suffixes_are_refused_with_the_known_ones(tmp_path):
    path = tmp_path / "w.h5"
    path.write_bytes(b"x")
    with pytest.raises(BadInputError) as caught:
        load_tensors(path)
    assert str(caught.value) == (f"{path}: unknown weights file suffix '.h5'; use "
                                 ".safetensors, .pt, .pth or .npz")
    with pytest.raises(BadInputError) as caught:
        save_tensors({"w": np.ones(1)}, tmp_path / "w.pt")
    assert str(caught.value) == (f"{tmp_path / 'w.pt'}: write .safetensors or .npz; PyTorch "
                                 "reads .safetensors with safetensors.torch.load_file")


def test_only_named_arrays_of_numbers_are_written(tmp_path):
    path = tmp_path / "w.npz"
    with pytest.raises(BadInputError, match=r"tensor 'names' holds <U1, not numbers"):
        save_tensors({"w": np.ones(1), "names": np.array(["a"])}, path)
    with pytest.raises(BadInputError, match=r"w\.npz: no tensors to write"):
        save_tensors({}, path)
    assert not path.exists()


# Names


NAMES = {"model.up1.weight": np.ones(1), "model.up1.bias": np.ones(1) * 2,
         "model.up2.weight": np.ones(1) * 3, "ema.up2.weight": np.ones(1) * 4,
         "model.smooth.weight": np.ones(1) * 5}


def test_a_tensor_is_found_by_its_name_or_its_only_ending():
    assert tensor_named(NAMES, "model.up2.weight", "f")[0] == 3
    assert tensor_named(NAMES, "up1.bias", "f")[0] == 2
    assert tensor_named(NAMES, "smooth.weight", "f")[0] == 5
    assert tensor_named({"up1.weight": np.ones(1), "x.up1.weight": np.zeros(1)},
                        "up1.weight", "f")[0] == 1  # the exact name wins


def test_an_ending_shared_by_several_tensors_lists_them():
    with pytest.raises(BadInputError) as caught:
        tensor_named(NAMES, "up2.weight", "ckpt.pt")
    assert str(caught.value) == ("ckpt.pt: 'up2.weight' could name 2 tensors; did you mean: "
                                 "model.up2.weight, ema.up2.weight?")


def test_an_unknown_name_suggests_close_ones():
    with pytest.raises(BadInputError) as caught:
        tensor_named(NAMES, "up1.wieght", "ckpt.pt")
    message = str(caught.value)
    assert message.startswith("ckpt.pt: no tensor named 'up1.wieght'; did you mean: "
                              "model.up1.weight")
    assert message.count(",") <= 4


def test_an_unknown_name_with_nothing_close_lists_the_first_names():
    with pytest.raises(BadInputError) as caught:
        tensor_named(NAMES, "zzz", "ckpt.pt")
    assert str(caught.value) == ("ckpt.pt: no tensor named 'zzz' (it has: model.up1.weight, "
                                 "model.up1.bias, model.up2.weight, ema.up2.weight, "
                                 "model.smooth.weight)")
    many = {f"layer{index}": np.ones(1) for index in range(8)}
    with pytest.raises(BadInputError, match=r"\(it has: layer0, layer1, layer2, layer3, "
                                            r"layer4, \.\.\. \(8 in all\)\)$"):
        tensor_named(many, "zzz", "ckpt.pt")


def test_a_glob_finds_tensors_in_file_order():
    assert list(tensors_matching(NAMES, "model.*.weight", "f")) == [
        "model.up1.weight", "model.up2.weight", "model.smooth.weight"]
    assert list(tensors_matching(NAMES, "*.up2.*", "f")) == ["model.up2.weight",
                                                            "ema.up2.weight"]
    assert tensors_matching(NAMES, "model.up1.bias", "f")["model.up1.bias"][0] == 2


def test_a_glob_that_matches_nothing_suggests_names():
    with pytest.raises(BadInputError) as caught:
        tensors_matching(NAMES, "up*.weight", "ckpt.pt")
    assert str(caught.value) == ("ckpt.pt: no tensor name matches 'up*.weight'; did you "
                                 "mean: model.up1.weight, model.up2.weight, ema.up2.weight?")


# FILE:KEY specs


def test_split_spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("ckpt.pt").write_bytes(b"x")
    Path("odd:name.npz").write_bytes(b"x")
    Path("folder.pt").mkdir()
    assert split_spec("ckpt.pt") == ("ckpt.pt", None)
    assert split_spec("ckpt.pt:model.up1.weight") == ("ckpt.pt", "model.up1.weight")
    assert split_spec("ckpt.pt:a:b") == ("ckpt.pt", "a:b")
    assert split_spec("ckpt.pt:") == ("ckpt.pt", "")
    assert split_spec("odd:name.npz") == ("odd:name.npz", None)
    assert split_spec("odd:name.npz:w") == ("odd:name.npz", "w")
    assert split_spec(str(tmp_path / "odd:name.npz") + ":w") == (
        str(tmp_path / "odd:name.npz"), "w")
    assert split_spec("missing.safetensors:up1.weight") == ("missing.safetensors",
                                                            "up1.weight")
    assert split_spec("missing.JSON:k") == ("missing.JSON", "k")
    assert split_spec("folder.pt:w") == ("folder.pt", "w")  # missing as a file: reported later
    assert split_spec("notes:draft") == ("notes:draft", None)
    assert split_spec("./a:b.pt") == ("./a:b.pt", None)
    assert split_spec("bilinear") == ("bilinear", None)
    assert split_spec("") == ("", None)


def test_spec_suffixes_cover_weights_and_kernel_files():
    assert set(WEIGHT_SUFFIXES) | set(KERNEL_SUFFIXES) == set(SPEC_SUFFIXES)
