"""The writer: drains the spool into ClickHouse, and goes on when a record or ClickHouse fails.

A step (`_pipeline`) takes chunks of records from the spool (`reader`) and has them flattened
(`pool`), enough ahead that every worker stays busy while earlier chunks are inserted; it inserts
consecutive chunks together, up to `batch_spans` (`inserter`: fewer, larger parts for ClickHouse to
write and merge), then commits them (the checkpoint moves past them) and notes their traces for
reconciling (`summaries`). Nothing is committed before it is stored or set aside: a crash replays.

When ClickHouse is down or slow the spool keeps absorbing requests and the writer retries
everything with backoff; after three failures in a row it takes one record a step. A record that
cannot be stored while ClickHouse is otherwise healthy must not hold the others back: one that
flattening refuses is set aside at once (`_salvage`), and when ClickHouse refuses an insert the
batch is split in halves (`_isolate`) until the record it refuses on its own is found; that one
is tried a few more times (`_alone`) and set aside only if other inserts went through meanwhile.
A record set aside is dead-lettered (kept in spool/dead, counted, shown as the last error), never
dropped silently; one whose bytes no longer match their checksum is quarantined instead. A failure
that says nothing about the data (`transient`: an outage, no space, no memory) sets nothing aside.

Health, for /metrics and /api/status: `failing` (the last write failed and was not retried
successfully yet), `seconds_since_progress`, and `stalled` (records wait and none was stored for
`stall_seconds`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokentrail.collector.flatten import Flattened
from tokentrail.collector.redact import Redactor
from tokentrail.collector.spool import CorruptRecord, Position, Record, Spool
from tokentrail.collector.stats import Stats
from tokentrail.collector.writer.inserter import backoff, insert, transient
from tokentrail.collector.writer.pool import FlattenPool, Job, abandon, discard
from tokentrail.collector.writer.reader import SpoolReader
from tokentrail.collector.writer.summaries import Summaries
from tokentrail.pricing import PriceBook
from tokentrail.store import ingest

__all__ = ["Writer", "WriterConfig"]

logger = logging.getLogger("tokentrail.collector")

#: a record ClickHouse refuses on its own is tried this many more times, this far apart
_ALONE_DELAYS = (0.25, 0.5, 1.0)
#: ...and set aside only if some other insert succeeded this recently (else: an outage)
_INSERTS_WORK_SECONDS = 60.0


@dataclass(frozen=True)
class WriterConfig:
    """How the writer batches and paces its work (the collector builds it from its settings)."""

    #: spans per insert
    batch_spans: int = 20_000
    #: spans per flattening job, with workers (at most batch_spans)
    chunk_spans: int = 5_000
    #: how long the writer waits for new records once the spool is drained, in seconds
    idle_seconds: float = 0.5
    #: how often the traces written are reconciled, in seconds
    summary_seconds: float = 1.0
    #: worker processes that flatten; 0: on the writer's thread
    workers: int = 0
    #: where workers stage flattened chunks as files (none: they hand them back through a pipe)
    stage_dir: Path | None = None
    #: the database runs in this process (embedded) and reads the staged files itself; else
    #: the writer sends them to it, a record batch at a time
    reads_files: bool = False
    #: the span attribute that names a task's type, for trace summaries
    task_attribute: str = ""
    #: what is redacted before anything is stored (None: nothing)
    redactor: Redactor | None = None


class _Failure(Exception):
    """A step of writing `records` failed: `stage` is flatten, insert or local (the spool or the
    dead-letter directory could not be written)."""

    def __init__(self, stage: str, error: BaseException, records: list[Record]) -> None:
        super().__init__(f"{stage}: {error}")
        self.stage = stage
        self.error = error
        self.records = records


@dataclass
class _Written:
    """Records inserted into ClickHouse, the checkpoint not yet moved past them."""

    records: list[Record]
    end: Position
    batches: list[Flattened]


class Writer:
    #: first retry delay after a failed write; doubles per failure up to inserter.MAX_BACKOFF
    backoff_base = 0.2
    #: the writer counts as stalled when records wait and none was stored for this long
    stall_seconds = 60.0

    def __init__(
        self,
        client: Any,
        spool: Spool,
        stats: Stats,
        config: WriterConfig = WriterConfig(),
        *,
        pricer: PriceBook | None = None,
        summary_client: Any = None,
    ) -> None:
        """`summary_client`: a second client, with which traces are reconciled on a thread of
        their own, beside the inserts (without it: on the writer's thread, between inserts)."""
        self.client = client
        self.summary_client = summary_client
        self.spool = spool
        self.stats = stats
        self.config = config
        self.reader = SpoolReader(spool, stats)
        self.pool = FlattenPool(config.workers, config.stage_dir, pricer, config.redactor)
        self.summaries = Summaries(
            lambda: self.summary_client or self.client,
            config.task_attribute,
            config.summary_seconds,
            threaded=summary_client is not None,
            pricer=pricer,
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0  # in a row
        self.last_error = ""
        self.last_error_at = 0.0  # Unix time
        self._inserted_at = 0.0  # monotonic time of the last successful insert
        self._step = threading.RLock()  # drain may be called from the thread and from flush()
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

    # --- health ------------------------------------------------------------------------------

    @property
    def failing(self) -> bool:
        """The last write failed and has not been retried successfully yet."""
        return self._failures > 0

    @property
    def seconds_since_progress(self) -> float:
        return time.monotonic() - self.reader.progress_at

    @property
    def stalled(self) -> bool:
        return self.spool.backlog_bytes > 0 and self.seconds_since_progress > self.stall_seconds

    def _note_error(self, exc: BaseException, records: int) -> None:
        self._last_error(f"{type(exc).__name__}: {exc}")
        self.stats.add("tokentrail_write_errors_total")
        logger.warning("writing %d spool records failed (%s)", records, self.last_error)

    def _last_error(self, message: str) -> None:
        self.last_error = message[:500]
        self.last_error_at = time.time()

    # --- stages ------------------------------------------------------------------------------

    def _take(self, start: Position, spans: int, single: bool = False) -> list[Record]:
        # Worker processes read payloads themselves; a record kept aside needs its payload here.
        return self.reader.take(start, spans, payloads=self.pool.in_process or single, single=single)

    def _complete(self, jobs: list[Job]) -> int:
        """Insert flattened jobs (in spool order) as one, then advance the checkpoint past the
        last; raises _Failure if anything fails."""
        return self._settle(self._write(jobs))

    def _write(self, jobs: list[Job]) -> _Written:
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
                    if transient(exc):
                        raise _Failure("flatten", exc, job.records) from exc
                salvaged, resume = self._salvage(job.records)
                batches += salvaged
                if resume is not None:
                    end = resume  # the rest is read again from there
                    break
            records = [r for job in jobs[:taken] for r in job.records]
            self._insert(batches, records)
        finally:
            discard(batches)
            abandon(jobs[taken:])
        return _Written(records, end, batches)

    def _insert(self, batches: list[Flattened], records: list[Record]) -> None:
        started = time.perf_counter()
        try:
            insert(self.client, batches, reads_files=self.config.reads_files)
        except Exception as exc:
            raise _Failure("insert", exc, records) from exc
        if batches:
            self.stats.observe_write(time.perf_counter() - started)
            self._inserted_at = time.monotonic()

    def _settle(self, written: _Written) -> int:
        """Move the checkpoint past inserted records, and count them."""
        self._commit(written.end, written.records)
        spans = sum(rows.span_count for rows in written.batches)
        logs = sum(rows.log_count for rows in written.batches)
        points = sum(rows.metric_count for rows in written.batches)
        self.stats.add("tokentrail_spans_stored_total", spans)
        self.stats.add("tokentrail_logs_stored_total", logs)
        self.stats.add("tokentrail_metrics_stored_total", points)
        for rows in written.batches:
            self.stats.count_redactions(rows.redactions)
        self.summaries.note(written.batches)
        return spans + logs + points

    def _commit(self, position: Position, records: list[Record]) -> None:
        try:
            self.reader.commit(position)
        except OSError as exc:
            raise _Failure("local", exc, records) from exc
        self._failures = 0

    def _salvage(self, records: list[Record]) -> tuple[list[Flattened], Position | None]:
        """Flatten a chunk that failed to flatten record by record: what flattens is returned,
        what does not is set aside. Also returns where to read on if a damaged record's extent
        was unclear (then the records after it here are not used)."""
        done: list[Flattened] = []
        try:
            for record in records:
                try:
                    done.append(self.pool.flatten_here(record))
                except CorruptRecord as exc:
                    resume = self.reader.quarantine(record, str(exc))
                    if resume != record.end:
                        return done, resume
                except Exception as exc:
                    if transient(exc):
                        raise _Failure("flatten", exc, records) from exc
                    self._set_aside(record, exc)
        except OSError as exc:  # quarantine or dead letter not written: nothing may move past them
            discard(done)
            raise _Failure("local", exc, records) from exc
        except BaseException:
            discard(done)
            raise
        return done, None

    def drain_once(self) -> int:
        """Move one batch from the spool into ClickHouse; returns the items stored."""
        with self._step:
            single = self._failures >= 3
            try:
                records = self._take(self.spool.checkpoint, self.config.batch_spans, single)
            except OSError as exc:  # a damaged region could not be quarantined
                self._note_error(exc, 0)
                self._retry_later(_Failure("local", exc, []))
                return 0
            if not records:
                return 0
            job = self.pool.submit(records)
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
            jobs: deque[Job] = deque()
            ahead = _Ahead(self, jobs)
            stored = 0
            try:
                while not self._stop.is_set():
                    ahead.refill()
                    if not jobs:
                        break
                    group = self._group(jobs)
                    ahead.refill()  # the workers go on with the next chunks while this group is inserted
                    try:
                        stored += self._complete(group)
                    except _Failure as failure:
                        ahead.clear()
                        return stored + self._recover(failure, single=False)
                    if self.spool.checkpoint != group[-1].records[-1].end:
                        # a damaged record was longer than its header said: read on from the checkpoint
                        ahead.clear()
                    if not self.summaries.threaded:
                        self.summaries.step()
            except OSError as exc:  # reading: a damaged region could not be quarantined
                self._note_error(exc, 0)
                self._retry_later(_Failure("local", exc, []))
            finally:
                abandon(jobs)  # stopping or failed: the spool still holds them; they are replayed
            return stored

    def _group(self, jobs: deque[Job]) -> list[Job]:
        """The next jobs to insert together: up to batch_spans, at least one."""
        group = [jobs.popleft()]
        spans = group[0].spans
        while jobs and spans + (more := jobs[0].spans) <= self.config.batch_spans:
            spans += more
            group.append(jobs.popleft())
        return group

    # --- failures ----------------------------------------------------------------------------

    def _recover(self, failure: _Failure, single: bool) -> int:
        """A write failed. If ClickHouse refused the data while it is otherwise healthy, store
        what it takes now and set aside what it refuses; else wait and retry everything."""
        self._note_error(failure.error, len(failure.records))
        if failure.stage == "insert" and not transient(failure.error) and self._healthy():
            try:
                return self._resolve(failure)
            except _Failure as again:
                failure = again
                self._note_error(failure.error, len(failure.records))
        return self._retry_later(failure, single)

    def _retry_later(self, failure: _Failure, single: bool = False) -> int:
        self._failures += 1
        refused_alone = single and len(failure.records) == 1 and failure.stage == "insert"
        if refused_alone and self._failures >= 6 and not transient(failure.error) and self._healthy():
            # ClickHouse answers but has refused this one record, alone, again and again.
            try:
                self._set_aside(failure.records[0], failure.error)
                self._commit(failure.records[0].end, failure.records)
                self._failures = 3
                return 0
            except (OSError, ValueError, _Failure) as exc:
                self._note_error(exc, 1)
        if not self._stop.is_set():
            self._stop.wait(backoff(self.backoff_base, self._failures))
        return 0

    def _isolate(self, records: list[Record]) -> int:
        """Store `records` (whose insert ClickHouse refused) in halves, in spool order, down to
        the records it refuses on their own; raises _Failure when that is not what happens."""
        middle = len(records) // 2
        left, right = records[:middle], records[middle:]
        try:
            stored = self._complete([self.pool.submit(left)])
        except _Failure as failure:
            self._raise_unless_refused(failure)
            # Insert the other half meanwhile, and commit it once this one is settled: its records
            # need not wait, and it shows whether ClickHouse takes any insert at all.
            ahead: _Written | None = None
            try:
                ahead = self._write([self.pool.submit(right)])
            except _Failure as other:
                self._raise_unless_refused(other)
            stored = self._resolve(failure)
            if ahead is not None:
                return stored + self._settle(ahead)
        try:
            return stored + self._complete([self.pool.submit(right)])
        except _Failure as failure:
            self._raise_unless_refused(failure)
            return stored + self._resolve(failure)

    def _raise_unless_refused(self, failure: _Failure) -> None:
        """Raise `failure` unless it looks like ClickHouse refusing this data: an insert error
        that is not about resources, while ClickHouse answers."""
        if failure.stage != "insert" or transient(failure.error) or not self._healthy():
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
                return self._complete([self.pool.submit([record])])
            except _Failure as again:
                self._raise_unless_refused(again)
                failure = again
        if time.monotonic() - self._inserted_at > _INSERTS_WORK_SECONDS:
            raise failure  # nothing shows that ClickHouse takes other inserts: wait, as in an outage
        try:
            self._set_aside(record, failure.error)
        except OSError as exc:
            raise _Failure("local", exc, [record]) from exc
        self._commit(record.end, [record])
        return 0

    def _healthy(self) -> bool:
        return ingest.is_reachable(self.client)

    def _set_aside(self, record: Record, exc: BaseException) -> None:
        """Dead-letter a record that cannot be stored (durably: the checkpoint moves past it
        right after), and show it as the last error."""
        self.reader.dead_letter(record, exc)
        self._last_error(f"{type(exc).__name__}: {exc} (record kept in {self.spool.dead_dir})")

    # --- running -----------------------------------------------------------------------------

    def flush(self, timeout: float = 60.0) -> None:
        """Drain what is durable now, for at most `timeout` seconds, and reconcile the traces
        written. Whatever is left stays in the spool and is written after the next start."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = self.spool.checkpoint
            self.drain_once()
            if self.spool.checkpoint == before and (not self._failures or self._stop.is_set()):
                break  # all written; or failing while stopping, when there is no time to wait it out
        self.summaries.step(force=True)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            before = self.spool.checkpoint
            try:
                self._pipeline()
                if not self.summaries.threaded:
                    self.summaries.step()
            except Exception as exc:
                logger.exception("writer step failed")
                self._note_error(exc, 0)
            if self.spool.checkpoint == before:
                self._wake.wait(self.config.idle_seconds)
                self._wake.clear()
        try:
            self.flush(timeout=10.0)
        except Exception:
            logger.exception("final flush failed; the spool keeps the rest for the next start")

    def start(self) -> None:
        self.pool.start()
        self._thread = threading.Thread(target=self._run, name="tokentrail-writer", daemon=True)
        self._thread.start()
        self.summaries.start(self._stop)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        self.summaries.join(timeout=60)
        self.pool.shutdown()


class _Ahead:
    """The jobs a pipeline step has submitted ahead of its inserts: enough chunks for the next
    insert, plus one per worker to flatten meanwhile (in-process: one batch at a time)."""

    def __init__(self, writer: Writer, jobs: deque[Job]) -> None:
        self.writer = writer
        self.jobs = jobs
        config = writer.config
        if writer.pool.in_process:
            self.chunk, self.depth = config.batch_spans, 1
        else:
            self.chunk = min(config.chunk_spans, config.batch_spans)
            self.depth = -(-config.batch_spans // self.chunk) + writer.pool.workers
        self.position = writer.spool.checkpoint

    def refill(self) -> None:
        while len(self.jobs) < self.depth:
            records = self.writer._take(self.position, self.chunk)
            if not records:
                return
            self.jobs.append(self.writer.pool.submit(records))
            self.position = records[-1].end

    def clear(self) -> None:
        """Drop the jobs ahead, and read on from the checkpoint."""
        abandon(self.jobs)
        self.jobs.clear()
        self.position = self.writer.spool.checkpoint
