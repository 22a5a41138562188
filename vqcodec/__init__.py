"""vqcodec: learned image compression with a VQ-VAE, an integer PixelCNN prior and range coding."""

__version__ = "0.22.0"  # before the imports: modules read it

from vqcodec.api import compress, decompress, load_codec
from vqcodec.errors import BitstreamError, ImageError, ModelError, VQCodecError
from vqcodec.pillow_plugin import register as _register_pillow_plugin

__all__ = ["BitstreamError", "ImageError", "ModelError", "VQCodecError", "compress", "decompress", "load_codec"]

_register_pillow_plugin()
