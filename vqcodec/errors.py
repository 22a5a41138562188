"""Exception hierarchy: every error vqcodec raises on purpose derives from VQCodecError."""


class VQCodecError(Exception):
    """Base class of all vqcodec errors."""


class BitstreamError(VQCodecError):
    """A byte string is not a valid .vqc file (bad magic, version, checksum, truncation...)."""


class ModelError(VQCodecError):
    """A model is unknown, or its weights are missing or corrupt."""


class ImageError(VQCodecError):
    """An input image cannot be read or is not supported."""
