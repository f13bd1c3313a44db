"""The bank format: file layout, paths, the manifest schema and the checks of each file.

Layout (documented in precomputed/README.md), readable with numpy + json + csv alone:

    BANK/manifest.json
    BANK/splits/<split>/samples.csv          sample_id,image_path
    BANK/splits/<split>/labels.npy           int64 (N,)
    BANK/splits/<split>/logits/<model>.npy   (N, C) float16|float32, rows in samples.csv order
    BANK/staging/<split>/<model>/<start>-<stop>.npy|.json   precompute's finished work units (one
                                             model x shard of images) until the model x split is assembled

Every file name of the format is spelled here and only here; the reader (`reader.Bank`) and the
writer (`writer.BankWriter`) build paths with the functions below. Every check raises
`BankError` naming the file, what is wrong and how to fix it.
"""

from __future__ import annotations

import csv
import math
import numbers
import re
import threading
from pathlib import Path

import numpy as np

from ..errors import BankError, JSONFormatError, special_file_problem
from ..jsonsafe import loads as loads_json

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SAMPLES = "samples.csv"
LABELS = "labels.npy"
LOGITS_DIR = "logits"
SPLITS_DIR = "splits"
STAGING_DIR = "staging"        # precompute's work units (core/units.py); not part of a finished bank
SAMPLES_HEADER = ["sample_id", "image_path"]
LOGITS_DTYPES = (np.dtype(np.float16), np.dtype(np.float32))
BACKENDS = ("tflite", "timm", "external")
# Model and split ids become file names: keep them portable and free of path separators.
# \Z, not $: `$` also matches before a trailing newline ("val\n" would pass). Use is_valid_id (fullmatch).
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+\-]{0,127}\Z")
# The writer lock (see lock.py): a hidden file in the bank folder, never data.
LOCK = ".cascade-explorer.lock"
# Upper bound of a cost (GMACs or ms per sample, parameters): far above any real model, and far
# enough below float64's range that sums and ratios over thousands of models stay finite.
MAX_COST = 1e12
# A manifest key present while an import is writing the bank: the bank is not complete until the
# import that set it finishes (a killed import leaves it, so the bank does not open as complete).
UNFINISHED = "unfinished"
SCAN_CHUNK_ROWS = 4096
# The manifest's fields, level by level (documented in precomputed/README.md; a test keeps both in step).
# validate_manifest checks each one's type; keys outside these are left alone (forward compatibility).
MANIFEST_FIELDS = ("schema_version", "dataset", "class_names", "splits", "models", UNFINISHED)
DATASET_FIELDS = ("name", "description", "licence", "caveats", "task")
SPLIT_FIELDS = ("description", "image_source", "transform", "skipped")
MODEL_FIELDS = ("display_name", "backend", "source", "spec", "input_size", "preprocessing", "gmacs", "params",
                "latency_ms", "top1")

DEFAULT_BANK_PATH = Path(__file__).resolve().parents[2] / "precomputed" / "imagenet-val-1300"
PRECOMPUTED_DIR = DEFAULT_BANK_PATH.parent


# ----------------------------------------------------------------------------- paths and files

def split_dir(bank_path, split: str) -> Path:
    return Path(bank_path) / SPLITS_DIR / split


def logits_path(bank_path, model_id: str, split: str) -> Path:
    return split_dir(bank_path, split) / LOGITS_DIR / f"{model_id}.npy"


def staging_dir(bank_path, split: str | None = None, model_id: str | None = None) -> Path:
    """BANK/staging[/<split>[/<model>]]: finished work units waiting to be assembled into logits."""
    path = Path(bank_path) / STAGING_DIR
    if split is not None:
        path = path / split
        if model_id is not None:
            path = path / model_id
    return path


def unit_paths(bank_path, split: str, model_id: str, start: int, stop: int) -> tuple[Path, Path]:
    """(logits .npy, record .json) of the work unit holding rows start..stop-1 of the image list."""
    folder = staging_dir(bank_path, split, model_id)
    return folder / f"{start:09d}-{stop:09d}.npy", folder / f"{start:09d}-{stop:09d}.json"


def manifest_path(bank_path) -> Path:
    """BANK/manifest.json."""
    return Path(bank_path) / MANIFEST


def samples_path(bank_path, split: str) -> Path:
    """BANK/splits/<split>/samples.csv."""
    return split_dir(bank_path, split) / SAMPLES


def labels_path(bank_path, split: str) -> Path:
    """BANK/splits/<split>/labels.npy."""
    return split_dir(bank_path, split) / LABELS


