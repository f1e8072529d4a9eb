"""Drain the spool into ClickHouse: flatten, insert, then advance the checkpoint.

Flattening (protobuf → rows, normalization, pricing) is CPU-bound Python, so it runs in worker
processes, in chunks small enough to keep every worker busy, while earlier chunks are inserted
several at a time (fewer, larger parts for ClickHouse to write and merge); with `workers=0` it
runs in this thread instead. With the embedded database, workers stage their chunks as Arrow
files that chDB reads directly, so no batch crosses a pipe twice.
When ClickHouse is down or slow the spool keeps absorbing requests and the writer retries with
backoff; a record that ClickHouse rejects while it is otherwise healthy is moved to
`spool/dead/` and counted, never dropped silently.
"""

from __future__ import annotations

import logging
import multiprocessing
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from tokentrail.collector import summary
from tokentrail.collector.flatten import (
    LOG_COLUMNS,
    SPAN_COLUMNS,
    SPAN_SCHEMA,
    Flattened,
    SpoolItem,
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


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_GLOB_CHARS = re.compile(r"[*?{}\[\]]")
_SPAN_COLUMN_LIST = ", ".join(f"`{name}`" for name in SPAN_COLUMNS)


def _one_stream(streams: list[bytes]) -> bytes:
    if len(streams) == 1:
        return streams[0]
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, SPAN_SCHEMA) as out:
        for data in streams:
            for batch in pa.ipc.open_stream(data):
                out.write_batch(batch)
    return bytes(sink.getvalue())


def insert(client: Any, batches: Sequence[Flattened]) -> None:
    """Insert flattened batches synchronously (acknowledged = written, not queued), as one
    block per table."""
    streams = [b.span_arrow for b in batches if b.span_arrow]
    staged = [b.span_file for b in batches if b.span_file is not None]
    if staged:
        # Staged files exist only with the embedded database, which reads them itself: one
        # INSERT for all of them (a glob of their names) makes one part instead of one per file.
        directory = staged[0].parent
        if _GLOB_CHARS.search(str(directory)) or any(f.parent != directory for f in staged):
            streams += [f.read_bytes() for f in staged]  # a path ClickHouse would read as a pattern
        else:
            names = staged[0].name if len(staged) == 1 else "{" + ",".join(f.name for f in staged) + "}"
            path = _sql_string(f"{directory}/{names}")
            client.command(f"INSERT INTO spans ({_SPAN_COLUMN_LIST}) FROM INFILE {path} FORMAT ArrowStream",
                           settings=_INSERT_SETTINGS)  # fmt: skip
    if streams:
        client.raw_insert("spans", list(SPAN_COLUMNS), _one_stream(streams), settings=_INSERT_SETTINGS, fmt="ArrowStream")
    logs = [b.log_json for b in batches if b.log_json]
    if logs:
        client.raw_insert("logs", list(LOG_COLUMNS), b"\n".join(logs), settings=_INSERT_SETTINGS, fmt="JSONCompactEachRow")


def load(client: Any, project: str, requests: Iterable[bytes], pricer: PriceBook | None = None,
         task_attribute: str = "") -> int:  # fmt: skip
    """Write encoded `ExportTraceServiceRequest`s straight to ClickHouse, without the spool,
    and refresh their summaries: for seeding a database (benchmarks, tests). Returns spans written."""
    written = 0
    dirty: set[tuple[str, str]] = set()
    judged: set[tuple[str, str]] = set()
    for payload in requests:
        rows = flatten_records([(KIND_TRACES, project, payload)], pricer)
        insert(client, [rows])
        dirty |= rows.traces
        judged |= rows.outcome_traces
        written += rows.span_count
        if len(dirty) >= 5000:  # summaries in large batches: one refresh per request is the slow part
            summary.refresh(client, dirty, task_attribute, judged)
            dirty, judged = set(), set()
    summary.refresh(client, dirty, task_attribute, judged)
    return written


