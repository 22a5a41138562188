"""The hyper-VQ model: lattice codebook, nearest-codeword search, rate terms and the warm start from a VAE."""

import math

import pytest
import torch

from vqcodec.models.ae import SCALES, AEConfig, grow_levels, make_model
from vqcodec.models.hypervq import (
    HyperpriorVQ,
    HyperVQConfig,
    bin_positions,
    from_hyperprior_vae,
    lattice_codebook,
)

TINY = HyperVQConfig(channels=8, latent=6, hyper=4, group=2, codebook=64, lambdas=(0.001, 0.01))


def test_hexagonal_codebook_has_unit_cells_and_starts_at_the_origin():
    c = lattice_codebook(2, 61).double()
    assert torch.equal(c[0], torch.zeros(2, dtype=torch.float64))
    d = torch.cdist(c, c) + torch.eye(len(c)) * 1e9
    spacing = float(d.min())
    # a hexagonal cell of a lattice of spacing a has area sqrt(3) / 2 * a**2
    assert math.isclose(math.sqrt(3) / 2 * spacing**2, 1.0, rel_tol=1e-5)
    assert int((d[0] - spacing).abs().lt(1e-5).sum()) == 6  # the first shell
    norms = c.norm(dim=1)
    assert bool((norms[1:] >= norms[:-1] - 1e-5).all())


def test_integer_codebook_in_other_dimensions():
    c = lattice_codebook(3, 27)
    assert c.shape == (27, 3) and torch.equal(c, c.round())


def test_latent_must_split_into_groups():
    with pytest.raises(ValueError, match="multiple of the group"):
        HyperVQConfig(latent=7, group=2)


def test_nearest_codeword_is_found_and_its_neighbours_follow():
    torch.manual_seed(0)
    model = HyperpriorVQ(TINY)
    v = torch.randn(500, 2) * 2
    near, d = model.nearest(v, 4)
    exact = torch.cdist(v, model.codebook).argmin(1)
    assert torch.equal(near[:, 0], exact)
    assert torch.allclose(d[:, 0], (v - model.codebook[exact]).pow(2).sum(1))


def test_vectors_and_back_are_inverse():
    model = HyperpriorVQ(TINY)
    y = torch.randn(2, 6, 3, 5)
    assert torch.equal(model.unvectors(model.vectors(y)), y)
    assert model.lookup(model.quantize(y)).shape == y.shape


def test_bin_positions_cover_the_tables():
    pos = bin_positions(torch.tensor([0.0, 0.11, 1.0, 64.0, 1000.0]))
    assert float(pos[0]) == 0 and float(pos[1]) == pytest.approx(0, abs=1e-6)
    assert float(pos[-1]) == SCALES - 1 and float(pos[-2]) == pytest.approx(SCALES - 1, abs=1e-4)


def test_eval_rate_is_the_hard_indices_information_content():
    """Outside training the rate is exactly -log2 p(index | rounded bin) plus the side information's."""
    torch.manual_seed(0)
    model = HyperpriorVQ(TINY).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        _, rate = model(x, 1)
        y = model.gains(model.g_a(x - 0.5), 1)
        z = model.h_a(y.abs())
        position = bin_positions(model.h_s(torch.round(z))).round().long()
        k = model.quantize(y)
        table = torch.log_softmax(model.tables, 1)
        index_bits = -table[position, k].sum() / math.log(2)
        z_bits = -torch.log2(model.density.likelihood(torch.round(z), 1)).sum()
    assert float(rate) == pytest.approx(float(index_bits + z_bits), rel=1e-5)


def test_training_pass_gives_gradients_to_every_part():
    torch.manual_seed(0)
    model = HyperpriorVQ(TINY).train()
    with torch.no_grad():  # a random transform's latent is small: spread it over several codewords
        model.gains.gain.add_(3.0)
    x = torch.rand(2, 3, 64, 64)
    y, rate = model(x, 0)
    assert y.shape == x.shape and rate.shape == (2,)
    (rate.mean() + 100 * (y - x).pow(2).mean()).backward()
    for name in ("codebook", "tables", "g_a.0.weight", "g_s.0.weight", "h_s.4.weight", "gains.gain"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and float(grad.abs().sum()) > 0, name


def test_warm_start_from_a_hyperprior_vae():
    torch.manual_seed(0)
    vae = make_model(AEConfig(channels=8, latent=6, hyper=4, lambdas=(0.001,)))
    state = grow_levels(vae.state_dict(), (0.001,), TINY.lambdas)
    model = HyperpriorVQ(TINY)
    missing, unexpected = model.load_state_dict(from_hyperprior_vae(state, TINY), strict=False)
    assert set(missing) == {"codebook", "tables"} and not unexpected
    assert torch.equal(model.g_a[0].weight, vae.g_a[0].weight)
    expected = vae.h_s[4].weight.reshape(3, 2, 4, 3, 3).mean(1)
    assert torch.allclose(model.h_s[4].weight, expected)
