import constriction
import numpy as np
import pytest
import torch

from vqcodec import entropy, kernels
from vqcodec.models.prior import IntegerPrior, PriorConfig, causal_offsets

from .conftest import constriction_weights, tiny_prior


def test_kernels_compile_where_no_cache_location_is_writable(monkeypatch):
    """A read-only install with no writable home: numba refuses to cache, so the loops compile
    in each process instead of failing the import."""
    import numba

    monkeypatch.setattr(numba.core.config, "CACHE_LOCATOR_CLASSES", "IPythonCacheLocator")  # finds nothing here
    with pytest.raises(RuntimeError, match="no locator"):
        numba.njit(cache=True)(lambda x: x + 1)
    assert kernels._jit(lambda x: x + 1)(2) == 3


@pytest.mark.parametrize("dtype", [np.int8, np.float32])
@pytest.mark.parametrize("table_type, acc_type", [(np.int16, np.int32), (np.int32, np.int64)])
@pytest.mark.parametrize("n_off", [3, 9])
def test_first_layer_is_the_sum_of_table_rows_shifted_and_clamped(dtype, table_type, acc_type, n_off):
    """At each position of a flat grid, the table rows of its window's symbols (read through
    flat offsets), summed, shifted and clamped."""
    rng = np.random.default_rng(n_off)
    rows, hidden = 9, 12
    table = rng.integers(-3000, 3000, (n_off * rows, hidden)).astype(table_type)
    flat = rng.integers(0, rows, 200).astype(np.int64)
    window = rng.choice(np.arange(-30, 0), n_off, replace=False).astype(np.int64)
    positions = rng.integers(30, 200, 23).astype(np.int64)
    bias = rng.integers(-500, 500, hidden).astype(acc_type)
    low, high = (-128, 127) if dtype == np.int8 else (0, 255)
    out = kernels.first_layer(flat, positions, window, rows, table, bias, 4, low, high, np.empty((23, hidden), dtype))
    windows = flat[positions[:, None] + window]
    sums = table[windows + np.arange(n_off) * rows].astype(np.int64).sum(1) + bias
    expected = np.clip(sums >> 4, low, high)  # >> floors negative sums too
    assert out.dtype == dtype and np.array_equal(out, expected.astype(dtype))
    assert (sums >> 4).min() < low and (sums >> 4).max() > high  # the clamp was exercised


@pytest.mark.parametrize("low, high, dtype", [(-128, 127, np.int8), (-(2**31), 2**31 - 1, np.int32)])
def test_requantize_is_a_per_channel_floor_shift_and_clamp(low, high, dtype):
    rng = np.random.default_rng(2)
    acc = rng.integers(-(2**20), 2**20, (17, 6)).astype(np.int32)
    acc[0] = [2**31 - 1, -(2**31), 0, -1, 1, 7]
    bias = rng.integers(-(2**12), 2**12, 6).astype(np.int64)
    shift = np.array([0, 3, 7, 9, 12, 1], np.int64)
    out = kernels.requantize(acc, bias, shift, low, high, np.empty(acc.shape, dtype))
    expected = np.clip((acc.astype(np.int64) + bias) >> shift, low, high).astype(dtype)
    assert np.array_equal(out, expected)


@pytest.mark.parametrize("int8", [False, True])
@pytest.mark.parametrize("batch", [1, 40])
def test_compiled_features_equal_the_tensor_path(int8, batch):
    """The CPU's compiled first layer computes what the torch operations (the path of other
    devices) compute, with and without the int8 matrix products."""
    cfg = PriorConfig(codebook_size=30, radius=2, hidden=16, layers=2)
    prior = IntegerPrior(cfg, IntegerPrior.export(tiny_prior(cfg, seed=5, scale=4.0)), int8=int8)
    assert (prior._int8 is not None) == int8
    ctx = torch.randint(0, 31, (batch, len(causal_offsets(2))), generator=torch.Generator().manual_seed(batch))
    with torch.inference_mode():
        compiled, tensor = prior.features(ctx), prior._tensor_features(ctx)
    compiled = compiled.to(torch.int64) + 128 if int8 else compiled.to(torch.int64)
    assert torch.equal(compiled, tensor.to(torch.int64))
    assert 0 < int(tensor.float().mean()) < 255


@pytest.mark.parametrize("int8", [False, True])
def test_compiled_member_logits_equal_the_sparse_product(int8):
    cfg = PriorConfig(codebook_size=32, radius=1, hidden=16, layers=1, groups=4)
    prior = IntegerPrior(cfg, IntegerPrior.export(tiny_prior(cfg, seed=6, scale=4.0)), int8=int8)
    gen = torch.Generator().manual_seed(7)
    ctx = torch.randint(0, 33, (50, len(causal_offsets(1))), generator=gen)
    groups = torch.randint(0, 4, (50,), generator=gen)
    with torch.inference_mode():
        a = prior.features(ctx)
        compiled = prior.member_logits(a, groups)
        assert torch.equal(compiled, prior._sparse_member_logits(a, groups))
    assert compiled.dtype == torch.int32 and compiled.shape == (50, 8) and compiled.abs().max() > 16


