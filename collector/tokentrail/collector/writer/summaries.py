"""The writer's last step: reconcile the traces it has written.

Spans of one trace arrive in many batches and in any order, so what depends on the whole trace
(which model calls are billed, the trace's summary row, the outcomes filed from outcome spans) is
worked out after its spans are stored, not while they are flattened. The writer notes the traces
of every batch it commits (`Summaries.note`: all of them, and apart those with a span that records
an outcome) and reconciles them at most every `summary_seconds`: on a thread of its own, with a
ClickHouse client of its own, beside the inserts; or, without one, on the writer's thread between
inserts. A step that fails keeps its traces for the next one; the spans are stored either way.

Coding agents' sessions come first: the sessions a batch brought events (or the tool's own spans)
of are built into spans (`tokentrail.collector.coding.sessions`), and the traces that wrote are
reconciled with the others.

`reconcile` is the writer's one call into the reconciler, `tokentrail.store.reconcile` (for
`Summaries` and for `load`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from tokentrail.collector.coding import sessions
from tokentrail.collector.coding.events import Touched
from tokentrail.collector.flatten import Flattened
from tokentrail.pricing import PriceBook
from tokentrail.store.reconcile import reconcile as store_reconcile

__all__ = ["Summaries", "reconcile"]

logger = logging.getLogger("tokentrail.collector")

Traces = set[tuple[str, str]]


def reconcile(client: Any, traces: Traces, judged: Traces, task_attribute: str) -> int:
    """Bring what depends on whole traces up to date for `traces` ((project, trace id) pairs);
    `judged`: those of them with a span that records an outcome. Returns how many traces."""
    return store_reconcile(client, traces, task_attribute, judged)


class Summaries:
    def __init__(
        self,
        client: Callable[[], Any],
        task_attribute: str,
        seconds: float,
        *,
        threaded: bool,
        pricer: PriceBook | None = None,
    ) -> None:
        """`client`: gives the client to reconcile with; `threaded`: reconcile on a thread of
        its own (with a client of its own), rather than when the writer calls `step`; `pricer`:
        prices the model calls of the coding agents' sessions it builds."""
        self._client = client
        self.pricer = pricer
        self._sessions = Touched()
        self.task_attribute = task_attribute
        self.seconds = seconds
        self.threaded = threaded
        self._dirty: Traces = set()
        self._judged: Traces = set()
        self._last = 0.0
        self._lock = threading.Lock()  # one step at a time
        self._dirty_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def note(self, batches: Iterable[Flattened]) -> None:
        """The traces of batches just committed."""
        with self._dirty_lock:
            for rows in batches:
                self._dirty |= rows.traces
                self._judged |= rows.outcome_traces
                if rows.sessions:
                    self._sessions.update(rows.sessions)

    def step(self, force: bool = False) -> int:
        """Reconcile the traces noted since the last step (at most every `seconds` unless
        forced); returns how many."""
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last < self.seconds:
                return 0
            with self._dirty_lock:
                dirty, self._dirty = self._dirty, set()
                judged, self._judged = self._judged, set()
                touched = self._sessions.take()
            if touched:
                dirty |= sessions.build(self._client(), touched, self.pricer)
            if not dirty:
                return 0
            try:
                done = reconcile(self._client(), dirty, judged, self.task_attribute)
            except Exception as exc:
                with self._dirty_lock:
                    self._dirty |= dirty
                    self._judged |= judged
                logger.warning("refreshing trace summaries failed: %s", exc)
                return 0
            self._last = now
            return done

    def start(self, stop: threading.Event) -> None:
        """With `threaded`, reconcile every `seconds` on a thread of its own until `stop` is set."""
        if self.threaded:
            self._thread = threading.Thread(
                target=self._run, args=(stop,), name="tokentrail-summaries", daemon=True
            )
            self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None

    def _run(self, stop: threading.Event) -> None:
        while not stop.wait(self.seconds):
            try:
                self.step(force=True)
            except Exception:
                logger.exception("summary step failed")
