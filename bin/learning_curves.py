"""Learning curves of the training runs, kept across sessions under docs/.

    python bin/learning_curves.py [RUN_DIR ...] [--out docs]

Reads each run's metrics.jsonl (validation PSNR and core-hours, logged by every training loop)
and config.json, merges the curves into docs/learning-curves.json (runs/ is not committed, so
this file is what the next session sees), and plots docs/learning-curves.png: validation PSNR
against the run's core-hours, one curve per run. A decoder-only fine-tuning keeps the indices,
so its curve is PSNR at a fixed rate. Runs default to runs/*/.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def curve(run: Path) -> dict | None:
    """One run's validation points (core-hours, PSNR, index entropy) and what it trained."""
    metrics, config = run / "metrics.jsonl", run / "config.json"
    if not (metrics.exists() and config.exists()):
        return None
    cfg = json.loads(config.read_text())
    if "lmbda" in cfg["model"]:  # a baseline's run: bin/compute_curves.py draws those
        return None
    points = [
        [round(m.get("core_hours", 0.0), 4), round(m["val_psnr"], 4), round(m.get("val_entropy_bpp", 0.0), 4)]
        for m in map(json.loads, metrics.read_text().splitlines())
        if "val_psnr" in m
    ]
    if not points:
        return None
    source = cfg.get("base") or cfg.get("init") or {}
    stage = "decoder" if cfg.get("base") else "vqvae"
    return {
        "run": run.name,
        "level": source.get("weights") or run.name,
        "stage": stage,
        "from_id": source.get("id"),
        "precision": "bfloat16" if cfg["train"].get("amp") else "float32",
        "steps": cfg["train"]["steps"],
        "date": time.strftime("%Y-%m-%d", time.gmtime(run.stat().st_mtime)),
        "points": points,  # [core-hours, val PSNR (dB), val index entropy (bpp)]
    }


def plot(curves: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for c in curves:
        x, y = [p[0] for p in c["points"]], [p[1] - c["points"][0][1] for p in c["points"]]
        ax.plot(x, y, marker="o", ms=3, label=f"{c['run']}: {c['level']} {c['stage']} ({c['date']}, {c['precision']})")
    ax.set_xlabel("core-hours of the run")
    ax.set_ylabel("validation PSNR gain since the run's start (dB)")
    ax.set_title("Learning curves (decoder runs: fixed rate)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    store = args.out / "learning-curves.json"
    known = json.loads(store.read_text())["curves"] if store.exists() else []
    runs = args.runs or sorted({p.resolve() for p in (ROOT / "runs").glob("*/")})  # links: once
    found = [c for c in map(curve, runs) if c]
    merged = {(c["run"], c["level"], c["stage"], c["date"]): c for c in known + found}
    curves = sorted(merged.values(), key=lambda c: (c["level"], c["date"], c["run"]))
    note = "validation PSNR (BSDS500 val, whole images) against each run's core-hours; runs/ is not committed"
    store.write_text(json.dumps({"note": note, "curves": curves}, indent=1) + "\n")
    plot(curves, args.out / "learning-curves.png")
    for c in curves:
        first, last = c["points"][0], c["points"][-1]
        print(
            f"{c['run']:>16} {c['level']:>8} {c['stage']:<8} {c['date']}: {first[1]:.3f} -> {last[1]:.3f} dB "
            f"in {last[0]:.2f} core-h"
        )
    print(f"wrote {store} and {args.out / 'learning-curves.png'}")


if __name__ == "__main__":
    main()
