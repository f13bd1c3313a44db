"""Errors a user can cause and fix; the CLI prints them as one line and exits 2."""

from __future__ import annotations

import os
from pathlib import Path


class UsageError(ValueError):
    """A mistake in how a command or function was called (bad argument value, unknown name)."""


def require_file(path, what: str) -> Path:
    """`path` as a Path when it is an existing file; else a UsageError naming `what` (an option such
    as '--labels', or a description) that says whether the path is missing, a folder, or unusable."""
    return _require(path, what, want_dir=False)


def require_dir(path, what: str) -> Path:
    """`path` as a Path when it is an existing folder; else a UsageError like require_file's."""
    return _require(path, what, want_dir=True)


def _require(path, what: str, *, want_dir: bool) -> Path:
    p = Path(path)
    try:
        # stat follows symlinks, as opening the file later will
        is_dir = p.is_dir()
        exists = is_dir or p.exists()
    except OSError as error:      # name too long, a file used as a folder on the way, ...
        raise UsageError(f"{what} {p}: {error.strerror or error}") from None
    if not exists:
        raise UsageError(f"{what} {p}: {'folder' if want_dir else 'file'} not found")
    if is_dir and not want_dir:
        raise UsageError(f"{what} {p}: is a folder, expected a file")
    if want_dir and not is_dir:
        raise UsageError(f"{what} {p}: is a file, expected a folder")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{what} {p}: not readable (permission denied)")
    return p
