import pytest
import torch

from vqcodec.models.vqvae import VQVAE
from vqcodec.quantization import VectorQuantizer, grouped_order, kmeans, nearest_codebook, nearest_codes, usage_stats

from .conftest import TINY_VQVAE


def brute_force(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    return torch.cdist(z.double(), codebook.double()).argmin(1)


def test_nearest_codebook_matches_brute_force_and_chunking():
    g = torch.Generator().manual_seed(0)
    z, codebook = torch.randn(1000, 8, generator=g), torch.randn(64, 8, generator=g)
    expected = brute_force(z, codebook)
    assert torch.equal(nearest_codebook(z, codebook), expected)
    assert torch.equal(nearest_codebook(z, codebook, chunk=7), expected)


def test_the_nearest_codes_come_nearest_first():
    g = torch.Generator().manual_seed(1)
    z, codebook = torch.randn(300, 8, generator=g), torch.randn(64, 8, generator=g)
    expected = torch.cdist(z.double(), codebook.double()).argsort(1)[:, :5]
    assert torch.equal(nearest_codes(z, codebook, 5, chunk=11), expected)


def test_straight_through_gradient_reaches_encoder():
    torch.manual_seed(0)
    model = VQVAE(TINY_VQVAE)
    x = torch.rand(2, 3, 16, 16)
    y, _, commitment = model(x)
    (torch.nn.functional.mse_loss(y, x) + commitment).backward()
    first = model.encoder[0].weight.grad
    assert first is not None and first.abs().sum() > 0


def test_ema_update_moves_codes_towards_data_and_restarts_dead_codes():
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 2, decay=0.5, dead_threshold=0.5)
    data = torch.tensor([[5.0, 5.0], [-5.0, -5.0]]).repeat(64, 1)
    z = data.t().reshape(1, 2, 8, 16)
    for _ in range(20):
        vq(z)
    used, _ = usage_stats(vq.indices(z), 8)
    # every code sits on one of the two clusters: none is stranded far from the data
    dist = torch.cdist(vq.codebook, torch.tensor([[5.0, 5.0], [-5.0, -5.0]])).min(1).values
    assert dist.max() < 0.5
    assert used == 2 / 8


def test_entropy_constrained_assignment_trades_distance_for_code_length():
    vq = VectorQuantizer(2, 1, rate_weight=0.1).eval()
    vq.codebook.copy_(torch.tensor([[0.0], [1.0]]))
    vq.cluster_size.copy_(torch.tensor([15.0, 1.0]))  # code 0: 0.09 bits, code 1: 4 bits
    z = torch.tensor([0.4, 0.6, 0.9, 1.0]).view(1, 1, 1, 4)
    # ||z - e||^2 + 0.1 * bits: 0.6 is nearer code 1 but costs less at code 0; 0.9 is near enough to pay
    assert vq.indices(z).flatten().tolist() == [0, 0, 1, 1]
    vq.rate_weight = 0.0
    assert vq.code_costs() is None and vq.indices(z).flatten().tolist() == [0, 1, 1, 1]


def test_entropy_constrained_training_lowers_the_entropy_of_the_codes():
    """The same data and codebook: ECVQ's own usage counts make the codes it favours cheaper still."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 2, 32, 64, generator=g)
    entropies = []
    for weight in (0.0, 0.3):
        torch.manual_seed(0)
        vq = VectorQuantizer(16, 2, rate_weight=weight)
        for _ in range(30):
            vq(z)
        p = torch.bincount(vq.indices(z).flatten(), minlength=16).double() / z[0, 0].numel()
        entropies.append(float(-(p[p > 0] * p[p > 0].log2()).sum()))
    assert entropies[1] < entropies[0] - 0.3


def test_kmeans_finds_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = (centers[:, None] + 0.1 * torch.randn(3, 50, 2, generator=g)).reshape(-1, 2)
    found = kmeans(x, 3, iters=20)
    assert torch.cdist(centers, found).min(1).values.max() < 0.2


def test_usage_stats():
    used, ppl = usage_stats(torch.tensor([0, 1, 2, 3]), 8)
    assert used == 0.5 and ppl == pytest.approx(4.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_quantization_gives_cpu_indices():
    g = torch.Generator().manual_seed(0)
    z, codebook = torch.randn(5000, 32, generator=g), torch.randn(512, 32, generator=g)
    cpu = nearest_codebook(z, codebook)
    gpu = nearest_codebook(z.cuda(), codebook.cuda()).cpu()
    assert (cpu == gpu).float().mean() > 0.999  # only exact distance ties may differ


def test_grouped_order_puts_each_cluster_of_codes_in_one_group():
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 6, generator=g) * 10
    codebook = (centers.repeat_interleave(8, 0) + 0.1 * torch.randn(32, 6, generator=g))[
        torch.randperm(32, generator=g)
    ]
    order = grouped_order(codebook, 4)
    assert torch.equal(order.sort().values, torch.arange(32))
    cluster = torch.cdist(codebook, centers).argmin(1)
    assert all(len(set(cluster[run].tolist())) == 1 for run in order.view(4, 8))


@pytest.mark.parametrize("groups", [3, 64])
def test_grouped_order_needs_a_power_of_two_that_divides_the_codebook(groups):
    with pytest.raises(ValueError, match="power of two"):
        grouped_order(torch.randn(32, 4), groups)
