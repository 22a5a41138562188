import io

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

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


MODES = {"RGB": "RGB", "L": "L", "1": "L", "I;16": "L", "I": "L", "F": "L", "P": "RGB", "CMYK": "RGB", "YCbCr": "RGB"}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_pillow_saves_and_opens_every_mode(tmp_path, installed_tiny, mode):
    img = Image.fromarray(smooth_image(20, 28)).convert(mode)
    path = tmp_path / "x.vqc"
    img.save(path, model=installed_tiny)
    assert path.read_bytes() == vqcodec.compress(img, model=installed_tiny)
    with Image.open(path) as back:
        assert back.format == "VQC" and back.mode == MODES[mode] and back.size == (28, 20)
        back.load()


def test_pillow_save_takes_the_codec_options(tmp_path, tiny_ladder):
    img = Image.fromarray(smooth_image(64, 96))
    buf = io.BytesIO()
    img.save(buf, format="VQC", model="ladder", quality=2)
    assert buf.getvalue() == vqcodec.compress(img, model="ladder", quality=2)
    buf = io.BytesIO()
    img.save(buf, format="VQC", model="ladder", target_bpp=1000)
    assert buf.getvalue() == vqcodec.compress(img, model="ladder", quality=3)
    img.convert("RGBA").save(tmp_path / "a.vqc", model="ladder", quality=1)
    assert (tmp_path / "a.vqc").read_bytes() == vqcodec.compress(img.convert("RGBA"), model="ladder", quality=1)


def test_pillow_save_refines_when_asked(installed_tiny):
    img = Image.fromarray(smooth_image(24, 32))
    buf = io.BytesIO()
    img.save(buf, format="VQC", model=installed_tiny, refine=4)
    assert buf.getvalue() == vqcodec.compress(img, model=installed_tiny, refine=4)
    assert buf.getvalue() != vqcodec.compress(img, model=installed_tiny)


def test_vqc_is_a_registered_extension():
    assert Image.registered_extensions()[".vqc"] == "VQC"
    assert "VQC" in Image.SAVE and "VQC" in Image.OPEN


def test_pillow_open_of_an_invalid_vqc_file(tmp_path):
    for data in (b"not a vqc file at all", b"VQC\x09future version", b"VQC\x01\x09bad family"):
        path = tmp_path / "bad.vqc"
        path.write_bytes(data)
        with pytest.raises((UnidentifiedImageError, BitstreamError)):
            with Image.open(path) as im:
                im.load()
