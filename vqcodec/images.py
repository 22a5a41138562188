"""Turning whatever a user passes (PIL image, path, array) into the RGB pixels the codec codes.

Policy, documented in the README:
- EXIF orientation is applied, so the decoded image looks the way the original was shown.
- Grayscale inputs (1, L, I, I;16, F, LA) are coded as gray RGB and decoded as mode L.
- 16-bit inputs are scaled to 8 bits (v * 255 / 65535, rounded).
- Alpha (RGBA, LA, PA, palette transparency) is kept, losslessly, beside the coded colour
  (the colour of fully transparent pixels is coded too); the decoded image is RGBA or LA.
- The ICC profile, EXIF and XMP are kept unless stripped (``vqcodec.metadata``).
- CMYK, YCbCr, LAB, HSV and palette images are converted to RGB.
- Animations and multi-page files are coded as their first frame, with a warning.
- Any failure to read a file, Pillow's decompression-bomb limit included, is an ImageError
  naming the file.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vqcodec.errors import ImageError
from vqcodec.metadata import Extras, source_extras

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
                return im.copy()  # the first frame alone: it is not a many-frame image any more
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


@dataclass(frozen=True)
class Prepared:
    """An input made ready to code: its colour as RGB, the mode it decodes to (RGB, L, RGBA or
    LA) and what the file keeps beside the colour. Preparing it again returns it as it is."""

    rgb: Image.Image
    mode: str
    extras: Extras

    @property
    def pixel_count(self) -> int:
        return self.rgb.width * self.rgb.height


def _alpha_plane(image: Image.Image) -> Image.Image | None:
    """The alpha of an image that has one (RGBA, LA, PA, palette transparency), as mode L."""
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (image.mode == "P" and "transparency" in image.info):
        return image.convert("RGBA").getchannel("A")
    return None


def _colour(image: Image.Image) -> tuple[Image.Image, str]:
    """(RGB image, "RGB" or "L") of an image of any mode, alpha left out."""
    if image.mode in GRAY_MODES:
        if image.mode.startswith("I") or image.mode == "F":
            arr = np.asarray(image)
            peak = 65535 if image.mode != "F" else 1.0
            arr = np.clip(arr.astype(np.float64) / peak * 255 + 0.5, 0, 255).astype(np.uint8)
            image = Image.fromarray(arr)
        return image.convert("L").convert("RGB"), "L"
    return image.convert("RGBA").convert("RGB") if image.mode in ("P", "PA") else image.convert("RGB"), "RGB"


def prepare(
    image: ImageLike | Prepared,
    *,
    strip: bool = False,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    xmp: bytes | str | None = None,
) -> Prepared:
    """Any supported input -> what the codec codes and what the file keeps beside it: the
    input's ICC profile, EXIF and XMP unless ``strip``, or those given instead."""
    if isinstance(image, Prepared):
        return image
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
    alpha = _alpha_plane(image)
    rgb, mode = _colour(image)
    extras = source_extras(image, alpha, strip=strip, icc_profile=icc_profile, exif=exif, xmp=xmp)
    return Prepared(rgb, mode + ("A" if alpha is not None else ""), extras)
