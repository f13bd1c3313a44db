"""Reading a bank: `Bank` (validated on open, lazily loaded) and `ModelInfo` (one model's manifest entry).

`Bank.open` validates the manifest, samples, labels and every logits file *header* (shape, dtype,
file length) without reading logits; each logits file is scanned for NaN/inf (in row chunks) the
first time it is read, and that result is cached per file version. Logits come back memory-mapped.
Derived results (signals, curves, frontiers) are not the reader's job: see `core.analysis.BankAnalysis`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import is_temp_name
from ..errors import BankError, UsageError
from .format import (DEFAULT_BANK_PATH, LABELS, LOGITS_DIR, LOGITS_DTYPES, SAMPLES, SPLITS_DIR, UNFINISHED,
                     check_bank_file, check_finite_file, check_labels, labels_path, load_manifest, logits_path, manifest_path, manifest_stamp,
                     read_npy_header, read_samples, samples_path, split_dir, validate_manifest)

# ----------------------------------------------------------------------------- model info

@dataclass(frozen=True)
class ModelInfo:
    """One model's manifest entry: costs (GMACs per sample, ms per sample by device and batch), top1 per split."""

    id: str
    display_name: str
    backend: str
    source: dict
    spec: str | None
    input_size: tuple | None
    preprocessing: dict
    gmacs: float
    params: int | None
    latency_ms: dict[str, dict[str, float]]
    top1: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_manifest(cls, model_id: str, info: dict) -> "ModelInfo":
        input_size = info.get("input_size")
        params = info.get("params")
        return cls(
            id=model_id,
            display_name=info["display_name"],
            backend=info["backend"],
            source=dict(info.get("source") or {}),
            spec=info.get("spec"),
            input_size=None if input_size is None else tuple(input_size),
            preprocessing=dict(info.get("preprocessing") or {}),
            gmacs=float(info["gmacs"]),
            params=None if params is None else int(params),
            latency_ms={d: {b: float(v) for b, v in vals.items()} for d, vals in (info.get("latency_ms") or {}).items()},
            top1={s: float(a) for s, a in (info.get("top1") or {}).items()},
        )

    def ms(self, device: str | None = None, batch: str = "batch_1") -> float | None:
        """Latency in ms on `device` (default: the first device listed) at `batch`; None if unknown."""
        if not self.latency_ms:
            return None
        if device is None:
            device = next(iter(self.latency_ms))
        value = self.latency_ms.get(device, {}).get(batch)
        return None if value is None else float(value)


# ----------------------------------------------------------------------------- Bank (reader)

