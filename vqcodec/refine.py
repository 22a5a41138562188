"""Encoder-side refinement: indices chosen for the decoded image, not for the latent.

The encoder's nearest codes minimise the distance in latent space, not the pixel error of
what the decoder makes of them. Refinement treats the encoder's latent as a free variable for
a few steps of Adam on the decoded image's squared error, passing the gradient across the
nearest-code search with the straight-through estimator (van den Oord et al., NeurIPS 2017),
and keeps the indices of the step whose decoded image was closest to the original. This is the
encode-time latent optimisation of Campos et al. ("Content adaptive optimization for neural
image compression", CVPR workshops 2019) and Yang et al. ("Improving inference for neural image
compression", NeurIPS 2020), applied to a vector-quantized latent. Only the encoder's choice
changes: the decoder, the prior and the file format stay as they are, so every decoder reads
the files, and decoding is exactly as fast.

Given the prior's code lengths, the refinement also weighs the rate: each step's loss adds the
bits of a soft assignment of each latent to its nearest codes (a softmax of their negative
squared distances), which moves latents towards codes the prior finds cheap in their context,
as entropy-constrained VQ does (Chou, Lookabaugh and Gray 1989), and the steps are scored by
squared error plus the weighted bits. The weight is set per image as an elasticity: at the
nearest codes, 1% fewer bits is worth ``rate``% more squared error.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from vqcodec.quantization import VectorQuantizer, nearest_codes

REFINE_STEPS = 40  # what the README measures and `vqcodec eval`'s NAME+refine uses
REFINE_LR = 2e-3  # Adam's step on the latent, decayed to 0 on a cosine over the steps (tuned on validation)
REFINE_RATE = 0.4  # the rate's weight as an elasticity (tuned on validation at q2-q6: vqcodec 0.11)
CANDIDATES = 8  # the codes nearest each latent that its soft assignment spreads over

# (index grids (B, h, w), candidate codes (B, h, w, T)) -> bits of each candidate in its context
CodeLengths = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def refine_indices(
    latent: torch.Tensor,
    target: torch.Tensor,
    quantizer: VectorQuantizer,
    synthesis: Callable[[torch.Tensor], torch.Tensor],
    steps: int,
    lr: float = REFINE_LR,
    code_lengths: CodeLengths | None = None,
    rate: float = REFINE_RATE,
) -> torch.Tensor:
    """The index grid (B, h, w) of the best of ``steps`` + 1 candidates for ``target``.

    ``latent`` (B, D, h, w) is the encoder's output, ``target`` (B, 3, H, W) the pixels in
    [0, 1] and ``synthesis`` maps quantized latents to pixels. Candidates are scored by the
    squared error of their clamped decoded pixels, plus, with ``code_lengths`` (the prior's),
    their weighted bits. The first candidate is the nearest codes of ``latent``, so the result
    never scores worse than the encoder's own choice."""
    z = latent.detach().float().clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    pixels = target[:, 0].numel()
    best, best_score, weight, spread = None, math.inf, 0.0, 1.0
    with torch.enable_grad():
        for step in range(steps + 1):
            if code_lengths is None:
                idx = quantizer.indices(z.detach())
            else:
                near = candidates(z.detach(), quantizer)
                idx = near[..., 0]
            codes = quantizer.lookup(idx)
            decoded = synthesis(z + (codes - z).detach()).float()
            loss = (decoded - target).square().mean()
            score = (decoded.detach().clamp(0, 1) - target).square().mean().item()
            if code_lengths is not None:
                bits = code_lengths(idx, near)
                bpp = bits[..., 0].sum().item() / pixels
                if step == 0:
                    weight, spread = rate * score / bpp, code_gap(z.detach(), quantizer.codebook, near)
                score += weight * bpp
                loss = loss + weight * soft_bits(z, quantizer.codebook, near, bits, spread) / pixels
            if score < best_score:
                best, best_score = idx, score
            if step == steps:
                break
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            (z.grad,) = torch.autograd.grad(loss, z)
            opt.step()
    return best


def candidates(z: torch.Tensor, quantizer: VectorQuantizer) -> torch.Tensor:
    """The codes (B, h, w, T) nearest each latent of ``z`` (B, D, h, w), the quantizer's own
    choice first (one search gives both)."""
    b, d, h, w = z.shape
    flat = z.permute(0, 2, 3, 1).reshape(-1, d)
    near = nearest_codes(flat, quantizer.codebook, min(CANDIDATES, quantizer.size), quantizer.code_costs())
    return near.view(b, h, w, -1)


def distances(z: torch.Tensor, codebook: torch.Tensor, near: torch.Tensor) -> torch.Tensor:
    """Squared distances (B, h, w, T) of latents (B, D, h, w) to their candidate codes (B, h, w, T)."""
    return (z.permute(0, 2, 3, 1).unsqueeze(-2) - codebook[near]).square().sum(-1)


def code_gap(z: torch.Tensor, codebook: torch.Tensor, near: torch.Tensor) -> float:
    """The median gap between the nearest and second nearest code's squared distance: the soft
    assignment's temperature, so that it spreads over the codes a latent could move to."""
    if near.shape[-1] < 2:  # a codebook of one code: nothing to spread over
        return 1.0
    d = distances(z, codebook, near[..., :2])
    return max(float((d[..., 1] - d[..., 0]).median()), 1e-12)


def soft_bits(
    z: torch.Tensor, codebook: torch.Tensor, near: torch.Tensor, bits: torch.Tensor, spread: float
) -> torch.Tensor:
    """The expected bits of the latents' soft assignment to their candidate codes."""
    return (torch.softmax(-distances(z, codebook, near) / spread, -1) * bits).sum()
