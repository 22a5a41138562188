"""What a .vqc file keeps beside the colour: ICC profile, EXIF, XMP and alpha, through the API,
the CLI and the Pillow plugin, on files like the ones people have (made here with Pillow)."""

import io
import json

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFilter, ImageOps

import vqcodec
from vqcodec.cli import main
from vqcodec.format import unpack_file
from vqcodec.metadata import ALPHA, EXIF, ICC, XMP, Extras, chunk_summary, decode_alpha, encode_alpha

from .conftest import smooth_image

ICC_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
XMP_PACKET = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:creator>vqcodec tests</dc:creator>'
    b"</rdf:Description></rdf:RDF></x:xmpmeta>"
)
MAKE, ORIENTATION, GPS = 0x010F, 0x0112, 0x8825


def saved(img: Image.Image, fmt: str, **options) -> Image.Image:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    out = Image.open(io.BytesIO(buffer.getvalue()))
    out.load()
    return out


def camera_jpeg(orientation: int = 1) -> Image.Image:
    """A JPEG as a camera writes it: ICC profile, EXIF with a make, a GPS block and an orientation."""
    img = Image.fromarray(smooth_image(24, 40))
    exif = img.getexif()
    exif[MAKE] = "vqcodec camera"
    exif[ORIENTATION] = orientation
    exif.get_ifd(GPS).update({1: "N", 2: (52.0, 31.0, 12.0)})
    return saved(img, "JPEG", quality=95, icc_profile=ICC_PROFILE, exif=exif.tobytes())


def soft_rgba() -> Image.Image:
    rgb = Image.fromarray(smooth_image(32, 48))
    alpha = Image.new("L", rgb.size, 0)
    alpha.paste(255, (10, 8, 38, 24))
    rgba = rgb.convert("RGBA")
    rgba.putalpha(alpha.filter(ImageFilter.GaussianBlur(3)))
    return saved(rgba, "PNG")


def round_trip(img: Image.Image, model: str, **options) -> Image.Image:
    return vqcodec.decompress(vqcodec.compress(img, model=model, **options))


def test_a_camera_jpeg_keeps_its_profile_exif_and_gps(installed_tiny):
    out = round_trip(camera_jpeg(), installed_tiny)
    assert out.info["icc_profile"] == ICC_PROFILE
    exif = out.getexif()
    assert exif[MAKE] == "vqcodec camera" and exif.get_ifd(GPS)[1] == "N"
    assert out.mode == "RGB" and out.size == (40, 24)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_orientation_is_applied_once_and_reset_to_1(installed_tiny, orientation):
    src = camera_jpeg(orientation)
    out = round_trip(src, installed_tiny)
    upright = ImageOps.exif_transpose(src)
    assert out.size == upright.size
    assert np.abs(np.asarray(out).astype(int) - np.asarray(upright.convert("RGB")).astype(int)).mean() < 40
    assert out.getexif().get(ORIENTATION, 1) == 1 and out.getexif()[MAKE] == "vqcodec camera"


def test_a_png_keeps_its_itxt_xmp(installed_tiny):
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_itxt("XML:com.adobe.xmp", XMP_PACKET.decode(), zip=False)
    src = saved(Image.fromarray(smooth_image(16, 16)), "PNG", pnginfo=text)
    assert src.info["xmp"] == XMP_PACKET
    assert round_trip(src, installed_tiny).info["xmp"] == XMP_PACKET


def test_a_tiff_keeps_its_profile(installed_tiny):
    src = saved(Image.fromarray(smooth_image(16, 24)), "TIFF", icc_profile=ICC_PROFILE)
    assert round_trip(src, installed_tiny).info["icc_profile"] == ICC_PROFILE


def test_soft_edged_rgba_keeps_its_alpha_exactly(installed_tiny):
    src = soft_rgba()
    out = round_trip(src, installed_tiny)
    assert out.mode == "RGBA"
    assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(src.getchannel("A")))


