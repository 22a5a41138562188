"""vqcodec: learned image compression with a VQ-VAE, an integer PixelCNN prior and range coding."""

__version__ = "0.23.0"  # before the imports: modules read it

from vqcodec.errors import BitstreamError, ImageError, ModelError, VQCodecError
from vqcodec.pillow_plugin import register as _register_pillow_plugin

__all__ = ["BitstreamError", "ImageError", "ModelError", "VQCodecError", "compress", "decompress", "load_codec"]

_API = ("compress", "decompress", "load_codec")


def __getattr__(name: str):
    """The codec functions, imported on first use (PEP 562): ``import vqcodec`` loads no torch,
    so the light commands (``--version``, ``info``, ``models``) start at once."""
    if name in _API:
        from vqcodec import api

        return getattr(api, name)
    raise AttributeError(f"module 'vqcodec' has no attribute {name!r}")


_register_pillow_plugin()
