import copy
import dataclasses

import pytest
import torch

from vqcodec.models.vqvae import VQVAE, VQVAEConfig, for_inference, grow_decoder, subpixel

from .conftest import TINY_VQVAE


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_grid_and_reconstruction_shapes_follow_the_downsampling_factor(factor):
    torch.manual_seed(0)
    model = VQVAE(dataclasses.replace(TINY_VQVAE, downsample=factor)).eval()
    x = torch.rand(2, 3, 48, 64)
    idx = model.encode(x)
    assert idx.shape == (2, 48 // factor, 64 // factor) and idx.dtype == torch.int64
    assert model.decode(idx).shape == x.shape
    y, train_idx, commitment = model.train()(x)
    assert y.shape == x.shape and train_idx.shape == idx.shape and commitment.ndim == 0


def test_unsupported_factor_is_refused():
    with pytest.raises(ValueError, match="downsample must be 2, 4 or 8"):
        VQVAEConfig(downsample=16)


def test_factor_4_layers_keep_their_names_in_every_factor():
    """Weights files of the first factor-4 model load unchanged, and the other factors share
    every layer whose shape agrees (a new level starts from a trained one)."""
    four = VQVAE(TINY_VQVAE).state_dict()
    assert {"encoder.0.weight", "encoder.2.weight", "encoder.5.weight", "decoder.0.weight", "decoder.7.weight"} <= set(
        four
    )
    for factor, new in ((2, {"decoder.7"}), (8, {"encoder.down0", "decoder.up0"})):
        other = VQVAE(dataclasses.replace(TINY_VQVAE, downsample=factor)).state_dict()
        differ = {k.rsplit(".", 1)[0] for k in other if k not in four or other[k].shape != four[k].shape}
        assert differ == new


def test_a_grown_decoder_decodes_as_before_until_trained():
    torch.manual_seed(0)
    model = VQVAE(TINY_VQVAE).eval()
    grown = grow_decoder(model, 2).eval()
    assert grown.cfg.decoder_blocks == 2 and model.cfg.decoder_blocks == 0
    idx = torch.randint(TINY_VQVAE.codebook_size, (1, 5, 6))
    with torch.no_grad():
        assert torch.equal(grown.decode(idx), model.decode(idx))
        x = torch.rand(1, 3, 20, 24)
        assert torch.equal(grown.encode(x), model.encode(x))
    trained_names = {k for k in model.state_dict()}
    assert trained_names < set(grown.state_dict())  # every trained layer keeps its name


@pytest.mark.parametrize("channels", [(5, 3), (8, 16)])
def test_a_subpixel_convolution_is_the_transposed_convolution(channels):
    torch.manual_seed(0)
    layer = torch.nn.ConvTranspose2d(*channels, 4, stride=2, padding=1)
    x = torch.randn(2, channels[0], 7, 9, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(subpixel(layer.double())(x), layer.double()(x), rtol=0, atol=1e-12)


def test_only_a_4x4_stride_2_transposed_convolution_becomes_subpixel():
    with pytest.raises(ValueError, match="4x4 stride-2"):
        subpixel(torch.nn.ConvTranspose2d(4, 3, 5, stride=2, padding=2))


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_the_inference_layout_encodes_and_decodes_as_the_trained_model(factor):
    torch.manual_seed(0)
    model = VQVAE(dataclasses.replace(TINY_VQVAE, downsample=factor)).double().eval()
    fast = for_inference(for_inference(copy.deepcopy(model)))  # twice: a layout for inference stays as it is
    x = torch.rand(1, 3, 48, 64, dtype=torch.float64)
    with torch.no_grad():
        idx = model.encode(x)
        assert torch.equal(fast.encode(x), idx)
        assert torch.allclose(fast.decode(idx), model.decode(idx), rtol=0, atol=1e-12)
    assert isinstance(fast.decoder[-1], torch.nn.Sequential) == (factor != 2)
