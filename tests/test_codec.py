import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vqcodec import codec as codec_module
from vqcodec import entropy
from vqcodec.errors import BitstreamError
from vqcodec.format import Header, pack, unpack

from .conftest import smooth_image


def reference_indices(codec, arr: np.ndarray) -> torch.Tensor:
    """Whole-image encoder pass (no bands), for comparison."""
    x = codec_module.image_tensor(Image.fromarray(arr), codec.multiple)
    with torch.no_grad():
        return codec.analysis(x)[0]


SIZES = [(1, 1), (5, 3), (17, 31), (64, 48), (1, 5000), (5000, 1), (130, 200)]


@pytest.mark.parametrize("size", SIZES)
def test_vq_round_trip_any_size(tiny_vq, size):
    w, h = size
    arr = smooth_image(h, w)
    data = tiny_vq.compress(arr)
    out = tiny_vq.decompress(data)
    assert out.size == (w, h) and out.mode == "RGB"
    header, _ = unpack(data)
    assert (header.width, header.height, header.family) == (w, h, "vq")
    # the decoder reproduces exactly what the VQ-VAE decodes from the encoder's indices
    idx = tiny_vq.analyze(Image.fromarray(arr))
    f = tiny_vq.multiple
    assert idx.shape == (-(-h // f), -(-w // f))
    assert np.array_equal(np.asarray(out), tiny_vq.synthesize(idx, h, w))


@pytest.mark.parametrize("family", ["ae", "vae"])
@pytest.mark.parametrize("size", SIZES)
def test_baseline_round_trip_any_size(tiny_baselines, family, size):
    codec = tiny_baselines[family]
    w, h = size
    arr = smooth_image(h, w)
    data = codec.compress(arr)
    out = codec.decompress(data)
    assert out.size == (w, h) and out.mode == "RGB"
    header, _ = unpack(data)
    assert (header.width, header.height, header.family) == (w, h, family)
    # the decoder reproduces exactly what the synthesis transform makes of the encoder's latent
    _, y_hat, _ = codec.quantize(codec_module.image_tensor(Image.fromarray(arr), codec.multiple))
    assert np.array_equal(np.asarray(out), codec.reconstruct(y_hat)[:, :h, :w].permute(1, 2, 0).numpy())


def test_baseline_latents_use_several_symbols(tiny_baselines):
    for codec in tiny_baselines.values():
        _, y_hat, _ = codec.quantize(codec_module.image_tensor(Image.fromarray(smooth_image(64, 64)), codec.multiple))
        assert len(y_hat.unique()) > 3  # so the round trips above exercise real coding, not all-zero latents


def test_baseline_bands_give_the_same_latent_and_pixels_as_one_pass(tiny_baselines, monkeypatch):
    codec = tiny_baselines["vae"]
    x = codec_module.image_tensor(Image.fromarray(smooth_image(300, 70, seed=3)), codec.multiple)
    monkeypatch.setattr(codec_module, "BASELINE_BAND_ROWS", 3)
    _, banded, _ = codec.quantize(x)
    pixels_banded = codec.reconstruct(banded)
    assert len(codec_module.bands(banded.shape[2], 3, 4)) > 3
    monkeypatch.setattr(codec_module, "BASELINE_BAND_ROWS", 10_000)
    _, whole, _ = codec.quantize(x)
    assert (banded == whole).float().mean() > 0.999  # float ties aside
    assert (pixels_banded.int() - codec.reconstruct(banded).int()).abs().max() <= 1


def test_grayscale_decodes_as_grayscale(any_codec):
    gray = Image.fromarray(smooth_image(20, 24)[..., 0])
    out = any_codec.decompress(any_codec.compress(gray))
    assert out.mode == "L" and out.size == (24, 20)


def test_bands_give_the_same_indices_and_pixels_as_one_pass(tiny_vq, monkeypatch):
    arr = smooth_image(300, 70, seed=3)
    monkeypatch.setattr(codec_module, "BAND_PIXELS", 1)  # bands of 8 rows
    banded = tiny_vq.analyze(Image.fromarray(arr))
    assert len(codec_module.bands(banded.shape[0], codec_module.band_rows(banded.shape[1], tiny_vq.multiple))) > 3
    assert (banded == reference_indices(tiny_vq, arr)).float().mean() > 0.999  # float ties aside
    pixels_banded = tiny_vq.synthesize(banded, 300, 70)
    monkeypatch.setattr(codec_module, "BAND_PIXELS", 10**9)
    pixels_whole = tiny_vq.synthesize(banded, 300, 70)
    assert np.abs(pixels_banded.astype(int) - pixels_whole).max() <= 1


def test_rate_is_whole_file_bytes(any_codec):
    arr = smooth_image(40, 40)
    data = any_codec.compress(arr)
    _header, payload = unpack(data)
    assert len(data) == len(payload) + 18  # 11 fixed bytes, three 1-byte varints, CRC-32


def test_files_from_another_model_are_refused(any_codec):
    data = any_codec.compress(smooth_image(8, 8))
    header, payload = unpack(data)
    other = pack(Header(header.family, header.quality, b"\0\0\0\0", header.width, header.height, "RGB"), payload)
    with pytest.raises(BitstreamError, match="not by this codec"):
        any_codec.decompress(other)


def test_decompression_bomb_is_refused_before_decoding(any_codec):
    family, model_id = any_codec.family, any_codec.info.model_id
    with pytest.raises(BitstreamError, match="exceeds the limit"):
        any_codec.decompress(pack(Header(family, 1, model_id, 100_000, 100_000, "RGB"), b"\0" * 8))
    with pytest.raises(BitstreamError, match="exceeds the limit"):
        any_codec.decompress(pack(Header(family, 1, model_id, 64, 64, "RGB"), b""), max_pixels=100)


def test_garbage_payload_with_valid_header_decodes_or_raises_bitstream_error(any_codec):
    rng = np.random.default_rng(0)
    for n in (0, 3, 4, 8, 64):
        data = pack(Header(any_codec.family, 1, any_codec.info.model_id, 16, 12, "RGB"), rng.bytes(n))
        try:
            img = any_codec.decompress(data)
        except BitstreamError:
            continue
        assert img.size == (16, 12)


def decode_or_bitstream_error(codec, data: bytes) -> None:
    """The contract for hostile input: an image of the size the header claims, or BitstreamError."""
    try:
        img = codec.decompress(data, max_pixels=1 << 16)
    except BitstreamError:
        return
    header, _ = unpack(data)
    assert img.size == (header.width, header.height)


@given(st.data())
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzz_mutations_of_a_valid_file(any_codec, data):
    valid_file = any_codec.compress(smooth_image(20, 28, seed=9))
    kind = data.draw(st.sampled_from(["truncate", "flip", "splice", "random", "garbage payload"]))
    buf = bytearray(valid_file)
    if kind == "truncate":
        buf = buf[: data.draw(st.integers(0, len(buf) - 1))]
    elif kind == "flip":
        for pos in data.draw(st.lists(st.integers(0, len(buf) * 8 - 1), min_size=1, max_size=8)):
            buf[pos // 8] ^= 1 << (pos % 8)
    elif kind == "splice":
        cut = data.draw(st.integers(0, len(buf)))
        buf = buf[:cut] + data.draw(st.binary(max_size=40)) + buf[cut:]
    elif kind == "random":
        buf = bytearray(data.draw(st.binary(max_size=200)))
    else:  # a valid header and checksum around a garbage payload
        header, _ = unpack(valid_file)
        w, h = data.draw(st.integers(1, 200)), data.draw(st.integers(1, 200))
        garbage = data.draw(st.binary(max_size=100))
        buf = bytearray(pack(dataclasses.replace(header, width=w, height=h, mode="RGB"), garbage))
    decode_or_bitstream_error(any_codec, bytes(buf))


def test_version_1_files_still_decode(tiny_vq):
    """Format version 1 coded the whole grid as one stripe, with no stripe height in the payload."""
    from vqcodec.format import read_varint

    img = smooth_image(70, 90)
    data = tiny_vq.compress(img)
    header, payload = unpack(data)
    assert header.version == 2 and read_varint(payload, 0, "stripe height")[0] == tiny_vq.stripe_rows
    idx = tiny_vq.analyze(Image.fromarray(img))
    old = pack(dataclasses.replace(header, version=1), entropy.encode_grid(tiny_vq.prior, idx))
    assert np.array_equal(np.asarray(tiny_vq.decompress(old)), np.asarray(tiny_vq.decompress(data)))


def test_a_stripe_height_of_zero_is_refused(tiny_codec):
    header, payload = unpack(tiny_codec.compress(smooth_image(16, 16)))
    with pytest.raises(BitstreamError, match="stripe height 0"):
        tiny_codec.decompress(pack(header, b"\0" + payload[1:]))


def test_a_prior_with_groups_writes_format_version_3_and_one_without_keeps_version_2(tiny_codec, tiny_grouped):
    img = smooth_image(40, 56)
    grouped = tiny_grouped.compress(img)
    assert unpack(grouped)[0].version == 3 and unpack(tiny_codec.compress(img))[0].version == 2
    assert np.array_equal(
        np.asarray(tiny_grouped.decompress(grouped)), np.asarray(tiny_codec.decompress(tiny_codec.compress(img)))
    )


@pytest.mark.parametrize("version", [1, 2])
def test_a_version_that_does_not_match_the_prior_is_refused(tiny_grouped, version):
    header, payload = unpack(tiny_grouped.compress(smooth_image(16, 16)))
    with pytest.raises(BitstreamError, match=f"format version {version} does not match"):
        tiny_grouped.decompress(pack(dataclasses.replace(header, version=version), payload))
