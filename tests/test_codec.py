import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from vqcodec import codec as codec_module
from vqcodec.errors import BitstreamError
from vqcodec.format import Header, pack, unpack

from .conftest import smooth_image


def reference_indices(tiny_codec, arr: np.ndarray) -> torch.Tensor:
    """Whole-image encoder pass (no bands), for comparison."""
    x = torch.from_numpy(arr).permute(2, 0, 1)[None].float()
    x = torch.nn.functional.pad(x, (0, -x.shape[3] % 4, 0, -x.shape[2] % 4), mode="replicate") / 255
    with torch.no_grad():
        return tiny_codec.vqvae.encode(x)[0]


@pytest.mark.parametrize("size", [(1, 1), (5, 3), (17, 31), (64, 48), (1, 5000), (5000, 1)])
def test_round_trip_any_size(tiny_codec, size):
    w, h = size
    arr = smooth_image(h, w)
    data = tiny_codec.compress(arr)
    out = tiny_codec.decompress(data)
    assert out.size == (w, h) and out.mode == "RGB"
    header, _ = unpack(data)
    assert (header.width, header.height) == (w, h)
    # the decoder reproduces exactly what the VQ-VAE decodes from the encoder's indices
    idx = tiny_codec.analyze(Image.fromarray(arr))
    assert np.array_equal(np.asarray(out), tiny_codec.synthesize(idx, h, w))


def test_grayscale_decodes_as_grayscale(tiny_codec):
    gray = Image.fromarray(smooth_image(20, 24)[..., 0])
    out = tiny_codec.decompress(tiny_codec.compress(gray))
    assert out.mode == "L" and out.size == (24, 20)


def test_bands_give_the_same_indices_and_pixels_as_one_pass(tiny_codec, monkeypatch):
    arr = smooth_image(150, 70, seed=3)
    monkeypatch.setattr(codec_module, "BAND_ROWS", 5)
    banded = tiny_codec.analyze(Image.fromarray(arr))
    assert len(codec_module.bands(banded.shape[0])) > 3
    assert (banded == reference_indices(tiny_codec, arr)).float().mean() > 0.999  # float ties aside
    pixels_banded = tiny_codec.synthesize(banded, 150, 70)
    monkeypatch.setattr(codec_module, "BAND_ROWS", 10_000)
    pixels_whole = tiny_codec.synthesize(banded, 150, 70)
    assert np.abs(pixels_banded.astype(int) - pixels_whole).max() <= 1


def test_rate_is_whole_file_bytes(tiny_codec):
    arr = smooth_image(40, 40)
    data = tiny_codec.compress(arr)
    _header, payload = unpack(data)
    assert len(data) == len(payload) + 18  # 11 fixed bytes, three 1-byte varints, CRC-32


def test_files_from_another_model_are_refused(tiny_codec):
    data = tiny_codec.compress(smooth_image(8, 8))
    header, payload = unpack(data)
    other = pack(Header(header.family, header.quality, b"\0\0\0\0", header.width, header.height, "RGB"), payload)
    with pytest.raises(BitstreamError, match="not by this codec"):
        tiny_codec.decompress(other)


def test_decompression_bomb_is_refused_before_decoding(tiny_codec):
    header = Header("vq", 1, tiny_codec.info.model_id, 100_000, 100_000, "RGB")
    with pytest.raises(BitstreamError, match="exceeds the limit"):
        tiny_codec.decompress(pack(header, b"\0" * 8))
    with pytest.raises(BitstreamError, match="exceeds the limit"):
        tiny_codec.decompress(pack(Header("vq", 1, tiny_codec.info.model_id, 64, 64, "RGB"), b""), max_pixels=100)


def test_garbage_payload_with_valid_header_decodes_or_raises_bitstream_error(tiny_codec):
    rng = np.random.default_rng(0)
    for n in (0, 3, 4, 8, 64):
        data = pack(Header("vq", 1, tiny_codec.info.model_id, 16, 12, "RGB"), rng.bytes(n))
        try:
            img = tiny_codec.decompress(data)
        except BitstreamError:
            continue
        assert img.size == (16, 12)


@pytest.fixture(scope="module")
def valid_file(tiny_codec) -> bytes:
    return tiny_codec.compress(smooth_image(20, 28, seed=9))


def decode_or_bitstream_error(tiny_codec, data: bytes) -> None:
    """The contract for hostile input: an image of the size the header claims, or BitstreamError."""
    try:
        img = tiny_codec.decompress(data, max_pixels=1 << 16)
    except BitstreamError:
        return
    header, _ = unpack(data)
    assert img.size == (header.width, header.height)


@given(st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzz_mutations_of_a_valid_file(tiny_codec, valid_file, data):
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
        buf = bytearray(pack(Header(header.family, header.quality, header.model_id, w, h, "RGB"), garbage))
    decode_or_bitstream_error(tiny_codec, bytes(buf))
