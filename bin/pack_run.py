"""Carry a training run across sessions in git: runs/ is not committed, and a session's disk may
be gone by the next.

    python bin/pack_run.py runs/ae checkpoints/ae.pt        # pack
    python bin/pack_run.py --unpack checkpoints/ae.pt runs/ae

A pack holds the run's configuration, metrics log, step, training budget and data generator,
and its moving-average weights in bfloat16 (a quarter of a checkpoint: no Adam moments, no raw
weights). Unpacking writes a checkpoint that resumes with those weights as both the model and
its average, and a fresh optimizer (Adam's moments re-estimate within a few hundred steps).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import torch

from vqcodec.runs import CHECKPOINT


def pack(run: Path, out: Path) -> None:
    state = torch.load(run / CHECKPOINT, weights_only=False, map_location="cpu")
    weights = state.get("average", state["model"])
    packed = {
        "weights": {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in weights.items()},
        "step": state["step"],
        "budget": state["budget"],
        "gen": state["gen"],
        "averaged_steps": state.get("averaged_steps", 0),
        "config": (run / "config.json").read_text(),
        "metrics": (run / "metrics.jsonl").read_text() if (run / "metrics.jsonl").exists() else "",
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(packed, buffer)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(out)
    print(
        f"{out}: step {packed['step']}, {packed['budget']['core_seconds'] / 3600:.2f} core-hours, "
        f"{out.stat().st_size / 2**20:.1f} MiB"
    )


def unpack(packed_file: Path, run: Path) -> None:
    packed = torch.load(packed_file, weights_only=False, map_location="cpu")
    if (run / CHECKPOINT).exists():
        raise SystemExit(f"{run} has a checkpoint already: unpack into a new run directory")
    weights = {k: v.float() if v.is_floating_point() else v for k, v in packed["weights"].items()}
    state = {
        "model": weights,
        "average": weights,
        "step": packed["step"],
        "budget": packed["budget"],
        "gen": packed["gen"],
        "averaged_steps": packed["averaged_steps"],
    }
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(packed["config"])
    (run / "metrics.jsonl").write_text(packed["metrics"])
    torch.save(state, run / CHECKPOINT)
    print(f"{run}: resumes at step {packed['step']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--unpack", action="store_true", help="source is a pack, target a new run directory")
    args = parser.parse_args()
    (unpack if args.unpack else pack)(args.source, args.target)


if __name__ == "__main__":
    main()
