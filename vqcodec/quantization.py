"""Vector quantization: nearest-codebook search and an EMA-updated codebook.

The codebook follows van den Oord et al., "Neural Discrete Representation Learning"
(NeurIPS 2017): the encoder output z is replaced by its nearest codebook vector e_k, the
gradient skips the argmin (straight-through estimator), and a commitment term
beta * ||z - sg(e_k)||^2 keeps the encoder close to its codes. The codebook itself is
updated by exponential moving averages of the vectors assigned to each code (the paper's
appendix A.1), initialised by k-means on encoder outputs, and codes that stop being used
are restarted on random encoder outputs: a dead code is rate the prior still pays for.

With ``rate_weight`` > 0 the quantizer is entropy-constrained (ECVQ: Chou, Lookabaugh, Gray,
"Entropy-constrained vector quantization", IEEE TASSP 1989; inside a learned codec's
training: Feng et al., "NVTC", CVPR 2023): z goes to the code minimising
||z - e_k||^2 + rate_weight * L_k, where L_k = -log2 p_k is the code's length under the
codebook's own usage (its EMA counts). Trained this way, the encoder learns to prefer cheap
codes, so the indices carry fewer bits for a small loss of fidelity; the rule stays an
encoder-side choice, so decoders and files do not depend on it.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

CHUNK_DISTANCES = 1 << 20  # distances per chunk: 4 MB of float32, which stays in a CPU's cache


def nearest_codebook(
    z: torch.Tensor, codebook: torch.Tensor, bias: torch.Tensor | None = None, chunk: int | None = None
) -> torch.Tensor:
    """Index of the nearest codebook row for each row of ``z`` (N, D) -> (N,) int64, each
    code's squared distance plus ``bias`` (K,) when given.

    Ranks codes by ||e||^2 - 2 z.e (the squared distance less ||z||^2, the same for every code),
    one fused matrix product per chunk of ``chunk`` rows, on whatever device the tensors live
    on. The default chunk holds about 2**20 distances, which stay in a CPU's cache (the
    timings: docs/speed.md).
    """
    return nearest_codes(z, codebook, 1, bias, chunk)[:, 0]


def nearest_codes(
    z: torch.Tensor, codebook: torch.Tensor, count: int, bias: torch.Tensor | None = None, chunk: int | None = None
) -> torch.Tensor:
    """The ``count`` nearest codebook rows of each row of ``z`` (N, D), nearest first -> (N, count)."""
    codebook = codebook.to(z.dtype)
    e_sq = (codebook * codebook).sum(1)
    if bias is not None:
        e_sq = e_sq + bias.to(z.dtype)
    out = torch.empty(z.shape[0], count, dtype=torch.long, device=z.device)
    chunk = chunk or max(64, CHUNK_DISTANCES // len(codebook))
    for start in range(0, z.shape[0], chunk):
        dist = torch.addmm(e_sq, z[start : start + chunk], codebook.t(), alpha=-2.0)
        out[start : start + chunk] = (
            dist.argmin(1, keepdim=True) if count == 1 else dist.topk(count, 1, largest=False)[1]
        )
    return out


def kmeans(x: torch.Tensor, k: int, iters: int = 10, seed: int = 0) -> torch.Tensor:
    """Lloyd k-means on rows of ``x`` with k-means++ seeding; empty clusters keep their seed."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = x.float()
    centers = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
    centers[0] = x[torch.randint(x.shape[0], (1,), generator=g)]
    d2 = ((x - centers[0]) ** 2).sum(1)
    for n in range(1, k):
        weights = d2.cpu().double() + 1e-12
        centers[n] = x[torch.multinomial(weights, 1, generator=g).to(x.device)]
        d2 = torch.minimum(d2, ((x - centers[n]) ** 2).sum(1))
    for _ in range(iters):
        assign = nearest_codebook(x, centers)
        sums = torch.zeros_like(centers).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        filled = counts > 0
        centers[filled] = sums[filled] / counts[filled, None]
    return centers