def test_a_gif_with_a_transparent_index_comes_back_rgba(installed_tiny):
    pal = Image.fromarray(smooth_image(16, 16)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    src = saved(pal, "GIF", transparency=3)
    out = round_trip(src, installed_tiny)
    want = (np.asarray(src) != 3) * 255
    assert out.mode == "RGBA" and np.array_equal(np.asarray(out.getchannel("A")), want)


def test_an_la_image_comes_back_la(installed_tiny):
    gray = Image.fromarray(smooth_image(16, 20)[..., 0])
    src = Image.merge("LA", (gray, gray.point(lambda v: 255 - v)))
    out = round_trip(src, installed_tiny)
    assert out.mode == "LA" and np.array_equal(np.asarray(out.getchannel("A")), np.asarray(src.getchannel("A")))


def test_an_opaque_plane_costs_a_few_bytes(installed_tiny):
    rgb = Image.fromarray(smooth_image(32, 32))
    plain = vqcodec.compress(rgb, model=installed_tiny)
    opaque = vqcodec.compress(rgb.convert("RGBA"), model=installed_tiny)
    assert len(opaque) - len(plain) <= 16  # version 4's fields, a 2-byte plane and its chunk's 9
    assert encode_alpha(Image.new("L", (7, 5), 0)) == bytes([0, 0])


def test_strip_drops_the_metadata_and_keeps_alpha(installed_tiny):
    src = camera_jpeg(6).convert("RGBA")
    src.info.update(icc_profile=ICC_PROFILE, xmp=XMP_PACKET)
    data = vqcodec.compress(src, model=installed_tiny, strip=True)
    kinds = {c.kind for c in unpack_file(data).chunks}
    assert kinds == {ALPHA}
    out = vqcodec.decompress(data)
    assert "icc_profile" not in out.info and "xmp" not in out.info and not out.getexif()


def test_a_file_without_extras_is_the_earlier_version(installed_tiny):
    data = vqcodec.compress(smooth_image(16, 16), model=installed_tiny)
    assert unpack_file(data).header.version < 4
    stripped = vqcodec.compress(camera_jpeg(), model=installed_tiny, strip=True)
    assert unpack_file(stripped).header.version < 4


def test_arguments_override_what_the_image_carries(installed_tiny):
    other = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    out = round_trip(camera_jpeg(), installed_tiny, icc_profile=other, xmp=XMP_PACKET.decode())
    assert out.info["icc_profile"] == other and out.info["xmp"] == XMP_PACKET


def test_too_much_metadata_is_refused(installed_tiny):
    with pytest.raises(vqcodec.VQCodecError, match="metadata"):
        vqcodec.compress(smooth_image(8, 8), model=installed_tiny, xmp=b"x" * (9 << 20))


def test_pillow_opens_and_saves_the_metadata(installed_tiny, tmp_path):
    src = camera_jpeg()
    src.info["xmp"] = XMP_PACKET
    path = tmp_path / "x.vqc"
    src.save(path, model=installed_tiny)
    with Image.open(path) as im:
        assert im.info["icc_profile"] == ICC_PROFILE and im.info["xmp"] == XMP_PACKET
        assert im.getexif()[MAKE] == "vqcodec camera"
        im.load()
    soft = soft_rgba()
    soft.save(path, model=installed_tiny, icc_profile=ICC_PROFILE)
    with Image.open(path) as im:
        assert im.mode == "RGBA" and im.info["icc_profile"] == ICC_PROFILE
        assert np.array_equal(np.asarray(im.getchannel("A")), np.asarray(soft.getchannel("A")))
    src.save(path, model=installed_tiny, strip=True)
    with Image.open(path) as im:
        assert "icc_profile" not in im.info


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tiff"])
def test_the_cli_writes_the_metadata_into_each_output_format(capsys, tmp_path, installed_tiny, suffix):
    src = tmp_path / "camera.jpg"
    jpeg = camera_jpeg()
    jpeg.save(src, quality=95, icc_profile=ICC_PROFILE, exif=jpeg.info["exif"])
    vqc, out = tmp_path / "camera.vqc", tmp_path / f"decoded{suffix}"
    assert run(capsys, "compress", str(src), "-o", str(vqc), "--model", installed_tiny)[0] == 0
    assert run(capsys, "decompress", str(vqc), "-o", str(out))[0] == 0
    with Image.open(out) as im:
        assert im.info["icc_profile"] == ICC_PROFILE and im.getexif()[MAKE] == "vqcodec camera"


def test_the_cli_strips_and_info_shows_the_chunks(capsys, tmp_path, installed_tiny):
    src = tmp_path / "soft.png"
    rgba = soft_rgba()
    rgba.save(src, icc_profile=ICC_PROFILE)
    vqc = tmp_path / "soft.vqc"
    assert run(capsys, "compress", str(src), "-o", str(vqc), "--model", installed_tiny)[0] == 0
    code, out, _ = run(capsys, "info", str(vqc), "--json")
    fields = json.loads(out)
    assert code == 0 and fields["version"] == 4 and fields["mode"] == "RGBA"
    assert fields["icc_profile"]["bytes"] == len(ICC_PROFILE) and "sRGB" in fields["icc_profile"]["description"]
    assert fields["alpha"]["coding"] == "WebP lossless" and fields["alpha"]["bytes"] > 10
    assert fields["header_bytes"] + fields["payload_bytes"] + fields["chunk_bytes"] == fields["bytes"]
    assert run(capsys, "compress", str(src), "-o", str(vqc), "--model", installed_tiny, "--strip", "--force")[0] == 0
    fields = json.loads(run(capsys, "info", str(vqc), "--json")[1])
    assert "icc_profile" not in fields and "alpha" in fields
    code, out, _ = run(capsys, "info", str(vqc))
    assert "alpha: coding WebP lossless" in out


def test_a_jpeg_output_of_an_rgba_file_is_flattened_with_a_warning(capsys, tmp_path, installed_tiny):
    vqc = tmp_path / "soft.vqc"
    vqc.write_bytes(vqcodec.compress(soft_rgba(), model=installed_tiny))
    code, _, err = run(capsys, "decompress", str(vqc), "-o", str(tmp_path / "soft.jpg"))
    assert code == 0 and "composited onto white" in err


def test_chunk_summary_counts_exif_tags():
    exif = camera_jpeg().info["exif"]
    from vqcodec.format import Chunk

    summary = chunk_summary((Chunk(EXIF, exif), Chunk(XMP, XMP_PACKET), Chunk(ICC, ICC_PROFILE), Chunk(b"ZZZZ", b"")))
    assert summary["exif"]["tags"] == 4 and summary["xmp"]["bytes"] == len(XMP_PACKET)
    assert summary["unknown_chunks"] == ["ZZZZ"]


@pytest.mark.parametrize(
    "data, message",
    [(b"", "empty"), (bytes([7, 1]), "unknown alpha coding"), (bytes([1]) + b"RIFF....", "corrupt alpha")],
)
def test_bad_alpha_chunks_are_bitstream_errors(data, message):
    with pytest.raises(vqcodec.BitstreamError, match=message):
        decode_alpha(data, (4, 4))


def test_an_alpha_plane_of_another_size_is_refused():
    data = encode_alpha(Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4)))
    with pytest.raises(vqcodec.BitstreamError, match="alpha plane of 4x4 for a 5x4 image"):
        decode_alpha(data, (5, 4))


def test_extras_lists_only_what_is_present():
    assert Extras(icc_profile=b"p").metadata == {"icc_profile": b"p"}
