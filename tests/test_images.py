"""Safe decoding: every odd-but-valid image becomes upright 8-bit RGB; bad files raise ImageError."""

import io
import os
import re
import stat as stat_mode
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cascade_explorer.core import images
from cascade_explorer.core.errors import UsageError
from cascade_explorer.core.images import ImageError, load_image
from cascade_explorer.core.live import Cascade, StageSpec, predict_upload

from image_cases import EPS, copy_case, picture, plugin_spy, refused_files


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


# ------------------------------------------------------------------------- issue #12: formats
# Only an allow-list of formats is decoded, identified by content; nothing else reaches a Pillow plugin.


def _no_model_cascade() -> Cascade:
    """A cascade whose model is never loaded: decoding refuses before any model runs."""
    return Cascade([StageSpec("m", "unused:spec", "m")], "max_softmax", [], [])


@pytest.mark.parametrize("name", sorted(refused_files()))
def test_other_formats_are_refused_by_content_and_named(name, tmp_path, monkeypatch):
    data, words = refused_files()[name]
    path = tmp_path / name
    path.write_bytes(data)
    with plugin_spy(monkeypatch) as opened:
        for call in (lambda: load_image(path), lambda: load_image(data, name=name),
                     lambda: _no_model_cascade().predict(path), lambda: _no_model_cascade().predict(data, name=name)):
            with pytest.raises(ImageError) as caught:
                call()
            message = str(caught.value)
            assert name in message and "convert it to PNG or JPEG" in message, message
            for word in words:
                assert word in message, (word, message)
        upload = predict_upload(_no_model_cascade(), data, name)
        assert upload.trace is None and name in upload.error and words[0] in upload.error, upload.error
    assert opened == [], f"plugins outside the allow-list saw {name}: {opened}"


def test_ghostscript_never_runs_on_a_postscript_file_named_jpg(tmp_path, monkeypatch):
    """A real (fake) Ghostscript binary: any code path that reaches EPS load() would run it."""
    from PIL import EpsImagePlugin

    marker = tmp_path / "ghostscript-ran"
    gs = tmp_path / "gs"
    gs.write_text(f"#!/bin/sh\necho ran >> '{marker}'\nexit 1\n")
    gs.chmod(0o755)
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", str(gs))
    path = tmp_path / "photo.jpg"
    path.write_bytes(EPS)
    user_opened = Image.open(path)          # a library user's own Image.open picks the EPS plugin
    errors = []
    for call in (lambda: load_image(path), lambda: _no_model_cascade().predict(path),
                 lambda: _no_model_cascade().decode(user_opened, "photo.jpg"),
                 lambda: predict_upload(_no_model_cascade(), EPS, "photo.jpg")):
        try:
            result = call()
            errors.append(getattr(result, "error", None))
        except Exception as error:  # noqa: BLE001 - checked below, after the marker
            errors.append(error)
    assert not marker.exists(), "Ghostscript ran on an uploaded/predicted file"
    assert all(isinstance(e, (ImageError, str)) and "EPS" in str(e) for e in errors), errors


def test_uploads_take_only_the_advertised_formats(tmp_path):
    """The uploader advertises JPEG/PNG/WebP/BMP/GIF: a TIFF named .jpg is refused there, decoded from a file."""
    tiff = _encode(picture(), "TIFF")
    result = predict_upload(_no_model_cascade(), tiff, "scan.jpg")
    assert result.trace is None
    assert "scan.jpg" in result.error and "TIFF" in result.error and "not JPEG" in result.error, result.error
    assert "JPEG, PNG, WebP, BMP or GIF" in result.error, result.error
    path = tmp_path / "scan.tif"
    path.write_bytes(tiff)
    assert np.array_equal(np.asarray(load_image(path)), np.asarray(picture()))


@pytest.mark.parametrize("fmt,kwargs", [("JPEG", {"quality": 95}), ("PNG", {}), ("WEBP", {"lossless": True}),
                                        ("BMP", {}), ("GIF", {}), ("TIFF", {}), ("PPM", {})])
def test_every_allowed_format_decodes_whatever_its_name(fmt, kwargs):
    data = _encode(picture(), fmt, **kwargs)
    out = load_image(data)
    assert out.mode == "RGB" and out.size == (48, 32)
    if fmt in ("PNG", "WEBP", "BMP", "TIFF", "PPM"):
        assert np.array_equal(np.asarray(out), np.asarray(picture()))


