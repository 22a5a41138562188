import pytest
import torch

from vqcodec.models.prior import IntegerPrior, PixelCNNPrior, PriorConfig, causal_offsets

from .conftest import TINY_PRIOR, tiny_prior

CFG = PriorConfig(codebook_size=12, radius=2, hidden=24, layers=2)


def test_causal_window_is_strictly_before_in_raster_and_wavefront_order():
    for r in (1, 2, 3):
        for dy, dx in causal_offsets(r):
            assert (dy, dx) < (0, 0)  # raster order
            assert (r + 1) * dy + dx < 0  # wavefront t = (r+1)*i + j
        assert len(causal_offsets(r)) == r * (2 * r + 1) + r


def test_masked_convolution_is_causal():
    """Changing index i never changes the distribution at any position <= i (raster order)."""
    for quantized in (False, True):
        prior = tiny_prior(CFG)
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
def test_int8_matrix_products_give_the_float_networks_logits(batch):
    """The CPU path (int8 x int8 -> int32 products) computes exactly what the float64 path does."""
    cfg = PriorConfig(codebook_size=40, radius=2, hidden=24, layers=2)
    fast = IntegerPrior(cfg, IntegerPrior.export(tiny_prior(cfg, seed=3, scale=3.0)))
    assert fast._int8 is not None
    reference = IntegerPrior(cfg, IntegerPrior.export(tiny_prior(cfg, seed=3, scale=3.0)))
    reference._int8 = None
    ctx = torch.randint(0, 41, (batch, len(causal_offsets(2))), generator=torch.Generator().manual_seed(batch))
    with torch.inference_mode():
        assert torch.equal(fast.logits(ctx), reference.logits(ctx))
        assert reference.logits(ctx).abs().max() > 16  # not all zero
