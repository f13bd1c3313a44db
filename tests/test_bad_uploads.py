"""Bad and unusual uploads on the live path: each is answered correctly or refused with a clear message.

Every file is generated here with PIL (or by hand for headers PIL will not write). The cascade is
real (EfficientNet-Lite0 -> Lite1 from the installed packages), so the "handled correctly" cases
also run the real models on the decoded pixels.
"""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from cascade_explorer.core.images import ImageError
from cascade_explorer.core.live import (MAX_UPLOAD_BYTES, Cascade, StageSpec, UploadResult,
                                        predict_upload)

from image_cases import EPS
from live_support import LITE0_SPEC as LITE0, LITE1_SPEC as LITE1, encode, photo_like


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGB pixels, with almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + _png_chunk(b"IEND", b""))


def png_zero_bomb(side: int = 9000) -> bytes:
    """A valid greyscale PNG of side x side zero pixels: ~80 KB on disk, side**2 bytes decoded."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\0" * (side + 1)   # filter byte + pixels
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def exif_rotated_jpeg() -> bytes:
    """A 200x100 JPEG, left half red / right half blue, with EXIF Orientation 6 (display rotated 90 deg CW)."""
    array = np.zeros((100, 200, 3), dtype=np.uint8)
    array[:, :100] = (255, 0, 0)
    array[:, 100:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(Image.fromarray(array), "JPEG", quality=95, exif=exif.tobytes())


def animated_gif() -> bytes:
    red = Image.new("RGB", (64, 64), (255, 0, 0))
    blue = Image.new("RGB", (64, 64), (0, 0, 255))
    return encode(red, "GIF", save_all=True, append_images=[blue], duration=100, loop=0)


def rgba_transparent() -> bytes:
    """Left half opaque green, right half fully transparent (black underneath)."""
    array = np.zeros((80, 80, 4), dtype=np.uint8)
    array[:, :40] = (0, 200, 0, 255)
    array[:, 40:] = (0, 0, 0, 0)
    return encode(Image.fromarray(array, "RGBA"), "PNG")


def palette_transparent(fmt: str) -> bytes:
    """Palette image: index 0 (black) is transparent, index 1 is green; left half green."""
    image = Image.new("P", (80, 80), 0)
    image.putpalette([0, 0, 0, 0, 200, 0] + [0, 0, 0] * 254)
    image.paste(1, (0, 0, 40, 80))
    return encode(image, fmt, transparency=0)


def png_16bit() -> tuple[bytes, np.ndarray]:
    ramp = np.tile(np.linspace(0, 65535, 128).astype(np.uint16), (64, 1))
    return encode(Image.fromarray(ramp), "PNG"), ramp


# name -> bytes; refused with a message mentioning the given words
REFUSED = {
    "not-an-image.jpg": (lambda: b"Hello, this is a text file pretending to be a JPEG.\n" * 4, ["not a recognised image"]),
    "random-bytes.png": (lambda: np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
                         ["not a recognised image"]),
    "empty.jpg": (lambda: b"", ["empty", "0 bytes"]),
    "truncated.jpg": (lambda: encode(photo_like(), "JPEG", quality=90)[:3000], ["truncated"]),
    "truncated.png": (lambda: encode(photo_like(), "PNG")[:5000], ["truncated"]),
    "bomb-header.png": (lambda: png_header_claiming(100_000, 100_000), ["decompression bomb"]),
    "bomb-zeros.png": (lambda: png_zero_bomb(9000), ["9000x9000", "decompression bomb"]),
    # issue #12: formats are decided by content, and only the advertised ones are decoded
    "postscript.jpg": (lambda: EPS, ["PostScript (EPS)", "not JPEG", "convert it to PNG or JPEG"]),
    "targa.jpg": (lambda: encode(photo_like(), "TGA"), ["TGA", "not JPEG"]),
    "icon.png": (lambda: encode(photo_like().resize((64, 64)), "ICO"), ["ICO", "not PNG"]),
    "scan.jpg": (lambda: encode(photo_like(), "TIFF"), ["TIFF", "not JPEG", "JPEG, PNG, WebP, BMP or GIF"]),
    # issue #12: a thin strip would become a 768,000x256 image in the models' resize
    "strip.png": (lambda: encode(Image.new("RGB", (3000, 1)), "PNG"), ["3000x1", "aspect ratio", "20:1"]),
}


@pytest.fixture(scope="module")
def cascade() -> Cascade:
    """A real two-stage cascade; threshold 0.5 on max softmax."""
    stages = [StageSpec("tf_efficientnet_lite0", LITE0, "EfficientNet-Lite0"),
              StageSpec("tf_efficientnet_lite1", LITE1, "EfficientNet-Lite1")]
    return Cascade(stages, "max_softmax", [0.5], [f"class {i}" for i in range(1000)]).load()


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_bad_file_is_refused_with_a_clear_message(cascade, name, tmp_path):
    make, words = REFUSED[name]
    data = make()
    start = time.perf_counter()
    result = predict_upload(cascade, data, name)
    elapsed = time.perf_counter() - start
    assert isinstance(result, UploadResult) and result.trace is None
    assert result.error and name in result.error, result.error
    for word in words:
        assert word in result.error, (word, result.error)
    assert elapsed < 5.0, f"refusing {name} took {elapsed:.1f} s"
    # the same file through the library and from disk: ImageError (a ValueError), never anything else
    path = tmp_path / name
    path.write_bytes(data)
    if name == "scan.jpg":   # a TIFF file: refused as an upload only; from disk TIFF is decoded
        assert cascade.predict(path).n_stages == 2
        return
    with pytest.raises(ImageError):
        cascade.predict(path)


def test_bombs_are_refused_before_decoding():
    # a 10-gigapixel claim would need 30 GB; refused from the header in well under a second
    data = png_header_claiming(100_000, 100_000)
    start = time.perf_counter()
    stages = [StageSpec("m", "unused:spec", "m")]
    with pytest.raises(ImageError, match="decompression bomb"):
        Cascade(stages, "max_softmax", [], []).decode(data)
    assert time.perf_counter() - start < 1.0


def test_oversized_upload_is_refused_without_decoding(cascade):
    data = b"\xff\xd8" + b"\0" * (MAX_UPLOAD_BYTES + 1)
    result = predict_upload(cascade, data, "huge.jpg")
    assert result.trace is None and "upload limit" in result.error and "huge.jpg" in result.error


def _decoded(cascade: Cascade, data: bytes) -> np.ndarray:
    return np.asarray(cascade.decode(data))


def _assert_same_answer(cascade: Cascade, data: bytes, reference: Image.Image, name: str):
    """The upload and an independently built RGB reference give the same logits at every stage."""
    got = predict_upload(cascade, data, name)
    assert got.error is None, got.error
    want = cascade.predict(reference.convert("RGB"), name="reference")
    assert [s.model_id for s in got.trace.stages] == [s.model_id for s in want.stages]
    for a, b in zip(got.trace.stages, want.stages):
        np.testing.assert_allclose(a.logits, b.logits, rtol=0, atol=1e-4)
    assert got.trace.prediction == want.prediction
    return got.trace


def test_cmyk_jpeg(cascade):
    cmyk = photo_like().convert("CMYK")
    data = encode(cmyk, "JPEG", quality=95)
    decoded = _decoded(cascade, data)
    assert decoded.shape == (240, 320, 3) and decoded.dtype == np.uint8
    _assert_same_answer(cascade, data, Image.open(io.BytesIO(data)).convert("RGB"), "cmyk.jpg")


def test_16bit_png_uses_the_full_range(cascade):
    data, ramp = png_16bit()
    decoded = _decoded(cascade, data)
    # independent reference: 16-bit value v -> round(v * 255 / 65535), grey on all channels
    expected = np.rint(ramp.astype(np.float64) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(decoded[..., 0], expected)
    np.testing.assert_array_equal(decoded[..., 0], decoded[..., 2])
    assert decoded.max() == 255   # a plain convert("L") would clip everything above 255 to white
    _assert_same_answer(cascade, data, Image.fromarray(expected).convert("RGB"), "deep.png")


@pytest.mark.parametrize("kind", ["rgba.png", "palette.png", "palette.gif"])
def test_transparency_is_composited_on_white(cascade, kind):
    data = {"rgba.png": rgba_transparent, "palette.png": lambda: palette_transparent("PNG"),
            "palette.gif": lambda: palette_transparent("GIF")}[kind]()
    decoded = _decoded(cascade, data)
    assert decoded.shape == (80, 80, 3)
    assert (decoded[:, 60] == 255).all(), "transparent pixels must become white, not black"
    assert tuple(decoded[10, 10]) == (0, 200, 0)
    reference = np.full((80, 80, 3), 255, dtype=np.uint8)
    reference[:, :40] = (0, 200, 0)
    _assert_same_answer(cascade, data, Image.fromarray(reference), kind)


def test_grayscale_jpeg(cascade):
    data = encode(photo_like().convert("L"), "JPEG", quality=95)
    decoded = _decoded(cascade, data)
    assert decoded.shape == (240, 320, 3)
    assert (decoded[..., 0] == decoded[..., 1]).all() and (decoded[..., 1] == decoded[..., 2]).all()
    _assert_same_answer(cascade, data, Image.open(io.BytesIO(data)).convert("RGB"), "grey.jpg")


def test_exif_rotated_photo_is_turned_upright(cascade):
    data = exif_rotated_jpeg()
    decoded = _decoded(cascade, data)
    assert decoded.shape == (200, 100, 3), "Orientation 6 turns a 200x100 landscape into 100x200 portrait"
    top, bottom = decoded[20, 50].astype(int), decoded[180, 50].astype(int)
    assert top[0] > 200 and top[2] < 60, "the stored left (red) half is on top after rotation"
    assert bottom[2] > 200 and bottom[0] < 60
    # reference: the stored pixels rotated by hand (90 degrees clockwise)
    stored = Image.open(io.BytesIO(data)).convert("RGB")
    _assert_same_answer(cascade, data, stored.transpose(Image.Transpose.ROTATE_270), "rotated.jpg")


def test_animated_gif_uses_the_first_frame(cascade):
    data = animated_gif()
    decoded = _decoded(cascade, data)
    assert decoded.shape == (64, 64, 3) and (decoded == (255, 0, 0)).all()
    _assert_same_answer(cascade, data, Image.new("RGB", (64, 64), (255, 0, 0)), "animated.gif")


@pytest.mark.parametrize("fmt", ["WEBP", "BMP", "PNG", "JPEG"])
def test_ordinary_formats(cascade, fmt):
    image = photo_like(seed=3)
    data = encode(image, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    trace = _assert_same_answer(cascade, data, Image.open(io.BytesIO(data)), f"photo.{fmt.lower()}")
    assert 1 <= len(trace.stages) <= 2 and 0 <= trace.prediction < 1000
