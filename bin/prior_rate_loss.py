"""What integer inference costs in rate, and what the range coder adds, on Kodak.

    python bin/prior_rate_loss.py --prior-run runs/prior [--model vq] [--quality N]

Reports, summed over the Kodak index grids of the shipped VQ-VAE: the cross-entropy of the
float prior as it was before quantization-aware fine-tuning (runs/prior/float_prior.pt), of the
shipped integer prior's exact frequency tables, and the payload bits the range coder wrote.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import vqcodec
from vqcodec import entropy
from vqcodec.data import image_files, load_rgb
from vqcodec.format import unpack
from vqcodec.runs import load_prior

KODAK = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "kodak"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior-run", default="runs/prior")
    ap.add_argument("--model", default="vq")
    ap.add_argument("--quality", type=int, default=None)
    args = ap.parse_args()

    codec = vqcodec.load_codec(args.model, args.quality)
    float_prior = load_prior(args.prior_run)
    float_prior.load_state_dict(torch.load(Path(args.prior_run) / "float_prior.pt", weights_only=True)["model"])
    float_prior.quantized = False
    float_bits = integer_bits = payload_bits = 0.0
    indices = 0
    for path in image_files(KODAK):
        img = load_rgb(path)
        idx = codec.analyze(img)
        with torch.no_grad():
            float_bits += float(float_prior.bits(idx[None]))
        integer_bits += entropy.grid_bits(codec.prior, idx)
        payload_bits += 8 * len(unpack(codec.compress(img))[1])
        indices += idx.numel()
    print(f"Kodak, {indices} indices, model {codec.info.path.name}")
    loss = 100 * (integer_bits / float_bits - 1)
    overhead = 100 * (payload_bits / integer_bits - 1)
    print(f"float prior (before QAT)   {float_bits / indices:.4f} bits/index")
    print(f"integer prior (exact)      {integer_bits / indices:.4f} bits/index  ({loss:+.2f}% vs float)")
    print(f"range-coded payload        {payload_bits / indices:.4f} bits/index  ({overhead:+.3f}% vs integer)")


if __name__ == "__main__":
    main()
