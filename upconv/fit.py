"""Fitting transposed-convolution kernels by linear least squares.

Every output pixel of a transposed convolution is linear in the kernel
weights, so fitting a kernel that maps LOW images to HIGH images is linear
regression. In polyphase form it splits: phase ``(p, q)`` of HIGH is
predicted from the LOW neighbourhood by the sub-kernel ``h[p::s, q::s]``,
an independent least-squares problem per phase. All phases read windows of
the same LOW image, so upconv accumulates **one Gram matrix** ``A^T A`` over a
window that covers every phase's taps, plus one right-hand side ``A^T b`` per
phase, block by block over rows and over training pairs: the design matrix
``A`` is never built whole, and memory does not grow with the images. Each
phase then solves with its own rows and columns of that Gram matrix.

The right-hand sides and energies are accumulated relative to a provisional
kernel ``h0``, fitted first on a band of the first pair: the HIGH rows hold
``d = b - A h0``, and ``A^T b = A^T d + G h0`` is formed before solving. The
weights are the same, but the residual ``|d - A (h - h0)|^2`` cancels only
at the scale of ``|d|^2``, near the residual itself, not at that of the
signal. Where ``h0`` leaves more than ``REFERENCE_BELOW`` of the band's
energy, ``h0 = 0``: the plain statistic then keeps 10 digits or more.

``checkerboard_free`` adds the ``s*s - 1`` equality constraints that all phase
sums be equal (a flat input then stays exactly flat) and solves the KKT
system of the coupled problem.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .errors import BadInputError
from .kernels import MAX_KERNEL_SIDE, Kernel
from .options import Boundary, choice
from .samples import to_float
from .transpose import axis_layout

__all__ = ["fit_kernel", "FitReport", "NormalEquations", "pair_factor"]

#: LOW rows per block of the accumulation (fewer for wide images or big windows,
#: so that a block of [A | B] stays under BLOCK_BYTES).
BLOCK_ROWS = 16
BLOCK_BYTES = 32 * 2 ** 20
#: Most weights a window may hold: the Gram matrix is window^2 x window^2.
MAX_WINDOW_CELLS = 4096
#: Relative ridge applied, with a warning, when the data do not determine the kernel.
FALLBACK_RIDGE = 1e-6
#: LOW rows (plus the margins) of the first pair that the provisional kernel is fitted on.
PROVISIONAL_ROWS = 32
#: The provisional kernel is the reference only where it leaves less than this fraction
#: of the energy: the plain statistic loses about log10(energy / residual) of the 16
#: digits, so it is kept to 1e-10 or better and costs nothing where that holds.
REFERENCE_BELOW = 1e-6
#: Columns of a block per product when the provisional kernel's prediction is subtracted.
SUBTRACT_COLUMNS = 1024


@dataclass
class FitReport:
    """Statistics of a fit, as recorded in the kernel file."""

    samples: int = 0
    pairs: int = 0
    training_psnr: float | None = None
    rms_residual: float = 0.0
    condition_number: float = 0.0
    ridge: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"samples": self.samples, "pairs": self.pairs,
                "training_psnr": self.training_psnr, "rms_residual": self.rms_residual,
                "condition_number": self.condition_number, "ridge": self.ridge}


@dataclass(frozen=True)
class _Window:
    """One axis of the shared window: where each phase's taps sit inside it."""

    first: int  # window start relative to the period m, in input coordinates
    width: int  # window length
    slot: np.ndarray  # (s, T) window position of tap u of phase p
    tap: np.ndarray  # (s, T) kernel index of that tap, -1 where the phase has none


