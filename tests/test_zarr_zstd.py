"""zarr's zstd codec with its results in reused arrays (upconv.zarr_zstd), against zarr's own."""

from __future__ import annotations

import os

import numpy as np
import pytest

from upconv.cli import run

zarr = pytest.importorskip("zarr", minversion="3",
                           reason="Zarr arrays need upconv[dask] (zarr 3)")
numcodecs_zstd = pytest.importorskip("numcodecs.zstd")

from zarr.codecs import ZstdCodec  # noqa: E402
from zarr.storage import MemoryStore  # noqa: E402

from upconv import zarr_zstd  # noqa: E402
from upconv.zarr_zstd import ReusingZstdCodec, reusing_codecs  # noqa: E402


def _chunks(store: MemoryStore) -> dict[str, bytes]:
    return {key: value.to_bytes() for key, value in store._store_dict.items()
            if key.startswith("c/")}


@pytest.mark.parametrize(("level", "checksum"), [(0, False), (5, True), (-3, False)])
def test_chunks_are_zarrs_own_bytes_and_read_both_ways(rng, level, checksum):
    """Written with ReusingZstdCodec, every chunk is byte for byte what zarr's own codec
    writes (the same copy of libzstd, called the same way); each array reads back the other's
    chunks."""
    assert zarr_zstd.zstd_library().path == numcodecs_zstd.__file__  # (zarr's own libzstd)
    values = (rng.random((70, 50, 3)) * 1000).round().astype(np.float32)
    stores = {}
    for name, codec in [("zarr", ZstdCodec(level=level, checksum=checksum)),
                        ("upconv", ReusingZstdCodec(level=level, checksum=checksum))]:
        stores[name] = MemoryStore()
        array = zarr.create_array(stores[name], shape=values.shape, chunks=(16, 16, 3),
                                  dtype="f4", compressors=[codec])
        array[...] = values
    assert _chunks(stores["upconv"]) == _chunks(stores["zarr"])
    assert len(_chunks(stores["zarr"])) == 5 * 4
    ours = zarr.open_array(stores["upconv"], mode="r")  # (zarr's codec, from the metadata)
    assert type(ours.metadata.codecs[-1]) is ZstdCodec
    np.testing.assert_array_equal(ours[...], values)
    theirs = reusing_codecs(zarr.open_array(stores["zarr"], mode="r"))
    assert type(theirs.metadata.codecs[-1]) is ReusingZstdCodec
    np.testing.assert_array_equal(theirs[...], values)
    np.testing.assert_array_equal(theirs[5:60, 3:47], values[5:60, 3:47])


def test_a_held_result_keeps_its_bytes_while_others_are_made(rng):
    """A result in a kept array is not handed out again while anything refers to it (the
    memory store keeps what it is given: every chunk stays as written)."""
    from zarr.core.array_spec import ArrayConfig, ArraySpec
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.dtype import Float32

    codec = ReusingZstdCodec(level=3)
    prototype = default_buffer_prototype()
    spec = ArraySpec(shape=(1 << 19,), dtype=Float32(), fill_value=0,
                     config=ArrayConfig.from_dict({}), prototype=prototype)
    chunks = [rng.random(1 << 19).astype(np.float32) for _ in range(3)]  # 2 MB each
    packed = [codec._encode_sync(prototype.buffer.from_array_like(chunk.view(np.uint8)), spec)
              for chunk in chunks]
    frozen = [p.to_bytes() for p in packed]
    unpacked = [codec._decode_sync(p, spec) for p in packed]
    for chunk, result in zip(chunks, unpacked, strict=True):
        np.testing.assert_array_equal(result.as_numpy_array().view(np.float32), chunk)
    assert [p.to_bytes() for p in packed] == frozen
    arrays = [result.as_numpy_array() for result in unpacked]
    assert not any(np.shares_memory(a, b) for i, a in enumerate(arrays) for b in arrays[i + 1:])
    address = arrays[0].__array_interface__["data"][0]
    del unpacked, arrays
    again = codec._decode_sync(packed[1], spec).as_numpy_array()  # into a free kept array
    assert again.__array_interface__["data"][0] == address
    np.testing.assert_array_equal(again.view(np.float32), chunks[1])
    zarr_zstd.drop_codec_buffers()


def test_without_libzstd_the_codec_is_zarrs(rng, monkeypatch):
    monkeypatch.setattr(zarr_zstd, "zstd_library", lambda: None)
    values = rng.random((40, 30)).astype(np.float32)
    store = MemoryStore()
    array = zarr.create_array(store, shape=values.shape, chunks=(16, 16), dtype="f4",
                              compressors=[ReusingZstdCodec()])
    array[...] = values
    np.testing.assert_array_equal(array[...], values)
    np.testing.assert_array_equal(zarr.open_array(store, mode="r")[...], values)


