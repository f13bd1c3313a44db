"""The paper-scale benchmark behind `cascade-explorer bench --scale M,N,C`.

Builds once (and caches) a synthetic bank of M models x N samples x C classes of model-like float16
logits *through `cascade-explorer import`*, then times whole processes, each a median of --repeats
runs with its peak RSS, next to baselines measured in the same run:

- baselines: reading every logits file once; one numpy softmax + max + argmax pass over all logits in
  one thread; copying the import's inputs with fsync (against the import itself);
- `pareto --json` with an empty signal store (first) and with a filled one (second);
- `evaluate --temperature fit` of a 2-model and a 3-model cascade with a warm store;
- `pareto --max-stages 3` over a shortlist of 8 models.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .common import say

SHORTLIST = 8


def _cache_root() -> Path:
    import platformdirs

    return Path(os.environ.get("CASCADE_EXPLORER_BENCH_DIR") or
                Path(platformdirs.user_cache_dir("cascade-explorer")) / "scale-bench")


def _inputs(folder: Path, m: int, n: int, c: int) -> list[str]:
    """The synthetic import inputs (cached): labels.npy, costs.csv and one float16 logits file per model."""
    from cascade_explorer.core.synthetic import make_synthetic_bank

    done = folder / "inputs.done"
    synthetic = make_synthetic_bank(m, n, c, seed=0)
    argv = ["import", "--labels", str(folder / "labels.npy"), "--costs", str(folder / "costs.csv")]
    argv += [arg for model in synthetic.model_ids for arg in ("--logits", f"{model}={folder / f'{model}.npy'}")]
    if done.is_file():
        return argv
    folder.mkdir(parents=True, exist_ok=True)
    say(f"  ... writing {m} synthetic float16 logits files of {n} x {c} to {folder}", err=True)
    np.save(folder / "labels.npy", synthetic.labels)
    (folder / "costs.csv").write_text("model,gmacs\n" + "".join(f"{k},{v!r}\n" for k, v in synthetic.gmacs.items()))
    for model in synthetic.model_ids:
        with open(folder / f"{model}.npy", "wb") as handle:
            np.lib.format.write_array_header_1_0(handle, {"descr": "<f2", "fortran_order": False, "shape": (n, c)})
            for start in range(0, n, 8192):
                handle.write(synthetic.logits(model, np.float16, slice(start, min(start + 8192, n))).tobytes())
    done.write_text("ok\n")
    return argv


# The child reports its own peak RSS: VmHWM of its own memory map (set fresh at exec). The rusage of a
# child (os.wait4) would report the benchmark's own RSS, which every fork inherits.
PEAK = """
import atexit, sys

def _report_peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write("\\nPEAK_KB " + line.split()[1] + "\\n")

atexit.register(_report_peak)
"""


def _measure(code: str) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one whole Python process running `code`."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK + code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    seconds = time.perf_counter() - start
    peak = [line for line in done.stderr.splitlines() if line.startswith("PEAK_KB ")]
    if done.returncode != 0 or not peak:
        raise RuntimeError(f"a benchmark process failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return seconds, int(peak[-1].split()[1]) / 1024


def _run(argv: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one whole `cascade-explorer` process."""
    return _measure(f"from cascade_explorer.commands.cli import main\nsys.exit(main({argv!r}))")


def _python(code: str) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one whole Python process running `code` (a baseline)."""
    return _measure(code)


READ_ALL = """
import glob, sys
for path in sorted(glob.glob(sys.argv[1] if len(sys.argv) > 1 else {pattern!r})):
    with open(path, "rb") as handle:
        while handle.read(1 << 24):
            pass