def _approx_spans(record: Record) -> int:
    return max(1, record.size // 2048)  # rough: ~2 KB per span


def _estimate(job: _Job) -> int:
    return sum(map(_approx_spans, job.records))


def _discard_result(future: Future[Flattened]) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().discard()


def _abandon(jobs: Iterable[_Job]) -> None:
    """Drop jobs that will not be inserted now; their staged files go when they finish."""
    for job in jobs:
        job.rows.cancel()
        job.rows.add_done_callback(_discard_result)


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
        chunk_spans: int = 5_000,
        idle_seconds: float = 0.5,
        summary_seconds: float = 1.0,
        workers: int = 0,
        stage_dir: Path | None = None,
        summary_client: Any = None,
        task_attribute: str = "",
    ) -> None:
        """`batch_spans`: spans per insert; `chunk_spans`: spans per flattening job (with workers).
        `stage_dir`: where workers stage flattened chunks as files; only for the embedded
        database, which reads them from this process."""
        self.client = client
        #: a second client lets summaries run on their own thread, beside the inserts
        self.summary_client = summary_client
        self.task_attribute = task_attribute
        self.spool = spool
        self.stats = stats
        self.pricer = pricer
        self.batch_spans = batch_spans
        self.chunk_spans = min(chunk_spans, batch_spans)
        self.idle_seconds = idle_seconds
        self.summary_seconds = summary_seconds
        self.dead_dir = spool.directory / "dead"
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self.stage_dir = stage_dir if workers > 0 else None
        if self.stage_dir is not None:
            # chunks staged by a run that ended mid-batch; the spool still holds their records
            shutil.rmtree(self.stage_dir, ignore_errors=True)
            self.stage_dir.mkdir(parents=True)
        if workers > 0:
            self._pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),  # never fork a process holding chDB
                initializer=init_worker,
                initargs=(pricer is not None, str(self.stage_dir) if self.stage_dir else None),
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

    def _take(self, start: Position, spans: int, single: bool = False) -> list[Record]:
        records: list[Record] = []
        items = 0
        # Worker processes read payloads themselves; a record kept aside needs its payload here.
        for record in self.spool.read(start, payloads=self._pool is None or single):
            records.append(record)
            items += _approx_spans(record)
            if single or items >= spans:
                break
        return records

    def _submit(self, records: list[Record]) -> _Job:
        # the payload, or (read without it) where a worker finds it
        raw: list[SpoolItem] = [(r.kind, r.project, r.payload or r.stored or b"") for r in records]
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

    def _complete(self, jobs: list[_Job]) -> int:
        """Insert flattened jobs (in spool order) as one, then advance the checkpoint past the
        last; raises if anything fails."""
        batches: list[Flattened] = []
        try:
            for job in jobs:
                batches.append(job.rows.result())
            insert(self.client, batches)
        finally:
            for rows in batches:
                rows.discard()
            _abandon(jobs[len(batches) :])
        self.spool.commit(jobs[-1].records[-1].end)
        self._failures = 0
        self.last_error = ""
        spans = sum(rows.span_count for rows in batches)
        logs = sum(rows.log_count for rows in batches)
        self.stats.add("tokentrail_spans_stored_total", spans)
        self.stats.add("tokentrail_logs_stored_total", logs)
        with self._dirty_lock:
            for rows in batches:
                self._dirty |= rows.traces
                self._outcome_dirty |= rows.outcome_traces
        return spans + logs

    def drain_once(self) -> int:
        """Move one batch from the spool into ClickHouse; returns the items stored."""
        with self._step:
            single = self._failures >= 3
            records = self._take(self.spool.checkpoint, self.batch_spans, single)
            if not records:
                return 0
            job = self._submit(records)
            try:
                return self._complete([job])
            except Exception as exc:
                self._failed(records, exc, single)
                return 0

    def _pipeline(self) -> int:
        """Like drain_once, but keeps the workers busy flattening chunks while earlier chunks
        are inserted, several at a time."""
        with self._step:
            if self._failures:
                return self.drain_once()
            if self._pool is None:
                chunk, depth = self.batch_spans, 1
            else:
                # enough chunks for the next insert, plus one per worker to flatten meanwhile
                chunk = self.chunk_spans
                depth = -(-self.batch_spans // chunk) + self._workers
            jobs: deque[_Job] = deque()
            position = self.spool.checkpoint
            stored = 0

            def refill() -> None:
                nonlocal position
                while len(jobs) < depth:
                    records = self._take(position, chunk)
                    if not records:
                        return
                    jobs.append(self._submit(records))
                    position = records[-1].end

            while not self._stop.is_set():
                refill()
                if not jobs:
                    break
                group = [jobs.popleft()]
                spans = _estimate(group[0])
                while jobs and spans + (more := _estimate(jobs[0])) <= self.batch_spans:
                    spans += more
                    group.append(jobs.popleft())
                refill()  # the workers go on with the next chunks while this group is inserted
                try:
                    stored += self._complete(group)
                except Exception as exc:
                    _abandon(jobs)
                    self._failed([r for job in group for r in job.records], exc, single=False)
                    return stored
                if self.summary_client is None:
                    self.summarize()
            _abandon(jobs)  # stopping: the spool still holds them; they are replayed
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
