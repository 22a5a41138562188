"""Compiled loops (numba) for the entropy coder's per-wavefront work and its range coder, and
the int8 decoder's float last layer at factor 2 (``conv3x3_uint8``).

The decoder's loop runs once per wavefront (316 times for a Kodak image at q4) on a few dozen
positions, so each step's cost was the number of array operations, not the arithmetic: the
frequency tables took a dozen numpy passes, the prior's first layer a gather, an embedding sum
and four elementwise operations, and constriction's range decoder a float64 copy of every table.
Here each is one pass: the tables (``excess_frequencies``), the first layer read in place from
the grid (``first_layer``), the int8 layers' rescaling (``requantize``), the grouped priors'
member logits, and constriction's queue range coder (32-bit words, 64-bit state) transcribed
step for step, its decoder fused with the tables (``decode_symbols``) and its encoder fed each
symbol's interval (``symbol_intervals``, ``RangeEncoder``). Everything is integer arithmetic, so
the numbers are those of the array code and the words those of constriction
(tests/test_kernels.py); the matrix products stay with torch's int8 kernels (VNNI/AMX).

Compiled on first use and cached beside the module (numba's ``cache=True``): a process pays
numba's import and its first call, a new machine the compilation once (docs/speed.md).
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np


def _jit(fn: Callable | None = None, *, reassociate: bool = False) -> Callable:
    """``fn`` compiled, its machine code cached beside the module (or in the user's cache); where
    no cache location is writable (a read-only install and home), compiled once per process.
    ``reassociate``: float sums may be reordered (and so vectorized)."""
    if fn is None:
        return lambda fn: _jit(fn, reassociate=reassociate)
    options = {"nogil": True, "boundscheck": False, "fastmath": {"reassoc", "contract"} if reassociate else False}
    try:
        return numba.njit(cache=True, **options)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(**options)(fn)


@_jit
def excess_frequencies(row: np.ndarray, lut: np.ndarray, total: int, reciprocal_bits: int, w: np.ndarray) -> None:
    """One row of integer logits (K,) -> its frequency table less one (see
    ``entropy.frequencies``), written to ``w`` (K,) int64: lut[top - logit] (the distance capped
    at the table's last entry), scaled by floor((total - K) * 2**bits / sum), shifted right by
    ``bits``, and what rounding left over added at the first largest logit."""
    k, last = len(row), len(lut) - 1
    top = row[0]
    for j in range(1, k):
        top = max(top, row[j])
    s = 0
    for j in range(k):
        v = lut[min(np.int64(top) - np.int64(row[j]), last)]
        w[j] = v
        s += v
    scale = ((total - k) << reciprocal_bits) // s
    kept = 0
    for j in range(k):
        v = (w[j] * scale) >> reciprocal_bits
        w[j] = v
        kept += v
    for j in range(k):
        if row[j] == top:
            w[j] += total - k - kept
            return


@_jit
def frequencies(logits: np.ndarray, lut: np.ndarray, total: int, reciprocal_bits: int) -> np.ndarray:
    """Integer logits (N, K) -> int64 (N, K): each row's frequency table (``excess_frequencies``
    + 1)."""
    n, k = logits.shape
    out = np.empty((n, k), np.int64)
    for r in range(n):
        excess_frequencies(logits[r], lut, total, reciprocal_bits, out[r])
    return out + 1


@_jit
def first_layer(
    flat: np.ndarray,
    positions: np.ndarray,
    window: np.ndarray,
    rows: int,
    table: np.ndarray,
    bias: np.ndarray,
    shift: int,
    low: int,
    high: int,
    out: np.ndarray,
) -> np.ndarray:
    """The prior's mask-A layer at ``positions`` of a flat index grid ``flat`` whose causal
    window is the flat offsets ``window``: for each position p, the sum over offsets o of
    table[o * rows + flat[p + window[o]]] (hidden,), plus ``bias`` (whose dtype is the
    accumulator's), shifted right by ``shift`` and clamped to low..high, written to ``out`` (N,
    hidden) in its dtype. The table (megabytes: more than the caches close to the core) is read
    four rows at a time, so that their loads overlap."""
    hidden, n_off = table.shape[1], len(window)
    quads = n_off - n_off % 4
    acc = np.empty(hidden, bias.dtype)
    for n in range(len(positions)):
        acc[:] = bias
        p = positions[n]
        for o in range(0, quads, 4):
            r0, r1 = o * rows + flat[p + window[o]], (o + 1) * rows + flat[p + window[o + 1]]
            r2, r3 = (o + 2) * rows + flat[p + window[o + 2]], (o + 3) * rows + flat[p + window[o + 3]]
            for c in range(hidden):
                acc[c] += table[r0, c] + table[r1, c] + table[r2, c] + table[r3, c]
        for o in range(quads, n_off):
            r = o * rows + flat[p + window[o]]
            for c in range(hidden):
                acc[c] += table[r, c]
        for c in range(hidden):
            out[n, c] = min(max(acc[c] >> shift, low), high)
    return out


@_jit
def member_logits(
    a: np.ndarray, groups: np.ndarray, weights: np.ndarray, bias: np.ndarray, shift: np.ndarray
) -> np.ndarray:
    """The output layer of a prior with groups, for each row's own group only: activations
    (N, hidden), groups (N,), weights (G, hidden, M), bias (whose dtype is the accumulator's) and
    shift (G, M) -> int32 (N, M), (a @ weights[g] + bias[g]) >> shift[g]."""
    m = weights.shape[2]
    out = np.empty((a.shape[0], m), np.int32)
    acc = np.empty(m, bias.dtype)
    for n in range(a.shape[0]):
        g = groups[n]
        acc[:] = bias[g]
        for h in range(a.shape[1]):
            x = bias.dtype.type(a[n, h])
            w = weights[g, h]
            for j in range(m):
                acc[j] += x * w[j]
        for j in range(m):
            out[n, j] = acc[j] >> shift[g, j]
    return out


@_jit
def requantize(
    acc: np.ndarray, bias: np.ndarray, shift: np.ndarray, low: int, high: int, out: np.ndarray
) -> np.ndarray:
    """One integer layer's outputs from its int32 sums (N, C): (acc + bias) >> shift per
    channel, clamped to low..high, written to ``out`` in its dtype."""
    n, c = acc.shape
    for r in range(n):
        for j in range(c):
            out[r, j] = min(max((np.int64(acc[r, j]) + bias[j]) >> shift[j], low), high)
    return out


def range_decoder(words: np.ndarray) -> np.ndarray:
    """The state of a range decoder of 32-bit ``words``, as constriction's queue RangeDecoder
    (32-bit words, 64-bit state) starts it: lower 0, range 2**64 - 1, the point read from the
    first two words; and the position of the next word. uint64 (4,)."""
    point = 0
    for n in range(2):
        point = (point << 32) | (int(words[n]) if n < len(words) else 0)
    return np.array([0, 2**64 - 1, point, min(2, len(words))], np.uint64)


@_jit
def decode_symbols(
    logits: np.ndarray, lut: np.ndarray, total_bits: int, reciprocal_bits: int, words: np.ndarray, state: np.ndarray
) -> np.ndarray:
    """Decode one symbol per row of integer logits (N, K), each under the frequency table that
    ``entropy.frequencies`` computes from its row, advancing the range decoder ``state``
    (``range_decoder``) over ``words``: constriction's queue RangeDecoder, step for step, with
    the tables computed in place (not as float64 weights that constriction converts back).
    Raises ValueError on data no encoder wrote."""
    n, k = logits.shape
    total = 1 << total_bits
    out = np.empty(n, np.int64)
    w = np.empty(k, np.int64)
    lower, size, point, pos = state[0], state[1], state[2], state[3]
    word_bits = np.uint64(32)
    for r in range(n):
        excess_frequencies(logits[r], lut, total, reciprocal_bits, w)
        step = size >> np.uint64(total_bits)
        quantile = (point - lower) // step
        if quantile >= np.uint64(total):
            raise ValueError("invalid data")
        target, cumulative, symbol = np.int64(quantile), 0, 0
        while cumulative + w[symbol] + 1 <= target:
            cumulative += w[symbol] + 1
            symbol += 1
        out[r] = symbol
        lower = lower + step * np.uint64(cumulative)
        size = step * np.uint64(w[symbol] + 1)
        if size < (np.uint64(1) << word_bits):
            lower, size, point = lower << word_bits, size << word_bits, point << word_bits
            if pos < np.uint64(len(words)):
                point = point | np.uint64(words[np.int64(pos)])
                pos += np.uint64(1)
    state[0], state[1], state[2], state[3] = lower, size, point, pos
    return out


@_jit
def symbol_intervals(
    logits: np.ndarray, symbols: np.ndarray, lut: np.ndarray, total: int, reciprocal_bits: int
) -> np.ndarray:
    """Each row's symbol's interval of its frequency table (``entropy.frequencies`` of its
    logits (N, K)): int64 (N, 2), the frequencies of the symbols before it and its own, what
    the range coder narrows its range by."""
    n, k = logits.shape
    out = np.empty((n, 2), np.int64)
    w = np.empty(k, np.int64)
    for r in range(n):
        excess_frequencies(logits[r], lut, total, reciprocal_bits, w)
        s = symbols[r]
        left = s
        for j in range(s):
            left += w[j]
        out[r, 0], out[r, 1] = left, w[s] + 1
    return out


@_jit
def _encode_intervals(intervals: np.ndarray, total_bits: int, state: np.ndarray, out: np.ndarray) -> int:
    """Narrow the range encoder ``state`` (lower, range, number of held-back words, the first of
    them) by each interval (N, 2) in turn, writing the words it settles to ``out``; returns
    how many. constriction's queue RangeEncoder (32-bit words, 64-bit state), step for step."""
    lower, size, held, first_held = state[0], state[1], state[2], state[3]
    word_bits, word_mask = np.uint64(32), np.uint64(2**32 - 1)
    written = 0
    for r in range(intervals.shape[0]):
        step = size >> np.uint64(total_bits)
        size = step * np.uint64(intervals[r, 1])
        new_lower = lower + step * np.uint64(intervals[r, 0])
        if held > 0 and new_lower + size > new_lower:  # the held-back words are settled
            first, repeated = (first_held + np.uint64(1)) & word_mask, np.uint64(0)
            if new_lower >= lower:
                first, repeated = first_held, word_mask
            out[written] = first
            written += 1
            for _ in range(1, held):
                out[written] = repeated
                written += 1
            held = np.uint64(0)
        lower = new_lower
        if size < (np.uint64(1) << word_bits):
            size = size << word_bits
            word = lower >> word_bits
            lower = lower << word_bits
            if held > 0:
                held += np.uint64(1)
            elif lower + size > lower:
                out[written] = word
                written += 1
            else:  # the range straddles a carry: hold the word back until it is known
                held, first_held = np.uint64(1), word
    state[0], state[1], state[2], state[3] = lower, size, held, first_held
    return written


class RangeEncoder:
    """constriction's queue RangeEncoder (32-bit words, 64-bit state) fed symbol intervals
    (``symbol_intervals``): the same words, without the float64 tables constriction takes."""

    def __init__(self, total_bits: int):
        self.total_bits = total_bits
        self.state = np.array([0, 2**64 - 1, 0, 0], np.uint64)
        self.chunks: list[np.ndarray] = []

    def encode(self, intervals: np.ndarray) -> None:
        out = np.empty(len(intervals) + int(self.state[2]) + 1, np.uint32)
        self.chunks.append(out[: _encode_intervals(intervals, self.total_bits, self.state, out)])

    def words(self) -> np.ndarray:
        """The compressed words: those written, then the words that identify the final range."""
        lower, size, held, first_held = (int(v) for v in self.state)
        seal: list[int] = []
        if size != 2**64 - 1:  # something was encoded
            point = (lower + 2**32 - 1) % 2**64
            if held:  # settle the held-back words: with a carry if the point wrapped
                seal += (
                    [first_held, *[2**32 - 1] * (held - 1)] if point >= lower else [first_held + 1, *[0] * (held - 1)]
                )
            seal.append(point >> 32)
            if ((lower + size) % 2**64) >> 32 == point >> 32:
                seal.append(0)
        return np.concatenate([*self.chunks, np.array(seal, np.uint32)])


@_jit(reassociate=True)
def conv3x3_uint8(
    q: np.ndarray,
    zero_point: int,
    scale: float,
    weight: np.ndarray,
    bias: np.ndarray,
    out: np.ndarray,
    start: int,
    stop: int,
) -> None:
    """A float 3x3 convolution (zero padding 1) of an 8-bit activation, without dequantizing it
    first: ``q`` (H, W, C) uint8 values of scale ``scale`` and zero point ``zero_point``,
    ``weight`` (O, 9 C) with taps in (column, row, channel) order, ``bias`` (O,) -> output rows
    ``start`` to ``stop`` of ``out`` (O, H, W) float32. Three input rows at a time are converted to float in a
    buffer laid out (column, row, channel), so that each output pixel's taps are 9 C contiguous
    values and each of its outputs one dot product. For the last layer of a factor-2 decoder
    (64 channels to 3 at full resolution), where oneDNN's convolution is a tenth as efficient
    as on the layers before it."""
    h, w, c = q.shape
    o_n, n = weight.shape
    grid = np.zeros((w + 2, 3, c), np.float32)  # column + 1 (zero padding on each side), row, channel
    flat = grid.reshape(-1)
    zero = np.float32(zero_point)
    for y in range(start, stop):
        for ky in range(3):
            yy = y + ky - 1
            if 0 <= yy < h:
                src = q[yy]
                for x in range(w):
                    for i in range(c):
                        grid[x + 1, ky, i] = np.float32(src[x, i]) - zero
            else:
                grid[:, ky, :] = 0.0
        for x in range(w):
            taps = flat[x * 3 * c : x * 3 * c + n]  # a slice, not offsets: offsets keep numba from vectorizing
            for o in range(o_n):
                wo = weight[o]
                s = np.float32(0.0)
                for i in range(n):
                    s += taps[i] * wo[i]
                out[o, y, x] = s * scale + bias[o]
