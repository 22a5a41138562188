"""Two weights files of one level with the same VQ-VAE (a replaced prior): whole-file Kodak rate
under each, on every image, and decode time side by side (interleaved, medians) on the first N.
The check before a new prior replaces a shipped one; the indices must be the same, so PSNR is.

    python bin/compare_weights.py OLD.safetensors vqcodec/weights/vq-q7.safetensors --images 4
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from vqcodec.codec import VQCodec
from vqcodec.data import image_files, load_rgb
from vqcodec.zoo import read_info

KODAK = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "kodak"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--images", type=int, default=4, help="decode times on the first N images")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--kodak", type=Path, default=KODAK)
    args = ap.parse_args()

    codecs = {name: VQCodec.from_weights(read_info(path)) for name, path in (("old", args.old), ("new", args.new))}
    sizes = dict.fromkeys(codecs, 0)
    times: dict[str, list[float]] = {name: [] for name in codecs}
    pixels = 0
    for k, path in enumerate(image_files(args.kodak)):
        img = load_rgb(path)
        pixels += img.width * img.height
        if not torch.equal(codecs["old"].analyze(img), codecs["new"].analyze(img)):
            raise SystemExit(f"{path.name}: the two weights make different indices (not the same VQ-VAE)")
        for name, codec in codecs.items():
            data = codec.compress(img)
            sizes[name] += len(data)
            for _ in range(args.repeats if k < args.images else 0):
                start = time.perf_counter()
                codec.decompress(data)
                times[name].append(time.perf_counter() - start)
    for name, codec in codecs.items():
        decode = f", decode median {statistics.median(times[name]):.3f} s" if times[name] else ""
        bpp = 8 * sizes[name] / pixels
        print(f"{name} ({codec.info.path.name}, id {codec.info.model_id.hex()}): {bpp:.4f} bpp{decode}")
    ratio = f", decode {statistics.median(times['new']) / statistics.median(times['old']):.2f}x" if times["old"] else ""
    print(f"new against old: rate {100 * (sizes['new'] / sizes['old'] - 1):+.2f}%{ratio}")


if __name__ == "__main__":
    main()
