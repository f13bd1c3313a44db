"""Banks: folders of precomputed model outputs (logits) on labelled samples, plus their costs.

Format (documented in precomputed/README.md), readable with numpy + json + csv alone:

    BANK/manifest.json
    BANK/splits/<split>/samples.csv          sample_id,image_path
    BANK/splits/<split>/labels.npy           int64 (N,)
    BANK/splits/<split>/logits/<model>.npy   (N, C) float16|float32, rows in samples.csv order

`Bank.open` validates the manifest, samples, labels and every logits file *header* (shape, dtype,
file length) without reading logits; each logits file is scanned for NaN/inf (in row chunks) the
first time it is read, and that result is cached per file version. Logits come back memory-mapped.
`BankWriter` adds splits, models and logits; every write is atomic and touches only its own
files plus manifest.json.
"""

from __future__ import annotations

import csv
import io
import json
import math
import numbers
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_save_npy, atomic_write_json, atomic_write_text, is_temp_name

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SAMPLES = "samples.csv"
LABELS = "labels.npy"
LOGITS_DIR = "logits"
SPLITS_DIR = "splits"
SAMPLES_HEADER = ["sample_id", "image_path"]
LOGITS_DTYPES = (np.dtype(np.float16), np.dtype(np.float32))
BACKENDS = ("tflite", "timm", "external")
# Model and split ids become file names: keep them portable and free of path separators.
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+\-]{0,127}$")
SCAN_CHUNK_ROWS = 4096
SIGNALS_CACHE_SIZE = 128

DEFAULT_BANK_PATH = Path(__file__).resolve().parent.parent / "precomputed" / "imagenet-val-1300"
PRECOMPUTED_DIR = DEFAULT_BANK_PATH.parent


class BankError(ValueError):
    """A bank problem; the message names the file, the model/split, what is wrong and how to fix it."""

    def __init__(self, problem: str, *, path=None, model=None, split=None, fix: str | None = None):
        self.problem = problem
        self.path = None if path is None else Path(path)
        self.model = model
        self.split = split
        self.fix = fix
        where = []
        if model is not None:
            where.append(f"model {model!r}")
        if split is not None:
            where.append(f"split {split!r}")
        message = f"{path}: " if path is not None else ""
        message += f"{problem}"
        if where:
            message += f" ({', '.join(where)})"
        if fix:
            message += f". Fix: {fix}"
        super().__init__(message)


# ----------------------------------------------------------------------------- paths and files

def split_dir(bank_path, split: str) -> Path:
    return Path(bank_path) / SPLITS_DIR / split


def logits_path(bank_path, model_id: str, split: str) -> Path:
    return split_dir(bank_path, split) / LOGITS_DIR / f"{model_id}.npy"


def find_banks(*roots) -> list[Path]:
    """Every folder holding a manifest.json under `roots` (searched 3 levels deep) and precomputed/."""
    found: dict[Path, None] = {}
    for root in (*roots, PRECOMPUTED_DIR):
        root = Path(root).expanduser()
        if not root.is_dir():
            continue
        if (root / MANIFEST).is_file():
            found[root.resolve()] = None
        for depth in ("*", "*/*", "*/*/*"):
            for manifest in sorted(root.glob(f"{depth}/{MANIFEST}")):
                relative = manifest.parent.relative_to(root)
                # Skip hidden folders (.git, caches) and the inside of another bank.
                if any(part.startswith(".") for part in relative.parts) or SPLITS_DIR in relative.parts:
                    continue
                found[manifest.parent.resolve()] = None
    return sorted(found)


