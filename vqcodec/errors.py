"""Exception hierarchy: every error vqcodec raises on purpose derives from VQCodecError."""


class VQCodecError(Exception):
    """Base class of all vqcodec errors."""


class BitstreamError(VQCodecError):
    """A byte string is not a valid .vqc file (bad magic, version, checksum, truncation...)."""


class ModelError(VQCodecError):
    """A model is unknown, or its weights are missing or corrupt."""


class ImageError(VQCodecError):
    """An input image cannot be read or is not supported."""


def failure_message(name: str, error: BaseException) -> str:
    """The one line a batch job reports for a failed input ``name`` (the CLI, Ray workers):
    the error's message, prefixed by the input's name unless it names it already; an error
    that is not vqcodec's or the system's is an internal one."""
    if not isinstance(error, (VQCodecError, OSError)):
        return f"{name}: internal error: {type(error).__name__}: {error}"
    return str(error) if name in str(error) else f"{name}: {error}"
