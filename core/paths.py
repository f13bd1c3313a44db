"""Paths written into files other people may receive (banks, exported cascade configs).

An absolute path such as /home/alice/banks/b leaks the user's name when a bank or a config is
shared. `portable_path` writes a path under the home folder as `~/...`, which every reader of these
files expands again (`Path(p).expanduser()`), so the file still works for its author.
"""

from __future__ import annotations

from pathlib import Path


def portable_path(path) -> str:
    """`path` as text to store: `~/<relative>` when it lies under the user's home folder, else as given
    (absolute paths elsewhere, e.g. /data/banks, name no user). Relative paths are kept relative."""
    path = Path(path).expanduser()
    if not path.is_absolute():
        return str(path)
    try:
        home = Path.home().resolve()
    except (RuntimeError, KeyError, OSError):   # no home folder (some service accounts)
        return str(path)
    for candidate in (path, path.resolve()):
        try:
            return str(Path("~") / candidate.relative_to(home))
        except ValueError:
            continue
    return str(path)


def portable_spec(spec):
    """A model spec (core.adapters) to store in a bank: its local file path written with
    `portable_path` ("tflite:~/models/m.tflite", "timm:ARCH=~/w.safetensors"); the adapters expand
    "~" again. Specs without a local path (hub names, packages) and non-strings come back unchanged."""
    if not isinstance(spec, str) or ":" not in spec:
        return spec
    prefix, body = spec.split(":", 1)
    if prefix == "tflite" and Path(body.strip()).is_absolute():
        return f"{prefix}:{portable_path(body.strip())}"
    if prefix == "timm" and "=" in body:
        arch, weights = body.split("=", 1)
        if not weights.strip().startswith("package:") and Path(weights.strip()).is_absolute():
            return f"{prefix}:{arch}={portable_path(weights.strip())}"
    return spec
