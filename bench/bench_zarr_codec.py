"""Benchmark zarr's default codec on the chunks of ``bench/bench_zarr.py``: what compression
alone costs that job, as zarr runs it and as upconv runs it.

``bench/bench_zarr.py`` doubles a 16000x16000 RGB float32 array in 2048x2048x3 chunks to
32000x32000 in 4096x4096x3 chunks: 64 output chunks compressed (edge chunks are written
whole), and 64 input chunks decompressed twice (each block reads its core in two phases).
This times zarr's default compressor for float32 arrays (zstd) on one such output chunk
(the same smooth pattern plus noise, doubled bicubic) and one input chunk, on one CPU
(median of ``--repeat``), two ways:

- zarr's own ``ZstdCodec``, which calls numcodecs' ``Zstd``: a new ``bytes`` object for
  every result;
- upconv's ``ReusingZstdCodec`` (:mod:`upconv.zarr_zstd`): the same libzstd calls, their
  results in arrays kept for reuse;
- upconv's ``FrameWriter``, as a job into a local store compresses an output chunk: its rows
  handed to libzstd's streaming compressor a band of 512 at a time, as they are computed,
  the frame's bytes handed on a megabyte at a time (here the rows come from memory, not
  from the CPU's cache as in the job, and the bytes go nowhere);

and adds up what the job's chunks cost: CPU seconds no number of workers removes, which
bound the zstd job's time on this machine's 2 CPUs from below.

Needs ``pip install 'upconv[dask]'`` (zarr) and about 1 GB of memory::

    python bench/bench_zarr_codec.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import sys
import time

import numpy as np

import upconv

#: The job of ``bench/bench_zarr.py``: input size and chunk, output chunk.
SIZE, CHUNK, OUT_CHUNK = 16000, 2048, 4096


def input_chunk(first_row: int) -> np.ndarray:
    """Rows ``first_row`` onward of ``bench_zarr.make_inputs``'s pattern, one chunk's worth
    (its first ``CHUNK`` columns; noise of the same spread, drawn here)."""
    x = np.linspace(0, 8 * np.pi, SIZE, dtype=np.float32)[:CHUNK]
    rows = np.arange(first_row, first_row + CHUNK, dtype=np.float32)[:, None, None]
    band = 0.5 + 0.25 * np.sin(x[None, :, None] + np.arange(3, dtype=np.float32)) * \
        np.cos(rows * 8 * np.pi / SIZE)
    noise = np.random.default_rng(0).normal(0, 0.02, band.shape).astype(np.float32)
    return (band + noise).astype(np.float32)


def timed(function, data, repeat: int) -> tuple[float, object]:
    """Median seconds of ``function(data)`` over ``repeat`` runs, and its last result."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = function(data)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    try:
        import zarr
    except ImportError:
        print("skipped: needs pip install 'upconv[dask]'")
        return 0
    probe = zarr.create_array(store={}, shape=(1,), dtype="f4", compressors="auto")
    (codec,) = probe.compressors
    if type(codec).__name__ != "ZstdCodec":
        print(f"skipped: zarr's default compressor here is {codec}, not zstd")
        return 0
    from zarr.core.array_spec import ArrayConfig, ArraySpec
    from zarr.core.buffer import default_buffer_prototype

    from upconv.zarr_zstd import ReusingZstdCodec

    small = input_chunk(SIZE // 2)
    big = upconv.scale(small, 2, "bicubic").astype(np.float32)
    assert big.shape == (OUT_CHUNK, OUT_CHUNK, 3)
    prototype = default_buffer_prototype()
    out_chunks = math.ceil(2 * SIZE / OUT_CHUNK) ** 2
    in_chunks = math.ceil(SIZE / CHUNK) ** 2
    print(f"zarr's default compressor: {codec}; bench_zarr.py's job compresses {out_chunks} "
          f"{OUT_CHUNK}x{OUT_CHUNK}x3 chunks ({big.nbytes / 1e6:.0f} MB) and decompresses "
          f"{in_chunks} {CHUNK}x{CHUNK}x3 chunks ({small.nbytes / 1e6:.0f} MB) twice "
          f"(median of {args.repeat}, one CPU):")
    for name, way in [("zarr's ZstdCodec", codec),
                      ("upconv's ReusingZstdCodec",
                       ReusingZstdCodec(level=codec.level, checksum=codec.checksum))]:
        spec = ArraySpec(shape=(big.nbytes,), dtype=probe.metadata.data_type,
                         fill_value=0, config=ArrayConfig.from_dict({}), prototype=prototype)
        raw_big = prototype.buffer.from_array_like(big.reshape(-1).view(np.uint8))
        raw_small = prototype.buffer.from_array_like(small.reshape(-1).view(np.uint8))
        compress, packed = timed(functools.partial(way._encode_sync, chunk_spec=spec),
                                 raw_big, args.repeat)
        packed_small = way._encode_sync(raw_small, spec)
        decompress, unpacked = timed(functools.partial(way._decode_sync, chunk_spec=spec),
                                     packed_small, args.repeat)
        assert unpacked.to_bytes() == raw_small.to_bytes()
        cpu = out_chunks * compress + 2 * in_chunks * decompress
        print(f"  {name + ':':27s} compress {compress * 1e3:4.0f} ms "
              f"({big.nbytes / compress / 1e6:4.0f} MB/s, to {len(packed) / big.nbytes:.2f} of "
              f"the size), decompress {decompress * 1e3:3.0f} ms "
              f"({small.nbytes / decompress / 1e6:4.0f} MB/s): {cpu:.1f} s of CPU in the "
              f"codec for the job, {cpu / 2:.1f} s on 2 CPUs")
        del packed, packed_small, unpacked
    from upconv.zarr_zstd import FrameWriter

    def streamed(values: np.ndarray) -> int:
        size = [0]

        def hand_on(piece: memoryview) -> None:
            size[0] += len(piece)

        frame = FrameWriter(values.nbytes, codec.level, codec.checksum, hand_on)
        for first in range(0, len(values), 512):
            frame.write([row.data for row in values[first:first + 512]])
        frame.finish()
        return size[0]

    compress, size = timed(streamed, big, args.repeat)
    print(f"  {'upconv, a band at a time:':27s} compress {compress * 1e3:4.0f} ms "
          f"({big.nbytes / compress / 1e6:4.0f} MB/s, to {size / big.nbytes:.2f} of "
          f"the size): {out_chunks * compress:.1f} s of CPU for the job's output chunks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
