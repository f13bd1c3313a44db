"""Import: build (or extend) a bank from logits a user already has (`cascade-explorer import`).

Works for any classification task (images, text, audio): it only needs labels (N,), one (N, C)
logits array per model and each model's cost. Every input is checked before anything is
written, so a mistake never leaves a half-imported bank.
"""

from __future__ import annotations

import csv
import functools
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .bank import (LOCK, MAX_COST, Bank, BankError, BankWriter, bank_folder_state, bank_lock, is_valid_id, load_manifest,
                   logits_path, read_npy_header, read_samples, samples_path, undo_on_failure)
from .bank import labels_path as split_labels_path   # `labels_path` is import_bank's parameter
from .errors import LockedError, UsageError, require_file
from .logit_inputs import to_stored_logits
from .signals import ModelSignals, chunk_signals

COST_COLUMNS = ("model", "gmacs", "params", "latency_ms", "display_name")
USER_LATENCY_DEVICE = "user-supplied"


def parse_logits_args(items) -> dict[str, Path]:
    """['NAME=PATH', ...] -> {NAME: PATH}, with one-line errors naming the logits parameter."""
    result: dict[str, Path] = {}
    for item in items or ():
        name, sep, path = str(item).partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise UsageError(f"logits {item!r}: expected NAME=PATH.npy (model name, '=', logits file)", parameter="logits")
        if name in result:
            raise UsageError(f"logits: model {name!r} given twice", parameter="logits")
        result[name] = Path(path)
    if not result:
        raise UsageError("logits: give at least one NAME=PATH.npy", parameter="logits")
    return result


def _parameter(what: str) -> str:
    """The parameter a `what` text ('logits NAME=PATH', 'costs_csv') is about: its first word."""
    return what.split()[0].split("=")[0]


def _read_lines(path, what: str) -> list[str]:
    path = require_file(path, what)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UsageError(f"{what} {path}: not UTF-8 text (one entry per line expected)", parameter=_parameter(what)) from None
    while lines and not lines[-1].strip():
        lines.pop()   # tolerate trailing blank lines
    return [line.strip() for line in lines]


def _require_file(path, what: str) -> Path:
    """require_file, written 'logits NAME=PATH: ...' when `what` ends with '='."""
    if not what.endswith("="):
        return require_file(path, what)
    try:
        return require_file(path, what[:-1])
    except UsageError as error:
        message = str(error).replace(f"{what[:-1]} {Path(path)}", f"{what}{Path(path)}", 1)
        raise UsageError(message, parameter=_parameter(what)) from None


def _load_npy(path: Path, what: str, *, mmap: bool) -> np.ndarray:
    path = _require_file(path, what)
    try:
        read_npy_header(path)
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except BankError as error:
        raise UsageError(f"{what} {path}: {error.problem} (save it with numpy.save, allow_pickle=False)", parameter=_parameter(what)) from None
    except ValueError as error:
        raise UsageError(f"{what} {path}: not a plain .npy array ({error})", parameter=_parameter(what)) from None


def _parse_number(text: str, *, column: str, model: str, costs: Path, integer: bool = False):
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"costs_csv {costs}: {column} of model {model!r} is not a number: {text!r}", parameter="costs_csv") from None
    if not np.isfinite(value) or value < 0 or value > MAX_COST:
        raise UsageError(f"costs_csv {costs}: {column} of model {model!r} must be a finite number >= 0 and "
                         f"<= {MAX_COST:g}, got {text}", parameter="costs_csv")
    if integer:
        if value != int(value):
            raise UsageError(f"costs_csv {costs}: {column} of model {model!r} must be a whole number, got {text}", parameter="costs_csv")
        return int(value)
    return value


