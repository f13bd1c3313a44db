"""Safe image decoding shared by precompute, live inference and the dashboard.

Every image goes through `load_image`, so a model sees the same RGB pixels whether it runs
in a bank build or on a user's upload. Bad files raise `ImageError` naming the file and the
problem; nothing is silently half-decoded (truncated files are errors, not grey bottoms).

What is decoded, and what it may cost:
- Only an allow-list of formats (`IMAGE_FORMATS`; uploads: `UPLOAD_FORMATS`). The format is
  identified from the file's first bytes, and Pillow is then asked to open the file with that
  one plugin only (`Image.open(..., formats=[...])`), so no other plugin ever sees the file:
  a PostScript file named .jpg never reaches Pillow's EPS plugin (which runs Ghostscript), a
  TGA or ICO file named .png is refused. Pillow's global plugin registry is left as it is.
- A path is stat'ed before it is opened: only a regular file of at most `DEFAULT_MAX_FILE_BYTES`
  is read (a FIFO or device is refused without opening it, so it cannot block).
- From the header, before any pixel is decoded: at most `max_pixels` pixels, at most
  `max_decoded_bytes` bytes as Pillow stores the decoded mode, and an aspect ratio of at most
  `MAX_ASPECT_RATIO` (a model resizes the shorter side, so a thin strip would become a huge image).
- The conversion to 8-bit RGB works in bands of `BAND_PIXELS` pixels, so a 16-bit or float
  image never has a full-size float64 copy: the peak is the decoded image plus the RGB result.
"""

from __future__ import annotations

import io
import math
import os
import stat
import struct
import warnings
from pathlib import Path
from typing import BinaryIO, Sequence, Union

import numpy as np
# Importing a plugin registers it; these are the only ones `load_image` ever asks Pillow to use.
from PIL import (BmpImagePlugin, GifImagePlugin, Image, ImageMode, JpegImagePlugin,  # noqa: F401
                 PngImagePlugin, PpmImagePlugin, TiffImagePlugin, UnidentifiedImageError,
                 WebPImagePlugin)

from .errors import ImageError

# 8,000 x 8,000 = 64 Mpx: far above any photo a classifier needs, far below a memory bomb.
DEFAULT_MAX_PIXELS = 64_000_000
# Pillow keeps every mode in at most 4 bytes a pixel (RGB is padded to 4), so this is what an
# 8-bit RGB photo at the pixel limit takes once decoded (256 MB); no mode may take more.
BYTES_PER_PIXEL_BUDGET = 4
# Largest file read whole: an uncompressed 64 Mpx RGBA image (BMP/TIFF) is 256 MB; a bigger
# file holds more than a decodable picture.
DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024
# Longest side / shorter side. Phone panoramas stay under about 12:1; beyond 20:1 a model's
# centre crop sees under 5% of the picture, and the shorter-side resize of every model makes the
# longer side 20x its input (a 3000x1 strip would become 768,000x256 = 196 Mpx).
MAX_ASPECT_RATIO = 20
# Pixels per band in the conversion to RGB: float64 temporaries of a band stay near 8 MB.
BAND_PIXELS = 1 << 20

# Pillow format ids decoded from files (predict, precompute, the gallery) and from uploads
# (the Live page, `core.live.predict_upload`: the uploader advertises these five).
UPLOAD_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
IMAGE_FORMATS = UPLOAD_FORMATS + ("TIFF", "PPM")
FORMAT_NAMES = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WebP", "BMP": "BMP", "GIF": "GIF",
                "TIFF": "TIFF", "PPM": "PPM/PGM/PBM"}
_EXTENSIONS = {".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG", ".png": "PNG", ".webp": "WEBP",
               ".bmp": "BMP", ".gif": "GIF", ".tif": "TIFF", ".tiff": "TIFF", ".ppm": "PPM", ".pgm": "PPM",
               ".pbm": "PPM", ".pnm": "PPM"}

ImageSource = Union[str, os.PathLike, bytes, bytearray, BinaryIO]


