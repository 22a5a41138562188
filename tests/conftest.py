"""Shared fixtures: tiny randomly initialised codecs (VQ, AE, VAE), so tests run in seconds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from vqcodec.codec import BaselineCodec, Codec, VQCodec
from vqcodec.export import save_baseline_weights, save_vq_weights
from vqcodec.models.ae import AEConfig, make_model
from vqcodec.models.prior import IntegerPrior, PixelCNNPrior, PriorConfig
from vqcodec.models.vqvae import VQVAE, VQVAEConfig
from vqcodec.train import TrainConfig
from vqcodec.zoo import read_info

TINY_VQVAE = VQVAEConfig(channels=16, half_channels=8, latent_dim=4, codebook_size=16, res_blocks=1)
TINY_PRIOR = PriorConfig(codebook_size=16, radius=1, hidden=16, layers=1)
TINY_GROUPED_PRIOR = dataclasses.replace(TINY_PRIOR, groups=4)
TINY_AE = {"ae": AEConfig(channels=8, latent=6), "vae": AEConfig(channels=8, latent=6, hyper=4)}


def constriction_weights(logits: torch.Tensor | np.ndarray) -> np.ndarray:
    """The weights with which constriction's own coder codes exactly the format's tables (the
    tests' oracle for vqcodec's range coder)."""
    from vqcodec import entropy

    return (entropy.frequencies(logits) - 1).astype(np.float64)


def tiny_prior(cfg: PriorConfig = TINY_PRIOR, seed: int = 0, scale: float = 1.0) -> PixelCNNPrior:
    """A random prior with quantization switched on; ``scale`` sharpens its distributions."""
    torch.manual_seed(seed)
    prior = PixelCNNPrior(cfg)
    with torch.no_grad():
        for p in prior.parameters():
            p.mul_(scale)
    prior.quantized = True
    return prior.eval()


def save_tiny_vq(path, downsample: int = 4, prior_cfg: PriorConfig = TINY_PRIOR) -> str:
    """A random tiny VQ codec with the given downsampling factor and prior, written to ``path``."""
    torch.manual_seed(0)
    vqvae = VQVAE(dataclasses.replace(TINY_VQVAE, downsample=downsample)).eval()
    with torch.no_grad():  # spread the codebook so different pixels pick different codes
        vqvae.quantizer.codebook.copy_(torch.randn(16, 4))
    prior = tiny_prior(prior_cfg, scale=2.0)
    save_vq_weights(str(path), vqvae, IntegerPrior.export(prior), prior_cfg, "tiny", 1, {"metrics": {}})
    return str(path)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> str:
    return save_tiny_vq(tmp_path_factory.mktemp("weights") / "tiny-q1.safetensors")


@pytest.fixture(scope="session")
def tiny_codec(tiny_weights) -> VQCodec:
    return VQCodec.from_weights(read_info(tiny_weights))


@pytest.fixture(scope="session")
def tiny_grouped(tmp_path_factory) -> VQCodec:
    """The tiny VQ codec with a prior that codes each index as one of 4 groups, then its member."""
    path = save_tiny_vq(tmp_path_factory.mktemp("weights") / "tiny-grouped.safetensors", prior_cfg=TINY_GROUPED_PRIOR)
    return VQCodec.from_weights(read_info(path))


@pytest.fixture(scope="session", params=[2, 4, 8])
def tiny_vq(request, tmp_path_factory, tiny_codec) -> VQCodec:
    """The tiny VQ codec at each downsampling factor of the zoo's levels."""
    if request.param == 4:
        return tiny_codec
    path = save_tiny_vq(tmp_path_factory.mktemp("weights") / f"tiny-f{request.param}.safetensors", request.param)
    return VQCodec.from_weights(read_info(path))


@pytest.fixture(scope="session")
def tiny_baselines(tmp_path_factory) -> dict[str, BaselineCodec]:
    """Random AE and VAE codecs whose latents are spread over several integers."""
    out = {}
    for family, cfg in TINY_AE.items():
        torch.manual_seed(0)
        model = make_model(cfg).eval()
        with torch.no_grad():  # random transforms give latents near 0; spread them over many integers
            model.g_a[-1].weight.mul_(100)
            if cfg.hyper:
                model.h_a[-1].weight.mul_(10)
                model.h_s[-2].bias.add_(3.0)  # predicted scales near 3
        path = tmp_path_factory.mktemp("weights") / f"tiny-{family}-q1.safetensors"
        out[family] = BaselineCodec.from_weights(save_baseline_weights(str(path), model, family, 1, {"metrics": {}}))
    return out


@pytest.fixture(params=["vq", "vq-groups", "ae", "vae"])
def any_codec(request, tiny_codec, tiny_grouped, tiny_baselines) -> Codec:
    """Each tiny codec in turn, for the contracts every codec keeps."""
    return {"vq": tiny_codec, "vq-groups": tiny_grouped, **tiny_baselines}[request.param]


@pytest.fixture
def tiny_ladder(tmp_path, monkeypatch):
    """Three levels of a tiny AE whose rate rises with the level, installed as the shipped "ladder"."""
    from vqcodec import zoo

    infos = []
    for quality, gain in ((1, 100.0), (2, 300.0), (3, 1000.0)):
        torch.manual_seed(0)
        model = make_model(AEConfig(channels=8, latent=6)).eval()
        with torch.no_grad():
            model.g_a[-1].weight.mul_(gain)
        path = tmp_path / f"ladder-q{quality}.safetensors"
        infos.append(save_baseline_weights(str(path), model, "ladder", quality, {"metrics": {}}))
    monkeypatch.setattr(zoo, "shipped", lambda: tuple(infos))
    return infos


@pytest.fixture
def installed_tiny(tiny_weights, monkeypatch):
    """The tiny codec installed as the only shipped model, so files made with it open by id."""
    from vqcodec import api, zoo

    monkeypatch.setattr(zoo, "shipped", lambda: (zoo.read_info(tiny_weights),))
    api._load.cache_clear()
    yield tiny_weights
    api._load.cache_clear()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A deterministic natural-ish test image: smooth gradients plus a little noise."""
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 100 * np.sin(x / 17.0 + c) * np.cos(y / 23.0 - c) for c in range(3)], -1)
    return np.clip(base + r.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def folders(tmp_path_factory):
    """Four training and two validation images, small and smooth."""
    root = tmp_path_factory.mktemp("data")
    for split, count in (("train", 4), ("val", 2)):
        (root / split).mkdir()
        for n in range(count):
            Image.fromarray(smooth_image(72, 96, seed=n + 10 * (split == "val"))).save(root / split / f"{n}.png")
    return root


def train_config(folders, out, steps: int) -> TrainConfig:
    """A few steps of training on the tiny ``folders``, checkpointing and validating every two."""
    return TrainConfig(
        data=str(folders / "train"),
        val=str(folders / "val"),
        out=str(out),
        steps=steps,
        batch=2,
        crop=32,
        lr=1e-3,
        ckpt_every=2,
        val_every=2,
        val_images=2,
    )
