"""Training data: photos decoded once, downscaled (JPEG-sourced images carry block
artefacts that downscaling removes), kept in memory as uint8, and served as random crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}


def image_files(folder: str | Path) -> list[Path]:
    """Image files in ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def shard_items(items: list, rank: int, world: int) -> list:
    """This rank's part of ``items``, as DistributedSampler assigns it (the same count on every rank)."""
    if world == 1:
        return items
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(len(items)), num_replicas=world, rank=rank, shuffle=False)
    return [items[i] for i in sampler]


def load_rgb(path: str | Path) -> Image.Image:
    """An image file's RGB pixels and nothing else (no profile, EXIF or XMP in ``info``): what
    training and evaluation code, so a measured rate is the colour's alone."""
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    rgb.info.clear()
    return rgb


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> (3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0


class CropDataset:
    """Every image at each of ``scales``, sampled as random ``crop`` x ``crop`` patches."""

    def __init__(
        self,
        folder: str | Path,
        crop: int,
        scales: tuple[float, ...] = (0.5, 0.75),
        limit: int | None = None,
        shard: tuple[int, int] = (0, 1),
    ):
        self.crop = crop
        self.images: list[torch.Tensor] = []
        for path in shard_items(image_files(folder)[:limit], *shard):
            img = load_rgb(path)
            for s in scales:
                w, h = max(crop, round(img.width * s)), max(crop, round(img.height * s))
                arr = np.asarray(img.resize((w, h), Image.Resampling.LANCZOS), dtype=np.uint8)
                self.images.append(torch.from_numpy(arr.copy()).permute(2, 0, 1))

    def batch(self, size: int, gen: torch.Generator) -> torch.Tensor:
        """(size, 3, crop, crop) float in [0, 1], random crops with random horizontal flips."""
        out = torch.empty(size, 3, self.crop, self.crop)
        picks = torch.randint(len(self.images), (size,), generator=gen)
        for n, i in enumerate(picks.tolist()):
            img = self.images[i]
            y = int(torch.randint(img.shape[1] - self.crop + 1, (1,), generator=gen))
            x = int(torch.randint(img.shape[2] - self.crop + 1, (1,), generator=gen))
            patch = img[:, y : y + self.crop, x : x + self.crop]
            if bool(torch.rand((), generator=gen) < 0.5):
                patch = patch.flip(2)
            out[n] = patch.float() / 255.0
        return out
