"""A bank of 100+ models with timm-like names (several families, long names), built through
`core.importer.import_bank` from `core.synthetic` logits; small N so tests stay fast."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cascade_explorer.core.importer import import_bank
from cascade_explorer.core.synthetic import make_synthetic_bank

PATTERNS = ("resnet{i}", "vit_base_patch16_224.augreg2_in21k_ft_in1k_v{i}", "efficientnet_b{i}",
            "convnext_tiny_{i}.fb_in22k_ft_in1k", "mobilenetv3_large_{i}", "regnety_{i:03d}")


def timm_names(n: int) -> list[str]:
    """n distinct timm-like model ids, families cycling in PATTERNS order."""
    return [PATTERNS[k % len(PATTERNS)].format(i=k // len(PATTERNS) + 1) for k in range(n)]


def write_zoo_bank(out: Path, n_models: int = 120, n_samples: int = 300, n_classes: int = 20, *,
                   signals: bool = True) -> Path:
    """Import a synthetic bank of `n_models` models into `out` (signals=False leaves the signal store
    cold). Returns `out`."""
    out = Path(out)
    work = out.parent / (out.name + "-inputs")
    work.mkdir(parents=True, exist_ok=True)
    synthetic = make_synthetic_bank(n_models, n_samples, n_classes, seed=3)
    names = dict(zip(synthetic.model_ids, timm_names(n_models)))
    np.save(work / "labels.npy", synthetic.labels)
    logits = {}
    for model in synthetic.model_ids:
        np.save(work / f"{names[model]}.npy", synthetic.logits(model, np.float32))
        logits[names[model]] = work / f"{names[model]}.npy"
    (work / "costs.csv").write_text("model,gmacs,latency_ms\n" + "".join(
        f"{names[m]},{synthetic.gmacs[m]!r},{synthetic.ms[m]!r}\n" for m in synthetic.model_ids))
    import_bank(work / "labels.npy", logits, work / "costs.csv", out, signals=signals,
                dataset={"name": "zoo-" + out.name})
    return out
