"""Exact coded bits of a level's validation index grids under its shipped prior and under
trained prior runs: the comparison that decides whether a new prior (another recipe, groups)
replaces the shipped one. Validation images only (model selection), whole images, the codec's
stripes and integer tables: what the files would cost.

    python bin/compare_priors.py --quality 4 --images 20 runs/q4-prior-flat runs/q4-prior-g16o
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import vqcodec
from vqcodec import entropy
from vqcodec.data import image_files, load_rgb
from vqcodec.models.prior import IntegerPrior
from vqcodec.runs import load_prior

VAL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "val"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="*", help="prior run directories trained on the level's VQ-VAE")
    ap.add_argument("--model", default="vq")
    ap.add_argument("--quality", type=int, default=None)
    ap.add_argument("--images", type=int, default=20, help="first N validation images")
    ap.add_argument("--val", type=Path, default=VAL)
    args = ap.parse_args()

    torch.set_num_threads(1)
    codec = vqcodec.load_codec(args.model, args.quality)
    grids = [codec.analyze(load_rgb(p)) for p in image_files(args.val)[: args.images]]
    cells = sum(g.numel() for g in grids)
    priors = {f"shipped ({codec.info.path.name})": codec.prior}
    for run in args.runs:
        prior = load_prior(run)
        priors[run] = IntegerPrior(prior.cfg, IntegerPrior.export(prior))
    print(f"{len(grids)} validation images, {cells} indices, stripes of {codec.stripe_rows} rows")
    base = None
    for name, prior in priors.items():
        bits = sum(entropy.grid_bits(prior, g, codec.stripe_rows) for g in grids)
        base = base or bits
        print(f"  {name}: {bits / cells:.4f} bits/index ({100 * (bits / base - 1):+.2f}%), groups {prior.cfg.groups}")


if __name__ == "__main__":
    main()