class Bank:
    """A validated, lazily loaded bank. Logits are memory-mapped; labels and samples are small."""

    def __init__(self, path: Path, manifest: dict, *, allow_incomplete: bool = False):
        self.path = Path(path)
        self.manifest = manifest
        dataset = manifest.get("dataset", {})
        self.name: str = dataset.get("name", self.path.name)
        self.description: str = dataset.get("description", "")
        self.licence: str = dataset.get("licence", "unknown")
        self.caveats: list[str] = list(dataset.get("caveats", []))
        self.task: str = dataset.get("task", "image-classification")
        self.class_names: list[str] = list(manifest["class_names"])
        self.num_classes: int = len(self.class_names)
        infos = [ModelInfo.from_manifest(mid, info) for mid, info in manifest["models"].items()]
        self.models: list[ModelInfo] = sorted(infos, key=lambda m: (m.gmacs, m.id))
        self.model_ids: list[str] = [m.id for m in self.models]
        self._by_id = {m.id: m for m in self.models}
        self.splits: list[str] = list(manifest["splits"])
        self.default_split: str | None = self.splits[0] if self.splits else None
        self.allow_incomplete = allow_incomplete
        # set while an import writes the bank, left by a killed one (BankWriter.begin); None when complete
        self.unfinished: dict | None = manifest.get(UNFINISHED)
        # the manifest version this object reflects: a later write changes the stamp (see manifest_stamp)
        self.stamp: tuple[int, int] = manifest_stamp(self.path)
        self._samples: dict[str, tuple[np.ndarray, list[str]]] = {}
        self._labels: dict[str, np.ndarray] = {}
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return (f"Bank({str(self.path)!r}, {len(self.models)} models, splits={self.splits}, "
                f"{self.num_classes} classes)")

    # -- opening and validation

    @classmethod
    def open(cls, path=None, *, validate: bool = True, allow_incomplete: bool = False) -> "Bank":
        """Open the bank at `path` (default: the shipped default bank).

        validate: check samples, labels and every logits header (shape, dtype, length) and reject
        missing/extra files now (cheap: no logits are read). allow_incomplete: accept models that
        lack logits for some split (e.g. an interrupted precompute); `has_logits` tells which.
        """
        path = Path(DEFAULT_BANK_PATH if path is None else path).expanduser()
        manifest = load_manifest(path)
        if path.is_file():
            path = path.parent
        validate_manifest(manifest, manifest_path(path))
        bank = cls(path, manifest, allow_incomplete=allow_incomplete)
        if validate:
            bank.validate()
        return bank

    def validate(self, *, values: bool = False) -> None:
        """Check files against the manifest; values=True also scans every logits file for NaN/inf."""
        manifest_file = manifest_path(self.path)
        if self.unfinished is not None and not self.allow_incomplete:
            step = self.unfinished.get("step", "a write")
            models = self.unfinished.get("models") or []
            raise BankError(f"the bank is incomplete: {'an' if step[:1] in 'aeiou' else 'a'} {step} into it did not "
                            f"finish" + (f" (models {', '.join(map(str, models))})" if models else ""),
                            path=manifest_file, split=self.unfinished.get("split"),
                            fix=f"run the same {step} again: it finishes the work (or open the bank with "
                                "allow_incomplete=True)")
        if not self.splits and not self.allow_incomplete:
            raise BankError("bank has no splits", path=manifest_file,
                            fix="add a split with `cascade-explorer import` or `precompute`")
        if not self.models and not self.allow_incomplete:
            raise BankError("bank has no models", path=manifest_file,
                            fix="add models with `cascade-explorer import` or `precompute`")
        self._check_leftover_temp_files(self.path)
        splits_root = self.path / SPLITS_DIR
        if splits_root.is_dir():
            for entry in sorted(splits_root.iterdir()):
                if is_temp_name(entry.name):
                    raise self._temp_error(entry)
                if entry.name not in self.manifest["splits"]:
                    raise BankError(f"folder for split {entry.name!r}, which manifest.json does not list",
                                    path=entry, split=entry.name,
                                    fix="delete that folder, or re-import the split so it is recorded")
        for split in self.splits:
            self._validate_split(split, values=values)

    @staticmethod
    def _temp_error(path: Path) -> BankError:
        return BankError("leftover temp file from an interrupted write", path=path,
                         fix="delete it (the bank's recorded files are intact); then re-run the interrupted step")

    def _check_leftover_temp_files(self, folder: Path) -> None:
        for entry in folder.iterdir():
            if is_temp_name(entry.name):
                raise self._temp_error(entry)

    def _validate_split(self, split: str, *, values: bool) -> None:
        folder = split_dir(self.path, split)
        if not folder.is_dir():
            raise BankError("split folder is missing", path=folder, split=split,
                            fix="re-create the split (re-run import/precompute), or remove it from manifest.json")
        allowed = {SAMPLES, LABELS, LOGITS_DIR}
        for entry in sorted(folder.iterdir()):
            if is_temp_name(entry.name):
                raise self._temp_error(entry)
            if entry.name not in allowed:
                raise BankError(f"unexpected file {entry.name!r} in a split folder", path=entry, split=split,
                                fix=f"delete it; a split folder holds only {SAMPLES}, {LABELS} and {LOGITS_DIR}/")
        sample_ids, _ = self._read_samples(split)
        labels = self.labels(split)
        if len(labels) != len(sample_ids):
            raise BankError(f"labels.npy has {len(labels)} rows but samples.csv has {len(sample_ids)} samples",
                            path=labels_path(self.path, split), split=split,
                            fix="re-create the split so samples.csv and labels.npy describe the same samples")
        logits_folder = folder / LOGITS_DIR
        expected = {m.id for m in self.models if split in m.top1}
        present: set[str] = set()
        if logits_folder.is_dir():
            for entry in sorted(logits_folder.iterdir()):
                if is_temp_name(entry.name):
                    raise self._temp_error(entry)
                model_id = entry.name[:-4] if entry.name.endswith(".npy") else None
                if model_id is None:
                    raise BankError(f"unexpected file {entry.name!r} in logits/", path=entry, split=split,
                                    fix="delete it; logits/ holds only <model>.npy files")
                if model_id not in self._by_id:
                    raise BankError(f"logits for model {model_id!r}, which manifest.json does not list",
                                    path=entry, model=model_id, split=split,
                                    fix=f"delete it, or import it again so the model is recorded "
                                        f"(known models: {', '.join(self.model_ids) or 'none'})")
                if model_id not in expected:
                    raise BankError("logits file not recorded in manifest.json (no top1 for this split): "
                                    "probably an interrupted write", path=entry, model=model_id, split=split,
                                    fix="delete it, or re-run the import/precompute for this model "
                                        "(it overwrites the file and records it)")
                present.add(model_id)
        for model_id in sorted(expected - present):
            raise BankError("logits file is missing although manifest.json records top1 for it",
                            path=logits_path(self.path, model_id, split), model=model_id, split=split,
                            fix="re-run import/precompute for this model and split, or remove the model's "
                                "top1 entry for the split")
        if not self.allow_incomplete:
            for model in self.models:
                if split not in model.top1:
                    raise BankError("model has no logits for this split (an interrupted or partial "
                                    "precompute/import?)", path=logits_path(self.path, model.id, split),
                                    model=model.id, split=split,
                                    fix="precompute/import that model on this split, or open the bank "
                                        "with allow_incomplete=True")
        for model_id in sorted(present):
            self._check_logits_header(model_id, split, len(labels))
            if values:
                self.logits(model_id, split)   # scans for NaN/inf (cached per file version)

    def _check_logits_header(self, model_id: str, split: str, n: int) -> tuple:
        path = logits_path(self.path, model_id, split)
        shape, dtype, _, _ = read_npy_header(path)
        if dtype not in LOGITS_DTYPES:
            raise BankError(f"logits dtype is {dtype}; float16 or float32 expected", path=path, model=model_id,
                            split=split, fix="convert with logits.astype('float32') and import again")
        if len(shape) != 2:
            raise BankError(f"logits must be 2-D (N, C), got shape {shape}", path=path, model=model_id,
                            split=split, fix="save one row of class scores per sample")
        if shape[0] != n:
            raise BankError(f"logits have {shape[0]} rows but the split has {n} labels/samples", path=path,
                            model=model_id, split=split,
                            fix="export logits for exactly the split's samples, in samples.csv order")
        if shape[1] != self.num_classes:
            raise BankError(f"logits have {shape[1]} columns but the bank has {self.num_classes} class names",
                            path=path, model=model_id, split=split,
                            fix="export logits over the bank's classes (same class list and order)")
        return shape

    # -- lookups

    def model(self, model_id: str) -> ModelInfo:
        try:
            return self._by_id[model_id]
        except KeyError:
            raise BankError(f"unknown model {model_id!r}", path=manifest_path(self.path), model=model_id,
                            fix=f"use one of: {', '.join(self.model_ids) or '(no models)'}") from None

    def check_cost_order(self, models) -> None:
        """UsageError unless `models` run cheapest first (a cascade asks a dearer model only when a
        cheaper one is unsure); the message gives the right order with each model's GMACs."""
        costs = [self.model(m).gmacs for m in models]
        if any(b < a for a, b in zip(costs, costs[1:])):
            known = self.model_ids
            ordered = sorted(models, key=lambda m: (self.model(m).gmacs, known.index(m)))
            listing = ", ".join(f"{m} ({self.model(m).gmacs:.4g} GMACs)" for m in ordered)
            raise UsageError(f"models must be ordered by cost, cheapest first: {','.join(ordered)} [{listing}]")

    def _check_split(self, split: str) -> str:
        if split not in self.manifest["splits"]:
            raise BankError(f"unknown split {split!r}", path=manifest_path(self.path), split=split,
                            fix=f"use one of: {', '.join(self.splits) or '(no splits)'}")
        return split

    def split_info(self, split: str) -> dict:
        return dict(self.manifest["splits"][self._check_split(split)])

    def has_logits(self, model_id: str, split: str) -> bool:
        return split in self.model(model_id).top1

    def models_for(self, split: str) -> list[str]:
        """Model ids (cheapest first) that have logits for `split`."""
        self._check_split(split)
        return [m.id for m in self.models if split in m.top1]

    def _read_samples(self, split: str) -> tuple[np.ndarray, list[str]]:
        with self._lock:
            if split not in self._samples:
                self._check_split(split)
                ids, images = read_samples(samples_path(self.path, split), split=split)
                ids.setflags(write=False)
                self._samples[split] = (ids, images)
            return self._samples[split]

    def sample_ids(self, split: str) -> np.ndarray:
        return self._read_samples(split)[0]

    def image_paths(self, split: str) -> list[str]:
        return list(self._read_samples(split)[1])

    def n_samples(self, split: str) -> int:
        return len(self.labels(split))

    def labels(self, split: str) -> np.ndarray:
        """int64 (N,) class indices, read-only."""
        with self._lock:
            if split not in self._labels:
                self._check_split(split)
                path = check_bank_file(labels_path(self.path, split), "labels.npy", split=split)
                read_npy_header(path)
                self._labels[split] = check_labels(np.load(path, allow_pickle=False), self.num_classes,
                                                   path=path, split=split)
            return self._labels[split]

    def logits(self, model_id: str, split: str, *, check_finite: bool = True) -> np.ndarray:
        """(N, C) float16/float32 logits, memory-mapped read-only (rows in samples.csv order).

        check_finite: scan the file for NaN/inf first (once per file version and process). A caller
        that checks every value itself on its own pass (the signal store) passes False to save a pass.
        """
        self.model(model_id)
        self._check_split(split)
        path = logits_path(self.path, model_id, split)
        if split not in self._by_id[model_id].top1:
            raise BankError("model has no logits for this split", path=path, model=model_id, split=split,
                            fix=f"use a model with logits for it: {', '.join(self.models_for(split)) or 'none'}")
        check_bank_file(path, "logits file", model=model_id, split=split)
        self._check_logits_header(model_id, split, self.n_samples(split))
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        if check_finite:
            check_finite_file(path, array, model=model_id, split=split)
        return array

    def file_version(self, path) -> str:
        """Identity of one version of a bank file ('size-mtime_ns-inode'): a rewrite (atomic replace)
        changes it, so anything derived from the file and keyed on it goes stale by itself."""
        stat = Path(path).stat()
        return f"{stat.st_size}-{stat.st_mtime_ns}-{stat.st_ino}"

    def latency_devices(self) -> list[str]:
        """Devices with latency figures, in first-seen order over the models (cheapest first)."""
        devices: dict[str, None] = {}
        for model in self.models:
            for device in model.latency_ms:
                devices.setdefault(device, None)
        return list(devices)


