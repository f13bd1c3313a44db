"""Files of formats the decoder must refuse, and a spy that records which Pillow plugins saw a file.

Shared by test_images, test_bad_uploads, test_dashboard_live, test_gallery_corrupted and test_predict_cli
(security issue #12: formats decoded by content, small files that take huge memory).
"""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

from PIL import EpsImagePlugin, Image

# The allow-list the issue asks for (stated here, not imported: the tests check the code against it).
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM")

# A few bytes of PostScript: Pillow's EPS plugin would hand it to Ghostscript on load().
EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n"
       b"newpath 0 0 moveto 100 100 lineto stroke\nshowpage\n%%EOF\n")


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def picture(size=(48, 32)) -> Image.Image:
    x = Image.linear_gradient("L").resize(size)
    flipped, turned = x.transpose(Image.Transpose.FLIP_LEFT_RIGHT), x.transpose(Image.Transpose.ROTATE_180)
    return Image.merge("RGB", (x, flipped, turned))


# name the file is given -> (bytes, words the refusal must contain). Names promise an allowed format;
# the content is something else.
def refused_files() -> dict[str, tuple[bytes, list[str]]]:
    return {
        "postscript.jpg": (EPS, ["PostScript (EPS)", "not JPEG"]),
        "targa.jpg": (encode(picture(), "TGA"), ["TGA", "not JPEG"]),
        "icon.png": (encode(picture((32, 32)), "ICO"), ["ICO", "not PNG"]),
        "document.png": (encode(picture(), "PDF"), ["PDF", "not PNG"]),
    }


@contextlib.contextmanager
def plugin_spy(monkeypatch):
    """Records the Pillow format ids outside IMAGE_FORMATS whose opener ran, and every Ghostscript call.
    Every plugin is registered first (as a process that ever opened an odd file would have them)."""
    Image.init()
    opened: list[str] = []
    for fmt, (factory, accept) in list(Image.OPEN.items()):
        if fmt in IMAGE_FORMATS:
            continue

        def spy(*args, _fmt=fmt, _factory=factory, **kwargs):
            opened.append(_fmt)
            return _factory(*args, **kwargs)

        monkeypatch.setitem(Image.OPEN, fmt, (spy, accept))

    def ghostscript(*args, **kwargs):
        opened.append("Ghostscript")
        raise OSError("Ghostscript must never run")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", ghostscript)
    yield opened


def copy_case(cases: Path, name: str, folder: Path) -> Path:
    target = folder / name
    shutil.copyfile(cases / name, target)
    return target

