import json
from pathlib import Path

import pytest
import torch

from vqcodec.codec import VQCodec
from vqcodec.errors import ModelError
from vqcodec.tensors import save_weights, tensor_hash
from vqcodec.zoo import find, read_info, shipped


def test_tensor_hash_depends_on_values_names_and_dtypes():
    a = {"x": torch.zeros(3)}
    assert tensor_hash(a) == tensor_hash({"x": torch.zeros(3)})
    assert tensor_hash(a) != tensor_hash({"x": torch.tensor([0.0, 0.0, 1e-9])})
    assert tensor_hash(a) != tensor_hash({"y": torch.zeros(3)})
    assert tensor_hash(a) != tensor_hash({"x": torch.zeros(3, dtype=torch.float64)})


def test_metadata_round_trip(tmp_path):
    info = save_weights(tmp_path / "m.safetensors", {"w": torch.ones(2)}, "vq", "m", 2, {"metrics": {"kodak_bpp": 0.3}})
    again = read_info(tmp_path / "m.safetensors")
    assert again == info and again.metrics == {"kodak_bpp": 0.3} and len(again.model_id) == 4


def test_weights_into_a_missing_directory_are_refused(tmp_path):
    with pytest.raises(ModelError, match=r"output directory .* does not exist"):
        save_weights(tmp_path / "nowhere" / "m.safetensors", {"w": torch.ones(2)}, "vq", "m", 2, {})
    assert not (tmp_path / "nowhere").exists()


def test_corrupt_weights_are_refused(tmp_path, tiny_weights):
    data = bytearray(open(tiny_weights, "rb").read())
    data[-100] ^= 0xFF  # flip bits inside the tensor data
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum mismatch"):
        VQCodec.from_weights(read_info(bad))
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(ModelError, match="not a vqcodec weights file"):
        read_info(tmp_path / "junk.safetensors")
    with pytest.raises(ModelError, match="no such weights file"):
        read_info(tmp_path / "absent.safetensors")


def test_unknown_names_and_levels():
    with pytest.raises(ModelError, match="unknown model"):
        find("no-such-model")
    name = shipped()[0].name
    with pytest.raises(ModelError, match="has no quality 99"):
        find(name, 99)


def test_shipped_models_carry_their_numbers():
    infos = shipped()
    assert infos, "the package ships at least one model"
    assert {i.family for i in infos} == {"vq", "ae", "vae"}
    for info in infos:
        assert info.path.stat().st_size < 20 * 2**20
        for key in ("kodak_bpp", "kodak_psnr", "kodak_ms_ssim", "kodak_encode_s", "kodak_decode_s"):
            assert key in info.metrics, (info.path.name, key)
        assert "training" in info.meta
        if info.family == "vq":
            assert {"vqvae_config", "prior_config"} <= set(info.meta) and "kodak_codebook_usage" in info.metrics
        else:
            assert info.meta["ae_config"]["hyper"] > 0 if info.family == "vae" else info.meta["ae_config"]["hyper"] == 0
    for family, count in (("vq", 7), ("ae", 8), ("vae", 8)):  # rate rises with the level, as --target-bpp assumes
        rates = [i.metrics["kodak_bpp"] for i in infos if i.family == family]
        assert len(rates) >= count and rates == sorted(rates)
    vq = [i for i in infos if i.family == "vq"]
    assert vq[0].metrics["kodak_bpp"] < 0.1 and vq[-1].metrics["kodak_bpp"] > 0.9  # the ladder spans 0.05-1 bpp
    for info in vq:  # dead codes are rate thrown away
        assert info.metrics["kodak_codebook_usage"] > 0.9, info.path.name


def test_every_shipped_level_round_trips_a_sample():
    import numpy as np
    from PIL import Image

    import vqcodec

    img = Image.open(Path(__file__).parent.parent / "samples" / "bsds-val-1.png").convert("RGB").crop((0, 0, 96, 80))
    for info in shipped():
        data = vqcodec.compress(img, model=info.name, quality=info.quality)
        out = vqcodec.decompress(data)
        assert out.size == img.size and vqcodec.format.unpack(data)[0].model_id == info.model_id
        assert np.abs(np.asarray(out, dtype=int) - np.asarray(img)).mean() < 30  # a trained model, not noise


def test_a_retired_model_names_the_release_that_decodes_its_files(tiny_codec, monkeypatch, tmp_path):
    from vqcodec import zoo
    from vqcodec.api import decompress

    data = tiny_codec.compress(torch.zeros(8, 8, 3, dtype=torch.uint8).numpy())
    retired = tmp_path / "retired.json"
    retired.write_text(
        json.dumps({"retired": {tiny_codec.info.model_id.hex(): {"family": "vq", "quality": 3, "version": "0.1.0"}}})
    )
    monkeypatch.setattr(zoo, "RETIRED_FILE", retired)
    monkeypatch.setattr(zoo, "shipped", lambda: ())
    zoo.retired.cache_clear()
    try:
        with pytest.raises(
            ModelError, match=r"vq q3 \(id [0-9a-f]{8}\), a model retired after vqcodec 0.1.0: .*vqcodec==0.1.0"
        ):
            decompress(data)
    finally:
        zoo.retired.cache_clear()


def test_every_retired_id_is_no_longer_shipped():
    from vqcodec.zoo import retired

    shipped_ids = {i.model_id.hex() for i in shipped()}
    assert all(len(bytes.fromhex(k)) == 4 for k in retired())
    assert not shipped_ids & set(retired())


def test_each_model_ships_in_a_release_after_the_ones_it_retired():
    # a retired id names the last release that decodes its files, so its successor must be newer
    from vqcodec import __version__
    from vqcodec.zoo import retired

    def release(text: str) -> tuple[int, ...]:
        return tuple(int(part) for part in text.split("."))

    last_retired = {}
    for old in retired().values():
        level = (old["family"], old["quality"])
        last_retired[level] = max(last_retired.get(level, ()), release(old["version"]))
    for info in shipped():
        shipped_in = release(info.meta.get("release", "0.1.0"))
        assert shipped_in <= release(__version__), info.path.name
        assert shipped_in > last_retired.get((info.family, info.quality), ()), info.path.name


def test_the_bfloat16_networks_stay_within_a_level_or_two_of_float32():
    """The speed path (encoder and decoder in bfloat16 but for their last layers) against float32,
    with the shipped default on a sample photo: same quality, near-identical indices and pixels."""
    import numpy as np
    from PIL import Image

    from vqcodec.codec import VQCodec
    from vqcodec.evaluation import psnr
    from vqcodec.zoo import find

    img = Image.open(Path(__file__).parent.parent / "samples" / "bsds-val-2.png").convert("RGB")
    codec = VQCodec.from_weights(find("vq"))  # not the API's cached codec: this test switches its precision
    out = {}
    for flag in (False, True):
        codec.bf16 = flag
        idx = codec.analyze(img)
        out[flag] = (idx, codec.synthesize(idx, img.height, img.width))
    (idx32, px32), (idx16, px16) = out[False], out[True]
    assert (idx32 == idx16).float().mean() > 0.97
    mixed = codec.synthesize(idx32, img.height, img.width).astype(int)  # the bf16 decoder on float32's indices
    assert np.abs(mixed - px32.astype(int)).max() <= 2
    ref = np.asarray(img)
    assert abs(psnr(ref, px16) - psnr(ref, px32)) < 0.05
