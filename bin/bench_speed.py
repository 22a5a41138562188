"""Speed benchmark: vqcodec against CompressAI's mbt2018 (autoregressive) and mbt2018-mean.

    python bin/bench_speed.py [--images 3] [--device cpu|cuda] [--no-compressai] [--sizes]

Everything runs in this one process, on the same images, interleaved, and medians are
reported, so the ratios are fair on a shared machine. CompressAI is optional
(`pip install --no-deps compressai einops`): its models are randomly initialised, which
times the same as trained weights. Also reports payload bits against the prior's own
cross-entropy, and (--sizes) how decode time grows with image size.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import vqcodec
from vqcodec import entropy
from vqcodec.data import image_files, load_rgb
from vqcodec.format import unpack

KODAK = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "kodak"


class _StubOptional(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """compressai imports torchvision, torch_geometric and pandas for datasets and transforms
    only; stub them so its image models import beside a torch that has no torchvision."""

    names = ("torchvision", "torch_geometric", "pandas")

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in self.names:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__getattr__ = lambda attr: type(attr, (), {}) if attr[:1].isupper() else (lambda *a, **k: lambda f: f)
        return module

    def exec_module(self, module):
        pass


def compressai_models(device: str) -> dict:
    try:
        sys.meta_path.insert(0, _StubOptional())
        from compressai.zoo import mbt2018, mbt2018_mean
    except ImportError as e:
        print(f"compressai not available ({e}); install it with: pip install --no-deps compressai einops")
        return {}
    models = {}
    for name, ctor in (("mbt2018", mbt2018), ("mbt2018-mean", mbt2018_mean)):
        model = ctor(quality=3, pretrained=False).eval().to(device)
        model.update(force=True)
        models[name] = model
    return models


def time_compressai(model, img: Image.Image, device: str) -> tuple[float, float]:
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None].float().div(255).to(device)
    with torch.no_grad():
        start = time.perf_counter()
        out = model.compress(x)
        mid = time.perf_counter()
        model.decompress(out["strings"], out["shape"])
        end = time.perf_counter()
    return mid - start, end - mid


def time_vqcodec(codec, img: Image.Image) -> tuple[float, float, float]:
    """(encode s, decode s, prior-only decode s) of one image."""
    start = time.perf_counter()
    data = codec.compress(img)
    mid = time.perf_counter()
    codec.decompress(data)
    end = time.perf_counter()
    _, payload = unpack(data)
    shape = codec.analyze(img).shape
    t0 = time.perf_counter()
    entropy.decode_grid(codec.prior, payload, *shape)
    return mid - start, end - mid, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=3, help="Kodak images to time (first N)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="vq")
    ap.add_argument("--quality", type=int, default=None)
    ap.add_argument("--no-compressai", action="store_true")
    ap.add_argument("--sizes", action="store_true", help="decode time vs image size, 256^2..2048^2")
    args = ap.parse_args()

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}")
    start = time.perf_counter()
    codec = vqcodec.load_codec(args.model, args.quality, args.device)
    print(f"vqcodec model load: {time.perf_counter() - start:.2f} s ({codec.info.path.name})")
    others = {} if args.no_compressai else compressai_models(args.device)
    images = [load_rgb(p) for p in image_files(KODAK)[: args.images]]

    times: dict[str, dict[str, list[float]]] = {}
    bits, cross_entropy = 0, 0.0
    for img in images:
        enc, dec, prior_s = time_vqcodec(codec, img)
        for key, value in (("encode", enc), ("decode", dec), ("prior decode", prior_s)):
            times.setdefault("vqcodec", {}).setdefault(key, []).append(value)
        _, payload = unpack(codec.compress(img))
        bits += 8 * len(payload)
        cross_entropy += entropy.grid_bits(codec.prior, codec.analyze(img))
        for name, model in others.items():
            enc, dec = time_compressai(model, img, args.device)
            times.setdefault(name, {}).setdefault("encode", []).append(enc)
            times[name].setdefault("decode", []).append(dec)

    print(f"\nmedian seconds per image over {len(images)} Kodak images (768x512):")
    print(f"{'codec':<14}{'encode':>9}{'decode':>9}")
    for name, t in times.items():
        print(f"{name:<14}{statistics.median(t['encode']):>9.3f}{statistics.median(t['decode']):>9.3f}")
    prior_s = statistics.median(times["vqcodec"]["prior decode"])
    print(f"vqcodec prior-only decode (range decoder + integer PixelCNN): {prior_s:.3f} s")
    vq = times["vqcodec"]
    for name in others:
        for key in ("encode", "decode"):
            ratio = statistics.median(times[name][key]) / statistics.median(vq[key])
            print(f"{key}: vqcodec is {ratio:.1f}x faster than {name}")
    overhead = 100 * (bits / cross_entropy - 1)
    print(f"\npayload {bits} bits vs prior cross-entropy {cross_entropy:.0f} bits: {overhead:+.3f}%")

    if args.sizes:
        print("\ndecode time vs size (Kodak image 1 tiled/cropped):")
        print(f"{'size':>10}{'grid':>10}{'waves':>7}{'decode s':>10}{'prior s':>9}{'s/Mpx':>8}")
        base = np.asarray(images[0])
        for side in (256, 512, 1024, 2048):
            reps = (side // base.shape[0] + 1, side // base.shape[1] + 1, 1)
            img = Image.fromarray(np.tile(base, reps)[:side, :side])
            enc, dec, prior_s = time_vqcodec(codec, img)
            grid = side // codec.factor
            waves = len(entropy.Wavefronts(grid, grid, codec.prior.cfg.radius))
            per_mpx = dec / side**2 * 1e6
            print(f"{side:>5}x{side:<4}{grid:>5}x{grid:<4}{waves:>7}{dec:>10.3f}{prior_s:>9.3f}{per_mpx:>8.3f}")


if __name__ == "__main__":
    main()