def constriction_stream(tables: list[np.ndarray], symbols: list[np.ndarray]) -> np.ndarray:
    encoder = constriction.stream.queue.RangeEncoder()
    model = constriction.stream.model.Categorical(perfect=False)
    for logits, coded in zip(tables, symbols, strict=True):
        encoder.encode(coded.astype(np.int32), model, constriction_weights(logits))
    return encoder.get_compressed()


def decode(tables: list[np.ndarray], words: np.ndarray) -> list[np.ndarray]:
    state = kernels.range_decoder(words)
    args = (entropy.exp_table(), entropy.FREQ_BITS, entropy.RECIPROCAL_BITS, words, state)
    return [kernels.decode_symbols(logits, *args) for logits in tables]


@pytest.mark.parametrize("k", [2, 37, 512])
@pytest.mark.parametrize("spread", [1.0, 40.0, 4000.0])
def test_the_compiled_range_decoder_reads_constrictions_streams(k, spread):
    """decode_symbols is constriction's queue range decoder with the format's frequency tables:
    it decodes what constriction encoded, symbol for symbol, across calls of any size (the
    likeliest and the unlikeliest symbols, near-uniform and near-certain tables)."""
    rng = np.random.default_rng(k)
    tables = [(rng.standard_normal((n, k)) * spread).astype(np.int32) for n in (1, 7, 300, 2)]
    symbols = [rng.integers(0, k, len(t)) for t in tables]
    symbols[2][:50] = tables[2][:50].argmax(1)
    symbols[2][50:100] = tables[2][50:100].argmin(1)
    decoded = decode(tables, constriction_stream(tables, symbols))
    assert all(np.array_equal(d, s) for d, s in zip(decoded, symbols, strict=True))


def test_the_compiled_range_decoder_refuses_data_no_encoder_wrote():
    tables = [np.array([[0, 0, 2000, 0]] * 4, np.int32)]  # symbol 2 is near certain
    words = constriction_stream(tables, [np.array([2, 2, 2, 2])])
    assert len(words) == 1 and decode(tables, words)[0].tolist() == [2, 2, 2, 2]
    with pytest.raises(ValueError, match="invalid data"):
        decode(tables * 30, np.full(2, 2**32 - 1, np.uint32))
    assert kernels.range_decoder(np.zeros(0, np.uint32))[2] == 0  # no words: the point is 0


@pytest.mark.parametrize("k", [2, 5, 512])
def test_the_compiled_range_encoder_writes_constrictions_words(k):
    """RangeEncoder is constriction's queue range encoder: the same words for the same symbols
    under the same tables, across calls of any size (held-back words and carries included:
    they come every few dozen words)."""
    rng = np.random.default_rng(k)
    for trial in range(40):
        tables = [(rng.standard_normal((n, k)) * 30.0).astype(np.int32) for n in rng.integers(0, 150, trial % 5)]
        symbols = [rng.integers(0, k, len(t)) for t in tables]
        ours = kernels.RangeEncoder(entropy.FREQ_BITS)
        for logits, coded in zip(tables, symbols, strict=True):
            ours.encode(entropy.intervals(torch.from_numpy(logits), torch.from_numpy(coded)))
        assert np.array_equal(ours.words(), constriction_stream(tables, symbols))
        assert [d.tolist() for d in decode(tables, ours.words())] == [s.tolist() for s in symbols]


def test_symbol_intervals_are_the_tables_cumulative_frequencies():
    logits = np.array([[0, 16, -4, 40], [3, 3, 3, 3]], np.int32)
    freq = entropy.frequencies(logits)
    got = entropy.intervals(torch.from_numpy(logits), torch.tensor([2, 3]))
    assert got.tolist() == [[int(freq[0, :2].sum()), int(freq[0, 2])], [int(freq[1, :3].sum()), int(freq[1, 3])]]


@pytest.mark.parametrize("h, w, c, o", [(1, 1, 4, 3), (5, 7, 16, 3), (9, 4, 8, 5)])
def test_the_uint8_convolution_is_the_float_convolution_of_the_dequantized_activation(h, w, c, o):
    """conv3x3_uint8 against torch's convolution of the dequantized values, zero padding at
    every border, whatever rows each call writes."""
    rng = np.random.default_rng(h * w)
    values = rng.integers(0, 256, (h, w, c)).astype(np.uint8)
    scale, zero_point = 0.03, 17
    conv = torch.nn.Conv2d(c, o, 3, padding=1)
    weight = conv.weight.detach().permute(0, 3, 2, 1).reshape(o, -1).contiguous().numpy()
    bias = conv.bias.detach().numpy()
    out = np.full((o, h, w), np.nan, np.float32)
    for start, stop in ((0, h // 2), (h // 2, h)):
        kernels.conv3x3_uint8(values, zero_point, scale, weight, bias, out, start, stop)
    x = (torch.from_numpy(values).permute(2, 0, 1)[None].float() - zero_point) * scale
    with torch.no_grad():
        expected = conv(x)[0].numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
