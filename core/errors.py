"""Every error the library raises on purpose, in one module (model: ``sklearn/exceptions.py``).

All of them derive from :class:`CascadeExplorerError` (itself a ``ValueError``, so code written
against earlier versions that caught ``ValueError`` keeps working). The command line turns exactly
these into one line on stderr and exit status 2; anything else is a bug in Cascade Explorer and is
shown with its traceback and a request to report it.

Messages name the argument (``batch_size must be >= 1, got 0``), never a command-line flag: the
command layer (``cascade_explorer.commands``) rewrites parameter names into its flags.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class CascadeExplorerError(ValueError):
    """Base of every deliberate library error: something the caller can see and fix.

    ``parameter`` (optional) names the argument at fault; the CLI maps it to its flag.
    """

    parameter: str | None = None


class UsageError(CascadeExplorerError):
    """A mistake in how a function was called: a bad argument value, an unknown name.

    When ``parameter`` is given, the message starts with that parameter's name, so the command layer
    can rewrite the name into its flag (``batch_size must be >= 1`` -> ``--batch-size must be >= 1``).
    """

    def __init__(self, message: str, *, parameter: str | None = None):
        super().__init__(message)
        self.parameter = parameter


class BankError(CascadeExplorerError):
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


class ConfigError(CascadeExplorerError):
    """A bad cascade config; the message names the file (if any) and the field."""

    def __init__(self, field_name: str, problem: str, *, path=None):
        self.field = field_name
        self.problem = problem
        self.path = path
        prefix = f"{path}: " if path is not None else ""
        super().__init__(f"{prefix}cascade config field {field_name!r}: {problem}")


class JSONFormatError(CascadeExplorerError):
    """Text that is not acceptable JSON: malformed (the message names line and column), a key given
    twice in one object, or nesting deeper than any file of the project needs. Callers that know the
    file turn it into their own error (BankError, ConfigError) naming the file."""


class LockedError(CascadeExplorerError):
    """Another process is writing the same bank (it holds the bank's writer lock)."""


class ImageError(UsageError):
    """An image that cannot be decoded safely; the message names the file and the problem."""


class FetchError(CascadeExplorerError):
    """A file that is neither available locally nor downloadable/verifiable."""


class NotCertifiedError(CascadeExplorerError):
    """No thresholds could be certified for a target (`analysis.fit_for_target(..., certify=delta)`).

    ``certificate`` is the core.certify.Certificate: its message says why and, when more data would
    help, about how many calibration samples would be needed (``samples_needed``).
    """

    def __init__(self, message: str, *, certificate=None):
        super().__init__(message)
        self.certificate = certificate


class CancelledError(CascadeExplorerError):
    """A long computation stopped early because its caller asked it to (a ``progress`` hook raised it).

    Long core computations (``search.pair_frontier``, ``search.three_model_frontier``,
    ``BankAnalysis.frontier``, ``BankAnalysis.fill_signals``) take an optional
    ``progress(done, total)`` callable and call it between steps; the hook raises this to abandon
    the work (the dashboard does when its input changed). Nothing partial is kept or memoised.
    """


class AdapterError(UsageError):
    """A model spec that cannot be turned into a model adapter (unknown backend, bad file)."""


class ModelLoadError(UsageError):
    """A model of the cascade cannot be created: missing backend package, weights or spec."""


# What a non-regular file is, by its st_mode type: opening one for reading can block forever (a FIFO
# with no writer, a terminal) or never end (/dev/zero), so nothing here opens one.
_SPECIAL_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                  (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def special_file_kind(path) -> str | None:
    """What `path` is when it exists but is neither a regular file nor a folder ("a named pipe
    (FIFO)", "a socket", "a character device", "a block device"); None otherwise (also when it is
    missing or cannot be stat'ed). Uses stat only (follows symlinks, as opening would): it never
    opens the path, so it cannot hang on a FIFO."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    for test, kind in _SPECIAL_KINDS:
        if test(mode):
            return kind
    return None


def special_file_problem(path) -> str | None:
    """A one-line reason to refuse reading `path` ("is a named pipe (FIFO), not a regular file"),
    or None when it is not a special file. For callers that raise their own error class (BankError,
    ImageError, ConfigError): check this before every open of a user- or bank-supplied file."""
    kind = special_file_kind(path)
    return None if kind is None else f"is {kind}, not a regular file; only regular files are read"


def require_file(path, what: str) -> Path:
    """`path` as a Path when it is an existing regular file; else a UsageError naming `what` (a
    parameter name such as 'labels_path', or a description) that says whether the path is missing,
    a folder, a special file (FIFO, device, socket: reading one could hang), or unusable."""
    return _require(path, what, want_dir=False)


def require_dir(path, what: str) -> Path:
    """`path` as a Path when it is an existing folder; else a UsageError like require_file's."""
    return _require(path, what, want_dir=True)


def _require(path, what: str, *, want_dir: bool) -> Path:
    p = Path(path)
    parameter = what.split()[0] if what and what.split()[0].isidentifier() else None
    try:
        # stat follows symlinks, as opening the file later will
        is_dir = p.is_dir()
        exists = is_dir or p.exists()
    except OSError as error:      # name too long, a file used as a folder on the way, ...
        raise UsageError(f"{what} {p}: {error.strerror or error}", parameter=parameter) from None
    if not exists:
        raise UsageError(f"{what} {p}: {'folder' if want_dir else 'file'} not found", parameter=parameter)
    if is_dir and not want_dir:
        raise UsageError(f"{what} {p}: is a folder, expected a file", parameter=parameter)
    if want_dir and not is_dir:
        raise UsageError(f"{what} {p}: is a file, expected a folder", parameter=parameter)
    problem = None if want_dir else special_file_problem(p)
    if problem:
        raise UsageError(f"{what} {p}: {problem}", parameter=parameter)
    if not os.access(p, os.R_OK):
        raise UsageError(f"{what} {p}: not readable (permission denied)", parameter=parameter)
    return p
