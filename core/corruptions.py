"""ImageNet-C style corruptions (Hendrycks & Dietterich, ICLR 2019), for distribution-shift splits.

The maintained package `imagecorruptions` (1.1.2) does not import here: it needs `pkg_resources`
(removed from current setuptools) and pulls in OpenCV and scikit-image. So the definitions of
Hendrycks & Dietterich's `make_imagenet_c.py` are implemented with numpy/scipy/PIL, with their
severity constants; blur kernels use OpenCV's default border (reflect-101). Differences: the
corruptions run at the image's own size (the paper's images were 224x224 crops), and motion
blur uses the shifted-copies kernel of `imagecorruptions` instead of ImageMagick.

Each image gets one corruption type, chosen from `types` and randomised by a generator seeded
from (seed, sample id): the same image always gets the same corruption, in any order or worker.
"""

from __future__ import annotations

import io
import math
import zlib

import numpy as np
from PIL import Image

from .errors import UsageError

IMPLEMENTATION = ("cascade_explorer.core.corruptions: Hendrycks & Dietterich (2019) ImageNet-C definitions "
                  "and severity constants, reimplemented in numpy/scipy/PIL (imagecorruptions 1.1.2 does not "
                  "import with current setuptools); applied at the image's own size")

# Severity constants 1..5, as in make_imagenet_c.py.
_GAUSSIAN_NOISE = [0.08, 0.12, 0.18, 0.26, 0.38]
_SHOT_NOISE = [60, 25, 12, 5, 3]
_IMPULSE_NOISE = [0.03, 0.06, 0.09, 0.17, 0.27]
_DEFOCUS_BLUR = [(3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)]
_MOTION_BLUR = [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)]
_CONTRAST = [0.4, 0.3, 0.2, 0.1, 0.05]
_BRIGHTNESS = [0.1, 0.2, 0.3, 0.4, 0.5]
_JPEG_QUALITY = [25, 18, 15, 10, 7]
_PIXELATE = [0.6, 0.5, 0.4, 0.3, 0.25]


def _unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64) / 255.0


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.clip(x, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)


def gaussian_noise(x, severity, rng):
    c = _GAUSSIAN_NOISE[severity - 1]
    x = _unit(x)
    return _to_uint8(x + rng.normal(size=x.shape, scale=c))


def shot_noise(x, severity, rng):
    c = _SHOT_NOISE[severity - 1]
    return _to_uint8(rng.poisson(_unit(x) * c) / c)


def impulse_noise(x, severity, rng):
    """Salt and pepper on a fraction `amount` of the values, half salt, half pepper."""
    amount = _IMPULSE_NOISE[severity - 1]
    x = _unit(x).copy()
    flip = rng.random(x.shape) < amount
    salt = rng.random(x.shape) < 0.5
    x[flip & salt] = 1.0
    x[flip & ~salt] = 0.0
    return _to_uint8(x)


def _gaussian_kernel_1d(ksize: int, sigma: float) -> np.ndarray:
    # cv2.getGaussianKernel
    centre = (ksize - 1) / 2.0
    k = np.exp(-((np.arange(ksize) - centre) ** 2) / (2.0 * sigma * sigma))
    return k / k.sum()


def _disk(radius: int, alias_blur: float) -> np.ndarray:
    """make_imagenet_c.disk: an aliased disk, normalised, then Gaussian-blurred (cv2.GaussianBlur)."""
    from scipy import ndimage

    if radius <= 8:
        coords, ksize = np.arange(-8, 9), 3
    else:
        coords, ksize = np.arange(-radius, radius + 1), 5
    xx, yy = np.meshgrid(coords, coords)
    disk = ((xx ** 2 + yy ** 2) <= radius ** 2).astype(np.float64)
    disk /= disk.sum()
    g = _gaussian_kernel_1d(ksize, alias_blur)
    disk = ndimage.convolve1d(disk, g, axis=0, mode="mirror")
    return ndimage.convolve1d(disk, g, axis=1, mode="mirror")


def defocus_blur(x, severity, rng):
    from scipy import ndimage

    radius, alias_blur = _DEFOCUS_BLUR[severity - 1]
    kernel = _disk(radius, alias_blur)
    x = _unit(x)
    # cv2.filter2D: correlation with BORDER_REFLECT_101 (scipy "mirror"); the disk is symmetric.
    out = np.stack([ndimage.correlate(x[:, :, c], kernel, mode="mirror") for c in range(x.shape[2])], axis=2)
    return _to_uint8(out)