def read_costs(path) -> dict[str, dict]:
    """costs.csv (model,gmacs[,params,latency_ms,display_name]) -> {model: {gmacs, params, latency_ms, ...}}.

    A row with more fields than the header (often a decimal comma: `a,0,1`) or too few to reach the
    required columns is an error naming the line, never silently truncated or padded.
    """
    path = require_file(path, "costs_csv")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None) or []
            columns = [c.strip() for c in header]
            if "model" not in columns or "gmacs" not in columns:
                raise UsageError(f"costs_csv {path}: header must include 'model' and 'gmacs' "
                                 f"(columns model,gmacs[,params,latency_ms]), got {columns}", parameter="costs_csv")
            unknown = [c for c in columns if c not in COST_COLUMNS]
            if unknown:
                raise UsageError(f"costs_csv {path}: unknown column(s) {unknown}; allowed: {', '.join(COST_COLUMNS)}", parameter="costs_csv")
            duplicated = sorted({c for c in columns if columns.count(c) > 1})
            if duplicated:
                raise UsageError(f"costs_csv {path}: column(s) {duplicated} appear twice in the header", parameter="costs_csv")
            required = max(columns.index("model"), columns.index("gmacs")) + 1
            costs: dict[str, dict] = {}
            for fields in reader:
                if not any(f.strip() for f in fields):
                    continue   # blank line
                line = reader.line_num
                if len(fields) > len(columns):
                    raise UsageError(f"costs_csv {path}: line {line} has {len(fields)} fields, the header has "
                                     f"{len(columns)}; a decimal comma? use '.' (e.g. 0.1, not 0,1)", parameter="costs_csv")
                if len(fields) < required:
                    raise UsageError(f"costs_csv {path}: line {line} has {len(fields)} field(s), the header has "
                                     f"{len(columns)} and 'model' and 'gmacs' need at least {required}", parameter="costs_csv")
                row = dict(zip(columns, fields))
                model = row["model"].strip()
                if not model:
                    raise UsageError(f"costs_csv {path}: line {line} has an empty model name", parameter="costs_csv")
                if model in costs:
                    raise UsageError(f"costs_csv {path}: model {model!r} listed twice", parameter="costs_csv")
                gmacs = _parse_number(row["gmacs"], column="gmacs", model=model, costs=path)
                if gmacs is None:
                    raise UsageError(f"costs_csv {path}: gmacs of model {model!r} is missing", parameter="costs_csv")
                costs[model] = {
                    "gmacs": gmacs,
                    "params": _parse_number(row.get("params", ""), column="params", model=model, costs=path,
                                            integer=True),
                    "latency_ms": _parse_number(row.get("latency_ms", ""), column="latency_ms", model=model,
                                                costs=path),
                    "display_name": row.get("display_name", "").strip() or None,
                }
    except UnicodeDecodeError:
        raise UsageError(f"costs_csv {path}: not UTF-8 text", parameter="costs_csv") from None
    except csv.Error as error:
        raise UsageError(f"costs_csv {path}: malformed CSV ({error})", parameter="costs_csv") from None
    if not costs:
        raise UsageError(f"costs_csv {path}: no model rows", parameter="costs_csv")
    return costs


