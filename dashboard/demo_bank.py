"""A small bank of model-like random logits, for the dashboard's tests and re-render benchmark.

Models share a per-image difficulty (hard images are hard for every model, as in real banks), and
bigger models are more accurate, so cascades behave like real ones. Written with core's BankWriter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cascade_explorer.core.bank import BankWriter

# id, display name, GMACs, skill (higher = more accurate), latency ms (None = not measured)
DEMO_MODELS = [
    ("tiny", "Tiny net", 0.015, 0.8, 0.9),
    ("small", "Small net", 0.11, 1.4, 2.1),
    ("medium", "Medium net", 0.4, 2.0, 6.0),
    ("large", "Large net", 1.2, 2.6, 15.0),
    ("huge", "Huge net", 4.1, 3.1, None),
]


def _logits(rng, labels, difficulty, skill, n_classes, shift=0.0):
    n = len(labels)
    logits = rng.normal(0.0, 1.0, size=(n, n_classes)).astype(np.float32)
    # the true class gets a boost that grows with model skill and shrinks with image difficulty
    margin = skill * 2.2 - difficulty * 4.0 - shift + rng.normal(0.0, 0.8, size=n)
    logits[np.arange(n), labels] += margin.astype(np.float32) + 2.0
    return logits.astype(np.float16)


def write_demo_bank(path, *, n_samples: int = 1300, n_classes: int = 100, seed: int = 0,
                    labels=None, image_paths=None, class_names=None, image_root=None,
                    shifted_split: bool = True, models=DEMO_MODELS) -> Path:
    """Write a bank with splits 'val' (and 'val-shifted': same images, harder) into `path`."""
    rng = np.random.default_rng(seed)
    if labels is None:
        labels = rng.integers(0, n_classes, size=n_samples)
    labels = np.asarray(labels, dtype=np.int64)
    n_samples = len(labels)
    if class_names is None:
        class_names = [f"class {i}" for i in range(n_classes)]
    n_classes = len(class_names)
    if image_paths is None:
        image_paths = [f"img_{i:05d}.png" for i in range(n_samples)]
    sample_ids = [Path(p).stem or f"s{i}" for i, p in enumerate(image_paths)]
    if len(set(sample_ids)) != len(sample_ids):
        sample_ids = [f"s{i:06d}" for i in range(n_samples)]
    writer = BankWriter(path, create={
        "dataset": {"name": "demo", "description": "model-like random logits for tests",
                    "licence": "CC0", "caveats": ["Synthetic logits: numbers say nothing about real models."],
                    "task": "image-classification"},
        "class_names": list(class_names),
    })
    source = {"kind": "user"} if image_root is None else None
    writer.add_split("val", sample_ids, image_paths, labels, description="clean images",
                     image_source=None if image_root is None else {"url_base": None, "env": "CASCADE_EXPLORER_IMAGES"})
    difficulty = rng.beta(2.0, 2.5, size=n_samples)
    splits = {"val": 0.0}
    if shifted_split:
        writer.add_split("val-shifted", sample_ids, image_paths, labels, description="same images, corrupted",
                         transform={"kind": "corruption", "types": ["gaussian_noise"], "severity": 3, "seed": 0,
                                    "implementation": "synthetic"})
        splits["val-shifted"] = 1.0
    for model_id, name, gmacs, skill, ms in models:
        writer.add_model(model_id, display_name=name, backend="external", source=source or {"kind": "user"},
                         gmacs=gmacs, params=int(gmacs * 4e6),
                         latency_ms={} if ms is None else {"demo cpu": {"batch_1": ms}})
        for split, shift in splits.items():
            writer.add_logits(model_id, split, _logits(rng, labels, difficulty, skill, n_classes, shift))
    return Path(path)


def write_demo_bank_on_shared_images(path, shared_dir, **kwargs) -> Path:
    """The demo bank on the real ImageNet val images of ../shared (true labels, real files to show)."""
    root = Path(shared_dir) / "data" / "imagenet-val-1300"
    rows = [line.split(",") for line in (root / "dataset.txt").read_text().splitlines() if line.strip()]
    image_paths = [Path(p.strip()).name for p, _ in rows]
    labels = [int(label) for _, label in rows]
    names = [line.split(" ", 1)[1].split(",")[0].strip()
             for line in (root / "synset_words.txt").read_text().splitlines() if line.strip()]
    return write_demo_bank(path, labels=labels, image_paths=image_paths, class_names=names, image_root=root,
                           **kwargs)
