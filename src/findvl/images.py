"""One decoder for every image a user hands in: files, PIL images and arrays -> ``HxWx3`` uint8.

What it guarantees, whatever the source:

* EXIF orientation is applied, so pixels (and every mask predicted on them) are in the frame
  the image is displayed in;
* 16-bit images are scaled (``v / 257``), 32-bit integer images likewise from 0..65535, and
  float images from 0..1 (or 0..255 when a value exceeds 1) instead of saturating or going
  black; palette, grey, alpha and CMYK images become RGB (alpha is dropped); integer arrays
  other than uint16 must hold 0..255;
* NaN or infinite pixels are refused;
* images above a pixel limit are refused before they are decoded, so a small file that
  expands to gigabytes (a decompression bomb) costs nothing. The limit is
  :data:`DEFAULT_MAX_PIXELS`; the command line's ``--max-pixels`` (environment variable
  ``FINDVL_MAX_PIXELS``) changes it for the whole process and its workers.

Every failure is an :class:`ImageError` (a ``ValueError``) whose message names the input.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

#: Pixels (width x height) above which an image is refused (e.g. 5000x5000).
DEFAULT_MAX_PIXELS = 25_000_000
#: Environment variable that overrides :data:`DEFAULT_MAX_PIXELS` (set by ``--max-pixels``).
MAX_PIXELS_ENV = "FINDVL_MAX_PIXELS"


_ORIENTATION = 0x0112  # the EXIF tag; 1 is the stored frame


# Pillow warns about images above its own (higher) limit before they are refused here with one
# line; the warning would only add a second line (a filter for that category only, installed
# once: catch_warnings is not thread-safe and images are decoded in threads)
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageError(ValueError):
    """An image that cannot be used: unreadable, too large, or with non-finite pixels."""


def max_pixels_setting() -> int:
    """The pixel limit in force: ``FINDVL_MAX_PIXELS`` if set, else the default."""
    raw = os.environ.get(MAX_PIXELS_ENV)
    if raw is None or raw == "":
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ImageError(f"{MAX_PIXELS_ENV}={raw!r}: expected a positive integer pixel count")
    return value


def set_max_pixels(value: int) -> None:
    """Set the pixel limit for this process and the processes it starts."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ImageError(f"--max-pixels {value!r}: expected a positive integer pixel count")
    os.environ[MAX_PIXELS_ENV] = str(value)


def _check_size(width: int, height: int, where: str, max_pixels: int | None) -> None:
    limit = max_pixels_setting() if max_pixels is None else max_pixels
    if width < 1 or height < 1:
        raise ImageError(f"{where}: empty image ({width}x{height})")
    if width * height > limit:
        raise ImageError(
            f"{where}: {width}x{height} = {width * height} pixels is above the limit of "
            f"{limit} (raise it with --max-pixels)"
        )


def read_image(path: str | Path, *, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file into ``[H,W,3]`` uint8 RGB in its display orientation.

    Args:
        path: the image file.
        max_pixels: refuse images with more pixels (None: :func:`max_pixels_setting`).

    Raises:
        FileNotFoundError: no file at ``path``.
        ImageError: unreadable, truncated, too large, or with non-finite pixels.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    where = str(path)
    try:
        with Image.open(path) as image:
            _check_size(image.width, image.height, where, max_pixels)
            image.load()
            return to_rgb_array(image, where=where, max_pixels=max_pixels)
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageError(f"{where}: refused as a decompression bomb ({error})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ImageError(f"{where}: not a readable image ({error})") from None


def read_image_tensor(path: str | Path, *, max_pixels: int | None = None):
    """:func:`read_image` as a ``[3,H,W]`` uint8 ``torch.Tensor`` (the model's image input)."""
    import torch  # here, so that reading images does not import torch

    return torch.from_numpy(read_image(path, max_pixels=max_pixels)).permute(2, 0, 1)  # HWC->CHW


def read_label_png(path: str | Path, *, rgb: bool = False) -> np.ndarray:
    """The stored pixels of a label PNG (no EXIF rotation, no scaling), size-checked first.

    Args:
        rgb: convert to ``[H,W,3]`` uint8 (panoptic id PNGs); else the pixels as stored.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    where = str(path)
    try:
        with Image.open(path) as image:
            _check_size(image.width, image.height, where, None)
            return np.asarray(image.convert("RGB") if rgb else image)
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageError(f"{where}: refused as a decompression bomb ({error})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ImageError(f"{where}: not a readable image ({error})") from None


def to_rgb_array(
    image: Image.Image | np.ndarray, *, where: str = "image", max_pixels: int | None = None
) -> np.ndarray:
    """A PIL image or an array -> ``[H,W,3]`` uint8 RGB (a new, contiguous array).

    Arrays may be ``[H,W]``, ``[H,W,1]``, ``[H,W,3]`` or ``[H,W,4]`` (alpha dropped) of bool,
    uint8, uint16 (scaled by 1/257), other integers (0..255, taken as they are; others are
    refused) or floats (0..1, or 0..255 when a value exceeds 1). PIL images have EXIF
    orientation applied.

    Args:
        where: names the input in error messages.
        max_pixels: refuse images with more pixels (None: :func:`max_pixels_setting`).
    """
    if isinstance(image, Image.Image):
        _check_size(image.width, image.height, where, max_pixels)
        return _from_pil(image, where)
    if not isinstance(image, np.ndarray):
        raise ImageError(f"{where}: expected a PIL image or a numpy array, got {type(image)}")
    array = image
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        array = array[..., :3] if array.shape[2] != 1 else array[..., 0]
    if array.ndim not in (2, 3):
        raise ImageError(f"{where}: expected an HxW, HxWx3 or HxWx4 array, got {image.shape}")
    _check_size(array.shape[1], array.shape[0], where, max_pixels)
    array = _to_uint8(array, where)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    return np.ascontiguousarray(array)


def _from_pil(image: Image.Image, where: str) -> np.ndarray:
    # a corrupt EXIF block keeps the stored orientation
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError, SyntaxError):
        if image.getexif().get(_ORIENTATION, 1) != 1:
            image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode.startswith("I;16"):
        array = np.asarray(image).astype(np.uint16)
        return to_rgb_array(array, where=where, max_pixels=image.width * image.height)
    if mode == "I":  # 32-bit integer images hold 16-bit data (TIFF, old PNG decoders)
        array = np.clip(np.asarray(image), 0, 65535).astype(np.uint16)
        return to_rgb_array(array, where=where, max_pixels=image.width * image.height)
    if mode == "F":
        array = np.asarray(image)
        return to_rgb_array(array, where=where, max_pixels=image.width * image.height)
    if mode != "RGB":
        image = image.convert("RGBA" if "A" in mode or mode == "P" else "RGB")
        if image.mode == "RGBA":
            image = image.convert("RGB")
    return np.array(image, dtype=np.uint8)


def _to_uint8(array: np.ndarray, where: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        wide = array.astype(np.int64)
        return ((wide * 255 + 32767) // 65535).astype(np.uint8)  # round(v / 257)
    if np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ImageError(
                f"{where}: {array.dtype} pixels outside 0..255 (give 16-bit images as uint16)"
            )
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float64)
        if not np.isfinite(values).all():
            raise ImageError(f"{where}: pixels must be finite (found NaN or infinity)")
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
        return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
    raise ImageError(f"{where}: unsupported pixel type {array.dtype}")
