"""Trained models as sources: run directories and weights files, and their training records.

A run directory (``config.json``, ``checkpoint.pt``, ``metrics.jsonl``) holds one training
stage, and its pack (``pack_run``) carries it across sessions in git; a weights file holds a
shipped model with the record of every stage that made it. What trains next (a warm start,
more training of a shipped level, a decoder fine-tuning) and what is exported read both kinds
here, so that each weights file carries its whole history: the stages, their configurations,
the steps that ran and their budgets (core-hours, precision), and the weights it started from
(torchvision's weights metadata is the model).
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import torch

from vqcodec.int8 import RANGES, folded_state
from vqcodec.models.ae import grow_levels
from vqcodec.models.prior import IntegerPrior, PixelCNNPrior, PriorConfig
from vqcodec.models.vqvae import VQVAE, VQVAEConfig
from vqcodec.tensors import load_tensors, prefixed
from vqcodec.zoo import read_info

CHECKPOINT = "checkpoint.pt"  # in every run directory
TRAINING_DATA = "shared/data/train (BSDS500 train+test, ImageNet class samples); model selection: BSDS500 val"


def load_run(out: str | Path) -> tuple[dict, dict]:
    """(config, state dict of the averaged weights, or of the model without them) of a run directory."""
    out = Path(out)
    config = json.loads((out / "config.json").read_text())
    state = torch.load(out / CHECKPOINT, weights_only=True)
    return config, state.get("average", state["model"])


def read_run_weights(source: str | Path) -> tuple[dict, dict, dict]:
    """(config, float32 weights, training budget) of a run directory or of its pack (``pack_run``)."""
    source = Path(source)
    if source.is_dir():
        config, state = load_run(source)
        return config, state, torch.load(source / CHECKPOINT, weights_only=True)["budget"]
    packed = torch.load(source, weights_only=True, map_location="cpu")
    weights = {k: v.float() if v.is_floating_point() else v for k, v in packed["weights"].items()}
    return json.loads(packed["config"]), weights, packed["budget"]


def run_budget(out: str | Path) -> dict:
    """Training time of a run directory: wall seconds, core-hours (CPU time, summed over
    every session), the thread count, precision and device."""
    state = torch.load(Path(out) / CHECKPOINT, weights_only=True, map_location="cpu")
    config = json.loads((Path(out) / "config.json").read_text())
    budget = state.get("budget")
    if budget is None:
        return {"recorded": False}
    gpu = {"gpu_hours": round(budget["gpu_seconds"] / 3600, 6)} if budget.get("gpu_seconds") else {}
    return {
        "steps": state["step"],
        "seconds": round(budget["seconds"], 1),
        "core_hours": round(budget["core_seconds"] / 3600, 6),
        **gpu,
        "threads": budget.get("threads"),
        "precision": "bfloat16" if config["train"].get("amp") else "float32",
        "device": budget.get("device", config["train"].get("device", "cpu")),
    }


def load_vqvae(source: str | Path) -> VQVAE:
    """A trained VQ-VAE from a run directory or a VQ weights file, in eval mode."""
    config, state, _ = read_vqvae(source)
    ranges = state.pop(RANGES, None)
    model = VQVAE(VQVAEConfig(**config))
    model.load_state_dict(state)
    model.int8_ranges = ranges
    return model.eval()


def load_prior(out: str | Path) -> PixelCNNPrior:
    config, state = load_run(out)
    prior = PixelCNNPrior(PriorConfig(**config["model"]))
    prior.load_state_dict(state)
    prior.quantized = True
    return prior.eval()


def vqvae_origin(source: str | Path) -> dict:
    """What a trained VQ-VAE is (run directory, or weights name and id) for the metadata of
    whatever is trained from it next; reads configurations and metadata, not tensors."""
    if Path(source).is_dir():
        config = json.loads((Path(source) / "config.json").read_text())
        return {"run": str(source), "model": config["model"], "train": config["train"]}

    info = read_info(source)
    origin = {"weights": f"{info.name}-q{info.quality}", "id": info.model_id.hex(), "model": info.meta["vqvae_config"]}
    return origin | {"training": split_stages(info.meta.get("training", {}), "prior")[0]}


def read_vqvae(source: str | Path) -> tuple[dict, dict, dict]:
    """(model config, state dict, origin) of a trained VQ-VAE: a run directory or a VQ weights file.
    A decoder trained for int8 (``vqcodec.int8``) comes in its float layout, with its activation
    ranges under ``int8.RANGES``."""
    origin = vqvae_origin(source)
    if Path(source).is_dir():
        config, state = load_run(source)
        if config.get("int8"):  # the count of float convolutions (a run config's True: one)
            state = folded_state(VQVAEConfig(**origin["model"]), state, int(config["int8"]))
        return origin["model"], state, origin

    tensors = load_tensors(read_info(source))
    state = {k: v.float() for k, v in prefixed(tensors, "vqvae.").items()}
    return origin["model"], state | ({RANGES: tensors[RANGES]} if RANGES in tensors else {}), origin


def read_prior(source: str | Path) -> tuple[PriorConfig, dict[str, torch.Tensor], dict]:
    """(config, integer tensors, training record of its stages) of a prior: the quantization-aware
    run directory of ``train_prior``, or the prior of a VQ weights file (whose VQ-VAE made the same
    indices, e.g. before decoder-only fine-tuning)."""

    if Path(source).is_dir():
        prior = load_prior(source)
        config = load_run(source)[0]
        before = config.get("init", {}).get("training", {})  # the stages of the prior it started from
        return prior.cfg, IntegerPrior.export(prior), add_stage(before, "prior", config["train"], run_budget(source))

    info = read_info(source)
    record = split_stages(info.meta.get("training", {}), "prior")[1]
    return PriorConfig(**info.meta["prior_config"]), prefixed(load_tensors(info), "prior."), record


def same_codebook(vqvae: VQVAE, weights: str | Path) -> bool:
    """Whether a VQ weights file has ``vqvae``'s codebook, up to the float16 weights are stored
    in: then its indices mean the same (its prior codes them, its files decode)."""

    old = prefixed(load_tensors(read_info(weights)), "vqvae.")
    mine = vqvae.state_dict()
    return all(torch.equal(old[k].half(), v.half()) for k, v in mine.items() if k.startswith("quantizer."))


def continued_from(vqvae_source: str | Path, weights: str | Path) -> bool:
    """Whether the VQ-VAE ``vqvae_source`` (a run directory or a VQ weights file) is more training
    of the VQ weights file ``weights``: a warm start keeps every code at its index while the
    codebook drifts, so that file's prior still knows what each index means and is the best start
    for the new one."""

    continued = training_record(vqvae_source).get("continued", [])
    return bool(continued) and continued[-1]["id"] == read_info(weights).model_id.hex()


def add_stage(training: dict, kind: str, train: dict, budget: dict) -> dict:
    """``training`` with one more stage (named ``kind``, or ``kind-2``... when it is a repeat):
    its configuration, steps and budget (core-hours, precision)."""
    steps = training.get("steps", {})
    name = next(n for n in (kind, *(f"{kind}-{i}" for i in range(2, 100))) if n not in steps)
    return {
        **training,
        "steps": {**steps, name: budget.get("steps", train["steps"])},  # what ran, not what was planned
        name: train,
        "budget": {**training.get("budget", {}), name: budget},
    }


def stage_names(training: dict, kind: str) -> list[str]:
    """The stages of ``kind`` in a training record (``prior``, ``prior-2``, ...)."""
    return [n for n in training.get("steps", {}) if n == kind or n.startswith(f"{kind}-")]


def split_stages(training: dict, kind: str) -> tuple[dict, dict]:
    """(a training record less its stages of ``kind``, those stages alone), each with its share
    of the steps and budget."""
    names = set(stage_names(training, kind))
    rest = {k: v for k, v in training.items() if k not in names}
    only = {k: v for k, v in training.items() if k in names}
    for key in ("steps", "budget"):
        if key in training:
            rest[key] = {k: v for k, v in training[key].items() if k not in names}
            only[key] = {k: v for k, v in training[key].items() if k in names}
    return rest, only


def same_architecture(a: dict, b: dict) -> bool:
    """Whether two VQ-VAE configurations have the same layers and codebook (the rate weight is
    how codes are chosen, not a shape)."""
    return replace(VQVAEConfig(**a), rate_weight=0.0) == replace(VQVAEConfig(**b), rate_weight=0.0)


def training_record(source: str | Path) -> dict:
    """Every stage that made a VQ-VAE (a run directory, with the runs or weights it started
    from, or a weights file), without the prior's: steps, configuration, budget, first weights."""
    if not Path(source).is_dir():
        return split_stages(read_info(source).meta.get("training", {}), "prior")[0]
    config = json.loads((Path(source) / "config.json").read_text())
    if config.get("base"):  # a decoder fine-tuning of another VQ-VAE, whose record it kept when it started
        base = config["base"]
        before = base["training"] if "training" in base else training_record(base["source"])
        return add_stage(before, "decoder", config["train"], run_budget(source))
    init = config.get("init") or {}
    origin = {k: v for k, v in init.items() if k != "training"}
    if "training" in init and same_architecture(init["model"], config["model"]):
        # more training of a shipped level: its record goes on, with the weights it went on from
        before = {"data": TRAINING_DATA, **init["training"]}
        record = before | {
            "continued": [*before.get("continued", []), {"weights": origin["weights"], "id": origin["id"]}]
        }
    else:
        record = {"data": TRAINING_DATA, **({"init": origin} if init else {})}
    return add_stage(record, "vqvae", config["train"], run_budget(source))


