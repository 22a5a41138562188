"""Variable-rate vector quantization on a scale-hyperprior transform (the ``hvq`` model).

The transforms are bmshj2018-hyperprior's (Balle, Minnen, Singh, Hwang, Johnston, "Variational
image compression with a scale hyperprior", ICLR 2018; ``vqcodec.models.ae``): four stride-2
5x5 convolutions with GDN to a latent of ``latent`` channels at 1/16 of the image's rows and
columns, and back. The latent is cut into pairs of consecutive channels, and every pair is
replaced by the nearest point of the hexagonal lattice A2 (the densest packing of the plane:
0.17 dB less distortion than rounding each channel at the same rate), scaled to cells of unit
area. The lattice is unbounded, so no latent is clipped; its ``points`` points nearest the
origin, sorted by norm, are the codebook, and a point beyond them is an escape index followed by
its two lattice coordinates (Lei, Hassani, Bidokhti, "Approaching rate-distortion limits in
neural compression with lattice transform coding", 2024). The indices are what the codec writes.

Variable rate: one gain vector per rate (Cui et al., "Asymmetric gained deep image compression
with continuous rate adaptation", CVPR 2021) scales the latent before quantization, so a larger
gain spreads the latent over more lattice points (VQ's analogue of a finer quantization step),
and an inverse gain scales the points back before synthesis. With cells of unit area a gain acts
as a scalar quantizer's step does, so the scalar model's gains carry over.

A learned codebook of finite size was measured first (1,024 codewords started as this lattice's
patch, commitment loss): its straight-through gradient through the clipped outer codewords made
the shared analysis grow its latent (the 99th percentile of the vectors' norms 3.8x in 1,000
steps) and every rate's bits with it (docs/history.md).

Entropy model: a hyper-analysis summarises the latent into side information z (coded under a
factorized density per rate, as the VAE baseline does); the hyper-synthesis predicts from the
rounded z a scale for every latent channel, exactly as the VAE's does (so the VAE's hyperprior
carries over whole). A vector's two scales pick one of ``BINS`` x ``BINS`` log-spaced scale
bins, and each bin has a distribution over the codebook and the escape: p(index | bin), which
models the two channels of a pair jointly. The tables are counts, kept as a moving average of
the indices each bin saw in training (as a VQ-VAE's codebook is kept; each table is a
distribution remembering about its last TABLE_MEMORY vectors), not learned by gradient:
at a gradient's pace they lagged their bins' statistics by a factor of 2 in bits after 1,000
steps. The scales are computed by the baseline's exact integer hyper-synthesis, so every
machine picks the same tables.

Training: the synthesis sees the nearest lattice point, with a straight-through gradient to the
latent; the rate term is the VAE's, each channel's Gaussian of the predicted scale over a unit
interval around the latent plus uniform noise (Balle et al. 2018), a differentiable proxy that
answers the transform's every move, while the tables count the lattice indices that the files
will code. Taking the rate from the tables alone was measured first, with the gradient of a
soft-to-hard assignment over a point's neighbours (Agustsson et al., "Soft-to-hard vector
quantization for end-to-end learning compressible representations", NeurIPS 2017): it gives
the transform no pull against spreading its latent, so the bits of every rate grew in training
(level 0: 0.125 -> 0.504 bpp in 2,000 steps, for 0.64 dB) (docs/history.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import ClassVar

import torch
from torch import nn

from vqcodec.models.ae import (
    SCALE_MAX,
    SCALE_MIN,
    FactorizedDensity,
    Gains,
    bits,
    build_analysis,
    build_synthesis,
    down,
    full_precision,
    gaussian_likelihood,
    rate_proxy,
    round_half_even_ste,
    up,
)

LAMBDAS = (0.00045, 0.0009, 0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932)
SPACING = math.sqrt(2 / math.sqrt(3))  # A2's nearest-neighbour distance for cells of unit area
BASIS = torch.tensor([[SPACING, 0.0], [SPACING / 2, SPACING * math.sqrt(3) / 2]], dtype=torch.float64)
BINS = 16  # log-spaced scales per channel of a pair, SCALE_MIN to SCALE_MAX
TABLE_MEMORY = 50_000  # vectors a table's moving average remembers (a bin moves by what it sees)
PSEUDO_COUNT = 1e-7  # probability added to every entry of a table: no index is impossible


@dataclass
class HyperVQConfig:
    """Architecture and rate-distortion trade-offs of the hyper-VQ model; stored in the weights'
    metadata. The loss at rate n is bpp + lambdas[n] * 255**2 * MSE."""

    channels: int = 128
    latent: int = 192
    hyper: int = 128
    points: int = 4096  # lattice points with an entry of their own in the index tables (the rest escape)
    lambdas: tuple[float, ...] = field(default=LAMBDAS)

    family: ClassVar[str] = "hvq"
    downsample: ClassVar[int] = 64  # pixels per row of the side information's grid
    group: ClassVar[int] = 2  # latent channels per vector (a point of A2)

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


def lattice_points(count: int) -> torch.Tensor:
    """Lattice coordinates (i, j) of A2's ``count`` points nearest the origin, (count, 2) int64,
    sorted by norm (ties by coordinates): the codebook, central points first."""
    radius = math.ceil(math.sqrt(count / math.pi) / SPACING * 1.2) + 2
    axis = torch.arange(-radius, radius + 1)
    coords = torch.cartesian_prod(axis, axis)
    norms = (coords.double() @ BASIS).pow(2).sum(1)
    order = sorted(range(len(coords)), key=lambda n: (round(float(norms[n]), 9), *coords[n].tolist()))
    return coords[order[:count]]


def nearest_point(v: torch.Tensor) -> torch.Tensor:
    """Lattice coordinates (..., 2) int64 of the A2 point nearest each vector (..., 2): the
    nearer of the two rectangular cosets' roundings (Conway and Sloane, "Fast quantizing and
    decoding algorithms for lattice quantizers and codes", IEEE Trans. IT 1982)."""
    step = v.new_tensor([SPACING, SPACING * math.sqrt(3)])
    even = torch.round(v / step)
    odd = torch.round(v / step - 0.5)
    far = (v - even * step).pow(2).sum(-1) > (v - (odd + 0.5) * step).pow(2).sum(-1)
    a, b = torch.where(far[..., None], odd, even).long().unbind(-1)
    return torch.stack([a - b, 2 * b + far.long()], -1)


