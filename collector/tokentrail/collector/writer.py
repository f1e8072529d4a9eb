"""Drain the spool into ClickHouse: decode, flatten, insert, then advance the checkpoint.

Runs on its own thread with its own client. When ClickHouse is down or slow the spool keeps
absorbing requests and the writer retries with backoff; a record that ClickHouse rejects while
it is otherwise healthy is moved to `spool/dead/` and counted, never dropped silently.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tokentrail.collector import summary
from tokentrail.collector.flatten import LOG_COLUMNS, SPAN_COLUMNS, LogBatch, Pricer, SpanBatch
from tokentrail.collector.spool import KIND_LOGS, KIND_TRACES, Record, Spool
from tokentrail.collector.stats import Stats

__all__ = ["Writer"]

logger = logging.getLogger("tokentrail.collector")

_INSERT_SETTINGS = {"async_insert": 0}
_MAX_BACKOFF = 30.0


class Writer:
    def __init__(
        self,
        client: Any,
        spool: Spool,
        stats: Stats,
        *,
        pricer: Pricer | None = None,
        batch_spans: int = 20_000,
        idle_seconds: float = 0.5,
        summary_seconds: float = 1.0,
    ) -> None:
        self.client = client
        self.spool = spool
        self.stats = stats
        self.pricer = pricer
        self.batch_spans = batch_spans
        self.idle_seconds = idle_seconds
        self.summary_seconds = summary_seconds
        self.dead_dir = spool.directory / "dead"
        self._dirty: set[tuple[str, str]] = set()
        self._last_summary = 0.0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self.last_error = ""
        # drain and summarize may be called from the thread and from flush(); one at a time
        self._step = threading.RLock()

    # --- one step ----------------------------------------------------------------------------

    def _take(self, single: bool) -> list[Record]:
        records: list[Record] = []
        items = 0
        for record in self.spool.read():
            records.append(record)
            items += max(1, len(record.payload) // 2048)  # rough: ~2 KB per span
            if single or items >= self.batch_spans:
                break
        return records

    def _build(self, records: list[Record]) -> tuple[SpanBatch, LogBatch]:
        spans, logs = SpanBatch(self.pricer), LogBatch()
        for record in records:
            if record.kind == KIND_TRACES:
                trace_request = ExportTraceServiceRequest()
                trace_request.ParseFromString(record.payload)
                spans.add(record.project, trace_request)
            elif record.kind == KIND_LOGS:
                logs_request = ExportLogsServiceRequest()
                logs_request.ParseFromString(record.payload)
                logs.add(record.project, logs_request)
        return spans, logs

    def _insert(self, spans: SpanBatch, logs: LogBatch) -> None:
        if len(spans):
            self.client.insert(
                "spans", spans.columns, column_names=list(SPAN_COLUMNS), column_oriented=True,
                settings=_INSERT_SETTINGS,
            )  # fmt: skip
        if len(logs):
            self.client.insert("logs", logs.rows, column_names=list(LOG_COLUMNS), settings=_INSERT_SETTINGS)

    def drain_once(self) -> int:
        """Move one batch from the spool into ClickHouse; returns the items stored."""
        with self._step:
            return self._drain_once()

    def _drain_once(self) -> int:
        single = self._failures >= 3
        records = self._take(single)
        if not records:
            return 0
        try:
            spans, logs = self._build(records)
            self._insert(spans, logs)
        except Exception as exc:
            self._failed(records, exc, single)
            return 0
        self._failures = 0
        self.last_error = ""
        self.spool.commit(records[-1].end)
        self.stats.add("tokentrail_spans_stored_total", len(spans))
        self.stats.add("tokentrail_logs_stored_total", len(logs))
        self._dirty |= spans.traces
        return len(spans) + len(logs)

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
        time.sleep(min(_MAX_BACKOFF, 0.2 * 2 ** min(self._failures, 8)) if not self._stop.is_set() else 0)

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
        Path(self.dead_dir / f"{name}.txt").write_text(f"kind={record.kind} project={record.project}\n{exc}\n")
        self.stats.add("tokentrail_spans_rejected_total")
        logger.error("spool record %s refused by ClickHouse; kept in %s", name, self.dead_dir)

    def summarize(self, force: bool = False) -> int:
        with self._step:
            return self._summarize(force)

    def _summarize(self, force: bool) -> int:
        now = time.monotonic()
        if not self._dirty or (not force and now - self._last_summary < self.summary_seconds):
            return 0
        dirty, self._dirty = self._dirty, set()
        try:
            done = summary.refresh(self.client, dirty)
        except Exception as exc:
            self._dirty |= dirty
            logger.warning("refreshing trace summaries failed: %s", exc)
            return 0
        self._last_summary = now
        return done

    def flush(self, timeout: float = 60.0) -> None:
        """Drain everything durable now and refresh summaries (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self.drain_once() or (self._failures and time.monotonic() < deadline):
            pass
        self.summarize(force=True)

    # --- thread ------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                stored = self.drain_once()
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
        self._thread = threading.Thread(target=self._run, name="tokentrail-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
