"""The .vqc container: a small header followed by the range-coded payload.

Layout (all integers little-endian; "varint" is LEB128, at most 5 bytes):

    offset  size  field
    0       3     magic b"VQC"
    3       1     format version (this module reads 1..VERSION)
    4       1     codec family (1 = vq, 2 = ae, 3 = vae)
    5       1     quality level
    6       4     model id: first 4 bytes of the SHA-256 of the model's tensors
    10      1     image mode (0 = RGB, 1 = L; version 4: 2 = RGBA, 3 = LA)
    11      1     version 4 only: the payload's layout (the version that describes it alone, 1..3)
    ...     var   width, height, payload length (three varints); version 4: the number of chunks
    ...     4     CRC-32 of every header byte before it and of the payload
    ...     n     payload
    version 4: that many chunks, each
            4     type (ASCII: ICCP, EXIF, XMP\x20, ALPH; a reader skips types it does not know)
            var   data length
            n     data
            4     CRC-32 of the type and the data

A Kodak-sized image has a 21-byte header. Files are written with the lowest version that
describes them: version 4 only for a file with chunks (metadata, alpha). See docs/FORMAT.md.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from vqcodec.errors import BitstreamError

MAGIC = b"VQC"
# 2: the vq payload codes its index grid in independent stripes; 3: each index as its group, then
# its member (a prior with groups; see docs/FORMAT.md). Files are written with the lowest version
# that describes them, so a file that an older release can read stays readable there.
# 4: chunks after the payload (colour profile, EXIF, XMP, alpha; vqcodec.metadata).
VERSION = 4
MODES = ("RGB", "L", "RGBA", "LA")
MODES_BEFORE_CHUNKS = 2  # versions 1-3 know RGB and L only
MAX_CHUNK_BYTES = 16 << 20  # all chunks' data together: more is refused as corrupt
FAMILIES = {1: "vq", 2: "ae", 3: "vae"}
MAX_DIMENSION = (1 << 31) - 1
MAX_PAYLOAD = (1 << 34) - 1


@dataclass(frozen=True)
class Header:
    """Everything a decoder needs to know before reading the payload."""

    family: str
    quality: int
    model_id: bytes
    width: int
    height: int
    mode: str
    payload_length: int = 0
    version: int = 3
    layout: int = 0  # the payload's layout version (0: the file's version)
    chunk_count: int = 0

    @property
    def pixel_count(self) -> int:
        return self.width * self.height

    @property
    def payload_layout(self) -> int:
        """The version whose payload layout the payload has (a version-4 file names it)."""
        return self.layout or self.version


@dataclass(frozen=True)
class Chunk:
    """One typed block after the payload (version 4): metadata or the alpha plane."""

    kind: bytes
    data: bytes


@dataclass(frozen=True)
class Container:
    """A parsed .vqc file: its header, payload and chunks, checked."""

    header: Header
    payload: bytes
    chunks: tuple[Chunk, ...] = ()


def varint(n: int) -> bytes:
    """Unsigned LEB128."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(data: bytes, pos: int, name: str) -> tuple[int, int]:
    """(value, position after it) of the unsigned LEB128 at ``pos`` (at most 5 bytes)."""
    value = 0
    for shift in range(0, 35, 7):
        if pos >= len(data):
            raise BitstreamError(f"truncated: {name} is cut off")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise BitstreamError(f"corrupt: {name} is longer than 5 bytes")


def pack(header: Header, payload: bytes, chunks: tuple[Chunk, ...] | list[Chunk] = ()) -> bytes:
    """Serialize a header, payload and chunks into .vqc bytes (chunks need version 4)."""
    family = {v: k for k, v in FAMILIES.items()}[header.family]
    if len(header.model_id) != 4:
        raise ValueError("model_id must be 4 bytes")
    if not (0 < header.width <= MAX_DIMENSION and 0 < header.height <= MAX_DIMENSION):
        raise ValueError("image dimensions out of range")
    chunked = header.version >= 4
    if (chunks and not chunked) or (MODES.index(header.mode) >= MODES_BEFORE_CHUNKS and not chunked):
        raise ValueError(f"chunks and the {header.mode} mode need format version 4")
    if chunked and not 1 <= header.layout < 4:
        raise ValueError(f"a version-4 header names its payload's layout (1 to 3), not {header.layout}")
    if sum(len(c.data) for c in chunks) > MAX_CHUNK_BYTES:
        raise ValueError(f"more than {MAX_CHUNK_BYTES >> 20} MiB of chunk data")
    head = (
        MAGIC
        + bytes([header.version, family, header.quality])
        + header.model_id
        + bytes([MODES.index(header.mode)])
        + (bytes([header.layout]) if chunked else b"")
        + varint(header.width)
        + varint(header.height)
        + varint(len(payload))
        + (varint(len(chunks)) if chunked else b"")
    )
    crc = zlib.crc32(payload, zlib.crc32(head))
    body = b"".join(pack_chunk(c) for c in chunks)
    return head + struct.pack("<I", crc) + payload + body