def import_bank(labels_path, logits: dict, costs_csv, out, *, split: str = "val", class_names=None,
                sample_ids=None, dataset: dict | None = None, force: bool = False, inputs: str = "logits",
                signals: bool = True) -> Bank:
    """Create or extend the bank at `out` with one split's labels and the given models' logits.

    labels_path: .npy of int class indices, shape (N,). logits: {model id: path to a (N, C) float16/32/64
    .npy, rows in label order} (float64 is stored as float32). costs_csv: CSV with columns
    model,gmacs[,params,latency_ms,display_name] (GMACs and ms per sample). class_names / sample_ids:
    a list, or a text file with one entry per line (defaults: class_0.., and row numbers). dataset:
    manifest metadata (name, description, licence, caveats). force: overwrite logits (and costs) of
    models already in the bank. inputs: what the arrays hold, "logits" (default), "probabilities"
    (softmax outputs, stored as log-probabilities) or "log-probabilities" (see core.logit_inputs;
    probabilities passed as logits are refused). float64 rows are shifted by their maximum before
    they are stored as float32, which every criterion ignores. signals: also fill the bank's signal
    store (core.store) for the default criterion, computed on the same pass that writes each file.

    Memory stays bounded whatever the number of models: one source file is mapped (or converted) at
    a time, in the checks and again in the write, never all of them at once.

    Concurrency and interruptions: the whole check-and-write holds the bank's writer lock (a second
    import into the same `out` waits for the first, then extends its result); the bank is marked
    unfinished until the import ends, so a killed import leaves a bank that does not open as
    complete, and running the same import again finishes it (models already stored identically are
    kept, without `force`).

    Every input is checked before anything is written, and a failed write undoes itself. Raises
    UsageError naming the parameter at fault (a missing file, N or C mismatch, NaN/inf, a bad
    costs.csv line, a clash with the existing bank). Returns the bank, opened.
    """
    out = Path(out).expanduser()
    if not is_valid_id(str(split)):
        raise UsageError(f"split {split!r}: use letters, digits and ._+- (it becomes a folder name)", parameter="split")
    if dataset and dataset.get("name") is not None and not str(dataset["name"]).strip():
        raise UsageError("dataset['name']: must not be empty (leave it out to use the `out` folder's name)",
                         parameter="dataset['name']")
    logits = {str(name): Path(path) for name, path in dict(logits).items()}
    if not logits:
        raise UsageError("logits: give at least one NAME=PATH.npy", parameter="logits")
    for name in logits:
        if not is_valid_id(name):
            raise UsageError(f"logits {name}=...: model name must use letters, digits and ._+- "
                             "(starting with a letter or digit; it becomes a file name)", parameter="logits")

    # -- read and check every input before writing anything
    labels_path = Path(labels_path)
    labels = np.asarray(_load_npy(labels_path, "labels_path", mmap=False))
    if labels.ndim != 1:
        raise UsageError(f"labels_path {labels_path}: expected a 1-D array of class indices, got shape {labels.shape}", parameter="labels_path")
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise UsageError(f"labels_path {labels_path}: expected integer class indices, got dtype {labels.dtype} "
                         "(convert with labels.astype('int64'))", parameter="labels_path")
    n = len(labels)
    if n == 0:
        raise UsageError(f"labels_path {labels_path}: no samples", parameter="labels_path")

    # name -> a function giving the array to store: sources are opened one at a time (here, and again
    # when written) instead of every one staying mapped until the end (100 MB per paper-size model)
    arrays: dict[str, Callable[[], np.ndarray]] = {}
    num_classes = None
    for name, path in logits.items():
        array = _load_npy(path, f"logits {name}=", mmap=True)
        if array.dtype not in (np.float16, np.float32, np.float64):
            raise UsageError(f"logits {name}={path}: dtype {array.dtype}; float16/32/64 logits expected", parameter="logits")
        if array.ndim != 2:
            raise UsageError(f"logits {name}={path}: expected shape (N, C), got {array.shape}", parameter="logits")
        if array.shape[0] != n:
            raise UsageError(f"logits {name}={path}: {array.shape[0]} rows but `labels_path` has {n} samples "
                             "(N mismatch: one row per sample, same order as the labels)", parameter="logits")
        if num_classes is None:
            num_classes = array.shape[1]
        elif array.shape[1] != num_classes:
            first = next(iter(logits))
            raise UsageError(f"logits {name}={path}: {array.shape[1]} classes but {first} has {num_classes} "
                             "(C mismatch: every model must score the same classes)", parameter="logits")
        if array.shape[1] < 2:
            raise UsageError(f"logits {name}={path}: {array.shape[1]} class column(s); a classifier's logits have one "
                             "column per class and at least 2 classes", parameter="logits")
        to_stored_logits(array, inputs, f"logits {name}={path}")   # every check, before anything is written
        del array
        arrays[name] = functools.partial(_stored_logits, path, name, inputs)

    if labels.min() < 0 or labels.max() >= num_classes:
        raise UsageError(f"labels_path {labels_path}: labels must be in 0..{num_classes - 1} (logits have "
                         f"{num_classes} columns), found {int(labels.min())}..{int(labels.max())}", parameter="labels_path")

    costs_path = Path(costs_csv)
    costs = read_costs(costs_path)
    missing_costs = [m for m in logits if m not in costs]
    if missing_costs:
        raise UsageError(f"costs_csv {costs_path}: no row for model(s) {', '.join(missing_costs)} given in `logits`", parameter="costs_csv")
    extra_costs = [m for m in costs if m not in logits]
    if extra_costs:
        raise UsageError(f"costs_csv {costs_path}: model(s) {', '.join(extra_costs)} have costs but no `logits` "
                         "(remove those rows or add their logits)", parameter="costs_csv")

    # user files are read before the bank is touched
    if isinstance(class_names, (str, Path)):
        class_names = _read_lines(class_names, "class_names"), str(class_names)
    elif class_names is not None:
        class_names = [str(c) for c in class_names], None
    if sample_ids is None:
        ids = [str(i) for i in range(n)]
    elif isinstance(sample_ids, (str, Path)):
        ids = _read_lines(sample_ids, "sample_ids")
    else:
        ids = [str(s) for s in sample_ids]

    created_folder = not out.exists()
    try:
        state = bank_folder_state(out)     # reads only: a folder that is not a bank is refused untouched
    except BankError as error:
        raise UsageError(f"out {out}: {error.problem}; {error.fix or 'choose a new or empty folder'}",
                         parameter="out") from None
    try:
        with bank_lock(out):
            return _import_locked(out, state, labels, arrays, costs, split=split, class_names=class_names,
                                  ids=ids, dataset=dataset, force=force, created_folder=created_folder,
                                  num_classes=num_classes, signals=signals)
    except LockedError as error:
        raise UsageError(f"out {error}", parameter="out") from None
    finally:
        # refused before writing: leave no folder behind (only the lock file is in it)
        if created_folder and out.is_dir() and {p.name for p in out.iterdir()} <= {LOCK}:
            shutil.rmtree(out, ignore_errors=True)


