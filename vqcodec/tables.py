"""Range coding of values under fixed integer frequency tables: the ae and vae baselines' latents
and side information (one table per channel, or per predicted scale).

The tables are computed once, when a model is exported, and stored with its weights, so encoder
and decoder never recompute a floating-point density. The range coder is constriction's queue
coder, as for the vq family's grids (``vqcodec.entropy``), with the same 2**24 total.
"""

from __future__ import annotations

import constriction
import numpy as np
import torch

from vqcodec.entropy import TOTAL
from vqcodec.errors import BitstreamError


def table_frequencies(pmf: torch.Tensor) -> torch.Tensor:
    """A probability vector (float64) -> int64 frequencies, each >= 1, summing to 2**24.

    Computed once, when a model is exported; the integer tables are stored with the weights,
    so encoder and decoder never recompute a floating-point density."""
    n = len(pmf)
    freq = 1 + torch.floor(pmf / pmf.sum() * (TOTAL - n)).long()
    freq[int(pmf.argmax())] += TOTAL - int(freq.sum())
    return freq


def stack_tables(pmfs: list[torch.Tensor], offsets: list[int]) -> dict[str, torch.Tensor]:
    """Integer tables of integer-valued symbols: table t codes the values
    offset[t] .. offset[t] + length[t] - 1 with frequencies freq[t, :length[t]]."""
    width = max(len(p) for p in pmfs)
    freq = torch.zeros(len(pmfs), width, dtype=torch.int32)
    for t, pmf in enumerate(pmfs):
        freq[t, : len(pmf)] = table_frequencies(pmf).to(torch.int32)
    return {
        "freq": freq,
        "offset": torch.tensor(offsets, dtype=torch.int32),
        "length": torch.tensor([len(p) for p in pmfs], dtype=torch.int32),
    }


class TableCoder:
    """Range coding of integer values, each under one of a set of fixed frequency tables.

    Values are coded table by table (ascending table number), in flat order within a table:
    the decoder knows every value's table before decoding it, so it can follow the same order.
    Values outside a table's range are clamped to it by ``clamp`` before coding; a table of
    one value (a channel the model left unused) costs nothing and is not coded."""

    def __init__(self, tables: dict[str, torch.Tensor]):
        self.offset = tables["offset"].long()
        self.high = self.offset + tables["length"].long() - 1
        self.models = [
            constriction.stream.model.Categorical(row[:n].numpy().astype(np.float64) - 1, perfect=False)
            if n > 1
            else None
            for row, n in zip(tables["freq"], tables["length"].tolist(), strict=True)
        ]

    def clamp(self, values: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Integer values (any shape) clamped to the range of their tables."""
        return torch.minimum(torch.maximum(values.long(), self.offset[table]), self.high[table])

    def encode(self, encoder: constriction.stream.queue.RangeEncoder, values: torch.Tensor, table: torch.Tensor):
        values, table = values.reshape(-1).numpy(), table.reshape(-1).numpy()
        offset = self.offset.numpy()
        for t in np.unique(table):
            if self.models[t] is not None:
                encoder.encode((values[table == t] - offset[t]).astype(np.int32), self.models[t])

    def decode(self, decoder: constriction.stream.queue.RangeDecoder, table: torch.Tensor) -> torch.Tensor:
        """Values of the shape of ``table``, decoded in the order ``encode`` wrote them."""
        flat = table.reshape(-1).numpy()
        out = np.empty(flat.shape, dtype=np.int64)
        offset = self.offset.numpy()
        for t in np.unique(flat):
            where = flat == t
            if self.models[t] is None:
                out[where] = offset[t]
                continue
            try:
                out[where] = decoder.decode(self.models[t], int(where.sum())) + offset[t]
            except Exception as e:  # constriction reports invalid data as AssertionError or ValueError
                raise BitstreamError(f"corrupt payload: the range decoder failed in table {t} ({e})") from e
        return torch.from_numpy(out).view(table.shape)
