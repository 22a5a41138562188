"""Variable-rate vector quantization on a scale-hyperprior transform (the ``hvq`` model).

The transforms are bmshj2018-hyperprior's (Balle, Minnen, Singh, Hwang, Johnston, "Variational
image compression with a scale hyperprior", ICLR 2018; ``vqcodec.models.ae``): four stride-2
5x5 convolutions with GDN to a latent of ``latent`` channels at 1/16 of the image's rows and
columns, and back. The latent is cut into vectors of ``group`` consecutive channels, and every
vector is replaced by the nearest of ``codebook`` learned codewords (one codebook shared by
every group and every rate): the integer index tensor the codec writes.

Variable rate: one gain vector per rate (Cui et al., "Asymmetric gained deep image compression
with continuous rate adaptation", CVPR 2021) scales the latent before quantization, so a larger
gain spreads the latent over more codewords (VQ's analogue of a finer quantization step), and
an inverse gain scales the codewords back before synthesis. The codebook starts as a patch of
the hexagonal lattice A2 (the densest packing of the plane) with cells of unit area, where a
gain acts exactly as a scalar quantizer's step does, so the scalar model's gains carry over.

Entropy model: a hyper-analysis summarises the latent into side information z (coded under a
factorized density per rate, as the VAE baseline does); the hyper-synthesis predicts from the
rounded z one scale per vector, and each of ``SCALES`` log-spaced scale bins has a learned
distribution over the codebook: p(index | bin). The scales are computed by the baseline's exact
integer hyper-synthesis, so every machine picks the same tables.

Training (soft-to-hard VQ: Agustsson et al., "Soft-to-hard vector quantization for end-to-end
learning compressible representations", NeurIPS 2017): the synthesis sees the nearest codeword,
with straight-through gradients to the latent and the codeword itself; the rate is the hard
index's information content, with the gradient of its expectation under a soft assignment
softmax(-|y - c_k|^2 / temperature), which moves latents towards cheaper codewords; a commitment
term (van den Oord et al., "Neural discrete representation learning", NeurIPS 2017), charged as
bits, keeps latents within the codebook's reach. The scale bin is interpolated between its two
neighbours while training and rounded otherwise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vqcodec.models.ae import (
    SCALE_MIN,
    SCALES,
    FactorizedDensity,
    Gains,
    analysis,
    bits,
    down,
    full_precision,
    rate_proxy,
    round_half_even_ste,
    scale_table,
    synthesis,
    up,
)

LAMBDAS = (0.00045, 0.0009, 0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932)


@dataclass
class HyperVQConfig:
    """Architecture and rate-distortion trade-offs of the hyper-VQ model; stored in the weights'
    metadata. The loss at rate n is bpp + lambdas[n] * 255**2 * MSE."""

    channels: int = 128
    latent: int = 192
    hyper: int = 128
    group: int = 2
    codebook: int = 512
    temperature: float = 0.5
    neighbours: int = 8  # codewords of the soft assignment: the nearest ones
    commitment: float = 0.01  # bits charged per squared distance of a vector to its codeword while training
    lambdas: tuple[float, ...] = field(default=LAMBDAS)

    family: ClassVar[str] = "hvq"
    downsample: ClassVar[int] = 64  # pixels per row of the side information's grid

    def __post_init__(self) -> None:
        self.lambdas = tuple(self.lambdas)
        if self.latent % self.group:
            raise ValueError(f"latent channels ({self.latent}) must be a multiple of the group ({self.group})")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def levels(self) -> tuple[float, ...]:
        return self.lambdas

    @property
    def vectors(self) -> int:
        """Vectors (codebook indices) per latent position."""
        return self.latent // self.group


def lattice_codebook(dim: int, count: int) -> torch.Tensor:
    """The ``count`` points nearest the origin of a lattice with cells of unit volume: the
    hexagonal lattice A2 for ``dim`` = 2, the integer lattice otherwise; (count, dim), sorted by
    norm (ties by coordinates), so that a codebook's first codewords are its central ones."""
    radius = math.ceil((count ** (1 / dim)) / 2) + 2
    coords = torch.cartesian_prod(*[torch.arange(-radius, radius + 1, dtype=torch.float64)] * dim).reshape(-1, dim)
    if dim == 2:
        basis = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2]], dtype=torch.float64)
        points = coords @ basis / math.sqrt(math.sqrt(3) / 2)  # unit cell area
    else:
        points = coords
    norms = points.pow(2).sum(1)
    order = sorted(range(len(points)), key=lambda i: (round(float(norms[i]), 9), *points[i].tolist()))
    if len(order) < count:
        raise ValueError(f"no {count} lattice points within radius {radius}")
    return points[order[:count]].float()


def bin_positions(scale: torch.Tensor) -> torch.Tensor:
    """Predicted scales -> fractional positions among the log-spaced table scales, in [0, SCALES - 1]."""
    ratio = math.log(scale_table()[-1] / SCALE_MIN) / (SCALES - 1)
    return (torch.log(scale.clamp_min(SCALE_MIN) / SCALE_MIN) / ratio).clamp(0, SCALES - 1)