def _import_locked(out: Path, state: str, labels, arrays, costs, *, split, class_names, ids, dataset,
                   force, created_folder, num_classes, signals) -> Bank:
    """The rest of import_bank, holding the bank's writer lock: read the bank as it is now, check
    for clashes, write."""
    n = len(labels)
    existing = None
    if state == "bank" or bank_folder_state(out) == "bank":   # another writer may have created it meanwhile
        existing = load_manifest(out)       # valid: bank_folder_state checked it; stable: we hold the lock

    if class_names is None:
        if existing is not None:
            names = list(existing["class_names"])
        else:
            names = [f"class_{i}" for i in range(num_classes)]
    else:
        names, names_file = class_names
    if len(names) != num_classes:
        where = f"class_names {names_file}" if class_names is not None and names_file else "class_names"
        if class_names is None:
            where = f"out {out} (existing bank)"
        raise UsageError(f"{where}: {len(names)} class names but the logits have {num_classes} columns",
                         parameter=_parameter(where))
    if existing is not None and names != list(existing["class_names"]):
        raise UsageError(f"out {out}: the existing bank has different class names "
                         f"({len(existing['class_names'])} classes); import into a new folder, or pass that "
                         "bank's class list", parameter="out")

    if len(ids) != n:
        raise UsageError(f"sample_ids: {len(ids)} ids but `labels_path` has {n} samples", parameter="sample_ids")
    if any(not s for s in ids):
        raise UsageError("sample_ids: empty id (one non-empty id per line)", parameter="sample_ids")
    if len(set(ids)) != n:
        seen: set[str] = set()
        raise UsageError(f"sample_ids: duplicate id {next(s for s in ids if s in seen or seen.add(s))!r}", parameter="sample_ids")

    if existing is not None:
        if split in existing["splits"]:
            try:
                old_ids, _ = read_samples(samples_path(out, split), split=split)
                read_npy_header(split_labels_path(out, split))   # refuses a FIFO / device before np.load
                old_labels = np.load(split_labels_path(out, split), allow_pickle=False)
            except (BankError, OSError, ValueError) as error:
                raise UsageError(f"out {out}: existing split {split!r} is unreadable: {error}", parameter="out") from None
            if list(old_ids) != ids or not np.array_equal(old_labels, labels):
                raise UsageError(f"split {split}: the bank already has this split with different samples or "
                                 "labels; use another `split` name", parameter="split")
    done: set[str] = set()
    if existing is not None:
        for name in arrays:
            old = existing["models"].get(name)
            if old is None:
                continue
            if (split in old.get("top1", {}) and not force and old.get("gmacs") == costs[name]["gmacs"]
                    and _same_as_stored(out, name, split, arrays[name]()[0])):
                done.add(name)   # e.g. a re-run of an interrupted import: this model is already stored
                continue
            if split in old.get("top1", {}) and not force:
                raise UsageError(f"logits {name}=...: the bank already has logits for {name!r} on split "
                                 f"{split!r}; pass `force=True` to overwrite", parameter="logits")
            if old.get("gmacs") != costs[name]["gmacs"] and not force:
                raise UsageError(f"costs_csv: gmacs of {name!r} is {costs[name]['gmacs']} but the bank records "
                                 f"{old.get('gmacs')}; pass `force=True` to update it", parameter="costs_csv")

    # -- write (each step atomic). Everything above was checked, so a failure here is an I/O problem;
    # it still leaves no trace (see undo_on_failure). A kill leaves the bank marked unfinished.
    with undo_on_failure(out, new=existing is None, created_folder=created_folder):
        _write(out, existing, names, dataset, split, ids, labels, {k: v for k, v in arrays.items() if k not in done},
               costs, signals)
    return Bank.open(out, allow_incomplete=True)