def pack_run(run: Path, out: Path) -> str:
    """Write a run directory's pack (see ``unpack_run``) to ``out``, atomically; a one-line summary."""
    state = torch.load(run / CHECKPOINT, weights_only=True, map_location="cpu")
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
    return (
        f"{out}: step {packed['step']}, {packed['budget']['core_seconds'] / 3600:.2f} core-hours, "
        f"{out.stat().st_size / 2**20:.1f} MiB"
    )


def unpack_run(packed_file: Path, run: Path, lambdas: tuple[float, ...] | None = None) -> str:
    """A new run directory from a pack: it resumes with the pack's averaged weights as both the
    model and its average, and a fresh optimizer. ``lambdas``: a variable-rate baseline's
    lambdas, a superset of the run's (``grow_levels``). A one-line summary."""
    packed = torch.load(packed_file, weights_only=True, map_location="cpu")
    if (run / CHECKPOINT).exists():
        raise FileExistsError(f"{run} has a checkpoint already: unpack into a new run directory")
    weights = {k: v.float() if v.is_floating_point() else v for k, v in packed["weights"].items()}
    config = json.loads(packed["config"])
    if lambdas:
        weights = grow_levels(weights, tuple(config["model"]["lambdas"]), lambdas)
        config["model"]["lambdas"] = list(lambdas)
    state = {
        "model": weights,
        "average": weights,
        "step": packed["step"],
        "budget": packed["budget"],
        "gen": packed["gen"],
        "averaged_steps": packed["averaged_steps"],
    }
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(config, indent=2))
    (run / "metrics.jsonl").write_text(packed["metrics"])
    torch.save(state, run / CHECKPOINT)
    return f"{run}: resumes at step {packed['step']}"
