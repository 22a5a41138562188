"""Training loops for the VQ-VAE, its PixelCNN prior, and the AE/VAE baselines.

Every loop runs on one process (CPU, or a CUDA GPU with ``device``) or, launched with
``torchrun --nproc_per_node N``, on N processes with DistributedDataParallel: gloo on CPU,
nccl on GPUs; each process trains on its own shard of the images (DistributedSampler), the
gradients are averaged, and only rank 0 validates, logs and writes checkpoints.

Both loops checkpoint every ``ckpt_every`` steps to ``out/checkpoint.pt`` and resume from it,
log one JSON object per line to ``out/metrics.jsonl``, validate on a held-out folder, and
write the final weights as safetensors with their configuration in the metadata.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from vqcodec import int8 as int8_decoder
from vqcodec.data import CropDataset, image_files, load_rgb, shard_items, to_tensor
from vqcodec.errors import VQCodecError
from vqcodec.evaluation import psnr_db
from vqcodec.hardware import bf16_supported
from vqcodec.models.ae import AEConfig, FactorizedAE, HyperpriorVAE, grow_levels, make_model
from vqcodec.models.hypervq import HyperpriorVQ, HyperVQConfig, from_hyperprior_vae
from vqcodec.models.prior import PixelCNNPrior, PriorConfig, float_state
from vqcodec.models.vqvae import VQVAE, VQVAEConfig
from vqcodec.quantization import grouped_order, usage_stats
from vqcodec.runs import (
    CHECKPOINT,
    continued_from,
    load_run,
    read_prior,
    read_run_weights,
    read_vqvae,
    same_codebook,
    training_record,
    vqvae_origin,
)
from vqcodec.tensors import tensor_hash
from vqcodec.train_config import TrainConfig

LOG_EVERY = 50  # steps between two lines of a run's training metrics
INT8_FROZEN = 0.3  # the last part of an int8 decoder's training, with its activation ranges fixed
INT8_CALIBRATION = 16  # batches that set an int8 decoder's activation ranges before its training


def cosine_lr(step: int, total: int, base: float, warmup: int = 200, done: float | None = None) -> float:
    """Linear warm-up then cosine decay to 5% of ``base`` (``done``: the fraction of the run
    behind, when it is not counted in steps)."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup) if done is None else done
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def warmup_ema(decay: float):
    """Exponential moving average of the weights whose decay ramps up as (1 + n) / (10 + n)
    towards ``decay`` (n: updates so far), so that a run of a few hundred steps exports the
    weights it trained, not mostly the ones it started from (with a fixed decay of 0.998,
    0.998**520 = 35% of a 520-step run's average is its initialisation)."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], updates: torch.Tensor) -> None:
        n = float(updates)
        torch._foreach_lerp_(averaged, current, 1 - min(decay, (1 + n) / (10 + n)))

    return update


def seed_everything(cfg: TrainConfig) -> None:
    """Thread count and seed, before any model is built (the same on every rank)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)


def train_device(cfg: TrainConfig) -> torch.device:
    """The device of this process: a run started by torchrun uses the GPU of its local rank."""
    cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    if not cuda:
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def start_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by torchrun with several processes."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def param_groups(model: torch.nn.Module) -> list[dict]:
    """Adam parameter groups: a model's ``lr_scales`` ({name prefix: factor}) give some
    parameters a larger learning rate than the rest."""
    scales = getattr(model, "lr_scales", {})
    groups: dict[float, list] = {}
    for name, p in model.named_parameters():
        scale = next((f for prefix, f in scales.items() if name.startswith(prefix)), 1.0)
        groups.setdefault(scale, []).append(p)
    return [{"params": params, "lr_scale": scale} for scale, params in groups.items()]