class HyperpriorVQ(nn.Module):
    """Transforms, gains, shared codebook, hyperprior and per-bin index distributions (see the module docstring)."""

    # Adam moves each parameter by about the learning rate per step: the densities, gains and
    # tables need far larger moves than the transforms within a CPU budget.
    lr_scales: ClassVar[dict[str, float]] = {"density.": 10.0, "gains.": 10.0, "tables": 10.0}

    def __init__(self, cfg: HyperVQConfig):
        super().__init__()
        self.cfg = cfg
        n, m, h = cfg.channels, cfg.latent, cfg.hyper
        self.g_a = analysis(n, m)
        self.g_s = synthesis(n, m)
        self.gains = Gains(cfg.lambdas, m)
        self.h_a = nn.Sequential(nn.Conv2d(m, h, 3, padding=1), nn.ReLU(), down(h, h), nn.ReLU(), down(h, h))
        self.h_s = nn.Sequential(
            up(h, h), nn.ReLU(), up(h, h), nn.ReLU(), nn.Conv2d(h, cfg.vectors, 3, padding=1), nn.ReLU()
        )
        self.density = FactorizedDensity(h, len(cfg.levels))
        self.codebook = nn.Parameter(lattice_codebook(cfg.group, cfg.codebook))
        # log-probabilities start as an isotropic Gaussian of each bin's scale over the codewords
        sigma = torch.tensor(scale_table())[:, None]
        self.tables = nn.Parameter(-self.codebook.detach().pow(2).sum(1)[None] / (2 * sigma**2))

    def vectors(self, y: torch.Tensor) -> torch.Tensor:
        """(B, latent, H, W) -> (B, vectors, H, W, group)."""
        b, _, hh, ww = y.shape
        return y.reshape(b, self.cfg.vectors, self.cfg.group, hh, ww).permute(0, 1, 3, 4, 2)

    def unvectors(self, v: torch.Tensor) -> torch.Tensor:
        """(B, vectors, H, W, group) -> (B, latent, H, W)."""
        b, g, hh, ww, d = v.shape
        return v.permute(0, 1, 4, 2, 3).reshape(b, g * d, hh, ww)

    def distances(self, v: torch.Tensor) -> torch.Tensor:
        """Squared distance of every vector (..., group) to every codeword: (..., codebook)."""
        c = self.codebook
        return (v.pow(2).sum(-1, keepdim=True) - 2 * v @ c.t() + c.pow(2).sum(1)).clamp_min(0)

    def quantize(self, y: torch.Tensor) -> torch.Tensor:
        """Gained latent (B, latent, H, W) -> nearest codeword's index (B, vectors, H, W)."""
        return self.distances(self.vectors(y)).argmin(-1)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices (B, vectors, H, W) -> codewords as a latent (B, latent, H, W)."""
        return self.unvectors(self.codebook[indices])

    def nearest(self, v: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The nearest codeword of every vector (..., group) and the ``count`` - 1 codewords
        nearest to it (about the vector's next nearest): their indices, nearest first, and squared
        distances (differentiable in the vectors and codewords), (..., count)."""
        with torch.no_grad():
            c = self.codebook
            flat = v.reshape(-1, c.shape[1])
            k = torch.addmm(c.pow(2).sum(1), flat, c.t(), alpha=-2).argmin(-1).reshape(v.shape[:-1])
            if count > 1:  # the nearest codeword's neighbourhood in the codebook holds the next nearest
                around = (c.pow(2).sum(1, keepdim=True) - 2 * c @ c.t() + c.pow(2).sum(1)).topk(count, largest=False)
                k = around.indices[k]
            else:
                k = k[..., None]
        return k, (v[..., None, :] - self.codebook[k]).pow(2).sum(-1)

    def log_probs(self, position: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Natural log-probabilities of ``indices`` (..., n) at fractional bin positions (...)."""
        table = F.log_softmax(self.tables, dim=1)
        lo = position.floor().long().clamp(max=SCALES - 2)
        frac = (position - lo)[..., None]
        lo = lo[..., None]
        return (1 - frac) * table[lo, indices] + frac * table[lo + 1, indices]

    def forward(self, x: torch.Tensor, level: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass on (B, 3, H, W) in [0, 1] -> (reconstruction, bits of indices and z of
        each image; while training, with the commitment term)."""
        y = self.gains(self.g_a(x - 0.5), level).float()
        with full_precision(x):
            z = self.h_a(y.abs())
            scale = self.h_s(round_half_even_ste(z))
            position = bin_positions(scale)
            if not self.training:
                position = position.round()
            v = self.vectors(y)
            near, d = self.nearest(v, self.cfg.neighbours if self.training else 1)
            log_p = self.log_probs(position, near)
            info = -log_p[..., 0]
            if self.training:
                soft = -(torch.softmax(-d / self.cfg.temperature, -1) * log_p).sum(-1)
                info = info + soft - soft.detach()
            rate = info.sum((1, 2, 3)) / math.log(2)
            if self.training:  # keeps latents within the codebook's reach (the straight-through pass ignores it)
                rate = rate + self.cfg.commitment * (v - self.codebook[near[..., 0]].detach()).pow(2).sum((1, 2, 3, 4))
            rate = rate + bits(self.density.likelihood(rate_proxy(z, self.training), level))
            v_hat = self.codebook[near[..., 0]] + (v - v.detach())  # straight-through to the latent and the codeword
        y_hat = self.gains(self.unvectors(v_hat), level, inverse=True)
        return self.g_s(y_hat).float() + 0.5, rate


def from_hyperprior_vae(state: dict[str, torch.Tensor], cfg: HyperVQConfig) -> dict[str, torch.Tensor]:
    """A hyper-VQ state dict's transforms, gains, hyper-analysis and side-information densities
    from a trained scale-hyperprior VAE of the same shape and lambdas: the last hyper-synthesis
    layer, one scale per channel there, predicts one per vector here from the mean of its
    channels' weights. The codebook and tables keep their initialisation."""
    out = {}
    for key, value in state.items():
        if key.startswith("h_s.4."):
            value = value.reshape(cfg.vectors, cfg.group, *value.shape[1:]).mean(1)
        out[key] = value.float() if value.is_floating_point() else value
    return out
