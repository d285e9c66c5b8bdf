"""``upconv scale IN.zarr OUT.zarr``: Zarr 2 and 3 arrays, chunked and odd-sized, plain and
OME-Zarr, local and in a bucket (moto's S3 server), on threads and on a Dask cluster with
process workers; every output compared with the in-memory result of the same array."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

import upconv
from upconv.cli import run

zarr = pytest.importorskip("zarr", minversion="3",
                           reason="the Zarr tests need zarr 3 (the dask extra)")
pytest.importorskip("dask.array")


def write_array(path, values: np.ndarray, chunks, zarr_format: int = 3, **kwargs):
    array = zarr.create_array(str(path), shape=values.shape, chunks=chunks, dtype=values.dtype,
                              zarr_format=zarr_format, **kwargs)
    array[...] = values
    return array


def read(path, name: str | None = None) -> np.ndarray:
    node = zarr.open(str(path), mode="r")
    return (node[name] if name is not None else node)[...]


def reference(planes: np.ndarray, factor, method: str, **options) -> np.ndarray:
    """The in-memory result, plane by plane of an (..., H, W, C) array in float64."""
    flat = planes.reshape((-1,) + planes.shape[-3:])
    return np.stack([upconv.scale(plane, factor, method, **options) for plane in flat]
                    ).reshape(planes.shape[:-3] + upconv.scale(flat[0], factor, method,
                                                               **options).shape)


EXACT = [("nearest", {}), ("bilinear", {}), ("lanczos", {}),
         ("transpose", {}), ("transpose", {"kernel": "bilinear", "padding": 1,
                                           "output_padding": 1})]


def transpose_flags(options: dict) -> list[str]:
    flags = []
    for name, value in options.items():
        flags += [f"--{name.replace('_', '-')}", str(value)]
    return flags


@pytest.mark.parametrize("zarr_format", [2, 3])
@pytest.mark.parametrize("method,options", EXACT)
def test_exact_methods_equal_the_in_memory_result(tmp_path, rng, zarr_format, method, options,
                                                  capsys):
    """Chunked and odd-sized (several blocks of 16 and a ragged last one): bit for bit."""
    image = rng.random((53, 71, 3))
    write_array(tmp_path / "in.zarr", image, (16, 16, 3), zarr_format)
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "-m", method, *transpose_flags(options)]) == 0, capsys.readouterr().err
    expected = upconv.scale(image, 2, method, **options)
    got = read(tmp_path / "out.zarr")
    assert got.dtype == np.float64 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)
    out = zarr.open(str(tmp_path / "out.zarr"), mode="r")
    assert out.metadata.zarr_format == zarr_format
    assert out.chunks[:2] == (32, 32)  # the input's chunks scaled


@pytest.mark.parametrize("options", [
    {"method": "transpose", "factor": 3.0, "kernel": "bicubic", "padding": 2},
    {"method": "transpose", "factor": 2.0, "kernel": "bilinear", "padding": 3,
     "output_padding": 1},
    {"method": "transpose", "factor": 2.0, "post_kernel": "binomial3"},
    {"method": "bicubic", "factor": 2.0, "boundary": "reflect"},
    {"method": "bicubic", "factor": 2.0, "boundary": "zero"},
    {"method": "nearest", "factor": 3.0},
], ids=["transpose-x3-padded", "transpose-output-padding", "post-kernel", "bicubic-reflect",
        "bicubic-zero", "nearest-x3"])
def test_more_geometries_across_blocks(tmp_path, rng, options, capsys):
    """Several blocks along each axis (chunks of 20x24 on 83x97) in every geometry."""
    image = rng.random((83, 97, 2))
    write_array(tmp_path / "in.zarr", image, (20, 24, 1))
    flags = []
    for name, value in options.items():
        flags += ["-f" if name == "factor" else f"--{name.replace('_', '-')}", str(value)]
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"),
                *flags]) == 0, capsys.readouterr().err
    expected = upconv.scale(image, **options)
    got = read(tmp_path / "out.zarr")
    tolerance = 1e-12 if options["method"] == "bicubic" else 0
    assert got.shape == expected.shape and np.abs(got - expected).max() <= tolerance


@pytest.mark.parametrize("compressors", ["auto", None], ids=["zstd", "raw"])
@pytest.mark.parametrize("method", ["nearest", "bilinear", "lanczos", "bicubic"])
def test_grids_without_a_short_period_are_cut_into_blocks(tmp_path, rng, capsys, method,
                                                          compressors):
    """97 x 83 at x1.5 gives 146 x 124 (or 125): grids that repeat only over the whole axis.
    They are cut into blocks all the same (memory bounded by the chunks, not the axis),
    each computed on the array's own grid from its window, and equal the in-memory
    result: bit for bit, and bicubic to 1e-12. Compressed chunks go through the edges
    phase, raw ones are read a window at a time."""
    from upconv.zarr_arrays import plan_zarr_job

    image = rng.random((97, 83, 2))
    write_array(tmp_path / "in.zarr", image, (20, 24, 2), compressors=compressors)
    job = plan_zarr_job(image.shape, image.dtype, "yxc", (20, 24, 2), method=method,
                        factor=(1.5, 1.5))
    assert job.on_the_array_grid and job.cols.count > 1
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "1.5",
                "-m", method]) == 0, capsys.readouterr().err
    expected = upconv.scale(image, 1.5, method)
    got = read(tmp_path / "out.zarr")
    tolerance = 1e-12 if method == "bicubic" else 0
    assert got.shape == expected.shape and np.abs(got - expected).max() <= tolerance
    # chunks of any size on such a grid: thin ones, several to a block for the halo
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "thin.zarr"), "-f", "1.5",
                "-m", method, "--chunks", "7,5"]) == 0, capsys.readouterr().err
    assert np.abs(read(tmp_path / "thin.zarr") - expected).max() <= tolerance
    assert zarr.open(str(tmp_path / "thin.zarr"), mode="r").chunks == (7, 5, 2)


@pytest.mark.parametrize("shape, layout, dtype, chunks, flags", [
    ((97, 80, 3), "yxc", "f4", (16, 16, 3), ["-f", "1.5", "-m", "bicubic"]),  # y only
    ((80, 97), "yx", "u2", (16, 16), ["-f", "1.5", "-m", "bilinear"]),  # x only, rounded
    ((2, 1, 1, 61, 77), "tczyx", "f8", (1, 1, 1, 16, 16), ["-f", "0.7", "-m", "lanczos"]),
    ((61, 77, 1), "yxc", "f8", (16, 16, 1), ["-f", "2.3", "-m", "bicubic", "-b", "reflect"]),
    ((61, 77, 1), "yxc", "f8", (16, 16, 1), ["-f", "1.31", "-m", "bicubic", "-b", "zero"]),
    ((1204, 9, 1), "yxc", "f4", (64, 9, 1), ["--size", "9x1808", "--fit", "fill",
                                             "-m", "nearest"]),  # a period of 301 inputs
], ids=["y-general", "x-general-uint16", "tczyx-downscale", "reflect", "zero",
        "quarter-axis-period"])
def test_more_grids_without_a_short_period(tmp_path, rng, capsys, shape, layout, dtype,
                                           chunks, flags):
    """Grids without a short period along one axis or both, integer samples, carried axes,
    factors under 1, every boundary, and a period of a quarter of the axis (which is cut
    into chunks of the input's scaled, not of whole periods): as in memory."""
    from upconv.zarr_arrays import plan_zarr_job

    values = rng.random(shape)
    values = (values * 65535).astype(dtype) if dtype == "u2" else values.astype(dtype)
    write_array(tmp_path / "in.zarr", values, chunks)
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "--layout",
                layout, *flags]) == 0, capsys.readouterr().err
    got = read(tmp_path / "out.zarr")
    planes = values.reshape((-1,) + values.shape[-2:] + (1,)) if layout == "tczyx" else (
        values[..., None] if layout == "yx" else values)
    options = {"factor": float(flags[1])} if flags[0] == "-f" else {
        "output_shape": (1808, 9), "fit": "fill"}
    method = flags[flags.index("-m") + 1]
    if "-b" in flags:
        options["boundary"] = flags[flags.index("-b") + 1]
    expected = np.stack([upconv.scale(plane.astype(np.float32) if dtype == "u2" else plane,
                                      method=method, **options) for plane in
                         (planes if planes.ndim == 4 else planes[None])])
    if dtype == "u2":
        expected = np.clip(np.rint(expected), 0, 65535)
    expected = expected.reshape(got.shape)
    tolerance = 1e-12 if method == "bicubic" and dtype == "f8" else (
        2e-6 if method == "bicubic" else 0)
    assert np.abs(got.astype(np.float64) - expected).max() <= tolerance
    iy, ix = layout.index("y"), layout.index("x")
    job = plan_zarr_job(values.shape, values.dtype, layout, chunks, method=method,
                        **({"factor": (options["factor"],) * 2} if "factor" in options
                           else {"size": (1808, 9), "fit": "fill"}))
    assert job.on_the_array_grid
    assert got.shape[iy] > zarr.open(str(tmp_path / "out.zarr"), mode="r").chunks[iy] or \
        got.shape[ix] > zarr.open(str(tmp_path / "out.zarr"), mode="r").chunks[ix]


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_bicubic_equals_the_in_memory_result_to_1e_12(tmp_path, rng, zarr_format, capsys):
    """The spline prefilter reaches the whole array; the halo leaves < 1e-12 of it."""
    image = rng.random((151, 133, 2))
    write_array(tmp_path / "in.zarr", image, (40, 48, 2), zarr_format)
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "-m", "bicubic", "--chunks", "50,60"]) == 0, capsys.readouterr().err
    expected = upconv.scale(image, 2, "bicubic")
    got = read(tmp_path / "out.zarr")
    assert np.abs(got - expected).max() < 1e-12
    assert zarr.open(str(tmp_path / "out.zarr"), mode="r").chunks == (50, 60, 2)


@pytest.mark.parametrize("method", ["nearest", "bilinear"])
@pytest.mark.parametrize("compressors", ["auto", None])
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_chunks_of_only_the_fill_value_are_left_out_as_zarr_does(tmp_path, rng, zarr_format,
                                                                 capsys, compressors, method):
    """A black background (zeros) is not stored, chunk by chunk, and reads back as zeros;
    negative zeros are not the fill value, bit for bit, and are stored (chunks written
    whole, or raw ones streamed a band at a time)."""
    image = np.zeros((64, 64, 1), np.float32)
    image[40:, 40:] = rng.random((24, 24, 1))
    image[:16, 48:] = -0.0
    if method == "bilinear":  # (its zeros: what a zero neighbourhood gives)
        image[:16, 48:] = 0.0
        image[:6, 56:] = -0.0
    write_array(tmp_path / "in.zarr", image, (16, 16, 1), zarr_format,
                compressors=compressors)
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "-m", method, "--pyramid", "1"]) == 0, capsys.readouterr().err
    expected = upconv.scale(image, 2, method)
    out = zarr.open(str(tmp_path / "out.zarr"), mode="r")
    got = out["0"][...]
    assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))  # -0.0 kept
    level = tmp_path / "out.zarr" / "0"
    stored = {path.relative_to(level).as_posix().removeprefix("c/")
              for path in level.rglob("*") if path.is_file()
              and path.name not in (".zarray", ".zattrs", "zarr.json")}
    written = {"/".join(map(str, index)) for index in np.ndindex(4, 4, 1)
               if expected[32 * index[0]:32 * index[0] + 32,
                           32 * index[1]:32 * index[1] + 32].view(np.uint32).any()}
    assert stored == written and 0 < len(written) < 16
    half = out["1"][...]  # the pyramid level, from the level with chunks left out
    mean = expected.reshape(64, 2, 64, 2, 1).mean(axis=(1, 3))
    # (the mean of four float32 values, summed in another order: to float32's round-off)
    np.testing.assert_allclose(half, mean, rtol=0, atol=0 if method == "nearest" else
                               4 * np.finfo(np.float32).eps)


