import math

import pytest
import torch

from vqcodec.models.prior import IntegerPrior, PixelCNNPrior, PriorConfig, causal_offsets, float_state

from .conftest import TINY_PRIOR, tiny_prior

CFG = PriorConfig(codebook_size=12, radius=2, hidden=24, layers=2)
GROUPED = PriorConfig(codebook_size=12, radius=2, hidden=24, layers=2, groups=4)


def test_causal_window_is_strictly_before_in_raster_and_wavefront_order():
    for r in (1, 2, 3):
        for dy, dx in causal_offsets(r):
            assert (dy, dx) < (0, 0)  # raster order
            assert (r + 1) * dy + dx < 0  # wavefront t = (r+1)*i + j
        assert len(causal_offsets(r)) == r * (2 * r + 1) + r


@pytest.mark.parametrize("cfg", [CFG, GROUPED])
def test_masked_convolution_is_causal(cfg):
    """Changing index i never changes the distribution at any position <= i (raster order)."""
    for quantized in (False, True):
        prior = tiny_prior(cfg)
        prior.quantized = quantized
        g = torch.Generator().manual_seed(0)
        idx = torch.randint(0, 12, (1, 6, 7), generator=g)
        base = prior(idx)
        for i in range(6):
            for j in range(7):
                changed = idx.clone()
                changed[0, i, j] = (changed[0, i, j] + 5) % 12
                diff = (prior(changed) - base).abs().amax(-1)[0].flatten()
                pos = i * 7 + j
                assert torch.all(diff[: pos + 1] == 0), (i, j)


def test_integer_export_matches_quantization_aware_float_model():
    prior = tiny_prior(CFG, scale=3.0)
    idx = torch.randint(0, 12, (2, 9, 11), generator=torch.Generator().manual_seed(1))
    float_logits = prior(idx).detach().reshape(-1, 12) * 16
    exact = IntegerPrior(CFG, IntegerPrior.export(prior))
    int_logits = exact.logits(prior.context(idx).reshape(-1, len(causal_offsets(2))))
    assert int_logits.dtype == torch.int32
    assert (float_logits - int_logits).abs().max() <= 1  # float rounding of the simulation at most


def test_table_is_stored_as_int16_when_it_fits_and_gives_the_same_logits():
    prior = tiny_prior(CFG, scale=3.0)
    small = IntegerPrior.export(prior)
    assert small["table"].dtype == torch.int16
    ctx = torch.randint(0, 13, (50, len(causal_offsets(2))), generator=torch.Generator().manual_seed(2))
    wide = {**small, "table": small["table"].to(torch.int32)}  # how the first vq weights store it
    assert torch.equal(IntegerPrior(CFG, small).logits(ctx), IntegerPrior(CFG, wide).logits(ctx))
    with torch.no_grad():
        prior.table[0, 0, 0] = 10.0  # 10 * 2**12 does not fit in int16
    assert IntegerPrior.export(prior)["table"].dtype == torch.int32


def test_integer_logits_do_not_depend_on_batch_or_threads():
    prior = tiny_prior(TINY_PRIOR, scale=3.0)
    exact = IntegerPrior(TINY_PRIOR, IntegerPrior.export(prior))
    ctx = torch.randint(0, 17, (500, len(causal_offsets(1))), generator=torch.Generator().manual_seed(2))
    whole = exact.logits(ctx)
    parts = torch.cat([exact.logits(ctx[i : i + 37]) for i in range(0, 500, 37)])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = exact.logits(ctx)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(whole, parts) and torch.equal(whole, single)


def test_training_reduces_cross_entropy():
    torch.manual_seed(0)
    prior = PixelCNNPrior(PriorConfig(codebook_size=4, radius=1, hidden=16, layers=1))
    # a grid where each index copies its left neighbour: fully predictable from context
    idx = torch.randint(0, 4, (8, 1, 1)).expand(8, 6, 6).contiguous()
    opt = torch.optim.Adam(prior.parameters(), lr=1e-2)
    first = prior.bits(idx).item()
    for _ in range(100):
        opt.zero_grad()
        loss = prior.bits(idx)
        loss.backward()
        opt.step()
    assert prior.bits(idx).item() < 0.3 * first


