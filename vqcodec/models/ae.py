"""Scalar-quantization baselines: a factorized-prior autoencoder (AE) and a scale-hyperprior VAE.

AE: Balle, Laparra, Simoncelli, "End-to-end optimized image compression", ICLR 2017. An
analysis transform of four stride-2 5x5 convolutions with GDN maps the image to a latent
with 16x fewer rows and columns; each latent value is rounded to an integer and coded under
a learned density per channel, the non-parametric "factorized" density of Balle et al.
2018 (appendix 6.1). Training replaces rounding by additive uniform noise for the rate term
and by straight-through rounding for the synthesis input (Minnen & Singh, ICIP 2020).

VAE: Balle, Minnen, Singh, Hwang, Johnston, "Variational image compression with a scale
hyperprior", ICLR 2018. The same transforms; a hyper-analysis summarises the latent into
side information z (coded with a factorized density), and a hyper-synthesis predicts from
the rounded z the scale of a zero-mean Gaussian for every latent value. Minimising rate +
lambda * distortion is the ELBO of a VAE whose posterior is a unit-width uniform.

GDN is the simplified form of Johnston et al., "Computationally efficient neural image
compression", 2019: y_i = x_i / (beta_i + sum_j gamma_ij |x_j|).

Variable rate: a model trained at several lambdas at once shares its transforms across them
and has, per lambda, a gain vector that scales the latent before rounding, an inverse gain
that scales the rounded latent before synthesis, and its own factorized density (Cui et al.,
"Asymmetric gained deep image compression with continuous rate adaptation", CVPR 2021). One
training run then serves every rate point of a family. A level is exported as a one-lambda
model (its gains and density), the codec's unit.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, replace
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

LIKELIHOOD_MIN = 1e-9
SCALE_MIN = 0.11  # the smallest scale of the Gaussian tables (as in CompressAI)


@dataclass
class AEConfig:
    """Architecture and rate-distortion trade-off of a baseline codec; stored in the weights' metadata.

    ``hyper`` = 0 is the factorized-prior AE, ``hyper`` > 0 the scale-hyperprior VAE with that
    many side-information channels. The loss is bpp + lmbda * 255**2 * MSE; with ``lambdas``
    the model is variable-rate, with one gain vector and density per lambda (``lmbda`` unused).
    """

    channels: int = 96
    latent: int = 128
    hyper: int = 0
    lmbda: float = 0.01
    lambdas: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        self.lambdas = tuple(self.lambdas)  # a JSON list in metadata and run configs

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def levels(self) -> tuple[float, ...]:
        """The lambda of every level the model codes at."""
        return self.lambdas or (self.lmbda,)

    def level(self, n: int) -> AEConfig:
        """The one-level configuration of level ``n`` (what a shipped weights file holds)."""
        return replace(self, lmbda=self.levels[n], lambdas=(self.levels[n],)) if self.lambdas else self

    @property
    def family(self) -> str:
        return "vae" if self.hyper else "ae"

    @property
    def downsample(self) -> int:
        """How many pixels one row of the coded grid (the side information's, for the VAE) covers."""
        return 64 if self.hyper else 16


class GDN(nn.Module):
    """Simplified (inverse) generalized divisive normalization, per pixel across channels,
    computed in float32."""

    def __init__(self, channels: int, inverse: bool = False):
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(0.1 * torch.eye(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # float32 even under autocast: with a bfloat16 denominator the first ae run validated
        # about 3 dB lower at the same step, and diverged at step 6,100
        with full_precision(x):
            x = x.float()
            norm = F.conv2d(x.abs(), self.gamma.abs()[:, :, None, None], self.beta.abs() + 1e-6)
            return x * norm if self.inverse else x / norm


def down(cin: int, cout: int, kernel: int = 5) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=2, padding=kernel // 2)


def up(cin: int, cout: int, kernel: int = 5) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, kernel, stride=2, padding=kernel // 2, output_padding=1)


def build_analysis(n: int, m: int) -> nn.Sequential:
    """Image (B, 3, H, W) centred on 0 -> latent (B, m, H/16, W/16)."""
    return nn.Sequential(down(3, n), GDN(n), down(n, n), GDN(n), down(n, n), GDN(n), down(n, m))


def build_synthesis(n: int, m: int) -> nn.Sequential:
    """Latent (B, m, h, w) -> image (B, 3, 16h, 16w) centred on 0."""
    return nn.Sequential(
        up(m, n), GDN(n, inverse=True), up(n, n), GDN(n, inverse=True), up(n, n), GDN(n, inverse=True), up(n, 3)
    )


def round_half_even_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer, ties to even (as torch.round), in the forward pass; identity gradient."""
    return x + (torch.round(x) - x).detach()


def rate_proxy(x: torch.Tensor, training: bool) -> torch.Tensor:
    """What the rate term sees: additive uniform noise in [-0.5, 0.5) while training (the
    differentiable proxy of rounding), the rounded values otherwise."""
    return x + torch.rand_like(x) - 0.5 if training else torch.round(x)


class FactorizedDensity(nn.Module):
    """A learned univariate density per channel, convolved with a unit-width box
    (Balle et al. 2018, appendix 6.1): its cumulative is c(x) = sigmoid(f(x)), where f is a
    small monotone network per channel (non-negative matrices, tanh "factors" in (-1, 1))."""

    def __init__(self, channels: int, levels: int = 1, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        channels *= levels  # a variable-rate model's levels each have their own densities
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(dims) - 1))
        self.matrices, self.biases, self.factors = nn.ParameterList(), nn.ParameterList(), nn.ParameterList()
        for i in range(len(dims) - 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def cdf_logits(self, x: torch.Tensor, level: int = 0) -> torch.Tensor:
        """(C, 1, N) values -> (C, 1, N) logits of the cumulative at those values, under the
        densities of channels level * C to (level + 1) * C (a variable-rate model's level)."""
        rows = slice(level * x.shape[0], (level + 1) * x.shape[0])
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases, strict=True)):
            x = torch.matmul(F.softplus(matrix[rows].to(x.dtype)), x) + bias[rows].to(x.dtype)
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i][rows].to(x.dtype)) * torch.tanh(x)
        return x

    def likelihood(self, y: torch.Tensor, level: int = 0) -> torch.Tensor:
        """Probability mass of [y - 0.5, y + 0.5) for every value of (B, C, H, W)."""
        b, c, h, w = y.shape
        v = y.transpose(0, 1).reshape(c, 1, -1)
        lower, upper = self.cdf_logits(v - 0.5, level), self.cdf_logits(v + 0.5, level)
        sign = -torch.sign(lower + upper).detach()  # evaluate in the tail where sigmoid is accurate
        p = (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()
        return p.reshape(c, b, h, w).transpose(0, 1).clamp_min(LIKELIHOOD_MIN)

    @torch.no_grad()
    def pmfs(self, tail: float = 1e-7, span: int = 2048) -> tuple[list[torch.Tensor], list[int]]:
        """Per channel, float64 masses of the integers from ``lo`` to ``hi`` (both tails folded
        into the end points) and ``lo``; [lo, hi] holds all but ``tail`` of the mass."""
        c = self.matrices[0].shape[0]
        grid = torch.arange(-span, span + 1, dtype=torch.float64)
        cdf = torch.sigmoid(self.cdf_logits(grid.expand(c, 1, -1) + 0.5))[:, 0]  # c(k + 1/2)
        pmfs, offsets = [], []
        for ch in range(c):
            lo = int(torch.searchsorted(cdf[ch], tail / 2))
            hi = max(lo, int(torch.searchsorted(cdf[ch], 1 - tail / 2)))
            pmf = torch.diff(cdf[ch, lo : hi + 1], prepend=torch.zeros(1, dtype=torch.float64))
            pmf[-1] += 1 - cdf[ch, hi]
            pmfs.append(pmf)
            offsets.append(lo - span)
        return pmfs, offsets


def gaussian_likelihood(y: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Mass of [y - 0.5, y + 0.5) under N(0, scale**2), scales below SCALE_MIN raised to it."""
    scale = scale.clamp_min(SCALE_MIN)
    v = y.abs()
    upper = torch.special.ndtr((0.5 - v) / scale)
    lower = torch.special.ndtr((-0.5 - v) / scale)
    return (upper - lower).clamp_min(LIKELIHOOD_MIN)


def gaussian_pmfs(scales: list[float], tail: float = 1e-7) -> list[torch.Tensor]:
    """float64 masses of the integers -L..L under each N(0, s**2), tails folded into +-L."""
    out = []
    for s in scales:
        half = max(1, math.ceil(s * math.sqrt(2) * float(torch.special.erfinv(torch.tensor(1 - tail).double()))))
        k = torch.arange(-half, half + 1, dtype=torch.float64)
        cdf = torch.special.ndtr((k + 0.5) / s)
        pmf = torch.diff(cdf, prepend=torch.zeros(1, dtype=torch.float64))
        pmf[-1] += 1 - cdf[-1]
        out.append(pmf)
    return out


def full_precision(x: torch.Tensor) -> torch.autocast:
    """Leave a mixed-precision region: the rate terms and the hyperprior stay in float32."""
    return torch.autocast(x.device.type, enabled=False)


def bits(likelihood: torch.Tensor) -> torch.Tensor:
    """Information content of (B, C, H, W) masses: bits of each of the B images."""
    return -torch.log2(likelihood).sum((1, 2, 3))


class Gains(nn.Module):
    """Per-level channel gains of a variable-rate model (Cui et al. 2021): the analysis scales
    the latent by exp(gain[level]) before rounding (a larger gain, a finer quantization), the
    synthesis scales the rounded latent by exp(inverse[level]). They start where a high-rate
    quantizer's step balances rate and distortion, a step proportional to 1 / sqrt(lambda)."""

    def __init__(self, lambdas: tuple[float, ...], channels: int):
        super().__init__()
        log = 0.5 * torch.log(torch.tensor(lambdas, dtype=torch.float64))
        log = (log - log.mean()).float()[:, None].repeat(1, channels)
        self.gain = nn.Parameter(log)
        self.inverse = nn.Parameter(-log)

    def forward(self, y: torch.Tensor, level: int, inverse: bool = False) -> torch.Tensor:
        log = (self.inverse if inverse else self.gain)[level]
        return y * torch.exp(log).view(1, -1, 1, 1)


class Transforms(nn.Module):
    """What both baselines share: the analysis and synthesis transforms, with the gains of a
    variable-rate model. Each has a factorized density too (of the latent or of the side
    information), ``density``, built by the subclass after its other layers."""

    # Adam moves each parameter by about the learning rate per step: at the transforms' rate,
    # the densities and gains would take far longer than a CPU budget to reach their range.
    lr_scales: ClassVar[dict[str, float]] = {"density.": 10.0, "gains.": 10.0}

    def __init__(self, cfg: AEConfig):
        super().__init__()
        self.cfg = cfg
        self.g_a = build_analysis(cfg.channels, cfg.latent)
        self.g_s = build_synthesis(cfg.channels, cfg.latent)
        self.gains = Gains(cfg.lambdas, cfg.latent) if cfg.lambdas else None

    def analyze(self, x: torch.Tensor, level: int = 0) -> torch.Tensor:
        """Pixels (B, 3, H, W) in [0, 1] -> the latent, scaled for ``level``, before rounding."""
        y = self.g_a(x - 0.5)
        return y if self.gains is None else self.gains(y, level)

    def synthesize(self, y_hat: torch.Tensor, level: int = 0) -> torch.Tensor:
        """Rounded latent -> pixels (B, 3, 16h, 16w) around [0, 1], float32, not clamped."""
        if self.gains is not None:
            y_hat = self.gains(y_hat, level, inverse=True)
        return self.g_s(y_hat).float() + 0.5


class FactorizedAE(Transforms):
    """The AE baseline: transforms plus a factorized density over the rounded latent."""

    def __init__(self, cfg: AEConfig):
        super().__init__(cfg)
        self.density = FactorizedDensity(cfg.latent, len(cfg.levels))

    def forward(self, x: torch.Tensor, level: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass on (B, 3, H, W) in [0, 1] -> (reconstruction, bits of each image)."""
        y = self.analyze(x, level).float()
        with full_precision(x):
            rate = bits(self.density.likelihood(rate_proxy(y, self.training), level))
        return self.synthesize(round_half_even_ste(y), level), rate


class HyperpriorVAE(Transforms):
    """The VAE baseline: transforms, a hyper-analysis/synthesis pair predicting Gaussian scales,
    and a factorized density over the side information."""

    def __init__(self, cfg: AEConfig):
        super().__init__(cfg)
        m, h = cfg.latent, cfg.hyper
        self.h_a = nn.Sequential(nn.Conv2d(m, h, 3, padding=1), nn.ReLU(), down(h, h), nn.ReLU(), down(h, h))
        self.h_s = nn.Sequential(up(h, h), nn.ReLU(), up(h, h), nn.ReLU(), nn.Conv2d(h, m, 3, padding=1), nn.ReLU())
        self.density = FactorizedDensity(h, len(cfg.levels))

    def forward(self, x: torch.Tensor, level: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass on (B, 3, H, W) in [0, 1] -> (reconstruction, bits of y and z of each image)."""
        y = self.analyze(x, level).float()
        with full_precision(x):
            z = self.h_a(y.abs())
            scale = self.h_s(round_half_even_ste(z))
            rate_y = bits(gaussian_likelihood(rate_proxy(y, self.training), scale))
            rate = rate_y + bits(self.density.likelihood(rate_proxy(z, self.training), level))
        return self.synthesize(round_half_even_ste(y), level), rate


def make_model(cfg: AEConfig) -> FactorizedAE | HyperpriorVAE:
    return HyperpriorVAE(cfg) if cfg.hyper else FactorizedAE(cfg)


SCALES = 64  # Gaussian tables, at log-spaced scales from SCALE_MIN to SCALE_MAX
SCALE_MAX = 64.0
HS_WEIGHT_MAX = 2**15 - 1
HS_ACT_BITS = 12  # hidden activations and predicted scales are integers at scale 2**-12
HS_ACT_MAX = 2**20


def scale_table() -> list[float]:
    """The scales of the Gaussian tables (geometric from SCALE_MIN to SCALE_MAX)."""
    ratio = math.log(SCALE_MAX / SCALE_MIN) / (SCALES - 1)
    return [SCALE_MIN * math.exp(ratio * k) for k in range(SCALES)]


class IntegerHyperSynthesis:
    """The VAE's hyper-synthesis as an exact integer network: what the codec runs.

    The decoder must pick exactly the Gaussian table the encoder picked for every latent
    value, on any machine, so the scales are computed in integers (Balle, Johnston, Minnen,
    ICLR 2019): 16-bit weights with a power-of-two scale per output channel, activations at
    a fixed point of 2**-12 clipped to [0, 2**20], rescaling by multiplying by a power of two
    and flooring. Each output sums at most ``in * k * k`` products below 2**11 * 2**15 (first
    layer, |z| <= 2048) or 2**20 * 2**15, far below 2**53, so float64 convolutions compute it
    exactly whatever their order. It runs on the CPU (GPU libraries may pick FFT algorithms).
    The predicted scale is then compared with integer thresholds between the table scales.
    """

    LAYERS = (0, 2, 4)  # positions of the convolutions in HyperpriorVAE.h_s

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.layers = []
        bound = 0
        for n in range(len(self.LAYERS)):
            w, b, shift = (tensors[f"{k}{n}"] for k in ("w", "b", "shift"))
            transposed = bool(tensors[f"transposed{n}"])
            fan_in = w.shape[0 if transposed else 1] * w.shape[2] * w.shape[3]
            bound = max(bound, HS_ACT_MAX * HS_WEIGHT_MAX * fan_in + int(b.abs().max()))
            self.layers.append(
                (w.double(), b.double()[:, None, None], 2.0 ** -shift.double()[:, None, None], transposed)
            )
        if bound >= 2**53:
            raise ValueError("hyper-synthesis tensors too large for exact float64 arithmetic")
        self.thresholds = tensors["thresholds"].double()

    @staticmethod
    def export(h_s: nn.Sequential) -> dict[str, torch.Tensor]:
        """Integer tensors of a trained float hyper-synthesis."""
        out: dict[str, torch.Tensor] = {}
        exponent_in = 0  # the input (rounded side information) is an integer
        for n, pos in enumerate(IntegerHyperSynthesis.LAYERS):
            conv = h_s[pos]
            transposed = isinstance(conv, nn.ConvTranspose2d)
            w = conv.weight.detach().double()
            peak = w.abs().amax(dim=(0, 2, 3) if transposed else (1, 2, 3)).clamp_min(1e-12)
            k = torch.floor(torch.log2(HS_WEIGHT_MAX / peak)).clamp(0, 24)
            shape = (1, -1, 1, 1) if transposed else (-1, 1, 1, 1)
            out[f"w{n}"] = torch.round(w * 2 ** k.view(shape)).to(torch.int16)
            out[f"b{n}"] = torch.round(conv.bias.detach().double() * 2 ** (k + exponent_in)).to(torch.int64)
            out[f"shift{n}"] = (k + exponent_in - HS_ACT_BITS).to(torch.int32)
            out[f"transposed{n}"] = torch.tensor(transposed)
            exponent_in = HS_ACT_BITS
        scales = scale_table()
        mids = [math.sqrt(a * b) * 2**HS_ACT_BITS for a, b in itertools.pairwise(scales)]
        out["thresholds"] = torch.tensor([math.ceil(m) for m in mids], dtype=torch.int64)
        return out

    def scale_indices(self, z_hat: torch.Tensor) -> torch.Tensor:
        """Rounded side information (1, hyper, h, w) -> Gaussian table of every latent value (1, latent, 4h, 4w)."""
        a = z_hat.cpu().double()
        for w, b, scale, transposed in self.layers:
            if transposed:
                acc = F.conv_transpose2d(a, w, stride=2, padding=2, output_padding=1)
            else:
                acc = F.conv2d(a, w, padding=w.shape[-1] // 2)
            a = torch.floor((acc + b) * scale).clamp_(0, HS_ACT_MAX)
        return torch.bucketize(a, self.thresholds, right=True)


def level_model(model: FactorizedAE | HyperpriorVAE, n: int) -> FactorizedAE | HyperpriorVAE:
    """Level ``n`` of a variable-rate model as a one-level model (the shared transforms, that
    level's gains and densities), in eval mode: what a shipped weights file holds."""
    cfg = model.cfg.level(n)
    if cfg == model.cfg:
        return model.eval()
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("gains."):
            value = value[n : n + 1]
        elif key.startswith("density."):
            rows = value.shape[0] // len(model.cfg.levels)
            value = value[n * rows : (n + 1) * rows]
        state[key] = value
    one = make_model(cfg)
    one.load_state_dict(state)
    return one.eval()


def grow_levels(
    state: dict[str, torch.Tensor], old: tuple[float, ...], new: tuple[float, ...]
) -> dict[str, torch.Tensor]:
    """A variable-rate model's state dict for the lambdas ``new``, a superset of ``old``: the
    transforms as they are, each old level's gains and densities as they were, and each new
    level started from the old level nearest in log lambda, its gains moved by
    0.5 log(lambda_new / lambda_old) (a quantization step proportional to 1 / sqrt(lambda), as
    ``Gains`` starts) and its densities copied. So a trained family gains rate points without
    starting over (issue 14: rates down to about 0.1 bpp)."""
    if not set(old) <= set(new) or len(set(new)) != len(new):
        raise ValueError(f"the new lambdas {new} must be distinct and include the old {old}")
    log_old = torch.tensor(old, dtype=torch.float64).log()
    source = [int((log_old - math.log(lam)).abs().argmin()) for lam in new]
    shift = torch.tensor([0.5 * math.log(lam / old[n]) for lam, n in zip(new, source, strict=True)])
    grown = {}
    for key, value in state.items():
        if key.startswith("gains."):
            sign = -1.0 if key.endswith("inverse") else 1.0
            value = value[source] + sign * shift[:, None].to(value.dtype)
        elif key.startswith("density."):
            blocks = value.unflatten(0, (len(old), -1))
            value = blocks[source].flatten(0, 1)
        grown[key] = value
    return grown
