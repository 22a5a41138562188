"""Carry a training run across sessions in git: runs/ is not committed, and a session's disk may
be gone by the next.

    python bin/pack_run.py runs/ae checkpoints/ae.pt        # pack
    python bin/pack_run.py --unpack checkpoints/ae.pt runs/ae
    python bin/pack_run.py --unpack checkpoints/ae.pt runs/ae --lambdas 0.00045,0.0009,0.0018,...

A pack holds the run's configuration, metrics log, step, training budget and data generator,
and its moving-average weights in bfloat16 (a quarter of a checkpoint: no Adam moments, no raw
weights). Unpacking writes a checkpoint that resumes with those weights as both the model and
its average, and a fresh optimizer (Adam's moments re-estimate within a few hundred steps).
With ``--lambdas``, a variable-rate baseline run resumes with more rate points
(``vqcodec.models.ae.grow_levels``): pass the same lambdas in its training configuration.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vqcodec.runs import pack_run, unpack_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--unpack", action="store_true", help="source is a pack, target a new run directory")
    parser.add_argument(
        "--lambdas", help="with --unpack: a baseline run's lambdas, comma-separated, a superset of the pack's"
    )
    args = parser.parse_args()
    if args.unpack:
        lambdas = tuple(float(x) for x in args.lambdas.split(",")) if args.lambdas else None
        try:
            print(unpack_run(args.source, args.target, lambdas))
        except (FileExistsError, ValueError) as e:
            raise SystemExit(f"pack_run: {e}") from None
    elif args.lambdas:
        parser.error("--lambdas needs --unpack")
    else:
        print(pack_run(args.source, args.target))


if __name__ == "__main__":
    main()
