"""Turning whatever a user passes (PIL image, path, array) into the RGB pixels the codec codes.

Policy, documented in the README:
- EXIF orientation is applied, so the decoded image looks the way the original was shown.
- Grayscale inputs (1, L, I, I;16, F, LA) are coded as gray RGB and decoded as mode L.
- 16-bit inputs are scaled to 8 bits (v * 255 / 65535, rounded).
- Alpha (RGBA, LA, PA, palette transparency) is composited onto white with a warning:
  vqcodec codes colour only.
- CMYK, YCbCr, LAB, HSV and palette images are converted to RGB.
- Animations and multi-page files are coded as their first frame, with a warning.
- Any failure to read a file, Pillow's decompression-bomb limit included, is an ImageError
  naming the file.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vqcodec.errors import ImageError

ImageLike = Image.Image | str | Path | np.ndarray
BinaryFile = IO[bytes]

GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def open_image(path: str | Path | BinaryFile, name: str | None = None) -> Image.Image:
    """Open and fully load an image file (a path, or a binary file object called ``name``), with
    a clear error naming it if that fails, whatever Pillow raised."""
    name = name or str(path)
    try:
        with Image.open(path) as im:
            frames = getattr(im, "n_frames", 1)  # before load(): counting frames seeks through the file
            im.load()
            if frames > 1:
                warnings.warn(f"{name} has {frames} frames: vqcodec codes the first", stacklevel=3)
            return im
    except FileNotFoundError as e:
        raise ImageError(f"{name}: no such file") from e
    except IsADirectoryError as e:
        raise ImageError(f"{name}: is a directory") from e
    except Image.DecompressionBombError as e:
        raise ImageError(f"{name}: refused by Pillow's decompression-bomb limit ({e})") from e
    except UnidentifiedImageError as e:
        raise ImageError(f"{name}: not a readable image (unknown format)") from e
    except Exception as e:  # Pillow's plugins raise many kinds (OSError, NotImplementedError, SyntaxError, ...)
        raise ImageError(f"{name}: not a readable image ({type(e).__name__}: {e})") from e


def _from_array(arr: np.ndarray) -> Image.Image:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(f"array of shape {arr.shape} is not an HxW, HxWx3 or HxWx4 image")
    if arr.dtype == np.uint16:
        arr = _scale16(arr)
    elif arr.dtype != np.uint8:
        raise ImageError(f"array of dtype {arr.dtype} is not a uint8 or uint16 image")
    return Image.fromarray(np.ascontiguousarray(arr))


def _scale16(arr: np.ndarray) -> np.ndarray:
    return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _flatten_alpha(im: Image.Image) -> Image.Image:
    warnings.warn("vqcodec codes colour only: the alpha channel is composited onto white", stacklevel=4)
    rgba = im.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def prepare(image: ImageLike) -> tuple[Image.Image, str]:
    """Any supported input -> (RGB PIL image, mode to decode to: "RGB" or "L")."""
    if isinstance(image, (str, Path)):
        image = open_image(image)
    elif isinstance(image, Image.Image) and getattr(image, "n_frames", 1) > 1:
        warnings.warn(f"the image has {image.n_frames} frames: vqcodec codes the current one", stacklevel=2)
    elif isinstance(image, np.ndarray):
        image = _from_array(image)
    elif not isinstance(image, Image.Image):
        raise ImageError(f"cannot compress a {type(image).__name__}: pass a PIL image, a path or a uint8 array")
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block must not stop compression; orientation is then left as is
        pass
    if image.width < 1 or image.height < 1:
        raise ImageError("image has no pixels")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info)
    if image.mode in GRAY_MODES:
        if image.mode == "LA":
            return _flatten_alpha(image).convert("L").convert("RGB"), "L"
        if image.mode.startswith("I") or image.mode == "F":
            arr = np.asarray(image)
            peak = 65535 if image.mode != "F" else 1.0
            arr = np.clip(arr.astype(np.float64) / peak * 255 + 0.5, 0, 255).astype(np.uint8)
            image = Image.fromarray(arr)
        return image.convert("L").convert("RGB"), "L"
    if has_alpha:
        return _flatten_alpha(image), "RGB"
    return image.convert("RGB"), "RGB"
