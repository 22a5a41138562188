"""Rate-distortion against training compute: the vq ladder, the AE and VAE baselines and the hyper-VQ model.

    python bin/compute_curves.py [--measure-stages] [--out docs]

- Variable-rate families: a run (runs/ae, runs/vae, runs/hvq; `vqcodec train ae|vae|hvq --config
  configs/ae|vae|hvq.toml`) validates every level every ``val_every`` steps and logs it with the
  run's core-hours (hvq's include the vae run it started from); each validation is a point.
- The vq ladder: the shipped levels, compressed to real files on the same validation images
  (rate = 8 x file bytes / pixels), at the ladder's total core-hours: what the weights record
  (every run since vqcodec 0.2) plus, for earlier stages that recorded only their steps, steps x
  the seconds per step of that stage measured here at one thread in float32 (``--measure-stages``;
  the measurements are kept in the JSON file; ``--record-estimates`` writes them into the
  weights' ``training.budget``, marked as estimates).

Each point is turned into PSNR at fixed rates (0.25 and 0.5 bpp, interpolated in log-rate
between the levels around it; none where the levels do not reach the rate). The points merge
into docs/compute-curves.json (runs/ is not committed: this file is what the next session
sees) and are plotted in docs/compute-curves.png, with the exported models' Kodak numbers
(measured, never used to choose) printed beside them; docs/level-curves.png plots each vq
level's points as its offset at equal rate from the latest ladder's curve.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
RATES = (0.25, 0.5)
FAMILIES = ("vq", "ae", "vae", "hvq")
RUN_FAMILIES = ("ae", "vae", "hvq")  # variable-rate runs whose validations are the points


def psnr_at(bpps: list[float], psnrs: list[float], rate: float, extend: bool = False) -> float | None:
    """PSNR at ``rate`` bpp, interpolated linearly in log-rate between the nearest points around it;
    beyond the points, None, or with ``extend`` the line of the end segment on that side."""
    segments = list(itertools.pairwise(sorted(zip(bpps, psnrs, strict=True))))
    segment = next(((a, b) for a, b in segments if a[0] <= rate <= b[0] and b[0] > a[0]), None)
    if segment is None and extend and segments:
        segment = segments[0] if rate < segments[0][0][0] else segments[-1]
    if segment is None:
        return None
    (r0, p0), (r1, p1) = segment
    return p0 + (math.log(rate) - math.log(r0)) / (math.log(r1) - math.log(r0)) * (p1 - p0)


def baseline_points(run: Path) -> list[dict]:
    """Validation points of a variable-rate baseline run: core-hours, bpp and PSNR per level."""
    metrics = run / "metrics.jsonl"
    if not metrics.exists():
        return []
    return [
        {"step": m["step"], "core_hours": round(m["core_hours"], 4), "bpp": m["val_bpp"], "psnr": m["val_psnr"]}
        for m in map(json.loads, metrics.read_text().splitlines())
        if isinstance(m.get("val_bpp"), list)
    ]


def stage_seconds(level, stage: str, config: dict, steps: int = 6) -> float:
    """Seconds per step of a vq training stage as it ran before vqcodec 0.2: one thread,
    float32, the stage's batch and crop; the prior's includes its share of encoding the
    training images into index grids (once per run, spread over its steps)."""
    from vqcodec.data import CropDataset
    from vqcodec.models.prior import PixelCNNPrior, PriorConfig, cross_entropy_bits
    from vqcodec.models.vqvae import VQVAE, VQVAEConfig
    from vqcodec.train import index_grids

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    vqvae = VQVAE(VQVAEConfig(**level.meta["vqvae_config"]))
    data_dir = str(ROOT.parent / "shared/data/train")
    if stage == "prior":
        prior = PixelCNNPrior(PriorConfig(**level.meta["prior_config"])).train()
        k = prior.cfg.codebook_size
        opt = torch.optim.Adam(prior.parameters(), 1e-3)

        def step() -> None:
            idx = torch.randint(k, (config["batch"], config["crop"], config["crop"]), generator=gen)
            loss = cross_entropy_bits(prior(idx), idx) / idx.numel()
            opt.zero_grad()
            loss.backward()
            opt.step()

        images = 8
        start = time.perf_counter()
        index_grids(vqvae.eval(), data_dir, tuple(config.get("scales") or (0.5, 0.75, 1.0)), images)
        grids = (time.perf_counter() - start) * 1283 / images / config["steps"]
    else:
        data = CropDataset(data_dir, config["crop"], tuple(config.get("scales") or (0.5, 0.75)), limit=64)
        if stage.startswith("decoder"):
            vqvae.eval()
            for p in [*vqvae.encoder.parameters(), *vqvae.quantizer.parameters()]:
                p.requires_grad_(False)
        else:
            vqvae.train()
        opt = torch.optim.Adam([p for p in vqvae.parameters() if p.requires_grad], 1e-4)

        def step() -> None:
            x = data.batch(config["batch"], gen)
            y, _, commitment = vqvae(x)
            loss = torch.nn.functional.mse_loss(y, x) + commitment
            opt.zero_grad()
            loss.backward()
            opt.step()

        grids = 0.0
    times = []
    for _ in range(steps + 2):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:]) + grids


def ladder(store: dict, measure: bool, record: bool) -> dict:
    """The shipped vq ladder's core-hours: recorded, plus estimated for the unrecorded stages
    (with ``record``, written into the weights' metadata as estimates: same tensors, same id)."""
    from vqcodec.tensors import load_tensors, save_weights
    from vqcodec.zoo import levels

    seconds = store.setdefault("stage_seconds", {})
    total = estimated = gpu = 0.0
    for level in levels("vq"):
        training = level.meta["training"]
        budgets = training.setdefault("budget", {})
        missing = [stage for stage in training["steps"] if "core_hours" not in budgets.get(stage, {})]
        for stage in missing:
            key = f"q{level.quality}:{stage}"  # a level's unrecorded stages predate every later change
            if key not in seconds:
                if not measure:
                    raise SystemExit(f"no step time for vq q{level.quality}'s {stage} stage: run with --measure-stages")
                torch.set_num_threads(1)
                seconds[key] = round(stage_seconds(level, stage, training[stage]), 4)
                print(f"vq q{level.quality} {stage}: {seconds[key]:.3f} s/step (1 thread, float32)")
            hours = round(training["steps"][stage] * seconds[key] / 3600, 4)
            budgets[stage] = {"core_hours": hours, "threads": 1, "precision": "float32", "estimated": ESTIMATE}
        for budget in budgets.values():
            total += budget["core_hours"]
            estimated += budget["core_hours"] if "estimated" in budget else 0.0
        gpu += level.recorded_gpu_hours
        if missing and record:
            save_weights(level.path, load_tensors(level), "vq", level.name, level.quality, level.meta)
            print(f"{level.path.name}: estimated budgets of {', '.join(missing)} recorded")
    ids = ",".join(level.sha256[:8] for level in levels("vq"))
    return {
        "ids": ids,
        "core_hours": round(total, 3),
        "estimated_core_hours": round(estimated, 3),
        "gpu_hours": round(gpu, 3),  # not in core_hours: GPU stages are marked on the plot
    }


ESTIMATE = (
    "not recorded when trained: steps x the stage's seconds per step at one thread in float32, "
    "measured on the 2-core machine (bin/compute_curves.py --measure-stages)"
)


def measure_ladder(val: Path, images: int) -> tuple[list[float], list[float]]:
    """Mean bpp (whole files) and PSNR of every shipped vq level on the first ``images`` val images."""
    from vqcodec.api import load_codec
    from vqcodec.evaluation import measure_folder, summarize
    from vqcodec.zoo import levels

    bpps, psnrs = [], []
    for level in levels("vq"):
        codec = load_codec("vq", level.quality)
        rows = measure_folder(str(val), "vq", f"q{level.quality}", codec.compress, codec.decompress, limit=images)
        summary = summarize(rows)
        bpps.append(round(summary["bpp"], 4))
        psnrs.append(round(summary["psnr"], 4))
    return bpps, psnrs


def shipped_kodak() -> dict[str, tuple[float, list[float], list[float]]]:
    """Each family's shipped levels: the family's training core-hours and the levels' Kodak bpp
    and PSNR from their weights' metadata (measured at export, never used to choose)."""
    from vqcodec.evaluation import kodak_curve
    from vqcodec.zoo import levels, shipped, training_core_hours

    out = {}
    for family in sorted({info.name for info in shipped()} & set(FAMILIES)):
        if all("kodak_bpp" in info.metrics for info in levels(family)):
            bpps, psnrs = kodak_curve(family)
            out[family] = (training_core_hours(family).hours, bpps.tolist(), psnrs.tolist())
    return out


def at_rates(bpps: list[float], psnrs: list[float]) -> str:
    """PSNR at each of RATES, where the points reach it."""
    at = ", ".join(f"{r} bpp {v:.2f} dB" for r in RATES if (v := psnr_at(bpps, psnrs, r)) is not None)
    return at or "outside its rates"


def plot(store: dict, kodak: dict[str, tuple[float, list[float], list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(RATES), figsize=(10, 4.2), sharey=False)
    colors = {"vq": "tab:blue", "ae": "tab:orange", "vae": "tab:green", "hvq": "tab:red"}
    for ax, rate in zip(axes, RATES, strict=True):
        for family in FAMILIES:
            pts = [(p["core_hours"], psnr_at(p["bpp"], p["psnr"], rate)) for p in store["points"].get(family, [])]
            pts = sorted((x, y) for x, y in pts if y is not None)
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", ms=3, color=colors[family], label=family)
        latest = store["points"].get("vq", [])[-1:]  # the GPU time of the shipped ladder (earlier ones: the JSON)
        for p in latest:
            if p.get("gpu_hours") and (y := psnr_at(p["bpp"], p["psnr"], rate)) is not None:
                ax.annotate(
                    f"+{p['gpu_hours']:.2f} GPU-h",
                    (p["core_hours"], y),
                    fontsize=7,
                    xytext=(4, -10),
                    textcoords="offset points",
                    color=colors["vq"],
                )
        for family, (hours, bpps, psnrs) in kodak.items():
            if (y := psnr_at(bpps, psnrs, rate)) is not None:
                ax.plot(
                    hours,
                    y,
                    marker="*",
                    ms=10,
                    mfc="none",
                    ls="",
                    color=colors[family],
                    label=f"{family} shipped, Kodak",
                )
        ax.set_title(f"PSNR at {rate} bpp (lines: validation; stars: Kodak)", fontsize=10)
        ax.set_xlabel("training core-hours of the family")
        ax.set_ylabel("PSNR (dB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Rate-distortion against training compute (BSDS500 val, 20 whole images)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_levels(ladders: list[dict], path: Path) -> None:
    """Each vq level's validation PSNR at equal rate, as its offset from the latest ladder's curve,
    against the ladder's training core-hours: a learning curve per level (flat at zero: that level
    no longer moves)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    latest = ladders[-1]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for level in range(len(latest["bpp"])):
        pts = [
            (p["core_hours"], p["psnr"][level] - psnr_at(latest["bpp"], latest["psnr"], p["bpp"][level], extend=True))
            for p in ladders
            if level < len(p["bpp"])
        ]
        ax.plot(*zip(*pts, strict=True), marker="o", ms=3, label=f"q{level + 1}")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlabel("training core-hours of the vq ladder (GPU-hours not counted)")
    ax.set_ylabel("dB above the latest ladder at equal rate")
    ax.set_title("Each level's validation PSNR at equal rate, release by release (BSDS500 val)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs")
    parser.add_argument("--val", type=Path, default=ROOT.parent / "shared/data/val")
    parser.add_argument("--val-images", type=int, default=20)
    parser.add_argument("--measure-stages", action="store_true", help="time the vq stages that recorded no budget")
    parser.add_argument(
        "--record-estimates", action="store_true", help="write those estimates into the shipped vq weights' metadata"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    path = args.out / "compute-curves.json"
    store = json.loads(path.read_text()) if path.exists() else {"points": {}}
    points = store.setdefault("points", {})
    for family in RUN_FAMILIES:
        known = {p["step"]: p for p in points.get(family, [])}
        known.update({p["step"]: p for p in baseline_points(args.runs / family)})
        points[family] = [known[s] for s in sorted(known)]
    current = ladder(store, args.measure_stages, args.record_estimates)
    if not any(p["ids"] == current["ids"] for p in points.get("vq", [])):
        bpps, psnrs = measure_ladder(args.val, args.val_images)
        points.setdefault("vq", []).append({**current, "bpp": bpps, "psnr": psnrs})
    store["note"] = (
        "validation (BSDS500 val, whole images) bpp and PSNR of every level against the family's training "
        "core-hours; vq: shipped ladders, real files; ae/vae/hvq: variable-rate runs, estimated bits"
    )
    path.write_text(json.dumps(store, indent=1) + "\n")
    kodak = shipped_kodak()
    plot(store, kodak, args.out / "compute-curves.png")
    plot_levels(points["vq"], args.out / "level-curves.png")
    for family in FAMILIES:
        for p in points.get(family, [])[-3:]:
            gpu = f" + {p['gpu_hours']:.2f} GPU-h" if p.get("gpu_hours") else ""
            print(f"{family:>4} {p['core_hours']:7.2f} core-h{gpu}: {at_rates(p['bpp'], p['psnr'])}")
    for family, (hours, bpps, psnrs) in kodak.items():
        print(f"{family:>4} shipped, Kodak, {hours:.2f} core-h: {at_rates(bpps, psnrs)}")
    print(f"wrote {path}, {args.out / 'compute-curves.png'} and {args.out / 'level-curves.png'}")


if __name__ == "__main__":
    main()
