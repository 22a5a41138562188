"""The VQ codec pipeline, top to bottom.

compress:   image -> RGB pixels -> VQ-VAE encoder (row bands) -> index grid
            -> integer PixelCNN prior + range coder (wavefront order) -> .vqc bytes
decompress: .vqc bytes -> header checks -> range decoder + prior, one wavefront at a time
            -> index grid -> VQ-VAE decoder (row bands) -> pixels -> image

The networks run over horizontal bands of the latent grid with a margin wider than their
receptive field, so memory stays bounded for big photos and no seam appears; the prior codes
the whole grid as one stream, so banding costs no rate.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from vqcodec import entropy
from vqcodec.errors import BitstreamError, ModelError
from vqcodec.format import Header, pack, parse_header, unpack
from vqcodec.images import ImageLike, prepare
from vqcodec.models.prior import IntegerPrior, PriorConfig
from vqcodec.models.vqvae import VQVAE, VQVAEConfig
from vqcodec.zoo import WeightsInfo, load_tensors

MAX_PIXELS = 128 * 1024 * 1024  # like Pillow's MAX_IMAGE_PIXELS; callers may raise it
BAND_ROWS = 64  # latent rows per network pass
MARGIN_ROWS = 8  # latent rows of context above and below a band (receptive field < 6)


def check_size(header: Header, max_pixels: int | None) -> None:
    """Refuse a decompression bomb before allocating anything for it."""
    if max_pixels is not None and header.pixels > max_pixels:
        raise BitstreamError(
            f"image of {header.width}x{header.height} exceeds the limit of {max_pixels} pixels "
            "(pass max_pixels to allow it)"
        )


def bands(rows: int) -> list[tuple[int, int, int, int]]:
    """(start, stop, context start, context stop) latent rows of each band."""
    out = []
    for start in range(0, rows, BAND_ROWS):
        stop = min(rows, start + BAND_ROWS)
        out.append((start, stop, max(0, start - MARGIN_ROWS), min(rows, stop + MARGIN_ROWS)))
    return out


class VQCodec:
    """A VQ-VAE and its integer prior, loaded on ``device``, with compress/decompress."""

    family = "vq"

    def __init__(self, vqvae: VQVAE, prior: IntegerPrior, info: WeightsInfo, device: torch.device):
        self.vqvae, self.prior, self.info, self.device = vqvae, prior, info, device
        self.factor = vqvae.cfg.downsample

    @classmethod
    def from_weights(cls, info: WeightsInfo, device: str | torch.device = "cpu") -> VQCodec:
        tensors = load_tensors(info)
        device = torch.device(device)
        try:
            vqvae = VQVAE(VQVAEConfig(**info.meta["vqvae_config"]))
            vqvae.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("vqvae.")})
            prior_cfg = PriorConfig(**info.meta["prior_config"])
            prior = IntegerPrior(prior_cfg, {k[6:]: v for k, v in tensors.items() if k.startswith("prior.")}, device)
        except (KeyError, TypeError, RuntimeError) as e:
            raise ModelError(f"{info.path}: weights do not match a VQ codec ({e})") from e
        # channels-last convolutions are about a fifth faster on CPU (oneDNN)
        return cls(vqvae.to(device, memory_format=torch.channels_last).eval(), prior, info, device)

    # --- compress -------------------------------------------------------------------
    def compress(self, image: ImageLike) -> bytes:
        """Encode an image (PIL image, path or uint8 array) into .vqc bytes."""
        rgb, mode = prepare(image)
        idx = self.analyze(rgb)
        payload = entropy.encode_grid(self.prior, idx)
        header = Header(self.family, self.info.quality, self.info.model_id, rgb.width, rgb.height, mode)
        return pack(header, payload)

    @torch.no_grad()
    def analyze(self, rgb: Image.Image) -> torch.Tensor:
        """RGB image -> (H/4, W/4) index grid, computed band by band."""
        f = self.factor
        x = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1)[None]
        x = torch.nn.functional.pad(x.float(), (0, -x.shape[3] % f, 0, -x.shape[2] % f), mode="replicate")
        rows = x.shape[2] // f
        out = torch.empty(rows, x.shape[3] // f, dtype=torch.int64)
        for start, stop, a, b in bands(rows):
            part = x[:, :, a * f : b * f].to(self.device) / 255.0
            out[start:stop] = self.vqvae.encode(part)[0, start - a : stop - a].cpu()
        return out

    # --- decompress -----------------------------------------------------------------
    def decompress(self, data: bytes, max_pixels: int | None = MAX_PIXELS) -> Image.Image:
        """Decode .vqc bytes made by this codec's model into a PIL image."""
        header, _ = parse_header(data)
        check_size(header, max_pixels)
        header, payload = unpack(data)
        if (header.family, header.quality, header.model_id) != (self.family, self.info.quality, self.info.model_id):
            raise BitstreamError(
                f"file was made by model {header.family} q{header.quality} id {header.model_id.hex()}, "
                f"not by this codec ({self.info.name} q{self.info.quality} id {self.info.model_id.hex()})"
            )
        rows, cols = math.ceil(header.height / self.factor), math.ceil(header.width / self.factor)
        idx = entropy.decode_grid(self.prior, payload, rows, cols)
        img = Image.fromarray(self.synthesize(idx, header.height, header.width))
        return img.convert("L") if header.mode == "L" else img

    @torch.no_grad()
    def synthesize(self, idx: torch.Tensor, height: int, width: int) -> np.ndarray:
        """(rows, cols) index grid -> (height, width, 3) uint8 pixels, band by band."""
        f = self.factor
        out = np.empty((height, width, 3), dtype=np.uint8)
        for start, stop, a, b in bands(idx.shape[0]):
            y = self.vqvae.decode(idx[a:b].to(self.device)[None])[0, :, (start - a) * f : (stop - a) * f]
            y = (y.clamp(0, 1) * 255 + 0.5).floor().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
            top = start * f
            rows = min(height, stop * f) - top
            out[top : top + rows] = y[:rows, :width]
        return out


def save_vq_weights(
    path: str,
    vqvae: VQVAE,
    prior_tensors: dict[str, torch.Tensor],
    prior_cfg: PriorConfig,
    name: str,
    quality: int,
    meta: dict,
) -> WeightsInfo:
    """Write a VQ codec (VQ-VAE float weights + integer prior) as one safetensors file."""
    from vqcodec.zoo import save_weights

    tensors = {f"vqvae.{k}": v for k, v in vqvae.state_dict().items()}
    tensors.update({f"prior.{k}": v for k, v in prior_tensors.items()})
    meta = {"vqvae_config": vqvae.cfg.to_dict(), "prior_config": prior_cfg.to_dict(), **meta}
    return save_weights(path, tensors, "vq", name, quality, meta)
