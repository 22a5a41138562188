"""Decode speed of this checkout against another release, side by side in one process.

    git worktree add /tmp/v0.15.0 9e9d989   # a commit of the other release (9e9d989: 0.15.0)
    python bin/compare_releases.py /tmp/v0.15.0 [--quality 4] [--images 3] [--runs 6]

The other release's package is copied under the name ``vqcodec_other`` (its imports rewritten)
and loaded beside this one, so both run on the same images, interleaved, on one machine state:
on a shared machine whose speed drifts between runs, only such a comparison says what a change
bought. Times the stages that decoding runs (prior + range decode of the same payload, decoder
network, the whole decompress of each release's own file) and encoding runs (prior + range encode
of the same indices, the whole compress), checks that both decode the same indices and write the
same bytes for them, and reports the largest pixel difference. Medians.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

import vqcodec
from vqcodec import entropy
from vqcodec.data import image_files, load_rgb

KODAK = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "kodak"
NAME = "vqcodec_other"


def import_release(checkout: Path, into: Path):
    """The package of another checkout, importable as NAME; its weights files are this
    checkout's, so both releases load the same models."""
    target = into / NAME
    shutil.copytree(checkout / "vqcodec", target, ignore=shutil.ignore_patterns("__pycache__", "*.safetensors"))
    for path in target.rglob("*.py"):
        text = path.read_text()
        path.write_text(re.sub(r"\b(from|import) vqcodec\b", rf"\1 {NAME}", text))
    for weights in (Path(vqcodec.__file__).parent / "weights").glob("*.safetensors"):
        shutil.copy(weights, target / "weights" / weights.name)
    sys.path.insert(0, str(into))
    return importlib.import_module(NAME)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("other", type=Path, help="a checkout of the other release")
    ap.add_argument("--quality", type=int, default=4)
    ap.add_argument("--images", type=int, default=3, help="Kodak images (first N)")
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--kodak", type=Path, default=KODAK)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        other = import_release(args.other, Path(tmp))
        codecs = {"other": other.load_codec(quality=args.quality), "this": vqcodec.load_codec(quality=args.quality)}
        modules = {"other": importlib.import_module(f"{NAME}.entropy"), "this": entropy}
        images = [load_rgb(p) for p in image_files(args.kodak)[: args.images]]
        this = codecs["this"]
        # per image, once: its index grid, that grid's payload, and each release's own file of it
        cases = []
        for img in images:
            idx = this.analyze(img)
            payload = entropy.encode_grid(this.prior, idx, stripe_rows=this.stripe_rows)
            cases.append((img, idx, payload, {tag: codec.compress(img) for tag, codec in codecs.items()}))
        times: dict[str, list[float]] = {}
        worst = 0
        for run in range(args.runs):
            for img, idx, payload, files in cases:
                decoded = {}
                order = list(codecs.items())[:: 1 if run % 2 else -1]  # who goes first alternates
                for tag, codec in order:
                    start = time.perf_counter()
                    grid = modules[tag].decode_grid(codec.prior, payload, *idx.shape, codec.stripe_rows)
                    times.setdefault(f"{tag}: prior + range decode", []).append(time.perf_counter() - start)
                    if not torch.equal(grid, idx):
                        raise SystemExit(f"{tag} decodes other indices")
                    start = time.perf_counter()
                    to_pixels = getattr(codec, "grid_to_pixels", None) or codec.pixels  # named pixels before 0.23
                    decoded[tag] = to_pixels(idx).int()
                    times.setdefault(f"{tag}: decoder network", []).append(time.perf_counter() - start)
                    start = time.perf_counter()
                    codec.decompress(files[tag])
                    times.setdefault(f"{tag}: decompress", []).append(time.perf_counter() - start)
                    start = time.perf_counter()
                    data = modules[tag].encode_grid(codec.prior, idx, stripe_rows=codec.stripe_rows)
                    times.setdefault(f"{tag}: prior + range encode", []).append(time.perf_counter() - start)
                    if data != payload:
                        raise SystemExit(f"{tag} encodes other bytes")
                    start = time.perf_counter()
                    codec.compress(img)
                    times.setdefault(f"{tag}: compress", []).append(time.perf_counter() - start)
                worst = max(worst, int((decoded["this"] - decoded["other"]).abs().max()))
    print(
        f"vqcodec {other.__version__} (other) against {vqcodec.__version__} (this), q{args.quality}, "
        f"{torch.get_num_threads()} threads, {len(images)} images x {args.runs} runs, medians (s):"
    )
    for key in ("prior + range decode", "decoder network", "decompress", "prior + range encode", "compress"):
        a, b = (statistics.median(times[f"{tag}: {key}"]) for tag in ("other", "this"))
        print(f"  {key:<22} {a:.4f} -> {b:.4f} ({b / a - 1:+.1%})")
    print(f"same indices; pixels differ by at most {worst} level(s)")


if __name__ == "__main__":
    main()