def pack_chunk(chunk: Chunk) -> bytes:
    """A chunk's bytes: type, data length, data, CRC-32 of type and data."""
    if len(chunk.kind) != 4:
        raise ValueError(f"chunk type {chunk.kind!r} is not 4 bytes")
    return (
        chunk.kind
        + varint(len(chunk.data))
        + chunk.data
        + struct.pack("<I", zlib.crc32(chunk.data, zlib.crc32(chunk.kind)))
    )


def parse_header(data: bytes) -> tuple[Header, int]:
    """Parse and validate the header fields (not the checksum) -> (header, header size)."""
    if len(data) < 4 or data[:3] != MAGIC:
        raise BitstreamError("not a .vqc file: bad magic bytes")
    version = data[3]
    if not 1 <= version <= VERSION:
        raise BitstreamError(f"unsupported .vqc format version {version} (this decoder reads versions 1 to {VERSION})")
    if len(data) < (12 if version >= 4 else 11):
        raise BitstreamError("truncated header")
    if data[4] not in FAMILIES:
        raise BitstreamError(f"unknown codec family {data[4]}")
    if data[10] >= (len(MODES) if version >= 4 else MODES_BEFORE_CHUNKS):
        raise BitstreamError(f"unknown image mode {data[10]}")
    layout, pos = 0, 11
    if version >= 4:
        layout, pos = data[11], 12
        if not 1 <= layout < 4:
            raise BitstreamError(f"unknown payload layout {layout}")
    width, pos = read_varint(data, pos, "width")
    height, pos = read_varint(data, pos, "height")
    length, pos = read_varint(data, pos, "payload length")
    chunks = 0
    if version >= 4:
        chunks, pos = read_varint(data, pos, "chunk count")
    if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
        raise BitstreamError(f"invalid image size {width}x{height}")
    mode = MODES[data[10]]
    header = Header(FAMILIES[data[4]], data[5], bytes(data[6:10]), width, height, mode, length, version, layout, chunks)
    return header, pos + 4


def unpack_chunks(data: bytes, pos: int, count: int) -> tuple[Chunk, ...]:
    """``count`` chunks from ``pos`` to the end of ``data``, each checked; at most MAX_CHUNK_BYTES of data."""
    chunks, total = [], 0
    for n in range(count):
        if len(data) < pos + 5:
            raise BitstreamError(f"truncated file: chunk {n + 1} of {count} is cut off")
        kind = data[pos : pos + 4]
        length, pos = read_varint(data, pos + 4, f"chunk {kind!r} length")
        total += length
        if total > MAX_CHUNK_BYTES:
            raise BitstreamError(f"corrupt: more than {MAX_CHUNK_BYTES >> 20} MiB of chunk data")
        end = pos + length
        if len(data) < end + 4:
            raise BitstreamError(f"truncated file: chunk {kind!r} has {max(0, len(data) - pos)} of {length + 4} bytes")
        body = data[pos:end]
        (crc,) = struct.unpack("<I", data[end : end + 4])
        if zlib.crc32(body, zlib.crc32(kind)) != crc:
            raise BitstreamError(f"checksum mismatch: chunk {kind!r} is corrupt")
        chunks.append(Chunk(kind, body))
        pos = end + 4
    if len(data) > pos:
        raise BitstreamError(f"{len(data) - pos} unexpected bytes after the {'chunks' if count else 'payload'}")
    return tuple(chunks)


def unpack_file(data: bytes) -> Container:
    """Parse .vqc bytes (bytes, bytearray or memoryview), checking lengths and CRC-32s."""
    data = bytes(data)
    header, start = parse_header(data)
    if len(data) < start:
        raise BitstreamError("truncated header: checksum is cut off")
    end = start + header.payload_length
    if len(data) < end:
        raise BitstreamError(f"truncated file: payload has {len(data) - start} of {header.payload_length} bytes")
    payload = data[start:end]
    (crc,) = struct.unpack("<I", data[start - 4 : start])
    if zlib.crc32(payload, zlib.crc32(data[: start - 4])) != crc:
        raise BitstreamError("checksum mismatch: the file is corrupt")
    return Container(header, payload, unpack_chunks(data, end, header.chunk_count))


def unpack(data: bytes) -> tuple[Header, bytes]:
    """Parse .vqc bytes -> (header, payload), checking lengths and CRC-32s (chunks too)."""
    container = unpack_file(data)
    return container.header, container.payload
