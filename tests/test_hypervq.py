"""The hyper-VQ model: the A2 lattice and its codebook, escapes, rate terms and the warm start from a VAE."""

import dataclasses
import math

import pytest
import torch

from vqcodec.models.ae import AEConfig, grow_levels, make_model
from vqcodec.models.hypervq import (
    BINS,
    HyperpriorVQ,
    HyperVQConfig,
    bin_positions,
    coordinates_to_vectors,
    corners,
    escape_bits,
    from_hyperprior_vae,
    lattice_points,
    nearest_point,
)

TINY = HyperVQConfig(channels=8, latent=6, hyper=4, points=61, lambdas=(0.001, 0.01))


def test_lattice_has_unit_cells_six_neighbours_and_a_norm_sorted_codebook():
    points = coordinates_to_vectors(lattice_points(61)).double()
    assert torch.equal(points[0], torch.zeros(2, dtype=torch.float64))
    d = torch.cdist(points, points) + torch.eye(len(points)) * 1e9
    spacing = float(d.min())
    assert math.isclose(math.sqrt(3) / 2 * spacing**2, 1.0, rel_tol=1e-5)  # a hexagon's area
    assert int((d[0] - spacing).abs().lt(1e-5).sum()) == 6
    norms = points.norm(dim=1)
    assert bool((norms[1:] >= norms[:-1] - 1e-5).all())


def test_nearest_point_is_the_nearest_of_the_whole_lattice():
    torch.manual_seed(0)
    v = torch.randn(5000, 2) * 4
    candidates = coordinates_to_vectors(lattice_points(2000))
    brute = (v - candidates[torch.cdist(v, candidates).argmin(1)]).norm(dim=1)
    ours = (v - coordinates_to_vectors(nearest_point(v))).norm(dim=1)
    assert torch.allclose(ours, brute, atol=1e-5)
    # far from the origin too: no codebook bounds the lattice
    far = torch.tensor([[1000.3, -2000.7]])
    assert float((far - coordinates_to_vectors(nearest_point(far))).norm()) <= 0.63  # the covering radius


def test_codebook_indices_and_escapes():
    model = HyperpriorVQ(TINY)
    coords = lattice_points(TINY.points)
    assert torch.equal(model.indices(coords), torch.arange(TINY.points))
    outside = torch.tensor([[50, 0], [0, -9], [3, 3]])
    assert model.indices(outside).tolist()[:2] == [TINY.points, TINY.points]
    assert escape_bits(torch.tensor([[0, 0], [1, -1], [3, 0]])).tolist() == [4.0, 8.0, 8.0]


def test_latent_must_split_into_pairs():
    with pytest.raises(ValueError, match="multiple of the group"):
        HyperVQConfig(latent=7)


def test_vectors_and_back_are_inverse():
    model = HyperpriorVQ(TINY)
    y = torch.randn(2, 6, 3, 5)
    assert torch.equal(model.unvectors(model.vectors(y)), y)
    assert model.lookup(model.quantize(y)).shape == y.shape


def test_bin_positions_cover_the_tables():
    pos = bin_positions(torch.tensor([0.0, 0.11, 1.0, 64.0, 1000.0]))
    assert float(pos[0]) == 0 and float(pos[1]) == pytest.approx(0, abs=1e-6)
    assert float(pos[-1]) == BINS - 1 and float(pos[-2]) == pytest.approx(BINS - 1, abs=1e-4)


def test_corners_weigh_the_four_surrounding_bins():
    bins, weights = corners(torch.tensor([[0.0, 0.0], [2.25, 3.5], [BINS - 1.0, BINS - 1.0]]))
    assert bins[0].tolist()[0] == 0 and weights[0].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert bins[1].tolist() == [2 * BINS + 3, 2 * BINS + 4, 3 * BINS + 3, 3 * BINS + 4]
    assert weights[1].tolist() == pytest.approx([0.375, 0.375, 0.125, 0.125])
    assert weights[2].tolist() == [0.0, 0.0, 0.0, 1.0] and int(bins[2, 3]) == BINS * BINS - 1


def test_initial_tables_are_distributions_favouring_the_centre_at_small_scales():
    p = HyperpriorVQ(TINY).log_tables().exp()
    assert p.shape == (BINS * BINS, TINY.points + 1)
    assert torch.allclose(p.sum(1), torch.ones(BINS * BINS), atol=1e-4)
    assert float(p[0, 0]) > 0.99 and float(p[-1, 0]) < 0.01 and float(p[-1, -1]) > 0.5


def test_tables_follow_the_indices_they_see():
    torch.manual_seed(0)
    model = HyperpriorVQ(TINY)
    before = model.log_tables()[0].exp()
    position = torch.zeros(200_000, 2)  # every vector in the first bin, all of them the point index 3
    coords = lattice_points(TINY.points)[3].expand(200_000, 2)
    model.count(position, coords)
    after = model.log_tables()[0].exp()
    assert float(before[3]) < 0.01 and float(after[3]) > 0.95  # remembers about TABLE_MEMORY vectors
    assert torch.equal(model.log_tables()[1], HyperpriorVQ(TINY).log_tables()[1])  # an unseen bin stays


