"""One input to one output, the same for the command line and for Ray workers (``vqcodec.ray``),
so that a file is byte for byte the same whichever of them made it."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from vqcodec.api import compress_to_rate, decompress, load_codec
from vqcodec.codec import MAX_PIXELS, Codec
from vqcodec.errors import VQCodecError
from vqcodec.format import parse_header
from vqcodec.images import open_image, prepare
from vqcodec.metadata import save_image


@dataclass(frozen=True)
class Compressed:
    """A .vqc file made from one input, and what the job reports of it."""

    vqc: bytes
    width: int
    height: int
    model: str  # family and level, e.g. "vq q4"

    @property
    def bpp(self) -> float:
        return 8 * len(self.vqc) / (self.width * self.height)


@dataclass(frozen=True)
class CompressOptions:
    """How a job compresses: the model, one of a quality level or a target rate, and metadata."""

    model: str = "vq"
    quality: int | None = None
    target_bpp: float | None = None
    refine: int = 0
    strip: bool = False
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.target_bpp is not None and self.quality is not None:
            raise VQCodecError("give -q/--quality or --target-bpp, not both")

    def codec(self) -> Codec | None:
        """The codec of a job at one quality level (loaded once per process), or None for a target rate."""
        return load_codec(self.model, self.quality, self.device) if self.target_bpp is None else None


def compress_one(source: bytes | str, name: str, options: CompressOptions, codec: Codec | None) -> Compressed:
    """An image file's bytes (or its path) -> its .vqc file. ``codec``: ``options.codec()``."""
    image = open_image(io.BytesIO(source), name) if isinstance(source, bytes) else open_image(source, name)
    prepared = prepare(image, strip=options.strip)
    if codec is not None:
        data = codec.compress(prepared, options.refine)
    else:
        data = compress_to_rate(prepared, options.target_bpp, options.model, options.device, options.refine)
    header, _ = parse_header(data)
    return Compressed(data, header.width, header.height, f"{header.family} q{header.quality}")


@dataclass(frozen=True)
class Decompressed:
    """An image file decoded from one .vqc file."""

    data: bytes
    width: int
    height: int
    mode: str


def image_format(suffix: str) -> str:
    """The Pillow format of an output file's suffix (.png, .jpg, .webp, .tiff, ...)."""
    fmt = Image.registered_extensions().get(suffix.lower())
    if fmt is None:
        raise VQCodecError(f"unknown image format {suffix!r} (use .png, .jpg, .webp, .tiff, ...)")
    return fmt


def decompress_one(
    vqc: bytes, fmt: str, device: str = "cpu", model: str | None = None, max_pixels: int | None = MAX_PIXELS
) -> Decompressed:
    """A .vqc file's bytes -> an image file of Pillow format ``fmt``, with its metadata."""
    img = decompress(vqc, max_pixels=max_pixels, device=device, model=model)
    try:
        data = save_image(img, fmt)
    except (KeyError, ValueError, OSError) as e:
        raise VQCodecError(f"cannot write this image as {fmt} ({e})") from e
    return Decompressed(data, img.width, img.height, img.mode)
