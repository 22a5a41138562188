"""Weights files' tensors: checksums, and bundles (every level of a model in one file, ids kept)."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from vqcodec.codec import BaselineCodec
from vqcodec.errors import ModelError
from vqcodec.export import save_baseline_weights
from vqcodec.models.ae import AEConfig, level_model, make_model
from vqcodec.tensors import load_tensors, save_bundle, tensor_hash
from vqcodec.zoo import read_info, read_infos

from .conftest import smooth_image


@pytest.fixture
def levels(tmp_path) -> list:
    """Three one-level files of one variable-rate AE, as ``vqcodec train export --run`` writes them."""
    torch.manual_seed(0)
    model = make_model(AEConfig(channels=8, latent=6, lambdas=(0.001, 0.01, 0.1))).eval()
    with torch.no_grad():
        model.g_a[-1].weight.mul_(100)
    return [
        save_baseline_weights(
            str(tmp_path / f"m-q{n + 1}.safetensors"), level_model(model, n), "m", n + 1, {"metrics": {"n": n}}
        )
        for n in range(3)
    ]


def test_a_bundle_keeps_every_levels_tensors_id_and_metadata(levels, tmp_path):
    bundle = save_bundle(tmp_path / "m.safetensors", levels)
    assert [(b.quality, b.model_id, b.meta) for b in bundle] == [(i.quality, i.model_id, i.meta) for i in levels]
    for one, member in zip(levels, bundle, strict=True):
        mine = load_tensors(member)
        assert tensor_hash(mine) == one.sha256 and mine.keys() == load_tensors(one).keys()
    stored = load_file(str(tmp_path / "m.safetensors"))
    assert any(k.startswith("shared/") for k in stored) and any(k.startswith("q2/") for k in stored)
    assert (tmp_path / "m.safetensors").stat().st_size < 0.6 * sum(i.path.stat().st_size for i in levels)


def test_a_bundles_level_decodes_the_files_of_its_one_level_file(levels, tmp_path):
    bundle = save_bundle(tmp_path / "m.safetensors", levels)
    data = BaselineCodec.from_weights(levels[1]).compress(smooth_image(32, 48))
    decoded = BaselineCodec.from_weights(bundle[1]).decompress(data)
    assert np.array_equal(np.asarray(decoded), np.asarray(BaselineCodec.from_weights(levels[1]).decompress(data)))


def test_a_damaged_bundle_is_refused(levels, tmp_path):
    path = tmp_path / "m.safetensors"
    save_bundle(path, levels)
    tensors = load_file(str(path))
    key = next(k for k in tensors if k.startswith("q3/"))
    tensors[key] = tensors[key] + 1
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata()
    save_file(tensors, str(path), metadata=meta)
    assert load_tensors(read_infos(path)[0]) is not None  # the other levels still load
    with pytest.raises(ModelError, match="checksum mismatch"):
        load_tensors(read_infos(path)[2])


def test_a_bundle_is_not_one_level(levels, tmp_path):
    save_bundle(tmp_path / "m.safetensors", levels)
    with pytest.raises(ModelError, match="a bundle of 3 levels"):
        read_info(tmp_path / "m.safetensors")
    with pytest.raises(ModelError, match="distinct levels of one model"):
        save_bundle(tmp_path / "x.safetensors", [levels[0], levels[0]])


def test_the_shipped_baselines_are_bundles():
    from vqcodec.zoo import shipped

    for family in ("ae", "vae"):
        members = [i for i in shipped() if i.name == family]
        assert len(members) == 8 and {i.path.name for i in members} == {f"{family}.safetensors"}
