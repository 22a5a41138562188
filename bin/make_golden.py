"""Write the golden files that pin the bitstream: python bin/make_golden.py

tests/data/golden-v1.vqc is a 96x64 crop of samples/bsds-val-2.png compressed by the shipped
default model; golden-v1-indices.npy and golden-v1-decoded.png are what it must decode to.
Regenerate only on a deliberate format version or model change (and say so in the commit).
"""

from pathlib import Path

import numpy as np
from PIL import Image

import vqcodec
from vqcodec import entropy
from vqcodec.format import VERSION, unpack

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data"


def main() -> None:
    img = Image.open(ROOT / "samples" / "bsds-val-2.png").convert("RGB").crop((100, 60, 196, 124))
    codec = vqcodec.load_codec()
    data = codec.compress(img)
    header, payload = unpack(data)
    idx = entropy.decode_grid(codec.prior, payload, (header.height + 3) // 4, (header.width + 3) // 4)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"golden-v{VERSION}.vqc").write_bytes(data)
    np.save(OUT / f"golden-v{VERSION}-indices.npy", idx.numpy().astype(np.int16))
    codec.decompress(data).save(OUT / f"golden-v{VERSION}-decoded.png")
    print(f"{len(data)} bytes, model {header.family} q{header.quality} id {header.model_id.hex()}")


if __name__ == "__main__":
    main()