def test_a_scaled_array_is_written_with_zarrs_own_bytes(tmp_path, rng, capsys):
    """A job on a zstd array (zarr's default codec): its output's metadata is zarr's, and
    its chunk files are what zarr's own codec writes for the same values."""
    image = rng.random((40, 36, 3)).astype(np.float32)
    zarr.create_array(str(tmp_path / "in.zarr"), shape=image.shape, chunks=(16, 16, 3),
                      dtype="f4")[...] = image
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2",
                "-m", "bilinear", "--quiet"]) == 0, capsys.readouterr().err
    out = zarr.open_array(str(tmp_path / "out.zarr"), mode="r")
    assert out.metadata.to_dict()["codecs"][-1] == {
        "name": "zstd", "configuration": {"level": 0, "checksum": False}}
    again = zarr.create_array(str(tmp_path / "again.zarr"), shape=out.shape, chunks=out.chunks,
                              dtype="f4")
    again[...] = out[...]
    names = sorted(path.relative_to(tmp_path / "out.zarr")
                   for path in (tmp_path / "out.zarr" / "c").rglob("*") if path.is_file())
    assert len(names) == 9
    for name in names:
        assert (tmp_path / "out.zarr" / name).read_bytes() == \
            (tmp_path / "again.zarr" / name).read_bytes()