def _shift_edge(x: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Shift by (dx, dy) pixels, filling the uncovered border with the edge pixels."""
    h, w = x.shape[:2]
    rows = np.clip(np.arange(h) - dy, 0, h - 1)
    cols = np.clip(np.arange(w) - dx, 0, w - 1)
    return x[rows][:, cols]


def motion_blur(x, severity, rng):
    """Gaussian-weighted sum of copies shifted along a random direction (one-sided, like ImageMagick)."""
    radius, sigma = _MOTION_BLUR[severity - 1]
    angle = rng.uniform(-45, 45)
    width = radius * 2 + 1
    weights = np.exp(-(np.arange(width) ** 2) / (2.0 * sigma ** 2))
    weights /= weights.sum()
    direction = (math.sin(math.radians(angle)), math.cos(math.radians(angle)))
    x = _unit(x)
    out = np.zeros_like(x)
    for i in range(width):
        dy = -math.ceil(i * direction[0] - 0.5)
        dx = -math.ceil(i * direction[1] - 0.5)
        if abs(dy) >= x.shape[0] or abs(dx) >= x.shape[1]:
            break
        out += weights[i] * _shift_edge(x, dx, dy)
    return _to_uint8(out)


def contrast(x, severity, rng):
    c = _CONTRAST[severity - 1]
    x = _unit(x)
    means = x.mean(axis=(0, 1), keepdims=True)
    return _to_uint8((x - means) * c + means)


def brightness(x, severity, rng):
    """V += c in HSV (clipped at 1), hue and saturation kept: RGB scaled by V'/V."""
    c = _BRIGHTNESS[severity - 1]
    x = _unit(x)
    value = x.max(axis=2, keepdims=True)
    new_value = np.clip(value + c, 0.0, 1.0)
    scale = np.divide(new_value, value, out=np.ones_like(value), where=value > 0)
    out = np.where(value > 0, x * scale, new_value)  # black: grey of the new value
    return _to_uint8(out)


def jpeg_compression(x, severity, rng):
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(x, dtype=np.uint8)).save(buffer, "JPEG", quality=_JPEG_QUALITY[severity - 1])
    from .images import load_image   # the one safe decoder, held to the JPEG plugin

    return np.asarray(load_image(buffer.getvalue(), name="jpeg_compression", formats=("JPEG",)))


def pixelate(x, severity, rng):
    c = _PIXELATE[severity - 1]
    image = Image.fromarray(np.asarray(x, dtype=np.uint8))
    w, h = image.size
    small = image.resize((max(1, int(w * c)), max(1, int(h * c))), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BOX))


CORRUPTIONS = {
    "gaussian_noise": gaussian_noise, "shot_noise": shot_noise, "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur, "motion_blur": motion_blur, "contrast": contrast,
    "brightness": brightness, "jpeg_compression": jpeg_compression, "pixelate": pixelate,
}
DEFAULT_TYPES = ("gaussian_noise", "defocus_blur", "motion_blur", "contrast", "jpeg_compression", "pixelate")


def check_types(types) -> list[str]:
    types = [str(t) for t in types]
    unknown = [t for t in types if t not in CORRUPTIONS]
    if unknown or not types:
        raise UsageError(f"unknown corruption type(s) {unknown or types}; known: {', '.join(CORRUPTIONS)}")
    return types


def _rng(seed: int, sample_id: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(str(sample_id).encode("utf-8"))])


def corruption_for(sample_id: str, types, seed: int) -> str:
    """The corruption type image `sample_id` gets (deterministic in seed and id)."""
    types = check_types(types)
    return types[int(_rng(seed, sample_id).integers(len(types)))]


SEVERITIES = range(1, 6)   # ImageNet-C's levels: one constant per level in the tables above


def check_severity(severity, what: str = "severity") -> int:
    """The ImageNet-C severity level (1..5) as an int; UsageError naming `what` otherwise."""
    if int(severity) not in SEVERITIES:
        raise UsageError(f"{what} must be 1..5 (ImageNet-C levels), got {severity}")
    return int(severity)


def corrupt_image(image: np.ndarray, types, *, severity: int, seed: int, sample_id: str) -> np.ndarray:
    """(H, W, 3) uint8 -> corrupted (H, W, 3) uint8; type and randomness seeded by (seed, sample_id)."""
    types = check_types(types)
    check_severity(severity)
    rng = _rng(seed, sample_id)
    kind = types[int(rng.integers(len(types)))]
    image = np.asarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise UsageError(f"corrupt_image expects (H, W, 3) uint8 RGB, got shape {image.shape}")
    return CORRUPTIONS[kind](image, int(severity), rng)


def apply_transform(image: np.ndarray, transform: dict, *, sample_id: str) -> np.ndarray:
    """Pixels as a split's models saw them: `transform` is its manifest entry (or the same keys)."""
    return corrupt_image(image, transform["types"], severity=transform["severity"], seed=transform["seed"],
                         sample_id=sample_id)


def transform_entry(types, severity: int, seed: int) -> dict:
    """The split's manifest "transform" entry."""
    return {"kind": "corruption", "types": check_types(types), "severity": int(severity), "seed": int(seed),
            "assignment": "one type per image, drawn with numpy default_rng([seed, crc32(sample_id)])",
            "implementation": IMPLEMENTATION}
