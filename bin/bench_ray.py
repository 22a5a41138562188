"""Throughput of bulk compression: the plain CLI against --ray with 1 and 2 workers, same images.

    python bin/bench_ray.py [--images ../shared/data/val] [--limit 100] [--runs 2]

Each command runs in a fresh process, as a user runs it (``vqcodec compress DIR -o OUT``), and is
timed whole; Ray's start-up (``ray.init`` of a local cluster and the workers' first model load)
is timed on its own and subtracted for the steady-state rate. Prints images per second, the
ratio of --ray at 2 workers to the plain CLI, and the bytes of every output compared with the
plain CLI's. Stop other work on the machine first: two cores have no room for a third job.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STARTUP = """
import time
t = time.perf_counter()
import vqcodec.ray as r
r.connect()
import ray.data
from vqcodec.transcode import CompressOptions
list(r.compress_paths([{path!r}], CompressOptions(), {workers}))
print(time.perf_counter() - t)
"""


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(args, check=False, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, default=ROOT.parent / "shared" / "data" / "val")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[: args.limit]
        for f in files:
            shutil.copy(f, src / f.name)
        cli = [sys.executable, "-m", "vqcodec", "compress", str(src), "--force"]
        runs = {"plain": [], "ray 1 worker": [], "ray 2 workers": []}
        startup = {1: [], 2: []}
        for _ in range(args.runs):
            runs["plain"].append(timed([*cli, "-o", f"{tmp}/plain"]))
            for workers in (1, 2):
                runs[f"ray {workers} worker" + "s" * (workers > 1)].append(
                    timed([*cli, "-o", f"{tmp}/ray{workers}", "--ray", "--ray-workers", str(workers)])
                )
                code = STARTUP.format(path=str(files[0]), workers=workers)
                out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
                startup[workers].append(float(out.stdout.strip().splitlines()[-1]))
        n = len(files)
        plain = statistics.median(runs["plain"])
        print(f"{n} images ({args.images}), medians of {args.runs} runs, wall time of each command:")
        for name, times in runs.items():
            wall = statistics.median(times)
            line = f"  {name:<14} {wall:6.1f} s  {n / wall:5.2f} images/s"
            if name != "plain":
                workers = int(name.split()[1])
                start = statistics.median(startup[workers])
                steady = n / max(wall - start, 1e-9)
                line += f"  (Ray start-up and first image {start:.1f} s; after it {steady:5.2f} images/s)"
            print(line)
        two = statistics.median(runs["ray 2 workers"])
        print(f"--ray at 2 workers / plain CLI, whole commands: {plain / two:.2f}x the throughput")
        same = all(
            (Path(tmp) / "ray2" / f"{f.stem}.vqc").read_bytes() == (Path(tmp) / "plain" / f"{f.stem}.vqc").read_bytes()
            for f in files
        )
        print(f"every --ray output byte-identical to the plain CLI's: {same}")


if __name__ == "__main__":
    main()