class Run:
    """One training run in ``cfg.out``: Adam with a cosine schedule, an exponential moving
    average of the weights (what is validated and exported), checkpoint and resume, the model
    and training configuration, a JSON-lines metrics log and a progress bar."""

    def __init__(
        self,
        cfg: TrainConfig,
        model: torch.nn.Module,
        model_config: dict,
        desc: str,
        **extra: dict,
    ):
        self.cfg = cfg
        self.device = train_device(cfg)
        self.rank, self.world = start_distributed(self.device)
        if cfg.amp is None:
            cfg.amp = bf16_supported(self.device)
        # bfloat16 convolutions on a CPU run fastest channels-last (oneDNN); a no-op for the prior's linear layers
        self.memory_format = torch.channels_last if cfg.amp and self.device.type == "cpu" else torch.preserve_format
        self.model = model.to(self.device, memory_format=self.memory_format)
        # the module the loop calls: under torchrun, DDP averages its gradients across ranks
        self.net = DistributedDataParallel(model) if self.world > 1 else model
        self.opt = torch.optim.Adam(param_groups(model), lr=cfg.lr)
        self.average = AveragedModel(model, multi_avg_fn=warmup_ema(cfg.ema)) if cfg.ema else None
        self.dir = Path(cfg.out)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ckpt = self.dir / CHECKPOINT
        self.gen = torch.Generator().manual_seed(cfg.seed + self.rank)
        self.step = 0
        self.budget = {"seconds": 0.0, "core_seconds": 0.0}  # wall and core time of every step so far, all sessions
        if self.ckpt.exists():
            state = torch.load(self.ckpt, weights_only=True, map_location=self.device)
            model.load_state_dict(state["model"])
            # a finished run needs no optimizer (whose groups may have changed since); a packed
            # run (bin/pack_run.py) has none, and starts a fresh one
            if state["step"] < cfg.steps and "opt" in state:
                self.opt.load_state_dict(state["opt"])
            gens = state["gen"] if isinstance(state["gen"], list) else [state["gen"]]
            self.gen.set_state(gens[self.rank % len(gens)].cpu())
            self.step = state["step"]
            self.budget = state.get("budget", self.budget)
            if self.average is not None and "average" in state:
                self.average.module.load_state_dict(state["average"])
                self.average.n_averaged.fill_(state["averaged_steps"])
        if self.rank == 0:
            text = json.dumps(
                {"model": model_config, "train": asdict(cfg), "world_size": self.world, **extra}, indent=2
            )
            (self.dir / "config.json").write_text(text)
        self.clock = self.started = time.perf_counter()
        self.cpu_clock = time.process_time()
        self.bar = tqdm(total=cfg.steps, initial=self.step, desc=desc, dynamic_ncols=True, disable=self.rank > 0)

    def data(self, folder: str) -> CropDataset:
        """The training images of this rank (all of them on one process)."""
        cfg = self.cfg
        return CropDataset(folder, cfg.crop, tuple(cfg.scales), limit=cfg.data_limit, shard=(self.rank, self.world))

    def batch(self, data: CropDataset) -> torch.Tensor:
        """The next training batch, on the run's device and in its memory format."""
        return data.batch(self.cfg.batch, self.gen).to(self.device, memory_format=self.memory_format)

    def tick(self) -> None:
        """Add the time since the last tick to the budget: wall seconds, and core seconds, the
        CPU time this process's threads used (what a busy machine's waiting does not inflate)."""
        now, cpu = time.perf_counter(), time.process_time()
        seconds, self.clock = now - self.clock, now
        core, self.cpu_clock = cpu - self.cpu_clock, cpu
        gpu = self.device.type == "cuda"
        self.budget = {
            **self.budget,
            "seconds": self.budget["seconds"] + seconds,
            # CPU core time and GPU time are kept apart: an H100 second is no core second
            "core_seconds": self.budget["core_seconds"] + (0 if gpu else core * self.world),
            "gpu_seconds": self.budget.get("gpu_seconds", 0.0) + (seconds * self.world if gpu else 0),
            "threads": (1 if gpu else torch.get_num_threads()) * self.world,  # of the last session, for the record
            "device": self.device.type,
        }

    def keep_going(self) -> bool:
        """Whether to take another step: until ``steps``, or until ``minutes`` of this session
        have passed (``close`` then writes the checkpoint a later session resumes from)."""
        return self.step < self.cfg.steps and not self.out_of_time()

    def close(self) -> None:
        """After the loop: the checkpoint of a run its time budget stopped (a finished run wrote
        its last one at its last step), and the progress bar's last line."""
        if self.step < self.cfg.steps:
            self.save()
        self.bar.close()

    def end_step(self, metrics: Callable[[], dict], validate: Callable[[], dict] | None = None) -> None:
        """What every loop does after a step: every LOG_EVERY steps log ``metrics()`` (and show
        them on the progress bar), validate when due (rank 0), checkpoint when due."""
        if self.step % LOG_EVERY == 0:
            values = metrics()
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in values.items() if isinstance(v, float)})
            self.log(**values)
        if validate is not None and self.validating():
            self.log(**validate())
        if self.due(self.cfg.ckpt_every):
            self.save()

    def out_of_time(self) -> bool:
        """``minutes`` passed since this session's start (on rank 0's clock, for every rank)."""
        if not self.cfg.minutes:
            return False
        late = torch.tensor(float(time.perf_counter() - self.started > 60 * self.cfg.minutes))
        if self.world > 1:
            dist.broadcast(late, 0)
        return bool(late)

    def done(self) -> float:
        """The fraction of the run behind: of its steps, or of its minutes for a timed run."""
        steps = self.step / self.cfg.steps
        if self.cfg.timed and self.cfg.minutes:
            return min(1.0, max(steps, (time.perf_counter() - self.started) / (60 * self.cfg.minutes)))
        return steps

    def optimize(self, loss: torch.Tensor) -> None:
        """One optimizer step on ``loss`` at the scheduled learning rate."""
        done = self.done() if self.cfg.timed else None
        for group in self.opt.param_groups:
            group["lr"] = cosine_lr(self.step, self.cfg.steps, self.cfg.lr, done=done) * group["lr_scale"]
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
        self.opt.step()
        if self.average is not None:
            self.average.update_parameters(self.model)
            self.copy_buffers()
        self.step += 1
        self.bar.update(1)

    def copy_buffers(self) -> None:
        """The model's buffers into the moving average: they are not averaged again (the VQ
        codebook is itself a moving average; an int8 decoder's ranges too)."""
        if self.average is not None:
            for mine, theirs in zip(self.average.module.buffers(), self.model.buffers(), strict=True):
                # resized: an observer's per-channel statistics appear once it has seen data
                mine.resize_as_(theirs).copy_(theirs)

    @property
    def final(self) -> torch.nn.Module:
        """The weights to validate and export: the moving average, or the model without one."""
        return self.model if self.average is None else self.average.module

    def due(self, every: int) -> bool:
        return self.step % every == 0 or self.step == self.cfg.steps

    def autocast(self) -> torch.autocast:
        """The mixed-precision region of a training pass (a no-op unless ``amp``)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.amp)

    def validating(self) -> bool:
        """Whether to validate now (on rank 0 only: the others do not wait for it)."""
        return self.rank == 0 and self.due(self.cfg.val_every)

    def save(self) -> None:
        """Write the checkpoint (rank 0; every rank must call this: it gathers their generators)."""
        gens = [self.gen.get_state()]
        if self.world > 1:
            gens = [None] * self.world
            dist.all_gather_object(gens, self.gen.get_state())
        if self.rank > 0:
            return
        self.tick()
        tmp = self.ckpt.with_suffix(".tmp")
        state = {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "gen": gens, "budget": self.budget}
        if self.average is not None:
            state |= {"average": self.final.state_dict(), "averaged_steps": int(self.average.n_averaged)}
        torch.save(state | {"step": self.step}, tmp)
        tmp.replace(self.ckpt)

    def log(self, **metrics: float) -> None:
        if self.rank > 0:
            return
        self.tick()
        hours = {"core_hours": self.budget["core_seconds"] / 3600}
        if self.budget.get("gpu_seconds"):
            hours["gpu_hours"] = self.budget["gpu_seconds"] / 3600
        with open(self.dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": self.step, "time": time.time(), **hours, **metrics}) + "\n")


def reconstruction_metrics(mse: torch.Tensor, **more: float) -> dict:
    """A training step's PSNR (and ``more``), for its metrics line."""
    return {"psnr": psnr_db(mse.detach(), peak=1.0), **more}