def test_a_cut_chunk_fails_the_job_with_one_line(tmp_path, rng, capsys):
    """A zstd chunk cut short: one line naming the output and zstd, nothing written."""
    image = rng.random((64, 64))
    zarr.create_array(str(tmp_path / "in.zarr"), shape=image.shape, chunks=(32, 32),
                      dtype="f8")[...] = image
    chunk = tmp_path / "in.zarr" / "c" / "1" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-40])
    assert run(["scale", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "-f", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("upconv: error: ") and "out.zarr: not written (RuntimeError: " \
        in err and "zstd" in err.lower(), err
    assert sorted(os.listdir(tmp_path)) == ["in.zarr"]


def test_libzstds_errors_are_its_own_words():
    library = zarr_zstd.zstd_library()
    with pytest.raises(RuntimeError, match="^zstd: "):
        library.check(2**64 - 20)  # (ZSTD_error_corruption_detected)
    assert library.check(7) == 7


def test_a_threads_contexts_are_freed_when_it_ends(monkeypatch):
    import gc
    import threading

    library = zarr_zstd.zstd_library()
    freed = []
    real_free_cctx, real_free_dctx = library.free_cctx, library.free_dctx
    monkeypatch.setattr(library, "free_cctx", lambda p: freed.append("c") or real_free_cctx(p))
    monkeypatch.setattr(library, "free_dctx", lambda p: freed.append("d") or real_free_dctx(p))
    values = np.arange(300_000, dtype=np.float32).view(np.uint8)

    def work():
        assert (zarr_zstd.decompress(zarr_zstd.compress(values, 3, False)) == values).all()

    for _ in range(3):
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    gc.collect()
    assert sorted(freed) == ["c"] * 3 + ["d"] * 3


def test_a_well_compressed_chunk_holds_no_more_than_its_bytes():
    """A result at most half the room zstd allows for is a copy of its own: a store that
    keeps it (zarr's memory store) keeps its bytes, not the kept array's."""
    zeros = np.zeros(4 << 20, np.uint8)
    packed = zarr_zstd.compress(zeros, 3, False)
    assert packed.base is None and packed.nbytes < 1000
    noise = np.random.default_rng(0).integers(0, 256, 4 << 20, dtype=np.uint8)
    assert zarr_zstd.compress(noise, 3, False).base is not None  # (a view of a kept array)


def test_jobs_reusing_every_result_equal_zarrs_own(tmp_path, rng, monkeypatch, capsys):
    """Every codec result in a kept array (made small enough here), through a whole job with
    a pyramid (whose tasks read four chunks at once): the output equals the one written
    with zarr's own codec, chunk file for chunk file."""
    from upconv.memory import ReusedArrays

    image = rng.random((50, 44, 3)).astype(np.float32)
    zarr.create_array(str(tmp_path / "in.zarr"), shape=image.shape, chunks=(16, 16, 3),
                      dtype="f4")[...] = image
    command = ["scale", str(tmp_path / "in.zarr"), "-f", "2", "-m", "bicubic", "--pyramid",
               "2", "--quiet", "--threads", "2"]
    monkeypatch.setattr(zarr_zstd, "zstd_library", lambda: None)  # zarr's own codec
    assert run(command[:2] + [str(tmp_path / "zarrs.zarr")] + command[2:]) == 0
    monkeypatch.undo()
    monkeypatch.setattr(zarr_zstd, "_results", ReusedArrays(most=4, smallest=1))
    assert run(command[:2] + [str(tmp_path / "ours.zarr")] + command[2:]) == 0, \
        capsys.readouterr().err
    files = sorted(path.relative_to(tmp_path / "ours.zarr")
                   for path in (tmp_path / "ours.zarr").rglob("*") if path.is_file())
    # (100x88 in chunks of 32: 4 x 3; then 50x44: 2 x 2; then 25x22: 1)
    assert len([name for name in files if name.name != "zarr.json"]) == 4 * 3 + 2 * 2 + 1
    for name in files:
        assert (tmp_path / "ours.zarr" / name).read_bytes() == \
            (tmp_path / "zarrs.zarr" / name).read_bytes(), name


@pytest.mark.parametrize(("level", "checksum"), [(0, False), (5, True), (1, False)])
def test_a_frame_written_piece_by_piece_is_a_frame_of_the_same_values(rng, level, checksum):
    """FrameWriter (a chunk compressed as its rows come): pieces of any sizes, handed on a
    FRAME_PIECE at a time; one zstd frame that tells its size and decodes (its checksum
    checked) to the same bytes with numcodecs' decoder, the same size as zarr's one-shot
    frame within a few per cent (zstd's streaming compressor may choose other matches)."""
    x = np.linspace(0, 50, 1_000_000, dtype=np.float32)
    values = (x + rng.normal(0, 0.02, x.shape).astype(np.float32)).view(np.uint8)
    cuts = np.sort(rng.integers(0, values.nbytes, 30))
    pieces = [values[a:b] for a, b in zip([0, *cuts], [*cuts, values.nbytes], strict=True)]
    handed: list[bytes] = []
    frame = zarr_zstd.FrameWriter(values.nbytes, level, checksum,
                                  lambda piece: handed.append(bytes(piece)))
    frame.write(pieces)
    frame.finish()
    assert max(len(piece) for piece in handed) == zarr_zstd.FRAME_PIECE
    packed = np.frombuffer(b"".join(handed), np.uint8)
    assert np.array_equal(zarr_zstd.decompress(packed), values)  # (the size from the frame)
    one_shot = numcodecs_zstd.Zstd(level=level, checksum=checksum).encode(values)
    assert numcodecs_zstd.Zstd().decode(packed.tobytes()) == values.tobytes()
    assert abs(packed.nbytes / len(one_shot) - 1) < 0.05
    if checksum:  # a byte of the checksum (the frame's last four) changed: zstd tells
        broken = packed.copy()
        broken[-1] ^= 0xFF
        with pytest.raises(RuntimeError):
            numcodecs_zstd.Zstd().decode(broken.tobytes())
    with pytest.raises(AssertionError):  # (fewer bytes than the frame was said to have)
        short = zarr_zstd.FrameWriter(100, level, checksum, handed.append)
        short.write([values[:50]])
        short.finish()


@pytest.mark.parametrize("space", [1, 7, 4096, 1 << 22])
def test_a_frame_compressed_straight_into_a_files_buffers(rng, space):
    """FrameWriter into a file's own buffers (FrameBuffers), whatever room they offer at a
    time: the same frame as one handed on by pieces, byte for byte (the same calls), and
    nothing written past the room offered."""
    x = np.linspace(0, 50, 300_000, dtype=np.float32)
    values = (x + rng.normal(0, 0.02, x.shape).astype(np.float32)).view(np.uint8)
    pieces = [values[:1000], values[1000:500_001], values[500_001:]]

    class Buffers:
        def __init__(self):
            self.buffer = np.full(space + 1, 0xAB, np.uint8)
            self.bytes = bytearray()

        def space(self):
            return self.buffer[:space]

        def filled(self, count):
            assert 0 <= count <= space and self.buffer[space] == 0xAB
            self.bytes += self.buffer[:count].tobytes()

    into = Buffers()
    frame = zarr_zstd.FrameWriter(values.nbytes, 0, True, into=into)
    frame.write(pieces)
    frame.finish()
    handed: list[bytes] = []
    frame = zarr_zstd.FrameWriter(values.nbytes, 0, True, lambda p: handed.append(bytes(p)))
    frame.write(pieces)
    frame.finish()
    assert bytes(into.bytes) == b"".join(handed)
    assert numcodecs_zstd.Zstd().decode(bytes(into.bytes)) == values.tobytes()