@pytest.mark.parametrize("compressors", ["auto", None])
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_stored_chunks_are_the_bytes_zarr_itself_stores(tmp_path, rng, zarr_format, capsys,
                                                       compressors):
    """Edge chunks are sent whole, padded with the fill value: every stored chunk, edges
    included, is byte for byte what zarr stores for the same array and chunks (Zarr 3
    chunks streamed a band at a time, zstd ones compared decompressed; Zarr 2 through
    zarr)."""
    image = rng.random((53, 71, 3))
    write_array(tmp_path / "in.zarr", image, (16, 16, 3), zarr_format,
                compressors=compressors)
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "-m", "nearest"]) == 0, capsys.readouterr().err
    write_array(tmp_path / "zarr.zarr", upconv.scale(image, 2, "nearest"), (32, 32, 3),
                zarr_format, compressors=compressors)

    def chunks(store):
        files = {path.relative_to(store).as_posix(): path.read_bytes()
                 for path in store.rglob("*") if path.is_file()
                 and path.name not in (".zarray", ".zattrs", "zarr.json")}
        if compressors and zarr_format == 3:  # (streamed zstd: the same bytes, decompressed)
            from numcodecs import Zstd

            files = {key: Zstd().decode(data) for key, data in files.items()}
        return files

    ours, theirs = chunks(tmp_path / "out.zarr"), chunks(tmp_path / "zarr.zarr")
    assert len(ours) == 4 * 5 and ours == theirs


def test_local_chunks_are_read_whole_into_arrays(tmp_path, rng):
    """upconv's LocalStore reads a chunk file into a NumPy array (huge pages, not a new
    bytes object's small ones): the same values as zarr's own store, empty files too."""
    from zarr.core.buffer import default_buffer_prototype

    from upconv.zarr_local import LocalStore, read_whole_file

    image = rng.random((37, 29, 3)).astype(np.float32)
    write_array(tmp_path / "in.zarr", image, (16, 16, 3))
    ours = zarr.open_array(LocalStore(str(tmp_path / "in.zarr"), read_only=True))
    np.testing.assert_array_equal(ours[...], image)
    np.testing.assert_array_equal(ours[5:30, 3:20], read(tmp_path / "in.zarr")[5:30, 3:20])
    (tmp_path / "empty").write_bytes(b"")
    assert read_whole_file(tmp_path / "empty", default_buffer_prototype()).to_bytes() == b""
    (tmp_path / "data").write_bytes(bytes(range(256)) * 3)
    got = read_whole_file(tmp_path / "data", default_buffer_prototype())
    assert got.to_bytes() == bytes(range(256)) * 3
    from upconv.zarr_arrays import _store

    assert isinstance(_store(str(tmp_path / "in.zarr"), read_only=True), LocalStore)


@pytest.mark.parametrize("compressors", [None, "auto"])
def test_reused_read_buffers_never_change_what_a_reader_still_holds(tmp_path, rng,
                                                                    monkeypatch, compressors):
    """Chunk files read into reused arrays (here every read, made small): a raw chunk
    decoded as a view of the array it was read into keeps its values while it is held,
    whatever is read next, and whole reads of many chunks at once (zarr reads them
    concurrently) give the stored values; once nothing holds it, an array is read into
    again."""
    from zarr.core.buffer import default_buffer_prototype

    from upconv import zarr_local
    from upconv.memory import ReusedArrays

    monkeypatch.setattr(zarr_local, "_reads", ReusedArrays(most=4, smallest=1))
    image = rng.random((70, 50, 3)).astype(np.float32)
    write_array(tmp_path / "in.zarr", image, (16, 16, 3), compressors=compressors)
    ours = zarr.open_array(zarr_local.LocalStore(str(tmp_path / "in.zarr"), read_only=True))
    held = ours[0:16, 0:16]  # (a copy: zarr assembles the selection)
    for _ in range(3):
        np.testing.assert_array_equal(ours[...], image)
        np.testing.assert_array_equal(ours[5:60, 3:47], image[5:60, 3:47])
    np.testing.assert_array_equal(held, image[0:16, 0:16])
    prototype = default_buffer_prototype()
    first = zarr_local.read_whole_file(tmp_path / "in.zarr" / "c" / "0" / "0" / "0", prototype)
    view = first.as_numpy_array()
    before = view.copy()
    second = zarr_local.read_whole_file(tmp_path / "in.zarr" / "c" / "1" / "1" / "0", prototype)
    assert not np.shares_memory(view, second.as_numpy_array())
    np.testing.assert_array_equal(view, before)
    address = view.__array_interface__["data"][0]
    del first, view
    again = zarr_local.read_whole_file(tmp_path / "in.zarr" / "c" / "0" / "0" / "0", prototype)
    assert again.as_numpy_array().__array_interface__["data"][0] == address
    np.testing.assert_array_equal(again.as_numpy_array(), before)
    assert len(zarr_local._reads) > 0
    zarr_local.drop_read_buffers()
    assert len(zarr_local._reads) == 0


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_big_chunks_are_written_around_the_page_cache_as_zarr_writes_them(
        tmp_path, rng, monkeypatch, zarr_format):
    """A chunk of direct_writes.SMALLEST bytes or more (here made small) is written around
    the page cache: the same files as zarr's own store writes, no temporary file left, and
    a failed write leaves the chunk that was there and no temporary file."""
    from upconv import direct_writes
    from upconv.zarr_local import LocalStore

    monkeypatch.setattr(direct_writes, "SMALLEST", 4096)
    calls = []  # the writes given to the writer thread
    real = direct_writes.DirectWriter._give
    monkeypatch.setattr(direct_writes.DirectWriter, "_give", lambda self, views, *rest: (
        calls.append(sum(len(v) for v in views)), real(self, views, *rest))[1])
    image = rng.random((70, 50, 3))  # chunks of 32x32x3 float64: 24 KiB, some edges
    ours = zarr.create_array(LocalStore(str(tmp_path / "ours.zarr")), shape=image.shape,
                             chunks=(32, 32, 3), dtype=image.dtype, zarr_format=zarr_format)
    ours[...] = image
    write_array(tmp_path / "zarr.zarr", image, (32, 32, 3), zarr_format)
    assert calls and max(calls) >= 4096

    def files(store):
        return {path.relative_to(store).as_posix(): path.read_bytes()
                for path in store.rglob("*") if path.is_file()}

    assert files(tmp_path / "ours.zarr") == files(tmp_path / "zarr.zarr")
    assert len(files(tmp_path / "ours.zarr")) == 3 * 2 + 1 + (zarr_format == 2)

    def fail(self, data, kept=False):
        os.ftruncate(self.fd, 4)  # (half a chunk in the file)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(direct_writes.DirectWriter, "write", fail)
    with pytest.raises(OSError, match="No space"):
        ours[:32, :32] = rng.random((32, 32, 3))  # (random: compressed, still 4 KiB+)
    assert files(tmp_path / "ours.zarr") == files(tmp_path / "zarr.zarr")
    np.testing.assert_array_equal(read(tmp_path / "ours.zarr"), image)


def test_a_chunk_is_empty_only_when_every_value_is_zero_bit_for_bit():
    """The test stops at the first piece with a value that is not zero: one at the very end
    of a chunk of several pieces still counts, and so does a -0.0; any other fill value
    stores every chunk."""
    from upconv.zarr_arrays import _FILL_TEST_WORDS, _only_fill

    chunk = np.zeros((3 * _FILL_TEST_WORDS + 5) * 2, np.float32)
    assert _only_fill(chunk, 0.0) and _only_fill(chunk.reshape(-1, 2), 0)
    chunk[-1] = 1e-30
    assert not _only_fill(chunk, 0.0)
    chunk[-1] = -0.0
    assert not _only_fill(chunk, 0.0)
    assert not _only_fill(np.zeros((8, 8)), 1.0) and not _only_fill(np.zeros((8, 8)), None)
    strided = np.zeros((4 * _FILL_TEST_WORDS, 2), np.uint16)[:, 0]
    assert _only_fill(strided, 0)
    strided[-1] = 1
    assert not _only_fill(strided, 0)


def _chunk_files(store: Path) -> dict[str, bytes]:
    return {path.relative_to(store).as_posix(): path.read_bytes()
            for path in store.rglob("*") if path.is_file() and path.name != "zarr.json"}


