"""Encoder-side refinement: never worse than the nearest codes, same decoder, vq models only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import vqcodec.codec as codec_module
from vqcodec import VQCodecError
from vqcodec.codec import image_tensor
from vqcodec.entropy import grid_bits
from vqcodec.refine import REFINE_RATE, refine_indices

from .conftest import smooth_image


def decoded_error(codec, x: torch.Tensor, idx: torch.Tensor) -> float:
    with torch.no_grad():
        return (codec.synthesis(idx).clamp(0, 1) - x).square().mean().item()


def refine(codec, x: torch.Tensor, steps: int, lr: float = 0.5, **rate) -> torch.Tensor:
    with torch.no_grad():
        latent = codec.network(codec.vqvae.encoder, x - 0.5)
    return refine_indices(latent, x, codec.vqvae.quantizer, codec.synthesize_latent, steps, lr, **rate)


def prior_bits(codec, idx: torch.Tensor) -> float:
    return float(codec.float_prior.code_lengths(idx, idx[..., None]).sum())


@pytest.fixture
def image(tiny_vq) -> torch.Tensor:
    return image_tensor(Image.fromarray(smooth_image(48, 64, seed=3)), tiny_vq.multiple)


def test_zero_steps_are_the_nearest_codes(tiny_vq, image):
    with torch.no_grad():
        nearest = tiny_vq.analysis(image)
    assert torch.equal(refine(tiny_vq, image, 0), nearest)


def test_refined_indices_decode_closer_to_the_image(tiny_vq, image):
    with torch.no_grad():
        nearest = tiny_vq.analysis(image)
    refined = refine(tiny_vq, image, 10)
    assert refined.shape == nearest.shape and not torch.equal(refined, nearest)
    assert decoded_error(tiny_vq, image, refined) < decoded_error(tiny_vq, image, nearest)


def test_without_a_rate_weight_the_prior_changes_nothing(tiny_codec, image):
    plain = refine(tiny_codec, image, 6)
    assert torch.equal(refine(tiny_codec, image, 6, code_lengths=tiny_codec.float_prior.code_lengths, rate=0.0), plain)


@pytest.mark.parametrize("codec", ["tiny_codec", "tiny_grouped"])
def test_a_heavy_rate_weight_chooses_codes_the_prior_finds_cheaper(codec, image, request):
    codec = request.getfixturevalue(codec)
    with torch.no_grad():
        nearest = codec.analysis(image)
    refined = refine(codec, image, 10, lr=0.05, code_lengths=codec.float_prior.code_lengths, rate=20.0)
    assert prior_bits(codec, refined) < prior_bits(codec, nearest)


@pytest.mark.parametrize("codec", ["tiny_codec", "tiny_grouped"])
def test_the_float_prior_prices_codes_as_the_integer_prior_codes_them(codec, image, request):
    codec = request.getfixturevalue(codec)
    with torch.no_grad():
        idx = codec.analysis(image)
    exact = grid_bits(codec.prior, idx[0])  # one stripe: the grid is smaller than a stripe
    assert prior_bits(codec, idx) == pytest.approx(exact, rel=0.01)


def test_refined_files_decode_to_what_the_refined_indices_decode_to(tiny_codec):
    arr = smooth_image(40, 56, seed=5)
    plain, refined = tiny_codec.compress(arr), tiny_codec.compress(arr, refine=8)
    assert plain != refined
    idx = tiny_codec.indices(image_tensor(Image.fromarray(arr), tiny_codec.multiple), refine=8)
    out = np.asarray(tiny_codec.decompress(refined))
    assert np.array_equal(out, tiny_codec.synthesize(idx, 40, 56))
    error = [np.mean((np.asarray(tiny_codec.decompress(d), dtype=float) - arr) ** 2) for d in (plain, refined)]
    assert error[1] < error[0]


def test_baselines_and_negative_steps_are_refused(tiny_baselines, tiny_codec):
    arr = smooth_image(16, 16)
    for codec in tiny_baselines.values():
        with pytest.raises(VQCodecError, match="vq models"):
            codec.compress(arr, refine=3)
    with pytest.raises(VQCodecError, match="0 or more"):
        tiny_codec.compress(arr, refine=-1)


def test_the_codecs_rate_weight_is_the_one_its_refinement_weighs(tiny_codec, image, monkeypatch):
    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs["rate"])
        return refine_indices(*args, **kwargs)

    monkeypatch.setattr(codec_module, "refine_indices", spy)
    assert tiny_codec.refine_rate == REFINE_RATE
    monkeypatch.setattr(tiny_codec, "refine_rate", 0.123)
    tiny_codec.analysis(image, 2)
    assert seen == [0.123]
