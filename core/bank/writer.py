"""Writing a bank: `BankWriter` creates or extends one, file by file, each write atomic.

Each call writes its own files, then manifest.json; callers never touch the manifest dict or
spell a file name (they use the methods here and `format`'s path functions). A BankWriter holds the
bank's writer lock (lock.py) from construction until `close()` (or the end of its `with` block), so
no other writer's update is lost, and on opening it removes the temp files a killed writer left
(only those: `remove_leftover_temp_files`). `undo_on_failure` rolls a multi-step write back when
one step fails; `begin`/`finish` mark a multi-step write unfinished in the manifest meanwhile.
"""

from __future__ import annotations

import copy
import csv
import functools
import io
import os
import shutil
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path

import numpy as np

from ..atomic import atomic_save_npy, atomic_write_bytes, atomic_write_json, atomic_write_text, atomic_write_with
from ..errors import BankError
from .format import (LABELS, LOGITS_DTYPES, LOGITS_DIR, MANIFEST, SAMPLES, SAMPLES_HEADER, SCAN_CHUNK_ROWS,
                     SCHEMA_VERSION, SPLITS_DIR, UNFINISHED, check_id, check_labels,
                     file_identity, finite_rows, is_number, is_valid_id, labels_path, load_manifest, lock_path, logits_path, manifest_path, mark_finite,
                     narrow_rows, non_finite_problem, read_npy_header, read_samples, samples_path, split_dir,
                     validate_manifest, validate_model_entry)
from .lock import DEFAULT_TIMEOUT_S, TEMP_NAME, bank_folder_state, bank_lock
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