def lock_path(bank_path) -> Path:
    """BANK/.cascade-explorer.lock: the file every writer of the bank locks (core.bank.lock)."""
    return Path(bank_path) / LOCK


def is_valid_id(value) -> bool:
    """True for a valid model/split id: the whole string matches ID_PATTERN (no trailing newline)."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def check_bank_file(path, what: str, *, split=None, model=None) -> Path:
    """`path` when it is a regular file; else BankError saying it is missing, a folder, or a special
    file (a FIFO or device would block or never end when read: it is refused before any open)."""
    path = Path(path)
    problem = special_file_problem(path)
    if problem:
        raise BankError(f"{what} {problem}", path=path, split=split, model=model,
                        fix=f"replace it with the real {what} (re-run the import/precompute that wrote it)")
    if path.is_dir():
        raise BankError(f"{what} is a folder, not a file", path=path, split=split, model=model,
                        fix=f"remove that folder and restore the {what} (re-run import/precompute)")
    if not path.is_file():
        raise BankError(f"{what} is missing", path=path, split=split, model=model,
                        fix="re-create it (re-run import/precompute)")
    return path


def is_bank(path) -> bool:
    """True when `path` is a folder holding a manifest.json file (a bank, maybe damaged)."""
    return manifest_path(path).is_file()


def manifest_stamp(bank_path) -> tuple[int, int]:
    """(mtime_ns, size) of BANK/manifest.json, (0, 0) when unreadable: it changes whenever the bank is
    written (every write rewrites the manifest atomically), so caches keyed on it start fresh."""
    try:
        stat = manifest_path(bank_path).stat()
        return (stat.st_mtime_ns, stat.st_size)
    except OSError:
        return (0, 0)


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
    problem = special_file_problem(path)
    if problem:
        raise BankError(problem, path=path, fix="point at a regular .npy file (numpy.save writes one)")
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


def file_identity(path: Path) -> tuple:
    """(resolved path, inode, size, mtime_ns) of a file: changes when the file is rewritten or replaced."""
    path = Path(path)
    st = path.stat()
    return (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)


def finite_rows(chunk: np.ndarray) -> np.ndarray:
    """bool (rows,): the rows of a 2-D block holding no NaN or +-inf. float16 is checked on its bits
    (exponent all ones = inf or NaN): numpy has no fast float16 isfinite, and banks are float16."""
    if chunk.dtype == np.float16:
        return ((np.ascontiguousarray(chunk).view(np.uint16) & 0x7C00) != 0x7C00).all(axis=1)
    return np.isfinite(chunk).all(axis=1)


def first_non_finite_row(array, chunk_rows: int = SCAN_CHUNK_ROWS) -> int | None:
    """Index of the first row of a 2-D array holding NaN/inf, scanned in row chunks; None if all finite."""
    for start in range(0, array.shape[0], chunk_rows):
        finite = finite_rows(np.asarray(array[start:start + chunk_rows]))
        if not finite.all():
            return start + int(np.flatnonzero(~finite)[0])
    return None


def non_finite_problem(array, row: int) -> str:
    """'-inf at row 3, column 7 (...)': what the first non-finite value of `row` is, with the fix for
    -inf (a "this class is impossible" score: a large negative finite value means the same)."""
    values = np.asarray(array[row])
    col = int(np.flatnonzero(~np.isfinite(values))[0])
    value = float(values[col])
    if np.isnan(value):
        return f"NaN at row {row}, column {col}"
    if value > 0:
        return f"+inf at row {row}, column {col} (an overflow in the model?)"
    return (f"-inf at row {row}, column {col}; for a class the model rules out, use a large negative "
            "finite logit instead (e.g. -1e4: its softmax probability is 0 all the same)")


def narrow_logits(array, dtype) -> np.ndarray:
    """(N, C) logits stored as `dtype` (float16/float32), row-shifted first when that is a narrowing cast
    (see narrow_rows), in row chunks; the input is not modified. Raises BankError (no path: the caller
    names the file) when the cast still loses information."""
    source = np.asanyarray(array)
    dtype = np.dtype(dtype)
    if source.dtype == dtype or np.finfo(source.dtype).bits <= dtype.itemsize * 8:
        return np.asarray(source).astype(dtype, copy=False)
    out = np.empty(source.shape, dtype=dtype)
    for start in range(0, source.shape[0], SCAN_CHUNK_ROWS):
        out[start:start + SCAN_CHUNK_ROWS] = narrow_rows(np.asarray(source[start:start + SCAN_CHUNK_ROWS]), dtype,
                                                         first_row=start)
    return out


def narrow_rows(rows: np.ndarray, dtype, *, first_row: int = 0) -> np.ndarray:
    """A block of logit rows as `dtype`: unchanged when that is not a narrowing cast; else each row's
    maximum is subtracted (in the source precision) before the cast.

    Every confidence criterion (softmax, margins, entropy) is invariant to adding a constant to a row,
    so a large per-row offset (energies, log-likelihoods near 1e8) would otherwise swallow the class
    differences for nothing. Values more than dtype's range below the row maximum are clipped to its
    most negative finite value (their softmax weight is 0 either way). Rows are independent, so any
    split into blocks gives the same result. Raises BankError naming the row (first_row = the block's
    offset) when the cast still loses information: a row's top-1 class or a non-zero top-1/top-2 margin
    would change. Non-finite input is the caller's check (first_non_finite_row).
    """
    dtype = np.dtype(dtype)
    if rows.dtype == dtype or np.finfo(rows.dtype).bits <= dtype.itemsize * 8:
        return rows.astype(dtype, copy=False)
    work = np.float64 if rows.dtype == np.float64 else np.float32
    chunk = np.asarray(rows, dtype=work)
    if chunk.shape[1] == 0:
        return chunk.astype(dtype)
    shifted = chunk - chunk.max(axis=1, keepdims=True)
    np.maximum(shifted, -float(np.finfo(dtype).max), out=shifted)
    narrow = shifted.astype(dtype)
    if chunk.shape[1] < 2:
        return narrow
    lost = narrow.argmax(axis=1) != shifted.argmax(axis=1)
    # a margin that was positive and became 0 (two classes merged into one value)
    second = np.partition(shifted, -2, axis=1)[:, -2]
    second_narrow = np.partition(narrow, -2, axis=1)[:, -2]
    lost |= (second < 0) & (second_narrow == 0)
    if lost.any():
        row = first_row + int(np.flatnonzero(lost)[0])
        raise BankError(f"storing these logits as {dtype.name} would change row {row}'s top classes even "
                        f"after subtracting each row's maximum (differences below {dtype.name}'s "
                        "resolution)", fix=f"rescale the logits so class differences exceed "
                                          f"{float(np.finfo(dtype).eps):.2g} of their magnitude")
    return narrow


def check_finite_file(path: Path, array, *, model: str, split: str) -> None:
    """BankError when the logits file holds NaN/inf; scanned once per file version per process."""
    key = file_identity(path)
    with _FINITE_LOCK:
        if key in _FINITE_CHECKED:
            return
    bad_row = first_non_finite_row(array)
    if bad_row is not None:
        raise BankError(f"logits are not all finite: {non_finite_problem(array, bad_row)}", path=path,
                        model=model, split=split,
                        fix="re-export that model's logits and import them again")
    with _FINITE_LOCK:
        _FINITE_CHECKED[key] = True


def mark_finite(path: Path) -> None:
    """Record that the file at `path` (this exact version) was just scanned and is finite."""
    with _FINITE_LOCK:
        _FINITE_CHECKED[file_identity(path)] = True


# ----------------------------------------------------------------------------- manifest checks

def is_number(value) -> bool:
    """A finite real number (not a bool)."""
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
    problem = special_file_problem(path)
    if problem:
        raise BankError(f"manifest.json {problem}", path=path,
                        fix="replace it with the bank's real manifest.json (or re-create the bank)")
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
        manifest = loads_json(text)
    except JSONFormatError as error:
        raise BankError(str(error), path=path, fix="correct the JSON there (or restore the file)") from None
    if not isinstance(manifest, dict):
        raise BankError(f"top level must be a JSON object, got {type(manifest).__name__}", path=path,
                        fix="see precomputed/README.md for the manifest layout")
    return manifest


def check_id(kind: str, value, *, path=None) -> str:
    """`value` when it is a valid model/split id (a portable file name); else BankError."""
    if not is_valid_id(value):
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
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BankError("'class_names' must be a list of strings", path=path, fix=fix_doc)
    if len(names) < 2:
        # one class: every prediction is right and every confidence is 1; nothing to cascade
        raise BankError(f"'class_names' lists {len(names)} class(es); a classification bank needs at least 2",
                        path=path, fix="list every class the models score (one logits column each)")
    splits = manifest.get("splits")
    if not isinstance(splits, dict):
        raise BankError("'splits' must be an object {split name: {...}}", path=path, fix=fix_doc)
    for split, info in splits.items():
        check_id("split", split, path=path)
        if not isinstance(info, dict):
            raise BankError("split entry must be an object", path=path, split=split, fix=fix_doc)
        if not isinstance(info.get("description", ""), str):
            raise BankError("'description' must be a string", path=path, split=split, fix=fix_doc)
        for key in ("image_source", "transform"):
            if info.get(key) is not None and not isinstance(info[key], dict):
                raise BankError(f"'{key}' must be null or an object", path=path, split=split, fix=fix_doc)
        skipped = info.get("skipped", [])
        if not isinstance(skipped, list) or not all(isinstance(s, dict) for s in skipped):
            raise BankError("'skipped' must be a list of objects", path=path, split=split, fix=fix_doc)
    unfinished = manifest.get(UNFINISHED)
    if unfinished is not None and not isinstance(unfinished, dict):
        raise BankError(f"'{UNFINISHED}' must be null or an object", path=path, fix=fix_doc)
    models = manifest.get("models")
    if not isinstance(models, dict):
        raise BankError("'models' must be an object {model id: {...}}", path=path, fix=fix_doc)
    for model_id, info in models.items():
        check_id("model", model_id, path=path)
        validate_model_entry(model_id, info, splits, path)


def validate_model_entry(model_id: str, info, splits: dict, path: Path) -> None:
    """Checks of one manifest model entry; BankError naming the field."""
    def bad(problem: str, fix: str = "see precomputed/README.md for the model fields"):
        return BankError(problem, path=path, model=model_id, fix=fix)

    if not isinstance(info, dict):
        raise bad("model entry must be an object")
    if "gmacs" not in info:
        raise bad("'gmacs' (cost per sample, in billions of multiply-accumulates) is missing",
                  "add the model's GMACs (e.g. from its paper or a FLOP counter)")
    gmacs = info["gmacs"]
    if not is_number(gmacs):
        raise bad(f"'gmacs' must be a finite number, got {gmacs!r}", "set gmacs to the model's GMACs per sample")
    if gmacs < 0:
        raise bad(f"'gmacs' is negative ({gmacs})", "costs are >= 0: set gmacs to the model's GMACs per sample")
    if gmacs > MAX_COST:
        raise bad(f"'gmacs' is {gmacs:g}, above the largest accepted cost {MAX_COST:g} (sums of costs would "
                  "overflow)", "set gmacs to the model's GMACs per sample (billions, not single MACs)")
    for key in ("display_name", "backend"):
        if not isinstance(info.get(key), str) or not info[key]:
            raise bad(f"'{key}' must be a non-empty string")
    if not isinstance(info.get("source", {}), dict):
        raise bad("'source' must be an object")
    params = info.get("params")
    if params is not None and (not is_number(params) or not 0 <= params <= MAX_COST):
        raise bad(f"'params' must be null or a number in 0..{MAX_COST:g}, got {params!r}")
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
        if not isinstance(values, dict) or not all(is_number(v) and 0 <= v <= MAX_COST for v in values.values()):
            raise bad(f"'latency_ms[{device!r}]' must map batch names to numbers in 0..{MAX_COST:g}, got {values!r}")
    top1 = info.get("top1", {})
    if not isinstance(top1, dict):
        raise bad("'top1' must be an object {split: accuracy}")
    for split, acc in top1.items():
        if split not in splits:
            raise BankError(f"'top1' names split {split!r}, which is not in 'splits'", path=path, model=model_id,
                            split=split, fix="remove that top1 entry or add the split")
        if not is_number(acc) or not 0.0 <= acc <= 1.0:
            raise BankError(f"'top1' must be a number in [0, 1], got {acc!r}", path=path, model=model_id,
                            split=split, fix="re-add the logits so top1 is recomputed")


# ----------------------------------------------------------------------------- samples and labels

def read_samples(path: Path, *, split: str) -> tuple[np.ndarray, list[str]]:
    """(sample ids, image paths) from samples.csv, checking header, columns, empty and duplicate ids."""
    check_bank_file(path, "samples.csv", split=split)
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
    except csv.Error as error:   # e.g. a field over csv's 128 KiB limit, a NUL byte
        raise BankError(f"malformed CSV near line {reader.line_num + 1} ({error})", path=path, split=split,
                        fix="one 'sample_id,image_path' line per sample; ids and paths are short") from None
    if not ids:
        raise BankError("samples.csv lists no samples", path=path, split=split,
                        fix="a split needs at least one sample (re-create it, or remove it from manifest.json)")
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


