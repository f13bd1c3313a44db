"""Writing a bank: `BankWriter` creates or extends one, file by file, each write atomic.

Each call writes its own files, then manifest.json; callers never touch the manifest dict or
spell a file name (they use the methods here and `format`'s path functions). `undo_on_failure`
rolls a multi-step write back when one step fails; `remove_leftover_temp_files` clears the temp
files a killed writer left.
"""

from __future__ import annotations

import copy
import csv
import io
import shutil
from pathlib import Path

import numpy as np

from ..atomic import (atomic_save_npy, atomic_write_bytes, atomic_write_json, atomic_write_text, atomic_write_with,
                      is_temp_name)
from ..errors import BankError
from .format import (LOGITS_DTYPES, LOGITS_DIR, SAMPLES_HEADER, SCAN_CHUNK_ROWS, SCHEMA_VERSION, check_id, check_labels,
                     is_number, labels_path, load_manifest, logits_path, manifest_path,
                     mark_finite, read_npy_header, read_samples, samples_path, split_dir, validate_manifest,
                     validate_model_entry)
from .reader import Bank

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
        self._manifest_path = manifest_path(self.path)
        if self._manifest_path.exists():
            self._manifest = load_manifest(self._manifest_path)
            validate_manifest(self._manifest, self._manifest_path)
            if create is not None and create.get("class_names") is not None:
                wanted = [str(n) for n in create["class_names"]]
                have = self._manifest["class_names"]
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
            self._manifest = _new_manifest(create, self.path)
            validate_manifest(self._manifest, self._manifest_path)
            self.path.mkdir(parents=True, exist_ok=True)
            self._write_manifest()

    @property
    def class_names(self) -> list[str]:
        return list(self._manifest["class_names"])

    @property
    def num_classes(self) -> int:
        return len(self._manifest["class_names"])

    def _write_manifest(self) -> None:
        validate_manifest(self._manifest, self._manifest_path)
        atomic_write_json(self._manifest_path, self._manifest)

    def _model_entry(self, model_id: str) -> dict:
        if model_id not in self._manifest["models"]:
            raise BankError(f"unknown model {model_id!r}", path=self._manifest_path, model=model_id,
                            fix="call add_model first")
        return self._manifest["models"][model_id]

    def _check_split(self, split: str) -> dict:
        if split not in self._manifest["splits"]:
            raise BankError(f"unknown split {split!r}", path=self._manifest_path, split=split,
                            fix="call add_split first")
        return self._manifest["splits"][split]

    def n_samples(self, split: str) -> int:
        self._check_split(split)
        return read_npy_header(labels_path(self.path, split))[0][0]

    def labels(self, split: str) -> np.ndarray:
        self._check_split(split)
        path = labels_path(self.path, split)
        read_npy_header(path)
        return check_labels(np.load(path, allow_pickle=False), self.num_classes, path=path, split=split)

    def add_split(self, name, sample_ids, image_paths, labels, *, description="", image_source=None,
                  transform=None, skipped=()) -> None:
        """Add a split (samples.csv + labels.npy). Re-adding identical samples only updates metadata."""
        check_id("split", name, path=self._manifest_path)
        folder = split_dir(self.path, name)
        if isinstance(sample_ids, (str, bytes)) or isinstance(image_paths, (str, bytes)):
            raise BankError("sample ids and image paths must be lists, not a string", path=samples_path(self.path, name),
                            split=name, fix="pass one id (and one image path) per sample")
        ids = [str(s) for s in sample_ids]
        images = ["" if p is None else str(p) for p in image_paths]
        if not ids:
            raise BankError("a split needs at least one sample", path=samples_path(self.path, name), split=name,
                            fix="pass the split's sample ids, image paths and labels")
        if len(images) != len(ids):
            raise BankError(f"{len(ids)} sample ids but {len(images)} image paths", path=samples_path(self.path, name),
                            split=name, fix="pass one image path per sample ('' when there is no image)")
        if any(not s for s in ids):
            raise BankError("empty sample id", path=samples_path(self.path, name), split=name, fix="give every sample an id")
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            duplicate = next(i for i in ids if i in seen or seen.add(i))
            raise BankError(f"duplicate sample id {duplicate!r}", path=samples_path(self.path, name), split=name,
                            fix="make sample ids unique")
        labels = check_labels(labels, self.num_classes, path=labels_path(self.path, name), split=name)
        if len(labels) != len(ids):
            raise BankError(f"{len(labels)} labels but {len(ids)} samples", path=labels_path(self.path, name), split=name,
                            fix="pass one label per sample")
        entry = {"description": str(description), "image_source": image_source, "transform": transform,
                 "skipped": [dict(s) for s in skipped]}
        if name in self._manifest["splits"]:
            existing_ids, _ = read_samples(samples_path(self.path, name), split=name)
            if list(existing_ids) != ids or not np.array_equal(self.labels(name), labels):
                raise BankError("split already exists with different samples or labels", path=folder, split=name,
                                fix="use another split name, or write to a new bank")
        else:
            buffer = io.StringIO(newline="")
            writer = csv.writer(buffer, lineterminator="\n")
            writer.writerow(SAMPLES_HEADER)
            writer.writerows(zip(ids, images))
            (folder / LOGITS_DIR).mkdir(parents=True, exist_ok=True)
            atomic_write_text(samples_path(self.path, name), buffer.getvalue())
            atomic_save_npy(labels_path(self.path, name), labels)
        self._manifest["splits"][name] = entry
        self._write_manifest()

    def add_model(self, model_id, *, display_name, backend, source, gmacs, params=None, spec=None,
                  input_size=None, preprocessing=None, latency_ms=None) -> None:
        """Add or update a model's metadata (its recorded top1 and, unless given, latency are kept)."""
        check_id("model", model_id, path=self._manifest_path)
        old = self._manifest["models"].get(model_id, {})
        entry = {
            "display_name": str(display_name or model_id),
            "backend": str(backend),
            "source": dict(source or {}),
            "spec": spec,
            "input_size": None if input_size is None else [int(v) for v in input_size],
            "preprocessing": dict(preprocessing or {}),
            "gmacs": float(gmacs) if is_number(gmacs) else gmacs,
            "params": None if params is None else int(params),
            "latency_ms": ({d: {b: float(v) for b, v in vals.items()} for d, vals in latency_ms.items()}
                           if latency_ms is not None else dict(old.get("latency_ms", {}))),
            "top1": dict(old.get("top1", {})),
        }
        validate_model_entry(model_id, entry, self._manifest["splits"], self._manifest_path)
        self._manifest["models"][model_id] = entry
        self._write_manifest()

    def has_logits(self, model_id: str, split: str) -> bool:
        entry = self._manifest["models"].get(model_id)
        return (entry is not None and split in entry.get("top1", {})
                and logits_path(self.path, model_id, split).is_file())

    def add_logits(self, model_id: str, split: str, logits, *, on_chunk=None) -> float:
        """Validate, save atomically and record top1 of one model's logits on one split; returns top1.

        logits: (N, C) float16/float32, or float64 (stored as float32), e.g. memory-mapped: it is
        read, checked (finite), counted (top1) and written one row chunk at a time, so memory stays
        bounded whatever N and the source is read once. on_chunk(start_row, stored_chunk): called
        with each chunk as stored (e.g. to compute signals on the same pass). Raises BankError for a
        wrong dtype or shape, or NaN/inf (naming the first row); nothing is written then.
        """
        entry = self._model_entry(model_id)
        self._check_split(split)
        path = logits_path(self.path, model_id, split)
        array = np.asanyarray(logits)
        stored = np.dtype(np.float32) if array.dtype == np.float64 else array.dtype
        if stored not in LOGITS_DTYPES:
            raise BankError(f"logits dtype is {array.dtype}; float16 or float32 expected", path=path,
                            model=model_id, split=split, fix="convert with .astype('float32')")
        labels = self.labels(split)
        if array.ndim != 2 or array.shape != (len(labels), self.num_classes):
            raise BankError(f"logits shape {array.shape} does not match (N={len(labels)}, C={self.num_classes})",
                            path=path, model=model_id, split=split,
                            fix="one row per sample (samples.csv order), one column per class")
        correct = 0

        def write(handle) -> None:
            nonlocal correct
            header = {"descr": np.lib.format.dtype_to_descr(stored), "fortran_order": False, "shape": array.shape}
            np.lib.format.write_array_header_1_0(handle, header)   # the header np.save writes for this array
            for start in range(0, len(labels), SCAN_CHUNK_ROWS):
                chunk = np.asarray(array[start:start + SCAN_CHUNK_ROWS]).astype(stored, copy=False)
                finite = np.isfinite(chunk).all(axis=1)
                if not finite.all():
                    row = start + int(np.flatnonzero(~finite)[0])
                    raise BankError(f"logits contain NaN or inf (first at row {row})", path=path, model=model_id,
                                    split=split, fix="check the model output for overflow; nothing was written")
                correct += int((chunk.argmax(axis=1) == labels[start:start + SCAN_CHUNK_ROWS]).sum())
                if on_chunk is not None:
                    on_chunk(start, chunk)
                handle.write(np.ascontiguousarray(chunk).tobytes())

        atomic_write_with(path, write)
        mark_finite(path)   # just scanned: later reads of this exact file need not scan again
        entry.setdefault("top1", {})[split] = correct / len(labels) if len(labels) else 0.0
        self._write_manifest()
        return entry["top1"][split]

    def set_latency(self, model_id: str, device: str, values: dict) -> None:
        """Record latency (ms) on `device`, e.g. {"batch_1": 3.1, "batch_32": 1.2}."""
        entry = self._model_entry(model_id)
        clean = {}
        for batch, value in values.items():
            if not is_number(value) or value < 0:
                raise BankError(f"latency {batch}={value!r} must be a number >= 0", path=self._manifest_path,
                                model=model_id, fix="pass milliseconds as non-negative numbers")
            clean[str(batch)] = float(value)
        entry.setdefault("latency_ms", {})[str(device)] = clean
        self._write_manifest()

    def set_dataset(self, **fields) -> None:
        """Update dataset metadata (name, description, licence, caveats, task)."""
        self._manifest["dataset"].update(fields)
        self._write_manifest()

    # -- what callers may read back (copies: the manifest dict is the writer's own)

    def has_split(self, split: str) -> bool:
        return split in self._manifest["splits"]

    def split_entry(self, split: str) -> dict | None:
        """A copy of the split's manifest entry (description, image_source, transform, skipped), or None."""
        entry = self._manifest["splits"].get(split)
        return None if entry is None else copy.deepcopy(entry)

    def sample_ids(self, split: str) -> list[str]:
        """The split's sample ids, in samples.csv order."""
        self._check_split(split)
        return list(read_samples(samples_path(self.path, split), split=split)[0])

    def has_model(self, model_id: str) -> bool:
        return model_id in self._manifest["models"]

    def model_entry(self, model_id: str) -> dict:
        """A copy of the model's manifest entry ({} for a model not in the bank)."""
        return copy.deepcopy(self._manifest["models"].get(model_id, {}))

    def open(self, **kwargs) -> Bank:
        """The bank as written so far, opened for reading (Bank.open's keyword arguments)."""
        return Bank.open(self.path, **kwargs)