def _writes(method):
    """A writing method of BankWriter: it runs holding the bank's writer lock, on the manifest as it is
    on disk at that moment (another writer may have added to it since), so no update is lost."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with bank_lock(self.path, timeout=self._lock_timeout):
            self._reload()
            return method(self, *args, **kwargs)
    return locked


class BankWriter:
    """Creates or extends a bank. Each call writes its own files, then manifest.json, atomically.

    Every writing call holds the bank's writer lock (lock.py) while it runs and starts from the
    manifest on disk, so writers in other processes or threads never lose each other's updates;
    another writer waits up to `lock_timeout` seconds, then gets a LockedError. A caller that
    must check and then write without interference (import) holds `bank_lock` around both; the
    lock is re-entrant. A folder that is neither a bank nor new/empty is refused before anything in
    it is touched. `removed_leftovers` lists the temp files of an interrupted earlier write that
    opening removed. `with BankWriter(...) as writer:` is accepted (nothing to release).
    """

    def __init__(self, path, *, create: dict | None = None, lock_timeout: float = DEFAULT_TIMEOUT_S,
                 workers: int | None = None):
        self.path = Path(path).expanduser()
        # threads checking logits chunks while add_logits writes (None: every core)
        self.workers = max(1, int(workers if workers is not None else (os.cpu_count() or 1)))
        self._manifest_path = manifest_path(self.path)
        self._lock_timeout = float(lock_timeout)
        if create is None and bank_folder_state(self.path) == "new":
            raise BankError("no bank here (manifest.json missing)", path=self._manifest_path,
                            fix="create it: BankWriter(path, create={'dataset': {...}, 'class_names': [...]})")
        with bank_lock(self.path, timeout=self._lock_timeout):
            self._open(create)
            self.removed_leftovers = remove_leftover_temp_files(self.path)

    def __enter__(self) -> "BankWriter":
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def _reload(self) -> None:
        """The manifest as on disk now (holding the lock); the bank must still be the same one."""
        manifest = load_manifest(self._manifest_path)
        validate_manifest(manifest, self._manifest_path)
        if manifest["class_names"] != self._manifest["class_names"]:
            raise BankError("the bank was replaced by another with different class names while this writer "
                            "was open", path=self._manifest_path, fix="open a new BankWriter")
        self._manifest = manifest

    def _open(self, create: dict | None) -> None:
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

    @_writes
    def begin(self, step: str, **details) -> None:
        """Mark the bank unfinished (manifest key format.UNFINISHED = {"step": step, **details}) until
        `finish()`: a multi-step write killed in between leaves a bank that does not open as
        complete (Bank.open refuses it unless allow_incomplete) and tells a re-run what to finish."""
        self._manifest[UNFINISHED] = {"step": str(step), **copy.deepcopy(details)}
        self._write_manifest()

    def unfinished(self) -> dict | None:
        """A copy of the unfinished-write mark left by `begin` (e.g. by a killed import), or None."""
        entry = self._manifest.get(UNFINISHED)
        return None if entry is None else copy.deepcopy(entry)

    @_writes
    def finish(self) -> None:
        """Remove the unfinished-write mark: the bank is complete again."""
        if self._manifest.pop(UNFINISHED, None) is not None:
            self._write_manifest()

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

    @_writes
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

    @_writes
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

    @_writes
    def add_logits(self, model_id: str, split: str, logits, *, on_chunk=None, source_file=None) -> float:
        """Validate, save atomically and record top1 of one model's logits on one split; returns top1.

        logits: (N, C) float16/float32, or float64 (stored as float32, each row shifted by its maximum
        first: see format.narrow_rows), e.g. memory-mapped: it is read, checked (finite, no lossy
        narrowing), counted (top1) and written one row chunk at a time, so memory stays bounded
        whatever N and the source is read once. on_chunk(start_row, stored_chunk): called with each
        chunk as stored (e.g. to compute signals on the same pass); it may return the chunk's argmax
        (int (rows,)), which top1 then reuses instead of computing it again. Chunks are processed on
        `workers` threads, so on_chunk may run for several chunks at once, in any order: it must only
        write the rows it is given. source_file: the .npy file `logits` is a memory map of, when the
        caller has one: if its data are already what the bank stores (same dtype, C order), the kernel
        copies them (os.sendfile, as `cp` does) while the chunks are checked from the map, and the file
        must not change meanwhile (checked: BankError otherwise). Raises BankError for a wrong dtype
        or shape, NaN/inf (naming the value, row and column) or a lossy cast; nothing is written then.
        """
        entry = self._model_entry(model_id)
        self._check_split(split)
        path = logits_path(self.path, model_id, split)
        array = np.asanyarray(logits)
        stored = np.dtype(np.float32) if array.dtype == np.float64 else array.dtype
        if stored not in LOGITS_DTYPES:
            raise BankError(f"logits dtype is {array.dtype}; float16, float32 or float64 expected", path=path,
                            model=model_id, split=split, fix="convert with .astype('float32')")
        labels = self.labels(split)
        if array.ndim != 2 or array.shape != (len(labels), self.num_classes):
            raise BankError(f"logits shape {array.shape} does not match (N={len(labels)}, C={self.num_classes})",
                            path=path, model=model_id, split=split,
                            fix="one row per sample (samples.csv order), one column per class")
        def process(start: int):
            """Check, narrow and count one row chunk (on a worker thread: numpy releases the GIL)."""
            raw = np.asarray(array[start:start + SCAN_CHUNK_ROWS])
            finite = finite_rows(raw)
            if not finite.all():
                row = start + int(np.flatnonzero(~finite)[0])
                raise BankError(f"logits are not all finite: {non_finite_problem(array, row)}", path=path,
                                model=model_id, split=split, fix="fix the model's output; nothing was written")
            try:   # float64 -> float32: each row shifted by its maximum first, refused if still lossy
                chunk = narrow_rows(raw, stored, first_row=start)
            except BankError as error:
                raise BankError(error.problem, path=path, model=model_id, split=split, fix=error.fix) from None
            prediction = on_chunk(start, chunk) if on_chunk is not None else None
            if prediction is None:   # float16 argmax has no fast path in numpy; float32's does
                prediction = chunk.astype(np.float32, copy=False).argmax(axis=1)
            data = None if copy_from is not None else np.ascontiguousarray(chunk).tobytes()
            return data, int((prediction == labels[start:start + SCAN_CHUNK_ROWS]).sum())

        copy_from = _same_bytes_source(source_file, array, stored)
        correct = 0

        def write(handle) -> None:
            nonlocal correct
            header = {"descr": np.lib.format.dtype_to_descr(stored), "fortran_order": False, "shape": array.shape}
            np.lib.format.write_array_header_1_0(handle, header)   # the header np.save writes for this array
            # Chunks are checked and counted on every core while this thread writes the finished ones
            # in order: the write (page cache, disk) overlaps the arithmetic. At most 2 chunks per
            # worker are in flight, so memory stays bounded whatever N; the first failing chunk in
            # row order raises (the same error a one-thread pass gives), and nothing is renamed.
            starts = iter(range(0, len(labels), SCAN_CHUNK_ROWS))
            with ThreadPoolExecutor(max_workers=self.workers + (copy_from is not None)) as pool:
                copied = None
                if copy_from is not None:   # the kernel copies the data while the workers check the map
                    handle.flush()
                    copied = pool.submit(_copy_data, copy_from, handle.fileno())
                pending = deque(pool.submit(process, start) for start in islice(starts, 2 * self.workers))
                try:
                    while pending:
                        data, chunk_correct = pending.popleft().result()
                        nxt = next(starts, None)
                        if nxt is not None:
                            pending.append(pool.submit(process, nxt))
                        correct += chunk_correct
                        if copied is None:
                            handle.write(data)
                    if copied is not None:
                        copied.result()
                        handle.seek(0, os.SEEK_END)
                except BaseException:
                    for future in pending:
                        future.cancel()
                    raise
            if copy_from is not None and file_identity(copy_from[0]) != copy_from[3]:
                raise BankError("the source file changed while it was imported", path=copy_from[0], model=model_id,
                                split=split, fix="import again once nothing writes to it; nothing was written")

        atomic_write_with(path, write)
        mark_finite(path)   # just scanned: later reads of this exact file need not scan again
        entry.setdefault("top1", {})[split] = correct / len(labels) if len(labels) else 0.0
        self._write_manifest()
        return entry["top1"][split]

    @_writes
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

    @_writes
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

    def __init__(self, out, *, new: bool, created_folder: bool | None = None):
        self.out, self.new = Path(out), new
        self._created_folder = created_folder

    def __enter__(self):
        self.created_folder = (not self.out.exists()) if self._created_folder is None else self._created_folder
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
            added = ([p for p in self.out.rglob("*") if p not in self.before and p != lock_path(self.out)]
                     if self.out.is_dir() else [])   # the lock file stays: another writer may wait on it
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


def _own_temp_files(out: Path) -> list[Path]:
    """Temp files atomic.py's writes of *this bank's* files leave when killed, and nothing else: by
    exact name (".<final>.tmp-XXXXXXXX") in the places the format defines, never anywhere below."""
    found = [p for p in out.iterdir() if (m := TEMP_NAME.fullmatch(p.name)) and m["final"] == MANIFEST]
    splits_root = out / SPLITS_DIR
    if splits_root.is_dir() and not splits_root.is_symlink():
        for folder in splits_root.iterdir():
            if not is_valid_id(folder.name) or not folder.is_dir() or folder.is_symlink():
                continue
            for entry in folder.iterdir():
                match = TEMP_NAME.fullmatch(entry.name)
                if match and match["final"] in (SAMPLES, LABELS):
                    found.append(entry)
            logits_folder = folder / LOGITS_DIR
            if logits_folder.is_dir() and not logits_folder.is_symlink():
                for entry in logits_folder.iterdir():
                    match = TEMP_NAME.fullmatch(entry.name)
                    if match and match["final"].endswith(".npy") and is_valid_id(match["final"][:-4]):
                        found.append(entry)
    return [p for p in found if p.is_file() and not p.is_symlink()]


def remove_leftover_temp_files(out, log=None) -> list[Path]:
    """Delete the temp files a killed writer of the bank at `out` left; returns the paths removed,
    each also passed to `log` when given.

    Only this tool's own files are removed: the folder must be a bank (or a new bank's folder holding
    nothing but its leftovers), else BankError before anything is touched; only temp names of the
    bank's own files, in the bank's own folders, qualify (a user's hidden ".x.tmp-y" files elsewhere
    are never touched). Runs under the bank's writer lock, so a live writer's temp files are safe.
    """
    out = Path(out).expanduser()
    if not out.is_dir():
        return []
    bank_folder_state(out)
    removed: list[Path] = []
    with bank_lock(out):
        for path in _own_temp_files(out):
            path.unlink(missing_ok=True)
            removed.append(path)
            if log is not None:
                log(f"removed a temp file left by an interrupted run: {path}")
    return removed


def _same_bytes_source(source_file, array: np.ndarray, stored: np.dtype):
    """(path, data offset, data bytes, format.file_identity) when the .npy file `source_file` holds exactly the
    bytes add_logits would write after its header (`array` maps it: same shape, C order, stored
    dtype, little-endian as the bank's files are), else None (the chunks are written from memory)."""
    if source_file is None or array.dtype != stored or not array.dtype.isnative:
        return None
    path = Path(source_file)
    try:
        identity = file_identity(path)
        # the header's shape and dtype, and a length that matches them (else BankError)
        shape, dtype, fortran_order, offset = read_npy_header(path)
    except (OSError, BankError):
        return None
    if fortran_order or dtype != stored or tuple(shape) != array.shape:
        return None
    return path, offset, array.nbytes, identity


def _copy_data(source, out_fd: int) -> None:
    """Copy the source's data bytes to the end of `out_fd` in the kernel (os.sendfile: no pass through
    Python, as shutil.copyfile does), falling back to reads and writes where sendfile cannot."""
    path, offset, nbytes, _ = source
    with open(path, "rb") as handle:
        in_fd = handle.fileno()
        done = 0
        try:
            while done < nbytes:
                sent = os.sendfile(out_fd, in_fd, offset + done, min(nbytes - done, 1 << 30))
                if sent == 0:
                    raise OSError("sendfile copied nothing")
                done += sent
        except OSError:
            if done:   # a partial copy cannot be resumed safely here: the caller discards the temp file
                raise
            handle.seek(offset)
            while done < nbytes:
                block = handle.read(min(nbytes - done, 1 << 24))
                if not block:
                    raise OSError(f"{path} ended early") from None
                os.write(out_fd, block)
                done += len(block)
