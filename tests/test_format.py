import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vqcodec.errors import BitstreamError
from vqcodec.format import MAGIC, VERSION, Header, pack, parse_header, unpack

HEADER = Header("vq", 3, bytes.fromhex("a1b2c3d4"), 768, 512, "RGB")


def test_round_trip_and_size():
    payload = bytes(range(256)) * 40
    data = pack(HEADER, payload)
    header, out = unpack(data)
    assert out == payload
    assert header == Header("vq", 3, bytes.fromhex("a1b2c3d4"), 768, 512, "RGB", len(payload))
    assert len(data) - len(payload) == 21  # Kodak-sized image: header within the 24-byte budget
    assert data[:4] == MAGIC + bytes([3])  # no chunks: the lowest version that describes it


@given(
    st.sampled_from(["vq", "ae", "vae"]),
    st.integers(0, 255),
    st.binary(min_size=4, max_size=4),
    st.integers(1, 2**31 - 1),
    st.integers(1, 2**31 - 1),
    st.sampled_from(["RGB", "L"]),
    st.binary(max_size=300),
)
def test_any_header_round_trips(family, quality, model_id, width, height, mode, payload):
    header = Header(family, quality, model_id, width, height, mode)
    got, out = unpack(pack(header, payload))
    assert out == payload and got == Header(family, quality, model_id, width, height, mode, len(payload))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: b"PNG" + d[3:], "bad magic"),
        (lambda d: d[:3] + bytes([99]) + d[4:], "unsupported .vqc format version 99"),
        (lambda d: d[:4] + bytes([77]) + d[5:], "unknown codec family"),
        (lambda d: d[:10] + bytes([9]) + d[11:], "unknown image mode"),
        (lambda d: d[:12], "truncated"),
        (lambda d: d[:-1], "truncated file"),
        (lambda d: d + b"x", "unexpected bytes"),
        (lambda d: d[:-1] + bytes([d[-1] ^ 1]), "checksum mismatch"),
        (lambda d: d[:6] + bytes([d[6] ^ 1]) + d[7:], "checksum mismatch"),
        (lambda d: b"", "bad magic"),
    ],
)
def test_errors_say_what_is_wrong(mutate, message):
    with pytest.raises(BitstreamError, match=message):
        unpack(mutate(pack(HEADER, b"payload!")))


@given(st.binary(max_size=64))
@settings(max_examples=500)
def test_arbitrary_bytes_raise_only_bitstream_error(data):
    try:
        unpack(data)
    except BitstreamError:
        pass


def test_zero_size_is_rejected():
    bad = bytearray(pack(HEADER, b""))
    bad[11:13] = b"\x00\x00"  # width varint 768 -> 0 (two bytes)
    with pytest.raises(BitstreamError, match="invalid image size"):
        parse_header(bytes(bad))
