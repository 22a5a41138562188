"""Reading a compressed dataset in a training pipeline: a PyTorch ``Dataset`` over a folder of
.vqc files, decoded on the fly (in each ``DataLoader`` worker, which loads its models once).

    from torch.utils.data import DataLoader
    from vqcodec.dataset import VQCFolder

    loader = DataLoader(VQCFolder("photos-vqc/"), batch_size=None, num_workers=2,
                        multiprocessing_context="spawn")

Use the "spawn" context: forking a process whose torch thread pools have run can deadlock the
children. torchvision's ``ImageFolder`` reads .vqc files too, through the Pillow plugin, once
``import vqcodec`` has registered it (``ImageFolder(root, extensions=(".vqc",))``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from vqcodec.api import decompress
from vqcodec.errors import VQCodecError


def to_tensor(image: Image.Image) -> torch.Tensor:
    """A decoded image -> (C, H, W) float32 in [0, 1] (C: 1 to 4, as its mode has channels)."""
    array = np.asarray(image, dtype=np.uint8)
    array = array[..., None] if array.ndim == 2 else array
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255.0


class VQCFolder(Dataset):
    """The .vqc files of a folder (sorted by name), each decoded to ``transform(image)``: a
    tensor by default (``to_tensor``), or the PIL image with ``transform=None``. ``model``: a
    weights file for files whose model is not installed."""

    def __init__(
        self,
        folder: str | Path,
        transform: Callable[[Image.Image], object] | None = to_tensor,
        model: str | None = None,
    ):
        self.files = sorted(Path(folder).glob("*.vqc"))
        if not self.files:
            raise VQCodecError(f"{folder}: no .vqc files")
        self.transform, self.model = transform, model

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        image = decompress(self.files[index].read_bytes(), model=self.model)
        return image if self.transform is None else self.transform(image)