def _same_as_stored(out: Path, name: str, split: str, array: np.ndarray) -> bool:
    """True when the bank already stores exactly `array` as `name`'s logits on `split`."""
    path = logits_path(out, name, split)
    try:
        shape, dtype, _, _ = read_npy_header(path)
        if shape != array.shape or dtype != array.dtype:
            return False
        return bool(np.array_equal(np.load(path, mmap_mode="r", allow_pickle=False), array))
    except (BankError, OSError, ValueError):
        return False


def _stored_logits(path: Path, name: str, inputs: str) -> tuple[np.ndarray, Path | None]:
    """(the array import stores for one source file, the file when the array maps it as it is): opened
    now; every check of to_stored_logits ran on it moments ago, and the writer checks each chunk's
    values again as it writes (a file changed in between is caught there), so they are not repeated."""
    mapped = _load_npy(path, f"logits {name}=", mmap=True)
    array = to_stored_logits(mapped, inputs, f"logits {name}={path}", check=False)
    # logits stored as they are: the writer may copy the file's bytes (it checks the header itself)
    return array, (path if inputs == "logits" and array.dtype == mapped.dtype else None)


def _write(out: Path, existing, names, dataset, split, ids, labels, arrays, costs, signals) -> None:
    n = len(labels)
    create = None
    if existing is None:
        meta = {"name": out.name, "description": "", "licence": "unknown", "caveats": [], "task": "classification"}
        meta.update({k: v for k, v in (dataset or {}).items() if v is not None})
        create = {"dataset": meta, "class_names": names}
    with BankWriter(out, create=create) as writer:
        # Unfinished until the end: a kill from here on leaves a bank that does not open as complete.
        writer.begin("import", split=split, models=sorted(arrays))
        if existing is not None and dataset:
            updates = {k: v for k, v in dataset.items() if v not in (None, "")}
            if updates:
                writer.set_dataset(**updates)
        if not writer.has_split(split):   # an existing identical split keeps its metadata
            writer.add_split(split, ids, [""] * n, labels, description=(dataset or {}).get("split_description", ""))
        # Every model's metadata first, then the logits (as precompute does): until its logits land, a
        # model is listed without them, which the reader reports as incomplete.
        for name in arrays:
            cost = costs[name]
            old = writer.model_entry(name)
            latency = dict(old.get("latency_ms", {}))
            if cost["latency_ms"] is not None:
                latency[USER_LATENCY_DEVICE] = {"batch_1": cost["latency_ms"]}
            writer.add_model(name, display_name=cost["display_name"] or old.get("display_name") or name,
                             backend=old.get("backend", "external"), source=old.get("source") or {"kind": "user"},
                             gmacs=cost["gmacs"], params=cost["params"], spec=old.get("spec"),
                             input_size=old.get("input_size"), preprocessing=old.get("preprocessing"),
                             latency_ms=latency)
        store = None
        if signals:
            from .store import DEFAULT_CRITERION, SignalStore

            store = SignalStore()
            # what store.put reads of the bank (path, file versions, labels, class count) does not change
            # while the logits are written: open it once, not once per model (a manifest parse each)
            bank = writer.open(validate=False, allow_incomplete=True)
        for name, load in arrays.items():
            array, source_file = load()
            if store is None:
                writer.add_logits(name, split, array, source_file=source_file)
                continue
            # the signal store's default entry, computed on the same pass that writes the file
            confidence = np.empty(n, dtype=np.float64)
            prediction = np.empty(n, dtype=np.int32)

            def on_chunk(start, chunk):
                rows = slice(start, start + len(chunk))
                chunk_signals(chunk, DEFAULT_CRITERION, 1.0, out=(confidence[rows], prediction[rows]))
                return prediction[rows]   # the writer's top1 reuses this argmax

            writer.add_logits(name, split, array, on_chunk=on_chunk, source_file=source_file)
            del array
            store.put(bank, name, split, ModelSignals(confidence, prediction, prediction == labels))
        writer.finish()
