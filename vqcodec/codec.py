"""The codec pipelines, top to bottom.

VQ (the product):
compress:   image -> RGB pixels -> VQ-VAE encoder (row bands) -> index grid
            [refine > 0: the indices re-chosen for the decoded image, vqcodec.refine]
            -> integer PixelCNN prior + range coder (wavefront order) -> .vqc bytes
decompress: .vqc bytes -> header checks -> range decoder + prior, one wavefront at a time
            -> index grid -> VQ-VAE decoder (row bands) -> pixels -> image

AE and VAE (the scalar-quantization baselines, vqcodec.models.ae):
compress:   image -> RGB pixels -> analysis transform (row bands) -> latent y
            [VAE: hyper-analysis -> side information z -> rounded -> coded under its factorized
             tables; integer hyper-synthesis -> a Gaussian table for every latent value]
            -> rounded y coded under its tables (AE: one per channel) -> .vqc bytes
decompress: .vqc bytes -> header checks -> [VAE: z, integer hyper-synthesis -> tables]
            -> rounded y -> synthesis transform (row bands) -> pixels -> image

The networks run over horizontal bands of the latent grid with a margin wider than their
receptive field, so memory stays bounded for big photos and no seam appears; the entropy
coders code the whole grid as one stream, so banding costs no rate. Everything that decides
what the decoder reads (the prior, the tables, the hyper-synthesis) is integer arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cached_property

import constriction
import numpy as np
import torch
from PIL import Image

from vqcodec import entropy, int8, tables
from vqcodec.errors import BitstreamError, ModelError, VQCodecError
from vqcodec.format import VERSION, Container, Header, pack, read_varint, unpack_file, varint
from vqcodec.hardware import bf16_supported, int8_matmul_fast
from vqcodec.images import ImageLike, Prepared, prepare
from vqcodec.metadata import attach, from_chunks, to_chunks
from vqcodec.models.ae import (
    AEConfig,
    FactorizedAE,
    HyperpriorVAE,
    IntegerHyperSynthesis,
    gaussian_pmfs,
    make_model,
    scale_table,
)
from vqcodec.models.prior import IntegerPrior, PixelCNNPrior, PriorConfig, float_state
from vqcodec.models.vqvae import VQVAE, VQVAEConfig, for_inference
from vqcodec.refine import REFINE_RATE, refine_indices
from vqcodec.tensors import load_tensors, prefixed
from vqcodec.zoo import WeightsInfo

MAX_PIXELS = 128 * 1024 * 1024  # like Pillow's MAX_IMAGE_PIXELS; callers may raise it
BAND_PIXELS = 1 << 20  # image pixels per network pass: bounds memory on big photos; a Kodak image is one pass
STRIPE_PIXELS = 128  # image rows per independently coded stripe of the vq index grid (format version 2)
MARGIN_ROWS = 8  # latent rows of context above and below a band (receptive field < 6)


def check_size(header: Header, max_pixels: int | None) -> None:
    """Refuse a decompression bomb before allocating anything for it."""
    if max_pixels is not None and header.pixel_count > max_pixels:
        raise BitstreamError(
            f"image of {header.width}x{header.height} exceeds the limit of {max_pixels} pixels "
            "(pass max_pixels to allow it)"
        )


def band_rows(cols: int, factor: int) -> int:
    """Latent rows per network pass over a grid ``cols`` wide whose cells are ``factor`` x
    ``factor`` pixels: about BAND_PIXELS pixels, at least 8 rows. Each band recomputes its
    margins, so the fewer the bands, the less repeated work."""
    return max(8, BAND_PIXELS // max(cols * factor * factor, 1))


def bands(rows: int, band: int, margin: int = MARGIN_ROWS) -> list[tuple[int, int, int, int]]:
    """(start, stop, context start, context stop) latent rows of each band."""
    out = []
    for start in range(0, rows, band):
        stop = min(rows, start + band)
        out.append((start, stop, max(0, start - margin), min(rows, stop + margin)))
    return out


def banded(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    rows: int,
    scale_in: int,
    scale_out: int,
    band: int,
    margin: int = MARGIN_ROWS,
) -> torch.Tensor:
    """``fn`` applied band by band along the second-to-last dimension of ``x``.

    A latent row is ``scale_in`` rows of ``x`` and ``scale_out`` rows of the output; each band
    is computed from its rows plus the margin and keeps only its own rows."""
    out = None
    for start, stop, a, b in bands(rows, band, margin):
        part = fn(x[..., a * scale_in : b * scale_in, :])[..., (start - a) * scale_out : (stop - a) * scale_out, :]
        if out is None:
            out = part.new_empty((*part.shape[:-2], rows * scale_out, part.shape[-1]))
        out[..., start * scale_out : stop * scale_out, :] = part
    return out


def image_tensor(rgb: Image.Image, multiple: int) -> torch.Tensor:
    """RGB image -> (1, 3, H, W) float in [0, 1], replicate-padded to a multiple of ``multiple``."""
    x = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1)[None]
    x = torch.nn.functional.pad(x.float(), (0, -x.shape[3] % multiple, 0, -x.shape[2] % multiple), mode="replicate")
    return x / 255.0


def to_uint8(y: torch.Tensor) -> torch.Tensor:
    """Decoder output in [0, 1] (not clamped) -> uint8 on the CPU."""
    return (y.clamp(0, 1) * 255 + 0.5).floor().to(torch.uint8).cpu()


class Codec:
    """What every codec shares: image preparation, the header, and the checks on decoding.

    A subclass sets ``family`` and ``multiple`` (images are padded to a multiple of it) and
    implements ``encode`` (padded pixels -> payload) and ``decode`` (payload -> padded pixels).
    """

    family: str
    multiple: int
    format_version = 2  # the .vqc version this codec's files have

    def __init__(self, info: WeightsInfo, device: torch.device):
        self.info, self.device = info, device

    def compress(self, image: ImageLike | Prepared, refine: int = 0) -> bytes:
        """Encode an image (PIL image, path, uint8 array, or one ``images.prepare`` made ready,
        with its metadata choices) into .vqc bytes; ``refine`` > 0 spends that many steps
        choosing the indices for the decoded image (vq models, ``vqcodec.refine``: slower
        encoding, the same decoder)."""
        if refine < 0:
            raise VQCodecError(f"refine must be 0 or more steps, not {refine}")
        prepared = prepare(image)
        payload = self.encode(image_tensor(prepared.rgb, self.multiple), refine)
        chunks = to_chunks(prepared.extras)
        version, layout = (VERSION, self.format_version) if chunks else (self.format_version, 0)
        header = Header(
            self.family,
            self.info.quality,
            self.info.model_id,
            prepared.rgb.width,
            prepared.rgb.height,
            prepared.mode,
            version=version,
            layout=layout,
        )
        return pack(header, payload, chunks)

    def decompress(self, data: bytes, max_pixels: int | None = MAX_PIXELS) -> Image.Image:
        """Decode .vqc bytes made by this codec's model into a PIL image."""
        return self.decode_file(unpack_file(data), max_pixels)

    def decode_file(self, file: Container, max_pixels: int | None = MAX_PIXELS) -> Image.Image:
        """Decode a parsed .vqc file (see ``format.unpack_file``) into a PIL image: RGB or L, or
        RGBA or LA with its alpha, with its ICC profile, EXIF and XMP in ``info``."""
        header = file.header
        check_size(header, max_pixels)
        if header.family != self.family or header.model_id not in self.info.decodes:
            raise BitstreamError(
                f"file was made by model {header.family} q{header.quality} id {header.model_id.hex()}, "
                f"not by this codec ({self.info.name} q{self.info.quality} id {self.info.model_id.hex()})"
            )
        extras = from_chunks(file.chunks, (header.width, header.height), header.mode in ("RGBA", "LA"))
        m = self.multiple
        height, width = math.ceil(header.height / m) * m, math.ceil(header.width / m) * m
        out = self.decode(file.payload, height, width, header.payload_layout)
        img = Image.fromarray(out[:, : header.height, : header.width].permute(1, 2, 0).numpy())
        return attach(img.convert("L") if header.mode in ("L", "LA") else img, extras)

    def encode(self, x: torch.Tensor, refine: int = 0) -> bytes:
        raise NotImplementedError

    def decode(self, payload: bytes, height: int, width: int, version: int) -> torch.Tensor:
        raise NotImplementedError


