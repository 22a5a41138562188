"""A folder of .vqc files read in a DataLoader with two worker processes."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import vqcodec
from vqcodec.dataset import VQCFolder, to_tensor
from vqcodec.errors import VQCodecError

from .conftest import smooth_image


@pytest.fixture
def folder(tmp_path, tiny_weights):
    for n in range(6):
        (tmp_path / f"{n}.vqc").write_bytes(vqcodec.compress(smooth_image(16, 24, seed=n), model=tiny_weights))
    (tmp_path / "readme.txt").write_text("not a .vqc file")
    return tmp_path


def test_a_dataloader_with_two_workers_decodes_every_file(folder, tiny_weights):
    data = VQCFolder(folder, model=tiny_weights)
    loader = DataLoader(data, batch_size=3, num_workers=2, multiprocessing_context="spawn")
    batches = list(loader)
    assert len(data) == 6 and [b.shape for b in batches] == [(3, 3, 16, 24)] * 2
    expected = to_tensor(vqcodec.decompress((folder / "4.vqc").read_bytes(), model=tiny_weights))
    assert torch.equal(batches[1][1], expected)


def test_pil_images_without_a_transform(folder, tiny_weights):
    image = VQCFolder(folder, transform=None, model=tiny_weights)[0]
    assert image.size == (24, 16) and np.asarray(image).dtype == np.uint8


def test_an_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(VQCodecError, match=r"no \.vqc files"):
        VQCFolder(tmp_path)
