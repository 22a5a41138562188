"""What a .vqc file keeps beside the coded colour: the ICC profile, EXIF, XMP and alpha.

They travel as chunks of format version 4 (``vqcodec.format``), kept the way WebP and AVIF keep
them (and Pillow exposes them): ``info["icc_profile"]``, ``getexif()``, ``info["xmp"]`` and the
RGBA and LA modes.

- The ICC profile, EXIF and XMP are kept byte for byte by default; ``strip`` drops all three.
  The EXIF orientation is applied to the pixels before coding (``vqcodec.images``), so the
  stored orientation is reset to 1: no viewer rotates the image twice.
- Alpha (RGBA, LA, and P or PA images with transparency) is coded losslessly: a plane of one
  value as that value (2 bytes), any other as a WebP lossless image (libwebp, through Pillow).
  Its bytes are part of the file, so every reported bpp includes them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from vqcodec.errors import BitstreamError, VQCodecError
from vqcodec.format import MAX_CHUNK_BYTES, Chunk

ICC, EXIF, XMP, ALPHA = b"ICCP", b"EXIF", b"XMP ", b"ALPH"
ALPHA_CONSTANT, ALPHA_WEBP = 0, 1  # the first byte of an ALPH chunk: how the plane is coded
ORIENTATION = 0x0112


@dataclass(frozen=True)
class Extras:
    """Everything of an image but its colour: what the chunks of one file hold."""

    icc_profile: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None
    alpha: Image.Image | None = None  # mode L, the image's size

    @property
    def metadata(self) -> dict[str, bytes]:
        """The metadata present, under Pillow's ``info`` names."""
        items = {"icc_profile": self.icc_profile, "exif": self.exif, "xmp": self.xmp}
        return {k: v for k, v in items.items() if v}


def upright_exif(exif: bytes) -> bytes:
    """EXIF bytes with the orientation tag reset to 1 (the pixels are upright already)."""
    tags = Image.Exif()
    try:
        tags.load(exif)
    except Exception:  # unreadable EXIF is kept as it came: it cannot rotate anything either
        return exif
    if tags.get(ORIENTATION, 1) == 1:
        return exif
    tags[ORIENTATION] = 1
    return tags.tobytes()


