"""Pack what a lent GPU machine needs and cannot reach into .gpu/ (ignored; name it in the
device call's `carry`): the training photos, already downscaled, within a size budget; the first
validation images; a few Kodak images to time decoding (timing only: never training or tuning);
and the wheels of the packages that machine lacks. bin/gpu_burst.sh reads it from there.

The photos are downscaled once here, each by a random factor in [0.5, 0.75] (the training
scales; downscaling removes the JPEG blocks of the sources), and stored as JPEG quality 92
without chroma subsampling, in a seeded random order until the budget is used: the device
call carries at most 64 MiB in all, the weights it continues included.

    python bin/gpu_pack.py --megabytes 21
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from PIL import Image

from vqcodec.data import image_files, load_rgb

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
WHEELS = ("constriction", "pytorch-msssim")  # what the device image lacks (see the device tool's KINDS.md)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def pack_train(src: Path, out: Path, budget: int, seed: int) -> tuple[int, int]:
    """Downscaled JPEGs of the photos in ``src``, in a seeded order, until ``budget`` bytes."""
    rng = random.Random(seed)
    files = image_files(src)
    rng.shuffle(files)
    out.mkdir(parents=True, exist_ok=True)
    used = count = 0
    for path in files:
        img = load_rgb(path)
        s = rng.uniform(0.5, 0.75)
        img = img.resize((round(img.width * s), round(img.height * s)), Image.Resampling.LANCZOS)
        dest = out / f"{path.stem}.jpg"
        img.save(dest, "JPEG", quality=92, subsampling=0)
        size = dest.stat().st_size
        if used + size > budget:
            dest.unlink()
            break
        used, count = used + size, count + 1
    return count, used


def copy_first(src: Path, out: Path, n: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for path in image_files(src)[:n]:
        shutil.copy(path, out / path.name)


def download_wheels(out: Path) -> None:
    """Wheels for the device's Python 3.12 of the packages its image lacks, at the versions here."""
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    pins = [f"{name}=={version(name)}" for name in WHEELS]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version"]
    subprocess.run([*cmd, "3.12", "--implementation", "cp", *platforms, "-d", str(out), *pins], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(".gpu"))
    ap.add_argument("--megabytes", type=float, default=21, help="budget of the training photos")
    ap.add_argument("--val", type=int, default=20, help="validation images")
    ap.add_argument("--kodak", type=int, default=3, help="Kodak images to time")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    count, used = pack_train(SHARED / "train", args.out / "train", int(args.megabytes * 1e6), args.seed)
    copy_first(SHARED / "val", args.out / "val", args.val)
    copy_first(SHARED / "kodak", args.out / "kodak", args.kodak)
    download_wheels(args.out / "whl")
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"{args.out}: {count} training photos ({used / 1e6:.1f} MB), {total / 1e6:.1f} MB in all")


if __name__ == "__main__":
    main()
