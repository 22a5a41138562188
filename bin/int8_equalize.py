"""What equalization buys an int8 decoder quantized after training: a level's decoder on whole
validation images, in float32 and in int8 with ranges set on training crops, plain and
equalized (``vqcodec.int8.equalize``) at each exponent; with the level's shipped ranges too,
where it has them.

    python bin/int8_equalize.py --model vqcodec/weights/vq-q6.safetensors --alphas 0.3,0.5,0.7,1 --images 8
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import torch

from vqcodec import int8
from vqcodec.codec import image_tensor, to_uint8
from vqcodec.data import image_files, load_rgb
from vqcodec.evaluation import psnr
from vqcodec.models.vqvae import VQVAE, VQVAEConfig
from vqcodec.tensors import load_tensors, prefixed
from vqcodec.zoo import find, read_info

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def latents(model: VQVAE, image) -> torch.Tensor:
    with torch.no_grad():
        return model.quantizer.lookup(model.encode(image_tensor(image, model.cfg.downsample)))


def calibration(model: VQVAE, crops: int, size: int = 256) -> torch.Tensor:
    """Latents of random crops of training photos (seeded)."""
    rng = random.Random(0)
    files = image_files(DATA / "train")
    rng.shuffle(files)
    out = []
    for path in files[:crops]:
        image = load_rgb(path)
        left, top = rng.randrange(image.width - size), rng.randrange(image.height - size)
        out.append(latents(model, image.crop((left, top, left + size, top + size))))
    return torch.cat(out)


def calibrated_ranges(decoder: torch.nn.Sequential, codes: torch.Tensor, float_convs: int) -> torch.Tensor:
    """Each quantized activation's (min, max) over ``codes``, the network otherwise in float."""
    net = int8.prepare(decoder, codes[:1], float_convs).eval()
    net.apply(torch.ao.quantization.disable_fake_quant)
    with torch.no_grad():
        net(codes)
    return int8.ranges(net, decoder, float_convs)


def compare(decoder: torch.nn.Sequential, ranges: torch.Tensor, images: list) -> str:
    fast = int8.int8_decoder(decoder, ranges)
    scores, diffs = [], []
    with torch.no_grad():
        for codes, reference in images:
            decoded = []
            for net in (decoder, fast):
                y = to_uint8(net(codes)[0] + 0.5).permute(1, 2, 0).numpy()
                decoded.append(y[: reference.shape[0], : reference.shape[1]])
            scores.append([psnr(y, reference) for y in decoded])
            diffs.append(np.abs(decoded[0].astype(int) - decoded[1]))
    exact, quantized = np.mean(scores, axis=0)
    return (
        f"float {exact:.4f} int8 {quantized:.4f} dB ({quantized - exact:+.4f}), "
        f"at most {max(d.max() for d in diffs)} levels, {np.mean([d.mean() for d in diffs]):.3f} on average"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a VQ weights file (default: the shipped level --quality)")
    ap.add_argument("--quality", type=int, default=6)
    ap.add_argument("--alphas", default="0.5", help="comma-separated exponents of the equalization")
    ap.add_argument("--images", type=int, default=8, help="whole validation images")
    ap.add_argument("--crops", type=int, default=8, help="256x256 training crops that set the ranges")
    ap.add_argument("--float-convs", type=int, default=1, help="the decoder's last convolutions left in float")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not int8.available():
        raise SystemExit("this torch has no x86 quantized engine")
    torch.set_num_threads(args.threads)
    info = read_info(args.model) if args.model else find("vq", args.quality)
    tensors = load_tensors(info)
    model = VQVAE(VQVAEConfig(**info.meta["vqvae_config"]))
    model.load_state_dict({k: v.float() for k, v in prefixed(tensors, "vqvae.").items()})
    model.eval()
    codes = calibration(model, args.crops)
    files = image_files(DATA / "val")[: args.images]
    images = [(latents(model, image), np.asarray(image)) for image in map(load_rgb, files)]
    print(f"{info.path.name} (id {info.model_id.hex()[:8]}), {len(images)} validation images")
    if int8.RANGES in tensors and args.float_convs == int8.shipped_float_convs(model.decoder, tensors[int8.RANGES]):
        print(f"  shipped ranges        {compare(model.decoder, tensors[int8.RANGES], images)}")
    ranges = calibrated_ranges(model.decoder, codes, args.float_convs)
    print(f"  plain                 {compare(model.decoder, ranges, images)}")
    for alpha in map(float, args.alphas.split(",")):
        decoder = int8.equalize(model.decoder, codes, alpha)
        ranges = calibrated_ranges(decoder, codes, args.float_convs)
        print(f"  equalized, alpha {alpha:<4} {compare(decoder, ranges, images)}")


if __name__ == "__main__":
    main()
