"""Mutation fuzzing of the decoder: python bin/fuzz.py [--cases 10000] [--seed 0] [--model vq].

Starts from valid .vqc files made by the shipped model and feeds vqcodec.decompress
truncations, bit flips, byte replacements, spliced headers, random bytes and valid headers
(with correct checksums) around garbage payloads, and version-4 files whose chunks are random
(known and unknown types, lying lengths). Every case must either decode to an image of
the size its header claims or raise BitstreamError; anything else (another exception, a
crash, a case over the time limit, memory growing past the limit) is a failure, printed with
its bytes in hex. Prints the count of each outcome.
"""

from __future__ import annotations

import argparse
import collections
import random
import re
import resource
import time
import traceback
from dataclasses import replace

import numpy as np
from PIL import Image

import vqcodec
from vqcodec.format import Chunk, Header, pack, pack_chunk, unpack, unpack_file

MAX_PIXELS = 1 << 16  # keeps each garbage decode small; the limit itself is tested in the suite


def seeds(model: str) -> list[bytes]:
    """Files of a few sizes, half of them with version 4's chunks (alpha, ICC, EXIF, XMP)."""
    rng = np.random.default_rng(0)
    out = []
    for h, w in ((8, 8), (17, 23), (40, 60)):
        y, x = np.mgrid[0:h, 0:w]
        img = np.stack([(x * 7 + y * 3 + c * 50) % 256 for c in range(3)], -1) + rng.integers(0, 20, (h, w, 3))
        rgb = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
        out.append(vqcodec.compress(rgb, model=model))
        rgba = rgb.convert("RGBA")
        rgba.putalpha(Image.fromarray(((x * 11 + y * 5) % 256).astype(np.uint8)))
        exif = Image.Exif()
        exif[0x010F] = "fuzz"
        out.append(vqcodec.compress(rgba, model=model, icc_profile=b"icc" * 20, exif=exif.tobytes(), xmp=b"<x/>"))
    return out


def mutate_chunks(data: bytes, rnd: random.Random) -> bytes:
    """A version-4 file whose chunks are replaced by random ones (types known and unknown,
    lengths that may lie), with every checksum right: what the chunk parser must refuse cleanly."""
    file = unpack_file(data)
    chunks = []
    for _ in range(rnd.randint(0, 4)):
        kind = rnd.choice([b"ICCP", b"EXIF", b"XMP ", b"ALPH", rnd.randbytes(4)])
        body = rnd.choice([rnd.randbytes(rnd.randint(0, 64)), bytes([0, rnd.randrange(256)]), b"\x01RIFF"])
        chunks.append(Chunk(kind, body))
    mode = rnd.choice(["RGB", "L", "RGBA", "LA"])
    header = replace(file.header, mode=mode, version=4, layout=file.header.payload_layout, chunk_count=len(chunks))
    buf = bytearray(pack(header, file.payload, tuple(chunks)))
    if rnd.random() < 0.5 and chunks:  # a lying length or count behind a correct header checksum
        buf[rnd.randrange(len(buf) - len(b"".join(pack_chunk(c) for c in chunks)), len(buf))] ^= 1 << rnd.randrange(8)
    return bytes(buf)


def mutate(data: bytes, rnd: random.Random) -> tuple[str, bytes]:
    buf = bytearray(data)
    kind = rnd.choice(
        ["truncate", "bitflip", "bytes", "splice", "random", "garbage-payload", "header-fields", "chunks"]
    )
    if kind == "truncate":
        buf = buf[: rnd.randrange(len(buf))]
    elif kind == "bitflip":
        for _ in range(rnd.randint(1, 8)):
            pos = rnd.randrange(len(buf) * 8)
            buf[pos // 8] ^= 1 << (pos % 8)
    elif kind == "bytes":
        for _ in range(rnd.randint(1, 8)):
            buf[rnd.randrange(len(buf))] = rnd.randrange(256)
    elif kind == "splice":
        cut = rnd.randrange(len(buf) + 1)
        buf = buf[:cut] + rnd.randbytes(rnd.randint(0, 64)) + buf[cut + rnd.randint(0, 16) :]
    elif kind == "random":
        buf = bytearray(rnd.randbytes(rnd.randint(0, 256)))
    elif kind == "chunks":
        buf = bytearray(mutate_chunks(data, rnd))
    else:
        header, payload = unpack(data)
        if kind == "garbage-payload":
            payload = rnd.randbytes(rnd.randint(0, 512))
        w = rnd.choice([header.width, rnd.randint(1, 300), rnd.randint(1, 4000)])
        h = rnd.choice([header.height, rnd.randint(1, 300), rnd.randint(1, 4000)])
        buf = bytearray(
            pack(Header(header.family, header.quality, header.model_id, w, h, rnd.choice(["RGB", "L"])), payload)
        )
    return kind, bytes(buf)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="vq")
    ap.add_argument("--time-limit", type=float, default=10.0, help="seconds allowed per case")
    ap.add_argument("--memory-limit-mb", type=int, default=2048, help="peak resident memory allowed")
    args = ap.parse_args()

    rnd = random.Random(args.seed)
    corpus = seeds(args.model)
    outcomes: collections.Counter = collections.Counter()
    by_kind: collections.Counter = collections.Counter()
    failures = 0
    start = time.perf_counter()
    for n in range(args.cases):
        kind, data = mutate(rnd.choice(corpus), rnd)
        by_kind[kind] += 1
        t0 = time.perf_counter()
        try:
            img = vqcodec.decompress(data, max_pixels=MAX_PIXELS)
            header, _ = unpack(data)
            if img.size != (header.width, header.height):
                raise AssertionError(f"decoded {img.size}, header says {header.width}x{header.height}")
            outcomes["decoded"] += 1
        except vqcodec.BitstreamError as e:
            outcomes["BitstreamError: " + re.sub(r"\d+", "N", str(e).split(":")[0])[:60]] += 1
        except Exception:
            failures += 1
            outcomes["FAILURE"] += 1
            print(f"case {n} ({kind}) failed: {data.hex()}\n{traceback.format_exc()}")
        if time.perf_counter() - t0 > args.time_limit:
            failures += 1
            outcomes["FAILURE (too slow)"] += 1
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if peak_mb > args.memory_limit_mb:
        failures += 1
    print(f"{args.cases} cases in {time.perf_counter() - start:.0f} s, peak memory {peak_mb:.0f} MB")
    print("mutations: " + ", ".join(f"{k} {v}" for k, v in sorted(by_kind.items())))
    for outcome, count in outcomes.most_common():
        print(f"{count:>7}  {outcome}")
    print(f"failures: {failures}")
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
