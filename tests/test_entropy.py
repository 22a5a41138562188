import ctypes
import time
from pathlib import Path

import constriction
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vqcodec import entropy
from vqcodec.models.prior import IntegerPrior, PriorConfig

from .conftest import constriction_weights, tiny_prior


def make_prior(scale: float, seed: int = 0, k: int = 16, radius: int = 1, groups: int = 1) -> IntegerPrior:
    """A random integer prior; with groups, in a random code order."""
    cfg = PriorConfig(codebook_size=k, radius=radius, hidden=16, layers=1, groups=groups)
    prior = tiny_prior(cfg, seed=seed, scale=scale)
    if groups > 1:
        prior.set_code_order(torch.randperm(k, generator=torch.Generator().manual_seed(seed)))
    return IntegerPrior(cfg, IntegerPrior.export(prior))


def test_exp_table_is_fixed():
    lut = entropy.exp_table()
    assert lut[0] == 65536 and lut[-1] == 0 and np.all(lut[:-1] > 0)
    assert np.all(lut[1:] <= lut[:-1])
    assert int(lut[16]) == round(65536 * np.exp(-1))  # one nat below the top


@given(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=600))
@settings(max_examples=200, deadline=None)
def test_frequencies_are_valid_for_any_logits(values):
    freq = entropy.frequencies(torch.tensor([values], dtype=torch.int64))
    assert int(freq.sum()) == entropy.TOTAL and int(freq.min()) >= 1


def test_frequencies_follow_logits():
    freq = entropy.frequencies(torch.tensor([[0, 16, 32, -(10**9)]]))
    assert freq[0, 2] > freq[0, 1] > freq[0, 0] > freq[0, 3] == 1
    assert freq[0, 2] / freq[0, 1] == pytest.approx(np.e, rel=1e-3)


def reference_frequencies(row: list[int]) -> list[int]:
    """The format's definition of a frequency table (docs/FORMAT.md), in Python integers."""
    lut = [int(v) for v in entropy.exp_table()]
    w = [lut[min(max(row) - v, len(lut) - 1)] for v in row]
    k = len(row)
    reciprocal = ((entropy.TOTAL - k) << entropy.RECIPROCAL_BITS) // sum(w)
    f = [1 + ((v * reciprocal) >> entropy.RECIPROCAL_BITS) for v in w]
    f[row.index(max(row))] += entropy.TOTAL - sum(f)  # what rounding left over, to the first most likely
    return f


@pytest.mark.parametrize("k", [2, 64, 513])
def test_frequencies_are_the_formats_integers(k):
    gen = torch.Generator().manual_seed(k)
    logits = torch.randint(-400, 40, (6, k), generator=gen, dtype=torch.int32)
    logits[1] = logits[1].max()  # ties: the first of them takes the remainder
    logits[2, ::3] = 39
    freq = entropy.frequencies(logits)
    assert freq.tolist() == [reference_frequencies(row) for row in logits.tolist()]


def test_wavefront_order_respects_the_causal_window():
    waves = entropy.Wavefronts(7, 9, radius=2)
    position = {(int(i), int(j)): n for n, (i, j) in enumerate(zip(waves.rows, waves.cols, strict=True))}
    assert len(position) == 63
    for (i, j), n in position.items():
        for dy, dx in [(-2, 2), (-1, 2), (-1, -2), (0, -1), (0, -2), (-2, -2)]:
            if (i + dy, j + dx) in position:
                assert position[(i + dy, j + dx)] < n
    assert len(waves) == 3 * 6 + 9  # (R+1)(H-1) + W steps


@pytest.mark.parametrize("shape", [(1, 1), (1, 40), (40, 1), (13, 17)])
@pytest.mark.parametrize("scale", [0.5, 8.0])
@pytest.mark.parametrize("groups", [1, 4])
def test_round_trip(shape, scale, groups):
    prior = make_prior(scale, groups=groups)
    idx = torch.randint(0, 16, shape, generator=torch.Generator().manual_seed(3))
    data = entropy.encode_grid(prior, idx)
    assert torch.equal(entropy.decode_grid(prior, data, *shape), idx)


@pytest.mark.parametrize("groups", [1, 8])
def test_payload_matches_cross_entropy(groups):
    prior = make_prior(4.0, k=64, radius=2, groups=groups)
    idx = torch.randint(0, 64, (40, 50), generator=torch.Generator().manual_seed(4))
    bits = entropy.grid_bits(prior, idx)
    payload = 8 * len(entropy.encode_grid(prior, idx))
    assert bits <= payload <= 1.01 * bits + 64


@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("threads", [1, 3])
def test_encoder_grouping_and_threads_do_not_change_the_bitstream(groups, threads):
    """The encoder's threads compute the tables of different wavefront groups side by side; the
    bytes are the same however they are grouped and however many threads there are."""
    prior = make_prior(2.0, k=32, radius=2, groups=groups)
    idx = torch.randint(0, 32, (21, 30), generator=torch.Generator().manual_seed(5))
    reference = entropy.encode_grid(prior, idx, group=10_000)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        streams = {entropy.encode_grid(prior, idx, group=g) for g in (None, 1, 3, 64)}
    finally:
        torch.set_num_threads(before)
    assert streams == {reference}


