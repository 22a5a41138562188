"""The Python API: compress, decompress and load_codec, with loaded models cached."""

from __future__ import annotations

from functools import lru_cache

import torch
from PIL import Image

from vqcodec.codec import MAX_PIXELS, BaselineCodec, Codec, VQCodec
from vqcodec.errors import BitstreamError, ModelError, VQCodecError
from vqcodec.format import unpack_file
from vqcodec.images import ImageLike, Prepared, prepare
from vqcodec.zoo import DEFAULT_MODEL, WeightsInfo, find, find_by_id, levels, missing_model_error

CODECS = {"vq": VQCodec, "ae": BaselineCodec, "vae": BaselineCodec}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """ "cpu", "cuda" or None (cuda when available); asking for a missing GPU is an error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' was asked for but no CUDA GPU is available")
    return device


@lru_cache(maxsize=8)
def _load(info: WeightsInfo, device: torch.device) -> Codec:
    if info.family not in CODECS:
        raise ModelError(f"{info.path}: unsupported codec family {info.family!r}")
    return CODECS[info.family].from_weights(info, device)


def load_codec(name: str = DEFAULT_MODEL, quality: int | None = None, device: str | torch.device = "cpu") -> Codec:
    """A ready codec: a shipped model by name (and quality level), or a .safetensors path."""
    return _load(find(name, quality), resolve_device(device))


def compress(
    image: ImageLike | Prepared,
    quality: int | None = None,
    model: str | None = None,
    device: str | torch.device = "cpu",
    target_bpp: float | None = None,
    refine: int = 0,
    *,
    strip: bool = False,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    xmp: bytes | str | None = None,
) -> bytes:
    """Compress an image (PIL image, path, or HxWx3 / HxWx4 uint8 array) into .vqc bytes, at a
    quality level of the model or at the best level whose file is at most ``target_bpp`` bits
    per pixel. ``refine`` > 0: that many steps of encoder-side refinement (vq models;
    ``vqcodec.refine``). The image's ICC profile, EXIF and XMP are kept unless ``strip``;
    ``icc_profile``, ``exif`` and ``xmp`` replace the image's own; alpha is kept losslessly."""
    prepared = prepare(image, strip=strip, icc_profile=icc_profile, exif=exif, xmp=xmp)
    if target_bpp is None:
        return load_codec(model or DEFAULT_MODEL, quality, device).compress(prepared, refine)
    if quality is not None:
        raise VQCodecError("give a quality level or a target rate, not both")
    return compress_to_rate(prepared, target_bpp, model or DEFAULT_MODEL, device, refine)


def compress_to_rate(
    image: ImageLike | Prepared,
    target_bpp: float,
    model: str = DEFAULT_MODEL,
    device: str | torch.device = "cpu",
    refine: int = 0,
) -> bytes:
    """The file of the highest quality level of ``model`` at or under ``target_bpp`` (whole-file
    bits per pixel), found by binary search over the levels (rate rises with the level)."""
    prepared = prepare(image)
    qualities = [info.quality for info in levels(model)]
    best, lowest_bpp, lo, hi = None, None, 0, len(qualities) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        data = load_codec(model, qualities[mid], device).compress(prepared, refine)
        bpp = 8 * len(data) / prepared.pixel_count
        if bpp <= target_bpp:
            best, lo = data, mid + 1
        else:
            hi = mid - 1
            lowest_bpp = bpp
    if best is None:
        raise VQCodecError(
            f"cannot reach {target_bpp} bpp: the lowest level of {model!r} needs {lowest_bpp:.4f} bpp for this image"
        )
    return best


def decompress(
    data: bytes, max_pixels: int | None = MAX_PIXELS, device: str | torch.device = "cpu", model: str | None = None
) -> Image.Image:
    """Decode .vqc bytes with the shipped model that made them (or with ``model``, a name or weights file)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"expected bytes, got {type(data).__name__}")
    file = unpack_file(data)
    header = file.header
    if model is not None:  # the level of that model that decodes the file's id (another one refuses the file)
        found = levels(model)
        info = next((i for i in found if header.model_id in i.decodes), found[0])
    else:
        info = find_by_id(header.family, header.model_id)
        if info is None:
            raise missing_model_error(header.family, header.quality, header.model_id)
    return _load(info, resolve_device(device)).decode_file(file, max_pixels)