def vqvae_metrics(mse: torch.Tensor, commitment: torch.Tensor, idx: torch.Tensor, codebook_size: int) -> dict:
    """A VQ-VAE training step's PSNR, commitment loss and codebook usage, for its metrics line."""
    used, perplexity = usage_stats(idx, codebook_size)
    return reconstruction_metrics(mse, commitment=float(commitment.detach()), usage=used, perplexity=perplexity)


def pad_to(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad (B, C, H, W) on the bottom and right to a multiple of ``multiple``."""
    ph, pw = -x.shape[2] % multiple, -x.shape[3] % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


@torch.no_grad()
def validate_vqvae(model: VQVAE, folder: str, limit: int) -> dict[str, float]:
    """Mean PSNR and empirical index entropy (bits per pixel, no prior) on whole images."""
    model.eval()
    psnrs, all_idx, pixels = [], [], 0
    for path in image_files(folder)[:limit]:
        x = to_tensor(load_rgb(path))[None].to(model.quantizer.codebook.device)
        idx = model.encode(pad_to(x, model.cfg.downsample))
        y = model.decode(idx)[..., : x.shape[2], : x.shape[3]].clamp(0, 1)
        y = torch.round(y * 255) / 255
        psnrs.append(psnr_db(F.mse_loss(y, x), peak=1.0))
        all_idx.append(idx.flatten())
        pixels += x.shape[2] * x.shape[3]
    idx = torch.cat(all_idx)
    p = torch.bincount(idx, minlength=model.cfg.codebook_size).double() / idx.numel()
    p = p[p > 0]
    bits = float(-(p * p.log2()).sum()) * idx.numel()
    used, perplexity = usage_stats(idx, model.cfg.codebook_size)
    model.train()
    return {
        "val_psnr": sum(psnrs) / len(psnrs),
        "val_entropy_bpp": bits / pixels,
        "val_usage": used,
        "val_perplexity": perplexity,
    }


def warm_start(model: VQVAE, source: str) -> dict:
    """Copy a trained VQ-VAE's weights (a run directory or a VQ weights file) into ``model``
    wherever names and shapes agree, and return what the source was (for the metadata).

    The quality levels of the zoo differ in downsampling factor and codebook size, so a new
    level starts from a trained one: its new stride-2 stages start random, and a codebook of
    another size is initialized by k-means on the first batch's encoder outputs.
    """
    _, state, origin = read_vqvae(source)
    own = model.state_dict()
    if state.get("quantizer.codebook", torch.empty(0)).shape != own["quantizer.codebook"].shape:
        state = {k: v for k, v in state.items() if not k.startswith("quantizer.")}
    model.load_state_dict({k: v for k, v in state.items() if k in own and v.shape == own[k].shape}, strict=False)
    return origin


def train_vqvae(model_cfg: VQVAEConfig, cfg: TrainConfig, init: str | None = None) -> VQVAE:
    """Train a VQ-VAE on MSE + commitment loss; returns the model (also saved in cfg.out).

    ``init``: start from another trained VQ-VAE (see ``warm_start``)."""
    seed_everything(cfg)
    model = VQVAE(model_cfg).train()
    origin = warm_start(model, init) if init else {}
    run = Run(cfg, model, model_cfg.to_dict(), "vqvae", init=origin)
    data = run.data(cfg.data)
    if init and run.step == 0 and run.rank == 0 and bool(model.quantizer.initialized):  # a warm start's first point
        run.log(**validate_vqvae(run.final, cfg.val, cfg.val_images))

    while run.keep_going():
        x = run.batch(data)
        with run.autocast():
            y, idx, commitment = run.net(x)
        mse = F.mse_loss(y, x)
        run.optimize(mse + commitment)
        metrics = partial(vqvae_metrics, mse, commitment, idx, model_cfg.codebook_size)
        run.end_step(metrics, partial(validate_vqvae, run.final, cfg.val, cfg.val_images))
    run.close()
    return run.final.eval()


def calibration_latents(vqvae: VQVAE, cfg: TrainConfig) -> torch.Tensor:
    """The quantized latents of INT8_CALIBRATION training batches (seeded): what an int8
    decoder's activation ranges are first measured on."""
    data = CropDataset(cfg.data, cfg.crop, tuple(cfg.scales), limit=cfg.data_limit)
    gen = torch.Generator().manual_seed(cfg.seed)
    x = torch.cat([data.batch(cfg.batch, gen) for _ in range(INT8_CALIBRATION)])
    with torch.no_grad():
        return vqvae.quantizer.lookup(vqvae.encode(x))


def finetune_decoder(
    vqvae: VQVAE, cfg: TrainConfig, source: str | None = None, int8_float_convs: int = 0, equalize: float = 0.0
) -> VQVAE:
    """Train only the decoder of a trained VQ-VAE, encoder and codebook frozen (``source``: where
    it came from, a run directory or weights file, recorded for the export's metadata).

    The indices (and so the rate, and the prior trained on them) do not change, while the
    decoder gets more steps for the same time: its pass is about half of the model's cost.
    ``int8_float_convs`` > 0: train the decoder for int8 inference (``vqcodec.int8``) with that
    many of its last convolutions in float: its fake-quantized network, whose activation ranges stop following
    the batches for the last INT8_FROZEN of the run, starting from the decoder's ``equalize``d
    form of that exponent (0: as it is).
    """
    seed_everything(cfg)
    vqvae.eval()  # no EMA codebook updates
    for p in [*vqvae.encoder.parameters(), *vqvae.quantizer.parameters()]:
        p.requires_grad_(False)
    int8 = int8_float_convs
    if int8:
        if equalize and not (Path(cfg.out) / CHECKPOINT).exists():  # (a resumed run's weights are equalized)
            vqvae.decoder = int8_decoder.equalize(vqvae.decoder, calibration_latents(vqvae, cfg), equalize)
        example = vqvae.quantizer.lookup(torch.zeros(1, 8, 8).long())
        vqvae.decoder = int8_decoder.prepare(vqvae.decoder, example, int8)
    base = {"source": str(source), **vqvae_origin(source), "training": training_record(source)} if source else {}
    extra = {"int8": int8, "int8_equalize": equalize} if int8 else {}
    run = Run(cfg, vqvae, vqvae.cfg.to_dict(), "decoder", base=base, **extra)
    data = run.data(cfg.data)

    def validate() -> dict:
        # the ranges must not follow the validation images
        with int8_decoder.ranges_held(run.final.decoder) if int8 else contextlib.nullcontext():
            out = validate_vqvae(run.final, cfg.val, cfg.val_images)
        vqvae.eval()
        return out

    if int8 and run.step == 0:  # the ranges of the decoder as trained: where quantization-aware training starts
        with torch.no_grad():
            for _ in range(INT8_CALIBRATION):
                run.net(run.batch(data))
        run.copy_buffers()
    if run.step == 0 and run.rank == 0:  # where the learning curve starts
        run.log(**validate())
    while run.keep_going():
        if int8 and run.done() >= 1 - INT8_FROZEN:
            int8_decoder.freeze_ranges(vqvae.decoder)
        x = run.batch(data)
        with run.autocast():
            y, _, _ = run.net(x)  # in eval mode: decoder(codebook vectors of the fixed indices)
        mse = F.mse_loss(y, x)
        run.optimize(mse)
        run.end_step(partial(reconstruction_metrics, mse), validate)
    run.close()
    return run.final.eval()


@torch.no_grad()
def validate_baseline(
    model: FactorizedAE | HyperpriorVAE | HyperpriorVQ, folder: str, limit: int
) -> dict[str, float | list]:
    """Mean PSNR and estimated bpp (rounded latents under the model's own densities) on whole
    images, at every level of the model (lists for a variable-rate model)."""
    model.eval()
    psnrs, bpps = [], []
    images = [to_tensor(load_rgb(p))[None].to(next(model.parameters()).device) for p in image_files(folder)[:limit]]
    for level in range(len(model.cfg.levels)):
        psnr = bpp = 0.0
        for x in images:
            y, rate = model(pad_to(x, model.cfg.downsample), level)
            y = torch.round(y[..., : x.shape[2], : x.shape[3]].clamp(0, 1) * 255) / 255
            psnr += psnr_db(F.mse_loss(y, x), peak=1.0) / len(images)
            bpp += float(rate.sum()) / (x.shape[2] * x.shape[3]) / len(images)
        psnrs.append(psnr)
        bpps.append(bpp)
    model.train()
    if not model.cfg.lambdas:
        return {"val_psnr": psnrs[0], "val_bpp": bpps[0]}
    return {"val_psnr": psnrs, "val_bpp": bpps}


def hypervq_from_vae(model: HyperpriorVQ, source: str) -> dict:
    """Start a hyper-VQ model from a trained variable-rate scale-hyperprior VAE (a run directory
    or its pack) of the same transform shape: its transforms, gains (grown to the model's
    lambdas), hyperprior and side-information densities. Returns the
    source's record for the run's configuration, its training budget included."""
    config, state, budget = read_run_weights(source)
    old = tuple(config["model"]["lambdas"])
    state = from_hyperprior_vae(grow_levels(state, old, model.cfg.lambdas))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"counts"}:
        raise ValueError(f"{source} is no hyperprior VAE of this shape: missing {missing}, unexpected {unexpected}")
    return {"source": str(source), "model": config["model"], "budget": budget}


