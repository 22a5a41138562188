"""Pillow plugin: ``PIL.Image.open("x.vqc")`` decodes .vqc files once vqcodec is imported."""

from __future__ import annotations

from PIL import Image, ImageFile

from vqcodec.format import MAGIC, VERSION, parse_header


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == MAGIC + bytes([VERSION])


class VQCImageFile(ImageFile.ImageFile):
    format = "VQC"
    format_description = "vqcodec learned image compression"

    def _open(self) -> None:
        header, _ = parse_header(self.fp.read(64))
        self._size = (header.width, header.height)
        self._mode = header.mode
        self.tile = [ImageFile._Tile("vqc", (0, 0, *self.size), 0, None)]


class VQCDecoder(ImageFile.PyDecoder):
    _pulls_fd = True

    def decode(self, buffer: bytes | Image.SupportsArrayInterface) -> tuple[int, int]:
        from vqcodec.api import decompress

        self.fd.seek(0)
        img = decompress(self.fd.read())
        self.set_as_raw(img.tobytes())
        return -1, 0


def register() -> None:
    Image.register_open(VQCImageFile.format, VQCImageFile, _accept)
    Image.register_decoder("vqc", VQCDecoder)
    Image.register_extension(VQCImageFile.format, ".vqc")
    Image.register_mime(VQCImageFile.format, "image/x-vqc")
