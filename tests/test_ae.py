"""The AE and VAE baselines' models: densities, tables and the integer hyper-synthesis."""

import math

import pytest
import torch

from vqcodec.models.ae import (
    GDN,
    SCALE_MIN,
    AEConfig,
    FactorizedDensity,
    IntegerHyperSynthesis,
    gaussian_likelihood,
    gaussian_pmfs,
    grow_levels,
    level_model,
    make_model,
    scale_table,
)


def test_factorized_density_is_a_distribution_over_the_integers():
    torch.manual_seed(0)
    density = FactorizedDensity(3)
    values = torch.arange(-400, 401, dtype=torch.float32).view(1, 1, 1, -1).expand(1, 3, 1, -1)
    mass = density.likelihood(values).sum(-1)
    assert torch.allclose(mass, torch.ones_like(mass), atol=1e-4)


def test_factorized_density_tables_hold_the_mass_and_sum_to_one():
    torch.manual_seed(0)
    density = FactorizedDensity(4)
    pmfs, offsets = density.pmfs(tail=1e-6)
    for c, (pmf, lo) in enumerate(zip(pmfs, offsets, strict=True)):
        assert pmf.dtype == torch.float64 and abs(float(pmf.sum()) - 1) < 1e-12
        assert float(pmf.min()) >= 0
        # the table's range holds the values the density puts its mass on
        values = torch.arange(lo, lo + len(pmf), dtype=torch.float32)
        with torch.no_grad():
            assert float(density.likelihood(values.view(1, 1, 1, -1).expand(1, 4, 1, -1))[0, c].sum()) > 0.99


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_computes_in_float32_under_bfloat16_autocast(inverse):
    torch.manual_seed(0)
    gdn = GDN(16, inverse)
    with torch.no_grad():
        gdn.beta.uniform_(1e-3, 1e-2)  # near the floor, where a bfloat16 denominator goes wrong
    x = torch.randn(2, 16, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = gdn(x)
    assert y.dtype == torch.float32
    assert torch.equal(y, gdn(x))


def test_gaussian_tables_match_the_training_likelihood():
    scales = scale_table()
    assert len(scales) == 64 and math.isclose(scales[0], SCALE_MIN) and scales == sorted(scales)
    for s, pmf in zip(scales[::9], gaussian_pmfs(scales[::9]), strict=True):
        half = len(pmf) // 2
        assert len(pmf) == 2 * half + 1 and abs(float(pmf.sum()) - 1) < 1e-12
        assert torch.allclose(pmf, pmf.flip(0))  # zero mean
        k = torch.arange(-half + 1, half, dtype=torch.float64)  # the inner values, tails not folded in
        expected = gaussian_likelihood(k, torch.tensor(s, dtype=torch.float64))
        assert torch.allclose(pmf[1:-1], expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("hyper", [0, 4])
def test_rate_term_uses_noise_when_training_and_rounding_otherwise(hyper):
    torch.manual_seed(0)
    model = make_model(AEConfig(channels=8, latent=6, hyper=hyper))
    x = torch.rand(2, 3, 64, 64)
    model.eval()
    assert torch.equal(model(x)[1], model(x)[1])  # deterministic: rounded latents
    model.train()
    y, rate = model(x)
    assert y.shape == x.shape and rate.shape == (2,) and bool((rate > 0).all())  # bits of each image
    assert not torch.equal(rate, model(x)[1])  # fresh noise each pass
    rate.sum().backward()
    assert all(p.grad is not None for p in model.g_a.parameters())  # rate gradients reach the encoder


@pytest.mark.parametrize("hyper", [0, 4])
def test_variable_rate_levels_scale_the_latent_and_export_as_one_level_models(hyper):
    torch.manual_seed(0)
    lambdas = (0.002, 0.008, 0.032)
    model = make_model(AEConfig(channels=8, latent=6, hyper=hyper, lambdas=lambdas)).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y = [model.analyze(x, level) for level in range(3)]
        # gains start at sqrt(lambda) ratios: a higher lambda quantizes the same latent finer
        assert torch.allclose(y[2], 4 * y[0], rtol=1e-5) and torch.allclose(y[1], 2 * y[0], rtol=1e-5)
        for n in range(3):
            one = level_model(model, n)
            assert one.cfg.lambdas == (lambdas[n],) and one.cfg.lmbda == lambdas[n]
            assert one.gains.gain.shape == (1, 6)
            assert torch.equal(one.analyze(x), y[n])
            y_hat = torch.round(y[n])
            assert torch.equal(one.synthesize(y_hat), model.synthesize(y_hat, n))
            assert torch.equal(one(x)[1], model(x, n)[1])  # the level's own densities
        assert not torch.equal(model(x, 0)[1], model(x, 2)[1])


@pytest.mark.parametrize("hyper", [0, 4])
def test_a_variable_rate_model_grows_levels_that_start_from_its_nearest(hyper):
    torch.manual_seed(0)
    old, new = (0.002, 0.008), (0.0005, 0.002, 0.005, 0.008)
    model = make_model(AEConfig(channels=8, latent=6, hyper=hyper, lambdas=old)).eval()
    grown = make_model(AEConfig(channels=8, latent=6, hyper=hyper, lambdas=new)).eval()
    grown.load_state_dict(grow_levels(model.state_dict(), old, new))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for n, m in ((0, 1), (1, 3)):  # the old levels, unchanged
            assert torch.equal(grown(x, m)[1], model(x, n)[1])
            assert torch.equal(grown.analyze(x, m), model.analyze(x, n))
        # a quarter of the lowest lambda: half its gain, twice its inverse gain, its densities
        assert torch.allclose(grown.analyze(x, 0), model.analyze(x, 0) / 2, rtol=1e-5)
        y_hat = torch.round(grown.analyze(x, 0))
        assert torch.allclose(grown.synthesize(y_hat, 0), model.synthesize(2 * y_hat, 0), atol=1e-5)
        rows = hyper or 6  # density channels per level: the side information's, or the latent's
        assert torch.equal(grown.density.matrices[0][:rows], model.density.matrices[0][:rows])
        # 0.005 starts from 0.008, the nearer in log lambda
        assert torch.allclose(grown.analyze(x, 2), model.analyze(x, 1) * (5 / 8) ** 0.5, rtol=1e-5)
    with pytest.raises(ValueError, match="include the old"):
        grow_levels(model.state_dict(), old, (0.001, 0.008))


def trained_like_hyper_synthesis(seed: int = 0) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    h_s = make_model(AEConfig(channels=8, latent=6, hyper=4)).h_s
    with torch.no_grad():
        h_s[-2].bias.add_(2.0)  # scales spread over the tables
    return h_s


def test_integer_hyper_synthesis_agrees_with_the_float_network():
    h_s = trained_like_hyper_synthesis()
    integer = IntegerHyperSynthesis(IntegerHyperSynthesis.export(h_s))
    z = torch.randint(-6, 7, (1, 4, 9, 11))
    idx = integer.scale_indices(z)
    assert idx.shape == (1, 6, 36, 44) and idx.dtype == torch.int64
    scales = torch.tensor(scale_table(), dtype=torch.float64)
    with torch.no_grad():
        reference = torch.bucketize(h_s(z.float()).double(), (scales[1:] * scales[:-1]).sqrt(), right=True)
    assert len(idx.unique()) > 5
    assert (idx == reference).float().mean() > 0.99  # only values next to a table boundary may differ


def test_integer_hyper_synthesis_is_exact_across_threads_and_batches():
    integer = IntegerHyperSynthesis(IntegerHyperSynthesis.export(trained_like_hyper_synthesis(1)))
    z = torch.randint(-50, 51, (1, 4, 12, 10))
    threads = torch.get_num_threads()
    whole = integer.scale_indices(z)
    try:
        torch.set_num_threads(1)
        one_thread = integer.scale_indices(z)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(whole, one_thread)
    # a crop of the input gives the same tables away from the crop's edge (no dependence on size)
    part = integer.scale_indices(z[:, :, :8, :6])
    assert torch.equal(part[:, :, :24, :16], whole[:, :, :24, :16])


def test_integer_hyper_synthesis_refuses_tensors_beyond_exact_arithmetic():
    tensors = IntegerHyperSynthesis.export(trained_like_hyper_synthesis())
    tensors["b0"] = tensors["b0"] + 2**54
    with pytest.raises(ValueError, match="exact"):
        IntegerHyperSynthesis(tensors)
