"""End-to-end checks with the shipped default model on the sample images."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vqcodec
from vqcodec.evaluation import psnr
from vqcodec.format import Header, pack, unpack

from .conftest import smooth_image

SAMPLE = Path(__file__).parent.parent / "samples" / "bsds-val-1.png"


def test_shipped_model_round_trip_on_a_sample():
    original = Image.open(SAMPLE).convert("RGB")
    data = vqcodec.compress(SAMPLE)
    out = vqcodec.decompress(data)
    assert out.size == original.size and out.mode == "RGB"
    bpp = 8 * len(data) / (original.width * original.height)
    quality = psnr(np.asarray(original), np.asarray(out))
    assert 0.05 < bpp < 1.5
    assert quality > 22.0  # a trained model, not noise


def test_inputs_of_every_kind_give_the_same_file():
    arr = np.asarray(Image.open(SAMPLE).convert("RGB"))
    data = vqcodec.compress(arr)
    assert vqcodec.compress(Image.fromarray(arr)) == data
    assert vqcodec.compress(str(SAMPLE)) == data


def test_load_codec_matches_module_functions():
    codec = vqcodec.load_codec()
    data = codec.compress(SAMPLE)
    assert data == vqcodec.compress(SAMPLE)
    assert np.array_equal(np.asarray(codec.decompress(data)), np.asarray(vqcodec.decompress(data)))


def test_decompress_refuses_what_it_cannot_decode():
    with pytest.raises(vqcodec.BitstreamError, match="expected bytes"):
        vqcodec.decompress("not bytes")
    data = vqcodec.compress(np.zeros((8, 8, 3), dtype=np.uint8))
    header, payload = unpack(data)
    stranger = pack(Header("vq", header.quality, b"\xde\xad\xbe\xef", 8, 8, "RGB"), payload)
    with pytest.raises(vqcodec.ModelError, match="unknown model"):
        vqcodec.decompress(stranger)
    assert issubclass(vqcodec.BitstreamError, vqcodec.VQCodecError)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error when no GPU is present")
def test_asking_for_a_missing_gpu_is_a_clear_error():
    with pytest.raises(vqcodec.ModelError, match="no CUDA GPU"):
        vqcodec.load_codec(device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_files_made_on_gpu_decode_identically_on_cpu():
    data = vqcodec.compress(SAMPLE, device="cuda")
    cpu = vqcodec.decompress(data, device="cpu")
    gpu = vqcodec.decompress(data, device="cuda")
    assert np.abs(np.asarray(cpu).astype(int) - np.asarray(gpu)).max() <= 1  # decoder convs, float rounding
    assert vqcodec.load_codec(device="cuda").prior.logits is not None


def test_target_bpp_picks_the_highest_level_at_or_under_the_target(tiny_ladder):
    img = smooth_image(64, 96)
    sizes = [8 * len(vqcodec.compress(img, quality=q, model="ladder")) / (64 * 96) for q in (1, 2, 3)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[2]
    for q, bpp in zip((1, 2, 3), sizes, strict=True):
        data = vqcodec.compress(img, model="ladder", target_bpp=bpp)
        assert unpack(data)[0].quality == q and 8 * len(data) / (64 * 96) <= bpp
        assert vqcodec.decompress(data).size == (96, 64)  # the file names its level
    between = vqcodec.compress(img, model="ladder", target_bpp=(sizes[0] + sizes[1]) / 2)
    assert unpack(between)[0].quality == 1
    with pytest.raises(vqcodec.VQCodecError, match="cannot reach"):
        vqcodec.compress(img, model="ladder", target_bpp=sizes[0] * 0.5)
    with pytest.raises(vqcodec.VQCodecError, match="not both"):
        vqcodec.compress(img, model="ladder", quality=1, target_bpp=1.0)


def test_decompress_with_a_named_model_finds_the_level_by_id(tiny_ladder):
    img = smooth_image(32, 48)
    data = vqcodec.compress(img, model="ladder", quality=3)
    expected = np.asarray(vqcodec.decompress(data))
    assert np.array_equal(np.asarray(vqcodec.decompress(data, model="ladder")), expected)
    header, payload = unpack(data)
    renumbered = pack(Header(header.family, 1, header.model_id, header.width, header.height, header.mode), payload)
    assert np.array_equal(np.asarray(vqcodec.decompress(renumbered, model="ladder")), expected)  # the id decides
    stranger = pack(Header(header.family, 3, b"\xde\xad\xbe\xef", header.width, header.height, header.mode), payload)
    with pytest.raises(vqcodec.BitstreamError, match="not by this codec"):
        vqcodec.decompress(stranger, model="ladder")
