"""Server time of each script run, for `python -m cascade_explorer.commands.load_bench`.

When CASCADE_EXPLORER_RUN_LOG names a file, app.py appends one JSON line per script run:
{"t": unix time (s), "page": url path, "seconds": server time of the run, "outcome": "ok" | error type}.
Off (no file, no cost) otherwise. One os.write of a short line with O_APPEND: lines from concurrent
sessions (threads of one server) never interleave.
"""

from __future__ import annotations

import json
import os
import time

RUN_LOG_ENV = "CASCADE_EXPLORER_RUN_LOG"


def record(page: str, seconds: float, outcome: str = "ok") -> None:
    path = os.environ.get(RUN_LOG_ENV)
    if not path:
        return
    line = json.dumps({"t": time.time(), "page": page, "seconds": seconds, "outcome": outcome}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)
