import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from vqcodec.errors import ImageError
from vqcodec.images import prepare

from .conftest import smooth_image


def reopen(img: Image.Image, fmt: str, **kw) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    buf.seek(0)
    return Image.open(buf)


def rgb_and_mode(image) -> tuple:
    prepared = prepare(image)
    return prepared.rgb, prepared.mode


def test_rgb_array_and_image_agree():
    arr = smooth_image(9, 7)
    a, mode_a = rgb_and_mode(arr)
    b, mode_b = rgb_and_mode(Image.fromarray(arr))
    assert mode_a == mode_b == "RGB" and np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("mode", ["L", "1", "I;16", "I", "F"])
def test_grayscale_modes_decode_as_l(mode):
    img = Image.fromarray(smooth_image(6, 5)[..., 0]).convert(mode)
    rgb, out_mode = rgb_and_mode(img)
    assert out_mode == "L" and rgb.mode == "RGB"
    r, g, b = (np.asarray(c) for c in rgb.split())
    assert np.array_equal(r, g) and np.array_equal(g, b)


def test_sixteen_bit_png_is_scaled_not_clipped():
    arr16 = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 257).astype(np.uint16)  # 0..65535
    img = reopen(Image.fromarray(arr16), "PNG")
    rgb, mode = rgb_and_mode(img)
    assert mode == "L"
    assert np.array_equal(np.asarray(rgb)[..., 0], np.arange(256).reshape(16, 16))
    out, _ = rgb_and_mode(arr16)  # a uint16 array too
    assert np.array_equal(np.asarray(out)[..., 0], np.arange(256).reshape(16, 16))


def test_alpha_is_kept_beside_the_colour():
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red-ish, bottom half transparent
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepared = prepare(Image.fromarray(rgba, "RGBA"))
    assert prepared.mode == "RGBA" and tuple(np.asarray(prepared.rgb)[3, 0]) == (200, 0, 0)
    assert np.array_equal(np.asarray(prepared.extras.alpha), rgba[..., 3])


def test_palette_and_cmyk_become_rgb():
    arr = smooth_image(8, 8)
    pal = Image.fromarray(arr).convert("P")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no transparency: no warning
        rgb, mode = rgb_and_mode(pal)
    assert mode == "RGB" and np.array_equal(np.asarray(rgb), np.asarray(pal.convert("RGB")))
    cmyk = reopen(Image.fromarray(arr).convert("CMYK"), "JPEG", quality=95)
    rgb, mode = rgb_and_mode(cmyk)
    assert mode == "RGB" and np.abs(np.asarray(rgb).astype(int) - arr).mean() < 12


def test_exif_orientation_is_applied():
    arr = smooth_image(10, 20)  # 20 wide, 10 high
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    rotated, _ = rgb_and_mode(reopen(img, "PNG", exif=exif))
    assert rotated.size == (10, 20)


def test_not_an_image_is_named_in_the_error(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("hello")
    with pytest.raises(ImageError, match=r"notes\.png"):
        prepare(bad)
    with pytest.raises(ImageError, match="no such file"):
        prepare(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="shape"):
        prepare(np.zeros((4, 4, 2), dtype=np.uint8))
    with pytest.raises(ImageError, match="dtype"):
        prepare(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ImageError, match="cannot compress"):
        prepare(42)


def crafted(kind: str) -> bytes:
    """Files that make Pillow raise something other than OSError: a GIF whose screen claims
    65535 x 65535 pixels and an ICO whose embedded PNG does (DecompressionBombError), a DDS in a
    pixel format Pillow lacks (NotImplementedError)."""
    if kind == "ico":
        buf = io.BytesIO()
        Image.new("RGB", (64, 64)).save(buf, "ICO", sizes=[(64, 64)])
        ico = bytearray(buf.getvalue())
        png = ico.find(b"\x89PNG")
        ico[png + 16 : png + 24] = struct.pack(">II", 65535, 65535)  # the IHDR's size, then its CRC
        ico[png + 29 : png + 33] = struct.pack(">I", zlib.crc32(bytes(ico[png + 12 : png + 29])))
        return bytes(ico)
    if kind == "gif":
        buf = io.BytesIO()
        Image.new("P", (2, 2)).save(buf, "GIF")
        gif = bytearray(buf.getvalue())
        gif[6:10] = struct.pack("<HH", 65535, 65535)
        desc = gif.index(b",", 13)
        gif[desc + 5 : desc + 9] = struct.pack("<HH", 65535, 65535)
        return bytes(gif)
    header = bytearray(128)
    header[:4] = b"DDS "
    struct.pack_into("<IIIIIII", header, 4, 124, 0x1007, 4, 4, 0, 0, 0)
    struct.pack_into("<II4s", header, 76, 32, 0x4, b"DX10")
    return bytes(header) + struct.pack("<IIIII", 200, 3, 0, 1, 0) + bytes(64)


@pytest.mark.parametrize(
    ("kind", "why"),
    [("gif", "decompression-bomb limit"), ("ico", "decompression-bomb limit"), ("dds", "NotImplementedError")],
)
def test_every_failure_to_read_is_an_image_error_naming_the_file(tmp_path, kind, why):
    path = tmp_path / f"crafted.{kind}"
    path.write_bytes(crafted(kind))
    with pytest.raises(ImageError, match=rf"crafted\.{kind}: .*{why}"):
        prepare(path)


def test_an_animation_is_coded_as_its_first_frame_with_a_warning(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="anim.gif has 2 frames"):
        rgb, _ = rgb_and_mode(path)
    assert rgb.getpixel((0, 0))[0] > 200  # red: the first frame
    with pytest.warns(UserWarning, match="2 frames"):
        prepare(Image.open(path))
