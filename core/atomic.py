"""Atomic file writes: a temp file in the target's folder, fsync, then os.replace.

A reader sees either the old file or the complete new one, never a half-written file, and a
writer killed mid-way leaves at most a temp file whose name `is_temp_name` recognises (so bank
validation can report it instead of mistaking it for data).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import UsageError

# Temp files are ".<final name>.tmp-<random>": hidden, and never ending in .npy/.json/.csv, so a
# glob for data files cannot pick one up.
TEMP_PREFIX = "."
TEMP_MARKER = ".tmp-"


def is_temp_name(name: str) -> bool:
    """True for a temp file name this module creates (e.g. left by a killed writer)."""
    return name.startswith(TEMP_PREFIX) and TEMP_MARKER in name


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not supported on every platform (e.g. Windows).
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path, write, durable: bool = True) -> Path:
    """Call write(binary_file) on a temp file beside `path`, then move it over `path`.

    durable=False skips the fsyncs: the rename is still atomic for every reader, but after a power
    loss the file may be empty; only for derived data whose reader checks it (the signal store)."""
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}{TEMP_MARKER}", dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)   # mkstemp creates 0600; banks are meant to be shared/read by others
        os.replace(tmp, path)
    except BaseException as error:
        # Also on KeyboardInterrupt: remove the partial temp file, keep the old target untouched.
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        if isinstance(error, OSError) and not error.filename:
            # a full disk / quota fails in write() or fsync(), whose error names no file: name the
            # file being written, so "No space left on device" says where
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise
    if durable:
        _fsync_dir(folder)
    return path


def atomic_write_with(path, write) -> Path:
    """Call write(binary_file) on a temp file beside `path`, then move it over `path` (nothing is left
    behind when write raises): for content produced piece by piece."""
    return _atomic_write(path, write)


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    return _atomic_write(path, lambda handle: handle.write(bytes(data)))


def atomic_write_text(path, text: str, encoding: str = "utf-8", *, durable: bool = True) -> Path:
    """Write `text` to `path` atomically (no newline translation); durable: see _atomic_write."""
    return _atomic_write(path, lambda handle: handle.write(text.encode(encoding)), durable)


def atomic_write_json(path, obj, *, indent: int = 2) -> Path:
    """Write `obj` as JSON (UTF-8, strict: NaN/inf rejected) to `path` atomically."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def atomic_save_npy(path, array) -> Path:
    """Save `array` as .npy (no pickles: object arrays are refused) to `path` atomically."""
    array = np.asanyarray(array)
    if array.dtype.hasobject:
        raise UsageError(f"refusing to save an object array to {path}: .npy files here never hold pickles")

    def write(handle: io.BufferedWriter) -> None:
        np.lib.format.write_array(handle, array, allow_pickle=False)

    return _atomic_write(path, write)


def atomic_save_npz(path, durable: bool = True, **arrays) -> Path:
    """Save named arrays as an uncompressed .npz (no pickles) to `path` atomically; durable: see
    _atomic_write."""
    for name, array in arrays.items():
        if np.asanyarray(array).dtype.hasobject:
            raise UsageError(f"refusing to save object array {name!r} to {path}: .npz files here never hold pickles")
    return _atomic_write(path, lambda handle: np.savez(handle, **arrays), durable)
