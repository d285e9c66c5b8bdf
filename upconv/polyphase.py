"""The resampling engine: separable 1-D tap operators, applied fast.

Every resampler in upconv is, along each axis, a linear map of the form::

    out[i] = sum_k weights[i, k] * ext[index[i, k] + pad]

where ``ext`` is the input extended by ``pad`` samples on each side (by the
boundary rule or, for splines, the prefilter). :class:`AxisTaps` holds that
map for arbitrary factors. When the output is exactly ``s`` times the input,
the map is periodic in ``i`` with period ``s``; it is then a set of ``s``
*phases* (:class:`Phases`), each an ordinary small correlation at input
resolution whose results interleave into the output. That is the polyphase
(sub-pixel) form of a transposed convolution, and the same engine serves
integer-factor interpolation and transposed convolution with any kernel.

The 2-D driver works on horizontal bands of a few dozen rows, so that its
temporaries stay in cache, and hands the bands to a thread pool: numpy
releases the GIL in its inner loops, so every CPU the process may use works.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .samples import from_float, store_as

__all__ = ["AxisTaps", "Phases", "Phases2D", "default_threads", "apply_separable", "apply_2d",
           "apply_general", "gather", "run_over_rows", "band_of_periods", "shutdown_pools"]

#: Rows of input processed per work unit (at most): a band of a 1920-wide RGB float32
#: image's output and its temporaries stay within a few megabytes.
BAND_ROWS = 64
#: Bytes of one band's output rows that :func:`apply_separable` aims at: wider images get
#: fewer rows per band (at least 8), so each thread's buffers stay this small.
BAND_BYTES = 3 << 20
#: Output rows of the y pass accumulated at a time (they stay in L2 meanwhile).
Y_CHUNK = 8


def default_threads() -> int:
    """Number of worker threads to use: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Phases:
    """A periodic (integer factor ``s``) 1-D resampling operator.

    ``out[s*m + p] = sum_t weights[p, t] * ext[m + start[p] + t]`` where
    ``ext`` is the input already extended by its pad, so ``start`` already
    includes the pad.

    Examples
    --------
    >>> ph = Phases(np.array([0, 1]), np.array([[0.25, 0.75], [0.75, 0.25]]))
    >>> ph.factor, ph.reach
    (2, 3)
    """

    start: np.ndarray  # (s,) int
    weights: np.ndarray  # (s, taps) float

    @property
    def factor(self) -> int:
        return int(self.start.shape[0])

    @property
    def reach(self) -> int:
        """Extended samples one output period reads past ``m``: ``max(start + taps)``."""
        return int((self.start + self.weights.shape[1]).max())


@dataclass(frozen=True)
class AxisTaps:
    """A general 1-D resampling operator (any factor).

    ``out[i] = sum_k weights[i, k] * ext[index[i, k]]``, with ``index`` into
    the extended input (pad already added).
    """

    index: np.ndarray  # (n_out, taps) int
    weights: np.ndarray  # (n_out, taps) float


def _row_chunks(n: int, rows: int) -> list[tuple[int, int]]:
    return [(a, min(n, a + rows)) for a in range(0, n, rows)]


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(threads: int) -> ThreadPoolExecutor:
    """A process-wide pool per thread count: starting threads on every call costs."""
    with _POOLS_LOCK:
        pool = _POOLS.get(threads)
        if pool is None:
            pool = _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="upconv")
        return pool


# A forked child has none of the parent's threads: give it fresh pools.
os.register_at_fork(after_in_child=_POOLS.clear)


def shutdown_pools() -> None:
    """Let every pool's threads go (they finish what they run, and take no more).

    ``concurrent.futures`` wakes its idle threads when the interpreter exits, but only
    those it has registered: a Ctrl-C that lands while a pool is starting a thread
    (between its start and its registration) leaves one that nothing wakes, and the
    exit then waits for it forever. A pool's own shutdown wakes all of its threads
    through its queue, so the command line calls this on its way out.
    """
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.shutdown(wait=False, cancel_futures=True)


