"""VQ-VAE image autoencoder (van den Oord et al., NeurIPS 2017) sized for CPU compression.

Encoder: two stride-2 convolutions (downsampling factor 4) and a residual block, then a
1x1 projection to ``latent_dim``; the latent grid is vector-quantized against a codebook of
``codebook_size`` vectors; the decoder mirrors the encoder with transposed convolutions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vqcodec.quantization import VectorQuantizer


@dataclass
class VQVAEConfig:
    """Architecture of a VQ-VAE; stored in the weights' metadata."""

    channels: int = 128
    half_channels: int = 64
    latent_dim: int = 32
    codebook_size: int = 512
    res_blocks: int = 1
    beta: float = 0.25
    ema_decay: float = 0.99

    downsample = 4

    def to_dict(self) -> dict:
        return asdict(self)


class ResBlock(nn.Module):
    """x + conv3x3(relu(conv3x3(relu(x))))."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


def make_encoder(cfg: VQVAEConfig) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, cfg.half_channels, 5, stride=2, padding=2),
        nn.ReLU(),
        nn.Conv2d(cfg.half_channels, cfg.channels, 5, stride=2, padding=2),
        *[ResBlock(cfg.channels) for _ in range(cfg.res_blocks)],
        nn.ReLU(),
        nn.Conv2d(cfg.channels, cfg.latent_dim, 1),
    )


def make_decoder(cfg: VQVAEConfig, in_dim: int | None = None) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_dim or cfg.latent_dim, cfg.channels, 3, padding=1),
        *[ResBlock(cfg.channels) for _ in range(cfg.res_blocks)],
        nn.ReLU(),
        nn.ConvTranspose2d(cfg.channels, cfg.half_channels, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(cfg.half_channels, cfg.half_channels, 3, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(cfg.half_channels, 3, 4, stride=2, padding=1),
    )


class VQVAE(nn.Module):
    """Images in [0, 1] of any size divisible by 4 <-> grids of codebook indices."""

    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = make_encoder(cfg)
        self.quantizer = VectorQuantizer(cfg.codebook_size, cfg.latent_dim, cfg.beta, cfg.ema_decay)
        self.decoder = make_decoder(cfg)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> index grid (B, H/4, W/4)."""
        return self.quantizer.indices(self.encoder(x - 0.5))

    def decode(self, idx: torch.Tensor) -> torch.Tensor:
        """Index grid (B, h, w) -> image (B, 3, 4h, 4w), not clamped."""
        return self.decoder(self.quantizer.lookup(idx)) + 0.5

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: (reconstruction, indices, commitment loss)."""
        zq, idx, commitment = self.quantizer(self.encoder(x - 0.5))
        return self.decoder(zq).float() + 0.5, idx, commitment
