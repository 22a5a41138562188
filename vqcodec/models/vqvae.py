"""VQ-VAE image autoencoder (van den Oord et al., NeurIPS 2017) sized for CPU compression.

Encoder: 5x5 convolutions down to 1/``downsample`` of the resolution (2, 4 or 8) and a
residual block, then a 1x1 projection to ``latent_dim``; the latent grid is vector-quantized
against a codebook of ``codebook_size`` vectors; the decoder mirrors the encoder with
transposed convolutions. The downsampling factor and the codebook size set the rate: the
quality levels of the zoo differ in these two numbers.

Whatever the factor, the layers of the factor-4 model keep their positional names ("0",
"1", ...), so a model loads another factor's weights wherever the shapes agree (the levels
of the zoo start from one another) and the first factor-4 weights files stay valid.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from vqcodec.quantization import VectorQuantizer


@dataclass
class VQVAEConfig:
    """Architecture of a VQ-VAE; stored in the weights' metadata."""

    channels: int = 128
    half_channels: int = 64
    latent_dim: int = 32
    codebook_size: int = 512
    res_blocks: int = 1
    beta: float = 0.25
    ema_decay: float = 0.99
    downsample: int = 4
    decoder_blocks: int = 0  # residual blocks the decoder has beyond ``res_blocks`` (decoder capacity)
    rate_weight: float = 0.0  # ECVQ: squared latent distance traded per bit of a code's length (0: nearest code)

    def __post_init__(self) -> None:
        if self.downsample not in (2, 4, 8):
            raise ValueError(f"downsample must be 2, 4 or 8, not {self.downsample}")

    @property
    def extra_stages(self) -> int:
        """Stride-2 stages beyond the factor-4 model's two (1 for factor 8, else 0)."""
        return int(self.downsample == 8)

    def to_dict(self) -> dict:
        return asdict(self)


class ResBlock(nn.Module):
    """x + conv3x3(relu(conv3x3(relu(x))))."""

    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x)), inplace=True))


def make_encoder(cfg: VQVAEConfig) -> nn.Sequential:
    c, half = cfg.channels, cfg.half_channels
    layers = [
        ("0", nn.Conv2d(3, half, 5, stride=1 if cfg.downsample == 2 else 2, padding=2)),
        ("1", nn.ReLU()),
        ("2", nn.Conv2d(half, c, 5, stride=2, padding=2)),
    ]
    for n in range(cfg.extra_stages):
        layers += [(f"down{n}_act", nn.ReLU()), (f"down{n}", nn.Conv2d(c, c, 5, stride=2, padding=2))]
    tail = [*[ResBlock(c) for _ in range(cfg.res_blocks)], nn.ReLU(), nn.Conv2d(c, cfg.latent_dim, 1)]
    return nn.Sequential(OrderedDict(layers + [(str(3 + n), m) for n, m in enumerate(tail)]))