def read_npy_header(path) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """(shape, dtype, fortran_order, data_offset) of a .npy file, reading only its header.

    Raises BankError if the file is not a valid .npy or its length does not match the header
    (a truncated file from a killed writer, or trailing bytes).
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
            offset = handle.tell()
    except FileNotFoundError:
        raise
    except (ValueError, OSError, SyntaxError) as error:
        raise BankError(f"not a readable .npy file ({error})", path=path,
                        fix="re-create it (re-run the import or precompute step that wrote it)") from None
    if dtype.hasobject:
        raise BankError(f"holds Python objects (dtype {dtype}); banks never contain pickles", path=path,
                        fix="save a plain numeric array with numpy.save(..., allow_pickle=False)")
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = path.stat().st_size
    if actual != expected:
        what = "truncated" if actual < expected else "longer than its header says"
        raise BankError(f"file is {what}: {actual} bytes, header {shape} {dtype} needs {expected}",
                        path=path, fix="delete it and re-run the step that wrote it (an interrupted write?)")
    return tuple(int(n) for n in shape), dtype, bool(fortran), offset


# Finite-value scans, keyed by file identity so an unchanged file is scanned once per process.
_FINITE_CHECKED: dict[tuple, bool] = {}
_FINITE_LOCK = threading.Lock()


def _file_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)


def first_non_finite_row(array, chunk_rows: int = SCAN_CHUNK_ROWS) -> int | None:
    """Index of the first row of a 2-D array holding NaN/inf, scanned in row chunks; None if all finite."""
    for start in range(0, array.shape[0], chunk_rows):
        chunk = np.asarray(array[start:start + chunk_rows])
        finite = np.isfinite(chunk)
        if not finite.all():
            return start + int(np.flatnonzero(~finite.all(axis=1))[0])
    return None


def _check_finite_file(path: Path, array, *, model: str, split: str) -> None:
    key = _file_key(path)
    with _FINITE_LOCK:
        if key in _FINITE_CHECKED:
            return
    bad_row = first_non_finite_row(array)
    if bad_row is not None:
        raise BankError(f"logits contain NaN or inf (first at row {bad_row})", path=path, model=model,
                        split=split, fix="re-export that model's logits (check the model for overflow), "
                                         "then import again with --force")
    with _FINITE_LOCK:
        _FINITE_CHECKED[key] = True


# ----------------------------------------------------------------------------- manifest checks

def _is_number(value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    return isinstance(value, numbers.Real) and math.isfinite(value)


def load_manifest(path) -> dict:
    """Parse BANK/manifest.json (or the file given) with errors naming line and column."""
    path = Path(path)
    if path.name != MANIFEST or path.is_dir():
        if path.is_file():
            raise BankError("is a file, not a bank folder", path=path,
                            fix="pass the folder that holds manifest.json")
        path = path / MANIFEST
    if not path.is_file():
        if not path.parent.exists():
            raise BankError("bank folder does not exist", path=path.parent,
                            fix="check the path, or build a bank with `cascade-explorer import` or `precompute`")
        if path.is_dir():
            raise BankError("manifest.json is a folder, not a file", path=path,
                            fix="remove that folder and restore the bank's manifest.json")
        raise BankError("manifest.json is missing, so this folder is not a bank", path=path,
                        fix="point at a bank folder (one containing manifest.json), or build one with "
                            "`cascade-explorer import` / `precompute`")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise BankError(f"not UTF-8 text ({error})", path=path, fix="re-save manifest.json as UTF-8") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as error:
        raise BankError(f"malformed JSON at line {error.lineno}, column {error.colno}: {error.msg}",
                        path=path, fix="correct the JSON syntax there (or restore the file)") from None
    if not isinstance(manifest, dict):
        raise BankError(f"top level must be a JSON object, got {type(manifest).__name__}", path=path,
                        fix="see precomputed/README.md for the manifest layout")
    return manifest


def check_id(kind: str, value, *, path=None) -> str:
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise BankError(f"invalid {kind} id {value!r}: ids are file names of letters, digits and ._+- "
                        "(starting with a letter or digit, at most 128 characters)", path=path,
                        fix=f"rename the {kind}")
    return value


def validate_manifest(manifest: dict, path) -> None:
    """Structural checks of a parsed manifest; raises BankError naming the field."""
    path = Path(path)
    fix_doc = "see precomputed/README.md for the manifest fields"
    version = manifest.get("schema_version")
    if version is None:
        raise BankError("missing 'schema_version'", path=path, fix=f"add \"schema_version\": {SCHEMA_VERSION}")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise BankError(f"unknown schema_version {version!r} (this version reads {SCHEMA_VERSION})", path=path,
                        fix="upgrade cascade-explorer, or re-create the bank with this version")
    dataset = manifest.get("dataset")
    if not isinstance(dataset, dict) or not isinstance(dataset.get("name"), str) or not dataset["name"]:
        raise BankError("'dataset' must be an object with a non-empty 'name'", path=path, fix=fix_doc)
    for key in ("description", "licence", "task"):
        if key in dataset and not isinstance(dataset[key], str):
            raise BankError(f"'dataset.{key}' must be a string", path=path, fix=fix_doc)
    caveats = dataset.get("caveats", [])
    if not isinstance(caveats, list) or not all(isinstance(c, str) for c in caveats):
        raise BankError("'dataset.caveats' must be a list of strings", path=path, fix=fix_doc)
    names = manifest.get("class_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise BankError("'class_names' must be a non-empty list of strings", path=path, fix=fix_doc)
    splits = manifest.get("splits")
    if not isinstance(splits, dict):
        raise BankError("'splits' must be an object {split name: {...}}", path=path, fix=fix_doc)
    for split, info in splits.items():
        check_id("split", split, path=path)
        if not isinstance(info, dict):
            raise BankError("split entry must be an object", path=path, split=split, fix=fix_doc)
        skipped = info.get("skipped", [])
        if not isinstance(skipped, list):
            raise BankError("'skipped' must be a list", path=path, split=split, fix=fix_doc)
    models = manifest.get("models")
    if not isinstance(models, dict):
        raise BankError("'models' must be an object {model id: {...}}", path=path, fix=fix_doc)
    for model_id, info in models.items():
        check_id("model", model_id, path=path)
        _validate_model_entry(model_id, info, splits, path)


def _validate_model_entry(model_id: str, info, splits: dict, path: Path) -> None:
    def bad(problem: str, fix: str = "see precomputed/README.md for the model fields"):
        return BankError(problem, path=path, model=model_id, fix=fix)

    if not isinstance(info, dict):
        raise bad("model entry must be an object")
    if "gmacs" not in info:
        raise bad("'gmacs' (cost per sample, in billions of multiply-accumulates) is missing",
                  "add the model's GMACs (e.g. from its paper or a FLOP counter)")
    gmacs = info["gmacs"]
    if not _is_number(gmacs):
        raise bad(f"'gmacs' must be a finite number, got {gmacs!r}", "set gmacs to the model's GMACs per sample")
    if gmacs < 0:
        raise bad(f"'gmacs' is negative ({gmacs})", "costs are >= 0: set gmacs to the model's GMACs per sample")
    for key in ("display_name", "backend"):
        if not isinstance(info.get(key), str) or not info[key]:
            raise bad(f"'{key}' must be a non-empty string")
    if not isinstance(info.get("source", {}), dict):
        raise bad("'source' must be an object")
    params = info.get("params")
    if params is not None and (not _is_number(params) or params < 0):
        raise bad(f"'params' must be null or a number >= 0, got {params!r}")
    if info.get("spec") is not None and not isinstance(info["spec"], str):
        raise bad("'spec' must be null or a string")
    input_size = info.get("input_size")
    if input_size is not None and (not isinstance(input_size, list)
                                   or not all(isinstance(v, int) and v > 0 for v in input_size)):
        raise bad(f"'input_size' must be null or a list of positive integers, got {input_size!r}")
    if not isinstance(info.get("preprocessing", {}) or {}, dict):
        raise bad("'preprocessing' must be an object")
    latency = info.get("latency_ms", {}) or {}
    if not isinstance(latency, dict):
        raise bad("'latency_ms' must be an object {device: {batch_N: ms}}")
    for device, values in latency.items():
        if not isinstance(values, dict) or not all(_is_number(v) and v >= 0 for v in values.values()):
            raise bad(f"'latency_ms[{device!r}]' must map batch names to numbers >= 0, got {values!r}")
    top1 = info.get("top1", {})
    if not isinstance(top1, dict):
        raise bad("'top1' must be an object {split: accuracy}")
    for split, acc in top1.items():
        if split not in splits:
            raise BankError(f"'top1' names split {split!r}, which is not in 'splits'", path=path, model=model_id,
                            split=split, fix="remove that top1 entry or add the split")
        if not _is_number(acc) or not 0.0 <= acc <= 1.0:
            raise BankError(f"'top1' must be a number in [0, 1], got {acc!r}", path=path, model=model_id,
                            split=split, fix="re-add the logits so top1 is recomputed")


# ----------------------------------------------------------------------------- samples and labels

def read_samples(path: Path, *, split: str) -> tuple[np.ndarray, list[str]]:
    """(sample ids, image paths) from samples.csv, checking header, columns, empty and duplicate ids."""
    if path.is_dir():
        raise BankError("samples.csv is a folder, not a file", path=path, split=split,
                        fix="remove that folder and re-create the split (re-run import/precompute)")
    if not path.is_file():
        raise BankError("samples.csv is missing", path=path, split=split,
                        fix="re-create the split (re-run import/precompute), or remove it from manifest.json")
    ids: list[str] = []
    images: list[str] = []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header != SAMPLES_HEADER:
                raise BankError(f"header must be {','.join(SAMPLES_HEADER)}, got {header!r}", path=path,
                                split=split, fix="write the header line 'sample_id,image_path'")
            for row in reader:
                if len(row) != 2:
                    raise BankError(f"line {reader.line_num} has {len(row)} fields, expected 2", path=path,
                                    split=split, fix="quote values containing commas; one sample per line")
                if not row[0]:
                    raise BankError(f"line {reader.line_num} has an empty sample_id", path=path, split=split,
                                    fix="give every sample a unique id")
                ids.append(row[0])
                images.append(row[1])
    except UnicodeDecodeError as error:
        raise BankError(f"not UTF-8 text ({error})", path=path, split=split, fix="re-save as UTF-8") from None
    sample_ids = np.array(ids, dtype=str)
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        duplicate = next(i for i in ids if i in seen or seen.add(i))
        raise BankError(f"duplicate sample_id {duplicate!r} ({len(ids) - len(set(ids))} duplicates)", path=path,
                        split=split, fix="make sample ids unique (e.g. prefix with the folder name)")
    return sample_ids, images


def check_labels(labels: np.ndarray, num_classes: int, *, path=None, split=None) -> np.ndarray:
    """Labels as read-only int64, checking 1-D, integer dtype and range 0..C-1."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise BankError(f"labels must be 1-D (N,), got shape {labels.shape}", path=path, split=split,
                        fix="save a flat integer array of class indices")
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        if np.issubdtype(labels.dtype, np.floating) and labels.size and np.all(np.isfinite(labels)) \
                and np.all(labels == np.round(labels)):
            hint = "convert with labels.astype('int64') before saving"
        else:
            hint = "save integer class indices 0..C-1 (not one-hot, not strings)"
        raise BankError(f"labels must be integers, got dtype {labels.dtype}", path=path, split=split, fix=hint)
    if labels.size:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= num_classes:
            bad_index = int(np.flatnonzero((labels < 0) | (labels >= num_classes))[0])
            raise BankError(f"label {int(labels[bad_index])} at row {bad_index} is outside 0..{num_classes - 1} "
                            f"({num_classes} class names)", path=path, split=split,
                            fix="labels must index class_names; check the class list or the label offset "
                                "(1-based labels need -1)")
    out = labels.astype(np.int64, copy=True)
    out.setflags(write=False)
    return out