def openmp_threads() -> int:
    """GNU OpenMP's thread count for the calling OS thread, read without the first torch call that
    would set it; skips where torch ships another OpenMP."""
    lib = Path(torch.__file__).parent / "lib" / "libgomp.so.1"
    if not lib.exists():
        pytest.skip("torch without GNU OpenMP")
    return ctypes.CDLL(str(lib)).omp_get_max_threads()


def test_the_encoders_workers_run_the_prior_on_one_thread(monkeypatch):
    """A new OS thread starts with OpenMP's default of every core, not torch's setting: workers
    left so ran the prior's int8 products on both cores each (q4's tables 4x slower, 0.21 s
    instead of 0.05, under ``torch.set_num_threads(1)`` beside another job)."""
    prior = make_prior(2.0, k=32, radius=2)
    idx = torch.randint(0, 32, (21, 30), generator=torch.Generator().manual_seed(5))
    seen, logits = set(), prior.logits

    def recording(windows: torch.Tensor) -> torch.Tensor:
        seen.add(openmp_threads())
        return logits(windows)

    monkeypatch.setattr(prior, "logits", recording)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        entropy.encode_grid(prior, idx, group=1)
    finally:
        torch.set_num_threads(before)
    assert seen == {1}


def test_in_order_yields_in_order_with_bounded_results_in_flight():
    from concurrent.futures import ThreadPoolExecutor

    started = []

    def slow_first(n: int) -> int:
        started.append(n)
        if n == 0:
            time.sleep(0.05)
        return n * n

    with ThreadPoolExecutor(3) as pool:
        results = entropy.in_order(pool, slow_first, range(10), ahead=4)
        assert next(results) == 0 and len(started) <= 4
        assert list(results) == [n * n for n in range(1, 10)]


def test_the_encoder_calls_the_prior_on_about_a_fixed_number_of_table_entries():
    wide, narrow = make_prior(2.0, k=512, radius=1), make_prior(2.0, k=512, radius=1, groups=16)
    assert entropy.waves_per_call(wide, 78) == entropy.CALL_ENTRIES // (78 * 512)
    assert entropy.waves_per_call(narrow, 78) == entropy.CALL_ENTRIES // (78 * (16 + 32))
    assert entropy.waves_per_call(wide, 10**6) == 1


@pytest.mark.parametrize("groups", [1, 4])
def test_decoding_is_identical_across_thread_counts(groups):
    prior = make_prior(2.0, k=32, radius=2, groups=groups)
    idx = torch.randint(0, 32, (20, 25), generator=torch.Generator().manual_seed(6))
    data = entropy.encode_grid(prior, idx)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = entropy.decode_grid(prior, data, 20, 25)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(single, idx) and torch.equal(entropy.decode_grid(prior, data, 20, 25), idx)


@pytest.mark.parametrize("groups", [1, 4])
def test_the_steps_of_other_devices_decode_the_same(groups, monkeypatch):
    """The decoder's step through the prior's torch operations (what a GPU runs) against the
    CPU's numpy step: the same indices from the same stream."""
    prior = make_prior(2.0, k=32, radius=2, groups=groups)
    idx = torch.randint(0, 32, (19, 23), generator=torch.Generator().manual_seed(8))
    data = entropy.encode_grid(prior, idx, stripe_rows=8)
    assert torch.equal(entropy.decode_grid(prior, data, 19, 23, 8), idx)
    monkeypatch.setattr(entropy, "_compiled_step", entropy._tensor_step)
    assert torch.equal(entropy.decode_grid(prior, data, 19, 23, 8), idx)


def test_adversarial_distributions_never_fail():
    """All mass on one symbol, and the symbol coded being the least likely one."""
    prior = make_prior(400.0, k=16)  # extreme logits: near-one and near-zero probabilities
    ctx_grid = torch.zeros(12, 12, dtype=torch.int64)
    logits = prior.logits(torch.zeros(1, 4, dtype=torch.int64) + 3)
    worst = int(logits.argmin())
    for idx in (ctx_grid, torch.full((12, 12), worst), torch.randint(0, 16, (12, 12))):
        data = entropy.encode_grid(prior, idx)
        assert torch.equal(entropy.decode_grid(prior, data, 12, 12), idx)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_and_cpu_priors_agree_bit_for_bit():
    cfg = PriorConfig(codebook_size=64, radius=2, hidden=32, layers=2)
    tensors = IntegerPrior.export(tiny_prior(cfg, scale=3.0))
    cpu, gpu = IntegerPrior(cfg, tensors, "cpu"), IntegerPrior(cfg, tensors, "cuda")
    idx = torch.randint(0, 64, (30, 40), generator=torch.Generator().manual_seed(7))
    data = entropy.encode_grid(cpu, idx)
    assert entropy.encode_grid(gpu, idx) == data
    assert torch.equal(entropy.decode_grid(gpu, data, 30, 40).cpu(), idx)


