"""The signal store: what the engine needs from each model's logits, computed once and kept on disk.

A cascade only needs, per model, split, criterion and temperature, each sample's confidence and
prediction (correctness is prediction == label). Those are ~0.5 MB per model and criterion at
N = 50,000 (float64 confidence, int16/int32 prediction) instead of 100 MB of float16 logits, so
after the first pass every question costs a file read, not a pass over the logits.

What is stored, per logits file *version* (size, mtime, inode: a rewritten or re-imported file
gets new entries and its old ones are dropped):

- ``signals-<criterion>-<temperature>.npz``: confidence and prediction (bit-identical to
  `core.signals.model_signals` on the same file, which computes them);
- ``correct-<labels version>.npz``: the packed correctness bits (criterion- and
  temperature-free): what the single-model hull needs of every model, 6 KB at N = 50,000;
- ``temperature-<calibration rows>.json``: fitted NLL temperatures, keyed by the exact rows of
  the calibration part (so by split, calibration fraction and seed) and the labels version;
- ``finite.json``: the logits file passed the NaN/inf scan (the store's own passes check every
  value, so a file read through the store is never scanned twice).

Where: ``BANK/.signal-store/`` when the bank folder is writable, else the user's cache directory
(platformdirs) under a hash of the bank's path. Every entry is written atomically (without fsync:
derived data, and a loss after a crash is caught by the checksum and recomputed); a file lock per
model and split keeps two processes filling it at once from clobbering each other; an entry that
fails to load or whose checksum or length is wrong is recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
import zlib
from pathlib import Path

import numpy as np
from filelock import FileLock

from .atomic import atomic_save_npz, atomic_write_text
from .errors import BankError, UsageError
from .signals import ModelSignals, SignalSource, model_signals

STORE_DIRNAME = ".signal-store"
FORMAT_VERSION = 1
MARKER = "STORE.json"          # identifies a folder as a signal store (clear() deletes only those)
DEFAULT_CRITERION = "max_softmax"
LOCK_TIMEOUT_S = 600.0


def default_root(bank_path) -> Path:
    """Where the store of the bank at `bank_path` lives: inside the bank when it is writable, else in
    the user's cache directory (platformdirs) under a hash of the bank's resolved path."""
    bank_path = Path(bank_path).resolve()
    inside = bank_path / STORE_DIRNAME
    if os.access(inside if inside.exists() else bank_path, os.W_OK):
        return inside
    import platformdirs

    digest = hashlib.sha256(str(bank_path).encode()).hexdigest()[:16]
    return Path(platformdirs.user_cache_dir("cascade-explorer")) / "signal-store" / f"{bank_path.name}-{digest}"


def _crc(*arrays: np.ndarray) -> int:
    value = 0
    for array in arrays:
        value = zlib.crc32(np.ascontiguousarray(array).view(np.uint8), value)
    return value


def _float_key(value: float) -> str:
    return float(value).hex().replace(".", "_").replace("+", "")


class SignalStore(SignalSource):
    """A persistent SignalSource (see the module docstring): plug it into a BankAnalysis.

    root: the store folder (default: `default_root` of the bank, decided per bank). workers:
    threads of the cold pass (None = every core). Raises BankError for a damaged logits file
    (NaN/inf, naming the row), as the computation would.
    """

    def __init__(self, root=None, *, workers: int | None = None):
        self._root = None if root is None else Path(root)
        self.workers = workers
        self.computed = 0       # entries computed (not loaded) by this object: tests and benchmarks read it
        self.loaded = 0

    # -- where things are

    def root(self, bank) -> Path:
        return self._root if self._root is not None else default_root(bank.path)

    def _folder(self, bank, model_id: str, split: str) -> tuple[Path, str]:
        from .bank import logits_path

        version = bank.file_version(logits_path(bank.path, model_id, split))
        return self.root(bank) / "splits" / split / model_id / version, version

    def _labels_version(self, bank, split: str) -> str:
        from .bank import labels_path

        return bank.file_version(labels_path(bank.path, split))

    def _lock(self, folder: Path) -> FileLock:
        folder.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(folder.parent / ".lock"), timeout=LOCK_TIMEOUT_S)

    def _ensure_root(self, bank) -> Path:
        """The store's folder, created with its marker (what `clear` checks before deleting)."""
        root = self.root(bank)
        root.mkdir(parents=True, exist_ok=True)
        marker = root / MARKER
        if not marker.is_file():
            atomic_write_text(marker, json.dumps({"format": FORMAT_VERSION, "bank": str(Path(bank.path).resolve()),
                                                  "what": "cascade-explorer signal store: derived data, safe to "
                                                          "delete (`cascade-explorer cache clear`)"}))
        return root

    def _prepare(self, bank, folder: Path) -> None:
        """Create the entry folder (and the store's marker); drop other versions of the same file."""
        self._ensure_root(bank)
        if folder.parent.is_dir():
            for stale in folder.parent.iterdir():
                if stale.is_dir() and stale.name != folder.name:
                    shutil.rmtree(stale, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)

    # -- the SignalSource seam

    def model_signals(self, bank, model_id: str, split: str, criterion: str, temperature: float = 1.0) -> ModelSignals:
        folder, _ = self._folder(bank, model_id, split)
        path = folder / f"signals-{criterion}-{_float_key(temperature)}.npz"
        labels = bank.labels(split)
        loaded = self._load_signals(path, len(labels))
        if loaded is None:
            with self._lock(folder):
                loaded = self._load_signals(path, len(labels))   # another process may have just written it
                if loaded is None:
                    loaded = self._compute(bank, model_id, split, criterion, temperature, folder, path)
                    self.computed += 1
                    return loaded
        self.loaded += 1
        confidence, prediction = loaded
        return ModelSignals(confidence, prediction, prediction == labels)

    def correct(self, bank, model_id: str, split: str) -> np.ndarray:
        """bool (N,): the model's argmax equals the label (criterion- and temperature-free)."""
        folder, _ = self._folder(bank, model_id, split)
        n = bank.n_samples(split)
        path = folder / f"correct-{self._labels_version(bank, split)}.npz"
        bits = self._load_bits(path, n)
        if bits is None:
            signals = self.model_signals(bank, model_id, split, DEFAULT_CRITERION, 1.0)
            return signals.correct
        return bits

    def correct_counts(self, bank, model_ids, split: str, rows: np.ndarray | None) -> np.ndarray:
        """int64 (len(model_ids),): right answers of each model on `rows` of `split` (None: all), from one
        summary file per (split, rows, labels version) that holds each model's count next to the version
        of the logits file it was counted from: a model whose file changed (or that is new) is counted
        again from its stored correctness bits and the summary rewritten; a damaged summary is rebuilt."""
        from .bank import logits_path

        model_ids = list(model_ids)
        n = bank.n_samples(split)
        index = None if rows is None else np.ascontiguousarray(rows, dtype=np.int64)
        key = "all" if index is None else hashlib.sha256(index.view(np.uint8)).hexdigest()[:20]
        folder = self.root(bank) / "splits" / split
        path = folder / f"accuracy-{key}-{self._labels_version(bank, split)}.json"
        n_rows = n if index is None else len(index)
        versions = [bank.file_version(logits_path(bank.path, m, split)) for m in model_ids]
        stored = self._load_counts(path, n_rows)
        missing = [i for i, (m, v) in enumerate(zip(model_ids, versions)) if stored.get(m, (None,))[0] != v]
        if missing:
            self._ensure_root(bank)
            folder.mkdir(parents=True, exist_ok=True)
            with FileLock(str(folder / ".accuracy.lock"), timeout=LOCK_TIMEOUT_S):
                stored = self._load_counts(path, n_rows)     # another process may have just added some
                for i in missing:
                    if stored.get(model_ids[i], (None,))[0] == versions[i]:
                        continue
                    correct = self.correct(bank, model_ids[i], split)
                    stored[model_ids[i]] = (versions[i], int(np.count_nonzero(correct if index is None
                                                                                else correct[index])))
                atomic_write_text(path, json.dumps({"format": FORMAT_VERSION, "n_rows": int(n_rows),
                                                    "models": {m: list(v) for m, v in stored.items()}}),
                                  durable=False)
                self.computed += 1
        else:
            self.loaded += 1
        return np.array([stored[m][1] for m in model_ids], dtype=np.int64)

    @staticmethod
    def _load_counts(path: Path, n_rows: int) -> dict:
        """{model: (logits version, count)} of a summary file; {} when missing or damaged."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format") != FORMAT_VERSION or data.get("n_rows") != n_rows:
                return {}
            out = {}
            for model, (version, count) in data["models"].items():
                if not isinstance(version, str) or not isinstance(count, int) or not 0 <= count <= n_rows:
                    return {}
                out[model] = (version, count)
            return out
        except (OSError, ValueError, KeyError, TypeError, AttributeError, json.JSONDecodeError):
            return {}

    def temperature_fit(self, bank, model_id: str, split: str, calibration_rows: np.ndarray):
        """The stored TemperatureFit for these calibration rows (computed once: NLL, ECE and flags too)."""
        folder, _ = self._folder(bank, model_id, split)
        rows = np.ascontiguousarray(calibration_rows, dtype=np.int64)
        key = hashlib.sha256(rows.view(np.uint8)).hexdigest()[:20]
        path = folder / f"temperature-{key}-{self._labels_version(bank, split)}.json"
        fit = self._load_temperature_fit(path, len(rows))
        if fit is not None:
            self.loaded += 1
            return fit
        with self._lock(folder):
            fit = self._load_temperature_fit(path, len(rows))
            if fit is None:
                fit = super().temperature_fit(bank, model_id, split, rows)
                self._prepare(bank, folder)
                # the temperature in hex: the stored value is the fitted float, bit for bit
                atomic_write_text(path, json.dumps({"format": FORMAT_VERSION, "n_rows": int(len(rows)),
                                                    "temperature": float(fit.temperature).hex(),
                                                    "fit": fit.to_dict()}), durable=False)
                self.computed += 1
        return fit

    # -- filling

    def fill(self, bank, model_ids=None, splits=None, criteria=(DEFAULT_CRITERION,), progress: bool = False,
             log=None) -> int:
        """Compute every missing entry for these models (default: all), splits (default: all) and
        criteria at temperature 1; returns how many entries were computed. The cold pass runs
        over one model at a time, its row chunks on every core (`workers`)."""
        from .criteria import check_criterion

        criteria = [check_criterion(c) for c in criteria]
        splits = list(bank.splits if splits is None else splits)
        jobs = [(m, s) for s in splits for m in (bank.models_for(s) if model_ids is None else model_ids)
                if bank.has_logits(m, s)]
        before = self.computed
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(jobs) * len(criteria), desc="signal store", unit="model", dynamic_ncols=True)
        for model_id, split in jobs:
            for criterion in criteria:
                if bar is not None:
                    bar.set_postfix_str(f"{model_id} ({split})", refresh=False)
                self.model_signals(bank, model_id, split, criterion, 1.0)
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        if log is not None and self.computed > before:
            log(f"signal store: {self.computed - before} entr{'y' if self.computed - before == 1 else 'ies'} "
                f"computed in {self.root(bank)}")
        return self.computed - before

    # -- inspecting and clearing

    def info(self, bank) -> dict:
        """What the store holds for this bank: root, entries per kind, bytes, models per split."""
        root = self.root(bank)
        out = {"root": str(root), "exists": root.is_dir(), "bytes": 0, "signals": 0, "correct": 0,
               "temperatures": 0, "accuracy_summaries": 0, "models": {}}
        if not root.is_dir():
            return out
        for path in root.rglob("*"):
            if not path.is_file():
                continue
            out["bytes"] += path.stat().st_size
            kind = path.name.split("-", 1)[0]
            if kind in ("signals", "correct"):
                out[kind] += 1
            elif kind == "temperature":
                out["temperatures"] += 1
            elif kind == "accuracy":
                out["accuracy_summaries"] += 1
            if kind == "signals":
                split, model = path.parent.parent.parent.name, path.parent.parent.name
                out["models"].setdefault(split, set()).add(model)
        out["models"] = {split: sorted(models) for split, models in out["models"].items()}
        return out

    def clear(self, bank) -> int:
        """Delete this bank's store (only a folder that carries the store's marker); returns bytes freed."""
        root = self.root(bank)
        if not root.is_dir():
            return 0
        if not (root / MARKER).is_file():
            raise UsageError(f"{root} does not look like a signal store ({MARKER} is missing); nothing deleted")
        freed = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        shutil.rmtree(root)
        return freed

    # -- entries

    def _compute(self, bank, model_id, split, criterion, temperature, folder: Path, path: Path):
        from .bank import logits_path

        labels = bank.labels(split)
        # the pass below checks every value, so the bank's own NaN/inf scan (another full read) is skipped
        logits = bank.logits(model_id, split, check_finite=False)
        try:
            signals = model_signals(logits, labels, criterion, temperature, workers=self.workers)
        except UsageError as error:
            if "NaN or inf" not in str(error):
                raise
            raise BankError(f"logits contain NaN or inf ({error})", path=logits_path(bank.path, model_id, split),
                            model=model_id, split=split, fix="re-export that model's logits (check the model "
                                                             "for overflow), then import again with --force") from None
        self._save(bank, split, folder, path, signals, criterion, temperature)
        return signals

    def put(self, bank, model_id: str, split: str, signals: ModelSignals, criterion: str = DEFAULT_CRITERION,
            temperature: float = 1.0) -> None:
        """Store signals computed elsewhere from the bank's current logits file (the importer's single
        pass computes them while it writes the file)."""
        folder, _ = self._folder(bank, model_id, split)
        path = folder / f"signals-{criterion}-{_float_key(temperature)}.npz"
        with self._lock(folder):
            self._save(bank, split, folder, path, signals, criterion, temperature)

    def _save(self, bank, split, folder: Path, path: Path, signals: ModelSignals, criterion, temperature) -> None:
        self._prepare(bank, folder)
        n = len(signals.confidence)
        prediction = signals.prediction.astype(np.int16) if bank.num_classes <= np.iinfo(np.int16).max \
            else signals.prediction
        meta = {"format": FORMAT_VERSION, "n": n, "crc": _crc(signals.confidence, prediction),
                "criterion": criterion, "temperature": float(temperature).hex()}
        atomic_save_npz(path, durable=False, confidence=signals.confidence, prediction=prediction,
                        meta=np.array(json.dumps(meta)))
        bits = np.packbits(signals.correct)
        bits_meta = {"format": FORMAT_VERSION, "n": n, "crc": _crc(bits)}
        atomic_save_npz(folder / f"correct-{self._labels_version(bank, split)}.npz", durable=False, bits=bits,
                        meta=np.array(json.dumps(bits_meta)))
        atomic_write_text(folder / "finite.json", json.dumps({"format": FORMAT_VERSION, "finite": True}),
                          durable=False)

    @staticmethod
    def _read_npz(path: Path, names: tuple[str, ...], n: int):
        """The named arrays of a stored entry and its meta, or None when missing or damaged."""
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                arrays = [np.array(data[name]) for name in names]
        except (OSError, ValueError, KeyError, zlib.error, EOFError, zipfile.BadZipFile, json.JSONDecodeError):
            return None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION or meta.get("n") != n:
            return None
        if meta.get("crc") != _crc(*arrays):
            return None
        return arrays

    def _load_signals(self, path: Path, n: int):
        arrays = self._read_npz(path, ("confidence", "prediction"), n)
        if arrays is None:
            return None
        confidence, prediction = arrays
        if confidence.shape != (n,) or prediction.shape != (n,) or confidence.dtype != np.float64 \
                or prediction.dtype.kind != "i" or np.isnan(confidence).any():
            return None
        return confidence, prediction.astype(np.int32)

    def _load_bits(self, path: Path, n: int):
        arrays = self._read_npz(path, ("bits",), n)
        if arrays is None or arrays[0].dtype != np.uint8 or arrays[0].shape != ((n + 7) // 8,):
            return None
        self.loaded += 1
        return np.unpackbits(arrays[0], count=n).astype(bool)

    @staticmethod
    def _load_temperature_fit(path: Path, n_rows: int):
        from .temperature import TemperatureFit

        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            fields = dict(data["fit"])
            fields["temperature"] = float.fromhex(data["temperature"])
            fields["flags"], fields["messages"] = tuple(fields["flags"]), tuple(fields["messages"])
            fit = TemperatureFit(**fields)
        except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError):
            return None
        if data.get("format") != FORMAT_VERSION or data.get("n_rows") != n_rows \
                or not (0 < fit.temperature < float("inf")):
            return None
        return fit