# ----------------------------------------------------------------------------- model info

@dataclass(frozen=True)
class ModelInfo:
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
        self._samples: dict[str, tuple[np.ndarray, list[str]]] = {}
        self._labels: dict[str, np.ndarray] = {}
        self._lock = threading.RLock()
        self._signals: OrderedDict[tuple, object] = OrderedDict()

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
        validate_manifest(manifest, path / MANIFEST)
        bank = cls(path, manifest, allow_incomplete=allow_incomplete)
        if validate:
            bank.validate()
        return bank

    def validate(self, *, values: bool = False) -> None:
        """Check files against the manifest; values=True also scans every logits file for NaN/inf."""
        manifest_path = self.path / MANIFEST
        if not self.splits and not self.allow_incomplete:
            raise BankError("bank has no splits", path=manifest_path,
                            fix="add a split with `cascade-explorer import` or `precompute`")
        if not self.models and not self.allow_incomplete:
            raise BankError("bank has no models", path=manifest_path,
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
                            path=folder / LABELS, split=split,
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
            raise BankError(f"unknown model {model_id!r}", path=self.path / MANIFEST, model=model_id,
                            fix=f"use one of: {', '.join(self.model_ids) or '(no models)'}") from None

    def check_cost_order(self, models) -> None:
        """UsageError unless `models` run cheapest first (a cascade asks a dearer model only when a
        cheaper one is unsure); the message gives the right order with each model's GMACs."""
        from .errors import UsageError

        costs = [self.model(m).gmacs for m in models]
        if any(b < a for a, b in zip(costs, costs[1:])):
            known = self.model_ids
            ordered = sorted(models, key=lambda m: (self.model(m).gmacs, known.index(m)))
            listing = ", ".join(f"{m} ({self.model(m).gmacs:.4g} GMACs)" for m in ordered)
            raise UsageError(f"models must be ordered by cost, cheapest first: {','.join(ordered)} [{listing}]")

    def _check_split(self, split: str) -> str:
        if split not in self.manifest["splits"]:
            raise BankError(f"unknown split {split!r}", path=self.path / MANIFEST, split=split,
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
                ids, images = read_samples(split_dir(self.path, split) / SAMPLES, split=split)
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
                path = split_dir(self.path, split) / LABELS
                if not path.is_file():
                    raise BankError("labels.npy is a folder, not a file" if path.is_dir() else "labels.npy is missing",
                                    path=path, split=split,
                                    fix="re-create the split (re-run import/precompute)")
                read_npy_header(path)
                self._labels[split] = check_labels(np.load(path, allow_pickle=False), self.num_classes,
                                                   path=path, split=split)
            return self._labels[split]

    def logits(self, model_id: str, split: str) -> np.ndarray:
        """(N, C) float16/float32 logits, memory-mapped read-only (rows in samples.csv order)."""
        self.model(model_id)
        self._check_split(split)
        path = logits_path(self.path, model_id, split)
        if split not in self._by_id[model_id].top1:
            raise BankError("model has no logits for this split", path=path, model=model_id, split=split,
                            fix=f"use a model with logits for it: {', '.join(self.models_for(split)) or 'none'}")
        if not path.is_file():
            raise BankError("logits file is a folder, not a file" if path.is_dir() else
                            "logits file is missing although manifest.json records it", path=path,
                            model=model_id, split=split, fix="re-run import/precompute for this model and split")
        self._check_logits_header(model_id, split, self.n_samples(split))
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        _check_finite_file(path, array, model=model_id, split=split)
        return array

    def signals(self, model_id: str, split: str, criterion: str, temperature: float = 1.0):
        """ModelSignals (confidence, prediction, correct) of one model; memoised per arguments."""
        from .signals import model_signals   # engine module; imported lazily (bank is the lower layer)

        key = (model_id, split, criterion, float(temperature))
        with self._lock:
            if key in self._signals:
                self._signals.move_to_end(key)
                return self._signals[key]
        result = model_signals(self.logits(model_id, split), self.labels(split), criterion, temperature)
        with self._lock:
            self._signals[key] = result
            while len(self._signals) > SIGNALS_CACHE_SIZE:
                self._signals.popitem(last=False)
        return result

    def latency_devices(self) -> list[str]:
        """Devices with latency figures, in first-seen order over the models (cheapest first)."""
        devices: dict[str, None] = {}
        for model in self.models:
            for device in model.latency_ms:
                devices.setdefault(device, None)
        return list(devices)


# ----------------------------------------------------------------------------- BankWriter

def _new_manifest(create: dict, path: Path) -> dict:
    dataset = dict(create.get("dataset") or {})
    dataset.setdefault("name", path.name)
    dataset.setdefault("description", "")
    dataset.setdefault("licence", "unknown")
    dataset.setdefault("caveats", [])
    dataset.setdefault("task", "image-classification")
    class_names = create.get("class_names")
    if not isinstance(class_names, (list, tuple)) or not class_names:
        raise BankError("a new bank needs a non-empty list of class names", path=path,
                        fix="pass create={'dataset': {...}, 'class_names': [...]}")
    return {"schema_version": SCHEMA_VERSION, "dataset": dataset,
            "class_names": [str(n) for n in class_names], "splits": {}, "models": {}}


class BankWriter:
    """Creates or extends a bank. Each call writes its own files, then manifest.json, atomically."""

    def __init__(self, path, *, create: dict | None = None):
        self.path = Path(path).expanduser()
        self._manifest_path = self.path / MANIFEST
        if self._manifest_path.exists():
            self.manifest = load_manifest(self._manifest_path)
            validate_manifest(self.manifest, self._manifest_path)
            if create is not None and create.get("class_names") is not None:
                wanted = [str(n) for n in create["class_names"]]
                have = self.manifest["class_names"]
                if wanted != have:
                    detail = (f"{len(have)} classes there, {len(wanted)} given" if len(wanted) != len(have)
                              else f"first difference at index "
                                   f"{next(i for i, (a, b) in enumerate(zip(have, wanted)) if a != b)}")
                    raise BankError(f"existing bank has different class names ({detail})",
                                    path=self._manifest_path,
                                    fix="write to a new folder, or use the existing bank's class list")
        else:
            if create is None:
                raise BankError("no bank here (manifest.json missing)", path=self._manifest_path,
                                fix="create it: BankWriter(path, create={'dataset': {...}, 'class_names': [...]})")
            if self.path.exists() and not self.path.is_dir():
                raise BankError("exists and is not a folder", path=self.path, fix="choose another output path")
            if self.path.is_dir() and any(not is_temp_name(p.name) for p in self.path.iterdir()):
                raise BankError("folder exists, is not empty and has no manifest.json", path=self.path,
                                fix="choose a new or empty folder for the bank")
            self.manifest = _new_manifest(create, self.path)
            validate_manifest(self.manifest, self._manifest_path)
            self.path.mkdir(parents=True, exist_ok=True)
            self._write_manifest()

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest["class_names"])

    @property
    def num_classes(self) -> int:
        return len(self.manifest["class_names"])

    def _write_manifest(self) -> None:
        validate_manifest(self.manifest, self._manifest_path)
        atomic_write_json(self._manifest_path, self.manifest)

    def _model_entry(self, model_id: str) -> dict:
        if model_id not in self.manifest["models"]:
            raise BankError(f"unknown model {model_id!r}", path=self._manifest_path, model=model_id,
                            fix="call add_model first")
        return self.manifest["models"][model_id]

    def _check_split(self, split: str) -> dict:
        if split not in self.manifest["splits"]:
            raise BankError(f"unknown split {split!r}", path=self._manifest_path, split=split,
                            fix="call add_split first")
        return self.manifest["splits"][split]

    def n_samples(self, split: str) -> int:
        self._check_split(split)
        return read_npy_header(split_dir(self.path, split) / LABELS)[0][0]

    def labels(self, split: str) -> np.ndarray:
        self._check_split(split)
        path = split_dir(self.path, split) / LABELS
        read_npy_header(path)
        return check_labels(np.load(path, allow_pickle=False), self.num_classes, path=path, split=split)

    def add_split(self, name, sample_ids, image_paths, labels, *, description="", image_source=None,
                  transform=None, skipped=()) -> None:
        """Add a split (samples.csv + labels.npy). Re-adding identical samples only updates metadata."""
        check_id("split", name, path=self._manifest_path)
        folder = split_dir(self.path, name)
        if isinstance(sample_ids, (str, bytes)) or isinstance(image_paths, (str, bytes)):
            raise BankError("sample ids and image paths must be lists, not a string", path=folder / SAMPLES,
                            split=name, fix="pass one id (and one image path) per sample")
        ids = [str(s) for s in sample_ids]
        images = ["" if p is None else str(p) for p in image_paths]
        if not ids:
            raise BankError("a split needs at least one sample", path=folder / SAMPLES, split=name,
                            fix="pass the split's sample ids, image paths and labels")
        if len(images) != len(ids):
            raise BankError(f"{len(ids)} sample ids but {len(images)} image paths", path=folder / SAMPLES,
                            split=name, fix="pass one image path per sample ('' when there is no image)")
        if any(not s for s in ids):
            raise BankError("empty sample id", path=folder / SAMPLES, split=name, fix="give every sample an id")
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            duplicate = next(i for i in ids if i in seen or seen.add(i))
            raise BankError(f"duplicate sample id {duplicate!r}", path=folder / SAMPLES, split=name,
                            fix="make sample ids unique")
        labels = check_labels(labels, self.num_classes, path=folder / LABELS, split=name)
        if len(labels) != len(ids):
            raise BankError(f"{len(labels)} labels but {len(ids)} samples", path=folder / LABELS, split=name,
                            fix="pass one label per sample")
        entry = {"description": str(description), "image_source": image_source, "transform": transform,
                 "skipped": [dict(s) for s in skipped]}
        if name in self.manifest["splits"]:
            existing_ids, _ = read_samples(folder / SAMPLES, split=name)
            if list(existing_ids) != ids or not np.array_equal(self.labels(name), labels):
                raise BankError("split already exists with different samples or labels", path=folder, split=name,
                                fix="use another split name, or write to a new bank")
        else:
            buffer = io.StringIO(newline="")
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(SAMPLES_HEADER)
            writer.writerows(zip(ids, images))
            (folder / LOGITS_DIR).mkdir(parents=True, exist_ok=True)
            atomic_write_text(folder / SAMPLES, buffer.getvalue())
            atomic_save_npy(folder / LABELS, labels)
        self.manifest["splits"][name] = entry
        self._write_manifest()

    def add_model(self, model_id, *, display_name, backend, source, gmacs, params=None, spec=None,
                  input_size=None, preprocessing=None, latency_ms=None) -> None:
        """Add or update a model's metadata (its recorded top1 and, unless given, latency are kept)."""
        check_id("model", model_id, path=self._manifest_path)
        old = self.manifest["models"].get(model_id, {})
        entry = {
            "display_name": str(display_name or model_id),
            "backend": str(backend),
            "source": dict(source or {}),
            "spec": spec,
            "input_size": None if input_size is None else [int(v) for v in input_size],
            "preprocessing": dict(preprocessing or {}),
            "gmacs": float(gmacs) if _is_number(gmacs) else gmacs,
            "params": None if params is None else int(params),
            "latency_ms": ({d: {b: float(v) for b, v in vals.items()} for d, vals in latency_ms.items()}
                           if latency_ms is not None else dict(old.get("latency_ms", {}))),
            "top1": dict(old.get("top1", {})),
        }
        _validate_model_entry(model_id, entry, self.manifest["splits"], self._manifest_path)
        self.manifest["models"][model_id] = entry
        self._write_manifest()

    def has_logits(self, model_id: str, split: str) -> bool:
        entry = self.manifest["models"].get(model_id)
        return (entry is not None and split in entry.get("top1", {})
                and logits_path(self.path, model_id, split).is_file())

    def add_logits(self, model_id: str, split: str, logits) -> float:
        """Validate (shape, dtype, finite), save atomically, record top1; returns top1 accuracy."""
        entry = self._model_entry(model_id)
        self._check_split(split)
        path = logits_path(self.path, model_id, split)
        array = np.asanyarray(logits)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        if array.dtype not in LOGITS_DTYPES:
            raise BankError(f"logits dtype is {array.dtype}; float16 or float32 expected", path=path,
                            model=model_id, split=split, fix="convert with .astype('float32')")
        labels = self.labels(split)
        if array.ndim != 2 or array.shape != (len(labels), self.num_classes):
            raise BankError(f"logits shape {array.shape} does not match (N={len(labels)}, C={self.num_classes})",
                            path=path, model=model_id, split=split,
                            fix="one row per sample (samples.csv order), one column per class")
        bad_row = first_non_finite_row(array)
        if bad_row is not None:
            raise BankError(f"logits contain NaN or inf (first at row {bad_row})", path=path, model=model_id,
                            split=split, fix="check the model output for overflow; nothing was written")
        correct = 0
        for start in range(0, len(labels), SCAN_CHUNK_ROWS):
            chunk = np.asarray(array[start:start + SCAN_CHUNK_ROWS])
            correct += int((chunk.argmax(axis=1) == labels[start:start + SCAN_CHUNK_ROWS]).sum())
        top1 = correct / len(labels) if len(labels) else 0.0
        atomic_save_npy(path, array)
        with _FINITE_LOCK:   # just scanned: later reads of this exact file need not scan again
            _FINITE_CHECKED[_file_key(path)] = True
        entry.setdefault("top1", {})[split] = top1
        self._write_manifest()
        return top1

    def set_latency(self, model_id: str, device: str, values: dict) -> None:
        """Record latency (ms) on `device`, e.g. {"batch_1": 3.1, "batch_32": 1.2}."""
        entry = self._model_entry(model_id)
        clean = {}
        for batch, value in values.items():
            if not _is_number(value) or value < 0:
                raise BankError(f"latency {batch}={value!r} must be a number >= 0", path=self._manifest_path,
                                model=model_id, fix="pass milliseconds as non-negative numbers")
            clean[str(batch)] = float(value)
        entry.setdefault("latency_ms", {})[str(device)] = clean
        self._write_manifest()

    def set_dataset(self, **fields) -> None:
        """Update dataset metadata (name, description, licence, caveats, task)."""
        self.manifest["dataset"].update(fields)
        self._write_manifest()

    def open(self, **kwargs) -> Bank:
        return Bank.open(self.path, **kwargs)
