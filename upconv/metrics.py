"""Image quality measures."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .samples import to_float

__all__ = ["psnr", "ssim", "measure_pattern", "detect_period",
           "PeriodicPattern", "local_checkerboard", "spectral_peak_db", "verdict",
           "periodic_residual", "log_power_spectrum", "grey", "VERDICTS"]


def psnr(estimate: np.ndarray, reference: np.ndarray, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all samples (``inf`` when identical).

    Examples
    --------
    >>> round(psnr(np.full(4, 0.5), np.full(4, 0.6)), 2)
    20.0
    """
    difference = np.asarray(estimate, np.float64) - np.asarray(reference, np.float64)
    mse = float(np.mean(difference * difference))
    return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)


# ----------------------------------------------------------------- checkerboards
#
# The checkerboard measure. An s-periodic pattern P (the artifact a stride-s
# transposed convolution can print) survives a high-pass that removes
# everything an s-wide box filter keeps: r = image - box_s(image). A box of
# width s averages any s-periodic pattern to its mean, so r = P - mean(P)
# plus the (mostly cancelled) high frequencies of the content. The mean of r
# over each of the s*s phases (pixels (p::s, q::s)) then estimates the
# pattern's s*s values; content averages out over the image because it is as
# often brighter as darker at any phase. The score is the RMS of those phase
# means, centred, in 8-bit grey levels: the RMS amplitude of the periodic
# pattern. A +/-1 grey-level checkerboard scores 1.0.

#: Verdict thresholds on the score (8-bit grey levels, RMS of the pattern).
VERDICTS = ((0.25, "none"), (1.5, "faint"), (5.0, "visible"), (math.inf, "strong"))


def verdict(score: float) -> str:
    """"none", "faint", "visible" or "strong" for a checkerboard score.

    Examples
    --------
    >>> verdict(0.1), verdict(1.0), verdict(3), verdict(40)
    ('none', 'faint', 'visible', 'strong')
    """
    for limit, name in VERDICTS:
        if score < limit:
            return name
    return "strong"  # pragma: no cover


def _box_weights(s: int) -> np.ndarray:
    """A centred filter that averages every s-periodic pattern to its mean.

    A box of width s for odd s; for even s the box of width s + 1 with half
    weights at its ends (the box convolved with [1/2, 1/2]), which is centred
    too, so that flips and rotations see the same filter.
    """
    if s % 2:
        return np.full(s, 1.0 / s)
    weights = np.ones(s + 1)
    weights[[0, -1]] = 0.5
    return weights / s


def periodic_residual(channel: np.ndarray, s: int) -> np.ndarray:
    """``channel - box_s(channel)``: content mostly cancels, an s-periodic pattern stays.

    The box is applied along each axis with the border sample repeated (as
    ``scipy.ndimage.correlate1d(..., mode="nearest")`` does), as a sum of
    shifted slices: the filter has s or s + 1 taps.

    Examples
    --------
    >>> periodic_residual(np.array([[0.0, 1.0, 0.0, 1.0, 0.0, 1.0]]), 2).round(3).tolist()
    [[-0.25, 0.5, -0.5, 0.5, -0.5, 0.25]]
    """
    weights = _box_weights(s).astype(channel.dtype)
    smooth = _correlate_edge(_correlate_edge(channel, weights, 0), weights, 1)
    smooth -= channel
    np.negative(smooth, out=smooth)
    return smooth


