"""Safe image decoding shared by precompute and live inference.

Every image goes through `load_image`, so a model sees the same RGB pixels whether it runs
in a bank build or on a user's upload. Bad files raise `ImageError` naming the file and the
problem; nothing is silently half-decoded (truncated files are errors, not grey bottoms).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

# 8,000 x 8,000 = 64 Mpx: far above any photo a classifier needs, far below a memory bomb.
DEFAULT_MAX_PIXELS = 64_000_000

ImageSource = Union[str, os.PathLike, bytes, bytearray, BinaryIO]


def _describe(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes in memory>"
    return str(getattr(source, "name", "<file object>"))


def _open_bytes(source) -> tuple[bytes, str]:
    name = _describe(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            is_dir, is_file = path.is_dir(), path.is_file()
        except OSError as error:   # a name too long, ...
            raise ImageError(f"{name}: {error.strerror or error}") from None
        if is_dir:
            raise ImageError(f"{name}: is a folder, not an image file (name the image files, e.g. {name}/*.jpg)")
        if not is_file:
            raise ImageError(f"{name}: no such image file")
        data = path.read_bytes()
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise ImageError(f"{name}: file object must be opened in binary mode")
        data = bytes(data)
    else:
        raise ImageError(f"cannot read an image from a {type(source).__name__}; "
                         "pass a path, bytes or a binary file object")
    if not data:
        raise ImageError(f"{name}: file is empty (0 bytes)")
    return data, name


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB; transparency is composited on white."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit greyscale: scale the full range to 0..255 (a plain convert("L") clips at 255).
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") else max(float(array.max()), 1.0)
        if mode == "I" and array.max() <= 255:
            peak = 255.0
        array = np.clip(np.rint(array * (255.0 / peak)), 0, 255).astype(np.uint8)
        return Image.fromarray(array, "L").convert("RGB")
    if mode == "F":
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low) * 255.0 if high > low else np.zeros_like(array)
        return Image.fromarray(np.rint(scaled).astype(np.uint8), "L").convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("LA", "La", "PA"):
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "RGBa"):
        if mode == "RGBa":
            image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    # L, 1, CMYK, YCbCr, LAB, HSV, RGBX, ...: PIL's converters are correct for these.
    return image.convert("RGB")


def load_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode `source` (path, bytes or binary file object) to an upright 8-bit RGB PIL image.

    EXIF orientation is applied; animated GIF/WebP give their first frame; CMYK, greyscale,
    palette, 16-bit and transparent images become RGB (transparency on white).
    Raises ImageError for empty, non-image, truncated or oversized (decompression bomb) files.
    """
    data, name = _open_bytes(source)
    # PIL's own global limit stays untouched (threads share it); it raises
    # DecompressionBombError beyond 2x Image.MAX_IMAGE_PIXELS, and we check `max_pixels` ourselves
    # from the header before decoding any pixel data.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > max_pixels:
                    raise ImageError(f"{name}: image is {image.width}x{image.height} pixels, more than "
                                     f"the limit of {max_pixels:,} (possible decompression bomb); "
                                     "resize it first")
                if getattr(image, "n_frames", 1) > 1:
                    image.seek(0)  # animated GIF/WebP/APNG: first frame
                image.load()
                upright = ImageOps.exif_transpose(image)
                image = upright if upright is not None else image
                rgb = to_rgb(image)
                # Detach from the file buffer: a copy owns its pixels.
                return rgb.copy() if rgb is image else rgb
        except ImageError:
            raise
        except Image.DecompressionBombError as error:
            raise ImageError(f"{name}: image is too large to decode safely "
                             f"(possible decompression bomb): {error}") from None
        except UnidentifiedImageError:
            raise ImageError(f"{name}: not a recognised image format "
                             f"({len(data)} bytes starting {data[:8]!r})") from None
        except OSError as error:
            # PIL reports truncation as OSError("image file is truncated ...").
            raise ImageError(f"{name}: cannot decode image, the file is corrupt or truncated "
                             f"({error})") from None
        except (ValueError, SyntaxError, EOFError) as error:
            raise ImageError(f"{name}: cannot decode image ({error})") from None
