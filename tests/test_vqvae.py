import dataclasses

import pytest
import torch

from vqcodec.models.vqvae import VQVAE, VQVAEConfig

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
