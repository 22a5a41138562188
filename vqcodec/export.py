"""Shipped weights from training runs: the VQ codecs and the AE/VAE baselines.

Each export writes a weights file whose metadata holds the model's configuration, its training
record (``vqcodec.runs``), the earlier weights whose files it still decodes (``supersedes``),
and its numbers measured on Kodak (evaluation only, never tuning).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from vqcodec import __version__, int8
from vqcodec.codec import BaselineCodec, VQCodec
from vqcodec.data import image_files, load_rgb
from vqcodec.evaluation import MeasurementLog, measure_folder, summarize
from vqcodec.models.ae import AEConfig, FactorizedAE, HyperpriorVAE, level_model, make_model
from vqcodec.models.prior import PriorConfig
from vqcodec.models.vqvae import VQVAE
from vqcodec.quantization import usage_stats
from vqcodec.runs import (
    CHECKPOINT,
    TRAINING_DATA,
    load_run,
    load_vqvae,
    read_prior,
    run_budget,
    same_codebook,
    training_record,
)
from vqcodec.tensors import save_weights
from vqcodec.zoo import WeightsInfo, read_info


def superseded(vqvae: VQVAE, prior_src: str | Path) -> list[dict]:
    """The earlier weights whose files a new model decodes: those of ``prior_src`` when it is a
    weights file (whose prior the new model ships) with the same codebook up to the float16 the
    weights are stored in (so its files' indices mean the same: decoder-only fine-tuning), and in
    turn the weights those superseded."""
    if Path(prior_src).is_dir():
        return []

    info = read_info(prior_src)
    if not same_codebook(vqvae, prior_src):
        return []
    entry = {"id": info.model_id.hex(), "quality": info.quality, "release": info.meta.get("release", "0.1.0")}
    return [entry, *info.meta.get("supersedes", [])]


def export_codec(
    vqvae_src: str,
    prior_src: str,
    name: str,
    quality: int,
    out: str,
    kodak: str | None,
    is_default: bool = False,
    measurements: str | None = None,
):
    """Write a shipped VQ codec and measure it on ``kodak`` (evaluation only, never tuning; rows
    appended to the ``measurements`` log).

    ``vqvae_src`` and ``prior_src``: run directories or weights files (see ``read_prior``)."""

    vqvae = load_vqvae(vqvae_src)
    prior_cfg, tensors, prior_record = read_prior(prior_src)
    training = training_record(vqvae_src)
    for key in ("steps", "budget"):
        training[key] = {**training.get(key, {}), **prior_record.pop(key, {})}
    training.update(prior_record)
    meta = {"training": training, "default": is_default, "metrics": {}, "release": __version__}
    meta["supersedes"] = superseded(vqvae, prior_src)
    info = save_vq_weights(out, vqvae, tensors, prior_cfg, name, quality, meta)
    if kodak:
        codec = VQCodec.from_weights(info)
        meta["metrics"] = {**kodak_metrics(codec, kodak, name, quality, measurements), **codebook_usage(codec, kodak)}
        info = save_vq_weights(out, vqvae, tensors, prior_cfg, name, quality, meta)
    return info


def export_baseline(
    run_dir: str,
    name: str,
    quality: int,
    out: str,
    kodak: str | None,
    is_default: bool = False,
    level: int = 0,
    measurements: str | None = None,
):
    """Write a shipped AE or VAE codec (``level`` of a variable-rate run) from a training run
    and measure it on ``kodak`` (rows appended to the ``measurements`` log)."""

    config, state = load_run(run_dir)
    model_cfg = AEConfig(**config["model"])
    if not 0 <= level < len(model_cfg.levels):
        raise ValueError(f"{run_dir} has {len(model_cfg.levels)} levels, not level {level}")
    model = make_model(model_cfg)
    model.load_state_dict(state)
    model = level_model(model, level)
    stages = {"base": config["init"]["train"], "finetune": config["train"]} if config.get("init") else {}
    stages = stages or {"train": config["train"]}
    training = {"data": TRAINING_DATA, "steps": {k: v["steps"] for k, v in stages.items()}, **stages}
    training["budget"] = {k: run_budget(v["out"]) for k, v in stages.items() if (Path(v["out"]) / CHECKPOINT).exists()}
    if model_cfg.lambdas:  # one run trained every level: its budget is the family's, not this level's alone
        training["lambdas"], training["level"] = list(model_cfg.lambdas), level
    meta = {"training": training, "default": is_default, "metrics": {}, "release": __version__}
    info = save_baseline_weights(out, model, name, quality, meta)
    if kodak:
        meta["metrics"] = kodak_metrics(BaselineCodec.from_weights(info), kodak, name, quality, measurements)
        info = save_baseline_weights(out, model, name, quality, meta)
    return info


def set_name(folder: str) -> str:
    """The name a folder's measurements are stored under: its own, in lower case (kodak)."""
    return re.sub(r"[^a-z0-9]+", "_", Path(folder).resolve().name.lower()).strip("_") or "images"


def kodak_metrics(codec, folder: str, name: str, quality: int, measurements: str | None = None) -> dict[str, float]:
    """Mean rate, quality and times of a codec over a folder of images (evaluation, never tuning:
    Kodak for the shipped models), named after the folder (``kodak_bpp``); the per-image rows go
    to the ``measurements`` log that ``vqcodec eval --measurements`` reads, so the report does
    not measure the new model again."""
    log, model = MeasurementLog(measurements), codec.info.model_id.hex()
    rows = measure_folder(folder, name, f"q{quality}", codec.compress, codec.decompress, model=model, log=log)
    summary = summarize(rows)
    keys = ("bpp", "psnr", "ms_ssim", "ms_ssim_db", "encode_s", "decode_s")
    return {f"{set_name(folder)}_{k}": summary[k] for k in keys}


def codebook_usage(codec, folder: str) -> dict[str, float]:
    """Codebook usage and perplexity over a folder's index grids (dead codes are wasted rate)."""
    idx = torch.cat([codec.analyze(load_rgb(p)).flatten() for p in image_files(folder)])
    used, perplexity = usage_stats(idx, codec.vqvae.cfg.codebook_size)
    prefix = set_name(folder)
    return {f"{prefix}_codebook_usage": used, f"{prefix}_codebook_perplexity": perplexity}


def save_vq_weights(
    path: str,
    vqvae: VQVAE,
    prior_tensors: dict[str, torch.Tensor],
    prior_cfg: PriorConfig,
    name: str,
    quality: int,
    meta: dict,
) -> WeightsInfo:
    """Write a VQ codec (VQ-VAE weights in float16, run in float32, + integer prior) as one
    safetensors file. float16 halves the VQ-VAE's share of the file; Kodak PSNR moves by less
    than 0.01 dB (README)."""
    tensors = {f"vqvae.{k}": v.half() if v.is_floating_point() else v for k, v in vqvae.state_dict().items()}
    tensors.update({f"prior.{k}": v for k, v in prior_tensors.items()})
    if vqvae.int8_ranges is not None:
        tensors[int8.RANGES] = vqvae.int8_ranges.float()
    meta = {"vqvae_config": vqvae.cfg.to_dict(), "prior_config": prior_cfg.to_dict(), **meta}
    return save_weights(path, tensors, "vq", name, quality, meta)


def save_baseline_weights(
    path: str, model: FactorizedAE | HyperpriorVAE, name: str, quality: int, meta: dict
) -> WeightsInfo:
    """Write an AE or VAE codec (float transforms, integer tables) as one safetensors file."""
    meta = {"ae_config": model.cfg.to_dict(), **meta}
    return save_weights(path, BaselineCodec.export(model), model.cfg.family, name, quality, meta)
