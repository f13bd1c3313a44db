"""The writer lock of a bank: one writer at a time (import, precompute, BankWriter, derived stores).

Every writer reads manifest.json, changes it and writes it back; two at once would lose one's
update. So each holds an OS file lock (the maintained `filelock` library: flock/fcntl on POSIX,
LockFileEx on Windows; released by the OS when a writer dies, even by kill -9) on
BANK/.cascade-explorer.lock for as long as it writes. Readers never lock: every write is atomic,
and an unfinished import is marked in the manifest (format.UNFINISHED).

A second writer *waits* for the lock, up to `timeout` seconds (default 60), then fails with a
LockedError saying who to wait for: imports are short, so two imports into one folder both succeed
one after the other instead of one failing for no reason of its own, while a writer stuck behind a
long precompute is told so within a minute rather than hanging silently.

The lock is re-entrant within one thread (the importer holds it around its checks and its
BankWriter takes it again), and each thread of a process is a separate holder.

Before the lock file is created in a folder, the folder is checked to be a bank, a new folder, or
one holding nothing but this tool's own leftovers (`bank_folder_state`): a writer never puts a file
into a folder it was not asked to make a bank of.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from filelock import FileLock, Timeout

from ..errors import BankError, LockedError
from .format import LOCK, MANIFEST, load_manifest, lock_path, manifest_path, validate_manifest

DEFAULT_TIMEOUT_S = 60.0
# atomic.py's temp names: "." + final name + ".tmp-" + mkstemp's 8 random characters
TEMP_NAME = re.compile(r"\.(?P<final>.+)\.tmp-[A-Za-z0-9_]{8}\Z")

_LOCKS: dict[str, FileLock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(folder: Path) -> FileLock:
    # One FileLock object per bank per process: re-entrant (its counter) within a thread, and a
    # separate OS lock per thread (thread_local), so threads exclude each other like processes.
    key = os.path.realpath(folder)
    with _LOCKS_GUARD:
        lock = _LOCKS.get(key)
        if lock is None:
            lock = _LOCKS[key] = FileLock(str(lock_path(folder)), thread_local=True)
        return lock


def own_leftover(folder: Path, name: str) -> bool:
    """True for a file a killed writer of a *new* bank can have left in its folder before the first
    manifest.json landed: the lock file, or a temp file of manifest.json."""
    match = TEMP_NAME.fullmatch(name)
    return name == LOCK or (match is not None and match["final"] == MANIFEST)


def bank_folder_state(folder) -> str:
    """'bank' (a valid manifest.json), 'new' (missing, empty, or only own_leftover files), else BankError.

    Reads only: nothing is created or deleted, so it is safe on any folder a user points at.
    """
    folder = Path(folder)
    if not folder.exists():
        return "new"
    if not folder.is_dir():
        raise BankError("exists and is not a folder", path=folder, fix="choose another output folder")
    if manifest_path(folder).exists():
        manifest = load_manifest(folder)     # BankError naming the file when it is not a bank's
        validate_manifest(manifest, manifest_path(folder))
        return "bank"
    others = sorted(p.name for p in folder.iterdir() if not own_leftover(folder, p.name))
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        raise BankError(f"folder exists, is not empty ({shown}) and has no manifest.json, so it is not a bank",
                        path=folder, fix="choose a new or empty folder for the bank (nothing was changed here)")
    return "new"


class bank_lock:
    """`with bank_lock(folder):` holds the bank's writer lock (see the module docstring).

    The folder must be a bank or new (bank_folder_state); a new one is created. Raises BankError for
    a folder that is neither (before touching it) and LockedError when another writer keeps the
    lock for `timeout` seconds.
    """

    def __init__(self, folder, *, timeout: float = DEFAULT_TIMEOUT_S):
        self.folder = Path(folder).expanduser()
        self.timeout = float(timeout)
        self._lock: FileLock | None = None

    def acquire(self) -> "bank_lock":
        bank_folder_state(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = _lock_for(self.folder)
        try:
            lock.acquire(timeout=self.timeout)
        except Timeout:
            raise LockedError(f"{self.folder}: another process is writing this bank (it holds "
                              f"{lock_path(self.folder).name}; waited {self.timeout:g} s). Fix: wait for that "
                              "import or precompute to finish, then run this again") from None
        self._lock = lock
        return self

    def release(self) -> None:
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.release()

    def __enter__(self) -> "bank_lock":
        return self.acquire()

    def __exit__(self, *exc) -> bool:
        self.release()
        return False
