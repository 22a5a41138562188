import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vqcodec.errors import BitstreamError
from vqcodec.format import (
    MAGIC,
    MAX_CHUNK_BYTES,
    Chunk,
    Header,
    pack,
    parse_header,
    unpack,
    unpack_file,
)

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


V4 = Header("vae", 3, bytes.fromhex("a1b2c3d4"), 64, 48, "RGBA", version=4, layout=2)
CHUNKS = (Chunk(b"ICCP", b"profile"), Chunk(b"ALPH", bytes([0, 255])))


@given(
    st.sampled_from(["RGB", "L", "RGBA", "LA"]),
    st.integers(1, 3),
    st.lists(st.tuples(st.binary(min_size=4, max_size=4), st.binary(max_size=200)), max_size=5),
    st.binary(max_size=100),
)
def test_any_version_4_file_round_trips(mode, layout, chunks, payload):
    header = Header("vq", 1, b"\x00\x01\x02\x03", 17, 9, mode, version=4, layout=layout)
    chunks = tuple(Chunk(kind, data) for kind, data in chunks)
    file = unpack_file(pack(header, payload, chunks))
    assert file.payload == payload and file.chunks == chunks
    assert file.header.mode == mode and file.header.payload_layout == layout and file.header.chunk_count == len(chunks)


def chunk_start(data: bytes) -> int:
    header, start = parse_header(data)
    return start + header.payload_length


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d[:-1], "truncated file: chunk b'ALPH'"),
        (lambda d: d[: chunk_start(d) + 2], "truncated file: chunk 1 of 2"),
        (lambda d: d + b"\x00", "unexpected bytes after the chunks"),
        (lambda d: d[:-5] + bytes([d[-5] ^ 1]) + d[-4:], "checksum mismatch: chunk b'ALPH'"),
        (lambda d: d[: chunk_start(d)] + b"ICCQ" + d[chunk_start(d) + 4 :], "checksum mismatch: chunk b'ICCQ'"),
        (lambda d: d[:11] + bytes([9]) + d[12:], "unknown payload layout 9"),
        (lambda d: d[:3] + bytes([3]) + d[4:10] + bytes([2]) + d[11:], "unknown image mode 2"),
    ],
)
def test_chunk_errors_say_what_is_wrong(mutate, message):
    with pytest.raises(BitstreamError, match=message.replace("(", r"\(")):
        unpack_file(mutate(pack(V4, b"payload!", CHUNKS)))


def test_more_than_16_mib_of_chunks_is_refused(monkeypatch):
    from vqcodec import format as vqc_format

    with pytest.raises(ValueError, match="16 MiB"):
        pack(V4, b"", (Chunk(b"XMP ", bytes(MAX_CHUNK_BYTES)), Chunk(b"EXIF", b"x")))
    data = pack(V4, b"", (Chunk(b"XMP ", bytes(60)), Chunk(b"EXIF", bytes(60))))
    monkeypatch.setattr(vqc_format, "MAX_CHUNK_BYTES", 100)  # the same bound, scaled down
    with pytest.raises(BitstreamError, match="more than 0 MiB of chunk data"):
        unpack_file(data)


def test_chunks_and_the_new_modes_need_version_4():
    with pytest.raises(ValueError, match="version 4"):
        pack(HEADER, b"", CHUNKS)
    with pytest.raises(ValueError, match="version 4"):
        pack(Header("vq", 3, HEADER.model_id, 8, 8, "LA"), b"")