"""

SOFTMAX_ALL = """
import glob
import numpy as np
for path in sorted(glob.glob({pattern!r})):
    logits = np.load(path, mmap_mode="r", allow_pickle=False)
    for start in range(0, len(logits), 8192):
        x = np.asarray(logits[start:start + 8192], dtype=np.float32)
        e = np.exp(x - x.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        p.max(axis=1), p.argmax(axis=1)
"""

COPY_FSYNC = """
import glob, os, shutil
os.makedirs({out!r}, exist_ok=True)
for path in sorted(glob.glob({pattern!r})):
    target = os.path.join({out!r}, os.path.basename(path))
    shutil.copyfile(path, target)
    fd = os.open(target, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
"""


def _median(runs: list[tuple[float, float]]) -> dict:
    return {"median_s": statistics.median(s for s, _ in runs), "peak_rss_mb": max(r for _, r in runs),
            "runs_s": [round(s, 3) for s, _ in runs]}


IMPORT_CASES = ("copy_with_fsync", "import")
CASES = ("read_every_logits_file", "softmax_pass_one_thread", "copy_with_fsync", "import", "pareto_json_first",
         "pareto_json_second", "evaluate_2_models_fit", "evaluate_3_models_fit", "pareto_3_stages_shortlist_8")
RATIOS = {"import_vs_copy_with_fsync": ("import", "copy_with_fsync"),
          "pareto_first_vs_softmax_pass": ("pareto_json_first", "softmax_pass_one_thread"),
          "pareto_second_vs_softmax_pass": ("pareto_json_second", "softmax_pass_one_thread"),
          "pareto_first_vs_read_all": ("pareto_json_first", "read_every_logits_file")}


def _chosen_cases(cases: str | None) -> list[str]:
    from cascade_explorer.core.errors import UsageError

    if cases is None:
        return list(CASES)
    chosen = [c.strip() for c in cases.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in CASES]
    if unknown or not chosen:
        raise UsageError(f"cases: unknown case(s) {unknown or [cases]}; choose from {', '.join(CASES)}",
                         parameter="cases")
    if ("import" in chosen) != ("copy_with_fsync" in chosen):   # a figure only with its same-run baseline
        chosen = list(dict.fromkeys(chosen + list(IMPORT_CASES)))
    return chosen


def run_scale(spec: str, repeats: int, json_mode: bool, cases: str | None = None) -> int:
    from cascade_explorer.core.bank import Bank
    from cascade_explorer.core.errors import UsageError
    from cascade_explorer.core.jsonsafe import dumps

    try:
        m, n, c = (int(v) for v in spec.split(","))
    except ValueError:
        raise UsageError(f"scale must be M,N,C (models, samples, classes), e.g. 100,50000,1000; got {spec!r}",
                         parameter="scale") from None
    if m < SHORTLIST or n < 100 or c < 2:
        raise UsageError(f"scale needs at least {SHORTLIST} models, 100 samples and 2 classes, got {spec}",
                         parameter="scale")
    chosen = _chosen_cases(cases)
    root = _cache_root() / f"{m}x{n}x{c}"
    inputs = root / "inputs"
    bank_path = root / "bank"
    argv = _inputs(inputs, m, n, c)
    logits_glob = str(bank_path / "splits" / "val" / "logits" / "*.npy")
    results: dict = {"config": {"models": m, "samples": n, "classes": c, "repeats": repeats,
                                "logits_gb": m * n * c * 2 / 1e9, "cpu_count": os.cpu_count(), "bank": str(bank_path)}}

    # import (whole process, fills the store on the same pass) against copying its inputs with fsync
    copies = root / "copy"
    if "import" in chosen:
        import_runs, copy_runs = [], []
        for _ in range(repeats):
            shutil.rmtree(copies, ignore_errors=True)
            copy_runs.append(_python(COPY_FSYNC.format(pattern=str(inputs / "synth_*.npy"), out=str(copies))))
            shutil.rmtree(copies, ignore_errors=True)
            shutil.rmtree(bank_path, ignore_errors=True)
            import_runs.append(_run(argv + ["--out", str(bank_path)]))
        results["import"] = _median(import_runs)
        results["copy_with_fsync"] = _median(copy_runs)
    elif not (bank_path / "manifest.json").is_file():
        if not json_mode:
            say(f"  ... importing the bank once into {bank_path}", err=True)
        shutil.rmtree(bank_path, ignore_errors=True)
        _run(argv + ["--out", str(bank_path)])

    bank = Bank.open(bank_path)
    models = bank.model_ids
    pair = [models[m // 4], models[-1]]
    chain = [models[m // 8], models[m // 2], models[-1]]
    shortlist = models[-SHORTLIST:]
    cases = {
        "read_every_logits_file": lambda: _python(READ_ALL.format(pattern=logits_glob)),
        "softmax_pass_one_thread": lambda: _python(SOFTMAX_ALL.format(pattern=logits_glob)),
        "pareto_json_first": lambda: (_run(["cache", "clear", "--bank", str(bank_path)]),
                                      _run(["pareto", "--json", "--bank", str(bank_path)]))[1],
        "pareto_json_second": lambda: _run(["pareto", "--json", "--bank", str(bank_path)]),
        "evaluate_2_models_fit": lambda: _run(["evaluate", "--bank", str(bank_path), "--models", ",".join(pair),
                                               "--thresholds", "0.5", "--temperature", "fit", "--json"]),
        "evaluate_3_models_fit": lambda: _run(["evaluate", "--bank", str(bank_path), "--models", ",".join(chain),
                                               "--thresholds", "0.5,0.5", "--temperature", "fit", "--json"]),
        "pareto_3_stages_shortlist_8": lambda: _run(["pareto", "--json", "--bank", str(bank_path), "--max-stages", "3",
                                                     "--shortlist", ",".join(shortlist)]),
    }
    for name, case in cases.items():
        if name not in chosen:
            continue
        if not json_mode:
            say(f"  ... {name}", err=True)
        if name.startswith("evaluate"):
            case()   # warm the store: the temperature fits and tempered signals are stored once
        results[name] = _median([case() for _ in range(repeats)])
    results["ratios"] = {name: results[a]["median_s"] / results[b]["median_s"]
                         for name, (a, b) in RATIOS.items() if a in results and b in results}
    if json_mode:
        say(dumps(results, indent=2))
        return 0
    say(f"cascade-explorer bench --scale {m},{n},{c}: {results['config']['logits_gb']:.1f} GB of float16 logits, "
        f"medians of {repeats} whole-process runs, {os.cpu_count()} CPUs")
    say(f"{'case':<32}{'median':>10}{'peak RSS':>12}   runs")
    for name in (c for c in CASES if c in results):
        item = results[name]
        say(f"{name:<32}{item['median_s']:>9.2f}s{item['peak_rss_mb']:>10.0f} MB   {item['runs_s']}")
    say("ratios: " + ", ".join(f"{k} {v:.2f}x" for k, v in results["ratios"].items()))
    return 0