TABLE_CALIBRATION = 20  # passes over every level that fit the hyper-VQ model's tables before its first step


@torch.no_grad()
def calibrate_tables(run: Run, data: CropDataset) -> None:
    """Fit a new hyper-VQ model's tables to its indices on training batches (forward passes in
    training mode count them; no weight moves), so that its first validation and its first
    rate gradients see its own statistics rather than the tables' Gaussian start."""
    levels = len(run.model.cfg.levels)
    for n in range(TABLE_CALIBRATION * levels):
        with run.autocast():
            run.model(run.batch(data), n % levels)
    run.copy_buffers()


def train_baseline(model_cfg: AEConfig | HyperVQConfig, cfg: TrainConfig, init: str | None = None) -> torch.nn.Module:
    """Train an AE or VAE baseline, or the hyper-VQ model, on bpp + lambda * 255**2 * MSE (the
    rate-distortion Lagrangian).

    A variable-rate model (``model_cfg.lambdas``) takes its levels in turn, one per step, so
    each level has the same number of steps. ``init`` starts a new run from another run's
    weights (a baseline trained at another lambda: the rate points of a one-lambda family share
    most of their training this way; for the hyper-VQ model, a trained VAE: ``hypervq_from_vae``).
    """
    seed_everything(cfg)
    if isinstance(model_cfg, HyperVQConfig):
        model = HyperpriorVQ(model_cfg).train()
        origin = hypervq_from_vae(model, init) if init and not (Path(cfg.out) / CHECKPOINT).exists() else {}
    else:
        model = make_model(model_cfg).train()
        if init is not None:
            model.load_state_dict(load_run(init)[1])
        origin = load_run(init)[0] if init else {}
    run = Run(cfg, model, model_cfg.to_dict(), model_cfg.family, init=origin)
    data = run.data(cfg.data)
    if "budget" in origin and run.step == 0:  # the warm start's training counts in this model's budget
        run.budget = dict(origin["budget"])
    if isinstance(model, HyperpriorVQ) and run.step == 0:
        calibrate_tables(run, data)
    if init and run.step == 0 and run.rank == 0:  # a warm start's first point of the learning curve
        run.log(**validate_baseline(run.final, cfg.val, cfg.val_images))
    levels = model_cfg.levels

    while run.keep_going():
        level = run.step % len(levels)
        x = run.batch(data)
        with run.autocast():
            y, rate = run.net(x, level)
        mse, bpp = F.mse_loss(y, x), rate.sum() / (x.shape[0] * x.shape[2] * x.shape[3])
        run.optimize(bpp + levels[level] * 255**2 * mse)
        metrics = partial(reconstruction_metrics, mse, bpp=float(bpp.detach()), level=level)
        run.end_step(metrics, partial(validate_baseline, run.final, cfg.val, cfg.val_images))
    run.close()
    return run.final.eval()