def xmp_bytes(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def source_extras(
    image: Image.Image,
    alpha: Image.Image | None,
    *,
    strip: bool = False,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    xmp: bytes | str | None = None,
) -> Extras:
    """The extras of an (upright) input image: its own metadata unless ``strip``, replaced by
    any of ``icc_profile``, ``exif`` and ``xmp`` given, and its alpha plane."""
    info = {} if strip else image.info
    exif = exif if exif is not None else (None if strip else (image.info.get("exif") or None))
    extras = Extras(
        icc_profile=icc_profile if icc_profile is not None else info.get("icc_profile") or None,
        exif=upright_exif(exif) if exif else None,
        xmp=xmp_bytes(xmp if xmp is not None else info.get("xmp") or None),
        alpha=alpha,
    )
    size = sum(len(v) for v in extras.metadata.values())
    if size > MAX_CHUNK_BYTES // 2:
        raise VQCodecError(f"{size} bytes of metadata: more than a .vqc file keeps (use strip)")
    return extras


def encode_alpha(alpha: Image.Image) -> bytes:
    """An ALPH chunk's data: a plane of one value as that value, any other as WebP lossless."""
    low, high = alpha.getextrema()
    if low == high:
        return bytes([ALPHA_CONSTANT, low])
    buffer = io.BytesIO()
    alpha.save(buffer, format="WEBP", lossless=True, quality=100, method=4)
    return bytes([ALPHA_WEBP]) + buffer.getvalue()


def decode_alpha(data: bytes, size: tuple[int, int]) -> Image.Image:
    """An ALPH chunk's data -> the alpha plane (mode L) of an image of ``size``."""
    if not data:
        raise BitstreamError("corrupt: empty alpha chunk")
    if data[0] == ALPHA_CONSTANT and len(data) == 2:
        return Image.new("L", size, data[1])
    if data[0] != ALPHA_WEBP:
        raise BitstreamError(f"corrupt: unknown alpha coding {data[0]}")
    try:
        with Image.open(io.BytesIO(data[1:]), formats=["WEBP"]) as im:
            if im.size != size:
                got, want = "x".join(map(str, im.size)), "x".join(map(str, size))
                raise BitstreamError(f"corrupt: alpha plane of {got} for a {want} image")
            return im.convert("RGB").getchannel(0)
    except BitstreamError:
        raise
    except Exception as e:  # Pillow raises several kinds on a damaged WebP stream
        raise BitstreamError(f"corrupt alpha plane ({type(e).__name__})") from e


def to_chunks(extras: Extras) -> tuple[Chunk, ...]:
    """The chunks of a file with these extras (none: a file of an earlier version)."""
    chunks = [Chunk(kind, value) for kind, value in ((ICC, extras.icc_profile), (EXIF, extras.exif), (XMP, extras.xmp))]
    chunks = [c for c in chunks if c.data]
    if extras.alpha is not None:
        chunks.append(Chunk(ALPHA, encode_alpha(extras.alpha)))
    return tuple(chunks)


def from_chunks(chunks: tuple[Chunk, ...], size: tuple[int, int], has_alpha: bool, with_alpha: bool = True) -> Extras:
    """The extras a file's chunks hold (unknown chunk types skipped, as the format asks); the
    alpha plane decoded unless not ``with_alpha`` (only the metadata is wanted)."""
    found = {c.kind: c.data for c in chunks}
    if with_alpha and has_alpha != (ALPHA in found):
        raise BitstreamError("corrupt: the image mode and the alpha chunk disagree")
    return Extras(
        icc_profile=found.get(ICC),
        exif=found.get(EXIF),
        xmp=found.get(XMP),
        alpha=decode_alpha(found[ALPHA], size) if has_alpha and with_alpha else None,
    )


def attach(image: Image.Image, extras: Extras) -> Image.Image:
    """A decoded RGB or L image with its alpha (-> RGBA or LA) and metadata in ``info``."""
    if extras.alpha is not None:
        image = image.convert("RGBA" if image.mode == "RGB" else "LA")
        image.putalpha(extras.alpha)
    image.info.update(extras.metadata)
    return image


def chunk_summary(chunks: tuple[Chunk, ...]) -> dict:
    """What ``vqcodec info`` shows of a file's chunks."""
    found = {c.kind: c.data for c in chunks}
    out: dict = {}
    if ICC in found:
        out["icc_profile"] = {"description": icc_description(found[ICC]), "bytes": len(found[ICC])}
    if EXIF in found:
        tags = Image.Exif()
        try:
            tags.load(found[EXIF])
            pointers = [ifd for ifd in (0x8769, 0x8825) if ifd in tags]  # Exif and GPS blocks: tags of their own
            count = len(tags) - len(pointers) + sum(len(tags.get_ifd(ifd)) for ifd in pointers)
        except Exception:
            count = None
        out["exif"] = {"tags": count, "bytes": len(found[EXIF])}
    if XMP in found:
        out["xmp"] = {"bytes": len(found[XMP])}
    if ALPHA in found:
        coding = "constant" if found[ALPHA][:1] == bytes([ALPHA_CONSTANT]) else "WebP lossless"
        out["alpha"] = {"coding": coding, "bytes": len(found[ALPHA])}
    unknown = [c.kind.decode("latin-1") for c in chunks if c.kind not in (ICC, EXIF, XMP, ALPHA)]
    if unknown:
        out["unknown_chunks"] = unknown
    return out


def icc_description(profile: bytes) -> str | None:
    """The profile's description (its 'desc' tag, through Pillow's LittleCMS), or None."""
    try:
        from PIL import ImageCms

        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(profile))).strip() or None
    except Exception:
        return None


def save_options(image: Image.Image, fmt: str) -> dict:
    """Pillow save arguments that write a decoded image's metadata into a file of format ``fmt``
    (PNG, JPEG, WebP and TIFF keep all three; other formats get none)."""
    icc, exif, xmp = (image.info.get(k) for k in ("icc_profile", "exif", "xmp"))
    options = {k: v for k, v in (("icc_profile", icc), ("exif", exif)) if v}
    if fmt not in ("PNG", "JPEG", "WEBP", "TIFF"):
        return {}
    if xmp and fmt in ("JPEG", "WEBP"):
        options["xmp"] = xmp
    elif xmp and fmt == "PNG":
        from PIL import PngImagePlugin

        text = PngImagePlugin.PngInfo()
        text.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8", "replace"), zip=False)
        options["pnginfo"] = text
    elif xmp and fmt == "TIFF":
        options["tiffinfo"] = {700: xmp}
    return options


def save_image(image: Image.Image, fmt: str) -> bytes:
    """A decoded image as a file of format ``fmt`` (a Pillow format name) with its metadata; an
    image with alpha goes into a format without it (JPEG) composited onto white, with a warning."""
    if fmt == "JPEG" and image.mode in ("RGBA", "LA"):
        import warnings

        warnings.warn("JPEG has no alpha: the image is composited onto white", stacklevel=2)
        flat = Image.new("RGBA", image.size, (255, 255, 255, 255))
        flat.alpha_composite(image.convert("RGBA"))
        flat = flat.convert("RGB" if image.mode == "RGBA" else "L")
        flat.info.update(image.info)
        image = flat
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_options(image, fmt))
    return buffer.getvalue()