@pytest.mark.parametrize("compressors", [None, "auto"])
@pytest.mark.parametrize("top,left", [(0, 0), (16, 12)])
@pytest.mark.parametrize("bands", [[5, 11, 1, 20, 8], [45], [1] * 45])
def test_streamed_chunks_are_the_bytes_zarr_stores(tmp_path, rng, bands, top, left,
                                                   compressors):
    """Bands of rows that cross chunks' rows, given with any strides, into Zarr 3 chunks:
    the same files as zarr's own store writes for the same values (edges padded with the
    fill value, a chunk of zeros left out, one of -0.0 kept), and nothing else; zstd
    chunks hold the same bytes once decompressed."""
    from upconv.zarr_arrays import streamed_chunks, whole_chunks
    from upconv.zarr_local import LocalStore

    values = rng.random((45, 37, 2)).astype(np.float32)
    values[16:32, 12:24] = 0.0
    values[0:16, 24:36] = -0.0
    ours = zarr.create_array(LocalStore(str(tmp_path / "ours.zarr")), shape=values.shape,
                             chunks=(16, 12, 2), dtype="f4", compressors=compressors)
    theirs = zarr.create_array(str(tmp_path / "zarr.zarr"), shape=values.shape,
                               chunks=(16, 12, 2), dtype="f4", compressors=compressors)
    theirs[top:, left:] = values[top:, left:]
    region = (slice(top, 45), slice(left, 37), slice(0, 2))
    wide = np.zeros((45, 37 + 9, 2), np.float32)  # rows of a wider band: strided
    wide[:, 4:41] = values
    with streamed_chunks(whole_chunks(ours), region, 2) as chunks:
        first = top
        for size in bands:
            last = min(45, first + size)
            if first < last:
                chunks.write(wide[first:last, 4 + left:41])
            first = last
        assert chunks.close() == (3 - top // 16) * (4 - left // 12)
    assert sum(bands) >= 45 - top
    files = {name: _chunk_files(tmp_path / name) for name in ("ours.zarr", "zarr.zarr")}
    if compressors:
        from numcodecs import Zstd

        files = {name: {key: Zstd().decode(data) for key, data in chunks.items()}
                 for name, chunks in files.items()}
    assert files["ours.zarr"] == files["zarr.zarr"]
    assert len(files["ours.zarr"]) == (
        11 if top == 0 else 2 * 3 - 1)  # (the chunk of zeros left out)
    np.testing.assert_array_equal(ours[top:, left:], values[top:, left:])


@pytest.mark.parametrize("compressors", [None, "auto"])
@pytest.mark.parametrize("dtype,fill", [(np.uint16, 7), (np.float32, np.nan), ("i8", 0)])
def test_streamed_chunks_of_other_types_and_fill_values(tmp_path, rng, dtype, fill,
                                                        compressors, monkeypatch):
    """Other types and fill values, at a path inside the store (a level of a group): the
    same chunks as zarr's; a chunk of nothing but a zero fill value opens no file at all;
    one of another fill value is stored (zarr would leave it out; it reads the same)."""
    from upconv import zarr_local
    from upconv.zarr_arrays import streamed_chunks, whole_chunks

    opened = []
    real = zarr_local.ChunkFile.__init__
    monkeypatch.setattr(zarr_local.ChunkFile, "__init__", lambda self, path, size, **kw: (
        opened.append(path.relative_to(tmp_path / "ours.zarr").as_posix()),
        real(self, path, size, **kw))[1])
    values = (rng.random((40, 30, 3)) * 1000).astype(dtype)
    values[16:32, 16:30] = 0 if fill == 0 else fill
    options = dict(shape=values.shape, chunks=(16, 16, 3), dtype=values.dtype,
                   fill_value=fill, compressors=compressors)
    group = zarr.open_group(zarr_local.LocalStore(str(tmp_path / "ours.zarr")), mode="w")
    ours = group.create_array("0", **options)
    theirs = zarr.open_group(str(tmp_path / "zarr.zarr"), mode="w").create_array(
        "0", **options)
    theirs[...] = values
    with streamed_chunks(whole_chunks(ours), (slice(0, 40), slice(0, 30), slice(0, 3)),
                         3) as chunks:
        for first in range(0, 40, 6):
            chunks.write(values[first:first + 6])
        assert chunks.close() == 6
    files = {name: _chunk_files(tmp_path / name) for name in ("ours.zarr", "zarr.zarr")}
    if compressors:
        from numcodecs import Zstd

        files = {name: {key: Zstd().decode(data) for key, data in chunks.items()}
                 for name, chunks in files.items()}
    # (a chunk of another fill value is stored: upconv's outputs' fill value is zero)
    extra = files["ours.zarr"].pop("0/c/1/1/0", None)
    assert files["ours.zarr"] == files["zarr.zarr"]
    assert (extra is not None) == (fill != 0)
    if extra is not None:
        np.testing.assert_array_equal(np.frombuffer(extra, values.dtype), fill)
    assert len(opened) == (6 if fill != 0 else 5)
    np.testing.assert_array_equal(zarr.open_group(str(tmp_path / "ours.zarr"))["0"][...],
                                  values)


def test_chunks_are_streamed_only_where_they_are_raw_or_zstd_in_a_local_zarr_3_array(
        tmp_path, monkeypatch):
    from upconv import zarr_zstd
    from upconv.zarr_arrays import streamed_chunks
    from upconv.zarr_local import LocalStore

    def array(name, shape=(40, 30, 3), chunks=(16, 16, 3), store=None, **options):
        options.setdefault("compressors", None)
        return zarr.create_array(store if store is not None else
                                 LocalStore(str(tmp_path / name)), shape=shape,
                                 chunks=chunks, dtype="f4", **options)

    whole = (slice(0, 40), slice(0, 30), slice(0, 3))
    assert streamed_chunks(array("raw.zarr"), whole, 3) is not None
    assert streamed_chunks(array("yx.zarr", (40, 30), (16, 16)), whole[:2], 1) is not None
    assert streamed_chunks(array("raw.zarr", overwrite=True),
                           (slice(16, 40), slice(16, 30), slice(0, 3)), 3) is not None
    assert streamed_chunks(array("zstd.zarr", compressors="auto"), whole, 3) is not None
    assert streamed_chunks(array("gzip.zarr", compressors=zarr.codecs.GzipCodec()),
                           whole, 3) is None
    monkeypatch.setattr(zarr_zstd, "zstd_library", lambda: None)
    assert streamed_chunks(array("zstd.zarr", compressors="auto", overwrite=True),
                           whole, 3) is None
    monkeypatch.delattr(os, "pwritev")  # (a platform without positioned writes)
    assert streamed_chunks(array("raw.zarr", overwrite=True), whole, 3) is None
    assert streamed_chunks(array("v2.zarr", zarr_format=2), whole, 3) is None
    assert streamed_chunks(array("mem", store={}), whole, 3) is None
    assert streamed_chunks(array("c1.zarr", chunks=(16, 16, 1)), whole, 3) is None
    assert streamed_chunks(array("cyx.zarr", (3, 40, 30), (3, 16, 16)),
                           (slice(0, 3), slice(0, 40), slice(0, 30)), 30) is None
    assert streamed_chunks(array("raw.zarr", overwrite=True),
                           (slice(8, 40), slice(0, 30), slice(0, 3)), 3) is None


@pytest.mark.parametrize("failing", ["ftruncate", "replace"])
def test_a_chunk_file_that_cannot_be_committed_leaves_nothing(tmp_path, monkeypatch,
                                                              failing):
    """ChunkFile: cut to what was written (less than the space set aside) and renamed; a
    failure doing either leaves neither the chunk nor its temporary file."""
    from upconv.zarr_local import ChunkFile

    path = tmp_path / "c" / "0"
    with ChunkFile(path, 100) as chunk:
        chunk.write(b"0123456789")
        chunk.commit()
    assert path.read_bytes() == b"0123456789"
    path.unlink()

    def fail(*args):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match="Input/output"):
        with ChunkFile(path, 100) as chunk:
            chunk.write(b"0123456789")
            chunk.commit()
    assert list(path.parent.iterdir()) == []


@pytest.mark.parametrize("compressors", [None, "auto"])
def test_a_failed_streamed_chunk_leaves_nothing_under_its_name(tmp_path, rng, monkeypatch,
                                                               compressors):
    """A write that fails half-way through a row of chunks: the chunks already complete
    stay, the others are absent, no temporary file is left, and (zstd) the compression
    contexts serve the next chunks."""
    from upconv import zarr_local, zarr_zstd
    from upconv.zarr_arrays import streamed_chunks, whole_chunks

    values = rng.random((32, 32)).astype(np.float32)
    ours = zarr.create_array(zarr_local.LocalStore(str(tmp_path / "ours.zarr")),
                             shape=values.shape, chunks=(16, 16), dtype="f4",
                             compressors=compressors)
    real = zarr_local.ChunkFile.write

    def failing(self, data, kept=False):
        if self.path.as_posix().endswith("c/1/0"):  # the second row of chunks' first
            raise OSError(28, "No space left on device")
        real(self, data, kept)

    monkeypatch.setattr(zarr_local.ChunkFile, "write", failing)
    with pytest.raises(OSError, match="No space"):
        with streamed_chunks(whole_chunks(ours), (slice(0, 32), slice(0, 32)), 1) as chunks:
            for first in range(0, 32, 8):
                chunks.write(values[first:first + 8, :, None])
    files = _chunk_files(tmp_path / "ours.zarr")
    assert sorted(files) == ["c/0/0", "c/0/1"]
    np.testing.assert_array_equal(ours[:16], values[:16])
    np.testing.assert_array_equal(ours[16:], 0)
    monkeypatch.setattr(zarr_local.ChunkFile, "write", real)
    if compressors:  # (the failed frame's context was given back, and serves again)
        assert len(zarr_zstd._contexts.frames) >= 1
    with streamed_chunks(whole_chunks(ours), (slice(0, 32), slice(0, 32)), 1) as chunks:
        for first in range(0, 32, 8):
            chunks.write(values[first:first + 8, :, None])
        chunks.close()
    np.testing.assert_array_equal(ours[...], values)


@pytest.mark.parametrize("method,dtype,layout", [("bicubic", np.float32, "yxc"),
                                                 ("nearest", np.uint16, "yxc"),
                                                 ("bilinear", np.uint8, "yx"),
                                                 ("transpose", np.float64, "yxc")])
@pytest.mark.parametrize("compressors", [None, "auto"])
@pytest.mark.parametrize("around", [False, True])
def test_zarr_3_outputs_are_streamed_and_equal_the_in_memory_result(
        tmp_path, rng, monkeypatch, method, dtype, layout, capsys, compressors, around):
    """Raw and zstd Zarr 3 chunks in a local store never go through write_chunks (which
    fails here): each band goes into the chunk files as computed; odd sizes, several
    blocks; through the page cache, and (every chunk made big enough) around it."""
    from upconv import direct_writes, zarr_arrays

    if around:
        monkeypatch.setattr(direct_writes, "SMALLEST", 0)

    def refused(*args):
        raise AssertionError("not streamed")

    monkeypatch.setattr(zarr_arrays, "write_chunks", refused)
    shape = (53, 71, 3) if layout == "yxc" else (53, 71)
    image = rng.random(shape)
    if dtype != np.float64:
        image = (image * (np.iinfo(dtype).max if dtype != np.float32 else 1)).astype(dtype)
    write_array(tmp_path / "in.zarr", image, (16, 16, 3)[:len(shape)],
                compressors=compressors)
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "-m", method, "--layout", layout]) == 0, capsys.readouterr().err
    planes = image if layout == "yxc" else image[..., None]
    if dtype in (np.uint8, np.uint16):
        values = upconv.scale(planes.astype(np.float32), 2, method)
        expected = np.clip(np.rint(values), 0, np.iinfo(dtype).max).astype(dtype)
    else:
        expected = upconv.scale(planes, 2, method)
    got = read(tmp_path / "out.zarr")
    if layout == "yx":
        expected = expected[..., 0]
    assert got.dtype == expected.dtype and got.shape == expected.shape
    tolerance = 4 * np.finfo(np.float32).eps if method == "bicubic" else 0
    assert np.abs(got.astype(np.float64) - expected).max() <= tolerance


@pytest.mark.parametrize("method", ["bicubic", "transpose"])
def test_streamed_rows_go_around_the_page_cache_from_the_band_itself(
        tmp_path, rng, monkeypatch, capsys, method):
    """Rows of a whole chunk whose length is a multiple of the disk's block are written
    around the page cache from the band buffer they were computed in (no copy), the edge
    chunks' rows through buffers of the writer's own; the result is the in-memory one."""
    from upconv import direct_writes

    monkeypatch.setattr(direct_writes, "SMALLEST", 0)
    lent, copied = [], []
    real = direct_writes.DirectWriter._give

    def give(self, views, position, buffer):
        (copied if buffer is not None else lent).append(len(views))
        if buffer is None:
            assert all(direct_writes._address(view) % direct_writes.ALIGNMENT == 0
                       for view in views)
        return real(self, views, position, buffer)

    monkeypatch.setattr(direct_writes.DirectWriter, "_give", give)
    image = rng.random((53, 71, 4)).astype(np.float32)  # out: chunk rows of 32x4 float32
    write_array(tmp_path / "in.zarr", image, (16, 16, 4), compressors=None)
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "-m", method]) == 0, capsys.readouterr().err
    assert lent and copied
    tolerance = 4 * np.finfo(np.float32).eps if method == "bicubic" else 0
    np.testing.assert_allclose(read(tmp_path / "out.zarr"), upconv.scale(image, 2, method),
                               rtol=0, atol=tolerance)