def test_eval_rate_is_the_hard_indices_information_content():
    """Outside training the rate is exactly -log2 p(index | rounded bin), plus escapes' coordinates and z's bits."""
    torch.manual_seed(0)
    model = HyperpriorVQ(TINY).eval()
    with torch.no_grad():
        model.gains.gain.add_(4.0)  # some vectors escape the 61-point codebook
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        _, rate = model(x, 1)
        y = model.gains(model.g_a(x - 0.5), 1)
        z = model.h_a(y.abs())
        position = model.vectors(bin_positions(model.h_s(torch.round(z)))).round().long()
        coords = model.quantize(y)
        idx = model.indices(coords)
        escaped = idx == TINY.points
        assert 0 < int(escaped.sum()) < idx.numel()
        table = model.log_tables()
        index_bits = -table[position[..., 0] * BINS + position[..., 1], idx].sum() / math.log(2)
        index_bits = index_bits + escape_bits(coords[escaped]).sum()
        z_bits = -torch.log2(model.density.likelihood(torch.round(z), 1)).sum()
    assert float(rate) == pytest.approx(float(index_bits + z_bits), rel=1e-5)


def test_training_pass_gives_gradients_to_every_part():
    torch.manual_seed(0)
    model = HyperpriorVQ(TINY).train()
    with torch.no_grad():  # a random transform's latent is small: spread it over several points
        model.gains.gain.add_(3.0)
    x = torch.rand(2, 3, 64, 64)
    y, rate = model(x, 0)
    assert y.shape == x.shape and rate.shape == (2,)
    (rate.mean() + 100 * (y - x).pow(2).mean()).backward()
    counts = model.counts.clone()
    for name in ("g_a.0.weight", "g_s.0.weight", "h_s.4.weight", "gains.gain", "density.biases.0"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and float(grad.abs().sum()) > 0, name
    model(x, 0)
    assert not torch.equal(model.counts, counts)  # a training pass moves the tables


def test_warm_start_from_a_hyperprior_vae():
    torch.manual_seed(0)
    vae = make_model(AEConfig(channels=8, latent=6, hyper=4, lambdas=(0.001,)))
    state = grow_levels(vae.state_dict(), (0.001,), TINY.lambdas)
    model = HyperpriorVQ(TINY)
    missing, unexpected = model.load_state_dict(from_hyperprior_vae(state), strict=False)
    assert set(missing) == {"counts"} and not unexpected
    assert torch.equal(model.g_a[0].weight, vae.g_a[0].weight)
    assert torch.equal(model.h_s[4].weight, vae.h_s[4].weight)


def test_training_rate_is_the_vaes_gaussian_proxy():
    """While training, the rate is each channel's Gaussian mass around the noisy latent (the
    VAE's differentiable proxy) plus z's, not the tables' bits."""
    from vqcodec.models.ae import bits, gaussian_likelihood

    torch.manual_seed(0)
    model = HyperpriorVQ(TINY).train()
    x = torch.rand(1, 3, 64, 64)
    torch.manual_seed(1)
    _, rate = model(x, 1)
    with torch.no_grad():
        y = model.gains(model.g_a(x - 0.5), 1)
        z = model.h_a(y.abs())
        scale = model.h_s(torch.round(z))
        torch.manual_seed(1)
        noisy_y = y + torch.rand_like(y) - 0.5
        noisy_z = z + torch.rand_like(z) - 0.5
        expected = bits(gaussian_likelihood(noisy_y, scale)) + bits(model.density.likelihood(noisy_z, 1))
    assert float(rate) == pytest.approx(float(expected), rel=1e-5)


def test_a_warm_started_run_counts_the_vaes_budget_and_resumes_from_its_pack(folders, tmp_path):
    """The hvq run starts from a VAE run (its budget counted), fits its tables before the first
    step, and a pack of it (weights and tables in 16 bits) resumes where it stopped."""
    from vqcodec.runs import CHECKPOINT, pack_run, unpack_run
    from vqcodec.train import train_baseline

    from .conftest import train_config as small_config

    def train_config(folders, out, steps):  # crops of 64: one position of the side information
        return dataclasses.replace(small_config(folders, out, steps), crop=64)

    vae_cfg = AEConfig(channels=8, latent=6, hyper=4, lambdas=(0.001, 0.01))
    train_baseline(vae_cfg, train_config(folders, tmp_path / "vae", 2))
    vae_hours = torch.load(tmp_path / "vae" / CHECKPOINT, weights_only=True)["budget"]["core_seconds"]
    cfg = HyperVQConfig(channels=8, latent=6, hyper=4, points=61, lambdas=(0.001, 0.01))
    model = train_baseline(cfg, train_config(folders, tmp_path / "hvq", 2), init=str(tmp_path / "vae"))
    first = torch.load(tmp_path / "hvq" / CHECKPOINT, weights_only=True)
    assert first["budget"]["core_seconds"] > vae_hours and first["step"] == 2
    assert not torch.equal(model.counts, HyperpriorVQ(cfg).counts)  # calibrated and counted
    pack_run(tmp_path / "hvq", tmp_path / "hvq.pt")
    unpack_run(tmp_path / "hvq.pt", tmp_path / "again")
    resumed = train_baseline(cfg, train_config(folders, tmp_path / "again", 4))
    assert torch.load(tmp_path / "again" / CHECKPOINT, weights_only=True)["step"] == 4
    assert resumed.counts.shape == model.counts.shape
