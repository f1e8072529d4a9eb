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
from collections.abc import Iterable, Sequence
from concurrent.futures.process import BrokenProcessPool
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
        # Staged files exist only with the embedded database, which reads them itself.
        if ingest.readable_as_one(staged):
            ingest.insert_span_files(client, SPAN_COLUMNS, staged)
        else:
            streams += [f.read_bytes() for f in staged]
    if streams:
        ingest.insert_span_stream(client, SPAN_COLUMNS, _one_stream(streams))
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