def grouped_order(codebook: torch.Tensor, groups: int) -> torch.Tensor:
    """A permutation of the codebook's rows that puts similar codes together in ``groups`` runs
    of equal size: a balanced k-d split, halving every run at the median of its principal
    direction until there are ``groups`` runs (a power of two that divides the codebook size).

    A prior with groups (``PriorConfig.groups``) codes an index as its run, then its place in
    the run: with similar codes in a run, the first symbol says roughly what the latent looks
    like and the second refines it, which a small network predicts better than arbitrary sets.
    """
    if groups & (groups - 1) or len(codebook) % groups:
        raise ValueError(f"groups ({groups}) must be a power of two that divides the codebook size ({len(codebook)})")
    runs = [torch.arange(len(codebook))]
    while len(runs) < groups:
        halves = []
        for run in runs:
            x = codebook[run].double()
            x = x - x.mean(0)
            direction = torch.linalg.svd(x, full_matrices=False).Vh[0]
            ranked = run[torch.argsort(x @ direction, stable=True)]
            halves += [ranked[: len(run) // 2], ranked[len(run) // 2 :]]
        runs = halves
    return torch.cat(runs)


class VectorQuantizer(nn.Module):
    """EMA codebook of ``size`` vectors of dimension ``dim`` with dead-code restart."""

    def __init__(
        self,
        size: int,
        dim: int,
        beta: float = 0.25,
        decay: float = 0.99,
        dead_threshold: float = 0.03,
        rate_weight: float = 0.0,
    ):
        super().__init__()
        self.size, self.dim, self.beta, self.decay, self.dead_threshold = size, dim, beta, decay, dead_threshold
        self.rate_weight = rate_weight
        self.register_buffer("codebook", torch.randn(size, dim) * 0.1)
        self.register_buffer("cluster_size", torch.ones(size))
        self.register_buffer("code_sum", self.codebook.clone())
        self.register_buffer("initialized", torch.tensor(False))

    def code_costs(self) -> torch.Tensor | None:
        """rate_weight * each code's length in bits under the codebook's usage counts (None
        without a rate weight: plain nearest-code search)."""
        if not self.rate_weight:
            return None
        counts = self.cluster_size.float() + 1e-5
        return self.rate_weight * -torch.log2(counts / counts.sum())

    def assign(self, flat: torch.Tensor) -> torch.Tensor:
        """Code of each row of ``flat`` (N, D): nearest, or cheapest under ECVQ."""
        return nearest_codebook(flat, self.codebook, self.code_costs())

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """Encoder output (B, D, H, W) -> index grid (B, H, W)."""
        b, d, h, w = z.shape
        return self.assign(z.permute(0, 2, 3, 1).reshape(-1, d)).view(b, h, w)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """Index grid (B, H, W) -> codebook vectors (B, D, H, W), in channels-last memory layout."""
        return F.embedding(idx, self.codebook).permute(0, 3, 1, 2)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantize with a straight-through gradient.

        Returns (z_q, indices, commitment_loss); in training mode the codebook is updated.
        Always in float32, also inside a mixed-precision region: nearest codes need exact distances.
        """
        with torch.autocast(z.device.type, enabled=False):
            z = z.float()
            flat = z.permute(0, 2, 3, 1).reshape(-1, self.dim)
            if self.training:
                self._update(flat.detach())
            idx = self.assign(flat)
            zq = F.embedding(idx, self.codebook).view(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
            commitment = self.beta * F.mse_loss(z, zq.detach())
            zq = z + (zq - z).detach()
        return zq, idx.view(z.shape[0], z.shape[2], z.shape[3]), commitment

    @torch.no_grad()
    def _update(self, flat: torch.Tensor) -> None:
        if not bool(self.initialized):
            self.codebook.copy_(kmeans(flat, self.size))
            self.code_sum.copy_(self.codebook)
            self.cluster_size.fill_(1.0)
            self.initialized.fill_(True)
        idx = self.assign(flat)
        counts = torch.bincount(idx, minlength=self.size).to(flat.dtype)
        sums = torch.zeros_like(self.codebook).index_add_(0, idx, flat)
        if dist.is_available() and dist.is_initialized():  # data-parallel training: statistics of all ranks
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.code_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + 1e-5) / (n + self.size * 1e-5) * n
        self.codebook.copy_(self.code_sum / smoothed[:, None])
        dead = self.cluster_size < self.dead_threshold
        if dead.any():
            picks = flat[torch.randint(flat.shape[0], (int(dead.sum()),), device=flat.device)]
            self.codebook[dead] = picks
            self.code_sum[dead] = picks
            self.cluster_size[dead] = 1.0


def usage_stats(idx: torch.Tensor, size: int) -> tuple[float, float]:
    """(fraction of codes used, perplexity) of a batch of indices."""
    counts = torch.bincount(idx.flatten(), minlength=size).double()
    p = counts / counts.sum()
    nz = p[p > 0]
    return float((counts > 0).double().mean()), float(torch.exp(-(nz * nz.log()).sum()))
