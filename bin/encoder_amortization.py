"""Encoder-only training of a shipped vq level, decoder, codebook and prior frozen: can the encoder
learn what encoder-side refinement finds per image? (vqcodec 0.23's session; measured, not shipped:
docs/history.md, "Measured and not shipped".)

    python bin/encoder_amortization.py --quality 6 --k 10 --gamma 1 --lr 1e-5 --out runs/amortize/v1

Each step encodes a batch of training crops, runs ``--k`` steps of refinement from the encoder's
latents (vqcodec.refine's search, with the prior's code lengths at a fixed weight ``--weight`` per
bit instead of the per-image elasticity, which a training loop would apply again at every step),
and trains the encoder on the VQ-VAE's own objective through the frozen decoder (reconstruction
with the straight-through estimator, plus 0.25 x commitment) plus ``--gamma`` x the squared
distance to the refined codes where refinement moved an index. ``--k 0 --gamma 0`` is the control
(the encoder's own objective alone); ``--grow N`` first adds N residual blocks to the encoder,
each starting as the identity. Validation: whole images, nearest codes, PSNR and the prior's bits
(its float network's code lengths) of the moving average of the encoder's weights.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from collections import OrderedDict
from pathlib import Path

import torch

import vqcodec
from vqcodec import refine
from vqcodec.data import CropDataset, image_files, load_rgb, to_tensor
from vqcodec.models.vqvae import ResBlock
from vqcodec.train import pad_to

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared/data"


def grown(encoder: torch.nn.Sequential, blocks: int, channels: int) -> torch.nn.Sequential:
    """``encoder`` with ``blocks`` residual blocks after its own, each starting as the identity."""
    layers = list(encoder.named_children())
    extra = []
    for n in range(blocks):
        block = ResBlock(channels)
        torch.nn.init.zeros_(block.conv2.weight)
        torch.nn.init.zeros_(block.conv2.bias)
        extra.append((f"extra{n}", block))
    return torch.nn.Sequential(OrderedDict(layers[:4] + extra + layers[4:]))


def latent(encoder: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The encoder's latent as the codec computes it: bfloat16 autocast but for the last layer."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden = encoder[:-1](x - 0.5)
    return encoder[-1](hidden.float())


def refined(codec, z: torch.Tensor, x: torch.Tensor, steps: int, weight: float) -> torch.Tensor:
    """The best of ``steps`` + 1 index grids of refinement from ``z``, scored by squared error
    plus ``weight`` x the prior's bits per pixel."""
    quantizer, lengths = codec.vqvae.quantizer, codec.float_prior.code_lengths
    z = z.detach().float().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=refine.REFINE_LR)
    pixels = x[:, 0].numel()
    best, best_score, spread = None, math.inf, 1.0
    with torch.enable_grad():
        for step in range(steps + 1):
            near = refine.candidates(z.detach(), quantizer)
            idx = near[..., 0]
            decoded = codec.synthesize_latent(z + (quantizer.lookup(idx) - z).detach()).float()
            bits = lengths(idx, near)
            if step == 0:
                spread = refine.code_gap(z.detach(), quantizer.codebook, near)
            score = (decoded.detach().clamp(0, 1) - x).square().mean().item()
            score += weight * bits[..., 0].sum().item() / pixels
            if score < best_score:
                best, best_score = idx, score
            if step == steps:
                break
            soft = refine.soft_bits(z, quantizer.codebook, near, bits, spread) / pixels
            loss = (decoded - x).square().mean() + weight * soft
            for group in opt.param_groups:
                group["lr"] = refine.REFINE_LR * 0.5 * (1 + math.cos(math.pi * step / steps))
            (z.grad,) = torch.autograd.grad(loss, z)
            opt.step()
    return best


@torch.no_grad()
def validate(codec, encoder: torch.nn.Sequential, images: int) -> tuple[float, float]:
    """Mean PSNR and the prior's bits per pixel of the first ``images`` validation images."""
    vq = codec.vqvae
    psnrs, bits, pixels = [], 0.0, 0
    for path in image_files(DATA / "val")[:images]:
        x = to_tensor(load_rgb(path))[None]
        idx = vq.quantizer.indices(latent(encoder, pad_to(x, vq.cfg.downsample)))
        y = codec.synthesize_latent(vq.quantizer.lookup(idx)).float()[..., : x.shape[2], : x.shape[3]]
        mse = (torch.round(y.clamp(0, 1) * 255) / 255 - x).square().mean()
        psnrs.append(float(-10 * torch.log10(mse)))
        bits += float(codec.float_prior.code_lengths(idx, idx[..., None]).sum())
        pixels += x.shape[2] * x.shape[3]
    return sum(psnrs) / len(psnrs), bits / pixels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quality", type=int, default=6)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--k", type=int, default=10, help="refinement steps per batch (0: none)")
    parser.add_argument("--gamma", type=float, default=1.0, help="weight of the pull to refined codes")
    parser.add_argument("--weight", type=float, default=1.572e-4, help="squared error per bit per pixel")
    parser.add_argument("--grow", type=int, default=0, help="residual blocks to add to the encoder")
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--val-every", type=int, default=250)
    parser.add_argument("--val-images", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    codec = vqcodec.load_codec(quality=args.quality)
    vq = codec.vqvae
    for p in [*vq.parameters(), *codec.float_prior.parameters()]:
        p.requires_grad_(False)
    encoder = grown(copy.deepcopy(vq.encoder), args.grow, vq.cfg.channels).to(memory_format=torch.channels_last)
    encoder.requires_grad_(True)
    average = copy.deepcopy(encoder)
    opt = torch.optim.Adam(encoder.parameters(), lr=args.lr)
    data = CropDataset(str(DATA / "train"), args.crop, (1.0,))
    gen = torch.Generator().manual_seed(1000)

    def log(step: int, **metrics: float) -> None:
        with open(args.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "time": time.time(), **metrics}) + "\n")
        print(step, metrics, flush=True)

    psnr, bpp = validate(codec, average, args.val_images)
    log(0, val_psnr=psnr, val_bpp=bpp)
    for step in range(1, args.steps + 1):
        x = data.batch(args.batch, gen).to(memory_format=torch.channels_last)
        z = latent(encoder, x)
        near = vq.quantizer.indices(z.detach())
        codes = vq.quantizer.lookup(near)
        decoded = codec.synthesize_latent(z + (codes - z).detach()).float()
        loss = (decoded - x).square().mean() + 0.25 * (z - codes).square().mean()
        if args.k:
            idx = refined(codec, z, x, args.k, args.weight)
            moved = (idx != near).unsqueeze(1)
            loss = loss + args.gamma * ((z - vq.quantizer.lookup(idx)).square() * moved).mean()
        warmup = min(1.0, step / 100)
        for group in opt.param_groups:
            group["lr"] = args.lr * warmup * 0.5 * (1 + math.cos(math.pi * (step - 1) / args.steps))
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            decay = min(0.999, step / (step + 9))
            for mine, theirs in zip(average.parameters(), encoder.parameters(), strict=True):
                mine.lerp_(theirs, 1 - decay)
        if step % args.val_every == 0 or step == args.steps:
            psnr, bpp = validate(codec, average, args.val_images)
            log(step, loss=float(loss.detach()), val_psnr=psnr, val_bpp=bpp)


if __name__ == "__main__":
    main()
