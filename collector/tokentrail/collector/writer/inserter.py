"""The inserter: flattened batches into ClickHouse, and what a failed insert means.

`insert` writes synchronously (acknowledged means written, not queued), one block per table: the
batches' span Arrow streams as one stream, or, with the embedded database, the files the workers
staged, which chDB reads itself in one `INSERT ... FROM INFILE` (one part, not one per file); the
rare log rows and metric points as JSONCompactEachRow.

`transient` tells the writer what a failure means. Resources, the network, the schema or the
account (the ClickHouse error codes below, a lost connection, a dead worker) say nothing about the
data: the same records may pass later, so the writer waits (`backoff`) and retries all of them,
and sets nothing aside. Any other error from an insert is taken to be about the data, and the
writer looks for the record to blame.

`load` is the same flatten, insert and reconcile without the spool, for seeding a database.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pyarrow as pa

from tokentrail.collector.flatten import (
    AGENT_EVENT_COLUMNS,
    LOG_COLUMNS,
    SPAN_COLUMNS,
    SPAN_SCHEMA,
    Flattened,
    flatten_records,
)
from tokentrail.collector.metric_points import METRIC_COLUMNS
from tokentrail.collector.spool import KIND_TRACES
from tokentrail.collector.writer.summaries import reconcile
from tokentrail.pricing import PriceBook
from tokentrail.store import ingest

__all__ = ["MAX_BACKOFF", "backoff", "insert", "load", "transient"]

#: the longest wait between retries of a failing write, in seconds
MAX_BACKOFF = 30.0
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


def transient(exc: BaseException) -> bool:
    """Could `exc` pass on a retry, whatever the records? (Else it is about the data.)"""
    if isinstance(exc, (OSError, MemoryError, BrokenProcessPool, TimeoutError)):
        return True
    if type(exc).__name__ == "OperationalError":  # clickhouse_connect: the server could not be reached
        return True
    code = _CODE.search(str(exc))
    return code is not None and int(code.group(1)) in _TRANSIENT_CODES


def backoff(base: float, failures: int) -> float:
    """How long to wait before retrying after `failures` failed writes in a row: `base`, doubled
    per failure, up to MAX_BACKOFF."""
    return min(MAX_BACKOFF, base * 2.0 ** min(failures, 8))


class _Chunks:
    """A write-only file that hands over what was written to it since the last `take`."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def _sources(streams: Sequence[bytes], files: Sequence[Path]) -> Iterator[pa.NativeFile]:
    for data in streams:
        yield pa.BufferReader(data)
    for path in files:
        with pa.OSFile(str(path)) as source:
            yield source


def _one_stream(streams: Sequence[bytes], files: Sequence[Path]) -> Iterator[bytes]:
    """The record batches of several Arrow streams (in memory or staged files) as one stream,
    handed over a record batch (a request's spans) at a time: the whole insert is never held in
    memory, and a staged file is read as it is sent."""
    chunks = _Chunks()
    with pa.ipc.new_stream(pa.PythonFile(chunks, mode="w"), SPAN_SCHEMA) as out:
        for source in _sources(streams, files):
            for batch in pa.ipc.open_stream(source):
                out.write_batch(batch)
                yield chunks.take()
    yield chunks.take()  # the end of the stream


def insert(client: Any, batches: Sequence[Flattened], *, reads_files: bool = False) -> None:
    """Insert flattened batches synchronously (acknowledged = written, not queued), as one
    block per table. `reads_files`: the database runs in this process and reads staged files
    itself (the embedded database); else they are sent to it."""
    streams = [b.span_arrow for b in batches if b.span_arrow]
    staged = [b.span_file for b in batches if b.span_file is not None]
    if staged and reads_files and not streams and ingest.readable_as_one(staged):
        ingest.insert_span_files(client, SPAN_COLUMNS, staged)
    elif len(streams) == 1 and not staged:
        ingest.insert_span_stream(client, SPAN_COLUMNS, streams[0])
    elif streams or staged:
        ingest.insert_span_stream(client, SPAN_COLUMNS, _one_stream(streams, staged))
    logs = [b.log_json for b in batches if b.log_json]
    if logs:
        ingest.insert_json_rows(client, "logs", LOG_COLUMNS, b"\n".join(logs))
    events = [b.agent_event_json for b in batches if b.agent_event_json]
    if events:
        ingest.insert_json_rows(client, "agent_events", AGENT_EVENT_COLUMNS, b"\n".join(events))
    metrics = [b.metric_json for b in batches if b.metric_json]
    if metrics:
        ingest.insert_json_rows(client, "metric_points", METRIC_COLUMNS, b"\n".join(metrics))


def load(
    client: Any,
    project: str,
    requests: Iterable[bytes],
    pricer: PriceBook | None = None,
    task_attribute: str = "",
) -> int:
    """Write encoded `ExportTraceServiceRequest`s straight to ClickHouse, without the spool,
    and reconcile their traces: for seeding a database (benchmarks, tests). Returns spans written."""
    written = 0
    dirty: set[tuple[str, str]] = set()
    judged: set[tuple[str, str]] = set()
    for payload in requests:
        rows = flatten_records([(KIND_TRACES, project, payload)], pricer)
        insert(client, [rows])
        dirty |= rows.traces
        judged |= rows.outcome_traces
        written += rows.span_count
        if len(dirty) >= 5000:  # reconcile in large batches: once per request is the slow part
            reconcile(client, dirty, judged, task_attribute)
            dirty, judged = set(), set()
    reconcile(client, dirty, judged, task_attribute)
    return written
