"""Drain the spool into ClickHouse: flatten, insert, then advance the checkpoint.

Flattening (protobuf → rows, normalization, pricing) is CPU-bound Python, so it runs in worker
processes, in chunks small enough to keep every worker busy, while earlier chunks are inserted
several at a time (fewer, larger parts for ClickHouse to write and merge); with `workers=0` it
runs in this thread instead. With the embedded database, workers stage their chunks as Arrow
files that chDB reads directly, so no batch crosses a pipe twice.
When ClickHouse is down or slow the spool keeps absorbing requests and the writer retries with
backoff. A record that cannot be stored while ClickHouse is otherwise healthy must not hold the
others back: one that flattening refuses is set aside at once, and when ClickHouse refuses an
insert the batch is split in halves until the record it refuses on its own is found. Such a
record is written to `spool/dead/` (fsynced before the checkpoint moves past it) and counted,
never dropped silently; one whose bytes no longer match their checksum goes to
`spool/quarantine/` instead.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
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
from tokentrail.collector.spool import KIND_TRACES, CorruptRecord, Position, Record, Spool
from tokentrail.collector.stats import Stats
from tokentrail.pricing import PriceBook

__all__ = ["Writer", "insert", "load"]

logger = logging.getLogger("tokentrail.collector")

_INSERT_SETTINGS = {"async_insert": 0}
_MAX_BACKOFF = 30.0
#: ClickHouse error codes that say nothing about the data: resources, the network, the schema or the
#: account. A smaller batch, or the same one later, may pass; no record is to blame.
_TRANSIENT_CODES = {
    10: "NOT_FOUND_COLUMN_IN_BLOCK",
    16: "NO_SUCH_COLUMN_IN_TABLE",
    24: "CANNOT_WRITE_TO_OSTREAM",
    60: "UNKNOWN_TABLE",
    74: "CANNOT_READ_FROM_FILE_DESCRIPTOR",
    75: "CANNOT_WRITE_TO_FILE_DESCRIPTOR",
    76: "CANNOT_OPEN_FILE",
    81: "UNKNOWN_DATABASE",
    159: "TIMEOUT_EXCEEDED",
    164: "READONLY",
    173: "CANNOT_ALLOCATE_MEMORY",
    194: "REQUIRED_PASSWORD",
    201: "QUOTA_EXCEEDED",
    202: "TOO_MANY_SIMULTANEOUS_QUERIES",
    209: "SOCKET_TIMEOUT",
    210: "NETWORK_ERROR",
    225: "NO_ZOOKEEPER",
    236: "ABORTED",
    241: "MEMORY_LIMIT_EXCEEDED",
    242: "TABLE_IS_READ_ONLY",
    243: "NOT_ENOUGH_SPACE",
    252: "TOO_MANY_PARTS",
    285: "TOO_FEW_LIVE_REPLICAS",
    319: "UNKNOWN_STATUS_OF_INSERT",
    394: "QUERY_WAS_CANCELLED",
    425: "SYSTEM_ERROR",
    439: "CANNOT_SCHEDULE_TASK",
    497: "ACCESS_DENIED",
    516: "AUTHENTICATION_FAILED",
    999: "KEEPER_EXCEPTION",
    1000: "POCO_EXCEPTION",
}
# The first code in the message is ClickHouse's own; text after it may quote the data, so it is
# not searched for words.
_CODE = re.compile(r"Code: (\d+)\.")
#: a record ClickHouse refuses on its own is tried this many more times, this far apart
_ALONE_DELAYS = (0.25, 0.5, 1.0)
#: ...and set aside only if some other insert succeeded this recently (else: an outage)
_INSERTS_WORK_SECONDS = 60.0


def _transient(exc: BaseException) -> bool:
    """Could `exc` pass on a retry, whatever the records? (Else it is about the data.)"""
    if isinstance(exc, (OSError, MemoryError, BrokenProcessPool, TimeoutError)):
        return True
    if type(exc).__name__ == "OperationalError":  # clickhouse_connect: the server could not be reached
        return True
    code = _CODE.search(str(exc))
    return code is not None and int(code.group(1)) in _TRANSIENT_CODES


class _Failure(Exception):
    """A step of writing `records` failed: `stage` is flatten, insert or local (the spool or the
    dead-letter directory could not be written)."""

    def __init__(self, stage: str, error: BaseException, records: list[Record]) -> None:
        super().__init__(f"{stage}: {error}")
        self.stage = stage
        self.error = error
        self.records = records


@dataclass
class _Job:
    records: list[Record]
    rows: Future[Flattened]


@dataclass
class _Written:
    """Records inserted into ClickHouse, the checkpoint not yet moved past them."""

    records: list[Record]
    end: Position
    batches: list[Flattened]


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
            client.command(
                f"INSERT INTO spans ({_SPAN_COLUMN_LIST}) FROM INFILE {path} FORMAT ArrowStream",
                settings=_INSERT_SETTINGS,
            )
    if streams:
        client.raw_insert(
            "spans", list(SPAN_COLUMNS), _one_stream(streams), settings=_INSERT_SETTINGS, fmt="ArrowStream"
        )
    logs = [b.log_json for b in batches if b.log_json]
    if logs:
        client.raw_insert(
            "logs", list(LOG_COLUMNS), b"\n".join(logs), settings=_INSERT_SETTINGS, fmt="JSONCompactEachRow"
        )


def load(
    client: Any,
    project: str,
    requests: Iterable[bytes],
    pricer: PriceBook | None = None,
    task_attribute: str = "",
) -> int:
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


def _init_worker(parent: int, with_pricing: bool, stage_dir: str | None) -> None:
    """`init_worker`, told which process to outlive: a collector killed while this worker was
    starting would otherwise be taken for init (pid 1), and the worker would wait forever."""
    threading.Thread(target=_exit_without, args=(parent,), daemon=True).start()
    init_worker(with_pricing, stage_dir)


def _exit_without(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


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
    #: the writer counts as stalled when records wait and none was stored for this long
    stall_seconds = 60.0

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
        self.dead_dir = spool.dead_dir
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
                initializer=_init_worker,
                initargs=(os.getpid(), pricer is not None, str(self.stage_dir) if self.stage_dir else None),
            )
        self._dirty: set[tuple[str, str]] = set()
        self._outcome_dirty: set[tuple[str, str]] = set()
        self._last_summary = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0  # in a row
        self.last_error = ""
        self.last_error_at = 0.0  # Unix time
        self._progress_at = time.monotonic()  # last commit, or last look that found nothing to write
        self._inserted_at = 0.0  # monotonic time of the last successful insert
        # drain may be called from the thread and from flush(); one at a time (likewise summaries)
        self._step = threading.RLock()
        self._summary_lock = threading.Lock()
        self._dirty_lock = threading.Lock()
        self._summary_thread: threading.Thread | None = None
        stats.gauge(
            "tokentrail_writer_stalled",
            f"1 while spool records wait and none was stored for {self.stall_seconds:g} s.",
            lambda: float(self.stalled),
        )
        stats.gauge(
            "tokentrail_writer_last_error_timestamp_seconds",
            "When a write last failed (Unix time; 0: never).",
            lambda: self.last_error_at,
        )
        stats.gauge(
            "tokentrail_spool_free_bytes",
            "Bytes free on the spool's filesystem.",
            lambda: float(spool.free_bytes()),
        )
        stats.gauge(
            "tokentrail_spool_last_error_timestamp_seconds",
            "When a spool write or fsync last failed (Unix time; 0: never).",
            lambda: spool.last_error_at,
        )
        stats.counter(
            "tokentrail_spool_errors_total",
            "Spool writes or fsyncs that failed (disk full, I/O error); "
            "their requests were answered 503/UNAVAILABLE.",
            lambda: spool.errors,
        )
        stats.counter(
            "tokentrail_spool_quarantined_records_total",
            "Damaged spool records (checksum mismatch) copied to spool/quarantine and skipped.",
            lambda: spool.quarantined,
        )

    # --- health ------------------------------------------------------------------------------

    @property
    def failing(self) -> bool:
        """The last write failed and has not been retried successfully yet."""
        return self._failures > 0

    @property
    def seconds_since_progress(self) -> float:
        return time.monotonic() - self._progress_at

    @property
    def stalled(self) -> bool:
        return self.spool.backlog_bytes > 0 and self.seconds_since_progress > self.stall_seconds

    def _note_error(self, exc: BaseException, records: int) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:500]
        self.last_error_at = time.time()
        self.stats.add("tokentrail_write_errors_total")
        logger.warning("writing %d spool records failed (%s)", records, self.last_error)

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
        if not records:
            self._progress_at = time.monotonic()
        return records

    def _submit(self, records: list[Record]) -> _Job:
        # the payload, or (read without it) where a worker finds it
        raw: list[SpoolItem] = [(r.kind, r.project, r.payload or r.stored or b"") for r in records]
        if self._pool is not None:
            try:
                return _Job(records, self._pool.submit(flatten_in_worker, raw))
            except BrokenProcessPool:
                logger.error(
                    "the flattening worker process died; flattening on the writer thread from now on"
                )
                self._pool = None
        done: Future[Flattened] = Future()
        try:
            done.set_result(flatten_records(raw, self.pricer))
        except Exception as exc:
            done.set_exception(exc)
        return _Job(records, done)

    def _complete(self, jobs: list[_Job]) -> int:
        """Insert flattened jobs (in spool order) as one, then advance the checkpoint past the
        last; raises _Failure if anything fails."""
        return self._settle(self._write(jobs))

    def _write(self, jobs: list[_Job]) -> _Written:
        """Insert flattened jobs as one, without moving the checkpoint. Records that cannot be
        flattened are set aside on the way (they never will be)."""
        batches: list[Flattened] = []
        taken = 0
        end = jobs[-1].records[-1].end
        try:
            for job in jobs:
                taken += 1
                try:
                    batches.append(job.rows.result())
                    continue
                except Exception as exc:
                    if _transient(exc):
                        raise _Failure("flatten", exc, job.records) from exc
                salvaged, resume = self._salvage(job.records)
                batches += salvaged
                if resume is not None:
                    end = resume  # the rest is read again from there
                    break
            records = [r for job in jobs[:taken] for r in job.records]
            try:
                insert(self.client, batches)
            except Exception as exc:
                raise _Failure("insert", exc, records) from exc
            if batches:
                self._inserted_at = time.monotonic()
        finally:
            for rows in batches:
                rows.discard()
            _abandon(jobs[taken:])
        return _Written(records, end, batches)

    def _settle(self, written: _Written) -> int:
        """Move the checkpoint past inserted records, and count them."""
        self._commit(written.end, written.records)
        spans = sum(rows.span_count for rows in written.batches)
        logs = sum(rows.log_count for rows in written.batches)
        self.stats.add("tokentrail_spans_stored_total", spans)
        self.stats.add("tokentrail_logs_stored_total", logs)
        with self._dirty_lock:
            for rows in written.batches:
                self._dirty |= rows.traces
                self._outcome_dirty |= rows.outcome_traces
        return spans + logs

    def _commit(self, position: Position, records: list[Record]) -> None:
        try:
            self.spool.commit(position)
        except OSError as exc:
            raise _Failure("local", exc, records) from exc
        self._failures = 0
        self._progress_at = time.monotonic()

    def _salvage(self, records: list[Record]) -> tuple[list[Flattened], Position | None]:
        """Flatten a chunk that failed to flatten record by record: what flattens is returned,
        what does not is set aside. Also returns where to read on if a damaged record's extent
        was unclear (then the records after it here are not used)."""
        done: list[Flattened] = []
        try:
            for record in records:
                try:
                    done.append(
                        flatten_records(
                            [(record.kind, record.project, record.payload or record.stored or b"")],
                            self.pricer,
                        )
                    )
                except CorruptRecord as exc:
                    resume = self.spool.quarantine(record, str(exc))
                    if resume != record.end:
                        return done, resume
                except Exception as exc:
                    if _transient(exc):
                        raise _Failure("flatten", exc, records) from exc
                    self._dead_letter(record, exc)
        except OSError as exc:  # quarantine or dead letter not written: nothing may move past them
            for rows in done:
                rows.discard()
            raise _Failure("local", exc, records) from exc
        except BaseException:
            for rows in done:
                rows.discard()
            raise
        return done, None

    def drain_once(self) -> int:
        """Move one batch from the spool into ClickHouse; returns the items stored."""
        with self._step:
            single = self._failures >= 3
            try:
                records = self._take(self.spool.checkpoint, self.batch_spans, single)
            except OSError as exc:  # a damaged region could not be quarantined
                self._note_error(exc, 0)
                self._retry_later(_Failure("local", exc, []))
                return 0
            if not records:
                return 0
            job = self._submit(records)
            try:
                return self._complete([job])
            except _Failure as failure:
                return self._recover(failure, single)

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

            try:
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
                    except _Failure as failure:
                        _abandon(jobs)
                        jobs.clear()
                        return stored + self._recover(failure, single=False)
                    if self.spool.checkpoint != group[-1].records[-1].end:
                        # a damaged record was longer than its header said: read on from the checkpoint
                        _abandon(jobs)
                        jobs.clear()
                        position = self.spool.checkpoint
                    if self.summary_client is None:
                        self.summarize()
            except OSError as exc:  # reading: a damaged region could not be quarantined
                self._note_error(exc, 0)
                self._retry_later(_Failure("local", exc, []))
            finally:
                _abandon(jobs)  # stopping or failed: the spool still holds them; they are replayed
            return stored

    # --- failures ----------------------------------------------------------------------------

    def _recover(self, failure: _Failure, single: bool) -> int:
        """A write failed. If ClickHouse refused the data while it is otherwise healthy, store
        what it takes now and set aside what it refuses; else wait and retry everything."""
        self._note_error(failure.error, len(failure.records))
        if failure.stage == "insert" and not _transient(failure.error) and self._healthy():
            try:
                return self._resolve(failure)
            except _Failure as again:
                failure = again
                self._note_error(failure.error, len(failure.records))
        return self._retry_later(failure, single)

    def _retry_later(self, failure: _Failure, single: bool = False) -> int:
        self._failures += 1
        refused_alone = single and len(failure.records) == 1 and failure.stage == "insert"
        if refused_alone and self._failures >= 6 and not _transient(failure.error) and self._healthy():
            # ClickHouse answers but has refused this one record, alone, again and again.
            try:
                self._dead_letter(failure.records[0], failure.error)
                self._commit(failure.records[0].end, failure.records)
                self._failures = 3
                return 0
            except (OSError, ValueError, _Failure) as exc:
                self._note_error(exc, 1)
        if not self._stop.is_set():
            self._stop.wait(min(_MAX_BACKOFF, self.backoff_base * 2 ** min(self._failures, 8)))
        return 0

    def _isolate(self, records: list[Record]) -> int:
        """Store `records` (whose insert ClickHouse refused) in halves, in spool order, down to
        the records it refuses on their own; raises _Failure when that is not what happens."""
        middle = len(records) // 2
        left, right = records[:middle], records[middle:]
        try:
            stored = self._complete([self._submit(left)])
        except _Failure as failure:
            self._raise_unless_refused(failure)
            # Insert the other half meanwhile, and commit it once this one is settled: its records
            # need not wait, and it shows whether ClickHouse takes any insert at all.
            ahead: _Written | None = None
            try:
                ahead = self._write([self._submit(right)])
            except _Failure as other:
                self._raise_unless_refused(other)
            stored = self._resolve(failure)
            if ahead is not None:
                return stored + self._settle(ahead)
        try:
            return stored + self._complete([self._submit(right)])
        except _Failure as failure:
            self._raise_unless_refused(failure)
            return stored + self._resolve(failure)

    def _raise_unless_refused(self, failure: _Failure) -> None:
        """Raise `failure` unless it looks like ClickHouse refusing this data: an insert error
        that is not about resources, while ClickHouse answers."""
        if failure.stage != "insert" or _transient(failure.error) or not self._healthy():
            raise failure

    def _resolve(self, failure: _Failure) -> int:
        if len(failure.records) == 1:
            return self._alone(failure.records[0], failure)
        return self._isolate(failure.records)

    def _alone(self, record: Record, failure: _Failure) -> int:
        """ClickHouse refused `record` on its own: try it again a few times, then set it aside if
        other inserts go through meanwhile."""
        for delay in _ALONE_DELAYS:
            if self._stop.wait(delay):
                raise failure
            try:
                return self._complete([self._submit([record])])
            except _Failure as again:
                self._raise_unless_refused(again)
                failure = again
        if time.monotonic() - self._inserted_at > _INSERTS_WORK_SECONDS:
            raise failure  # nothing shows that ClickHouse takes other inserts: wait, as in an outage
        try:
            self._dead_letter(record, failure.error)
        except OSError as exc:
            raise _Failure("local", exc, [record]) from exc
        self._commit(record.end, [record])
        return 0

    def _healthy(self) -> bool:
        try:
            self.client.command("SELECT 1")
            return True
        except Exception:
            return False

    def _dead_letter(self, record: Record, exc: BaseException) -> None:
        """Keep a record that cannot be stored in spool/dead, durably: the checkpoint moves past
        it right after."""
        if self.spool.dead_letter(record, f"{type(exc).__name__}: {exc}") is not None:
            self.stats.add("tokentrail_records_dead_lettered_total")
        self.last_error = f"{type(exc).__name__}: {exc} (record kept in {self.dead_dir})"[:500]
        self.last_error_at = time.time()
        logger.error(
            "spool record %016d-%012d cannot be stored (%s: %s); kept in %s",
            record.end.segment,
            record.end.offset,
            type(exc).__name__,
            exc,
            self.dead_dir,
        )

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
        while time.monotonic() < deadline:
            before = self.spool.checkpoint
            self.drain_once()
            if self.spool.checkpoint == before and (not self._failures or self._stop.is_set()):
                break  # all written; or failing while stopping, when there is no time to wait it out
        self.summarize(force=True)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            before = self.spool.checkpoint
            try:
                self._pipeline()
                if self.summary_client is None:
                    self.summarize()
            except Exception as exc:
                logger.exception("writer step failed")
                self._note_error(exc, 0)
            if self.spool.checkpoint == before:
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
            self._summary_thread = threading.Thread(
                target=self._summaries, name="tokentrail-summaries", daemon=True
            )
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