def run_over_rows(make_worker: Callable[[], Callable[[tuple[int, int]], None]],
                  n_rows: int, band_rows: int, threads: int) -> None:
    """Run a worker over ``n_rows`` rows in bands of ``band_rows``, on ``threads`` threads;
    each thread takes one contiguous run of bands.

    ``make_worker`` is called once per thread, so a worker may own buffers.
    A worker's exception is raised here.

    Examples
    --------
    >>> seen = []
    >>> run_over_rows(lambda: seen.append, 5, 2, threads=2)
    >>> sorted(seen)
    [(0, 2), (2, 4), (4, 5)]
    """
    bands = _row_chunks(n_rows, band_rows)
    threads = min(threads, len(bands))

    def run_group(group: list[tuple[int, int]]) -> None:
        work = make_worker()
        for band in group:
            work(band)

    if threads <= 1:
        run_group(bands)
        return
    groups = [bands[k * len(bands) // threads:(k + 1) * len(bands) // threads]
              for k in range(threads)]
    for _ in _pool(threads).map(run_group, groups):  # re-raises a worker's exception
        pass


def band_of_periods(computed: np.ndarray, first: int, rows: int,
                    columns: int | tuple[int, int], out: np.ndarray | None) -> np.ndarray:
    """Rows ``[first, first + rows)`` and the first ``columns`` columns (or the columns
    ``[c, d)``) of a band computed in whole output periods: ``out`` itself if the engine
    wrote there, else written into ``out`` as its type (:func:`~upconv.samples.store_as`),
    else returned as an array.

    Examples
    --------
    >>> periods = np.arange(12.0).reshape(4, 3, 1)
    >>> band_of_periods(periods, 1, 2, 2, None)[..., 0]
    array([[3., 4.],
           [6., 7.]])
    >>> band_of_periods(periods, 1, 2, (1, 3), None)[..., 0]
    array([[4., 5.],
           [7., 8.]])
    """
    if computed is out:
        return out
    start, stop = (0, columns) if isinstance(columns, int) else columns
    cut = computed[first:first + rows, start:stop]
    if out is None:
        return np.ascontiguousarray(cut)
    return store_as(cut, out)


def _pixel_view(a: np.ndarray) -> np.ndarray:
    """View (rows, width, C) as (rows, width) of opaque C-sample pixels.

    Interleaving phases is a strided copy; copying whole pixels instead of
    single samples makes its inner loop C times shorter.
    """
    if a.shape[2] == 1:
        return a[..., 0]
    pixel = np.dtype((np.void, a.shape[2] * a.itemsize))
    return a.view(pixel)[..., 0]


def _correlate_rows(src: np.ndarray, start: int, weights: np.ndarray, n: int,
                    step: int, dst: np.ndarray, scratch: np.ndarray) -> None:
    """``dst = sum_t weights[t] * src[:, (start + t)*step : ... + n]`` along axis 1."""
    def tap(t: int) -> np.ndarray:
        first = (start + t) * step
        return src[:, first:first + n]

    np.multiply(tap(0), weights[0], out=dst)
    for t in range(1, weights.shape[0]):
        np.multiply(tap(t), weights[t], out=scratch)
        dst += scratch


def apply_separable(ext: np.ndarray, phases_y: Phases, phases_x: Phases,
                    out: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Apply integer-factor operators along both axes of an extended image.

    Parameters
    ----------
    ext : ndarray, shape (He, We, C)
        The extended input; the phases' ``start`` offsets index into it, and
        it must cover every sample they read.
    phases_y, phases_x : Phases
        Operators along rows (axis 0) and columns (axis 1).
    out : ndarray, shape (sy*M, sx*N, C)
        Destination, written in place and returned; ``M`` and ``N`` are the
        numbers of output periods. Float, or integer samples: then each few
        rows are rounded into it as they are computed (as
        :func:`~upconv.samples.from_float` rounds values in [0, 1]), so the
        values are never held as floats.
    threads : int, optional
        Worker threads; default :func:`default_threads`.

    Returns
    -------
    ndarray
        ``out``.

    Examples
    --------
    >>> tri = Phases(np.array([0, 1]), np.array([[0.25, 0.75], [0.75, 0.25]]))
    >>> x = np.arange(4.0).reshape(2, 2, 1)
    >>> ext = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
    >>> apply_separable(ext, tri, tri, np.empty((4, 4, 1)))[..., 0]
    array([[0.  , 0.25, 0.75, 1.  ],
           [0.5 , 0.75, 1.25, 1.5 ],
           [1.5 , 1.75, 2.25, 2.5 ],
           [2.  , 2.25, 2.75, 3.  ]])
    >>> apply_separable(ext / 3, tri, tri, np.empty((4, 4, 1), np.uint8))[..., 0]
    array([[  0,  21,  64,  85],
           [ 42,  64, 106, 128],
           [128, 149, 191, 212],
           [170, 191, 234, 255]], dtype=uint8)
    """
    threads = default_threads() if threads is None else threads
    channels = ext.shape[2]
    sy, sx = phases_y.factor, phases_x.factor
    height, width = out.shape[0] // sy, out.shape[1] // sx
    dtype = ext.dtype
    rounded = out.dtype.kind != "f"
    flat = ext.reshape(ext.shape[0], -1)
    row_len = width * channels

    first_row = int(phases_y.start.min())  # rows of ext above this are never read
    band_rows = max(8, min(BAND_ROWS, BAND_BYTES // max(1, out.shape[1] * channels
                                                         * dtype.itemsize)))
    max_rows = band_rows + phases_y.reach - first_row

    def make_worker() -> Callable[[tuple[int, int]], None]:
        # Per-thread buffers, allocated once and reused for every band: fresh
        # multi-megabyte temporaries would cost a page fault per 4 KiB each time.
        mid_buffer = np.empty((max_rows, sx * width, channels), dtype)
        phase_buffer = np.empty((max_rows, row_len), dtype)
        scratch_buffer = np.empty((max_rows * sx, row_len), dtype)
        # Rows of an integer output are accumulated here, then rounded into it.
        rows_buffer = np.empty((Y_CHUNK, out.shape[1] * channels), dtype) if rounded else None

        def work(band: tuple[int, int]) -> None:
            a, b = band
            rows = flat[a + first_row:b + phases_y.reach]
            n_rows = rows.shape[0]
            # x pass: each phase contiguous into `phase`, then interleaved by pixel.
            mid = mid_buffer[:n_rows]
            mid_px = _pixel_view(mid)
            phase = phase_buffer[:n_rows]
            scratch = scratch_buffer[:n_rows]
            for p in range(sx):
                _correlate_rows(rows, int(phases_x.start[p]), phases_x.weights[p],
                                row_len, channels, phase, scratch)
                mid_px[:, p::sx] = _pixel_view(phase.reshape(n_rows, width, channels))
            # y pass: whole rows, written straight into the output.
            mid_rows = mid.reshape(n_rows, -1)
            target = out[sy * a:sy * b].reshape(b - a, sy, -1)
            for c0 in range(0, b - a, Y_CHUNK):
                # A few output rows at a time, so `dst` stays in cache while it accumulates.
                c1 = min(b - a, c0 + Y_CHUNK)
                scratch = scratch_buffer.reshape(-1)[:(c1 - c0) * mid_rows.shape[1]]
                scratch = scratch.reshape(c1 - c0, -1)
                for q in range(sy):
                    start = int(phases_y.start[q]) - first_row + c0
                    weights = phases_y.weights[q]
                    dst = rows_buffer[:c1 - c0] if rounded else target[c0:c1, q]
                    np.multiply(mid_rows[start:start + c1 - c0], weights[0], out=dst)
                    for t in range(1, weights.shape[0]):
                        np.multiply(mid_rows[start + t:start + t + c1 - c0], weights[t],
                                    out=scratch)
                        dst += scratch
                    if rounded:
                        from_float(dst, out.dtype, out=target[c0:c1, q])

        return work

    run_over_rows(make_worker, height, band_rows, threads)
    return out


def apply_general(ext: np.ndarray, taps_y: AxisTaps, taps_x: AxisTaps, out: np.ndarray,
                  threads: int | None = None) -> np.ndarray:
    """Apply general (any-factor) operators along both axes, band by band.

    The non-integer counterpart of :func:`apply_separable`: for each band of
    output rows, the x operator runs on just the input rows the band needs
    (gathering columns), then the y operator combines those rows.

    Parameters
    ----------
    ext : ndarray, shape (He, We, C)
        The extended input; the taps' indices point into it.
    taps_y, taps_x : AxisTaps
        Operators along rows and columns; ``out`` has ``len(taps_y.index)``
        rows and ``len(taps_x.index)`` columns.
    out : ndarray
        Destination, written in place and returned: float, or integer samples
        rounded into as in :func:`apply_separable`.

    Examples
    --------
    >>> half = AxisTaps(np.array([[0, 1], [1, 2]]), np.array([[0.5, 0.5], [0.5, 0.5]]))
    >>> ext = np.array([[0.0, 2.0, 4.0]] * 3)[:, :, None]
    >>> apply_general(ext, half, half, np.empty((2, 2, 1)))[..., 0]
    array([[1., 3.],
           [1., 3.]])
    """
    threads = default_threads() if threads is None else threads
    channels = ext.shape[2]
    dtype = ext.dtype
    rounded = out.dtype.kind != "f"
    flat = ext.reshape(ext.shape[0], -1)
    flat_out = out.reshape(out.shape[0], -1)
    # Column taps in the flattened (W*C) rows, and their weights repeated per channel.
    cols = [(taps_x.index[:, k, None] * channels + np.arange(channels)).ravel()
            for k in range(taps_x.index.shape[1])]
    col_weights = [np.repeat(taps_x.weights[:, k], channels).astype(dtype)
                   for k in range(taps_x.index.shape[1])]
    row_weights = taps_y.weights.astype(dtype)

    def work(band: tuple[int, int]) -> None:
        a, b = band
        index = taps_y.index[a:b]
        first, last = int(index.min()), int(index.max()) + 1
        rows = flat[first:last]
        mid = np.take(rows, cols[0], axis=1)
        mid *= col_weights[0]
        for k in range(1, len(cols)):
            mid += np.take(rows, cols[k], axis=1) * col_weights[k]
        target = np.empty((b - a, flat_out.shape[1]), dtype) if rounded else flat_out[a:b]
        np.multiply(mid[index[:, 0] - first], row_weights[a:b, 0, None], out=target)
        for k in range(1, index.shape[1]):
            target += mid[index[:, k] - first] * row_weights[a:b, k, None]
        if rounded:
            from_float(target, out.dtype, out=flat_out[a:b])

    run_over_rows(lambda: work, out.shape[0], BAND_ROWS, threads)
    return out


def gather(image: np.ndarray, rows: np.ndarray, cols: np.ndarray,
           threads: int | None = None) -> np.ndarray:
    """``image[rows][:, cols]`` for (H, W, C) arrays of any dtype, fast.

    This is nearest-neighbour resampling: pure index selection, so the
    samples keep their dtype and values exactly.

    Examples
    --------
    >>> gather(np.arange(4).reshape(2, 2, 1), np.array([0, 0, 1]), np.array([1, 0]))[..., 0]
    array([[1, 0],
           [1, 0],
           [3, 2]])
    """
    threads = default_threads() if threads is None else threads
    channels = image.shape[2]
    flat = image.reshape(image.shape[0], -1)
    # column indices in the flattened (W*C) row: pixel index * C + channel
    flat_cols = (cols[:, None] * channels + np.arange(channels)).ravel()
    n_out = rows.shape[0]
    out = np.empty((n_out, flat_cols.shape[0]), image.dtype)
    factor = n_out // image.shape[0]
    if n_out == factor * image.shape[0] and np.array_equal(rows, np.arange(n_out) // factor):
        # Integer factor: each source row is repeated `factor` times; a
        # broadcast copy of whole rows is several times faster than take().
        blocks = out.reshape(image.shape[0], factor, -1)

        def work(band: tuple[int, int]) -> None:
            a, b = band
            blocks[a:b] = np.take(flat[a:b], flat_cols, axis=1)[:, None, :]

        n_work = image.shape[0]
    else:
        def work(band: tuple[int, int]) -> None:
            a, b = band
            unique, inverse = np.unique(rows[a:b], return_inverse=True)
            picked = np.take(flat[unique], flat_cols, axis=1)
            np.take(picked, inverse, axis=0, out=out[a:b])

        n_work = n_out
    # Bands of a few dozen rows keep each band's `take` result in cache for the copies.
    run_over_rows(lambda: work, n_work, 32, threads)
    return out.reshape(n_out, cols.shape[0], channels)


@dataclass(frozen=True)
class Phases2D:
    """A non-separable integer-factor operator: ``sy * sx`` small 2-D correlations.

    ``out[sy*m + p, sx*n + q] = sum_{u,v} weights[p, q, u, v] * ext[m + start_y[p] + u,
    n + start_x[q] + v]`` with ``ext`` the extended input. ``weights`` may have a
    trailing channel axis (one weight per channel) or not (shared by all channels).
    """

    start_y: np.ndarray  # (sy,) int
    start_x: np.ndarray  # (sx,) int
    weights: np.ndarray  # (sy, sx, Ty, Tx) or (sy, sx, Ty, Tx, C)


def apply_2d(ext: np.ndarray, phases: Phases2D, out: np.ndarray,
             threads: int | None = None) -> np.ndarray:
    """Apply a :class:`Phases2D` operator: the polyphase transposed convolution.

    Parameters
    ----------
    ext : ndarray, shape (He, We, C)
        The extended input; it must cover every index the phases read for
        ``m < out.shape[0] // sy`` and ``n < out.shape[1] // sx``.
    phases : Phases2D
    out : ndarray, shape (sy*M, sx*N, C)
        Destination, written in place and returned: float, or integer samples
        rounded into as in :func:`apply_separable`.
    threads : int, optional
        Worker threads; default :func:`default_threads`.

    Examples
    --------
    >>> box = Phases2D(np.zeros(2, int), np.zeros(2, int), np.ones((2, 2, 1, 1)))
    >>> apply_2d(np.arange(2.0).reshape(1, 2, 1), box, np.empty((2, 4, 1)))[..., 0]
    array([[0., 0., 1., 1.],
           [0., 0., 1., 1.]])
    """
    threads = default_threads() if threads is None else threads
    sy, sx, taps_y, taps_x = phases.weights.shape[:4]
    channels = ext.shape[2]
    rows_out, cols_out = out.shape[0] // sy, out.shape[1] // sx
    dtype = ext.dtype
    rounded = out.dtype.kind != "f"
    flat = ext.reshape(ext.shape[0], -1)
    row_len = cols_out * channels
    per_channel = phases.weights.ndim == 5
    # One multiplier per tap: a scalar, or a row vector repeating the channel weights.
    if per_channel:
        multipliers = np.tile(phases.weights.astype(dtype), cols_out)
    else:
        multipliers = phases.weights.astype(dtype)
    out_px = _pixel_view(out)

    def make_worker() -> Callable[[tuple[int, int]], None]:
        accumulator = np.empty((BAND_ROWS, row_len), dtype)
        scratch = np.empty((BAND_ROWS, row_len), dtype)
        # Phases of an output of another type are converted here before they interleave.
        samples = np.empty((BAND_ROWS, row_len), out.dtype) if out.dtype != dtype else None

        def work(band: tuple[int, int]) -> None:
            a, b = band
            n = b - a
            acc = accumulator[:n]
            tmp = scratch[:n]
            for p in range(sy):
                for q in range(sx):
                    first = True
                    for u in range(taps_y):
                        row0 = a + int(phases.start_y[p]) + u
                        block = flat[row0:row0 + n]
                        for v in range(taps_x):
                            weight = multipliers[p, q, u, v]
                            if not np.any(weight):
                                continue  # a tap the phase does not have
                            col0 = (int(phases.start_x[q]) + v) * channels
                            source = block[:, col0:col0 + row_len]
                            if first:
                                np.multiply(source, weight, out=acc)
                                first = False
                            else:
                                np.multiply(source, weight, out=tmp)
                                acc += tmp
                    if first:
                        acc.fill(0)
                    if samples is None:
                        phase = acc
                    elif rounded:
                        phase = from_float(acc, out.dtype, out=samples[:n])
                    else:
                        phase = samples[:n]
                        phase[...] = acc
                    target = out_px[sy * a + p:sy * b:sy, q::sx]
                    target[...] = _pixel_view(phase.reshape(n, cols_out, channels))

        return work

    run_over_rows(make_worker, rows_out, BAND_ROWS, threads)
    return out