def _describe(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes in memory>"
    return str(getattr(source, "name", "<file object>"))


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


# ------------------------------------------------------------------------------------ reading

def read_image_file(path, *, max_bytes: int = DEFAULT_MAX_FILE_BYTES, name: str | None = None) -> bytes:
    """The bytes of the image file at `path`: stat'ed first, so only a regular file of at most
    `max_bytes` is opened (a FIFO, socket or device is refused without opening it)."""
    name = name or str(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ImageError(f"{name}: no such image file") from None
    except OSError as error:   # a name too long, a file used as a folder on the way, ...
        raise ImageError(f"{name}: {error.strerror or error}") from None
    _check_file_stat(info, name, max_bytes)
    # O_NONBLOCK: if the file was swapped for a FIFO after the stat, opening it does not block.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        raise ImageError(f"{name}: cannot open the file ({error.strerror or error})") from None
    with os.fdopen(fd, "rb") as handle:
        _check_file_stat(os.fstat(handle.fileno()), name, max_bytes)
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:   # grew after the stat
        raise ImageError(_too_big(name, len(data), max_bytes))
    return data


def _check_file_stat(info: os.stat_result, name: str, max_bytes: int) -> None:
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        raise ImageError(f"{name}: is a folder, not an image file (name the image files, e.g. {name}/*.jpg)")
    if not stat.S_ISREG(mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise ImageError(f"{name}: is {kind}, not an image file; name a regular image file")
    if info.st_size > max_bytes:
        raise ImageError(_too_big(name, info.st_size, max_bytes))


def _too_big(name: str, size: int, max_bytes: int) -> str:
    return (f"{name}: the file is {_mb(size)}, more than the {_mb(max_bytes)} limit for an image file; "
            "resize it or save it as JPEG")


def _read_source(source, name: str, max_bytes: int) -> bytes:
    if isinstance(source, (str, os.PathLike)):
        data = read_image_file(source, max_bytes=max_bytes, name=name)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = source.read(max_bytes + 1)
        if not isinstance(data, (bytes, bytearray)):
            raise ImageError(f"{name}: file object must be opened in binary mode")
        data = bytes(data)
    else:
        raise ImageError(f"cannot read an image from a {type(source).__name__}; "
                         "pass a path, bytes or a binary file object")
    if not data:
        raise ImageError(f"{name}: file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageError(_too_big(name, len(data), max_bytes))
    return data


# ----------------------------------------------------------------------------- identification

# (test on the first bytes / whole file, what it is) for formats that are refused; the message names them.
_REFUSED_SIGNATURES = [
    (lambda d: d.endswith(b"TRUEVISION-XFILE.\x00"), "a TGA (Truevision) image"),
    (lambda d: d.startswith(b"%!PS") or d.startswith(b"\xc5\xd0\xd3\xc6"), "PostScript (EPS)"),
    (lambda d: d.startswith(b"%!"), "PostScript"),
    (lambda d: d.startswith(b"%PDF"), "a PDF document"),
    (lambda d: d.startswith(b"\x00\x00\x01\x00"), "a Windows icon (ICO)"),
    (lambda d: len(d) > 17 and d[1] in (0, 1) and d[2] in (1, 2, 3, 9, 10, 11) and d[16] in (8, 15, 16, 24, 32),
     "a TGA (Truevision) image"),
    (lambda d: d.startswith(b"\x00\x00\x02\x00"), "a Windows cursor (CUR)"),
    (lambda d: d.startswith(b"8BPS"), "a Photoshop document (PSD)"),
    (lambda d: d.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or d.startswith(b"\xff\x4f\xff\x51"), "JPEG 2000"),
    (lambda d: d[4:8] == b"ftyp" and d[8:12] in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1",
                                                 b"msf1"), "HEIF/HEIC"),
    (lambda d: d[4:8] == b"ftyp" and d[8:12] in (b"avif", b"avis"), "AVIF"),
    (lambda d: d[4:8] == b"ftyp", "an MP4/QuickTime file"),
    (lambda d: d.startswith(b"qoif"), "a QOI image"),
    (lambda d: d.startswith(b"icns"), "an Apple icon (ICNS)"),
    (lambda d: d.startswith(b"DDS "), "a DirectDraw surface (DDS)"),
    (lambda d: d.startswith((b"BLP1", b"BLP2")), "a BLP texture"),
    (lambda d: d.startswith(b"SIMPLE  ="), "a FITS file"),
    (lambda d: d.startswith(b"\x01\xda"), "an SGI image"),
    (lambda d: d.startswith(b"\x59\xa6\x6a\x95"), "a Sun raster image"),
    (lambda d: d.startswith(b"\xd7\xcd\xc6\x9a") or d[40:44] == b" EMF", "a Windows metafile (WMF/EMF)"),
    (lambda d: d.startswith(b"/* XPM */"), "an XPM image"),
    (lambda d: d.startswith(b"#define"), "an XBM image"),
    (lambda d: d[:64].lstrip()[:5].lower() in (b"<?xml", b"<svg ", b"<svg>"), "SVG/XML text"),
    (lambda d: d[:64].lstrip()[:14].lower().startswith((b"<!doctype html", b"<html")), "an HTML page"),
    (lambda d: d.startswith(b"PK\x03\x04"), "a ZIP archive"),
    (lambda d: d.startswith(b"\x1f\x8b"), "a gzip archive"),
    (lambda d: len(d) > 2 and d[0] == 0x0A and d[1] in (0, 2, 3, 4, 5) and d[2] == 1, "a PCX image"),
]


def identify_format(data: bytes) -> tuple[str | None, str | None]:
    """(Pillow format id, None) when `data` starts like a format of IMAGE_FORMATS; else (None, what it
    looks like, or None when unknown). Only looks at bytes: no decoder plugin runs."""
    prefix = data[:16]   # what Pillow's Image.open gives each plugin's accept()
    for fmt in IMAGE_FORMATS:
        accept = Image.OPEN[fmt][1]
        if accept is not None and accept(prefix):
            return fmt, None
    for test, what in _REFUSED_SIGNATURES:
        if test(data):
            return None, what
    # Other plugins the process has registered: their accept() only compares bytes.
    for fmt, (_factory, accept) in list(Image.OPEN.items()):
        if fmt not in IMAGE_FORMATS and accept is not None:
            try:
                if accept(prefix):
                    return None, f"{fmt} (as Pillow calls the format)"
            except Exception:  # noqa: BLE001 - a third-party accept() that does not like the bytes
                continue
    return None, None


def format_list(formats: Sequence[str]) -> str:
    names = list(dict.fromkeys(FORMAT_NAMES.get(f, f) for f in formats))
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def _named_as(name: str, found: str) -> str:
    """', not JPEG as its name says' when the name's extension promises another format than the content."""
    suffix = Path(name).suffix.lower()
    promised = FORMAT_NAMES.get(_EXTENSIONS.get(suffix, ""))
    if promised is None or promised == found:
        return ""
    return f", not {promised} as its name ({suffix}) says"


def _refuse_format(name: str, data: bytes, fmt: str | None, what: str | None, formats: Sequence[str]) -> ImageError:
    accepted = format_list(formats)
    if fmt is not None:   # a format decoded elsewhere (e.g. a TIFF upload)
        found = FORMAT_NAMES.get(fmt, fmt)
        return ImageError(f"{name}: the content is a {found} image{_named_as(name, found)}; only {accepted} "
                          "images are accepted here: convert it to PNG or JPEG")
    if what is not None:
        return ImageError(f"{name}: the content is {what}{_named_as(name, what)}; this tool does not decode that "
                          f"format (only {accepted} images): convert it to PNG or JPEG")
    return ImageError(f"{name}: not a recognised image format ({len(data)} bytes starting {data[:8]!r}); "
                      f"only {accepted} images are decoded: convert it to PNG or JPEG")


# ------------------------------------------------------------------------------------- limits

def decoded_bytes(mode: str, size: tuple[int, int]) -> int:
    """Bytes Pillow holds for a decoded image of `mode` and `size` (multi-band 8-bit modes are
    stored 4 bytes a pixel, single-band ones at their sample size: I;16 2 bytes, I and F 4)."""
    try:
        info = ImageMode.getmode(mode)
        bands, itemsize = len(info.bands), max(1, int(info.typestr[-1]))
    except (KeyError, ValueError, IndexError):
        bands, itemsize = 4, 4   # unknown: assume the widest
    per_pixel = itemsize if bands == 1 else itemsize * max(4, bands)
    return int(size[0]) * int(size[1]) * per_pixel


def check_image_size(size: tuple[int, int], mode: str, name: str, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                     max_decoded_bytes: int | None = None) -> None:
    """ImageError unless an image of `size` (w, h) and `mode` is within the pixel, decoded-bytes and
    aspect-ratio limits. Called from the header, before any pixel is decoded."""
    width, height = (int(v) for v in size)
    if width * height > max_pixels:
        raise ImageError(f"{name}: image is {width}x{height} pixels, more than the limit of {max_pixels:,} "
                         "(possible decompression bomb); resize it first")
    budget = max_decoded_bytes if max_decoded_bytes is not None else BYTES_PER_PIXEL_BUDGET * max_pixels
    need = decoded_bytes(mode, (width, height))
    if need > budget:
        raise ImageError(f"{name}: a {width}x{height} image in mode {mode} takes {_mb(need)} once decoded, more "
                         f"than the {_mb(budget)} limit; resize it or save it as 8-bit PNG or JPEG")
    check_aspect_ratio((width, height), name)


def check_aspect_ratio(size: tuple[int, int], name: str) -> None:
    width, height = (int(v) for v in size)
    short, long = min(width, height), max(width, height)
    if short <= 0 or long > MAX_ASPECT_RATIO * short:
        ratio = f"{long / max(short, 1):,.0f}:1"
        raise ImageError(f"{name}: image is {width}x{height} pixels, an aspect ratio of {ratio}, more than the "
                         f"{MAX_ASPECT_RATIO}:1 limit (models resize the shorter side, so such a strip becomes a "
                         "huge image); crop it or pad it to a less elongated shape")


def check_resize(size: tuple[int, int], shorter_side: int, name: str = "image", *,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """ImageError when resizing `size` so that its shorter side is `shorter_side` (aspect kept, as a
    model's preprocessing does) would make more than `max_pixels` pixels."""
    width, height = (int(v) for v in size)
    short, long = max(1, min(width, height)), max(width, height)
    out_long = math.ceil(long * shorter_side / short)
    if out_long * shorter_side > max_pixels:
        check_aspect_ratio(size, name)   # the usual cause, with its own message
        raise ImageError(f"{name}: resizing this {width}x{height} image to a shorter side of {shorter_side} "
                         f"makes {out_long * shorter_side:,} pixels, more than the limit of {max_pixels:,}; "
                         "crop it to a less elongated shape")


# ---------------------------------------------------------------------------------- conversion

def _bands(image: Image.Image):
    """(top row, image band) covering `image` in horizontal bands of about BAND_PIXELS pixels."""
    width, height = image.size
    rows = max(1, BAND_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        yield top, image.crop((0, top, width, min(height, top + rows)))


def _convert_banded(image: Image.Image, convert) -> Image.Image:
    """An RGB image built band by band from `convert(band) -> RGB band` (exact for per-pixel ops)."""
    out = Image.new("RGB", image.size)
    for top, band in _bands(image):
        out.paste(convert(band), (0, top))
    return out


def _scaled_to_grey(image: Image.Image, scale) -> Image.Image:
    """8-bit L image of rint(scale(x)) clipped to 0..255, computed band by band in float64
    (non-finite results become 0)."""
    out = Image.new("L", image.size)
    for top, band in _bands(image):
        array = np.rint(scale(np.asarray(band, dtype=np.float64)))
        array = np.nan_to_num(array, nan=0.0, posinf=255.0, neginf=0.0)
        out.paste(Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "L"), (0, top))
    return out


def _finite_extrema(image: Image.Image) -> tuple[float, float] | None:
    low, high = math.inf, -math.inf
    for _, band in _bands(image):
        array = np.asarray(band, dtype=np.float64)
        finite = array[np.isfinite(array)]
        if finite.size:
            low, high = min(low, float(finite.min())), max(high, float(finite.max()))
    return (low, high) if low <= high else None


def _on_white(band: Image.Image) -> Image.Image:
    band = band.convert("RGBA") if band.mode != "RGBA" else band
    background = Image.new("RGBA", band.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, band).convert("RGB")


def _high_depth_to_grey(image: Image.Image) -> Image.Image | None:
    """16/32-bit integer or float greyscale -> 8-bit L over its full range (None for other modes).
    Integer images are scaled, not clipped (a plain convert("L") clips at 255); float ones map
    their finite min..max to 0..255."""
    mode = image.mode
    if mode.startswith("I;16"):
        return _scaled_to_grey(image, lambda x: x * (255.0 / 65535.0))
    if mode == "I":
        high = image.getextrema()[1]
        peak = 255.0 if high <= 255 else float(high)
        return _scaled_to_grey(image, lambda x: x * (255.0 / peak))
    if mode == "F":
        extrema = _finite_extrema(image)
        if extrema is None or extrema[1] <= extrema[0]:
            return _scaled_to_grey(image, lambda x: x * 0.0)
        low, high = extrema
        return _scaled_to_grey(image, lambda x: (x - low) / (high - low) * 255.0)
    return None


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB; transparency is composited on white.

    An RGB image is returned as it is; any other mode gives a new image, converted band by band
    (no full-size float64 or RGBA temporaries: the peak is the input plus the RGB result).
    """
    mode = image.mode
    if mode == "RGB":
        return image
    grey = _high_depth_to_grey(image)
    if grey is not None:
        return grey.convert("RGB")
    if mode == "P":
        if "transparency" in image.info:
            return _convert_banded(image, _on_white)
        return _convert_banded(image, lambda band: band.convert("RGB"))
    if mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        return _convert_banded(image, _on_white)
    # L, 1, CMYK, YCbCr, LAB, HSV, RGBX, ...: PIL's converters are correct for these.
    return _convert_banded(image, lambda band: band.convert("RGB"))


_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}


def _orientation(image: Image.Image):
    """The transpose that turns `image` upright from its EXIF Orientation (None: already upright)."""
    try:
        return _TRANSPOSE.get(image.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a damaged EXIF block: shown as stored
        return None


def thumbnail(image: Image.Image, max_side: int) -> Image.Image:
    """A copy of `image` that fits in max_side x max_side (aspect kept), made without a full-size copy."""
    width, height = image.size
    scale = min(1.0, max_side / max(width, height, 1))
    if scale >= 1.0:
        return image.copy()
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)


# ------------------------------------------------------------------------------------ decoding

def load_image(source: ImageSource, *, name: str | None = None, formats: Sequence[str] = IMAGE_FORMATS,
               max_pixels: int = DEFAULT_MAX_PIXELS, max_decoded_bytes: int | None = None,
               max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> Image.Image:
    """Decode `source` (path, bytes or binary file object) to an upright 8-bit RGB PIL image.

    Only `formats` (Pillow format ids, default IMAGE_FORMATS) are decoded, identified by content;
    anything else raises ImageError naming the format found. EXIF orientation is applied; animated
    GIF/WebP give their first frame; CMYK, greyscale, palette, 16-bit, float and transparent images
    become RGB (transparency on white). Raises ImageError for empty, non-image, truncated, oversized
    (pixels, decoded bytes, file bytes), or too elongated (MAX_ASPECT_RATIO) files.
    `name` names the file in messages (default: the path, or "<N bytes in memory>").
    """
    name = name or _describe(source)
    unknown = [f for f in formats if f not in IMAGE_FORMATS]
    if unknown:
        raise ValueError(f"formats: {unknown} are not among the decodable formats {list(IMAGE_FORMATS)}")
    data = _read_source(source, name, max_file_bytes)
    fmt, what = identify_format(data)
    if fmt is None or fmt not in formats:
        raise _refuse_format(name, data, fmt, what, formats)
    # PIL's own global limit stays untouched (threads share it); it raises
    # DecompressionBombError beyond 2x Image.MAX_IMAGE_PIXELS, and we check our limits ourselves
    # from the header before decoding any pixel data.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            rgb, transpose = _decode(data, fmt, name, max_pixels, max_decoded_bytes)
        except ImageError:
            raise
        except Image.DecompressionBombError as error:
            raise ImageError(f"{name}: image is too large to decode safely "
                             f"(possible decompression bomb): {error}") from None
        except UnidentifiedImageError:
            raise ImageError(f"{name}: not a recognised image: it starts like a {FORMAT_NAMES[fmt]} file but "
                             "its header cannot be read (damaged file?)") from None
        except OSError as error:
            # PIL reports truncation as OSError("image file is truncated ...").
            raise ImageError(f"{name}: cannot decode image, the file is corrupt or truncated "
                             f"({error})") from None
        except (ValueError, SyntaxError, EOFError, IndexError, struct.error) as error:
            raise ImageError(f"{name}: cannot decode image ({error})") from None
    if transpose is not None:
        rgb = rgb.transpose(transpose)
    if rgb.mode != "RGB":
        rgb = rgb.convert("RGB")
    rgb.info = {}   # upright 8-bit RGB now: the file's EXIF orientation no longer applies
    return rgb


def _decode(data: bytes, fmt: str, name: str, max_pixels: int, max_decoded_bytes: int | None):
    """(8-bit image, pending transpose) of `data` opened by the `fmt` plugin only. The image is RGB,
    or L for a 16-bit/float source (made RGB by the caller once the wide source is released)."""
    with Image.open(io.BytesIO(data), formats=[fmt]) as image:
        # animated GIF/WebP/APNG, multi-page TIFF: Image.open stands on the first frame.
        check_image_size(image.size, image.mode, name, max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes)
        image.load()
        transpose = _orientation(image)
        grey = _high_depth_to_grey(image)
        out = grey if grey is not None else to_rgb(image)
        if out is image:
            # Detach from the file object: a plain Image owns its pixels (transposing makes one anyway).
            out = image.transpose(transpose) if transpose is not None else image.copy()
            transpose = None
        return out, transpose