@pytest.mark.parametrize("region", [(0, 10), (4, 10), (0, 4), (8, 10), (2, 4), (2, 8)])
def test_write_chunks_equals_plain_assignment(region):
    """Aligned regions (whole and edge chunks, sent whole through whole_chunks), and any
    other region (assigned as it is), into zarr's in-memory store, which keeps the arrays
    it is given (so reused buffers must not reach it)."""
    from upconv.zarr_arrays import whole_chunks, write_chunks

    first, last = region
    expected = np.arange(100, 110).astype(np.int32)
    expected[first:last] = np.arange(1, last - first + 1)
    expected[first:last][:1] = 0  # (a zero: not a whole chunk of them, so stored)
    array = zarr.create_array(store={}, shape=(10,), chunks=(4,), dtype="i4",
                              compressors=None, config={"write_empty_chunks": True})
    array[...] = np.arange(100, 110)
    assert write_chunks(whole_chunks(array), (slice(first, last),),
                        expected[first:last].copy()) == -(-(last - first) // 4)
    np.testing.assert_array_equal(array[...], expected)
    other = zarr.create_array(store={}, shape=(10,), chunks=(4,), dtype="i4",
                              compressors=None, config={"write_empty_chunks": True})
    write_chunks(whole_chunks(other), (slice(8, 10),), np.array([-1, -2], np.int32))
    np.testing.assert_array_equal(array[...], expected)  # its edge chunk is its own
    zeros = zarr.create_array(store={}, shape=(10,), chunks=(4,), dtype="i4",
                              compressors=None, config={"write_empty_chunks": True})
    write_chunks(whole_chunks(zeros), (slice(0, 10),), np.zeros(10, np.int32))
    assert list(zeros.store_path.store._store_dict) == ["zarr.json"]  # none stored


def test_float32_bicubic_and_rational_factors(tmp_path, rng, capsys):
    image = rng.random((120, 96, 1)).astype(np.float32)
    write_array(tmp_path / "in.zarr", image, (32, 32, 1))
    for factor, method in (("2", "bicubic"), ("1.5", "bilinear"), ("1.5", "nearest"),
                           ("3x2", "bilinear")):
        out = tmp_path / f"out-{factor}-{method}.zarr"
        assert run(["scale", str(tmp_path / "in.zarr"), str(out), "-f", factor, "-m",
                    method]) == 0, capsys.readouterr().err
        fx, _, fy = factor.partition("x")
        expected = upconv.scale(image, (float(fy or fx), float(fx)), method)
        got = read(out)
        assert got.dtype == np.float32 and got.shape == expected.shape
        # float32: the blocks' spline start-up error is far below float32's round-off
        tolerance = 4 * np.finfo(np.float32).eps if method == "bicubic" else 0
        assert np.abs(got - expected).max() <= tolerance, (factor, method)


def test_integer_arrays_keep_their_type_rounded_and_clipped(tmp_path, rng, capsys):
    image = (rng.random((64, 80)) * 65535).astype(np.uint16)
    write_array(tmp_path / "in.zarr", image, (24, 24))
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "-m", "bicubic"]) == 0, capsys.readouterr().err
    values = upconv.scale(image.astype(np.float32), 2, "bicubic")
    expected = np.clip(np.rint(values), 0, 65535).astype(np.uint16)
    got = read(tmp_path / "out.zarr")
    assert got.dtype == np.uint16
    # float32 round-off can move a value across a .5 and round it one step the other way
    assert np.abs(got.astype(int) - expected).max() <= 1
    assert (got == expected).mean() > 0.999
    labels = (rng.random((30, 40)) * 7).astype(np.int32)
    write_array(tmp_path / "labels.zarr", labels, (16, 16))
    assert run(["scale", str(tmp_path / "labels.zarr"), str(tmp_path / "labels2.zarr"),
                "-f", "3", "-m", "nearest"]) == 0
    np.testing.assert_array_equal(read(tmp_path / "labels2.zarr"), np.kron(labels, np.ones(
        (3, 3), np.int32)))


def test_layout_carries_the_other_axes(tmp_path, rng, capsys):
    """tczyx: y and x scaled, every (t, z) plane on its own, c the channels."""
    data = rng.random((2, 3, 4, 37, 29))
    write_array(tmp_path / "in.zarr", data, (1, 3, 2, 16, 16))
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "-m", "bilinear", "--layout", "tczyx"]) == 0, capsys.readouterr().err
    planes = np.moveaxis(data, 1, -1)  # t z y x c
    expected = np.moveaxis(reference(planes, 2, "bilinear"), -1, 1)
    np.testing.assert_array_equal(read(tmp_path / "out.zarr"), expected)
    assert zarr.open(str(tmp_path / "out.zarr"), mode="r").chunks == (1, 3, 2, 32, 32)
    # --chunks for every axis: the carried ones too, y and x as the blocks
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out2.zarr"), "-f", "2",
                "-m", "bilinear", "--layout", "tczyx", "--chunks", "2,2,3,20,50"]) == 0
    np.testing.assert_array_equal(read(tmp_path / "out2.zarr"), expected)
    assert zarr.open(str(tmp_path / "out2.zarr"), mode="r").chunks == (2, 2, 3, 20, 50)


def test_a_channel_mixing_kernel_sees_every_channel(tmp_path, rng, capsys):
    """A ConvTranspose2d weight (C_in=3, C_out=2) on a cyx array whose channels are chunked
    one by one: the blocks take all channels, the output has C_out."""
    data = rng.random((3, 40, 36))
    write_array(tmp_path / "in.zarr", data, (1, 16, 16))
    weights = rng.standard_normal((3, 2, 4, 4))
    np.save(tmp_path / "w.npy", weights)
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "-m", "transpose", "-k", str(tmp_path / "w.npy"), "--padding", "1",
                "--layout", "cyx"]) == 0, capsys.readouterr().err
    kernel = upconv.Kernel(weights, stride=2)
    expected = upconv.scale(np.moveaxis(data, 0, -1), 2, "transpose", kernel=kernel,
                            padding=1)
    np.testing.assert_allclose(read(tmp_path / "out.zarr"), np.moveaxis(expected, -1, 0),
                               rtol=0, atol=1e-12)


# ------------------------------------------------------------------ OME-Zarr

def ome_image(path, data: np.ndarray, zarr_format: int, chunks) -> dict:
    """An OME-Zarr image (0.4 on Zarr 2, 0.5 on Zarr 3) of one level, with a scale and a
    translation, a name and omero channel metadata."""
    axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"}]
    multiscale = {"name": "cells", "axes": axes, "datasets": [{"path": "0",
                  "coordinateTransformations": [{"type": "scale", "scale": [1.0, 0.5, 0.25]},
                                                {"type": "translation",
                                                 "translation": [0.0, 10.0, 20.0]}]}]}
    omero = {"channels": [{"label": "DAPI", "color": "0000FF"}, {"label": "GFP"}]}
    if zarr_format == 2:
        multiscale["version"] = "0.4"
        attributes = {"multiscales": [multiscale], "omero": omero}
    else:
        attributes = {"ome": {"version": "0.5", "multiscales": [multiscale], "omero": omero}}
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    group.attrs.put(attributes)
    extra = {"chunk_key_encoding": {"name": "v2", "separator": "/"}} if zarr_format == 2 else {
        "dimension_names": ["c", "y", "x"]}
    array = group.create_array("0", shape=data.shape, chunks=chunks, dtype=data.dtype, **extra)
    array[...] = data
    return attributes


def multiscale_of(attributes: dict) -> dict:
    return (attributes["ome"] if "ome" in attributes else attributes)["multiscales"][0]


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_ome_zarr_axes_metadata_and_pyramid(tmp_path, rng, zarr_format, capsys):
    data = (rng.random((2, 45, 38)) * 255).astype(np.uint8)
    ome_image(tmp_path / "in.zarr", data, zarr_format, (1, 16, 16))
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "-m", "bilinear", "--pyramid", "2"]) == 0, capsys.readouterr().err
    group = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    attributes = group.attrs.asdict()
    multiscale = multiscale_of(attributes)
    # kept: the name, the axes, the channel metadata, the version
    assert multiscale["name"] == "cells" and [a["name"] for a in multiscale["axes"]] == list(
        "cyx")
    assert (attributes.get("ome", attributes))["omero"]["channels"][0]["label"] == "DAPI"
    if zarr_format == 2:
        assert multiscale["version"] == "0.4"
    else:
        assert attributes["ome"]["version"] == "0.5"
    # level 0: the in-memory result, axes from the metadata (c first)
    values = upconv.scale(np.moveaxis(data, 0, -1).astype(np.float32), 2, "bilinear")
    level0 = np.moveaxis(np.clip(np.rint(values), 0, 255).astype(np.uint8), -1, 0)
    np.testing.assert_array_equal(group["0"][...], level0)
    # levels 1 and 2: 2x2 means of the level above (odd sides averaged with themselves)
    above = group["0"][...].astype(np.float64)
    for level in (1, 2):
        padded = np.pad(above, ((0, 0), (0, above.shape[1] % 2), (0, above.shape[2] % 2)),
                        mode="edge")
        mean = padded.reshape(2, padded.shape[1] // 2, 2, padded.shape[2] // 2, 2).mean((2, 4))
        expected = np.clip(np.rint(mean), 0, 255).astype(np.uint8)
        got = group[str(level)][...]
        np.testing.assert_array_equal(got, expected)
        above = got.astype(np.float64)
    # coordinate transformations: pixel size halved, the first centre a quarter pixel back
    datasets = multiscale["datasets"]
    assert [d["path"] for d in datasets] == ["0", "1", "2"]
    scale0, shift0 = (t for t in datasets[0]["coordinateTransformations"])
    assert scale0["scale"] == [1.0, 0.25, 0.125]
    assert shift0["translation"] == [0.0, 10.0 - 0.125, 20.0 - 0.0625]
    scale2, shift2 = datasets[2]["coordinateTransformations"]
    assert scale2["scale"] == [1.0, 1.0, 0.5]
    # level 2's first pixel covers level 0's first 4: its centre 1.5 level-0 pixels on
    assert shift2["translation"] == [0.0, 10.0 - 0.125 + 1.5 * 0.25, 20.0 - 0.0625 + 1.5 * 0.125]
    if zarr_format == 2:  # OME-Zarr 0.4 keys chunks with "/"
        assert os.path.isdir(tmp_path / "out.zarr" / "0" / "0")


def test_store_path_chooses_an_array_in_a_group(tmp_path, rng, capsys):
    group = zarr.open_group(str(tmp_path / "in.zarr"), mode="w")
    image = rng.random((20, 24))
    group.create_array("raw", shape=image.shape, chunks=(8, 8), dtype=image.dtype)[...] = image
    group.create_array("other", shape=(3,), dtype="f8")
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f",
                "2"]) == 1
    err = capsys.readouterr().err
    assert "STORE:PATH" in err and "raw" in err and len(err.strip().splitlines()) == 1
    assert run(["scale", f"{tmp_path / 'in.zarr'}:raw", str(tmp_path / "out.zarr"), "-f", "2",
                "-m", "bilinear"]) == 0
    np.testing.assert_array_equal(read(tmp_path / "out.zarr"),
                                  upconv.scale(image, 2, "bilinear"))


