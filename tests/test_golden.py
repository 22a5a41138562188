"""Bitstreams are forever: a file made by the shipped model must keep decoding the same way.

If this fails after a change, the change altered the format or the model: bump the format
version or ship the model under a new id, keep the old decoder path, and regenerate the golden
files with bin/make_golden.py only for the new version.
"""

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vqcodec
from vqcodec import entropy
from vqcodec.errors import ModelError
from vqcodec.format import unpack, varint

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("version", [1, 2])
def test_golden_file_decodes_to_the_same_indices_and_pixels(version):
    data = (DATA / f"golden-v{version}.vqc").read_bytes()
    header, payload = unpack(data)
    assert header.version == version
    codec = vqcodec.load_codec()
    assert codec.info.model_id == header.model_id, "the shipped default model changed: new id, new golden files"
    assert header.quality == codec.info.quality == 4
    idx = codec.read(payload, (header.height + 3) // 4, (header.width + 3) // 4, header.version)
    assert np.array_equal(idx.numpy(), np.load(DATA / f"golden-v{version}-indices.npy"))
    expected = np.asarray(Image.open(DATA / f"golden-v{version}-decoded.png").convert("RGB"), dtype=np.int16)
    int8 = codec.int8_decoder  # the decoder network in int8 where the CPU is fast at it (vqcodec.int8)
    try:
        codec.int8_decoder = None
        decoded = np.asarray(codec.decompress(data), dtype=np.int16)
    finally:
        codec.int8_decoder = int8
    assert np.abs(decoded - expected).max() <= 1  # the decoder network is float (bfloat16 where fast): within 1
    decoded = np.asarray(vqcodec.decompress(data), dtype=np.int16)
    assert np.abs(decoded - expected).mean() <= (0.1 if int8 is None else 1.0)  # int8: within a level on average


@pytest.mark.parametrize("version", [1, 2])
def test_golden_indices_reencode_to_the_same_payload(version):
    """The encoder side is pinned too: the same indices must give the same bytes."""
    header, payload = unpack((DATA / f"golden-v{version}.vqc").read_bytes())
    idx = torch.from_numpy(np.load(DATA / f"golden-v{version}-indices.npy").astype(np.int64))
    assert idx.shape == ((header.height + 3) // 4, (header.width + 3) // 4)
    codec = vqcodec.load_codec()
    if version == 1:
        assert entropy.encode_grid(codec.prior, idx) == payload
    else:
        assert (
            varint(codec.stripe_rows) + entropy.encode_grid(codec.prior, idx, stripe_rows=codec.stripe_rows) == payload
        )


BASELINE_GOLDEN = {"ae": 2, "vae": 2}  # each family's golden file of its shipped default model
# golden files of replaced baselines, named for the last release that decodes them (bin/make_golden.py)
RETIRED_GOLDEN = sorted(p.name for p in DATA.glob("golden-v*-retired-*.vqc"))


@pytest.mark.parametrize("family", ["ae", "vae"])
def test_baseline_golden_files_decode_to_the_same_latents_and_pixels(family):
    data = (DATA / f"golden-v{BASELINE_GOLDEN[family]}-{family}.vqc").read_bytes()
    header, payload = unpack(data)
    codec = vqcodec.load_codec(family)
    assert codec.info.model_id == header.model_id, f"the shipped default {family} model changed: new golden file"
    m = codec.multiple
    z_hat, y_hat, table = codec.read(payload, -(-header.height // m) * m, -(-header.width // m) * m)
    stem = DATA / f"golden-v{header.version}-{family}"
    assert np.array_equal(y_hat.numpy(), np.load(f"{stem}-latent.npy"))
    if z_hat is not None:
        assert np.array_equal(z_hat.numpy(), np.load(f"{stem}-side.npy"))
    decoded = np.asarray(vqcodec.decompress(data), dtype=np.int16)
    expected = np.asarray(Image.open(f"{stem}-decoded.png").convert("RGB"), dtype=np.int16)
    assert np.abs(decoded - expected).max() <= 1  # the synthesis network is float: within rounding
    assert codec.write(z_hat, y_hat, table) == payload  # the encoder's entropy coding is pinned too


def test_every_replaced_baseline_left_a_retired_golden_file():
    assert {name.split("-")[2] for name in RETIRED_GOLDEN} == {"ae", "vae"}


@pytest.mark.parametrize("name", RETIRED_GOLDEN)
def test_a_retired_baselines_file_names_the_release_that_decodes_it(name):
    release = name.removesuffix(".vqc").rsplit("-retired-", 1)[1]
    data = (DATA / name).read_bytes()
    with pytest.raises(ModelError, match=rf"retired after vqcodec {release}: .*vqcodec=={release}"):
        vqcodec.decompress(data)


def test_golden_version_4_file_keeps_its_colour_alpha_and_metadata():
    """Version 4 adds chunks: the colour payload is version 2's, byte for byte."""
    from PIL import ImageCms

    from vqcodec.format import unpack_file

    file = unpack_file((DATA / "golden-v4.vqc").read_bytes())
    assert (file.header.version, file.header.payload_layout, file.header.mode) == (4, 2, "RGBA")
    assert file.payload == unpack((DATA / "golden-v2.vqc").read_bytes())[1]
    decoded = vqcodec.decompress((DATA / "golden-v4.vqc").read_bytes())
    expected = Image.open(DATA / "golden-v4-decoded.png")
    assert decoded.mode == expected.mode == "RGBA"
    assert np.array_equal(np.asarray(decoded.getchannel("A")), np.asarray(expected.getchannel("A")))
    diff = np.abs(np.asarray(decoded, dtype=np.int16)[..., :3] - np.asarray(expected, dtype=np.int16)[..., :3])
    assert diff.mean() <= 1.0  # the decoder network as in the version-2 file's test
    profile = ImageCms.ImageCmsProfile(io.BytesIO(decoded.info["icc_profile"]))
    assert "sRGB" in ImageCms.getProfileDescription(profile) and len(decoded.info["icc_profile"]) == 588
    assert decoded.getexif()[0x010F] == "vqcodec golden"
    assert decoded.info["xmp"] == b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>'