def _window(kernel_size: int, stride: int) -> _Window:
    axis = axis_layout(kernel_size, stride, (stride - kernel_size) // 2, 1, stride)
    lowest = int(axis.start.min())
    taps = axis.tap_index.shape[1]
    width = int(axis.start.max()) + taps - lowest
    slot = axis.start[:, None] - lowest + np.arange(taps)
    return _Window(lowest - axis.before, width, slot, axis.tap_index)


def pair_factor(low_shape: Sequence[int], high_shape: Sequence[int],
                factor: int | None = None) -> int:
    """The factor ``s`` of a LOW/HIGH pair; HIGH may be up to ``s - 1`` pixels larger.

    Examples
    --------
    >>> pair_factor((10, 12), (21, 24))
    2
    """
    low_h, low_w = low_shape[:2]
    high_h, high_w = high_shape[:2]
    if factor is None:
        factor = min(high_h // low_h, high_w // low_w)
    ok = factor >= 2 and all(0 <= hi - factor * lo < factor
                             for lo, hi in ((low_h, high_h), (low_w, high_w)))
    if not ok:
        raise BadInputError(f"HIGH ({high_w}x{high_h}) is not {factor} times LOW "
                          f"({low_w}x{low_h})" if factor >= 2 else
                          f"HIGH ({high_w}x{high_h}) is not at least twice LOW "
                          f"({low_w}x{low_h})")
    return factor


class NormalEquations:
    """Accumulated least-squares statistics for one kernel geometry.

    The Gram matrix ``G = A^T A`` is accumulated as it is; the right-hand
    sides ``A^T d`` and energies ``|d|^2`` are for ``d = b - A h0``, the HIGH
    samples less the prediction of a provisional kernel ``h0``. Solving uses
    ``A^T b = A^T d + G h0``, so the weights are those of the plain problem,
    while the residual ``|d - A (h - h0)|^2`` cancels only at the scale of
    ``|d|^2``, near the residual itself, not at that of the signal.

    Parameters
    ----------
    size : int
        Kernel side ``K`` (a ``K x K`` kernel).
    stride : int
        The factor ``s``.
    boundary : Boundary
        How LOW is extended past its border, as when the kernel is applied.
    groups : int
        1 for a kernel shared by all channels, ``C`` for one per channel.
    margin : int
        LOW pixels at each border left out of the fit.
    reference : ndarray, optional
        The provisional kernel ``h0``, ``(groups, K, K)``: any reference point,
        the closer to the solution the more accurate the residual. By default
        ``h0 = 0`` (the residual then cancels at the scale of the signal).
    """

    def __init__(self, size: int, stride: int, boundary: Boundary, groups: int = 1,
                 margin: int = 0, reference: np.ndarray | None = None) -> None:
        self.size, self.stride, self.boundary = size, stride, boundary
        self.groups, self.margin = groups, margin
        self.window = _window(size, stride)
        cells = self.window.width ** 2
        if cells > MAX_WINDOW_CELLS:
            largest = max(k for k in range(stride, size) if _window(k, stride).width ** 2
                          <= MAX_WINDOW_CELLS)
            raise BadInputError(f"a {size}x{size} kernel at stride {stride} means fitting "
                              f"{cells} weights at once; at most {MAX_WINDOW_CELLS} "
                              f"(--size {largest} or less)")
        phases = stride * stride
        self.gram = np.zeros((groups, cells, cells))
        self.rhs = np.zeros((groups, cells, phases))
        self.energy = np.zeros((groups, phases))
        self.count = np.zeros(groups, dtype=np.int64)
        # h0 in window cells, one column per phase: (groups, cells, s*s)
        self.reference = np.zeros((groups, cells, phases))
        if reference is not None:
            reference = np.asarray(reference, dtype=np.float64)
            if reference.shape != (groups, size, size):
                raise ValueError(f"reference kernel {reference.shape} is not "
                                 f"{(groups, size, size)}")
            for p in range(stride):
                for q in range(stride):
                    phase_cells, taps = self._phase_cells(p, q)
                    self.reference[:, phase_cells, p * stride + q] = reference[:, taps[0],
                                                                               taps[1]]
        self._subtract = bool(self.reference.any())

    def add(self, low: np.ndarray, high: np.ndarray) -> None:
        """Add one pair: LOW (H, W, C) and HIGH (s*H, s*W, C).

        Float values in [0, 1], or uint8/uint16 samples (read as value / max):
        integer HIGH images are converted block by block, never whole.
        """
        s, win = self.stride, self.window
        height, width, channels = low.shape
        if high.shape[:2] != (s * height, s * width) or high.shape[2] != channels:
            raise BadInputError(f"HIGH {high.shape} does not match LOW {low.shape} at factor {s}")
        if self.groups not in (1, channels):
            raise BadInputError(f"a per-channel fit needs {self.groups} channels in every pair, "
                              f"got {channels}")
        axis_y = axis_layout(self.size, s, (s - self.size) // 2, height, s * height)
        axis_x = axis_layout(self.size, s, (s - self.size) // 2, width, s * width)
        rows = range(self.margin, height - self.margin)
        cols = slice(self.margin, width - self.margin)
        n_cols = width - 2 * self.margin
        if len(rows) < 1 or n_cols < 1:
            raise BadInputError(f"a margin of {self.margin} leaves nothing of a "
                              f"{width}x{height} image")
        cells = win.width * win.width
        start_y, start_x = win.first + axis_y.before, win.first + axis_x.before
        block_rows = max(1, min(BLOCK_ROWS, BLOCK_BYTES // (8 * (cells + s * s) * n_cols)))
        # h0 as one row per phase over the window cells: the HIGH rows become b - A h0
        against = np.ascontiguousarray(self.reference.transpose(0, 2, 1)) if (
            self._subtract) else None
        jobs = []
        for c in range(channels):
            ext = self.boundary.extend(to_float(low[:, :, c:c + 1]),
                                       (axis_y.before, axis_y.after),
                                       (axis_x.before, axis_x.after))[:, :, 0]
            group = c if self.groups > 1 else 0
            jobs += [(group, ext, high[:, :, c], m0, min(rows.stop, m0 + block_rows))
                     for m0 in range(rows.start, rows.stop, block_rows)]

        def accumulate(part: list) -> np.ndarray:
            # One block of [A | B], stored transposed: row (dy, dx) of the window is
            # a shifted copy of LOW, then one row per HIGH phase. A single product
            # gives A^T A, A^T B and B^T B at once.
            sums = np.zeros((self.groups, cells + s * s, cells + s * s))
            joint = np.empty((cells + s * s, block_rows * n_cols))
            for group, ext, target, m0, m1 in part:
                block = joint[:, :(m1 - m0) * n_cols]
                rows_of = block.reshape(cells + s * s, m1 - m0, n_cols)
                for dy in range(win.width):
                    source = ext[m0 + start_y + dy:m1 + start_y + dy]
                    for dx in range(win.width):
                        first = cols.start + start_x + dx
                        rows_of[dy * win.width + dx] = source[:, first:first + n_cols]
                for p in range(s):
                    for q in range(s):
                        # the same conversion as LOW's: equal samples, equal values
                        to_float(target[s * m0 + p:s * m1:s, s * cols.start + q:s * cols.stop:s],
                                 out=rows_of[cells + p * s + q])
                if against is not None:
                    # in short runs of columns: each product is too small for the BLAS
                    # to start its threads (the other worker's product is using them)
                    for c0 in range(0, block.shape[1], SUBTRACT_COLUMNS):
                        run = slice(c0, c0 + SUBTRACT_COLUMNS)
                        block[cells:, run] -= against[group] @ block[:cells, run]
                sums[group] += block @ block.T
            return sums

        # Two workers: one copies its next block while the other's product runs.
        halves = [jobs[0::2], jobs[1::2]]
        with ThreadPoolExecutor(2) as pool:
            for sums in pool.map(accumulate, halves):
                self.gram += sums[:, :cells, :cells]
                self.rhs += sums[:, :cells, cells:]
                self.energy += np.diagonal(sums, axis1=1, axis2=2)[:, cells:]
        for group, _, _, m0, m1 in jobs:
            self.count[group] += (m1 - m0) * n_cols

    def solve(self, ridge: float = 0.0, checkerboard_free: bool = False
              ) -> tuple[np.ndarray, FitReport]:
        """Weights ``(groups, K, K)`` minimising the squared error (plus ridge)."""
        s = self.stride
        report = FitReport(samples=int(self.count.sum()) * s * s, ridge=ridge)
        unknowns = max(len(self._phase_cells(p, q)[0]) for p in range(s) for q in range(s))
        if self.count.min() < unknowns:
            raise BadInputError(f"too few pixels: {int(self.count.min())} LOW samples for "
                              f"{unknowns} unknowns per phase; use a smaller --size or more "
                              "or larger images")
        weights = np.zeros((self.groups, self.size, self.size))
        residual = 0.0
        for g in range(self.groups):
            blocks = []
            for p in range(s):
                for q in range(s):
                    cells, taps = self._phase_cells(p, q)
                    gram = self.gram[g][np.ix_(cells, cells)]
                    # A^T b = A^T d + G h0, with d = b - A h0 as accumulated
                    h0 = self.reference[g][cells, p * s + q]
                    rhs = self.rhs[g][cells, p * s + q]
                    blocks.append((p, q, cells, taps, gram, rhs + gram @ h0, rhs, h0))
            scales = [np.trace(b[4]) / len(b[2]) for b in blocks]
            if not all(np.isfinite(scales)) or min(scales) <= 0:
                where = f"channel {g} of the training images is" if self.groups > 1 else (
                    "the training images are")
                raise BadInputError(f"{where} blank (all zero): nothing to fit")
            lam = ridge
            conditions = [_condition(b[4] + lam * sc * np.eye(len(b[2])))
                          for b, sc in zip(blocks, scales, strict=True)]
            if max(conditions) > 1e12 and lam < FALLBACK_RIDGE:
                where = f" (channel {g})" if self.groups > 1 else ""
                report.notes.append(
                    f"the training data do not determine the kernel{where} (condition number "
                    f"{max(conditions):.3g}, e.g. flat or tiny images); applied ridge "
                    f"{FALLBACK_RIDGE:g}")
                lam = FALLBACK_RIDGE
                report.ridge = max(report.ridge, lam)
                conditions = [_condition(b[4] + lam * sc * np.eye(len(b[2])))
                              for b, sc in zip(blocks, scales, strict=True)]
            report.condition_number = max(report.condition_number, max(conditions))
            systems = [(b[4] + lam * sc * np.eye(len(b[2])), b[5])
                       for b, sc in zip(blocks, scales, strict=True)]
            try:
                solutions = (_solve_constrained(systems) if checkerboard_free
                             else [np.linalg.solve(a, r) for a, r in systems])
            except np.linalg.LinAlgError:
                raise BadInputError("the least-squares system is singular even with the ridge; "
                                  "try a smaller --size or a moderate --ridge") from None
            for (p, q, _cells, taps, gram, _, rhs, h0), h in zip(blocks, solutions,
                                                                   strict=True):
                weights[g][taps] = h
                # |d - A delta|^2: cancels relative to |d|^2, not to the signal's energy
                delta = h - h0
                residual += self.energy[g, p * s + q] - 2 * delta @ rhs + delta @ gram @ delta
        mse = max(residual, 0.0) / max(report.samples, 1)
        report.rms_residual = math.sqrt(mse)
        report.training_psnr = None if mse == 0 else 10 * math.log10(1 / mse)
        if not np.isfinite(weights).all():
            raise BadInputError("the fit did not converge to finite weights; try --ridge 1e-3")
        return weights, report

    def _phase_cells(self, p: int, q: int) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Window cells of phase (p, q)'s taps, and the kernel positions they hold."""
        win = self.window
        valid_y = win.tap[p] >= 0
        valid_x = win.tap[q] >= 0
        slot_y, slot_x = win.slot[p][valid_y], win.slot[q][valid_x]
        tap_y, tap_x = win.tap[p][valid_y], win.tap[q][valid_x]
        cells = (slot_y[:, None] * win.width + slot_x[None, :]).ravel()
        ky = np.repeat(tap_y, len(tap_x))
        kx = np.tile(tap_x, len(tap_y))
        return cells, (ky, kx)


def _condition(matrix: np.ndarray) -> float:
    eigenvalues = np.linalg.eigvalsh(matrix)
    if eigenvalues[0] <= 0:
        return math.inf
    return float(eigenvalues[-1] / eigenvalues[0])


def _solve_constrained(systems: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """Minimise sum_k |A_k h_k - b_k|^2 subject to sum(h_k) equal for every phase k.

    The KKT system: [[H, E^T], [E, 0]] [h; mu] = [r; 0], with H the block
    diagonal of the phases' Gram matrices and E the s*s - 1 rows
    ``1^T h_k - 1^T h_0 = 0``.
    """
    sizes = [len(r) for _, r in systems]
    total = sum(sizes)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    constraints = len(systems) - 1
    kkt = np.zeros((total + constraints, total + constraints))
    rhs = np.zeros(total + constraints)
    for k, (gram, r) in enumerate(systems):
        block = slice(offsets[k], offsets[k + 1])
        kkt[block, block] = gram
        rhs[block] = r
    for row in range(constraints):
        k = row + 1
        kkt[total + row, offsets[k]:offsets[k + 1]] = 1
        kkt[total + row, offsets[0]:offsets[1]] = -1
    kkt[:total, total:] = kkt[total:, :total].T
    solution = np.linalg.solve(kkt, rhs)
    return [solution[offsets[k]:offsets[k + 1]] for k in range(len(systems))]


def fit_kernel(pairs: Iterable[tuple[np.ndarray, np.ndarray]], factor: int | None = None,
               size: int | None = None, ridge: float = 0.0, per_channel: bool = False,
               checkerboard_free: bool = False, boundary: Boundary | str = "edge",
               margin: int = 0, degradation: str | None = None, augment: bool = False
               ) -> Kernel:
    """Fit a transposed-convolution kernel mapping each LOW image to its HIGH image.

    Parameters
    ----------
    pairs : iterable of (low, high)
        Arrays (H, W) or (H, W, C) and (s*H (+ up to s - 1), s*W (+ ...), C):
        floats in [0, 1], or uint8/uint16 samples. Extra right and bottom
        HIGH pixels are cropped. All pairs pool their data.
    factor : int, optional
        The stride ``s``; by default from the sizes.
    size : int, optional
        Kernel side ``K``; default ``6 * s``.
    ridge : float
        Ridge penalty, relative to the mean diagonal of each phase's Gram matrix.
    per_channel : bool
        One kernel per channel, ``(C, K, K)``, instead of one shared ``(K, K)``.
    checkerboard_free : bool
        Constrain all ``s*s`` polyphase sums to be equal.
    boundary : {"edge", "reflect", "zero"}
        Extension of LOW past its border, as the kernel will be applied.
    margin : int
        LOW pixels at each border left out of the fit.
    degradation : str, optional
        How LOW was made, recorded in the kernel.
    augment : bool
        Also fit on the 7 rotated and flipped copies of every pair: 8 times
        the data, and a kernel that treats all orientations alike (photos
        have more horizontal and vertical edges in some directions than
        others; without this the kernel learns those quirks).

    Returns
    -------
    Kernel
        Centred alignment, with ``info`` holding the boundary, degradation and
        fit statistics (``info["fit"]``); warnings in ``info["fit_notes"]``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> low = rng.random((20, 20))
    >>> truth = Kernel(np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 16, stride=2)
    >>> from upconv.transpose import transposed_conv
    >>> high = transposed_conv(low[:, :, None], truth)[:, :, 0]
    >>> fitted = fit_kernel([(low, high)], size=4)
    >>> bool(np.allclose(fitted.weights, truth.weights, atol=1e-10))
    True
    """
    boundary = choice(boundary, Boundary, "boundary")
    if not 0 <= ridge <= 1e6:
        raise BadInputError(f"ridge must be between 0 and 1e6 (relative to the Gram diagonal), "
                          f"not {ridge}")
    if margin < 0:
        raise BadInputError(f"margin must be >= 0, not {margin}")
    equations = None
    pairs_given = 0
    for index, (low, high) in enumerate(pairs):
        low, high = _as_image(low, f"pair {index + 1} LOW"), _as_image(high, f"pair {index + 1} "
                                                                         "HIGH")
        if low.shape[2] != high.shape[2]:
            raise BadInputError(f"pair {index + 1}: LOW has {low.shape[2]} channels, HIGH "
                              f"{high.shape[2]}")
        s = pair_factor(low.shape, high.shape, factor)
        high = high[:s * low.shape[0], :s * low.shape[1]]
        if equations is None:
            factor = s
            kernel_size = 6 * s if size is None else int(size)
            if not s <= kernel_size <= MAX_KERNEL_SIDE:
                raise BadInputError(f"kernel size {kernel_size} must be between the stride {s} "
                                  f"and {MAX_KERNEL_SIDE}")
            groups = low.shape[2] if per_channel else 1
            reference = _provisional(low, high, kernel_size, s, boundary, groups, margin)
            equations = NormalEquations(kernel_size, s, boundary, groups, margin, reference)
        for transform in (DIHEDRAL if augment else DIHEDRAL[:1]):
            equations.add(transform(low), transform(high))
        pairs_given += 1
    if equations is None:
        raise BadInputError("no training pairs given")
    weights, report = equations.solve(ridge, checkerboard_free)
    report.pairs = pairs_given
    info = {"boundary": boundary.value, "degradation": degradation,
            "checkerboard_free": checkerboard_free, "margin": margin, "augmented": augment,
            "fit": report.as_dict()}
    if report.notes:
        info["fit_notes"] = report.notes
    return Kernel(weights if per_channel else weights[0], stride=equations.stride,
                  name="fitted", info=info)


def _provisional(low: np.ndarray, high: np.ndarray, size: int, stride: int,
                 boundary: Boundary, groups: int, margin: int) -> np.ndarray | None:
    """A kernel fitted on the first rows of a pair, or None (``h0 = 0``).

    Only a reference point for the accumulation (see :class:`NormalEquations`).
    None when the band is too small or does not determine the kernel, and
    when the kernel leaves ``REFERENCE_BELOW`` or more of the band's energy:
    the residual is then large enough for the plain statistic.
    """
    # A band of a taller image leaves out the rows whose window reaches past its
    # cut edge (where the boundary extension is not the image), so that an exact
    # pair gives an exact h0.
    reach = _window(size, stride).width
    rows = PROVISIONAL_ROWS + 2 * (margin + reach)
    if low.shape[0] > rows:
        low, high, margin = low[:rows], high[:stride * rows], margin + reach
    probe = NormalEquations(size, stride, boundary, groups, margin)
    try:
        probe.add(low, high)
        weights, report = probe.solve()
    except BadInputError:
        return None
    left = report.rms_residual ** 2 * report.samples
    explained = left < REFERENCE_BELOW * probe.energy.sum()
    return weights if explained and not report.notes and np.isfinite(weights).all() else None


#: The 8 symmetries of the square pixel grid (the first is the identity).
DIHEDRAL = tuple(
    (lambda a, k=k, flip=flip: np.rot90(a[:, ::-1] if flip else a, k))
    for flip in (False, True) for k in range(4))


def _as_image(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.size == 0:
        raise BadInputError(f"{name}: expected an H x W or H x W x C image, got {array.shape}")
    if array.dtype.kind != "f" and array.dtype not in (np.uint8, np.uint16):
        raise BadInputError(f"{name}: expected float values in [0, 1] or uint8/uint16 samples, "
                          f"got {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise BadInputError(f"{name}: contains NaN or infinite values")
    return array