def test_pyramid_of_a_plain_array_writes_ome_zarr(tmp_path, rng, capsys):
    image = rng.random((32, 40, 3)).astype(np.float32)
    write_array(tmp_path / "in.zarr", image, (16, 16, 3))
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "-m", "nearest", "--pyramid", "1"]) == 0, capsys.readouterr().err
    attributes = zarr.open_group(str(tmp_path / "out.zarr"), mode="r").attrs.asdict()
    multiscale = multiscale_of(attributes)
    assert [a["name"] for a in multiscale["axes"]] == ["y", "x", "c"]
    np.testing.assert_array_equal(read(tmp_path / "out.zarr", "0"), upconv.scale(
        image, 2, "nearest"))
    # nearest x2 then a 2x2 mean gives the input back
    np.testing.assert_array_equal(read(tmp_path / "out.zarr", "1"), image)


# ------------------------------------------------------------------ bad input, nothing lost

def test_bad_input_gets_one_line_and_writes_nothing(tmp_path, rng, capsys):
    image = rng.random((20, 20))
    write_array(tmp_path / "in.zarr", image, (8, 8))
    cases = [
        ([str(tmp_path / "missing.zarr"), str(tmp_path / "o.zarr"), "-f", "2"], "no Zarr store"),
        ([f"{tmp_path / 'in.zarr'}:nope", str(tmp_path / "o.zarr"), "-f", "2"], "'nope'"),
        ([str(tmp_path / "in.zarr"), str(tmp_path / "o.png"), "-f", "2"], "Zarr stores"),
        ([str(tmp_path / "in.zarr"), str(tmp_path / "o.zarr"), "-f", "2", "--layout", "yxc"],
         "names 3 axes"),
        ([str(tmp_path / "in.zarr"), str(tmp_path / "o.zarr"), "-f", "2", "--chunks", "0,4"],
         "--chunks"),
        ([str(tmp_path / "in.zarr"), str(tmp_path / "o.zarr"), "-f", "2", "--chunks", "7,8"],
         "use a multiple of 2, such as 6"),
        ([str(tmp_path / "in.zarr"), str(tmp_path / "in.zarr"), "-f", "2", "-y"],
         "overwrite the input"),
        ([str(tmp_path / "in.zarr"), str(tmp_path / "o.zarr"), "-f", "2", "--tile", "64"],
         "--tile"),
    ]
    for args, words in cases:
        status = run(["scale", *args])
        err = capsys.readouterr().err
        assert status in (1, 2), args
        assert words in err and "Traceback" not in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err
    assert sorted(os.listdir(tmp_path)) == ["in.zarr"]
    np.testing.assert_array_equal(read(tmp_path / "in.zarr"), image)


def test_chunks_that_are_not_whole_periods_are_a_usage_error(tmp_path, rng, capsys):
    """--chunks that the job's grid cannot take are a bad option value (status 2, as a
    bad --layout is), named with the nearest that it can, and nothing is written."""
    write_array(tmp_path / "in.zarr", rng.random((20, 20)), (8, 8))
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "o.zarr"), "-f", "1.5",
                "--chunks", "10,12"]) == 2
    err = capsys.readouterr().err
    assert "Invalid value for --chunks: 10 is not" in err and "such as 9" in err, err
    assert "'upconv scale --help'" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert sorted(os.listdir(tmp_path)) == ["in.zarr"]


def test_an_option_value_error_anywhere_is_a_usage_error(tmp_path, rng, capsys, monkeypatch):
    """An OptionValueError that no command turned into click's own usage error is still
    status 2, in one line."""
    import upconv.cli.scale as scale_command
    from upconv.errors import OptionValueError

    def refuse(*args, **kwargs):
        raise OptionValueError("--chunks", "not for this job")

    monkeypatch.setattr(scale_command, "_run_zarr", refuse)
    write_array(tmp_path / "in.zarr", rng.random((20, 20)), (8, 8))
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "o.zarr"), "-f", "2"]) == 2
    assert capsys.readouterr().err == "upconv: error: --chunks: not for this job\n"


def test_a_layout_that_names_no_axes_is_a_usage_error(tmp_path, rng, capsys):
    """--layout with letters outside tczyx is a bad option (status 2, before any reading);
    one that does not fit the array is bad input (status 1)."""
    write_array(tmp_path / "in.zarr", rng.random((20, 20)), (8, 8))
    for layout, status, words in (("qqq", 2, "letters of 'tczyx'"), ("yyx", 2, "each axis once"),
                                  ("tyx", 1, "names 3 axes")):
        assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "o.zarr"), "-f", "2",
                    "--layout", layout]) == status, layout
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err
    assert sorted(os.listdir(tmp_path)) == ["in.zarr"]


def test_a_plain_group_lists_the_arrays_inside_it(tmp_path, capsys):
    """A group that is not an OME-Zarr image is refused with the arrays it holds, at any
    depth, so that STORE:PATH can name one."""
    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    group.create_group("raw").create_array("0", shape=(8, 8), dtype="f4")
    group.create_array("mask", shape=(8, 8), dtype="u1")
    assert run(["scale", str(tmp_path / "g.zarr"), str(tmp_path / "o.zarr"), "-f", "2"]) == 1
    err = capsys.readouterr().err
    assert "(arrays here: mask, raw/0)" in err and len(err.strip().splitlines()) == 1, err


def test_an_existing_store_is_replaced_only_with_overwrite(tmp_path, rng, capsys):
    image = rng.random((20, 20))
    write_array(tmp_path / "in.zarr", image, (8, 8))
    write_array(tmp_path / "out.zarr", np.zeros((3, 3)), (3, 3))
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2"]) == 1
    assert "exists" in capsys.readouterr().err
    np.testing.assert_array_equal(read(tmp_path / "out.zarr"), np.zeros((3, 3)))
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "-m", "nearest", "-y"]) == 0
    np.testing.assert_array_equal(read(tmp_path / "out.zarr"), np.kron(image, np.ones((2, 2))))
    assert sorted(os.listdir(tmp_path)) == ["in.zarr", "out.zarr"]


def test_a_failure_mid_job_leaves_no_store(tmp_path, rng, capsys):
    """A chunk that cannot be decoded: one line naming the output, no store, no temporary."""
    image = rng.random((64, 64))
    write_array(tmp_path / "in.zarr", image, (16, 16))
    (tmp_path / "in.zarr" / "c" / "2" / "3").write_bytes(b"not zstd at all")
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2"]) == 1
    err = capsys.readouterr().err
    assert "out.zarr" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["in.zarr"]


# ------------------------------------------------------------------ in a bucket

@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_in_a_bucket_equals_the_local_result(tmp_path, rng, bucket, s3_env, zarr_format,
                                                  capsys):
    """Local to bucket, bucket to bucket (OME-Zarr), bucket to local; each as in memory."""
    data = rng.random((2, 45, 38))
    ome_image(tmp_path / "in.zarr", data, zarr_format, (1, 16, 16))
    assert run(["scale", str(tmp_path / "in.zarr"), f"{bucket}/a.zarr", "-f", "2", "-m",
                "bilinear"]) == 0, capsys.readouterr().err
    assert run(["scale", f"{bucket}/a.zarr", f"{bucket}/b.zarr", "-f", "2", "-m",
                "nearest"]) == 0, capsys.readouterr().err
    assert run(["scale", f"{bucket}/b.zarr:0", str(tmp_path / "c.zarr"), "-f", "2",
                "-m", "nearest"]) == 0, capsys.readouterr().err
    step = upconv.scale(np.moveaxis(data, 0, -1), 2, "bilinear")
    expected = np.kron(step, np.ones((4, 4, 1)))
    np.testing.assert_array_equal(np.moveaxis(read(tmp_path / "c.zarr", "0"), 0, -1), expected)
    # the bucket's store is OME-Zarr: its group metadata, read independently with boto3
    key = "b.zarr/zarr.json" if zarr_format == 3 else "b.zarr/.zattrs"
    metadata = json.loads(s3_env.client().get_object(
        Bucket=bucket.removeprefix("s3://"), Key=key)["Body"].read())
    attributes = metadata.get("attributes", metadata)
    assert multiscale_of(attributes)["name"] == "cells"
    # not replaced without -y; never the input, whatever alias of s3:// names it
    assert run(["scale", str(tmp_path / "in.zarr"), f"{bucket}/a.zarr", "-f", "2"]) == 1
    assert "exists" in capsys.readouterr().err
    alias = bucket.replace("s3://", "s3a://")
    assert run(["scale", f"{bucket}/a.zarr", f"{alias}/a.zarr/", "-f", "2", "-y"]) == 1
    assert "would overwrite the input" in capsys.readouterr().err


@pytest.mark.parametrize("compressors", [None, "auto"])
def test_chunks_into_a_bucket_are_sent_a_part_at_a_time(tmp_path, rng, bucket, s3_env,
                                                        capsys, monkeypatch, compressors):
    """Output chunks into S3 are streamed as their rows come, each a multipart upload of
    parts of PART_SIZE (5 MiB here: 12 MiB chunks, raw or zstd), numbered from 1 and whole
    only once complete: the first part goes before the chunk's last rows are computed, the
    values are those computed in memory, and no upload is left over."""
    from upconv import storage, zarr_arrays

    monkeypatch.setattr(storage, "PART_SIZE", 5 << 20)
    rows_written = []
    writing = zarr_arrays.StreamedChunks.write
    monkeypatch.setattr(zarr_arrays.StreamedChunks, "write", lambda self, rows: (
        rows_written.append(len(rows)), writing(self, rows))[1])
    sent: dict[str, list[int]] = {}
    rows_before_first_part = []
    sending = storage.S3PartUpload.send

    def send(self, number, data):
        sent.setdefault(self.url, []).append(number)
        if number == 1:
            rows_before_first_part.append(sum(rows_written))
        return sending(self, number, data)

    monkeypatch.setattr(storage.S3PartUpload, "send", send)
    image = rng.random((600, 600, 3), dtype=np.float32)
    write_array(tmp_path / "in.zarr", image, (512, 512, 3), compressors=compressors)
    assert run(["scale", str(tmp_path / "in.zarr"), f"{bucket}/out.zarr", "-f", "2",
                "-m", "bilinear", "--quiet", "--threads", "1"]) == 0, capsys.readouterr().err
    if compressors is None:  # four chunks of 12 MiB (edge chunks whole), three parts each
        assert len(sent) == 4 and all(parts == [1, 2, 3] for parts in sent.values()), sent
    else:  # (the full chunk compressed in parts; those mostly padding may be one PUT each)
        assert sent and all(parts == list(range(1, len(parts) + 1))
                            for parts in sent.values()), sent
    # (one block at a time: the first chunk's first part goes out with its first band of
    # 512 rows, not once its 1024 rows are all computed)
    assert rows_before_first_part[0] <= 512, rows_before_first_part
    assert run(["scale", f"{bucket}/out.zarr", str(tmp_path / "back.zarr"), "-f", "1",
                "--quiet"]) == 0, capsys.readouterr().err
    np.testing.assert_array_equal(read(tmp_path / "back.zarr"),
                                  upconv.scale(image, 2, "bilinear"))
    name = bucket.removeprefix("s3://")
    assert "Uploads" not in s3_env.client().list_multipart_uploads(Bucket=name)