class VQCodec(Codec):
    """A VQ-VAE and its integer prior, loaded on ``device``, with compress/decompress."""

    family = "vq"

    def __init__(
        self,
        vqvae: VQVAE,
        prior: IntegerPrior,
        info: WeightsInfo,
        device: torch.device,
        int8_decoder: torch.nn.Module | None = None,
    ):
        super().__init__(info, device)
        self.vqvae, self.prior = vqvae, prior
        # a decoder trained for int8 runs in int8 where the CPU has VNNI or AMX: about twice as fast
        # as float32, PSNR within 0.02 dB (vqcodec.int8); it decodes files, refinement searches in float
        self.int8_decoder = int8_decoder
        self.multiple = vqvae.cfg.downsample
        # the networks' layers but the last in bfloat16 where the device computes it natively:
        # about 1.5-2x as fast on a CPU; decoded pixels within a level or two of float32, and
        # about 1% of the encoder's indices differ (same rate and PSNR; measured in README)
        self.bf16 = bf16_supported(device)
        self.format_version = 3 if prior.cfg.groups > 1 else 2
        self.refine_rate = REFINE_RATE  # refinement's rate weight (an elasticity, vqcodec.refine); tuning sets it

    @classmethod
    def from_weights(cls, info: WeightsInfo, device: str | torch.device = "cpu") -> VQCodec:
        tensors = load_tensors(info)
        device = torch.device(device)
        try:
            vqvae = VQVAE(VQVAEConfig(**info.meta["vqvae_config"]))
            vqvae.load_state_dict(prefixed(tensors, "vqvae."))
            prior = IntegerPrior(PriorConfig(**info.meta["prior_config"]), prefixed(tensors, "prior."), device)
            ranges = tensors.get(int8.RANGES)
            fast = ranges is not None and device.type == "cpu" and int8_matmul_fast()
            int8_decoder = int8.int8_decoder(vqvae.decoder, ranges) if fast else None
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ModelError(f"{info.path}: weights do not match a VQ codec ({e})") from e
        # channels-last convolutions are about a fifth faster on CPU (oneDNN)
        vqvae = for_inference(vqvae).to(device, memory_format=torch.channels_last).eval()
        return cls(vqvae, prior, info, device, int8_decoder)

    @property
    def stripe_rows(self) -> int:
        """Index rows per independently coded stripe: STRIPE_PIXELS of image, whatever the factor."""
        return max(1, STRIPE_PIXELS // self.multiple)

    def encode(self, x: torch.Tensor, refine: int = 0) -> bytes:
        """Padded pixels -> payload: the stripe height (varint), then the range-coded index grid."""
        idx = self.indices(x, refine)
        return varint(self.stripe_rows) + entropy.encode_grid(self.prior, idx, stripe_rows=self.stripe_rows)

    def decode(self, payload: bytes, height: int, width: int, version: int) -> torch.Tensor:
        f = self.multiple
        return self.grid_to_pixels(self.read(payload, height // f, width // f, version))

    def read(self, payload: bytes, rows: int, cols: int, version: int) -> torch.Tensor:
        """Payload -> (rows, cols) index grid. Version 1 coded the grid as one stripe; version 3
        codes each index as group and member, and only a prior with groups writes it."""
        if (version >= 3) != (self.prior.cfg.groups > 1):
            raise BitstreamError(f"corrupt file: format version {version} does not match the model's prior")
        stripe_rows = None
        if version >= 2:
            stripe_rows, start = read_varint(payload, 0, "stripe height")
            if stripe_rows == 0:
                raise BitstreamError("corrupt payload: stripe height 0")
            payload = payload[start:]
        return entropy.decode_grid(self.prior, payload, rows, cols, stripe_rows)

    @torch.no_grad()
    def indices(self, x: torch.Tensor, refine: int = 0) -> torch.Tensor:
        """Padded pixels (1, 3, H, W) -> (H/f, W/f) index grid, computed band by band."""
        f = self.multiple
        rows, band = x.shape[2] // f, band_rows(x.shape[3] // f, f)
        return banded(lambda part: self.analysis(part.to(self.device), refine).cpu(), x, rows, f, 1, band)[0]

    @torch.no_grad()
    def grid_to_pixels(self, idx: torch.Tensor) -> torch.Tensor:
        """(rows, cols) index grid -> (3, f rows, f cols) uint8 pixels, band by band."""
        f, band = self.multiple, band_rows(idx.shape[1], self.multiple)
        return banded(lambda part: to_uint8(self.synthesis(part.to(self.device)[None])[0]), idx, len(idx), 1, f, band)

    def network(self, layers: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        """``layers`` applied to ``x``: in float32, or with ``bf16`` in bfloat16 autocast but for
        the last layer (the encoder's latent, which the quantizer compares; the decoder's pixels)."""
        if not self.bf16:
            return layers(x)
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            hidden = layers[:-1](x)
        return layers[-1](hidden.float())

    def analysis(self, x: torch.Tensor, refine: int = 0) -> torch.Tensor:
        """Pixels (B, 3, H, W) in [0, 1] -> index grid (B, H/f, W/f): the VQ-VAE's encoder and
        quantizer, then ``refine`` steps of encoder-side refinement."""
        latent = self.network(self.vqvae.encoder, x - 0.5)
        if refine:
            code_lengths = self.float_prior.code_lengths
            return refine_indices(
                latent,
                x,
                self.vqvae.quantizer,
                self.synthesize_latent,
                refine,
                code_lengths=code_lengths,
                rate=self.refine_rate,
            )
        return self.vqvae.quantizer.indices(latent)

    @cached_property
    def float_prior(self) -> PixelCNNPrior:
        """The integer prior as a float network (quantization-aware, so its logits are the integer
        ones up to rounding): the code lengths that encoder-side refinement weighs."""
        prior = PixelCNNPrior(self.prior.cfg)
        state = float_state(self.prior.cfg, prefixed(load_tensors(self.info), "prior."))
        prior.load_state_dict(state)
        prior.quantized = True
        return prior.to(self.device).eval()

    def synthesis(self, idx: torch.Tensor) -> torch.Tensor:
        """Index grid (B, h, w) -> image (B, 3, f h, f w), not clamped: the VQ-VAE's decoder (its
        int8 network where there is one)."""
        codes = self.vqvae.quantizer.lookup(idx)
        if self.int8_decoder is not None:
            return self.int8_decoder(codes) + 0.5
        return self.synthesize_latent(codes)

    def synthesize_latent(self, codes: torch.Tensor) -> torch.Tensor:
        """Quantized latent (B, D, h, w) -> image (B, 3, f h, f w), not clamped."""
        return self.network(self.vqvae.decoder, codes) + 0.5

    def analyze(self, rgb: Image.Image) -> torch.Tensor:
        """RGB image -> its index grid."""
        return self.indices(image_tensor(rgb, self.multiple))

    def synthesize(self, idx: torch.Tensor, height: int, width: int) -> np.ndarray:
        """Index grid -> (height, width, 3) uint8 pixels."""
        return self.grid_to_pixels(idx)[:, :height, :width].permute(1, 2, 0).numpy()


BASELINE_BAND_ROWS = 32  # latent rows (16 pixels each) per network pass
BASELINE_MARGIN_ROWS = 4  # receptive fields of the 5x5 stride-2 transforms: < 3 latent rows


# Float parts of a baseline left out of its weights file: the codec uses their integer tables instead.
NOT_SHIPPED = ("density.", "h_s.")


class BaselineCodec(Codec):
    """The AE or VAE baseline: float transforms, integer tables and hyper-synthesis."""

    def __init__(
        self, model: FactorizedAE | HyperpriorVAE, tensors: dict[str, torch.Tensor], info: WeightsInfo, device
    ):
        super().__init__(info, device)
        self.model, self.cfg = model, model.cfg
        self.family, self.multiple = model.cfg.family, model.cfg.downsample
        self.y_tables = tables.TableCoder(prefixed(tensors, "y_tables."))
        if self.cfg.hyper:
            self.z_tables = tables.TableCoder(prefixed(tensors, "z_tables."))
            self.hyper = IntegerHyperSynthesis(prefixed(tensors, "h_s."))

    @classmethod
    def from_weights(cls, info: WeightsInfo, device: str | torch.device = "cpu") -> BaselineCodec:
        tensors = load_tensors(info)
        device = torch.device(device)
        try:
            model = make_model(AEConfig(**info.meta["ae_config"]))
            missing, unexpected = model.load_state_dict(prefixed(tensors, "model."), strict=False)
            if unexpected or any(not k.startswith(NOT_SHIPPED) for k in missing):
                raise RuntimeError(f"missing {missing}, unexpected {unexpected}")
            return cls(model.to(device).eval(), tensors, info, device)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ModelError(f"{info.path}: weights do not match an {info.family} codec ({e})") from e

    @staticmethod
    def export(model: FactorizedAE | HyperpriorVAE) -> dict[str, torch.Tensor]:
        """The tensors the codec needs: float transforms, integer tables and hyper-synthesis.

        The transforms are stored in float16 (run in float32): half the file, and nothing that
        decides what the decoder reads depends on them."""
        state = model.state_dict().items()
        tensors = {f"model.{k}": v.half() for k, v in state if not k.startswith(NOT_SHIPPED)}
        if model.cfg.hyper:
            pmfs = gaussian_pmfs(scale_table())
            y_tables = tables.stack_tables(pmfs, [-(len(p) // 2) for p in pmfs])
            z_tables = tables.stack_tables(*model.density.pmfs())
            tensors.update({f"z_tables.{k}": v for k, v in z_tables.items()})
            tensors.update({f"h_s.{k}": v for k, v in IntegerHyperSynthesis.export(model.h_s).items()})
        else:
            y_tables = tables.stack_tables(*model.density.pmfs())
        tensors.update({f"y_tables.{k}": v for k, v in y_tables.items()})
        return tensors

    # --- compress -------------------------------------------------------------------
    def encode(self, x: torch.Tensor, refine: int = 0) -> bytes:
        if refine:
            raise VQCodecError(f"encoder-side refinement is for vq models, not {self.family}")
        return self.write(*self.quantize(x))

    def write(self, z_hat: torch.Tensor | None, y_hat: torch.Tensor, table: torch.Tensor) -> bytes:
        """Range-code the rounded side information (vae) then the rounded latent."""
        encoder = constriction.stream.queue.RangeEncoder()
        if z_hat is not None:
            self.z_tables.encode(encoder, z_hat, channel_tables(z_hat.shape))
        self.y_tables.encode(encoder, y_hat, table)
        return encoder.get_compressed().tobytes()

    @torch.no_grad()
    def quantize(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Padded pixels -> (rounded side information or None, rounded latent, its table numbers)."""
        y = banded(
            lambda part: self.model.analyze(part.to(self.device)).cpu(),
            x,
            x.shape[2] // 16,
            16,
            1,
            BASELINE_BAND_ROWS,
            BASELINE_MARGIN_ROWS,
        )
        z_hat, table = None, channel_tables(y.shape)
        if self.cfg.hyper:
            z = self.model.h_a(y.abs().to(self.device)).cpu()
            z_hat = self.z_tables.clamp(torch.round(z), channel_tables(z.shape))
            table = self.hyper.scale_indices(z_hat)
        return z_hat, self.y_tables.clamp(torch.round(y), table), table

    # --- decompress -----------------------------------------------------------------
    def decode(self, payload: bytes, height: int, width: int, version: int) -> torch.Tensor:
        return self.reconstruct(self.read(payload, height, width)[1])  # the same payload in versions 1 and 2

    def read(self, payload: bytes, height: int, width: int) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Payload of a (padded) height x width image -> (side information or None, latent, its tables)."""
        if len(payload) % 4:
            raise BitstreamError("payload length is not a whole number of 32-bit words")
        decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, dtype=np.uint32).copy())
        z_hat, table = None, channel_tables((1, self.cfg.latent, height // 16, width // 16))
        if self.cfg.hyper:
            z_hat = self.z_tables.decode(decoder, channel_tables((1, self.cfg.hyper, height // 64, width // 64)))
            table = self.hyper.scale_indices(z_hat)
        return z_hat, self.y_tables.decode(decoder, table), table

    @torch.no_grad()
    def reconstruct(self, y_hat: torch.Tensor) -> torch.Tensor:
        """Rounded latent (1, latent, h, w) -> (3, 16h, 16w) uint8 pixels, band by band."""
        return banded(
            lambda part: to_uint8(self.model.synthesize(part.to(self.device).float()))[0],
            y_hat,
            y_hat.shape[2],
            1,
            16,
            BASELINE_BAND_ROWS,
            BASELINE_MARGIN_ROWS,
        )


def channel_tables(shape: tuple[int, ...]) -> torch.Tensor:
    """Table number = channel number, for a (1, C, H, W) latent coded with one table per channel."""
    return torch.arange(shape[1]).view(1, -1, 1, 1).expand(shape)
