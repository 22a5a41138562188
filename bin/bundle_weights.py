"""Bundle a shipped model's one-level weights files into one file: python bin/bundle_weights.py ae vae

The levels of a variable-rate model (the ae and vae baselines: one network, a gain vector and
tables per level) share most of their tensors. A bundle (``vqcodec.tensors.save_bundle``) keeps
those once, so the eight ae levels take 7 MB instead of 48 and the vae's 11 instead of 83.
Every level keeps its tensors, id and metadata, so files made with the one-level weights decode
as before. The one-level files (vqcodec/weights/NAME-q*.safetensors, e.g. fresh exports of
``vqcodec train export --run``) are replaced by vqcodec/weights/NAME.safetensors.
"""

from __future__ import annotations

import sys

from vqcodec.tensors import save_bundle
from vqcodec.zoo import WEIGHTS_DIR, read_infos


def bundle(name: str) -> None:
    files = sorted(WEIGHTS_DIR.glob(f"{name}-q*.safetensors"))
    target = WEIGHTS_DIR / f"{name}.safetensors"
    infos = [info for path in files for info in read_infos(path)]
    if target.exists():  # new exports of some levels replace the bundle's copies of them
        fresh = {info.quality for info in infos}
        infos = [info for info in read_infos(target) if info.quality not in fresh] + infos
    if not infos:
        raise SystemExit(f"no weights of {name!r} in {WEIGHTS_DIR}")
    infos.sort(key=lambda info: info.quality)
    written = save_bundle(target.with_name(target.name + ".new"), infos)
    target.with_name(target.name + ".new").replace(target)
    before = sum(p.stat().st_size for p in files) / 1e6
    for path in files:
        path.unlink()
    print(f"{target}: {len(written)} levels, {target.stat().st_size / 1e6:.1f} MB ({before:.1f} MB of one-level files)")


if __name__ == "__main__":
    for name in sys.argv[1:] or ["ae", "vae"]:
        bundle(name)