def test_a_pyramid_into_a_bucket_streams_its_first_level(tmp_path, rng, bucket, s3_env,
                                                         capsys, monkeypatch):
    """--pyramid into S3: level 0's chunks (inside the OME-Zarr group) go in parts, the
    level below is made from it as written; both as the same job makes them locally."""
    from upconv import storage

    monkeypatch.setattr(storage, "PART_SIZE", 5 << 20)
    sent = []
    sending = storage.S3PartUpload.send
    monkeypatch.setattr(storage.S3PartUpload, "send", lambda self, number, data: (
        sent.append(self.url), sending(self, number, data))[1])
    write_array(tmp_path / "in.zarr", rng.random((600, 600, 3), dtype=np.float32),
                (512, 512, 3), compressors=None)
    for output in (f"{bucket}/out.zarr", str(tmp_path / "local.zarr")):
        assert run(["scale", str(tmp_path / "in.zarr"), output, "-f", "2", "-m", "bilinear",
                    "--pyramid", "1", "--quiet"]) == 0, capsys.readouterr().err
    assert sent and all("/out.zarr/0/c/" in url for url in sent), sent
    for level in ("0", "1"):  # (each level copied back as it is, through STORE:PATH)
        assert run(["scale", f"{bucket}/out.zarr:{level}", str(tmp_path / f"{level}.zarr"),
                    "-f", "1", "--quiet"]) == 0, capsys.readouterr().err
        np.testing.assert_array_equal(read(tmp_path / f"{level}.zarr", "0"),
                                      read(tmp_path / "local.zarr", level))


def test_cluster_workers_stream_chunks_into_a_bucket_in_parts(dask_cluster, tmp_path, rng,
                                                              bucket, s3_env, capsys):
    """On a cluster each worker sends its chunks in parts itself (with the command's
    --storage-option values, not the environment's): multipart objects, the values as in
    memory."""
    from conftest import FAKE_ACCESS_KEY_ID, FAKE_SECRET
    from distributed import Client

    from upconv import storage

    def set_part_size(size):
        storage.PART_SIZE = size

    image = rng.random((600, 600, 3), dtype=np.float32)
    write_array(tmp_path / "in.zarr", image, (512, 512, 3), compressors=None)
    options = ["--storage-option", f"endpoint_url={s3_env.endpoint}",
               "--storage-option", f"key={FAKE_ACCESS_KEY_ID}",
               "--storage-option", f"secret={FAKE_SECRET}"]
    with Client(dask_cluster.scheduler_address) as client:
        client.run(set_part_size, 5 << 20)
        try:
            assert run(["scale", str(tmp_path / "in.zarr"), f"{bucket}/out.zarr", "-f", "2",
                        "-m", "bilinear", "--dask", dask_cluster.scheduler_address,
                        "--quiet", *options]) == 0, capsys.readouterr().err
        finally:
            client.run(set_part_size, 50 << 20)
    name = bucket.removeprefix("s3://")
    chunks = [item for item in s3_env.client().list_objects_v2(
        Bucket=name, Prefix="out.zarr/c/")["Contents"]]
    assert len(chunks) == 4 and all(item["ETag"].strip('"').endswith("-3")
                                    for item in chunks), chunks
    assert run(["scale", f"{bucket}/out.zarr", str(tmp_path / "back.zarr"), "-f", "1",
                "--quiet"]) == 0, capsys.readouterr().err
    np.testing.assert_array_equal(read(tmp_path / "back.zarr"),
                                  upconv.scale(image, 2, "bilinear"))


@pytest.mark.parametrize("stop", ["failure", "ctrl-c"])
def test_a_chunk_stopped_mid_upload_leaves_nothing(tmp_path, rng, bucket, s3_env, capsys,
                                                   monkeypatch, stop):
    """A part that cannot be sent fails the job in one line (Ctrl-C while it is sent: status
    130); no chunk is made of the parts sent before it (the upload is aborted), and the
    store goes."""
    from test_object_stores import objects

    from upconv import storage

    monkeypatch.setattr(storage, "PART_SIZE", 5 << 20)
    sending = storage.S3PartUpload.send

    def second_part_stops(self, number, data):
        if number == 2:
            if stop == "ctrl-c":
                raise KeyboardInterrupt
            raise storage.FileAccessError(f"{self.url}: cannot reach the storage service")
        return sending(self, number, data)

    monkeypatch.setattr(storage.S3PartUpload, "send", second_part_stops)
    write_array(tmp_path / "in.zarr", rng.random((600, 600, 3), dtype=np.float32),
                (512, 512, 3), compressors=None)
    status = run(["scale", str(tmp_path / "in.zarr"), f"{bucket}/out.zarr", "-f", "2",
                  "--quiet"])
    err = capsys.readouterr().err
    if stop == "ctrl-c":
        assert status == 130 and "interrupted" in err, err
    else:
        assert status == 1, err
        assert "cannot reach the storage service" in err and len(err.strip().splitlines()) == 1
    assert objects(s3_env, bucket) == {}
    name = bucket.removeprefix("s3://")
    assert "Uploads" not in s3_env.client().list_multipart_uploads(Bucket=name)


def test_a_failure_into_a_bucket_leaves_no_object(tmp_path, rng, bucket, s3_env, capsys):
    from test_object_stores import objects

    image = rng.random((64, 64))
    write_array(tmp_path / "in.zarr", image, (16, 16))
    (tmp_path / "in.zarr" / "c" / "3" / "1").write_bytes(b"broken")
    assert run(["scale", str(tmp_path / "in.zarr"), f"{bucket}/out.zarr", "-f", "2"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert objects(s3_env, bucket) == {}
    assert run(["scale", str(tmp_path / "in.zarr"), f"{bucket}/out.zarr", "-f", "2",
                "--storage-option", "secret=hunter2-very-secret"]) == 1
    assert "hunter2" not in capsys.readouterr().err


def test_a_failed_replacement_in_a_bucket_says_the_old_store_went_first(
        tmp_path, rng, bucket, s3_env, capsys):
    """-y into a bucket removes the store there first, as zarr's mode="w" does (a bucket
    cannot swap a store into place): a job that then fails leaves nothing, and says so.
    A local store is kept until the new one is complete."""
    from test_object_stores import objects

    write_array(tmp_path / "good.zarr", rng.random((32, 32)), (16, 16))
    write_array(tmp_path / "bad.zarr", rng.random((64, 64)), (16, 16))
    (tmp_path / "bad.zarr" / "c" / "3" / "1").write_bytes(b"broken")
    for output in (f"{bucket}/out.zarr", str(tmp_path / "out.zarr")):
        assert run(["scale", str(tmp_path / "good.zarr"), output, "-f", "2"]) == 0
        capsys.readouterr()
        assert run(["scale", str(tmp_path / "bad.zarr"), output, "-f", "2", "-y"]) == 1
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "not written" in err
        if output.startswith("s3://"):
            assert "removed first (-y)" in err
            assert objects(s3_env, bucket) == {}
        else:
            assert "removed first" not in err
            assert read(tmp_path / "out.zarr").shape == (64, 64)


def test_http_urls_are_refused_as_zarr_outputs(tmp_path, rng, capsys):
    """An http(s) URL is read-only: refused as an output before anything is sent."""
    write_array(tmp_path / "in.zarr", rng.random((20, 20)), (8, 8))
    assert run(["scale", str(tmp_path / "in.zarr"), "http://127.0.0.1:9/out.zarr", "-f",
                "2"]) == 1
    err = capsys.readouterr().err
    assert "read-only" in err and len(err.strip().splitlines()) == 1


def test_a_missing_bucket_is_one_line(tmp_path, rng, s3_env, capsys):
    write_array(tmp_path / "in.zarr", rng.random((20, 20)), (8, 8))
    assert run(["scale", str(tmp_path / "in.zarr"), "s3://no-such-bucket-here/o.zarr", "-f",
                "2"]) == 1
    err = capsys.readouterr().err
    assert "no such bucket" in err and len(err.strip().splitlines()) == 1
    # as an input too (zarr itself says only that it found no group there)
    assert run(["scale", "s3://no-such-bucket-here/i.zarr", str(tmp_path / "o.zarr"), "-f",
                "2"]) == 1
    err = capsys.readouterr().err
    assert "no such bucket 'no-such-bucket-here'" in err and len(err.strip().splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == ["in.zarr"]


# ------------------------------------------------------------------ on a cluster

def test_a_cluster_job_equals_the_local_one(dask_cluster, tmp_path, rng, bucket, s3_env, capsys):
    """Workers read and write the bucket themselves (given the options, not the environment)."""
    image = rng.random((90, 70, 3))
    write_array(tmp_path / "in.zarr", image, (32, 32, 3))
    assert run(["scale", str(tmp_path / "in.zarr"), f"{bucket}/in.zarr", "-f", "1"]) == 0
    from conftest import FAKE_ACCESS_KEY_ID, FAKE_SECRET

    options = ["--storage-option", f"endpoint_url={s3_env.endpoint}",
               "--storage-option", f"key={FAKE_ACCESS_KEY_ID}",
               "--storage-option", f"secret={FAKE_SECRET}"]
    assert run(["scale", f"{bucket}/in.zarr", f"{bucket}/out.zarr", "-f", "2", "-m", "bicubic",
                "--dask", dask_cluster.scheduler_address, *options]) == 0, capsys.readouterr().err
    assert run(["scale", f"{bucket}/out.zarr", str(tmp_path / "back.zarr"), "-f", "1"]) == 0
    got = read(tmp_path / "back.zarr")
    assert np.abs(got - upconv.scale(image, 2, "bicubic")).max() < 1e-12
    # a grid without a short period along y (90 -> 131), cut into blocks on the workers
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "odd.zarr"), "-f", "1.456",
                "-m", "bilinear", "--dask", dask_cluster.scheduler_address, "--quiet"]) == 0
    np.testing.assert_array_equal(read(tmp_path / "odd.zarr"), upconv.scale(image, 1.456,
                                                                            "bilinear"))