class undo_on_failure:
    """A failed multi-step write removes what it added: a new bank's files (and its folder, if this
    run created it), or, for an existing bank, new files and the previous manifest.json."""

    def __init__(self, out, *, new: bool):
        self.out, self.new = Path(out), new

    def __enter__(self):
        self.created_folder = not self.out.exists()
        self.before = {p for p in self.out.rglob("*")} if self.out.is_dir() else set()
        manifest = manifest_path(self.out)
        self.manifest = manifest.read_bytes() if manifest.is_file() else None
        return self

    def __exit__(self, kind, error, traceback):
        if kind is None:
            return False
        try:
            if self.new and self.created_folder:
                shutil.rmtree(self.out, ignore_errors=True)
                return False
            added = [p for p in self.out.rglob("*") if p not in self.before] if self.out.is_dir() else []
            for path in sorted(added, key=lambda p: len(p.parts), reverse=True):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            if self.manifest is not None:
                atomic_write_bytes(manifest_path(self.out), self.manifest)
        except OSError:
            pass   # report the original error, not the clean-up's
        return False


def remove_leftover_temp_files(out, log=None) -> list[Path]:
    """Delete temp files a killed writer left (never data: atomic writes only rename complete files);
    returns the paths removed, each also passed to `log` when given.

    Assumes one writer per bank at a time, as precompute does.
    """
    out = Path(out)
    removed: list[Path] = []
    if not out.is_dir():
        return removed
    for path in [out, *out.rglob("*")]:
        if path.is_file() and is_temp_name(path.name):
            path.unlink()
            removed.append(path)
            if log is not None:
                log(f"removed a temp file left by an interrupted run: {path}")
    return removed
