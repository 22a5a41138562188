"""Write the golden files that pin the bitstream: python bin/make_golden.py [vq] [v4] [ae] [vae]

tests/data/golden-vN.vqc (N: the format version) is a 96x64 crop of samples/bsds-val-2.png
compressed by the shipped default vq model; golden-vN-indices.npy and golden-vN-decoded.png
(float32 networks; an int8 decoder is held to them on average) are what it must decode to. The vq
family has one golden file per format version: the current writer's, and each earlier layout
written from the same indices (format 1: the grid in one stripe, no stripe-height varint), so
every reading path stays pinned when the default model is replaced. golden-vN-ae.vqc and golden-vN-vae.vqc are the
same crop compressed by the default levels of the ae and vae models, with the rounded latents
(-latent.npy, and -side.npy for the vae) and pixels they must decode to; when a release retires
that model, its file moves to golden-vN-FAMILY-retired-RELEASE.vqc, which must name that
release. golden-v4.vqc is the same crop with alpha, an ICC profile, EXIF and XMP (format
version 4's chunks), with the RGBA image it decodes to. Regenerate a family's files only on a
deliberate format version or model change (and say so in the commit); files of earlier versions
stay, and must keep decoding.
"""

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

import vqcodec
from vqcodec import entropy
from vqcodec.codec import image_tensor
from vqcodec.format import pack, unpack
from vqcodec.zoo import retired

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data"


def crop() -> Image.Image:
    return Image.open(ROOT / "samples" / "bsds-val-2.png").convert("RGB").crop((100, 60, 196, 124))


def golden_vq() -> bytes:
    codec = vqcodec.load_codec("vq")
    data = codec.compress(crop())
    header, payload = unpack(data)
    f = codec.multiple
    idx = codec.read(payload, -(-header.height // f), -(-header.width // f), header.version)
    legacy = pack(replace(header, version=1), entropy.encode_grid(codec.prior, idx))  # format 1: one stripe
    # the reference pixels: float32 networks (not bfloat16, nor the int8 decoder where the CPU has them)
    bf16, int8, codec.bf16, codec.int8_decoder = codec.bf16, codec.int8_decoder, False, None
    for version, file in ((header.version, data), (1, legacy)):  # the version its header says
        (OUT / f"golden-v{version}.vqc").write_bytes(file)
        np.save(OUT / f"golden-v{version}-indices.npy", idx.numpy().astype(np.int16))
        codec.decompress(file).save(OUT / f"golden-v{version}-decoded.png")
    codec.bf16, codec.int8_decoder = bf16, int8
    return data


def keep_retired(golden: Path) -> None:
    """Move a golden file whose model was retired to golden-vN-FAMILY-retired-RELEASE.vqc: it stays
    as the test that such a file names the release that decodes it."""
    if not golden.exists():
        return
    old = retired().get(unpack(golden.read_bytes())[0].model_id.hex())
    if old:
        golden.rename(golden.with_name(f"{golden.stem}-retired-{old['version']}.vqc"))


def golden_baseline(family: str) -> bytes:
    codec = vqcodec.load_codec(family)
    data = codec.compress(crop())
    z_hat, y_hat, _ = codec.quantize(image_tensor(crop(), codec.multiple))
    stem = OUT / f"golden-v{unpack(data)[0].version}-{family}"  # the version its header says
    keep_retired(stem.with_suffix(".vqc"))
    stem.with_suffix(".vqc").write_bytes(data)
    np.save(f"{stem}-latent.npy", y_hat.numpy().astype(np.int16))
    if z_hat is not None:
        np.save(f"{stem}-side.npy", z_hat.numpy().astype(np.int16))
    codec.decompress(data).save(f"{stem}-decoded.png")
    return data


def with_extras(img: Image.Image) -> Image.Image:
    """The crop with what version 4 keeps beside the colour: a soft-edged alpha, an sRGB profile,
    EXIF (a make, orientation 1) and XMP."""
    from PIL import ImageCms, ImageDraw, ImageFilter

    alpha = Image.new("L", img.size, 0)
    ImageDraw.Draw(alpha).ellipse((8, 4, img.width - 8, img.height - 4), fill=255)
    out = img.convert("RGBA")
    out.putalpha(alpha.filter(ImageFilter.GaussianBlur(4)))
    exif = Image.Exif()
    exif[0x010F] = "vqcodec golden"
    out.info.update(
        icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
        exif=exif.tobytes(),
        xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>',
    )
    return out


def golden_v4() -> bytes:
    """golden-v4.vqc: the crop with extras (``with_extras``) by the default vq model; its colour
    payload is the same as golden-v2's, its decoded RGBA image (float32 networks) beside it."""
    codec = vqcodec.load_codec("vq")
    data = codec.compress(with_extras(crop()))
    (OUT / "golden-v4.vqc").write_bytes(data)
    bf16, int8, codec.bf16, codec.int8_decoder = codec.bf16, codec.int8_decoder, False, None
    codec.decompress(data).save(OUT / "golden-v4-decoded.png")
    codec.bf16, codec.int8_decoder = bf16, int8
    return data


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    makers = {"vq": golden_vq, "v4": golden_v4}
    for family in sys.argv[1:] or ["vq", "v4", "ae", "vae"]:
        data = makers[family]() if family in makers else golden_baseline(family)
        header, _ = unpack(data)
        print(f"{family}: {len(data)} bytes, q{header.quality} id {header.model_id.hex()}")


if __name__ == "__main__":
    main()
