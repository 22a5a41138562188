"""The optimisation settings of every training stage (no torch here: the command line builds its
training options from these fields without loading the training code)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """Optimisation settings shared by both stages."""

    data: str = "../shared/data/train"
    val: str = "../shared/data/val"
    out: str = "runs/vqvae"
    steps: int = 10000
    batch: int = 8
    crop: int = 128
    lr: float = 2e-4
    seed: int = 0
    ckpt_every: int = 250
    val_every: int = 1000
    val_images: int = 20
    threads: int = 0
    data_limit: int | None = None
    scales: tuple[float, ...] = (0.5, 0.75)  # training images are downscaled by these factors
    ema: float = 0.998  # decay of the moving average of the weights that is validated and exported (0: off)
    device: str = "auto"  # cpu, cuda, or auto (cuda when available)
    amp: bool | None = None  # bfloat16 autocast for the transforms (None: where the device has bfloat16 units)
    minutes: float = 0  # stop (with a checkpoint) after this many minutes of this session; 0: no limit
    clip: float = 0  # largest gradient norm (larger gradients are scaled down to it); 0: no clipping
    timed: bool = False  # the schedule runs over ``minutes``, not ``steps``: a burst of known length, unknown speed