@pytest.mark.parametrize("stripe_rows", [1, 2, 3, 5, 7, 100])
def test_striped_wavefronts_respect_the_window_within_each_stripe(stripe_rows):
    waves = entropy.Wavefronts(7, 9, radius=2, stripe_rows=stripe_rows)
    order = {(int(i), int(j)): n for n, (i, j) in enumerate(zip(waves.rows, waves.cols, strict=True))}
    assert len(order) == 63
    for (i, j), n in order.items():
        for dy, dx in entropy.causal_offsets(2):
            before = (i + dy, j + dx)
            if before in order and (i + dy) // stripe_rows == i // stripe_rows:
                assert order[before] < n
    rows = min(stripe_rows, 7)
    assert len(waves) == 3 * (rows - 1) + 9  # every stripe advances in lockstep


def test_a_kodak_grid_decodes_in_fewer_steps_with_stripes():
    assert len(entropy.Wavefronts(128, 192, radius=3)) == 700
    assert len(entropy.Wavefronts(128, 192, radius=3, stripe_rows=32)) == 316


@pytest.mark.parametrize("stripe_rows", [1, 4, 6, 13, 1000])
@pytest.mark.parametrize("groups", [1, 4])
def test_striped_round_trip(stripe_rows, groups):
    prior = make_prior(4.0, k=32, radius=2, groups=groups)
    idx = torch.randint(0, 32, (13, 17), generator=torch.Generator().manual_seed(7))
    data = entropy.encode_grid(prior, idx, stripe_rows=stripe_rows)
    assert torch.equal(entropy.decode_grid(prior, data, 13, 17, stripe_rows), idx)
    assert {entropy.encode_grid(prior, idx, group=g, stripe_rows=stripe_rows) for g in (1, 5, 100)} == {data}


def test_stripes_are_coded_as_independent_grids():
    prior = make_prior(4.0, k=32, radius=2)
    idx = torch.randint(0, 32, (20, 11), generator=torch.Generator().manual_seed(8))
    parts = sum(entropy.grid_bits(prior, idx[r : r + 6]) for r in range(0, 20, 6))
    assert entropy.grid_bits(prior, idx, stripe_rows=6) == pytest.approx(parts)
    assert entropy.grid_bits(prior, idx, stripe_rows=20) == pytest.approx(entropy.grid_bits(prior, idx))
    # one stripe is version 1's stream, bit for bit
    assert entropy.encode_grid(prior, idx, stripe_rows=20) == entropy.encode_grid(prior, idx)


@pytest.mark.parametrize("tile_cols", [1, 3, 4, 17])
@pytest.mark.parametrize("groups", [1, 4])
def test_tiles_are_coded_in_lockstep_as_independent_grids(tile_cols, groups):
    prior = make_prior(4.0, k=32, radius=2, groups=groups)
    idx = torch.randint(0, 32, (13, 17), generator=torch.Generator().manual_seed(10))
    data = entropy.encode_grid(prior, idx, stripe_rows=6, tile_cols=tile_cols)
    assert torch.equal(entropy.decode_grid(prior, data, 13, 17, 6, tile_cols), idx)
    tiles = [idx[r : r + 6, c : c + tile_cols] for r in range(0, 13, 6) for c in range(0, 17, tile_cols)]
    bits = entropy.grid_bits(prior, idx, stripe_rows=6, tile_cols=tile_cols)
    assert bits == pytest.approx(sum(entropy.grid_bits(prior, t) for t in tiles))
    waves = entropy.Wavefronts(13, 17, 2, stripe_rows=6, tile_cols=tile_cols)
    assert len(waves) == 3 * 5 + min(tile_cols, 17)


def test_groups_code_each_wavefront_as_groups_then_members():
    """Format version 3's order, written out by hand with constriction: group and member are the
    quotient and remainder of the index's place in the prior's code order."""
    prior = make_prior(3.0, k=16, radius=1, groups=4)
    idx = torch.randint(0, 16, (5, 6), generator=torch.Generator().manual_seed(9))
    waves, ctx = entropy.Wavefronts(5, 6, 1), entropy.GridContext(5, 6, prior)
    pos = ctx.positions(waves.rows, waves.cols)
    ctx.put(pos, idx[waves.rows, waves.cols])
    encoder, model = constriction.stream.queue.RangeEncoder(), constriction.stream.model.Categorical(perfect=False)
    for t in range(len(waves)):
        s = waves.span(t, t + 1)
        place = torch.argsort(prior.order)[idx[waves.rows[s], waves.cols[s]]]
        a = prior.features(ctx.windows(pos[s]))
        encoder.encode((place // 4).int().numpy(), model, constriction_weights(prior.group_logits(a)))
        encoder.encode((place % 4).int().numpy(), model, constriction_weights(prior.member_logits(a, place // 4)))
    assert entropy.encode_grid(prior, idx) == encoder.get_compressed().tobytes()
