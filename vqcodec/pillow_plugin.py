"""Pillow plugin, registered on ``import vqcodec``: ``Image.open("x.vqc")`` decodes .vqc files and
``img.save("x.vqc", quality=..., model=..., target_bpp=...)`` writes them, as Pillow does for WebP
and AVIF: an opened file has its ICC profile, EXIF and XMP in ``info`` (and ``getexif()``) and
is RGBA or LA where the source had alpha; saving keeps what ``img.info`` carries, unless
``strip=True``, with ``icc_profile=``, ``exif=`` and ``xmp=`` overriding it."""

from __future__ import annotations

from typing import IO

from PIL import Image, ImageFile

from vqcodec.format import MAGIC, parse_header, unpack_chunks
from vqcodec.metadata import from_chunks

FORMAT = "VQC"


def _accept(prefix: bytes) -> bool:
    """Any .vqc file: one of a version this release cannot read raises a BitstreamError saying so."""
    return prefix[:3] == MAGIC


class VQCImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "vqcodec learned image compression"

    def _open(self) -> None:
        data = self.fp.read()
        header, start = parse_header(data)  # the payload's checksum is checked when it is decoded
        chunks = unpack_chunks(data, start + header.payload_length, header.chunk_count) if header.chunk_count else ()
        self._size = (header.width, header.height)
        self._mode = header.mode
        self.info.update(from_chunks(chunks, self._size, has_alpha=False, with_alpha=False).metadata)
        self.tile = [ImageFile._Tile("vqc", (0, 0, *self.size), 0, None)]


class VQCDecoder(ImageFile.PyDecoder):
    _pulls_fd = True

    def decode(self, buffer: bytes | Image.SupportsArrayInterface) -> tuple[int, int]:
        from vqcodec.api import decompress

        self.fd.seek(0)
        img = decompress(self.fd.read())
        self.set_as_raw(img.tobytes())
        return -1, 0


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """``Image.save`` for .vqc: the options are those of ``vqcodec.compress``."""
    from vqcodec.api import compress

    options = im.encoderinfo
    exif = options.get("exif")
    fp.write(
        compress(
            im,
            quality=options.get("quality"),
            model=options.get("model"),
            target_bpp=options.get("target_bpp"),
            device=options.get("device", "cpu"),
            refine=options.get("refine", 0),
            strip=options.get("strip", False),
            icc_profile=options.get("icc_profile"),
            exif=exif.tobytes() if isinstance(exif, Image.Exif) else exif,
            xmp=options.get("xmp"),
        )
    )


def register() -> None:
    Image.register_open(FORMAT, VQCImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_decoder("vqc", VQCDecoder)
    Image.register_extension(FORMAT, ".vqc")
    Image.register_mime(FORMAT, "image/x-vqc")