def _correlate_edge(values: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """Correlate a 2-D array with a centred odd-length filter along ``axis``, edges repeated."""
    reach = len(weights) // 2
    padding = [(0, 0), (0, 0)]
    padding[axis] = (reach, reach)
    padded = np.pad(values, padding, mode="edge")
    n = values.shape[axis]
    out = np.zeros_like(values)
    for k, weight in enumerate(weights):
        window = padded[k:k + n] if axis == 0 else padded[:, k:k + n]
        out += weight * window
    return out


@dataclass(frozen=True)
class PeriodicPattern:
    """The s-periodic pattern measured in an image (values in 8-bit grey levels)."""

    period: int
    score: float  # RMS amplitude of the pattern, noise subtracted
    raw: float  # RMS of the phase means before subtracting the noise
    noise: float  # the RMS that content alone would leave in the phase means
    phase_means: np.ndarray  # (s, s), centred, of the channel where the pattern is strongest

    @property
    def significant(self) -> bool:
        """Above the "none" threshold and at least 3 times the noise."""
        return self.score >= VERDICTS[0][0] and self.raw >= 3 * self.noise


def _block_phase_means(residual: np.ndarray, s: int, border: int) -> np.ndarray:
    """Centred phase means in up to 4 x 4 equal blocks of the image: (B, s, s)."""
    border = -(-border // s) * s
    inner = residual[border:residual.shape[0] - border, border:residual.shape[1] - border]
    counts = [max(1, min(4, n // (8 * s))) for n in inner.shape]
    size = [n // count // s * s for n, count in zip(inner.shape, counts, strict=True)]
    if min(size) < s:
        raise ValueError("image too small")
    inner = inner[:counts[0] * size[0], :counts[1] * size[1]]
    # Sum the rows of each block phase by phase (contiguous, fast), then the columns.
    rows = inner.reshape(counts[0], size[0] // s, s, inner.shape[1])
    rows = rows.sum(axis=1, dtype=np.float64)  # (by, s, W)
    cells = rows.reshape(counts[0], s, counts[1], size[1] // s, s).sum(axis=3)  # (by, s, bx, s)
    means = cells.transpose(0, 2, 1, 3).reshape(-1, s, s) / (size[0] * size[1] / (s * s))
    return means - means.mean(axis=(1, 2), keepdims=True)


def measure_pattern(image: np.ndarray, s: int) -> PeriodicPattern:
    """Measure the s-periodic pattern of an (H, W, C) image in [0, 1] (or integer samples).

    The phase means are taken in up to 4 x 4 blocks of the image; their
    average estimates the pattern and their spread how much of it is just
    content (the noise). The score is ``sqrt(raw^2 - noise^2)``, in 8-bit grey
    levels. Each colour channel is measured; the strongest counts.

    Examples
    --------
    >>> board = np.indices((64, 64)).sum(axis=0) % 2 * 2.0 - 1.0  # +/-1
    >>> smooth = np.linspace(0.2, 0.8, 64)[None, :] * np.ones((64, 1))
    >>> found = measure_pattern((smooth + board / 255)[:, :, None], 2)
    >>> round(found.score, 6), found.phase_means.round(3).tolist()
    (1.0, [[-1.0, 1.0], [1.0, -1.0]])
    """
    best: PeriodicPattern | None = None
    for c in range(image.shape[2]):
        channel = unit_channel(image, c)
        blocks = _block_phase_means(periodic_residual(channel, s), s, border=2 * s) * 255
        found = _pattern_from_blocks(blocks, s)
        if best is None or found.score > best.score:
            best = found
    assert best is not None
    return best


def _pattern_from_blocks(blocks: np.ndarray, s: int) -> PeriodicPattern:
    """The pattern from centred phase means (grey levels) measured in B blocks: (B, s, s).

    Their mean is the pattern; their spread across blocks, divided by sqrt(B),
    the noise that content alone leaves in it.
    """
    means = blocks.mean(axis=0)
    raw = float(np.sqrt(np.mean(means * means)))
    noise = 0.0
    if len(blocks) > 1:
        noise = float(np.sqrt(blocks.var(axis=0, ddof=1).mean() / len(blocks)))
    return PeriodicPattern(s, math.sqrt(max(0.0, raw * raw - noise * noise)), raw, noise, means)


class SampledPattern:
    """The s-periodic pattern of a big image, measured on tiles spread across it.

    The same measure as :func:`measure_pattern`, with the blocks replaced by
    up to ``per_side`` x ``per_side`` tiles of ``tile`` pixels (a multiple of
    s, at offsets that are multiples of s, so phases line up), evenly spread
    over the image, each with a margin of 2s pixels for the residual's box
    filter. Rows can be fed band by band (:meth:`add_rows`), in order, so an
    image written in bands never needs to be whole to be measured.

    Examples
    --------
    >>> board = np.indices((2048, 2048)).sum(axis=0) % 2 * 2.0 - 1.0  # +/-1
    >>> smooth = np.linspace(0.2, 0.8, 2048)[None, :] * np.ones((2048, 1))
    >>> sampler = SampledPattern((2048, 2048, 1), 2)
    >>> sampler.add_rows(0, (smooth + board / 255)[:, :, None])
    >>> round(sampler.measure().score, 6), len(sampler.windows)
    (1.0, 16)
    """

    def __init__(self, shape: tuple[int, int, int], s: int, tile: int = 256,
                 per_side: int = 4, dtype: np.dtype | type = np.float32) -> None:
        height, width, channels = shape
        margin = 2 * s
        tile = max(8 * s, tile // s * s)
        origins = []
        for n in (height, width):
            room = n - 2 * margin - tile  # the last origin a tile (and margins) can start at
            count = max(1, min(per_side, (n - 2 * margin) // tile))
            if room < 0:
                raise ValueError("image too small to sample")
            step = room / (count - 1) if count > 1 else 0
            origins.append(sorted({margin + int(i * step) // s * s for i in range(count)}))
        self.s, self.tile, self.margin = s, tile, margin
        #: (y0, x0) of each tile's window, margins included
        self.windows = [(y - margin, x - margin) for y in origins[0] for x in origins[1]]
        side = tile + 2 * margin
        # The samples as given (8-bit rows take a quarter of float32's room).
        self._buffers = np.zeros((len(self.windows), side, side, channels), dtype)

    def add_rows(self, first: int, rows: np.ndarray) -> None:
        """Take what the tiles need from image rows ``first ... first + len(rows) - 1``."""
        side = self._buffers.shape[1]
        last = first + rows.shape[0]
        for index, (y0, x0) in enumerate(self.windows):
            top, bottom = max(y0, first), min(y0 + side, last)
            if top < bottom:
                self._buffers[index, top - y0:bottom - y0] = rows[top - first:bottom - first,
                                                                  x0:x0 + side]

    def measure(self) -> PeriodicPattern:
        """The pattern, from the tiles' phase means; the strongest channel counts."""
        s, m, t = self.s, self.margin, self.tile
        best: PeriodicPattern | None = None
        for c in range(self._buffers.shape[3]):
            blocks = np.empty((len(self.windows), s, s))
            for index, window in enumerate(self._buffers):
                inner = periodic_residual(unit_channel(window, c), s)[m:m + t, m:m + t]
                means = inner.reshape(t // s, s, t // s, s).mean(axis=(0, 2), dtype=np.float64)
                blocks[index] = (means - means.mean()) * 255
            found = _pattern_from_blocks(blocks, s)
            if best is None or found.score > best.score:
                best = found
        assert best is not None
        return best


def unit_channel(image: np.ndarray, c: int) -> np.ndarray:
    """Channel ``c`` as float32 in [0, 1]: integer samples scaled, floats clipped.

    One channel at a time, so measuring a big 8-bit image never holds a float
    copy of all of it.
    """
    channel = image[:, :, c]
    if channel.dtype.kind != "f":
        return to_float(channel)
    return np.clip(channel, 0, 1).astype(np.float32, copy=False)


#: A period is measured only when its grid frequencies stand this far (dB) above
#: their neighbours in the spectrum: a pattern strong enough to be significant
#: always does (its energy sits in single frequency bins), and screening spares
#: measuring all seven periods in every channel.
SCREEN_DB = 6.0


def detect_period(image: np.ndarray, periods: range = range(2, 9)
                  ) -> tuple[int | None, list[PeriodicPattern]]:
    """The period (2-8) of the strongest significant pattern, or None; and what was measured.

    Detection works on the grey image (the mean of the colour channels). Its
    spectrum is computed once; a period is measured only if one of its own
    grid frequencies (k/s, l/s), those no smaller period shares, stands out by
    :data:`SCREEN_DB`. A pattern of period d is periodic with every multiple
    of d too, so when a divisor's pattern is nearly as strong (90 %) the
    divisor is the answer.
    """
    small = min(image.shape[:2])
    channel = grey(image)
    spectrum = log_power_spectrum(channel)
    screened = [s for s in periods
                if small >= 8 * s and _own_peak_db(spectrum, s) >= SCREEN_DB]
    found = [measure_pattern(channel[:, :, None], s) for s in screened]
    significant = [f for f in found if f.significant]
    if not significant:
        return None, found
    best = max(significant, key=lambda f: f.score)
    for f in sorted(significant, key=lambda f: f.period):
        if best.period % f.period == 0 and f.score >= 0.9 * best.score:
            return f.period, found
    return best.period, found  # pragma: no cover - best divides itself


def _own_peak_db(spectrum: np.ndarray, s: int) -> float:
    """Prominence of the strongest grid frequency (k/s, l/s) with gcd(k, l, s) = 1.

    On the uncropped spectrum the frequency falls between bins, so the peak
    is the maximum of the 3 x 3 bins around it, against the median of the
    9 x 9 around those.
    """
    rows, cols = spectrum.shape
    centre_y, centre_x = rows // 2, cols // 2
    best = -math.inf
    for k in range(s):
        for j in range(s):
            if math.gcd(math.gcd(k, j), s) != 1:
                continue
            y = (centre_y + round(k * rows / s)) % rows
            x = (centre_x + round(j * cols / s)) % cols
            around = spectrum[np.ix_((y + np.arange(-4, 5)) % rows, (x + np.arange(-4, 5)) % cols)]
            peak = around[3:6, 3:6].max()
            ring = np.concatenate([around[:3].ravel(), around[6:].ravel(),
                                   around[3:6, :3].ravel(), around[3:6, 6:].ravel()])
            best = max(best, 10 * float(peak - np.median(ring)))
    return best


def local_checkerboard(image: np.ndarray, s: int, tile: int) -> np.ndarray:
    """The score per tile (``tile`` pixels, a multiple of s): where the pattern is strong."""
    tile = max(s, tile // s * s)
    rows, cols = image.shape[0] // tile, image.shape[1] // tile
    scores = np.zeros((max(rows, 1), max(cols, 1)))
    for c in range(image.shape[2]):
        residual = periodic_residual(image[:, :, c].astype(np.float32, copy=False), s)
        inner = residual[:rows * tile, :cols * tile]
        blocks = inner.reshape(rows, tile // s, s, cols, tile // s, s)
        means = blocks.mean(axis=(1, 4), dtype=np.float64)  # (rows, s, cols, s)
        means -= means.mean(axis=(1, 3), keepdims=True)
        local = np.sqrt((means * means).mean(axis=(1, 3))) * 255
        scores = np.maximum(scores, local)
    return scores


def grey(image: np.ndarray) -> np.ndarray:
    """The mean of the colour channels, float32."""
    total = image[:, :, 0].astype(np.float32)
    for c in range(1, image.shape[2]):
        total += image[:, :, c]
    return total / np.float32(image.shape[2])


def log_power_spectrum(channel: np.ndarray) -> np.ndarray:
    """Centred (fftshift) log10 power spectrum of a Hann-windowed, mean-removed channel."""
    rows, cols = channel.shape
    values = channel - channel.mean(dtype=np.float64)
    values *= np.hanning(rows).astype(np.float32)[:, None]
    values *= np.hanning(cols).astype(np.float32)[None, :]
    import scipy.fft  # only here: importing it costs a quarter of a second

    transform = scipy.fft.fft2(values.astype(np.float32), workers=-1)
    power = transform.real ** 2 + transform.imag ** 2
    return np.fft.fftshift(np.log10(power + 1e-20))


def spectral_peak_db(channel: np.ndarray, s: int) -> float:
    """Prominence (dB) of the strongest grid frequency (k/s, l/s), (k, l) != (0, 0).

    The log power at each grid frequency is compared with the median of its
    7 x 7 neighbourhood (itself left out); the strongest counts. The channel
    is cropped to a multiple of s so every grid frequency falls on a bin.
    """
    rows, cols = channel.shape[0] // s * s, channel.shape[1] // s * s
    spectrum = log_power_spectrum(channel[:rows, :cols])
    centre_y, centre_x = rows // 2, cols // 2
    best = -math.inf
    for k in range(s):
        for j in range(s):
            if k == 0 and j == 0:
                continue
            y = (centre_y + k * rows // s) % rows
            x = (centre_x + j * cols // s) % cols
            around = spectrum[np.ix_((y + np.arange(-3, 4)) % rows, (x + np.arange(-3, 4)) % cols)]
            neighbours = np.delete(around.ravel(), 24)
            best = max(best, 10 * float(spectrum[y, x] - np.median(neighbours)))
    return best


def ssim(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004) with an 11 x 11 Gaussian window (sigma 1.5).

    ``(H, W, C)`` images in [0, 1] (dynamic range 1, K1 = 0.01, K2 = 0.03);
    the mean over the colour channels given and over the image, leaving out a
    5-pixel border as scikit-image does.

    Examples
    --------
    >>> x = np.random.default_rng(0).random((32, 32, 1))
    >>> ssim(x, x)
    1.0
    """
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    values = []
    for c in range(reference.shape[2]):
        x = estimate[:, :, c].astype(np.float64)
        y = reference[:, :, c].astype(np.float64)

        def blur(a: np.ndarray) -> np.ndarray:
            from scipy import ndimage

            return ndimage.gaussian_filter(a, 1.5, truncate=3.5)

        mu_x, mu_y = blur(x), blur(y)
        var_x = blur(x * x) - mu_x * mu_x
        var_y = blur(y * y) - mu_y * mu_y
        cov = blur(x * y) - mu_x * mu_y
        index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)
                 / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2)))
        values.append(index[5:-5, 5:-5].mean())
    return float(np.mean(values))
