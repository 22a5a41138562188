"""The .vqc container: a small header followed by the range-coded payload.

Layout (all integers little-endian; "varint" is LEB128, at most 5 bytes):

    offset  size  field
    0       3     magic b"VQC"
    3       1     format version (this module reads 1..VERSION)
    4       1     codec family (1 = vq, 2 = ae, 3 = vae)
    5       1     quality level
    6       4     model id: first 4 bytes of the SHA-256 of the model's tensors
    10      1     image mode (0 = RGB, 1 = L)
    11      var   width, height, payload length (three varints)
    ...     4     CRC-32 of every header byte before it and of the payload
    ...     n     payload

A Kodak-sized image has a 21-byte header. See docs/FORMAT.md.
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
VERSION = 3
MODES = ("RGB", "L")
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
    version: int = VERSION

    @property
    def pixels(self) -> int:
        return self.width * self.height


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


def pack(header: Header, payload: bytes) -> bytes:
    """Serialize a header and payload into .vqc bytes."""
    family = {v: k for k, v in FAMILIES.items()}[header.family]
    if len(header.model_id) != 4:
        raise ValueError("model_id must be 4 bytes")
    if not (0 < header.width <= MAX_DIMENSION and 0 < header.height <= MAX_DIMENSION):
        raise ValueError("image dimensions out of range")
    head = (
        MAGIC
        + bytes([header.version, family, header.quality])
        + header.model_id
        + bytes([MODES.index(header.mode)])
        + varint(header.width)
        + varint(header.height)
        + varint(len(payload))
    )
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + struct.pack("<I", crc) + payload


def parse_header(data: bytes) -> tuple[Header, int]:
    """Parse and validate the header fields (not the checksum) -> (header, header size)."""
    if len(data) < 4 or data[:3] != MAGIC:
        raise BitstreamError("not a .vqc file: bad magic bytes")
    if not 1 <= data[3] <= VERSION:
        raise BitstreamError(f"unsupported .vqc format version {data[3]} (this decoder reads versions 1 to {VERSION})")
    if len(data) < 11:
        raise BitstreamError("truncated header")
    if data[4] not in FAMILIES:
        raise BitstreamError(f"unknown codec family {data[4]}")
    if data[10] >= len(MODES):
        raise BitstreamError(f"unknown image mode {data[10]}")
    width, pos = read_varint(data, 11, "width")
    height, pos = read_varint(data, pos, "height")
    length, pos = read_varint(data, pos, "payload length")
    if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
        raise BitstreamError(f"invalid image size {width}x{height}")
    header = Header(FAMILIES[data[4]], data[5], bytes(data[6:10]), width, height, MODES[data[10]], length, data[3])
    return header, pos + 4


def unpack(data: bytes) -> tuple[Header, bytes]:
    """Parse .vqc bytes (bytes, bytearray or memoryview) -> (header, payload), checking length and CRC-32."""
    data = bytes(data)
    header, start = parse_header(data)
    if len(data) < start:
        raise BitstreamError("truncated header: checksum is cut off")
    end = start + header.payload_length
    if len(data) < end:
        raise BitstreamError(f"truncated file: payload has {len(data) - start} of {header.payload_length} bytes")
    if len(data) > end:
        raise BitstreamError(f"{len(data) - end} unexpected bytes after the payload")
    payload = data[start:end]
    (crc,) = struct.unpack("<I", data[start - 4 : start])
    if zlib.crc32(payload, zlib.crc32(data[: start - 4])) != crc:
        raise BitstreamError("checksum mismatch: the file is corrupt")
    return header, payload