def test_cluster_workers_without_credentials_say_so(dask_cluster, tmp_path, rng, bucket,
                                                    s3_env, capsys):
    """The command's machine has credentials, the workers none: the error says it is the
    workers that lack them, and how to give them."""
    write_array(tmp_path / "in.zarr", rng.random((40, 40)), (16, 16))
    assert run(["scale", str(tmp_path / "in.zarr"), f"{bucket}/in.zarr", "-f", "1"]) == 0
    capsys.readouterr()
    assert run(["scale", f"{bucket}/in.zarr", f"{bucket}/out.zarr", "-f", "2", "--dask",
                dask_cluster.scheduler_address, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "no credentials found on a Dask worker" in err, err
    # (one error line; a note that the job waits for a task still running may come too)
    errors = [line for line in err.splitlines() if line.startswith("upconv: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err


def test_a_store_that_cannot_be_removed_still_fails_in_one_line(tmp_path, rng, capsys,
                                                                monkeypatch):
    """-y into a store whose objects cannot be deleted: one line about that, not an
    "unexpected" error, and no claim that the old store went first."""
    import fsspec.implementations.memory as memory

    write_array(tmp_path / "in.zarr", rng.random((20, 20)), (8, 8))
    output = f"memory://refusing-{uuid.uuid4().hex}/out.zarr"
    assert run(["scale", str(tmp_path / "in.zarr"), output, "-f", "2"]) == 0
    capsys.readouterr()

    def refuse(self, path, recursive=False, maxdepth=None):
        raise PermissionError(13, "AccessDenied: DeleteObject")

    monkeypatch.setattr(memory.MemoryFileSystem, "rm", refuse)
    assert run(["scale", str(tmp_path / "in.zarr"), output, "-f", "2", "-y"]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if "warning" not in line]
    assert len(lines) == 1 and "unexpected" not in err and "removed first" not in err, err
    assert "access denied" in err or "AccessDenied" in err, err
    assert "the store that was there is as it was (-y could not remove it)" in err, err


def test_a_removal_that_stops_part_way_says_how_far_it_went(tmp_path, rng, capsys,
                                                            monkeypatch):
    """-y into a bucket whose deletions fail after some objects went: the error says how
    many of the old store's objects are gone, not that it was removed or kept."""
    import fsspec
    import fsspec.implementations.memory as memory

    write_array(tmp_path / "in.zarr", rng.random((20, 20)), (8, 8))
    output = f"memory://partly-{uuid.uuid4().hex}/out.zarr"
    assert run(["scale", str(tmp_path / "in.zarr"), output, "-f", "2"]) == 0
    capsys.readouterr()
    fs = fsspec.filesystem("memory")
    count = len(fs.find(output))
    assert count > 3
    removing = memory.MemoryFileSystem.rm

    def stop_after_three(self, path, recursive=False, maxdepth=None):
        names = path if isinstance(path, list) else self.find(path)
        for name in names[:3]:
            removing(self, name)
        raise PermissionError(13, "AccessDenied: DeleteObject")

    monkeypatch.setattr(memory.MemoryFileSystem, "rm", stop_after_three)
    assert run(["scale", str(tmp_path / "in.zarr"), output, "-f", "2", "-y"]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if "warning" not in line]
    assert len(lines) == 1, err
    assert f"stopped part way: 3 of its {count} objects are gone" in err, err


def test_a_refused_removal_that_cannot_be_listed_says_it_may_be_partial(tmp_path, rng,
                                                                         capsys, monkeypatch):
    """-y into a bucket that neither removes nor lists the old store: the error says the
    store may be partly removed, as nothing more can be known; Ctrl-C during the removal
    says the same without waiting to list the bucket."""
    import fsspec.implementations.memory as memory

    write_array(tmp_path / "in.zarr", rng.random((20, 20)), (8, 8))
    output = f"memory://unlisted-{uuid.uuid4().hex}/out.zarr"
    assert run(["scale", str(tmp_path / "in.zarr"), output, "-f", "2"]) == 0
    capsys.readouterr()

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "AccessDenied")

    monkeypatch.setattr(memory.MemoryFileSystem, "rm", refuse)
    monkeypatch.setattr(memory.MemoryFileSystem, "find", refuse)
    assert run(["scale", str(tmp_path / "in.zarr"), output, "-f", "2", "-y"]) == 1
    err = capsys.readouterr().err
    assert "the store that was there may be partly removed (-y)" in err, err
    assert len([line for line in err.splitlines() if "warning" not in line]) == 1, err

    listed = []

    def listing(self, path, *args, **kwargs):
        listed.append(path)
        return [path + "/zarr.json"]

    def interrupt(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(memory.MemoryFileSystem, "find", listing)
    monkeypatch.setattr(memory.MemoryFileSystem, "rm", interrupt)
    assert run(["scale", str(tmp_path / "in.zarr"), output, "-f", "2", "-y"]) == 130
    err = capsys.readouterr().err
    assert "not written; the store that was there may be partly removed (-y)" in err, err
    assert len(listed) == 1, listed  # (counted before removing; not listed again after)


def test_a_killed_worker_does_not_spoil_the_job(dask_cluster, tmp_path, rng, capsys):
    """A worker process killed while the job runs: the scheduler runs its tasks again on a
    new worker (the nanny starts one), every chunk is written once whole, the job ends."""
    from distributed import Client

    image = rng.random((512, 512))
    write_array(tmp_path / "in.zarr", image, (32, 32))  # 256 blocks: seconds of work
    out = tmp_path / "out.zarr"
    status = []
    job = threading.Thread(target=lambda: status.append(run(
        ["scale", str(tmp_path / "in.zarr"), str(out), "-f", "2", "-m", "bilinear",
         "--dask", dask_cluster.scheduler_address, "--quiet"])))
    job.start()
    # wait for an event (the first chunk written), not for a time
    while job.is_alive() and not any(
            name.endswith(".part") and os.path.isdir(tmp_path / name / "c")
            for name in os.listdir(tmp_path)):
        job.join(0.005)
    assert job.is_alive(), "the job ended before a worker could be killed"
    with Client(dask_cluster.scheduler_address) as client:
        pids = client.run(os.getpid)
        os.kill(next(iter(pids.values())), signal.SIGKILL)  # a worker dies mid-job
    job.join()
    assert status == [0], capsys.readouterr().err
    np.testing.assert_array_equal(read(out), upconv.scale(image, 2, "bilinear"))
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".part")]


def test_a_dead_writers_temporary_chunk_file_is_not_left_in_the_output(
        tmp_path, rng, monkeypatch):
    """A chunk's writer that dies mid-chunk (a killed Dask worker) leaves its temporary
    file; the task runs again and writes the chunk whole under a name of its own. The
    finished store holds the chunks and no temporary file."""
    from upconv import direct_writes, zarr_local

    monkeypatch.setattr(direct_writes, "SMALLEST", 1024)  # (every chunk written so)
    real = zarr_local.ChunkFile.__init__
    left: list[Path] = []

    def dying_once(self, path, size, **options):
        if not left:  # as a writer killed mid-chunk leaves it
            left.append(path.with_suffix(f".{uuid.uuid4().hex}.partial"))
            path.parent.mkdir(parents=True, exist_ok=True)
            left[0].write_bytes(b"\x07" * 100)
        real(self, path, size, **options)

    monkeypatch.setattr(zarr_local.ChunkFile, "__init__", dying_once)
    image = rng.random((40, 40))
    write_array(tmp_path / "in.zarr", image, (16, 16))
    out = tmp_path / "out.zarr"
    assert run(["scale", str(tmp_path / "in.zarr"), str(out), "-f", "2", "-m", "bilinear",
                "--quiet"]) == 0
    assert left and left[0].name.endswith(".partial")
    np.testing.assert_array_equal(read(out), upconv.scale(image, 2, "bilinear"))
    assert not [path for path in out.rglob("*") if path.name.endswith(".partial")]
    assert len(list(out.rglob("c/*/*"))) == 9  # (3 x 3 chunks of 32x32)


def test_the_summary_line_names_the_store(tmp_path, rng, capsys):
    write_array(tmp_path / "in.zarr", rng.random((20, 30, 3)), (8, 8, 3))
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "-m", "bilinear"]) == 0
    err = capsys.readouterr().err
    assert "out.zarr 60x40 (yxc 40x60x3, chunks 16x16x3), bilinear" in err


def test_a_killed_runs_store_is_removed_by_the_next_run(tmp_path, rng, capsys):
    """``kill -9`` leaves the store being written under its temporary name; the next run for
    that output removes it (its writer no longer runs), with one warning line."""
    from test_stale_temporaries import dead_pid

    write_array(tmp_path / "in.zarr", rng.random((20, 20)), (8, 8))
    stale = tmp_path / f".out.zarr.{dead_pid()}.abcd1234.part"
    write_array(stale, np.zeros((4, 4)), (2, 2))
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "--quiet"]) == 0
    assert capsys.readouterr().err == ("upconv: warning: removed 1 temporary file(s) left by "
                                       f"an interrupted run: {stale}\n")
    assert sorted(os.listdir(tmp_path)) == ["in.zarr", "out.zarr"]


def test_ctrl_c_mid_job_leaves_nothing(tmp_path, rng, capsys, monkeypatch):
    """Ctrl-C once the first chunk is written: status 130, one line, no store, no temporary."""
    from test_signals import ctrl_c

    from upconv import zarr_arrays

    write_array(tmp_path / "in.zarr", rng.random((64, 64)), (8, 8))
    real_add = zarr_arrays._Counter.add

    pressed = []

    def add_then_ctrl_c(self, chunks):
        real_add(self, chunks)
        if not pressed:  # once the first block is written
            pressed.append(True)
            ctrl_c()

    monkeypatch.setattr(zarr_arrays._Counter, "add", add_then_ctrl_c)
    status = run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2"])
    err = capsys.readouterr().err
    assert status == 130 and err == "upconv: error: interrupted\n", err
    assert sorted(os.listdir(tmp_path)) == ["in.zarr"]


@pytest.mark.parametrize("where", ["threads", "cluster"])
def test_progress_counts_every_chunk_of_every_level(tmp_path, rng, request, where):
    from upconv.zarr_arrays import open_zarr, plan_zarr_job, run_zarr_job

    write_array(tmp_path / "in.zarr", rng.random((40, 24)), (16, 16))
    source = open_zarr(str(tmp_path / "in.zarr"))
    job = plan_zarr_job(source.array.shape, source.array.dtype, source.axes,
                        source.array.chunks, method="bilinear", factor=(2.0, 2.0))
    seen = []
    address = (request.getfixturevalue("dask_cluster").scheduler_address
               if where == "cluster" else None)
    run_zarr_job(source, str(tmp_path / "out.zarr"), job, pyramid=1, threads=2,
                 dask_address=address, progress=lambda done, total: seen.append((done, total)))
    # level 0: 80x48 in 32x32 chunks (3 x 2); level 1: 40x24 in 32x32 chunks (2 x 1), told
    # as each task's chunks are written (on a cluster, as its result comes back)
    assert seen[-1] == (8, 8) and all(total == 8 for _, total in seen)
    assert [done for done, _ in seen] == sorted({done for done, _ in seen})
    if where == "threads":
        assert seen == [(done, 8) for done in range(1, 9)]


@pytest.mark.parametrize("shape,chunks", [((23, 17), (7, 5)), ((19, 21, 3), (8, 6, 3)),
                                          ((2, 13, 11), (1, 4, 4)), ((40, 150), (16, 64))])