@pytest.mark.parametrize("batch", [1, 3, 17, 300])
def test_int8_matrix_products_give_the_float_networks_logits(batch, monkeypatch):
    """The path of CPUs with VNNI or AMX (int8 x int8 -> int32 products) computes exactly what the
    float path does; forced here, since this CPU may lack them."""
    cfg = PriorConfig(codebook_size=40, radius=2, hidden=24, layers=2, groups=8)
    tensors = IntegerPrior.export(tiny_prior(cfg, seed=3, scale=3.0))
    fast, reference = IntegerPrior(cfg, tensors, int8=True), IntegerPrior(cfg, tensors, int8=False)
    assert fast._int8 is not None and reference._int8 is None
    monkeypatch.setattr("vqcodec.models.prior.int8_matmul_fast", lambda: False)
    assert IntegerPrior(cfg, tensors)._int8 is None  # None: where the products are faster
    ctx = torch.randint(0, 41, (batch, len(causal_offsets(2))), generator=torch.Generator().manual_seed(batch))
    groups = torch.randint(0, 8, (batch,), generator=torch.Generator().manual_seed(batch))
    with torch.inference_mode():
        a, b = fast.features(ctx), reference.features(ctx)
        assert torch.equal(fast.logits(ctx), reference.logits(ctx))
        assert torch.equal(fast.group_logits(a), reference.group_logits(b))
        assert torch.equal(fast.member_logits(a, groups), reference.member_logits(b, groups))
        assert reference.logits(ctx).abs().max() > 16  # not all zero
        # only the group's members are computed: the same integers as the whole output layer's
        whole = reference._output(b, cfg.layers).view(batch, cfg.groups, cfg.members)[torch.arange(batch), groups]
        assert torch.equal(reference.member_logits(b, groups), whole)


@pytest.mark.parametrize("quantized", [False, True])
def test_a_prior_with_groups_is_a_distribution_over_the_codebook(quantized):
    prior = tiny_prior(GROUPED, scale=3.0)
    prior.quantized = quantized
    idx = torch.randint(0, 12, (2, 5, 6), generator=torch.Generator().manual_seed(4))
    log_p = prior(idx)
    assert log_p.shape == (2, 5, 6, 12)
    assert torch.allclose(log_p.logsumexp(-1), torch.zeros(2, 5, 6), atol=1e-5)


@pytest.mark.parametrize("groups", [1, 5, 0, 8])
def test_groups_must_divide_the_codebook(groups):
    if groups == 1:
        assert PriorConfig(codebook_size=12, groups=groups).members == 12
        return
    with pytest.raises(ValueError, match="power of two that divides"):
        PriorConfig(codebook_size=12, groups=groups)


def test_integer_group_and_member_logits_match_the_quantization_aware_float_model():
    prior = tiny_prior(GROUPED, scale=3.0)
    idx = torch.randint(0, 12, (2, 9, 11), generator=torch.Generator().manual_seed(1))
    exact = IntegerPrior(GROUPED, IntegerPrior.export(prior))
    a = exact.features(prior.context(idx).reshape(-1, len(causal_offsets(2))))
    with torch.no_grad():
        h = prior.features(prior.context(idx)).reshape(-1, 24)
        float_groups = prior._logits(prior.group_out, h) * 16
        float_members = prior._logits(prior.out, h).view(-1, 4, 3) * 16
    groups = idx.reshape(-1) // 3
    int_members = exact.member_logits(a, groups)
    assert int_members.dtype == torch.int32 and int_members.shape == (len(groups), 3)
    assert (float_groups - exact.group_logits(a)).abs().max() <= 1
    assert (float_members[torch.arange(len(groups)), groups] - int_members).abs().max() <= 1