def test_shared_cases_of_other_formats_are_refused(cases_dir, tmp_path, monkeypatch):
    cases = {"eps_renamed.jpg": "PostScript (EPS)", "tga_renamed.jpg": "TGA", "ico_renamed.png": "ICO"}
    with plugin_spy(monkeypatch) as opened:
        for name, word in cases.items():
            path = copy_case(cases_dir, name, tmp_path)
            with pytest.raises(ImageError, match=rf"{name}.*{re.escape(word)}.*convert it to PNG or JPEG"):
                _no_model_cascade().predict(path)
            result = predict_upload(_no_model_cascade(), path.read_bytes(), name)
            assert result.trace is None and word in result.error, result.error
    assert opened == [], opened


def test_image_errors_are_usage_errors():
    assert issubclass(ImageError, UsageError)


# ------------------------------------------------------------------------- issue #12: files

def test_a_fifo_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    outcome = []

    def decode():
        try:
            load_image(fifo)
        except ImageError as error:
            outcome.append(str(error))

    worker = threading.Thread(target=decode, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():   # unblock the reader so the test run can go on
        with open(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK), "wb"):
            pass
        pytest.fail("load_image blocked on a FIFO")
    assert outcome and "photo.jpg" in outcome[0] and "FIFO" in outcome[0], outcome
    assert stat_mode.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    with open(path, "wb") as handle:     # sparse: no disk used, but reading it would take 256 MB
        handle.truncate(images.DEFAULT_MAX_FILE_BYTES + 1)
    reads = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda *a, **k: reads.append(a[0]) or real_open(*a, **k))
    with pytest.raises(ImageError, match=r"huge\.png.*268\.4 MB.*limit"):
        load_image(path)
    assert reads == [], "the file was opened although its size was over the limit"
    small = _encode(picture(), "PNG")
    with pytest.raises(ImageError, match="limit"):
        load_image(io.BytesIO(small), max_file_bytes=len(small) - 1)
    with pytest.raises(ImageError, match="limit"):
        load_image(small, max_file_bytes=len(small) - 1)
    assert load_image(small, max_file_bytes=len(small)).size == (48, 32)


# ------------------------------------------------------------------------- issue #12: memory bounds

def test_extreme_aspect_ratios_are_refused_with_a_clear_message():
    for size in ((3000, 1), (1, 3000), (2100, 100)):
        data = _encode(Image.new("RGB", size, (9, 9, 9)), "PNG")
        with pytest.raises(ImageError) as caught:
            load_image(data, name="strip.png")
        message = str(caught.value)
        assert f"strip.png: image is {size[0]}x{size[1]} pixels" in message, message
        assert "aspect ratio" in message and "20:1" in message and "crop it" in message, message
        with pytest.raises(ImageError, match="aspect ratio"):
            _no_model_cascade().decode(Image.new("RGB", size), "strip")
    assert load_image(_encode(Image.new("RGB", (2000, 100)), "PNG")).size == (2000, 100)   # 20:1 is fine


def test_shared_strip_is_refused(cases_dir, tmp_path):
    path = copy_case(cases_dir, "strip_3000x1.png", tmp_path)
    with pytest.raises(ImageError, match=r"strip_3000x1\.png: image is 3000x1 pixels, an aspect ratio of 3,000:1"):
        _no_model_cascade().predict(path)


def test_decoded_bytes_are_bounded_per_mode():
    assert images.decoded_bytes("L", (10, 10)) == 100
    assert images.decoded_bytes("I;16", (10, 10)) == 200
    assert images.decoded_bytes("F", (10, 10)) == images.decoded_bytes("RGB", (10, 10)) == 400
    wide = _encode(Image.fromarray(np.zeros((1000, 1000), dtype=np.uint16)), "PNG")
    narrow = _encode(Image.new("L", (1000, 1000)), "PNG")
    with pytest.raises(ImageError, match=r"1000x1000 image in mode I;16 takes 2\.0 MB once decoded"):
        load_image(wide, max_decoded_bytes=1_500_000)
    assert load_image(narrow, max_decoded_bytes=1_500_000).size == (1000, 1000)


@pytest.mark.slow   # builds a real timm architecture
def test_no_resize_step_makes_a_huge_intermediate():
    import timm
    from cascade_explorer.core.adapters import TimmAdapter, _shorter_side_resizes

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    adapter = TimmAdapter(model, spec="timm:tf_efficientnet_lite0", model_id="m", display_name="m", source={})
    assert _shorter_side_resizes(adapter.transform) == [256]
    with pytest.raises(ImageError, match=r"3000x1.*aspect ratio"):
        adapter.preprocess(Image.new("RGB", (3000, 1)))
    with pytest.raises(ImageError, match=r"768,000x|makes 196,608,000 pixels|aspect ratio"):
        images.check_resize((3000, 1), 256)
    with pytest.raises(ImageError, match="makes 1,310,720 pixels"):
        images.check_resize((20, 1), 256, max_pixels=1_000_000)
    assert adapter.preprocess(Image.new("RGB", (2000, 100))).shape == (3, 224, 224)


