"""Range coding under fixed integer tables (the baselines' coder): valid frequencies for any
distribution, round trips with clamping, and corrupt data as BitstreamError."""

import constriction
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vqcodec import entropy
from vqcodec.errors import BitstreamError
from vqcodec.tables import TableCoder, stack_tables, table_frequencies


@given(st.lists(st.floats(0, 1), min_size=1, max_size=300).filter(lambda p: sum(p) > 0))
@settings(max_examples=200, deadline=None)
def test_table_frequencies_are_valid_for_any_distribution(pmf):
    freq = table_frequencies(torch.tensor(pmf, dtype=torch.float64))
    assert int(freq.sum()) == entropy.TOTAL and int(freq.min()) >= 1


def random_tables(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    pmfs = [torch.rand(n, generator=gen, dtype=torch.float64) ** 4 for n in (1, 2, 7, 40)]
    return stack_tables(pmfs, [0, -1, -3, -20])


def test_table_coder_round_trip_with_clamping():
    tables = random_tables()
    coder = TableCoder(tables)
    gen = torch.Generator().manual_seed(1)
    table = torch.randint(0, 4, (3, 50, 60), generator=gen)
    values = torch.randint(-30, 30, table.shape, generator=gen)
    clamped = coder.clamp(values, table)
    assert torch.equal(clamped[table == 0], torch.zeros_like(clamped[table == 0]))
    assert clamped[table == 3].min() >= -20 and clamped[table == 3].max() <= 19
    inside = (values >= coder.offset[table]) & (values <= coder.high[table])
    assert torch.equal(clamped[inside], values[inside])
    encoder = constriction.stream.queue.RangeEncoder()
    coder.encode(encoder, clamped, table)
    data = encoder.get_compressed()
    decoded = coder.decode(constriction.stream.queue.RangeDecoder(data), table)
    assert torch.equal(decoded, clamped)
    # the coder codes exactly the stored integer frequencies: the payload is their information content
    freq = tables["freq"].double()
    picked = freq[table, (clamped - coder.offset[table])]
    bits = float((entropy.FREQ_BITS - picked.log2()).sum())
    assert bits <= 32 * len(data) <= bits + 64


def test_table_coder_reports_corrupt_data():
    coder = TableCoder(random_tables())
    table = torch.full((1, 200, 200), 3)
    with pytest.raises(BitstreamError, match="corrupt payload"):  # far more symbols than one word holds
        coder.decode(constriction.stream.queue.RangeDecoder(np.array([7], dtype=np.uint32)), table)
