"""Cold start-up of the command line: seconds per command in a fresh process, median of N runs.

    python bin/bench_startup.py [--runs 3] [--image samples/bsds-val-1.png]

The light commands (``--version``, ``--help``, ``info``, ``models``) load neither torch nor
numba; ``compress`` and ``decompress`` of a small image load the model and the coder, and
their numbers are the start-up a user of one-off commands pays.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def seconds(args: list[str], runs: int) -> list[float]:
    """Wall time of ``vqcodec ARGS`` in a new interpreter, ``runs`` times."""
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vqcodec", *args], check=True, capture_output=True)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--image", default="samples/bsds-val-1.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        vqc, png = str(Path(tmp) / "x.vqc"), str(Path(tmp) / "x.png")
        commands = {
            "--version": ["--version"],
            "--help": ["--help"],
            "models": ["models"],
            "compress": ["compress", args.image, "-o", vqc, "--force"],
            "info": ["info", vqc],
            "decompress": ["decompress", vqc, "-o", png, "--force"],
        }
        for name, argv in commands.items():
            times = seconds(argv, args.runs)
            print(f"{name:<11} median {statistics.median(times):.2f} s  ({', '.join(f'{t:.2f}' for t in times)})")


if __name__ == "__main__":
    main()