def coordinates_to_vectors(coords: torch.Tensor) -> torch.Tensor:
    """Lattice coordinates (..., 2) -> the points (..., 2), float32."""
    return coords.float() @ BASIS.float()


def escape_bits(coords: torch.Tensor) -> torch.Tensor:
    """Bits of an escaped point's two coordinates after its escape index: an Elias-gamma code of
    each coordinate's magnitude plus one, and its sign."""
    magnitude = coords.abs() + 1
    return (2 * torch.floor(torch.log2(magnitude.float())) + 2).sum(-1)


def bin_scales() -> torch.Tensor:
    """The BINS scales of the table grid's axes (float64), geometric from SCALE_MIN to SCALE_MAX."""
    return SCALE_MIN * (SCALE_MAX / SCALE_MIN) ** (torch.arange(BINS, dtype=torch.float64) / (BINS - 1))


def bin_positions(scale: torch.Tensor) -> torch.Tensor:
    """Predicted scales -> fractional positions on a table axis, in [0, BINS - 1]."""
    ratio = math.log(SCALE_MAX / SCALE_MIN) / (BINS - 1)
    return (torch.log(scale.clamp_min(SCALE_MIN) / SCALE_MIN) / ratio).clamp(0, BINS - 1)


def corners(position: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fractional 2-D bin positions (..., 2) -> the four surrounding bins' numbers (..., 4) and
    their bilinear weights (..., 4); at whole positions one weight is 1."""
    lo = position.floor().long().clamp(max=BINS - 2)
    frac = position - lo
    (a, b), (fa, fb) = lo.unbind(-1), frac.unbind(-1)
    bins = torch.stack([a * BINS + b, a * BINS + b + 1, (a + 1) * BINS + b, (a + 1) * BINS + b + 1], -1)
    weights = torch.stack([(1 - fa) * (1 - fb), (1 - fa) * fb, fa * (1 - fb), fa * fb], -1)
    return bins, weights


def initial_counts(coords: torch.Tensor) -> torch.Tensor:
    """Each bin's distribution before training (BINS**2, points + 1): a Gaussian with the bin's
    two scales over the lattice points (cells of unit area, so mass ~ density), the escape the
    Gaussian's mass beyond the codebook's radius."""
    sigma = bin_scales()
    s1, s2 = sigma.repeat_interleave(BINS)[:, None], sigma.repeat(BINS)[:, None]
    xy = coordinates_to_vectors(coords).double()
    log_density = -(xy[:, 0] ** 2) / (2 * s1**2) - xy[:, 1] ** 2 / (2 * s2**2) - torch.log(2 * math.pi * s1 * s2)
    outer = xy.pow(2).sum(1).max()
    escape = -outer / (2 * torch.maximum(s1, s2) ** 2)
    return torch.softmax(torch.cat([log_density, escape], 1), 1).float()


class HyperpriorVQ(nn.Module):
    """Transforms, gains, the lattice codebook, hyperprior and per-bin index tables (see the module docstring)."""

    # Adam moves each parameter by about the learning rate per step: the densities, gains and
    # tables need far larger moves than the transforms within a CPU budget.
    lr_scales: ClassVar[dict[str, float]] = {"density.": 10.0, "gains.": 10.0}

    def __init__(self, cfg: HyperVQConfig):
        super().__init__()
        self.cfg = cfg
        n, m, h = cfg.channels, cfg.latent, cfg.hyper
        self.g_a = build_analysis(n, m)
        self.g_s = build_synthesis(n, m)
        self.gains = Gains(cfg.lambdas, m)
        self.h_a = nn.Sequential(nn.Conv2d(m, h, 3, padding=1), nn.ReLU(), down(h, h), nn.ReLU(), down(h, h))
        self.h_s = nn.Sequential(up(h, h), nn.ReLU(), up(h, h), nn.ReLU(), nn.Conv2d(h, m, 3, padding=1), nn.ReLU())
        self.density = FactorizedDensity(h, len(cfg.levels))
        coords = lattice_points(cfg.points)
        self.radius = int(coords.abs().max())
        index = torch.full((2 * self.radius + 1, 2 * self.radius + 1), cfg.points, dtype=torch.long)
        index[coords[:, 0] + self.radius, coords[:, 1] + self.radius] = torch.arange(cfg.points)
        self.register_buffer("codebook", coords, persistent=False)
        self.register_buffer("index_grid", index, persistent=False)
        self.register_buffer("counts", initial_counts(coords))

    def vectors(self, y: torch.Tensor) -> torch.Tensor:
        """(B, latent, H, W) -> (B, vectors, H, W, group)."""
        b, _, hh, ww = y.shape
        return y.reshape(b, self.cfg.vectors, self.cfg.group, hh, ww).permute(0, 1, 3, 4, 2)

    def unvectors(self, v: torch.Tensor) -> torch.Tensor:
        """(B, vectors, H, W, group) -> (B, latent, H, W)."""
        b, g, hh, ww, d = v.shape
        return v.permute(0, 1, 4, 2, 3).reshape(b, g * d, hh, ww)

    def indices(self, coords: torch.Tensor) -> torch.Tensor:
        """Lattice coordinates (..., 2) -> codebook indices (...), ``points`` for an escape."""
        inside = (coords.abs() <= self.radius).all(-1)
        clipped = coords.clamp(-self.radius, self.radius) + self.radius
        return torch.where(inside, self.index_grid[clipped[..., 0], clipped[..., 1]], self.cfg.points)

    def quantize(self, y: torch.Tensor) -> torch.Tensor:
        """Gained latent (B, latent, H, W) -> lattice coordinates of every vector (B, vectors, H, W, 2)."""
        return nearest_point(self.vectors(y))

    def lookup(self, coords: torch.Tensor) -> torch.Tensor:
        """Lattice coordinates (B, vectors, H, W, 2) -> the points as a latent (B, latent, H, W)."""
        return self.unvectors(coordinates_to_vectors(coords))

    def log_tables(self) -> torch.Tensor:
        """Natural log-probabilities of every bin's table, (BINS**2, points + 1)."""
        counts = self.counts + PSEUDO_COUNT
        return torch.log(counts / counts.sum(1, keepdim=True))

    def information(self, position: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """Information content (nats) of lattice points (..., n, 2) at fractional 2-D bin positions (..., 2)."""
        bins, weights = corners(position)
        idx = self.indices(coords)
        log_p = (weights[..., None, :] * self.log_tables()[bins[..., None, :], idx[..., None]]).sum(-1)
        escaped = (idx == self.cfg.points).float()
        return escaped * escape_bits(coords) * math.log(2) - log_p

    @torch.no_grad()
    def count(self, position: torch.Tensor, coords: torch.Tensor) -> None:
        """Move the tables' counts towards the indices (...) seen at 2-D bin positions (..., 2)."""
        bins, weights = corners(position)
        idx = self.indices(coords)[..., None].expand_as(bins)
        seen = torch.zeros_like(self.counts).index_put_((bins, idx), weights, accumulate=True)
        n = seen.sum(1, keepdim=True)
        rate = 1 - torch.exp(-n / TABLE_MEMORY)  # an exponential memory of TABLE_MEMORY vectors per bin
        self.counts.mul_(1 - rate).add_(rate * seen / n.clamp_min(1e-12))

    def forward(self, x: torch.Tensor, level: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass on (B, 3, H, W) in [0, 1] -> (reconstruction, bits of each image: while
        training the rate proxy, otherwise the exact bits of the indices under the tables and of z)."""
        y = self.gains(self.g_a(x - 0.5), level).float()
        with full_precision(x):
            z = self.h_a(y.abs())
            scale = self.h_s(round_half_even_ste(z))
            v = self.vectors(y)
            nearest = nearest_point(v.detach())
            if self.training:  # the rate proxy; the tables follow the indices
                self.count(self.vectors(bin_positions(scale.detach())), nearest)
                rate = bits(gaussian_likelihood(rate_proxy(y, True), scale))
            else:
                position = self.vectors(bin_positions(scale)).round()
                rate = self.information(position, nearest[..., None, :])[..., 0].sum((1, 2, 3)) / math.log(2)
            rate = rate + bits(self.density.likelihood(rate_proxy(z, self.training), level))
            v_hat = coordinates_to_vectors(nearest) + (v - v.detach())  # straight-through
        y_hat = self.gains(self.unvectors(v_hat), level, inverse=True)
        return self.g_s(y_hat).float() + 0.5, rate


def from_hyperprior_vae(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A hyper-VQ state dict's transforms, gains, hyperprior and side-information densities
    from a trained scale-hyperprior VAE of the same shape and lambdas (float32); the tables
    keep their initialisation."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
