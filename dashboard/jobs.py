"""Background jobs of the dashboard (issue 10): long computations run on a thread of their own while
every page renders at once and shows their progress.

A `Job` runs one function ``work(job)`` on a daemon thread, started at most once. The work reports
progress through ``job.report(done, total, step)`` (or hands ``job.progress`` to a core function's
``progress`` hook); ``job.cancel()`` makes the next report raise core.errors.CancelledError, so a
cancelled job stops between two steps instead of burning CPU to the end, and its result is never
kept. An exception inside the work is kept as a one-line message (``job.error``: core's messages
as they are, anything else as "ExceptionType: message" with the traceback logged on the server),
never lost and never shown as a traceback.

A `JobRegistry` holds the process-wide jobs by key (e.g. (bank version, split)), so every session
shares one job per key; the dashboard keeps one registry in ``st.cache_resource``. This module has
no Streamlit in it: the page glue is in dashboard/scale_ui.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Hashable

from cascade_explorer.core.errors import CancelledError, CascadeExplorerError

log = logging.getLogger(__name__)

PENDING, RUNNING, DONE, FAILED, CANCELLED = "pending", "running", "done", "failed", "cancelled"


@dataclass(frozen=True)
class Progress:
    """What a page shows of a job: its state, steps done out of total (total 0: not known yet), the
    step in words, seconds since it started, and the error message when it failed."""

    state: str
    done: int
    total: int
    step: str
    elapsed_s: float
    error: str | None

    @property
    def fraction(self) -> float:
        """done / total in [0, 1] (0 while the total is unknown)."""
        return min(max(self.done / self.total, 0.0), 1.0) if self.total > 0 else 0.0


class Job:
    """One computation on a background thread (see the module docstring). Thread-safe."""

    def __init__(self, key: Hashable, work: Callable[["Job"], Any], *, what: str = "working"):
        self.key = key
        self.what = what
        self._work = work
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._finished = threading.Event()
        self._cancel = threading.Event()
        self._state = PENDING
        self._done, self._total, self._step = 0, 0, what
        self._started: float | None = None
        self._ended: float | None = None
        self.result: Any = None
        self.error: str | None = None
        self.exception: BaseException | None = None   # what `error` says, for callers that tell kinds apart

    # -- control

    def start(self) -> bool:
        """Start the thread unless it was started before; True when this call started it."""
        with self._lock:
            if self._thread is not None:
                return False
            self._state, self._started = RUNNING, time.monotonic()
            self._thread = threading.Thread(target=self._run, name=f"cascade-explorer job {self.what}", daemon=True)
            self._thread.start()
            return True

    def cancel(self) -> None:
        """Ask the work to stop at its next report (a finished job is left as it is)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block up to `timeout` seconds (None: until it ends); True when the job has ended."""
        return self._finished.wait(timeout)

    @property
    def finished(self) -> bool:
        """Ended, one way or another (done, failed or cancelled)."""
        return self._finished.is_set()

    @property
    def state(self) -> str:
        return self._state

    # -- called by the work

    def report(self, done: int, total: int, step: str | None = None) -> None:
        """Progress from the work: `done` of `total` steps, `step` in words (kept when None). Raises
        CancelledError when the job was cancelled: the work stops here."""
        if self._cancel.is_set():
            raise CancelledError(f"{self.what}: cancelled (its input changed)")
        with self._lock:
            self._done, self._total = int(done), int(total)
            if step is not None:
                self._step = step

    def progress(self, done: int, total: int) -> None:
        """report() without words: the shape of core's ``progress(done, total)`` hooks."""
        self.report(done, total)

    def snapshot(self) -> Progress:
        with self._lock:
            end = self._ended if self._ended is not None else time.monotonic()
            elapsed = 0.0 if self._started is None else end - self._started
            return Progress(self._state, self._done, self._total, self._step, elapsed, self.error)

    # -- the thread

    def _run(self) -> None:
        try:
            result = self._work(self)
            if self._cancel.is_set():     # cancelled after its last report: the result is not kept
                raise CancelledError(f"{self.what}: cancelled (its input changed)")
            outcome, self.result = DONE, result
        except CancelledError:
            outcome = CANCELLED
        except CascadeExplorerError as exc:     # a deliberate message: what, where, how to fix
            outcome, self.error, self.exception = FAILED, str(exc), exc
        except Exception as exc:  # a bug or an unreadable file: one line on the page, the traceback in the log
            log.exception("background job %r failed", self.what)
            outcome, self.error, self.exception = FAILED, f"{type(exc).__name__}: {exc}", exc
        with self._lock:
            self._state, self._ended = outcome, time.monotonic()
        self._finished.set()


class JobRegistry:
    """Process-wide jobs by key, each started at most once (see `get`). Holds at most `max_jobs`
    ended jobs (the oldest are dropped: their results stay memoised in the BankAnalysis). Thread-safe."""

    def __init__(self, max_jobs: int = 32):
        self.max_jobs = max_jobs
        self._jobs: OrderedDict[Hashable, Job] = OrderedDict()
        self._watchers: dict[Hashable, set] = {}      # key -> who waits for that job's result
        self._lock = threading.Lock()

    def get(self, key: Hashable, work: Callable[[Job], Any], *, what: str = "working",
            replaces: Hashable | None = None, watcher: Hashable | None = None) -> Job:
        """The job of `key`, started (a new one when there is none, or the last one was cancelled).
        `watcher`: who asks (e.g. a browser session); `replaces`: the key this watcher asked for before
        (its previous input). The watcher stops watching that job, and the job is cancelled when it is
        another key, still running and nobody else watches it (another session may be waiting for the
        same search). Without a watcher the replaced job is cancelled whenever it is still running."""
        with self._lock:
            if replaces is not None and replaces != key:
                self._release(replaces, watcher)
            job = self._jobs.get(key)
            if job is None or job.cancelled:
                job = Job(key, work, what=what)
                self._jobs[key] = job
                self._watchers[key] = set()
            if watcher is not None:
                self._watchers.setdefault(key, set()).add(watcher)
            self._jobs.move_to_end(key)
            self._trim()
        job.start()
        return job

    def release(self, key: Hashable, watcher: Hashable | None = None) -> None:
        """`watcher` no longer needs the job of `key`: cancel it when it runs and nobody else watches."""
        with self._lock:
            self._release(key, watcher)

    def _release(self, key: Hashable, watcher: Hashable | None) -> None:
        watchers = self._watchers.get(key, set())
        watchers.discard(watcher)
        old = self._jobs.get(key)
        if old is not None and not old.finished and not watchers:
            old.cancel()

    def peek(self, key: Hashable) -> Job | None:
        """The job of `key` when there is one (never starts anything)."""
        with self._lock:
            return self._jobs.get(key)

    def forget(self, key: Hashable) -> None:
        """Drop an ended job (e.g. a failed one, so that the next `get` tries again)."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.finished:
                del self._jobs[key]
                self._watchers.pop(key, None)

    def _trim(self) -> None:
        ended = [k for k, j in self._jobs.items() if j.finished]
        for k in ended[: max(0, len(self._jobs) - self.max_jobs)]:
            del self._jobs[k]
            self._watchers.pop(k, None)