@torch.no_grad()
def index_grids(
    model: VQVAE,
    folder: str,
    scales: tuple[float, ...],
    limit: int | None = None,
    shard: tuple[int, int] = (0, 1),
) -> list[torch.Tensor]:
    """The VQ-VAE's index grid of every image in ``folder`` (this rank's shard) at each scale: the prior's data."""
    from PIL import Image

    model.eval()
    grids = []
    for path in tqdm(shard_items(image_files(folder)[:limit], *shard), desc="index grids", dynamic_ncols=True):
        img = load_rgb(path)
        for s in scales:
            scaled = (
                img
                if s == 1
                else img.resize((max(4, round(img.width * s)), max(4, round(img.height * s))), Image.Resampling.LANCZOS)
            )
            grids.append(model.encode(pad_to(to_tensor(scaled)[None], model.cfg.downsample))[0])
    return grids


def prior_data(vqvae: VQVAE, cfg: TrainConfig, run: Run) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The training grids (this rank's) and validation grids of a prior run, encoded once and
    kept in its directory (``grids-<rank>.pt``): resuming does not encode every photo again
    (10-15 minutes on a 2-core CPU)."""
    key = {
        "codebook": tensor_hash({"codebook": vqvae.quantizer.codebook.detach()}),
        **{k: getattr(cfg, k) for k in ("data", "scales", "data_limit", "val", "val_images")},
        "shard": [run.rank, run.world],
    }
    key = json.loads(json.dumps(key))  # lists, not tuples: as it reads back
    path = run.dir / f"grids-{run.rank}.pt"
    if path.exists():
        saved = torch.load(path, weights_only=True)
        if saved["key"] == key:
            return [g.long() for g in saved["train"]], [g.long() for g in saved["val"]]
    grids = index_grids(vqvae, cfg.data, tuple(cfg.scales), cfg.data_limit, (run.rank, run.world))
    val = index_grids(vqvae, cfg.val, (0.5,), cfg.val_images)
    small = torch.int16 if vqvae.cfg.codebook_size <= 2**15 else torch.int32
    partial = path.with_suffix(".partial")
    torch.save({"key": key, "train": [g.to(small) for g in grids], "val": [g.to(small) for g in val]}, partial)
    partial.replace(path)
    return grids, val


def grid_batch(grids: list[torch.Tensor], size: int, crop: int, gen: torch.Generator) -> torch.Tensor:
    """(size, crop, crop) random crops of index grids (grids smaller than ``crop`` are skipped)."""
    usable = [g for g in grids if g.shape[0] >= crop and g.shape[1] >= crop]
    if not usable:
        largest = max((min(g.shape) for g in grids), default=0)
        raise VQCodecError(
            f"no index grid of the training images is {crop}x{crop} (their shorter sides reach {largest} "
            f"indices): give a --crop of at most {largest}"
        )
    out = torch.empty(size, crop, crop, dtype=torch.int64)
    for n, i in enumerate(torch.randint(len(usable), (size,), generator=gen).tolist()):
        g = usable[i]
        y = int(torch.randint(g.shape[0] - crop + 1, (1,), generator=gen))
        x = int(torch.randint(g.shape[1] - crop + 1, (1,), generator=gen))
        out[n] = g[y : y + crop, x : x + crop]
    return out


@torch.no_grad()
def prior_bits_per_index(prior: PixelCNNPrior, grids: list[torch.Tensor]) -> float:
    """Mean cross-entropy (bits per index) of whole grids under the (float or fake-quant) prior."""
    prior.eval()
    device = next(prior.parameters()).device
    bits = sum(float(prior.bits(g[None].to(device))) for g in grids)
    prior.train()
    return bits / sum(g.numel() for g in grids)


def train_prior(
    vqvae: VQVAE,
    prior_cfg: PriorConfig,
    cfg: TrainConfig,
    qat_fraction: float = 0.3,
    init: str | None = None,
    vqvae_source: str | None = None,
) -> PixelCNNPrior:
    """Train the PixelCNN prior on the VQ-VAE's index grids of the training images.

    The last ``qat_fraction`` of the steps simulate the integer network (quantization-aware
    fine-tuning), so the exported integer prior loses almost no rate. ``init``: start from a
    trained prior of the same indices (see ``warm_start_prior``); ``vqvae_source``: where ``vqvae``
    came from, which may be a run continued from ``init``.
    """
    seed_everything(cfg)
    prior = PixelCNNPrior(prior_cfg).train()
    if prior_cfg.groups > 1:
        prior.set_code_order(grouped_order(vqvae.quantizer.codebook.detach().cpu(), prior_cfg.groups))
    origin = warm_start_prior(prior, vqvae, init, vqvae_source) if init else {}
    run = Run(cfg, prior, prior_cfg.to_dict(), "prior", init=origin)
    grids, val = prior_data(vqvae, cfg, run)
    float_prior = run.dir / "float_prior.pt"  # kept to measure what integers cost

    def validate() -> dict:
        run.final.quantized = prior.quantized
        return {"val_bits_per_index": prior_bits_per_index(run.final, val), "quantized": prior.quantized}

    while run.keep_going():
        prior.quantized = run.done() >= 1 - qat_fraction
        if prior.quantized and not float_prior.exists():
            torch.save({"model": run.model.state_dict()}, float_prior)
        idx = grid_batch(grids, cfg.batch, cfg.crop, run.gen).to(run.device)
        loss = run.net(idx, bits=True) / idx.numel()
        run.optimize(loss)
        run.end_step(partial(dict, bits_per_index=loss.item(), quantized=prior.quantized), validate)
    run.close()
    run.final.quantized = True
    return run.final.eval()


def warm_start_prior(prior: PixelCNNPrior, vqvae: VQVAE, source: str, vqvae_source: str | None = None) -> dict:
    """Copy a trained prior of ``vqvae``'s indices (a run directory, or the prior of a VQ weights
    file with the same codebook, or the file ``vqvae_source``'s run was continued from) into
    ``prior``, and return what it was (for the metadata).

    The window, hidden layers and each code's output row carry over; the rows follow the codes
    to their places in ``prior``'s code order, so a flat prior starts a prior with groups at its
    member distributions. A group head of another grouping starts afresh. This lets a CPU
    session turn a long-trained flat prior into a faster one with groups in a short run. A prior
    with as many groups keeps its grouping, head and all: its codes kept their places, so its
    runs still hold similar codes after the codebook drifted (a continued VQ-VAE's new grouping
    would differ in places and cost the head).
    """
    cfg, tensors, record = read_prior(source)
    own = prior.cfg
    if replace(cfg, groups=1) != replace(own, groups=1):
        raise ValueError(f"{source}: a prior of another shape ({cfg}) cannot start {own}")
    if not Path(source).is_dir() and not (
        same_codebook(vqvae, source) or (vqvae_source and continued_from(vqvae_source, source))
    ):
        raise ValueError(f"{source} codes another codebook's indices than the VQ-VAE's")
    state = float_state(cfg, tensors)
    old_order = state.pop("order", torch.arange(cfg.codebook_size))
    if cfg.groups == own.groups > 1:
        prior.set_code_order(old_order)
    new_order = prior.order if own.groups > 1 else torch.arange(own.codebook_size)
    rows = torch.argsort(old_order)[new_order]  # the source's row of the code at each new place
    state["out.weight"], state["out.bias"] = state["out.weight"][rows], state["out.bias"][rows]
    if cfg.groups != own.groups or not torch.equal(old_order, new_order):
        state = {k: v for k, v in state.items() if not k.startswith("group_out.")}
    prior.load_state_dict(state, strict=False)
    origin = {"run": str(source)} if Path(source).is_dir() else vqvae_origin(source)
    return {k: v for k, v in origin.items() if k not in ("model", "training")} | {"training": record}
