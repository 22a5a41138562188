"""Big-photo benchmark: peak memory and time against pixel count, up to 12 megapixels.

    python bin/bench_bigimage.py [--sizes 1000x750,2000x1500,4000x3000] [--model vq]

Each size runs in a fresh child process so that its peak resident memory (ru_maxrss) is its
own. The test photo is a Kodak image mirrored and tiled up to the size (real image content,
not noise). Prints seconds and seconds per megapixel for compress and decompress.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

KODAK = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "kodak" / "kodim23.png"


def photo(width: int, height: int) -> Image.Image:
    base = np.asarray(Image.open(KODAK).convert("RGB"))
    tile = np.concatenate([base, base[:, ::-1]], 1)
    tile = np.concatenate([tile, tile[::-1]], 0)
    reps = (height // tile.shape[0] + 1, width // tile.shape[1] + 1, 1)
    return Image.fromarray(np.ascontiguousarray(np.tile(tile, reps)[:height, :width]))


def child(width: int, height: int, model: str) -> None:
    import vqcodec

    img = photo(width, height)
    codec = vqcodec.load_codec(model)
    t0 = time.perf_counter()
    data = codec.compress(img)
    t1 = time.perf_counter()
    out = codec.decompress(data, max_pixels=None)
    t2 = time.perf_counter()
    assert out.size == img.size
    a, b = np.asarray(img, dtype=np.float64), np.asarray(out, dtype=np.float64)
    psnr = 10 * np.log10(255**2 / np.mean((a - b) ** 2))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "encode_s": t1 - t0,
                "decode_s": t2 - t1,
                "peak_mb": peak,
                "bpp": 8 * len(data) / (width * height),
                "psnr": psnr,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000x750,2000x1500,4000x3000")
    ap.add_argument("--model", default="vq")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*map(int, args.child.split("x")), args.model)
        return
    cols = ("size", 11), ("Mpx", 6), ("enc s", 8), ("dec s", 8), ("enc s/Mpx", 10), ("dec s/Mpx", 10), ("peak MB", 9)
    print("".join(f"{name:>{width}}" for name, width in cols) + f"{'bpp':>7}{'PSNR':>7}")
    for size in args.sizes.split(","):
        w, h = map(int, size.split("x"))
        run = subprocess.run(
            [sys.executable, __file__, "--child", size, "--model", args.model],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(run.stdout.strip().splitlines()[-1])
        mpx = w * h / 1e6
        print(
            f"{size:>11}{mpx:>6.1f}{r['encode_s']:>8.2f}{r['decode_s']:>8.2f}{r['encode_s'] / mpx:>10.2f}"
            f"{r['decode_s'] / mpx:>10.2f}{r['peak_mb']:>9.0f}{r['bpp']:>7.3f}{r['psnr']:>7.2f}"
        )


if __name__ == "__main__":
    main()
