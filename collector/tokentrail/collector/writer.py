"""Drain the spool into ClickHouse: flatten, insert, then advance the checkpoint.

Flattening (protobuf → rows, normalization, pricing) is CPU-bound Python, so it runs in a worker
process while the previous batch is inserted; with `workers=0` it runs in this thread instead.
When ClickHouse is down or slow the spool keeps absorbing requests and the writer retries with
backoff; a record that ClickHouse rejects while it is otherwise healthy is moved to
`spool/dead/` and counted, never dropped silently.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from tokentrail.collector import summary
from tokentrail.collector.flatten import (
    LOG_COLUMNS,
    SPAN_COLUMNS,
    Flattened,
    flatten_in_worker,
    flatten_records,
    init_worker,
)
from tokentrail.collector.pricing import PriceBook
from tokentrail.collector.spool import KIND_TRACES, Position, Record, Spool
from tokentrail.collector.stats import Stats

__all__ = ["Writer", "insert", "load"]

logger = logging.getLogger("tokentrail.collector")

_INSERT_SETTINGS = {"async_insert": 0}
_MAX_BACKOFF = 30.0


@dataclass
class _Job:
    records: list[Record]
    rows: Future[Flattened]


def insert(client: Any, rows: Flattened) -> None:
    """Insert one flattened batch synchronously (acknowledged = written, not queued)."""
    if rows.span_count:
        client.raw_insert("spans", list(SPAN_COLUMNS), rows.span_json, settings=_INSERT_SETTINGS, fmt="JSONCompactEachRow")
    if rows.log_count:
        client.raw_insert("logs", list(LOG_COLUMNS), rows.log_json, settings=_INSERT_SETTINGS, fmt="JSONCompactEachRow")


def load(client: Any, project: str, requests: Iterable[bytes], pricer: PriceBook | None = None,
         task_attribute: str = "") -> int:  # fmt: skip
    """Write encoded `ExportTraceServiceRequest`s straight to ClickHouse, without the spool,
    and refresh their summaries: for seeding a database (benchmarks, tests). Returns spans written."""
    written = 0
    dirty: set[tuple[str, str]] = set()
    judged: set[tuple[str, str]] = set()
    for payload in requests:
        rows = flatten_records([(KIND_TRACES, project, payload)], pricer)
        insert(client, rows)
        dirty |= rows.traces
        judged |= rows.outcome_traces
        written += rows.span_count
        if len(dirty) >= 5000:  # summaries in large batches: one refresh per request is the slow part
            summary.refresh(client, dirty, task_attribute, judged)
            dirty, judged = set(), set()
    summary.refresh(client, dirty, task_attribute, judged)
    return written


class Writer:
    #: first retry delay after a failed write; doubles per failure up to _MAX_BACKOFF
    backoff_base = 0.2

    def __init__(
        self,
        client: Any,
        spool: Spool,
        stats: Stats,
        *,
        pricer: PriceBook | None = None,
        batch_spans: int = 20_000,
        idle_seconds: float = 0.5,
        summary_seconds: float = 1.0,
        workers: int = 0,
        summary_client: Any = None,
        task_attribute: str = "",
    ) -> None:
        self.client = client
        #: a second client lets summaries run on their own thread, beside the inserts
        self.summary_client = summary_client
        self.task_attribute = task_attribute
        self.spool = spool
        self.stats = stats
        self.pricer = pricer
        self.batch_spans = batch_spans
        self.idle_seconds = idle_seconds
        self.summary_seconds = summary_seconds
        self.dead_dir = spool.directory / "dead"
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        if workers > 0:
            self._pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),  # never fork a process holding chDB
                initializer=init_worker,
                initargs=(pricer is not None,),
            )
        self._dirty: set[tuple[str, str]] = set()
        self._outcome_dirty: set[tuple[str, str]] = set()
        self._last_summary = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self.last_error = ""
        # drain may be called from the thread and from flush(); one at a time (likewise summaries)
        self._step = threading.RLock()
        self._summary_lock = threading.Lock()
        self._dirty_lock = threading.Lock()
        self._summary_thread: threading.Thread | None = None

    # --- stages ------------------------------------------------------------------------------

    def _take(self, start: Position, single: bool = False) -> list[Record]:
        records: list[Record] = []
        items = 0
        for record in self.spool.read(start):
            records.append(record)
            items += max(1, len(record.payload) // 2048)  # rough: ~2 KB per span
            if single or items >= self.batch_spans:
                break
        return records

    def _submit(self, records: list[Record]) -> _Job:
        raw = [(r.kind, r.project, r.payload) for r in records]
        if self._pool is not None:
            try:
                return _Job(records, self._pool.submit(flatten_in_worker, raw))
            except BrokenProcessPool:
                logger.error("the flattening worker process died; flattening on the writer thread from now on")
                self._pool = None
        done: Future[Flattened] = Future()
        try:
            done.set_result(flatten_records(raw, self.pricer))
        except Exception as exc:
            done.set_exception(exc)
        return _Job(records, done)

    def _complete(self, job: _Job) -> int:
        """Insert a flattened job and advance the checkpoint; raises if anything fails."""
        rows = job.rows.result()
        insert(self.client, rows)
        self.spool.commit(job.records[-1].end)
        self._failures = 0
        self.last_error = ""
        self.stats.add("tokentrail_spans_stored_total", rows.span_count)
        self.stats.add("tokentrail_logs_stored_total", rows.log_count)
        with self._dirty_lock:
            self._dirty |= rows.traces
            self._outcome_dirty |= rows.outcome_traces
        return rows.span_count + rows.log_count

    def drain_once(self) -> int:
        """Move one batch from the spool into ClickHouse; returns the items stored."""
        with self._step:
            single = self._failures >= 3
            records = self._take(self.spool.checkpoint, single)
            if not records:
                return 0
            job = self._submit(records)
            try:
                return self._complete(job)
            except Exception as exc:
                self._failed(records, exc, single)
                return 0

    def _pipeline(self) -> int:
        """Like drain_once, but keeps one batch per worker flattening while earlier ones insert."""
        with self._step:
            if self._failures:
                return self.drain_once()
            # one batch inserting while each worker flattens another
            depth = self._workers + 1 if self._pool is not None else 1
            jobs: deque[_Job] = deque()
            position = self.spool.checkpoint
            stored = 0
            while not self._stop.is_set():
                while len(jobs) < depth:
                    records = self._take(position)
                    if not records:
                        break
                    jobs.append(self._submit(records))
                    position = records[-1].end
                if not jobs:
                    break
                job = jobs.popleft()
                try:
                    stored += self._complete(job)
                except Exception as exc:
                    for pending in jobs:
                        pending.rows.cancel()
                    self._failed(job.records, exc, single=False)
                    return stored
                if self.summary_client is None:
                    self.summarize()
            for pending in jobs:  # stopping: the spool still holds them; they are replayed
                pending.rows.cancel()
            return stored

    def _failed(self, records: list[Record], exc: Exception, single: bool) -> None:
        self._failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:500]
        self.stats.add("tokentrail_write_errors_total")
        logger.warning("writing %d spool records failed (%s); will retry", len(records), self.last_error)
        if single and self._failures >= 6 and self._healthy():
            # ClickHouse answers but refuses this one record: set it aside, visibly.
            self._quarantine(records[0], exc)
            self.spool.commit(records[0].end)
            self._failures = 3
            return
        if not self._stop.is_set():
            time.sleep(min(_MAX_BACKOFF, self.backoff_base * 2 ** min(self._failures, 8)))

    def _healthy(self) -> bool:
        try:
            self.client.command("SELECT 1")
            return True
        except Exception:
            return False

    def _quarantine(self, record: Record, exc: Exception) -> None:
        self.dead_dir.mkdir(exist_ok=True)
        name = f"{record.end.segment:016d}-{record.end.offset:012d}"
        (self.dead_dir / f"{name}.pb").write_bytes(record.payload)
        (self.dead_dir / f"{name}.txt").write_text(f"kind={record.kind} project={record.project}\n{exc}\n")
        self.stats.add("tokentrail_records_quarantined_total")
        logger.error("spool record %s refused by ClickHouse; kept in %s", name, self.dead_dir)

    def summarize(self, force: bool = False) -> int:
        """Recompute summaries of the traces written since the last call (at most every
        summary_seconds unless forced); returns how many."""
        with self._summary_lock:
            now = time.monotonic()
            if not force and now - self._last_summary < self.summary_seconds:
                return 0
            with self._dirty_lock:
                dirty, self._dirty = self._dirty, set()
                judged, self._outcome_dirty = self._outcome_dirty, set()
            if not dirty:
                return 0
            try:
                done = summary.refresh(self.summary_client or self.client, dirty, self.task_attribute, judged)
            except Exception as exc:
                with self._dirty_lock:
                    self._dirty |= dirty
                    self._outcome_dirty |= judged
                logger.warning("refreshing trace summaries failed: %s", exc)
                return 0
            self._last_summary = now
            return done

    def _summaries(self) -> None:
        while not self._stop.wait(self.summary_seconds):
            try:
                self.summarize(force=True)
            except Exception:
                logger.exception("summary step failed")

    def flush(self, timeout: float = 60.0) -> None:
        """Drain what is durable now, for at most `timeout` seconds, and refresh summaries.
        Whatever is left stays in the spool and is written after the next start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (self.drain_once() or self._failures):
            pass
        self.summarize(force=True)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                stored = self._pipeline()
                if self.summary_client is None:
                    self.summarize()
            except Exception:
                logger.exception("writer step failed")
                stored = 0
            if not stored:
                self._wake.wait(self.idle_seconds)
                self._wake.clear()
        try:
            self.flush(timeout=10.0)
        except Exception:
            logger.exception("final flush failed; the spool keeps the rest for the next start")

    def start(self) -> None:
        if self._pool is not None:
            # Start the worker (process spawn, imports, price catalog) now, not on the first batch.
            self._pool.submit(flatten_in_worker, [])
        self._thread = threading.Thread(target=self._run, name="tokentrail-writer", daemon=True)
        self._thread.start()
        if self.summary_client is not None:
            self._summary_thread = threading.Thread(target=self._summaries, name="tokentrail-summaries", daemon=True)
            self._summary_thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in (self._thread, self._summary_thread):
            if thread is not None:
                thread.join(timeout=60)
        self._thread = self._summary_thread = None
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