def _reference_rgb(image: Image.Image) -> np.ndarray:
    """The pre-#12 full-image conversion (float64 over the whole image), for exactness checks."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I;16") else max(float(array.max()), 1.0)
        if mode == "I" and array.max() <= 255:
            peak = 255.0
        grey = np.clip(np.rint(array * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "F":
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        grey = np.rint((array - low) / (high - low) * 255.0).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def test_banded_conversion_equals_the_full_image_one(monkeypatch):
    monkeypatch.setattr(images, "BAND_PIXELS", 500)   # ~6 rows a band: many bands, a short last one
    rng = np.random.default_rng(7)
    h, w = 61, 83
    pal = Image.fromarray(rng.integers(0, 4, (h, w), dtype=np.uint8), "P")
    pal.putpalette([0, 0, 0, 250, 10, 10, 10, 250, 10, 90, 90, 200] + [0] * 756)
    cases = {
        "I;16": (Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16)), "PNG", {}),
        "I": (Image.fromarray(rng.integers(-5, 70000, (h, w), dtype=np.int32), "I"), "TIFF", {}),
        "F": (Image.fromarray(rng.normal(3, 20, (h, w)).astype(np.float32), "F"), "TIFF", {}),
        "RGBA": (Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA"), "PNG", {}),
        "LA": (Image.fromarray(rng.integers(0, 256, (h, w, 2), dtype=np.uint8), "LA"), "PNG", {}),
        "P": (pal, "PNG", {"transparency": 2}),
        "L": (Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L"), "PNG", {}),
        "CMYK": (Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "CMYK"), "TIFF", {}),
    }
    for mode, (image, fmt, kwargs) in cases.items():
        data = _encode(image, fmt, **kwargs)
        with Image.open(io.BytesIO(data)) as reopened:
            reopened.load()
            want = _reference_rgb(reopened)
        got = np.asarray(load_image(data))
        assert got.shape == (h, w, 3) and np.array_equal(got, want), mode


_PEAK_CHILD = r"""
import resource, sys
import timm.data
from cascade_explorer.core.adapters import tflite_preprocess
from cascade_explorer.core.images import ImageError, load_image
transform = timm.data.create_transform(input_size=(3, 224, 224), crop_pct=0.875, interpolation="bicubic",
                                       mean=(0.5,) * 3, std=(0.5,) * 3)
try:
    rgb = load_image(sys.argv[1])
    transform(rgb)                    # what predict does with a timm model's preprocessing
    tflite_preprocess(rgb, (224, 224))
    outcome = "decoded"
except ImageError:
    outcome = "refused"
print(outcome, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def _peak_rss(path: Path) -> tuple[str, int]:
    """(outcome, peak RSS in bytes) of a fresh process decoding and preprocessing `path` like predict."""
    done = subprocess.run([sys.executable, "-c", _PEAK_CHILD, str(path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    outcome, peak = done.stdout.split()[-2:]
    return outcome, int(peak)


@pytest.mark.slow
def test_small_files_do_not_take_huge_memory(cases_dir, tmp_path):
    """Peak RSS of decoding + preprocessing each case, over a normal JPEG's in the same test, stays within
    what an 8-bit RGB photo of the same pixel count needs: its decoded image plus the RGB result
    (2 x 4 bytes a pixel as Pillow stores RGB) and 64 MiB. Before #12: float TIFF +2.0 GB,
    16-bit PNG +1.7 GB, 3000x1 strip +0.8 GB (a 768,000x256 resize)."""
    normal = tmp_path / "normal.jpg"
    normal.write_bytes(_encode(picture((640, 480)), "JPEG", quality=90))
    outcome, baseline = _peak_rss(normal)
    assert outcome == "decoded"
    for name, expected in (("float_tiff_renamed.jpg", "decoded"), ("under_limit_16bit.png", "decoded"),
                           ("strip_3000x1.png", "refused")):
        path = copy_case(cases_dir, name, tmp_path)
        with Image.open(path) as header:      # header only: the size the bound is made of
            width, height = header.size
        outcome, peak = _peak_rss(path)
        allowed = 2 * 4 * width * height + 64 * 2**20
        assert outcome == expected, (name, outcome)
        assert peak - baseline <= allowed, (f"{name}: peak RSS {peak / 2**20:.0f} MiB is "
                                            f"{(peak - baseline) / 2**20:.0f} MiB over a normal JPEG's "
                                            f"(allowed {allowed / 2**20:.0f} MiB)")
