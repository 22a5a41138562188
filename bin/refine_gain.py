"""What encoder-side refinement (``vqcodec compress --refine N``) buys at one level: whole files
of every image with the encoder's nearest codes and with N refinement steps, decoded, then the
mean rate (8 x file bytes / pixels) and PSNR of each, the encode times, and the gain at equal
rate: the refined point's PSNR against the ladder's Kodak curve (the levels' own points from
their weights' metadata, interpolated linearly in bpp as the evaluation report does).

    python bin/refine_gain.py --quality 4 --steps 40 [--images 24] [--folder ../shared/data/kodak] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from vqcodec.api import load_codec
from vqcodec.data import image_files, load_rgb
from vqcodec.evaluation import gain_at_equal_rate, kodak_curve, psnr
from vqcodec.refine import REFINE_STEPS

KODAK = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "kodak"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vq")
    ap.add_argument("--quality", type=int, default=4)
    ap.add_argument("--steps", type=int, default=REFINE_STEPS)
    ap.add_argument("--images", type=int, default=24, help="the first N images of the folder")
    ap.add_argument("--folder", type=Path, default=KODAK)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    codec = load_codec(args.model, args.quality, args.device)
    rows: dict[int, list[tuple[float, float, float]]] = {0: [], args.steps: []}
    for path in image_files(args.folder)[: args.images]:
        img = load_rgb(path)
        line = [path.name]
        for steps, out in rows.items():
            start = time.perf_counter()
            data = codec.compress(img, steps)
            seconds = time.perf_counter() - start
            decoded = np.asarray(codec.decompress(data))
            out.append((8 * len(data) / (img.width * img.height), psnr(np.asarray(img), decoded), seconds))
            line.append(f"refine {steps}: {out[-1][0]:.4f} bpp {out[-1][1]:.3f} dB {seconds:.1f} s")
        print(", ".join(line), flush=True)

    (plain_bpp, plain_db, _), (bpp, db, _) = (np.mean(out, axis=0) for out in rows.values())
    plain_s, refined_s = (statistics.median(r[2] for r in out) for out in rows.values())
    print(f"{args.model} q{args.quality}, {len(rows[0])} images of {args.folder.name}:")
    print(f"  nearest codes: {plain_bpp:.4f} bpp, {plain_db:.3f} dB, encode median {plain_s:.2f} s")
    print(f"  refine {args.steps}: {bpp:.4f} bpp, {db:.3f} dB, encode median {refined_s:.2f} s")
    print(f"  change: {100 * (bpp / plain_bpp - 1):+.2f}% bits, {db - plain_db:+.3f} dB")
    gain = gain_at_equal_rate(kodak_curve(args.model), (plain_bpp, plain_db), (bpp, db))
    if gain is not None:
        print(f"  against the ladder's Kodak curve (levels' points, linear in bpp): {gain:+.3f} dB at equal rate")


if __name__ == "__main__":
    main()
