"""Two weights files of one level (a new prior, decoder or encoder): whole files of every image of
a folder under each, their mean rate (8 x file bytes / pixels) and PSNR, the new point's gain at
equal rate over the old against the ladder's Kodak curve, and decode time side by side
(interleaved, medians) on the first N images. The check before a new model replaces a shipped one.

    python bin/compare_weights.py OLD.safetensors vqcodec/weights/vq-q7.safetensors --images 4
    python bin/compare_weights.py vqcodec/weights/vq-q6.safetensors new-q6.safetensors --folder ../shared/data/val
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from vqcodec.codec import VQCodec
from vqcodec.data import image_files, load_rgb
from vqcodec.evaluation import gain_at_equal_rate, kodak_curve, psnr
from vqcodec.zoo import read_info

KODAK = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "kodak"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--images", type=int, default=4, help="decode times on the first N images")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--folder", "--kodak", type=Path, default=KODAK)
    ap.add_argument("--limit", type=int, default=None, help="only the first N images of the folder")
    args = ap.parse_args()

    codecs = {name: VQCodec.from_weights(read_info(path)) for name, path in (("old", args.old), ("new", args.new))}
    points: dict[str, list[tuple[float, float]]] = {name: [] for name in codecs}
    times: dict[str, list[float]] = {name: [] for name in codecs}
    same = 0
    paths = image_files(args.folder)[: args.limit]
    for k, path in enumerate(paths):
        img = load_rgb(path)
        same += torch.equal(codecs["old"].analyze(img), codecs["new"].analyze(img))
        for name, codec in codecs.items():
            data = codec.compress(img)
            decoded = np.asarray(codec.decompress(data))
            points[name].append((8 * len(data) / (img.width * img.height), psnr(np.asarray(img), decoded)))
            for _ in range(args.repeats if k < args.images else 0):
                start = time.perf_counter()
                codec.decompress(data)
                times[name].append(time.perf_counter() - start)
    means = {name: tuple(np.mean(p, axis=0)) for name, p in points.items()}
    print(f"{len(paths)} images of {args.folder.name}; the same indices on {same}")
    for name, codec in codecs.items():
        decode = f", decode median {statistics.median(times[name]):.3f} s" if times[name] else ""
        bpp, db = means[name]
        print(f"{name} ({codec.info.path.name}, id {codec.info.model_id.hex()}): {bpp:.4f} bpp, {db:.3f} dB{decode}")
    (old_bpp, old_db), (new_bpp, new_db) = means["old"], means["new"]
    ratio = f", decode {statistics.median(times['new']) / statistics.median(times['old']):.2f}x" if times["old"] else ""
    print(f"new against old: rate {100 * (new_bpp / old_bpp - 1):+.2f}%, {new_db - old_db:+.3f} dB{ratio}")
    gain = gain_at_equal_rate(kodak_curve(codecs["old"].info.name), means["old"], means["new"])
    if gain is not None:
        print(f"gain at equal rate (against the ladder's Kodak curve, linear in bpp): {gain:+.3f} dB")


if __name__ == "__main__":
    main()
