"""Speed benchmark: vqcodec against CompressAI's mbt2018 (autoregressive) and mbt2018-mean.

    python bin/bench_speed.py [--images 3] [--device cpu|cuda] [--no-compressai] [--sizes]

Everything runs in this one process, on the same images, interleaved, and medians are
reported, so the ratios are fair on a shared machine. CompressAI is optional
(`pip install --no-deps compressai einops`): its models are randomly initialised, which
times the same as trained weights. Also reports the time of each stage, the same stages as
version 0.1 ran them (one stripe, float prior, float32 decoder) and the decoder network in
its trained layout (the last layer a transposed convolution, not a sub-pixel one), the rate
change of the stripes, the pixel differences of the bfloat16 decoder from float32 and of the
inference layout from the trained one, (--levels) every level's
encode and decode time, (--groups) the prior + range decode time of each level's prior against a prior of
the same size with groups (format version 3), (--tiles) the same with stripes cut into column
tiles, and (--sizes) how decode time grows with image size.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.abc
import importlib.machinery
import statistics
import sys
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import vqcodec
from vqcodec import entropy
from vqcodec.codec import VQCodec, image_tensor
from vqcodec.data import image_files, load_rgb
from vqcodec.evaluation import psnr
from vqcodec.hardware import cpu_name
from vqcodec.models.prior import IntegerPrior, PixelCNNPrior
from vqcodec.models.vqvae import VQVAE, VQVAEConfig
from vqcodec.tensors import load_tensors, prefixed
from vqcodec.zoo import levels

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


def stage_times(codec, trained: VQVAE, img: Image.Image) -> dict[str, float]:
    """Seconds of each stage of one image, as the codec runs them (stripes, int8 prior, an int8
    or bfloat16 decoder where the CPU has it) and as version 0.1 did (one stripe, float prior,
    float32 decoder)."""
    x = image_tensor(img, codec.multiple)
    out = {}
    t = time.perf_counter()
    idx = codec.indices(x)
    out["encoder network"] = time.perf_counter() - t
    rows = codec.stripe_rows
    t = time.perf_counter()
    data = entropy.encode_grid(codec.prior, idx, stripe_rows=rows)
    out["prior + range encode"] = time.perf_counter() - t
    t = time.perf_counter()
    entropy.decode_grid(codec.prior, data, *idx.shape, rows)
    out["prior + range decode"] = time.perf_counter() - t
    out |= decoder_times(codec, trained, idx)
    float_prior = IntegerPrior(codec.prior.cfg, prefixed(load_tensors(codec.info), "prior."), codec.device, int8=False)
    old = entropy.encode_grid(float_prior, idx)
    t = time.perf_counter()
    entropy.decode_grid(float_prior, old, *idx.shape)
    out["v0.1 prior + range decode"] = time.perf_counter() - t
    with decoder_path(codec, bf16=False):
        t = time.perf_counter()
        codec.grid_to_pixels(idx)
        out["v0.1 decoder network (float32)"] = time.perf_counter() - t
    return out


def trained_layout(codec: VQCodec) -> VQVAE:
    """The codec's VQ-VAE as trained, without ``vqvae.for_inference``'s rearrangement."""
    model = VQVAE(VQVAEConfig(**codec.info.meta["vqvae_config"]))
    model.load_state_dict(prefixed(load_tensors(codec.info), "vqvae."))
    return model.to(codec.device, memory_format=torch.channels_last).eval()


@contextmanager
def decoder_path(
    codec: VQCodec, int8: bool = False, bf16: bool | None = None, vqvae: VQVAE | None = None
) -> Iterator[None]:
    """The codec decoding, for the block, with its int8 network (``int8``, where it has one) or
    else in float (bfloat16 or not: ``bf16``, default the codec's own choice), with ``vqvae``
    (default its own) in place of its VQ-VAE."""
    saved = codec.int8_decoder, codec.bf16, codec.vqvae
    codec.int8_decoder = saved[0] if int8 else None
    codec.bf16 = saved[1] if bf16 is None else bf16
    codec.vqvae = vqvae or saved[2]
    try:
        yield
    finally:
        codec.int8_decoder, codec.bf16, codec.vqvae = saved


def decoder_times(codec: VQCodec, trained: VQVAE, idx: torch.Tensor) -> dict[str, float]:
    """Decoder network seconds as the codec runs it, in float where that is int8, and in the
    trained layout, back to back."""
    paths = {"decoder network": {"int8": True}, "decoder network, trained layout": {"vqvae": trained}}
    if codec.int8_decoder is not None:
        paths["decoder network, float"] = {}
    out = {}
    for key, setting in paths.items():
        with decoder_path(codec, **setting):
            t = time.perf_counter()
            codec.grid_to_pixels(idx)
            out[key] = time.perf_counter() - t
    return out


def fidelity(codec: VQCodec, img: Image.Image, fast: dict, slow: dict) -> dict[str, float]:
    """Pixels of one image decoded two ways (``decoder_path`` settings): their differences and
    the PSNR of each."""
    idx = codec.analyze(img)
    outs = []
    for setting in (fast, slow):
        with decoder_path(codec, **setting):
            outs.append(codec.synthesize(idx, img.height, img.width))
    diff = np.abs(outs[0].astype(np.int16) - outs[1])
    ref = np.asarray(img)
    return {
        "max": float(diff.max()),
        "mean": float(diff.mean()),
        "psnr": psnr(ref, outs[0]),
        "reference": psnr(ref, outs[1]),
    }


def print_differences(label: str, rows: list[dict[str, float]]) -> None:
    """One line of pixel differences between two decoders, each row one image's (``fidelity``)."""
    mean = {key: float(np.mean([row[key] for row in rows])) for key in ("mean", "psnr", "reference")}
    print(
        f"{label}: max |diff| {max(row['max'] for row in rows):.0f}, mean |diff| {mean['mean']:.4f} levels, "
        f"PSNR {mean['psnr']:.3f} vs {mean['reference']:.3f} dB"
    )


def time_vqcodec(codec, img: Image.Image) -> tuple[float, float]:
    """(encode s, decode s) of one image, whole files."""
    start = time.perf_counter()
    data = codec.compress(img)
    mid = time.perf_counter()
    codec.decompress(data)
    return mid - start, time.perf_counter() - mid


def sqrt_groups(k: int) -> int:
    """The power of two nearest sqrt(K): groups and members of about the same size."""
    return 1 << round(np.log2(k) / 2)


def grouped_decode_times(codec, images: list[Image.Image]) -> tuple[int, float, float]:
    """(groups, median prior + range decode seconds of a prior with one table, of a prior of the
    same size with groups), side by side: the level's own, and one of the other kind with random
    weights, which time the same."""
    own = codec.prior.cfg
    cfg = dataclasses.replace(own, groups=1 if own.groups > 1 else sqrt_groups(own.codebook_size))
    torch.manual_seed(0)
    model = PixelCNNPrior(cfg)
    model.quantized = True
    other = IntegerPrior(cfg, IntegerPrior.export(model), codec.device)
    groups = max(own.groups, cfg.groups)
    times: dict[int, list[float]] = {1: [], groups: []}
    for img in images:
        idx = codec.analyze(img)
        for prior in (codec.prior, other):
            data = entropy.encode_grid(prior, idx, stripe_rows=codec.stripe_rows)
            start = time.perf_counter()
            entropy.decode_grid(prior, data, *idx.shape, codec.stripe_rows)
            times[prior.cfg.groups].append(time.perf_counter() - start)
    return groups, statistics.median(times[1]), statistics.median(times[groups])


TILE_WIDTHS = (None, 384, 256, 192)  # image columns per tile; None: stripes the whole width


def tiled_decode(codec, images: list[Image.Image]) -> dict:
    """Per tile width: (wavefront steps of the first image, payload bytes summed over the
    images, median prior + range decode seconds). Tiles are stripes cut into columns as well,
    coded in lockstep (``entropy.Wavefronts``): fewer steps, for the context lost at their
    left and right edges. Not a format the codec writes: the measurement behind keeping stripes."""
    grids = [codec.analyze(img) for img in images]
    out = {}
    for width in TILE_WIDTHS:
        cols = width // codec.multiple if width else None
        layout = (codec.stripe_rows, cols)
        payloads = [entropy.encode_grid(codec.prior, idx, None, *layout) for idx in grids]
        seconds = []
        for idx, data in zip(grids, payloads, strict=True):
            start = time.perf_counter()
            entropy.decode_grid(codec.prior, data, *idx.shape, *layout)
            seconds.append(time.perf_counter() - start)
        steps = len(entropy.Wavefronts(*grids[0].shape, codec.prior.cfg.radius, *layout))
        out[width] = (steps, sum(map(len, payloads)), statistics.median(seconds))
    return out


def per_level(args: argparse.Namespace, codec, images: list[Image.Image]) -> None:
    print("\nencode and decode seconds per level (medians over the images):")
    for info in levels(args.model):
        level = vqcodec.load_codec(args.model, info.quality, args.device)
        times = [time_vqcodec(level, img) for img in images]
        encode, decode = (statistics.median(t) for t in zip(*times, strict=True))
        print(f"  q{info.quality}: encode {encode:.3f}, decode {decode:.3f}")


def grouped(args: argparse.Namespace, codec, images: list[Image.Image]) -> None:
    print("\nprior + range decode seconds (medians), one table against groups (one is the level's prior):")
    for info in levels(args.model) if args.levels else [codec.info]:
        level = vqcodec.load_codec(args.model, info.quality, args.device)
        g, flat, grouped_s = grouped_decode_times(level, images)
        k = level.prior.cfg.codebook_size
        print(f"  q{info.quality} (K={k}): one table {flat:.3f}, {g} groups {grouped_s:.3f} ({grouped_s / flat:.2f}x)")


def tiles(args: argparse.Namespace, codec, images: list[Image.Image]) -> None:
    print("\nstripes cut into column tiles: wavefront steps, payload bytes, prior + range decode s (median):")
    for info in levels(args.model) if args.levels else [codec.info]:
        level = vqcodec.load_codec(args.model, info.quality, args.device)
        rows = tiled_decode(level, images)
        size = rows[None][1]  # the whole-width payload, what the tiles are compared with
        cells = [
            f"{w or 'whole width'}: {n} steps, {b / size - 1:+.2%} bytes, {t:.3f} s" for w, (n, b, t) in rows.items()
        ]
        print(f"  q{info.quality}: " + "; ".join(cells))


def sizes(args: argparse.Namespace, codec, images: list[Image.Image]) -> None:
    print("\ndecode time vs size (Kodak image 1 tiled/cropped):")
    print(f"{'size':>10}{'grid':>10}{'waves':>7}{'decode s':>10}{'s/Mpx':>8}")
    base = np.asarray(images[0])
    for side in (256, 512, 1024, 2048):
        reps = (side // base.shape[0] + 1, side // base.shape[1] + 1, 1)
        img = Image.fromarray(np.tile(base, reps)[:side, :side])
        dec = time_vqcodec(codec, img)[1]
        grid = side // codec.multiple
        n = len(entropy.Wavefronts(grid, grid, codec.prior.cfg.radius, codec.stripe_rows))
        print(f"{side:>5}x{side:<4}{grid:>5}x{grid:<4}{n:>7}{dec:>10.3f}{dec / side**2 * 1e6:>8.3f}")


def measure(codec, images: list[Image.Image], others: dict, device: str) -> tuple[dict, dict, dict, dict]:
    """Times, stage times, the stripes' bits and the fast paths' pixel differences on each image."""
    times: dict[str, dict[str, list[float]]] = {}
    stages: dict[str, list[float]] = {}
    bits = {"stripes": 0.0, "one stripe": 0.0}
    trained = trained_layout(codec)
    comparisons = {
        "bfloat16 decoder against float32": ({"bf16": True}, {"bf16": False}),
        "inference layout against the trained layout (sub-pixel last layer)": ({}, {"vqvae": trained}),
    }
    if codec.int8_decoder is not None:
        comparisons["int8 decoder against float32"] = ({"int8": True}, {"bf16": False})
    differences: dict[str, list[dict]] = {label: [] for label in comparisons}
    for img in images:
        enc, dec = time_vqcodec(codec, img)
        times.setdefault("vqcodec", {}).setdefault("encode", []).append(enc)
        times["vqcodec"].setdefault("decode", []).append(dec)
        for key, value in stage_times(codec, trained, img).items():
            stages.setdefault(key, []).append(value)
        idx = codec.analyze(img)
        bits["stripes"] += entropy.grid_bits(codec.prior, idx, codec.stripe_rows)
        bits["one stripe"] += entropy.grid_bits(codec.prior, idx)
        for label, (fast, slow) in comparisons.items():
            differences[label].append(fidelity(codec, img, fast, slow))
        for name, model in others.items():
            enc, dec = time_compressai(model, img, device)
            times.setdefault(name, {}).setdefault("encode", []).append(enc)
            times[name].setdefault("decode", []).append(dec)
    return times, stages, bits, differences


def report(codec, images, others: dict, times: dict, stages: dict, bits: dict, differences: dict) -> None:
    print(f"\nmedian seconds per image over {len(images)} Kodak images (768x512):")
    print(f"{'codec':<14}{'encode':>9}{'decode':>9}")
    for name, t in times.items():
        print(f"{name:<14}{statistics.median(t['encode']):>9.3f}{statistics.median(t['decode']):>9.3f}")
    vq = times["vqcodec"]
    for name in others:
        for key in ("encode", "decode"):
            ratio = statistics.median(vq[key]) / statistics.median(times[name][key])
            print(f"{key}: vqcodec takes {ratio:.2f}x the time of {name}")
    print("\nstages (median seconds):")
    for key, values in stages.items():
        print(f"  {key:<34}{statistics.median(values):>8.3f}")
    waves = entropy.Wavefronts
    shape = codec.analyze(images[0]).shape
    steps = (len(waves(*shape, codec.prior.cfg.radius, codec.stripe_rows)), len(waves(*shape, codec.prior.cfg.radius)))
    print(f"  wavefront steps: {steps[0]} in stripes of {codec.stripe_rows} rows, {steps[1]} in one stripe")
    change = 100 * (bits["stripes"] / bits["one stripe"] - 1)
    print(f"rate change of the stripes (prior cross-entropy, these images): {change:+.3f}%")
    for label, rows in differences.items():
        print_differences(label, rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=3, help="Kodak images to time (first N)")
    ap.add_argument("--kodak", type=Path, default=KODAK, help="folder of the Kodak images")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="vq")
    ap.add_argument("--quality", type=int, default=None)
    ap.add_argument("--levels", action="store_true", help="also time every level of the model")
    ap.add_argument("--groups", action="store_true", help="also time priors with groups (format version 3)")
    ap.add_argument("--tiles", action="store_true", help="also time stripes cut into column tiles (not a format)")
    ap.add_argument("--no-compressai", action="store_true")
    ap.add_argument("--sizes", action="store_true", help="decode time vs image size, 256^2..2048^2")
    args = ap.parse_args()

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, cpu {cpu_name()}")
    start = time.perf_counter()
    codec = vqcodec.load_codec(args.model, args.quality, args.device)
    print(f"vqcodec model load: {time.perf_counter() - start:.2f} s ({codec.info.path.name})")
    print(
        f"bfloat16 networks: {codec.bf16}; int8 prior products: {codec.prior._int8 is not None}; "
        f"int8 decoder: {codec.int8_decoder is not None}"
    )
    others = {} if args.no_compressai else compressai_models(args.device)
    images = [load_rgb(p) for p in image_files(args.kodak)[: args.images]]

    times, stages, bits, differences = measure(codec, images, others, args.device)
    report(codec, images, others, times, stages, bits, differences)
    for flag, section in (("levels", per_level), ("groups", grouped), ("tiles", tiles), ("sizes", sizes)):
        if getattr(args, flag):
            section(args, codec, images)


if __name__ == "__main__":
    main()
