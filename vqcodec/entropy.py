"""Entropy coding of index grids: integer frequency tables and wavefront-ordered range coding.

Frequencies come from the prior's integer logits by an integer-only procedure: a fixed
exp lookup table (built with correctly rounded decimal arithmetic, so identical everywhere)
maps "distance below the largest logit" to a weight, and the weights are rescaled to a fixed
total of 2**24 with every symbol at least 1. The range coder is constriction's queue
RangeEncoder/RangeDecoder (32-bit words, 64-bit state, 24-bit precision), which the files of
versions 1-3 were written with, step for step; it runs compiled together with
the tables (``vqcodec.kernels``: no float64 copies of them). constriction itself codes exactly
the same tables when handed the weights w = freq - 1: its leaky categorical model maps weights
to cumulative frequencies floor(cumsum(w) * (2**24 - K) / sum(w)) + s, and the scale is then
exactly 1 (tests/test_kernels.py holds the two coders to the same words).

Symbols are coded in wavefront order t = (R+1)*i + j (ties by row), the order in which a
decoder can recover them in batches: all positions of one wavefront depend only on earlier
wavefronts. Format version 2 cuts the grid into stripes coded independently and in lockstep,
so a 768x512 image decodes in about half the steps for a small rate cost (docs/FORMAT.md).
Format version 3 (a prior with groups) codes each index as its group, then its member: two
tables of about sqrt(K) entries per index instead of one of K.
The encoder may evaluate the prior on any grouping of wavefronts: the integer prior gives the
same numbers whatever the batch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import ROUND_HALF_EVEN, Decimal, getcontext
from functools import lru_cache
from itertools import pairwise

import numpy as np
import torch

from vqcodec import kernels
from vqcodec.errors import BitstreamError
from vqcodec.hardware import one_thread
from vqcodec.models.prior import LOGIT_BITS, IntegerPrior, causal_offsets

FREQ_BITS = 24
TOTAL = 1 << FREQ_BITS
LUT_BITS = 16
RECIPROCAL_BITS = 32  # w < 2**17 and reciprocal < 2**(24 + 32 - 16): products fit in int64
CALL_ENTRIES = 1 << 18  # frequency-table entries per prior call of the encoder (waves_per_call)


@lru_cache(maxsize=1)
def exp_table() -> np.ndarray:
    """round(2**16 * exp(-d / 2**LOGIT_BITS)) for d = 0.. until it reaches 0 (int64)."""
    getcontext().prec = 40
    values, d = [], 0
    while True:
        v = int(
            (Decimal(2**LUT_BITS) * (Decimal(-d) / Decimal(2**LOGIT_BITS)).exp()).to_integral_value(ROUND_HALF_EVEN)
        )
        if v == 0:
            return np.array([*values, 0], dtype=np.int64)
        values.append(v)
        d += 1


def frequencies(logits: torch.Tensor | np.ndarray) -> np.ndarray:
    """Integer logits (N, K) -> int64 frequencies (N, K), each >= 1, each row summing to 2**24.

    Each row's weights w = LUT[top - logit] are scaled by a per-row fixed-point reciprocal,
    f = 1 + (w * floor((2**24 - K) * 2**32 / sum(w))) >> 32, and the few units that rounding
    leaves over go to the (first) most likely symbol. (The coder computes these in its
    compiled loops, ``vqcodec.kernels``, without materialising them.)
    """
    return kernels.frequencies(_integers(logits), exp_table(), TOTAL, RECIPROCAL_BITS)


def _integers(logits: torch.Tensor | np.ndarray) -> np.ndarray:
    """Logits as the contiguous numpy array the compiled loops read."""
    return np.ascontiguousarray(logits.cpu().numpy() if isinstance(logits, torch.Tensor) else logits)


def intervals(logits: torch.Tensor, symbols: torch.Tensor) -> np.ndarray:
    """What the range coder codes each symbol with: int64 (N, 2), the frequencies of the
    symbols before it in its table and its own."""
    codes = symbols.cpu().numpy().astype(np.int64)
    return kernels.symbol_intervals(_integers(logits), codes, exp_table(), TOTAL, RECIPROCAL_BITS)


def tile_count(length: int, size: int | None) -> int:
    """Number of tiles of ``size`` rows or columns along ``length`` (the last may be shorter); None: one."""
    return 1 if not size else max(1, -(-length // size))


class Wavefronts:
    """Positions of an H x W grid grouped by wavefront, in coding order.

    The grid is cut into tiles of ``stripe_rows`` rows and ``tile_cols`` columns (None: the
    whole height or width; the last tile of a row or column may be smaller), each coded as if
    it were a grid of its own, all of them in lockstep: position (i, j) of a tile whose first
    row is s and first column c belongs to wavefront t = (R+1)*(i - s) + (j - c). Ties go by
    row, then column, so the tiles take turns within a wavefront. One stripe is the order of
    format version 1, stripes the whole width that of versions 2 and 3.
    """

    def __init__(
        self, height: int, width: int, radius: int, stripe_rows: int | None = None, tile_cols: int | None = None
    ):
        i, j = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        local_i = i % stripe_rows if stripe_rows else i
        local_j = j % tile_cols if tile_cols else j
        t = ((radius + 1) * local_i + local_j).ravel()
        order = np.lexsort((j.ravel(), i.ravel(), t))
        self.rows, self.cols = i.ravel()[order], j.ravel()[order]
        self.starts = np.searchsorted(t[order], np.arange(t.max() + 2))

    def __len__(self) -> int:
        return len(self.starts) - 1

    def span(self, first: int, last: int) -> slice:
        """Slice of the coding order covering wavefronts first..last-1."""
        return slice(int(self.starts[first]), int(self.starts[min(last, len(self))]))


class GridContext:
    """An index grid padded with the "outside" symbol, read through the prior's causal window.

    Each stripe gets R rows of padding above it and each tile column R columns on each side,
    so a tile's windows never see another tile. Positions are flat offsets into the padded
    grid, so reading a batch of windows is one gather and writing decoded symbols one scatter.
    """

    def __init__(
        self, height: int, width: int, prior: IntegerPrior, stripe_rows: int | None = None, tile_cols: int | None = None
    ):
        r = self.r = prior.cfg.radius
        self.stripe_rows = stripe_rows or max(height, 1)
        self.tile_cols = tile_cols or max(width, 1)
        self.stride = width + 2 * r * tile_count(width, tile_cols)
        padded_rows = height + r * tile_count(height, stripe_rows)
        self.grid = torch.full(
            (padded_rows, self.stride), prior.cfg.codebook_size, dtype=torch.int64, device=prior.device
        )
        self.flat = self.grid.view(-1)
        offsets = [dy * self.stride + dx for dy, dx in causal_offsets(r)]
        self.window = torch.tensor(offsets, device=prior.device)
        self.rows = torch.from_numpy(self.padded_row(np.arange(height))).to(prior.device)
        self.cols = torch.from_numpy(self.padded_col(np.arange(width))).to(prior.device)

    def padded_row(self, rows: np.ndarray) -> np.ndarray:
        """Row of the padded grid that holds grid row ``rows``."""
        return rows + self.r * (rows // self.stripe_rows + 1)

    def padded_col(self, cols: np.ndarray) -> np.ndarray:
        """Column of the padded grid that holds grid column ``cols``."""
        return cols + self.r * (2 * (cols // self.tile_cols) + 1)

    def positions(self, rows: np.ndarray, cols: np.ndarray) -> torch.Tensor:
        """Flat positions of grid cells (rows, cols)."""
        flat = self.padded_row(rows) * self.stride + self.padded_col(cols)
        return torch.from_numpy(flat).to(self.grid.device)

    def windows(self, pos: torch.Tensor) -> torch.Tensor:
        """(N, n_offsets) indices of the causal windows at flat positions ``pos``."""
        if self.grid.device.type == "cpu":  # numpy indexes a few dozen rows in a third of torch's time
            return torch.from_numpy(self.flat.numpy()[pos.numpy()[:, None] + self.window.numpy()])
        return self.flat[pos[:, None] + self.window]

    def put(self, pos: torch.Tensor, values: torch.Tensor) -> None:
        self.flat[pos] = values

    @property
    def indices(self) -> torch.Tensor:
        return self.grid[self.rows[:, None], self.cols]


def encode_grid(
    prior: IntegerPrior,
    idx: torch.Tensor,
    group: int | None = None,
    stripe_rows: int | None = None,
    tile_cols: int | None = None,
) -> bytes:
    """Range-code an (H, W) index grid under the prior, in tiles of ``stripe_rows`` x
    ``tile_cols`` (None: the whole height, width); ``group`` wavefronts per prior call (None:
    ``waves_per_call``)."""
    h, w = idx.shape
    waves = Wavefronts(h, w, prior.cfg.radius, stripe_rows, tile_cols)
    group = group or waves_per_call(prior, h * w / len(waves))
    ctx = GridContext(h, w, prior, stripe_rows, tile_cols)
    pos = ctx.positions(waves.rows, waves.cols)
    codes = torch.from_numpy(idx.reshape(-1).cpu().numpy()[waves.rows * w + waves.cols]).to(prior.device)
    ctx.put(pos, codes)
    encoder = kernels.RangeEncoder(FREQ_BITS)

    def coded(first: int) -> np.ndarray:
        """The intervals of wavefronts first..first+group-1, in the order the decoder reads them:
        one wavefront at a time (format version 3: its groups, then its members)."""
        s = waves.span(first, first + group)
        with torch.inference_mode():
            parts = [intervals(*pair) for pair in coded_symbols(prior, ctx.windows(pos[s]), codes[s])]
        if len(parts) == 1:
            return parts[0]
        bounds = waves.starts[first : min(first + group, len(waves)) + 1] - s.start
        return np.concatenate([part[a:b] for a, b in pairwise(bounds) for part in parts])

    # the intervals need no order: the CPU's threads compute them side by side (the compiled loops
    # and torch's products release the GIL) while this thread codes them in order; each worker on
    # one thread, which a new OS thread is not until told (OpenMP's default is every core)
    workers = torch.get_num_threads() if prior.compiled else 1
    with one_thread(), ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        for part in in_order(pool, coded, range(0, len(waves), group), ahead=2 * workers):
            encoder.encode(part)
    return encoder.words().astype("<u4").tobytes()


def in_order(pool: ThreadPoolExecutor, fn: Callable, items: Iterable, ahead: int) -> Iterator:
    """fn(item) for each item, computed by ``pool``, yielded in order, with at most ``ahead``
    results held at once (memory stays bounded whatever the image size)."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def waves_per_call(prior: IntegerPrior, positions_per_wave: float) -> int:
    """Wavefronts per prior call when encoding: about CALL_ENTRIES table entries, so that the
    frequency tables stay in cache (docs/speed.md has the timings). The bytes are the same
    whatever the grouping."""
    cfg = prior.cfg
    width = cfg.codebook_size if cfg.groups == 1 else cfg.groups + cfg.members
    return max(1, int(CALL_ENTRIES // (positions_per_wave * width)))


def coded_symbols(
    prior: IntegerPrior, windows: torch.Tensor, codes: torch.Tensor
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(integer logits, symbols) of what each index is coded as, given its causal windows: the
    index itself, or with groups its group, then its member."""
    if prior.cfg.groups == 1:
        return [(prior.logits(windows), codes)]
    a, (g, m) = prior.features(windows), prior.split(codes)
    return [(prior.group_logits(a), g), (prior.member_logits(a, g), m)]


def decode_grid(
    prior: IntegerPrior,
    data: bytes,
    height: int,
    width: int,
    stripe_rows: int | None = None,
    tile_cols: int | None = None,
) -> torch.Tensor:
    """Inverse of encode_grid: decode one wavefront (of every tile) at a time -> (H, W) int64
    on the prior's device."""
    if len(data) % 4:
        raise BitstreamError("payload length is not a whole number of 32-bit words")
    waves = Wavefronts(height, width, prior.cfg.radius, stripe_rows, tile_cols)
    ctx = GridContext(height, width, prior, stripe_rows, tile_cols)
    pos = ctx.positions(waves.rows, waves.cols)
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    state = kernels.range_decoder(words)

    def decode(logits: torch.Tensor | np.ndarray, t: int) -> np.ndarray:
        """The symbols coded under ``logits``' tables (vqcodec.kernels.decode_symbols)."""
        try:
            return kernels.decode_symbols(_integers(logits), exp_table(), FREQ_BITS, RECIPROCAL_BITS, words, state)
        except ValueError as e:
            raise BitstreamError(f"corrupt payload: the range decoder failed at wavefront {t} ({e})") from e

    step = (_compiled_step if prior.compiled else _tensor_step)(prior, ctx, pos, decode)
    with one_thread(), torch.inference_mode():
        for t in range(len(waves)):
            step(int(waves.starts[t]), int(waves.starts[t + 1]), t)
    return ctx.indices.clone()


def _compiled_step(prior: IntegerPrior, ctx: GridContext, pos: torch.Tensor, decode: Callable) -> Callable:
    """One wavefront of the decoder on the CPU: numpy arrays and compiled loops throughout (the
    grid read and written in place), torch only for the int8 products; a fifth less time than
    the same steps through torch tensors (q4, a Kodak image)."""
    flat, window, positions = ctx.flat.numpy(), ctx.window.numpy(), pos.numpy()
    layers = prior.cfg.layers

    def step(start: int, stop: int, t: int) -> None:
        p = positions[start:stop]
        a = prior.compiled_features(flat, p, window)
        if prior.cfg.groups == 1:
            flat[p] = decode(prior.compiled_output(a, layers), t)
            return
        g = decode(prior.compiled_output(a, layers + 1), t)
        flat[p] = prior.join(g, decode(prior.compiled_member_logits(a, g), t))

    return step


def _tensor_step(prior: IntegerPrior, ctx: GridContext, pos: torch.Tensor, decode: Callable) -> Callable:
    """One wavefront of the decoder on another device: the prior's torch operations there, the
    range decoder on the host."""

    def symbols(logits: torch.Tensor, t: int) -> torch.Tensor:
        return torch.from_numpy(decode(logits, t)).to(prior.device)

    def step(start: int, stop: int, t: int) -> None:
        p = pos[start:stop]
        if prior.cfg.groups == 1:
            ctx.put(p, symbols(prior.logits(ctx.windows(p)), t))
            return
        a = prior.features(ctx.windows(p))
        g = symbols(prior.group_logits(a), t)
        ctx.put(p, prior.join(g, symbols(prior.member_logits(a, g), t)))

    return step


def grid_logits(
    prior: IntegerPrior, idx: torch.Tensor, stripe_rows: int | None = None, tile_cols: int | None = None
) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
    """The integer logits every index of a grid (coded in tiles of ``stripe_rows`` x ``tile_cols``)
    is coded with, all at once in raster order: (positions of the flattened grid, logits, symbols)
    per chunk and per coded symbol (the index, or its group, then its member)."""
    h, w = idx.shape
    ctx = GridContext(h, w, prior, stripe_rows, tile_cols)
    rows, cols = np.divmod(np.arange(h * w), w)
    pos = ctx.positions(rows, cols)
    symbols = idx.reshape(-1).cpu()
    ctx.put(pos, symbols.to(prior.device))
    with torch.inference_mode():
        for s in range(0, h * w, 65536):
            part = slice(s, s + 65536)
            for logits, symbol in coded_symbols(prior, ctx.windows(pos[part]), symbols[part].to(prior.device)):
                yield part, logits, symbol


def grid_bits(
    prior: IntegerPrior, idx: torch.Tensor, stripe_rows: int | None = None, tile_cols: int | None = None
) -> float:
    """Cross-entropy of a grid (coded in tiles of ``stripe_rows`` x ``tile_cols``) under the
    integer prior's exact frequency tables, in bits."""
    total = 0.0
    for _, logits, symbol in grid_logits(prior, idx, stripe_rows, tile_cols):
        picked = np.take_along_axis(frequencies(logits), symbol[:, None].cpu().numpy(), 1)
        total += float((FREQ_BITS - np.log2(picked)).sum())
    return total
