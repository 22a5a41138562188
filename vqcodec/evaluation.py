"""Rate-distortion measurement: real files, whole images, honest rates.

Rate is always 8 x (bytes of the whole compressed file) / (width x height). Distortion is
computed on the full decoded image against the original 8-bit RGB pixels: PSNR over all
three channels, and MS-SSIM (Wang, Simoncelli, Bovik 2003) via pytorch-msssim, also given
in dB as -10 log10(1 - MS-SSIM) as the field reports it.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vqcodec.data import image_files, load_rgb

Encoder = Callable[[Image.Image], bytes]
Decoder = Callable[[bytes], Image.Image]


@dataclass
class Measurement:
    """One image coded at one rate point."""

    image: str
    codec: str
    setting: str
    bytes: int
    bpp: float
    psnr: float
    ms_ssim: float
    ms_ssim_db: float
    encode_s: float
    decode_s: float


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images of equal shape (infinite when identical)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM of two HxWx3 uint8 images (pytorch-msssim; images below 161 px use fewer scales)."""
    from pytorch_msssim import ms_ssim as _ms_ssim

    x = torch.from_numpy(a).permute(2, 0, 1)[None].double()
    y = torch.from_numpy(b).permute(2, 0, 1)[None].double()
    side = min(a.shape[0], a.shape[1])
    levels = max(1, min(5, int(math.log2(side / 10)) if side >= 20 else 1))
    weights = torch.tensor([0.0448, 0.2856, 0.3001, 0.2363, 0.1333][:levels], dtype=torch.double)
    win = 11 if side > 2 ** (levels - 1) * 10 else 3
    return float(_ms_ssim(x, y, data_range=255, size_average=True, weights=weights / weights.sum(), win_size=win))


def ms_ssim_db(value: float) -> float:
    return math.inf if value >= 1 else -10 * math.log10(1 - value)


def measure(name: str, codec: str, setting: str, img: Image.Image, encode: Encoder, decode: Decoder) -> Measurement:
    """Code one RGB image both ways and measure rate, distortion and time."""
    start = time.perf_counter()
    data = encode(img)
    mid = time.perf_counter()
    out = decode(data).convert("RGB")
    end = time.perf_counter()
    a, b = np.asarray(img), np.asarray(out)
    ms = ms_ssim(a, b)
    return Measurement(
        name,
        codec,
        setting,
        len(data),
        8 * len(data) / (img.width * img.height),
        psnr(a, b),
        ms,
        ms_ssim_db(ms),
        mid - start,
        end - mid,
    )


def pillow_codec(fmt: str, **options) -> tuple[Encoder, Decoder]:
    """Encoder/decoder pair for a Pillow format (JPEG, WEBP, AVIF, JPEG2000)."""

    def encode(img: Image.Image) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **options)
        return buf.getvalue()

    def decode(data: bytes) -> Image.Image:
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")

    return encode, decode


def measure_folder(
    folder: str | Path, codec: str, setting: str, encode: Encoder, decode: Decoder, limit: int | None = None
) -> list[Measurement]:
    return [measure(p.name, codec, setting, load_rgb(p), encode, decode) for p in image_files(folder)[:limit]]


def summarize(rows: list[Measurement]) -> dict[str, float]:
    """Mean of each numeric field over images (the convention of CompressAI's published curves)."""
    keys = ["bpp", "psnr", "ms_ssim", "ms_ssim_db", "encode_s", "decode_s"]
    return {k: float(np.mean([getattr(r, k) for r in rows])) for k in keys} | {"images": len(rows)}


def as_dicts(rows: list[Measurement]) -> list[dict]:
    return [asdict(r) for r in rows]
