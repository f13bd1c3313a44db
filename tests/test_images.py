"""Safe decoding: every odd-but-valid image becomes upright 8-bit RGB; bad files raise ImageError."""

import io

import numpy as np
import pytest
from PIL import Image

from cascade_explorer.core.images import ImageError, load_image


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_rgb_jpeg_roundtrip_from_path_bytes_and_fileobj(tmp_path):
    image = Image.new("RGB", (40, 30), (200, 10, 50))
    path = tmp_path / "a.png"
    image.save(path)
    for source in (path, str(path), path.read_bytes(), open(path, "rb")):
        out = load_image(source)
        assert out.mode == "RGB" and out.size == (40, 30)
        assert out.getpixel((5, 5)) == (200, 10, 50)


def test_grayscale_becomes_rgb_with_equal_channels():
    gray = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16), "L")
    out = np.asarray(load_image(_encode(gray, "PNG")))
    assert out.shape == (16, 16, 3)
    assert np.array_equal(out[..., 0], np.arange(256).reshape(16, 16))
    assert np.array_equal(out[..., 0], out[..., 2])


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (20, 20), (0, 255, 255, 0))  # pure red in CMYK
    out = load_image(_encode(cmyk, "JPEG", quality=95))
    r, g, b = out.getpixel((10, 10))
    assert out.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_rgba_transparency_composited_on_white():
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    out = load_image(_encode(rgba, "PNG"))
    assert out.getpixel((5, 5)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (0, 0, 255)


def test_palette_with_transparency_composited_on_white():
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.putpixel((1, 1), 1)
    out = load_image(_encode(pal, "PNG", transparency=0))
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 1)) == (255, 0, 0)


def test_16bit_png_scaled_not_clipped():
    values = np.array([[0, 256, 32768, 65535]], dtype=np.uint16)
    img16 = Image.fromarray(values)
    assert img16.mode.startswith("I;16")
    out = np.asarray(load_image(_encode(img16, "PNG")))[0, :, 0]
    # A plain convert("L") would clip everything above 255 to white.
    assert out.tolist() == [0, 1, 128, 255]


def test_exif_orientation_applied():
    image = Image.new("RGB", (40, 20), (0, 255, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    out = load_image(_encode(image, "JPEG", exif=exif))
    assert out.size == (20, 40)


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    out = load_image(buffer.getvalue())
    r, g, b = out.getpixel((4, 4))
    assert r > 200 and b < 50


def test_truncated_jpeg_is_a_clear_error(tmp_path):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = _encode(noise, "JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\.jpg.*truncated"):
        load_image(path)


def test_empty_and_non_image_files(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.jpg.*empty"):
        load_image(empty)
    text = tmp_path / "notes.jpg"
    text.write_text("hello, not an image")
    with pytest.raises(ImageError, match=r"notes\.jpg.*not a recognised image"):
        load_image(text)
    with pytest.raises(ImageError, match="no such image file"):
        load_image(tmp_path / "missing.jpg")


def test_decompression_bomb_rejected_before_decoding():
    big = Image.new("L", (2000, 2000))
    data = _encode(big, "PNG")
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image(data, max_pixels=1_000_000)
    assert load_image(data).size == (2000, 2000)


def test_imageerror_is_valueerror():
    assert issubclass(ImageError, ValueError)
