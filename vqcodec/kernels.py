"""Compiled loops (numba) for the entropy coder's per-wavefront work.

The decoder's loop runs once per wavefront (316 times for a Kodak image at q4) on a few dozen
positions, so each step's cost is the number of array operations, not the arithmetic: the
frequency tables took a dozen numpy passes and the prior's first layer a gather, an embedding
sum and four elementwise operations. Each is one pass here. Everything is integer arithmetic,
so the results are the same numbers as the array code they replace (tests/test_kernels.py);
the matrix products stay with torch's int8 kernels (VNNI/AMX), which no loop here would beat.

Compiled on first use and cached beside the module (numba's ``cache=True``), so a process pays
the compilation once per machine and the import of numba (about 0.3 s) once.
"""

from __future__ import annotations

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True, boundscheck=False)


@_jit
def coder_weights(logits: np.ndarray, lut: np.ndarray, total: int, reciprocal_bits: int) -> np.ndarray:
    """Integer logits (N, K) -> float64 (N, K): each row's frequency table less one (see
    ``entropy.frequencies``): w = lut[top - logit] (the distance capped at the table's last
    entry), scaled by floor((total - K) * 2**bits / sum(w)), shifted right by ``bits``, and what
    rounding left over added to the first largest logit."""
    n, k = logits.shape
    out = np.empty((n, k), np.float64)
    last = len(lut) - 1
    w = np.empty(k, np.int64)
    for r in range(n):
        row = logits[r]
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
        o = out[r]
        for j in range(k):
            v = (w[j] * scale) >> reciprocal_bits
            o[j] = v
            kept += v
        for j in range(k):
            if row[j] == top:
                o[j] += total - k - kept
                break
    return out


@_jit
def first_layer(
    windows: np.ndarray,
    rows: int,
    table: np.ndarray,
    bias: np.ndarray,
    shift: int,
    low: int,
    high: int,
    out: np.ndarray,
) -> np.ndarray:
    """The prior's mask-A layer: for each causal window (N, n_offsets) of indices, the sum over
    offsets o of table[o * rows + windows[n, o]] (hidden,), plus ``bias`` (whose dtype is the
    accumulator's), shifted right by ``shift`` and clamped to low..high, written to ``out`` (N,
    hidden) in its dtype. The table (megabytes: more than the caches close to the core) is read
    four rows at a time, so that their loads overlap."""
    hidden, n_off = table.shape[1], windows.shape[1]
    acc = np.empty(hidden, bias.dtype)
    for n in range(windows.shape[0]):
        acc[:] = bias
        quads = n_off - n_off % 4
        for o in range(0, quads, 4):
            r0, r1 = o * rows + windows[n, o], (o + 1) * rows + windows[n, o + 1]
            r2, r3 = (o + 2) * rows + windows[n, o + 2], (o + 3) * rows + windows[n, o + 3]
            for c in range(hidden):
                acc[c] += table[r0, c] + table[r1, c] + table[r2, c] + table[r3, c]
        for o in range(quads, n_off):
            r = o * rows + windows[n, o]
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
    (N, hidden), groups (N,), weights (G, hidden, M), bias and shift (G, M) -> int32 (N, M),
    (a @ weights[g] + bias[g]) >> shift[g]."""
    m = weights.shape[2]
    out = np.empty((a.shape[0], m), np.int32)
    acc = np.empty(m, np.int64)
    for n in range(a.shape[0]):
        g = groups[n]
        acc[:] = bias[g]
        for h in range(a.shape[1]):
            x = np.int64(a[n, h])
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