def test_raw_chunk_files_are_read_as_zarr_reads_them(tmp_path, rng, monkeypatch, shape,
                                                     chunks):
    """Raw local chunks are read by upconv straight into the window (zarr is never asked,
    where the window can take the file's runs of bytes): any selection, edge chunks,
    absent chunks (the fill value), into a view of a bigger array; a few columns of wide
    chunks (a block's edge) through a mapping of the file."""
    from upconv import zarr_arrays, zarr_local

    mapped = []
    real_mapped = zarr_local._copy_mapped
    monkeypatch.setattr(zarr_local, "_copy_mapped", lambda *args: (
        mapped.append(args[3]), real_mapped(*args))[1])

    values = rng.random(shape).astype(np.float32)
    array = zarr.create_array(zarr_local.LocalStore(str(tmp_path / "in.zarr")), shape=shape,
                              chunks=chunks, dtype="f4", compressors=None, fill_value=2.5)
    kept = tuple(slice(0, n // 2) for n in shape)  # (the rest: absent chunks, read as fill)
    array[kept] = values[kept]
    expected = np.full(shape, 2.5, np.float32)
    expected[kept] = values[kept]
    assert zarr_arrays.raw_chunk_files(array) is not None
    asked = []
    monkeypatch.setattr(type(array), "get_basic_selection",
                        lambda self, *args, **kw: asked.append(args))
    columns = [(slice(0, shape[0]), slice(a, a + 2))  # (of a 2-D array)
               for a in (0, shape[-1] - 2, chunks[-1] - 1)] if len(shape) == 2 else []
    for attempt in range(30 + len(columns)):
        first = [int(rng.integers(0, n)) for n in shape]
        selection = columns[attempt - 30] if attempt >= 30 else tuple(
            slice(a, int(rng.integers(a + 1, n + 1))) for a, n in zip(first, shape, strict=True))
        size = tuple(s.stop - s.start for s in selection)
        window = np.zeros(tuple(n + 4 for n in size), np.float32)
        out = window[tuple(slice(2, 2 + n) for n in size)]
        got = zarr_arrays.read_window(array, selection, (len(shape) - 2, len(shape) - 1),
                                      out=out)
        assert got is out
        np.testing.assert_array_equal(out, expected[selection])
        assert not window[:2].any() and not window[-2:].any()  # (nothing past `out`)
    assert not asked
    assert mapped or shape != (40, 150)  # (the columns of wide chunks, at least)
    # an `out` whose last axis is not contiguous: left to zarr, nothing read
    strided = np.zeros(chunks[:-1] + (2 * chunks[-1],), np.float32)[..., ::2]
    assert not zarr_local.read_raw_part(zarr_arrays.raw_chunk_files(array)(
        (0,) * len(shape)), chunks, tuple(slice(0, n) for n in chunks), strided, 2.5)
    assert not strided.any()


@pytest.mark.parametrize("method", ["nearest", "bilinear", "bicubic", "transpose"])
@pytest.mark.parametrize("layout", ["yx", "yxc", "cyx"])
def test_raw_inputs_equal_the_in_memory_result(tmp_path, rng, capsys, monkeypatch, method,
                                               layout):
    """Raw chunks read by upconv (each block's whole window, core and halo, straight from
    the chunk files, with no first phase; but in two phases where a transposed
    convolution's blocks hold every channel of a cyx array), and absent chunks read as
    zero: the in-memory result."""
    from upconv import zarr_arrays

    if (layout, method) != ("cyx", "transpose"):
        monkeypatch.setattr(zarr_arrays, "block_borders", None)  # (never asked for)
    shape = {"yx": (37, 45), "yxc": (37, 45, 3), "cyx": (2, 37, 45)}[layout]
    chunks = {"yx": (16, 8), "yxc": (16, 8, 3), "cyx": (1, 16, 8)}[layout]
    image = rng.random(shape)
    if layout == "cyx":
        image[:, 16:32, :8] = 0  # (an absent chunk)
    write_array(tmp_path / "in.zarr", image, chunks, compressors=None)
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "-m", method, "--layout", layout]) == 0, capsys.readouterr().err
    planes = {"yx": image[..., None], "yxc": image, "cyx": np.moveaxis(image, 0, -1)}[layout]
    expected = reference(planes[None], 2, method)[0]
    expected = {"yx": expected[..., 0], "yxc": expected,
                "cyx": np.moveaxis(expected, -1, 0)}[layout]
    got = read(tmp_path / "out.zarr")
    tolerance = 1e-12 if method == "bicubic" else 0
    assert np.abs(got - expected).max() <= tolerance


def test_compressed_inputs_pass_the_blocks_edges_from_a_first_phase(tmp_path, rng,
                                                                   monkeypatch, capsys):
    """Where chunks are compressed, each is decoded once for its edges (first phase) and
    once for its core, not by each of its eight neighbours too."""
    from upconv import zarr_arrays

    asked = []
    real = zarr_arrays.block_borders
    monkeypatch.setattr(zarr_arrays, "block_borders", lambda job, source, key: (
        asked.append((key.by, key.bx)), real(job, source, key))[1])
    image = rng.random((40, 40))
    write_array(tmp_path / "in.zarr", image, (16, 16))  # (zstd, zarr's default)
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "-m", "bilinear"]) == 0, capsys.readouterr().err
    assert sorted(asked) == [(by, bx) for by in range(3) for bx in range(3)]
    assert np.array_equal(read(tmp_path / "out.zarr"), reference(image[None, ..., None], 2,
                                                                 "bilinear")[0, ..., 0])


def test_a_raw_chunk_file_cut_short_fails_the_job_with_one_line(tmp_path, rng, capsys):
    image = rng.random((40, 40))
    write_array(tmp_path / "in.zarr", image, (16, 16), compressors=None)
    chunk = tmp_path / "in.zarr" / "c" / "1" / "1"
    chunk.write_bytes(chunk.read_bytes()[:100])
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "-m", "bilinear"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "1: a raw chunk of 100 bytes" in err, err
    assert not (tmp_path / "out.zarr").exists()


def test_a_band_buffer_is_computed_into_again_only_once_its_rows_are_written(
        tmp_path, rng, monkeypatch, capsys):
    """Bands of 8 rows lent to a writer thread that takes its time over each write: the
    engine computes into a band buffer again only once the rows lent from it are written
    (else later rows would land in the file), so the result is the in-memory one."""
    import time

    from upconv import direct_writes, zarr_arrays

    monkeypatch.setattr(direct_writes, "SMALLEST", 0)
    monkeypatch.setattr(zarr_arrays, "BAND_ROWS", 8)
    real = os.pwritev
    lent = []

    def slow(fd, views, position):
        time.sleep(0.002)  # (a slow disk: the engine gets ahead of the writer)
        return real(fd, views, position)

    monkeypatch.setattr(os, "pwritev", slow)
    real_give = direct_writes.DirectWriter._give
    monkeypatch.setattr(direct_writes.DirectWriter, "_give", lambda self, views, position,
                        buffer: (lent.append(buffer is None),
                                 real_give(self, views, position, buffer))[1])
    image = rng.random((60, 70, 4)).astype(np.float32)
    write_array(tmp_path / "in.zarr", image, (32, 32, 4), compressors=None)
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "-m", "bilinear", "--threads", "1"]) == 0, capsys.readouterr().err
    assert sum(lent) > 20  # (rows lent from the bands, many bands per chunk)
    np.testing.assert_array_equal(read(tmp_path / "out.zarr"), upconv.scale(image, 2,
                                                                             "bilinear"))


def test_the_workers_import_the_engine_as_a_job_connects():
    """Entered, a runner has each worker import what the tasks run, before any task:
    on new worker processes, the Zarr modules come without a task being sent."""
    pytest.importorskip("distributed", reason="the cluster tests need upconv[dask]")
    from distributed import Client, LocalCluster

    from upconv.zarr_arrays import JobRunner

    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=":0") as cluster, \
            Client(cluster.scheduler_address) as client:
        client.wait_for_workers(2)
        def imported(name):
            return lambda: name in sys.modules  # (a lambda: sent by value, run there)

        assert not any(client.run(imported("upconv.zarr_arrays")).values())
        with JobRunner(cluster.scheduler_address):
            deadline = time.monotonic() + 60  # (an upper bound, not a pace: ends at once)
            while not all(client.run(imported("upconv.interpolate")).values()):
                assert time.monotonic() < deadline, "the workers never imported the engine"
        assert all(client.run(imported("upconv.zarr_arrays")).values())


def test_with_dask_a_bad_input_is_reported_before_the_scheduler(tmp_path, capsys):
    """The connection to the cluster is made in the background while the input is opened:
    a bad input is reported as it is, at once, whatever the scheduler's state (here none
    listens), and nothing is written."""
    assert run(["scale", str(tmp_path / "nope.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "--dask", "tcp://127.0.0.1:9"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope.zarr: no Zarr store there" in err, err
    assert not list(tmp_path.iterdir())


def test_a_scheduler_that_cannot_be_reached_fails_the_job_with_one_line(tmp_path, rng,
                                                                         monkeypatch, capsys):
    """The background connection's error is the job's, reported once the input is open,
    and the output store is not left behind."""
    from upconv import cluster
    from upconv.errors import BadInputError

    def refused(address):
        raise BadInputError(f"cannot reach the Dask scheduler at {address} (refused)")

    monkeypatch.setattr(cluster, "_client", refused)
    write_array(tmp_path / "in.zarr", rng.random((40, 40)), (16, 16))
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "--dask", "tcp://scheduler:8786"]) != 0
    err = capsys.readouterr().err.strip()
    assert err == "upconv: error: cannot reach the Dask scheduler at tcp://scheduler:8786 " \
                  "(refused)", err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.zarr"]


@pytest.mark.parametrize("compressors", [None, "auto"])
def test_rows_of_whole_pages_go_out_as_one_piece_a_band(tmp_path, rng, monkeypatch, capsys,
                                                        compressors):
    """A block computes only its own columns, so where a chunk's rows are whole pages
    (1024 float32 values) a band's rows follow each other and go to the file, or to zstd,
    as one piece; an edge chunk's rows, padded, go row by row. The result is the
    in-memory one."""
    from upconv import zarr_arrays

    pieces = []
    real = zarr_arrays._row_pieces
    monkeypatch.setattr(zarr_arrays, "_row_pieces", lambda rows, joined=False: (
        lambda got: (pieces.append((len(rows), len(got))), got)[1])(real(rows, joined)))
    image = rng.random((1100, 1100)).astype(np.float32)
    write_array(tmp_path / "in.zarr", image, (1024, 512), compressors=compressors)
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "-m", "bilinear", "--quiet"]) == 0, capsys.readouterr().err
    assert any(rows > 1 and count == 1 for rows, count in pieces)  # (whole chunks' bands)
    assert any(rows > 1 and count == rows for rows, count in pieces)  # (the edge chunks')
    expected = reference(image[None, ..., None], 2, "bilinear")[0, ..., 0]
    np.testing.assert_array_equal(read(tmp_path / "out.zarr"), expected)


@pytest.mark.parametrize("shape, chunks, factor", [
    ((30, 30, 1), (15, 15, 1), 1.5),   # periods of 2 inputs: chunks of 15 give 21 outputs
    ((31, 29, 1), (15, 15, 1), 1.5),   # odd sizes: no short period (31 -> 46)
    ((64, 64, 1), (16, 16, 1), 1.3),   # 64 -> 83: one period of 64
    ((90, 60, 2), (20, 25, 1), 2.5),   # periods of 2 -> 5: 10 and 12 of them
], ids=["x1.5", "x1.5-odd", "x1.3", "x2.5"])
def test_default_chunks_at_factors_that_are_not_whole_numbers(tmp_path, rng, capsys, shape,
                                                                  chunks, factor):
    """Without --chunks, the output's are the input's scaled (in whole periods of the grid
    where it has short ones, else rounded), so any factor works with the default, and
    the result is the in-memory one."""
    image = rng.random(shape)
    write_array(tmp_path / "in.zarr", image, chunks)
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f",
                str(factor), "-m", "bilinear"]) == 0, capsys.readouterr().err
    expected = upconv.scale(image, factor, "bilinear")
    got = read(tmp_path / "out.zarr")
    assert got.shape == expected.shape and np.array_equal(got, expected)
    out_chunks = zarr.open(str(tmp_path / "out.zarr"), mode="r").chunks[:2]
    for axis in (0, 1):
        n_in, n_out = shape[axis], expected.shape[axis]
        common = math.gcd(n_in, n_out)
        period_in, period_out = n_in // common, n_out // common
        if period_in < n_in and period_in <= 64:  # a short period
            wanted = max(1, chunks[axis] // period_in) * period_out
        else:
            wanted = round(chunks[axis] * n_out / n_in)
        assert out_chunks[axis] == min(wanted, n_out)
