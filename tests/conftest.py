"""Shared fixtures: a tiny randomly initialised VQ codec, so tests run in seconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vqcodec.codec import VQCodec, save_vq_weights
from vqcodec.models.prior import IntegerPrior, PixelCNNPrior, PriorConfig
from vqcodec.models.vqvae import VQVAE, VQVAEConfig
from vqcodec.zoo import read_info

TINY_VQVAE = VQVAEConfig(channels=16, half_channels=8, latent_dim=4, codebook_size=16, res_blocks=1)
TINY_PRIOR = PriorConfig(codebook_size=16, radius=1, hidden=16, layers=1)


def tiny_prior(cfg: PriorConfig = TINY_PRIOR, seed: int = 0, scale: float = 1.0) -> PixelCNNPrior:
    """A random prior with quantization switched on; ``scale`` sharpens its distributions."""
    torch.manual_seed(seed)
    prior = PixelCNNPrior(cfg)
    with torch.no_grad():
        for p in prior.parameters():
            p.mul_(scale)
    prior.quantized = True
    return prior.eval()


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> str:
    torch.manual_seed(0)
    vqvae = VQVAE(TINY_VQVAE).eval()
    with torch.no_grad():  # spread the codebook so different pixels pick different codes
        vqvae.quantizer.codebook.copy_(torch.randn(16, 4))
    prior = tiny_prior(scale=2.0)
    path = tmp_path_factory.mktemp("weights") / "tiny-q1.safetensors"
    save_vq_weights(str(path), vqvae, IntegerPrior.export(prior), TINY_PRIOR, "tiny", 1, {"metrics": {}})
    return str(path)


@pytest.fixture(scope="session")
def tiny_codec(tiny_weights) -> VQCodec:
    return VQCodec.from_weights(read_info(tiny_weights))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A deterministic natural-ish test image: smooth gradients plus a little noise."""
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 100 * np.sin(x / 17.0 + c) * np.cos(y / 23.0 - c) for c in range(3)], -1)
    return np.clip(base + r.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