def test_a_code_order_changes_which_codes_share_a_group_not_the_network():
    plain, ordered = tiny_prior(GROUPED, scale=3.0), tiny_prior(GROUPED, scale=3.0)
    order = torch.randperm(12, generator=torch.Generator().manual_seed(5))
    ordered.set_code_order(order)
    idx = torch.randint(0, 12, (1, 4, 5), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert torch.allclose(ordered(idx)[..., order], plain(idx))
    exact = IntegerPrior(GROUPED, IntegerPrior.export(ordered))
    groups, members = exact.split(torch.arange(12))
    assert torch.equal(exact.join(groups, members), torch.arange(12))
    assert torch.equal(groups * 3 + members, torch.argsort(order))


@pytest.mark.parametrize("cfg", [CFG, GROUPED], ids=["flat", "groups"])
def test_float_state_inverts_the_integer_export(cfg):
    """A shipped integer prior loads back as the float model it was exported from (up to its
    rounding), so another run can start from it and export the same integers again."""
    prior = tiny_prior(cfg, scale=3.0)
    if cfg.groups > 1:
        prior.set_code_order(torch.randperm(12, generator=torch.Generator().manual_seed(3)))
    tensors = IntegerPrior.export(prior)
    again = PixelCNNPrior(cfg)
    again.load_state_dict(float_state(cfg, tensors))
    assert all(torch.equal(v, IntegerPrior.export(again)[k]) for k, v in tensors.items())
    again.quantized = True
    idx = torch.randint(0, 12, (1, 6, 7), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.allclose(again(idx), prior(idx), atol=1e-5)


@pytest.mark.parametrize("quantized", [False, True])
def test_training_bits_of_a_prior_with_groups_equal_the_full_distributions(quantized):
    """Training computes each index's member logits for its own group only: the same loss and
    gradients as the cross-entropy of the full distribution over the codebook."""
    from vqcodec.models.prior import cross_entropy_bits

    prior = tiny_prior(GROUPED, scale=3.0).train()
    prior.quantized = quantized
    prior.set_code_order(torch.randperm(12, generator=torch.Generator().manual_seed(7)))
    idx = torch.randint(0, 12, (2, 5, 6), generator=torch.Generator().manual_seed(8))
    fast = prior(idx, bits=True)
    fast.backward()
    fast_grads = [p.grad.clone() for p in prior.parameters()]
    prior.zero_grad()
    full = cross_entropy_bits(prior(idx), idx)
    full.backward()
    assert torch.allclose(fast, full, rtol=1e-5)
    assert all(torch.allclose(g, p.grad, atol=1e-5) for g, p in zip(fast_grads, prior.parameters(), strict=True))


@pytest.mark.parametrize("cfg", [CFG, GROUPED], ids=["flat", "groups"])
@pytest.mark.parametrize("logits", [1, 2**22], ids=["row-by-row", "whole"])
def test_code_lengths_are_the_full_distributions(cfg, logits):
    """Each candidate code's length at its position is -log2 of the full distribution there
    (with groups, priced from the candidates' groups only), however many rows a chunk holds."""
    prior = tiny_prior(cfg, scale=3.0).eval()
    prior.quantized = True
    if cfg.groups > 1:
        prior.set_code_order(torch.randperm(12, generator=torch.Generator().manual_seed(7)))
    g = torch.Generator().manual_seed(9)
    idx = torch.randint(0, cfg.codebook_size, (2, 5, 6), generator=g)
    codes = torch.randint(0, cfg.codebook_size, (2, 5, 6, 4), generator=g)
    with torch.no_grad():
        full = prior(idx).log_softmax(-1).gather(-1, codes) / -math.log(2)
    assert torch.allclose(prior.code_lengths(idx, codes, logits), full, atol=1e-5)