def make_decoder(cfg: VQVAEConfig) -> nn.Sequential:
    c, half = cfg.channels, cfg.half_channels
    head = [nn.Conv2d(cfg.latent_dim, c, 3, padding=1), *[ResBlock(c) for _ in range(cfg.res_blocks)], nn.ReLU()]
    layers = [(str(n), m) for n, m in enumerate(head)]
    # named apart so that a decoder grown from a trained one keeps every trained layer's name
    layers[-1:-1] = [(f"extra{n}", ResBlock(c)) for n in range(cfg.decoder_blocks)]
    for n in range(cfg.extra_stages):
        layers += [(f"up{n}", nn.ConvTranspose2d(c, c, 4, stride=2, padding=1)), (f"up{n}_act", nn.ReLU())]
    last = (
        nn.Conv2d(half, 3, 3, padding=1) if cfg.downsample == 2 else nn.ConvTranspose2d(half, 3, 4, stride=2, padding=1)
    )
    tail = [
        nn.ConvTranspose2d(c, half, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(half, half, 3, padding=1),
        nn.ReLU(),
        last,
    ]
    return nn.Sequential(OrderedDict(layers + [(str(len(head) + n), m) for n, m in enumerate(tail)]))


class VQVAE(nn.Module):
    """Images in [0, 1] of any size divisible by ``cfg.downsample`` <-> grids of codebook indices."""

    def __init__(self, cfg: VQVAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = make_encoder(cfg)
        self.quantizer = VectorQuantizer(
            cfg.codebook_size, cfg.latent_dim, cfg.beta, cfg.ema_decay, rate_weight=cfg.rate_weight
        )
        self.decoder = make_decoder(cfg)
        # where the decoder was trained for int8 inference: its activation ranges (vqcodec.int8)
        self.int8_ranges: torch.Tensor | None = None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> index grid (B, H/f, W/f), f = ``cfg.downsample``."""
        return self.quantizer.indices(self.encoder(x - 0.5))

    def decode(self, idx: torch.Tensor) -> torch.Tensor:
        """Index grid (B, h, w) -> image (B, 3, f h, f w), not clamped."""
        return self.decoder(self.quantizer.lookup(idx)) + 0.5

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: (reconstruction, indices, commitment loss)."""
        zq, idx, commitment = self.quantizer(self.encoder(x - 0.5))
        return self.decoder(zq).float() + 0.5, idx, commitment


SUBPIXEL_TAPS = {(0, -1): 3, (0, 0): 1, (1, 0): 2, (1, 1): 0}  # (phase, input offset) -> kernel row/column


def subpixel(layer: nn.ConvTranspose2d) -> nn.Sequential:
    """The map of a 4x4, stride-2 transposed convolution with padding 1, as a 3x3 convolution to
    four times the channels and a pixel shuffle (Shi et al., "Real-Time Single Image and Video
    Super-Resolution Using an Efficient Sub-Pixel Convolutional Neural Network", CVPR 2016).

    Output pixel (2i + a, 2j + b) sums kernel row 1 at input row i and row 3 at row i - 1 when
    a = 0, rows 0 at i + 1 and 2 at i when a = 1 (columns alike), so phase (a, b) of output
    channel o is a 3x3 convolution with those taps and zeros elsewhere; PixelShuffle puts phase
    (a, b) of channel o at channel 4 o + 2 a + b. The same sums, in another order: float results
    agree to rounding."""
    if layer.kernel_size != (4, 4) or layer.stride != (2, 2) or layer.padding != (1, 1):
        raise ValueError(f"not a 4x4 stride-2 transposed convolution with padding 1: {layer}")
    w = layer.weight.detach()  # (in, out, 4, 4)
    kernel = w.new_zeros(layer.out_channels, 2, 2, layer.in_channels, 3, 3)
    for (a, dy), ky in SUBPIXEL_TAPS.items():
        for (b, dx), kx in SUBPIXEL_TAPS.items():
            kernel[:, a, b, :, dy + 1, dx + 1] = w[:, :, ky, kx].t()
    conv = nn.Conv2d(layer.in_channels, 4 * layer.out_channels, 3, padding=1).to(w.device, w.dtype)
    conv.weight.data.copy_(kernel.reshape(conv.weight.shape))
    conv.bias.data.copy_(layer.bias.detach().repeat_interleave(4))
    return nn.Sequential(conv, nn.PixelShuffle(2))


def transposed(conv: nn.Conv2d, like: nn.ConvTranspose2d) -> nn.ConvTranspose2d:
    """The inverse of ``subpixel``: the transposed convolution (shaped ``like``) whose sub-pixel
    form is ``conv``. Exact when ``conv`` has the sub-pixel form's zeros and each output
    channel's four phase biases are equal (what int8 training keeps); otherwise the taps a
    transposed convolution has, and the first phase's bias."""
    w = conv.weight.detach().view(like.out_channels, 2, 2, like.in_channels, 3, 3)
    out = nn.ConvTranspose2d(like.in_channels, like.out_channels, 4, stride=2, padding=1).to(w.device, w.dtype)
    kernel = torch.zeros_like(out.weight)
    for (a, dy), ky in SUBPIXEL_TAPS.items():
        for (b, dx), kx in SUBPIXEL_TAPS.items():
            kernel[:, :, ky, kx] = w[:, a, b, :, dy + 1, dx + 1].t()
    out.weight.data.copy_(kernel)
    out.bias.data.copy_(conv.bias.detach().view(-1, 4)[:, 0])
    return out


def for_inference(model: VQVAE) -> VQVAE:
    """``model`` rearranged for compressing and decoding, the same function (in place): the
    decoder's last transposed convolution as a ``subpixel`` convolution (a transposed
    convolution to 3 channels is the slowest layer per operation) and the ReLUs between layers
    in place (one pass over the activations instead of two)."""
    name, last = list(model.decoder.named_children())[-1]
    if isinstance(last, nn.ConvTranspose2d):
        setattr(model.decoder, name, subpixel(last))
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = True
    return model


def grow_decoder(model: VQVAE, blocks: int) -> VQVAE:
    """A copy of ``model`` whose decoder has ``blocks`` extra residual blocks, each starting as
    the identity (last convolution zero, as in Goyal et al. 2017's zero-init residuals), so the
    grown model decodes exactly as ``model`` until it is trained; encoder and codebook are shared
    values, so the indices and the prior stay valid."""
    grown = VQVAE(replace(model.cfg, decoder_blocks=model.cfg.decoder_blocks + blocks))
    grown.load_state_dict(grown.state_dict() | model.state_dict())
    for n in range(model.cfg.decoder_blocks, grown.cfg.decoder_blocks):
        block = grown.decoder.get_submodule(f"extra{n}")
        nn.init.zeros_(block.conv2.weight)
        nn.init.zeros_(block.conv2.bias)
    return grown
