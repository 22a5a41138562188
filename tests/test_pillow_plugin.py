import io

import numpy as np
import pytest
from PIL import Image

import vqcodec
from vqcodec.errors import BitstreamError

from .conftest import smooth_image


def test_pillow_opens_vqc_files(tmp_path):
    arr = smooth_image(24, 40)
    data = vqcodec.compress(arr)
    path = tmp_path / "x.vqc"
    path.write_bytes(data)
    with Image.open(path) as im:
        assert im.format == "VQC" and im.size == (40, 24) and im.mode == "RGB"
        pixels = np.asarray(im.convert("RGB"))
    assert np.array_equal(pixels, np.asarray(vqcodec.decompress(data)))


def test_pillow_reports_corrupt_vqc_as_bitstream_error():
    data = bytearray(vqcodec.compress(smooth_image(16, 16)))
    data[-1] ^= 0xFF
    with Image.open(io.BytesIO(bytes(data))) as im, pytest.raises(BitstreamError, match="checksum"):
        im.load()
