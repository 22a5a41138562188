"""Is a level's integer prior calibrated image by image? Two cheap per-image adaptations, measured
as upper bounds on the exact frequency tables the range coder uses (every index, the shipped
stripe layout), before anyone changes the bitstream for them:

- a temperature: the encoder picks, per image, the multiplier m/16 of the integer logits
  (1/T, rounded down) and would send it in the header; the best m per image is an oracle's choice;
- a mixture with the image's own index histogram, p' = (1 - w) p + w h: the oracle histogram of
  the whole image (sent for free), and an adaptive one (causal counts in raster order, which a
  decoder could keep).

    python bin/prior_calibration.py --quality 3 --folder ../shared/data/val --limit 8
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from vqcodec.api import load_codec
from vqcodec.codec import VQCodec
from vqcodec.data import image_files, load_rgb
from vqcodec.entropy import TOTAL, frequencies, grid_logits

MULTIPLIERS = (12, 13, 14, 15, 16, 17, 18, 19, 20)  # of 16: 16 is the shipped coder
SHIPPED = MULTIPLIERS.index(16)
WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.2)


def tempered_frequencies(logits: torch.Tensor, multiplier: int) -> np.ndarray:
    """The coder's frequency tables of the logits scaled by multiplier/16 (16: the shipped tables)."""
    return frequencies(logits.cpu().numpy().astype(np.int64) * multiplier // 16)


def coded_probabilities(codec: VQCodec, idx: torch.Tensor) -> np.ndarray:
    """(len(MULTIPLIERS), H*W): the probability each index of the grid is coded with, per multiplier
    (with groups: the group's times the member's)."""
    out = np.ones((len(MULTIPLIERS), idx.numel()))
    for part, logits, symbol in grid_logits(codec.prior, idx, codec.stripe_rows):
        picked = symbol[:, None].cpu().numpy()
        for i, m in enumerate(MULTIPLIERS):
            out[i, part] *= np.take_along_axis(tempered_frequencies(logits, m), picked, 1)[:, 0] / TOTAL
    return out


def mixture_bits(p: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Bits of the grid under (1 - w) p + w h for each of WEIGHTS."""
    return np.array([-np.log2((1 - wt) * p + wt * h).sum() for wt in WEIGHTS])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quality", type=int, default=4)
    ap.add_argument("--folder", type=Path, default=Path("../shared/data/val"))
    ap.add_argument("--limit", type=int, default=8)
    args = ap.parse_args()

    codec = load_codec("vq", args.quality)
    k = codec.prior.cfg.codebook_size
    fixed, best, oracle, adaptive = np.zeros(len(MULTIPLIERS)), 0.0, np.zeros(len(WEIGHTS)), np.zeros(len(WEIGHTS))
    for path in image_files(args.folder)[: args.limit]:
        idx = codec.analyze(load_rgb(path))
        p = coded_probabilities(codec, idx)
        per = -np.log2(p).sum(1)
        fixed += per
        best += per.min()
        sym = idx.reshape(-1).numpy()
        oracle += mixture_bits(p[SHIPPED], (np.bincount(sym, minlength=k) / len(sym))[sym])
        seen = np.zeros(k)
        causal = np.empty(len(sym))
        for n, s in enumerate(sym):  # counts of the indices before, with half a count for each code
            causal[n] = (seen[s] + 0.5) / (n + 0.5 * k)
            seen[s] += 1
        adaptive += mixture_bits(p[SHIPPED], causal)
        gain = per.min() / per[SHIPPED] - 1
        print(f"{path.name}: best multiplier {MULTIPLIERS[int(per.argmin())]}/16, {gain:+.4f}")
    base = fixed[SHIPPED]
    print(f"q{args.quality}, {args.limit} images of {args.folder.name}, bits against the shipped coder:")
    print(
        "  one multiplier for all: "
        + ", ".join(f"{m}/16 {b / base - 1:+.4f}" for m, b in zip(MULTIPLIERS, fixed, strict=True))
    )
    print(f"  the best multiplier per image: {best / base - 1:+.4f}")
    for name, bits in (("oracle", oracle), ("adaptive", adaptive)):
        gains = ", ".join(f"w {wt} {b / bits[0] - 1:+.4f}" for wt, b in zip(WEIGHTS, bits, strict=True))
        print(f"  {name} histogram mixture: {gains}")


if __name__ == "__main__":
    main()
