"""Turn decoded OTLP requests into column-oriented row batches for ClickHouse.

Span rows are the OTel fields plus the normalized columns (`normalize`) and cost (`pricing`).
Everything here is pure and CPU-bound; it is the ingest hot path, so a span's row is a list
(no dict per row, no call per column), in the order the table's columns are declared in; a
request's rows are turned into columns (an Arrow record batch) once the request is added and
redacted, so that only one request's Python objects are held at a time, and the batch goes to
ClickHouse as one Arrow stream of them: built column by column in C++, and read by ClickHouse
without parsing text.

Redaction (`redact`): the values of denied attribute keys are replaced before the normalizer reads
them; the rest runs once a request's rows are built, on every text they keep (attribute maps, names,
messages, and the normalized columns made from them), in place.

Flattening runs in the writer's thread or in its worker processes (`tokentrail.collector.writer.pool`),
which hand a batch back as a `Flattened`: in memory, or staged in a file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import operator
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tokentrail import semconv as sc
from tokentrail.collector._values import json_default as _json_default
from tokentrail.collector._values import text as _text
from tokentrail.collector.coding.events import TOOLS, Touched, recognize, span_session
from tokentrail.collector.normalize import Normalized, normalize
from tokentrail.collector.redact import OFF, Cells, Redactor, Scan, tally
from tokentrail.collector.spool import KIND_LOGS, KIND_METRICS, KIND_TRACES, Stored, load_payload
from tokentrail.pricing import PriceBook, call_cost

if TYPE_CHECKING:
    from tokentrail.collector.metric_points import MetricBatch

__all__ = [
    "AGENT_EVENT_COLUMNS",
    "LOG_COLUMNS",
    "SPAN_COLUMNS",
    "SPAN_SCHEMA",
    "Flattened",
    "LogBatch",
    "SpanBatch",
    "SpoolItem",
    "any_value",
    "attributes",
    "flatten_records",
]

_SPAN_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
_STATUS = ("UNSET", "OK", "ERROR")


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value
    return None


def ts(nanos: int) -> str:
    """A DateTime64(9) value for JSON input: seconds with nine decimals, exact (no float). Ten
    digits of seconds: ClickHouse reads a shorter number (a time before 1973) as something else."""
    return f"{nanos // 1_000_000_000:010d}.{nanos % 1_000_000_000:09d}"


def attributes(kvs: Iterable[KeyValue]) -> tuple[dict[str, Any], dict[str, str]]:
    """(Python values for the normalizer, string values for the attribute Map column).

    The ingest hot path, one attribute at a time: a non-empty `string_value` can only be a string
    and a non-zero `int_value` only an integer (the value is a oneof), so most attributes are read
    without asking which kind they are; an integer's text is written here, without a call; the
    rest go through `any_value` and `_text`. A key sent twice keeps its first place and its last
    value, in both maps."""
    values: dict[str, Any] = {}
    texts: dict[str, str] = {}
    for kv in kvs:
        value = kv.value
        string = value.string_value
        key = kv.key
        if string:
            values[key] = texts[key] = string
            continue
        number = value.int_value
        if number:
            values[key] = number
            texts[key] = str(number)
            continue
        kind = value.WhichOneof("value")
        if kind == "int_value":
            values[key] = number
            texts[key] = "0"
        elif kind == "string_value":
            values[key] = texts[key] = string
        else:
            decoded = any_value(value)
            values[key] = decoded
            texts[key] = _text(decoded)
    return values, texts


# Content attributes the normalizer moves into columns of their own (kept once, not twice).
_CONTENT_KEYS = (
    (sc.GEN_AI_INPUT_MESSAGES, "input_messages"),
    (sc.GEN_AI_OUTPUT_MESSAGES, "output_messages"),
    (sc.GEN_AI_SYSTEM_INSTRUCTIONS, "system_instructions"),
    (sc.GEN_AI_TOOL_CALL_ARGUMENTS, "tool_arguments"),
    (sc.GEN_AI_TOOL_CALL_RESULT, "tool_result"),
)

# The spans table's columns, in three parts, in the order a span's row lists them
# (`SpanBatch._add_span`). (Inserts name their columns: the order is the Arrow schema's, nothing else.)
#: the OTel fields
_OTEL_COLUMNS = (
    "project",
    "trace_id",
    "span_id",
    "parent_span_id",
    "trace_state",
    "name",
    "span_kind",
    "start_time",
    "end_time",
    "duration_ns",
    "service_name",
    "scope_name",
    "scope_version",
    "resource_attributes",
    "attributes",
    "status_code",
    "status_message",
    "events.time",
    "events.name",
    "events.attributes",
    "links.trace_id",
    "links.span_id",
    "links.trace_state",
    "links.attributes",
)
#: the normalizer's fields, as `Normalized` has them
_NORMALIZED_COLUMNS = (
    "convention",
    "step_kind",
    "step_subkind",
    "operation",
    "agent_name",
    "workflow_name",
    "request_model",
    "response_model",
    "provider",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "tool_name",
    "tool_call_id",
    "tool_args_hash",
    "input_hash",
    "conversation_id",
    "user_id",
    "response_id",
    "finish_reasons",
    "error_type",
    "retry_attempt",
    "retry_reason",
    "input_messages",
    "output_messages",
    "system_instructions",
    "tool_arguments",
    "tool_result",
    "system_hash",
    "requested_tools",
)
#: flags and cost, from `_derived_row`
_DERIVED_COLUMNS = (
    "usage_reported",
    "billable",
    "cache_reported",
    "reported_cost_usd",
    "cost_usd",
    "cost_source",
    "price_version",
    "catalog_cost_usd",
)
SPAN_COLUMNS = _OTEL_COLUMNS + _NORMALIZED_COLUMNS + _DERIVED_COLUMNS

_STR = pa.string()
_MAP = pa.map_(pa.string(), pa.string())
_NS = pa.timestamp("ns")  # DateTime64(9): nanoseconds since the epoch, exact
_ARROW_TYPES: dict[str, pa.DataType] = {
    "start_time": _NS,
    "end_time": _NS,
    "duration_ns": pa.uint64(),
    "resource_attributes": _MAP,
    "attributes": _MAP,
    "events.time": pa.list_(_NS),
    "events.name": pa.list_(_STR),
    "events.attributes": pa.list_(_MAP),
    "links.trace_id": pa.list_(_STR),
    "links.span_id": pa.list_(_STR),
    "links.trace_state": pa.list_(_STR),
    "links.attributes": pa.list_(_MAP),
    "input_tokens": pa.uint64(),
    "output_tokens": pa.uint64(),
    "cache_read_tokens": pa.uint64(),
    "cache_write_tokens": pa.uint64(),
    "reasoning_tokens": pa.uint64(),
    "usage_reported": pa.uint8(),
    "billable": pa.uint8(),
    "cost_usd": pa.float64(),
    "tool_args_hash": pa.uint64(),
    "input_hash": pa.uint64(),
    "finish_reasons": pa.list_(_STR),
    "retry_attempt": pa.uint16(),
    "cache_reported": pa.uint8(),
    "reported_cost_usd": pa.float64(),
    "catalog_cost_usd": pa.float64(),
    "system_hash": pa.uint64(),
    "requested_tools": pa.list_(pa.uint64()),
}
#: the Arrow schema of span batches; every column not listed above is a string
SPAN_SCHEMA = pa.schema([(name, _ARROW_TYPES.get(name, _STR)) for name in SPAN_COLUMNS])
_normalized_values = operator.attrgetter(*_NORMALIZED_COLUMNS)


_NO_LINKS: tuple[list[Any], ...] = ([], [], [], [])  # shared, never changed

#: what a span has from its resource and scope: project, service, scope name and version,
#: resource attributes (as text)
_Where = tuple[str, str, str, str, dict[str, str]]
#: a span's events: for the normalizer, and the events.* columns
_Events = tuple[list[tuple[str, dict[str, Any]]], tuple[list[int], list[str], list[dict[str, str]]]]
_NO_EVENTS: _Events = ([], ([], [], []))  # shared, never changed

#: the cells of a span's row that hold text as it was sent (redaction searches them), those the
#: normalizer made from its attributes (redacted as what they were made of was), and the content
#: columns, in _CONTENT_KEYS' order: as sent when their attribute moved into them, else made
_OWN_CELLS = tuple(
    SPAN_COLUMNS.index(c) for c in ("trace_state", "name", "scope_name", "scope_version", "status_message")
)
_CONTENT_COLUMNS = tuple(column for _, column in _CONTENT_KEYS)
#: (attribute, column, its bit in `moved`) of each content attribute
_CONTENT_BITS = tuple((key, column, 1 << bit) for bit, (key, column) in enumerate(_CONTENT_KEYS))
_MADE_CELLS = tuple(
    SPAN_COLUMNS.index(c)
    for c in ("service_name", *_NORMALIZED_COLUMNS)
    if c not in _CONTENT_COLUMNS and _ARROW_TYPES.get(c, _STR) in (_STR, pa.list_(_STR))
)
_CONTENT_CELLS = tuple(SPAN_COLUMNS.index(column) for column in _CONTENT_COLUMNS)


@functools.cache
def _cells(moved: int) -> tuple[Cells, Cells]:
    """(cells as sent, cells made) of a span whose content attributes in the bits of `moved` moved
    into their columns."""
    content = list(enumerate(_CONTENT_CELLS))
    return (
        Cells(_OWN_CELLS + tuple(c for bit, c in content if moved >> bit & 1)),
        Cells(_MADE_CELLS + tuple(c for bit, c in content if not moved >> bit & 1), counted=False),
    )


class SpanBatch:
    def __init__(self, pricer: PriceBook | None = None, redactor: Redactor | None = None) -> None:
        self.pricer = pricer
        self.redactor = redactor
        #: values redacted, by (project, rule)
        self.redactions: Counter[tuple[str, str]] = Counter()
        #: the rows of the request being added; then, as columns, in `batches`
        self.rows: list[list[Any]] = []
        self.batches: list[pa.RecordBatch] = []
        self._count = 0
        self.traces: set[tuple[str, str]] = set()
        #: traces with a span that records an outcome: only these need outcomes filed
        self.outcome_traces: set[tuple[str, str]] = set()
        #: coding agents' sessions whose own spans arrived (their events are matched to them)
        self.sessions = Touched()

    def __len__(self) -> int:
        return self._count + len(self.rows)

    def arrow(self) -> bytes:
        """The batch as one Arrow IPC stream (a record batch a request)."""
        sink = pa.BufferOutputStream()
        self._write(sink)
        return bytes(sink.getvalue())

    def write_arrow(self, path: Path) -> None:
        """The batch as one Arrow IPC stream, written to a file (no copy of it held in memory)."""
        with pa.OSFile(str(path), "wb") as sink:
            self._write(sink)

    def _write(self, sink: pa.NativeFile) -> None:
        self._columns()
        with pa.ipc.new_stream(sink, SPAN_SCHEMA) as stream:
            for batch in self.batches or [_record_batch([])]:
                stream.write_batch(batch)

    def _columns(self) -> None:
        """Turn the rows added so far into a record batch: a request's rows at a time, so that the
        Python objects of one request are held at once, not a whole chunk's."""
        if self.rows:
            self.batches.append(_record_batch(self.rows))
            self._count += len(self.rows)
            self.rows = []

    def add(self, project: str, request: ExportTraceServiceRequest) -> int:
        """Add the spans of a request, span by span (what one span allocates is reused by the
        next); then redact the request's rows."""
        scan = OFF if self.redactor is None else self.redactor.scan()
        added = 0
        add_span = self._add_span
        for resource_spans in request.resource_spans:
            res_values, res_texts = attributes(resource_spans.resource.attributes)
            resource = scan.mark()
            scan.pair(res_values, res_texts)
            service = res_texts.get("service.name", "unknown_service")
            for scope_spans in resource_spans.scope_spans:
                scope = scope_spans.scope
                where = (project, service, scope.name, scope.version, res_texts)
                for span in scope_spans.spans:
                    add_span(span, where, res_values, scan, resource)
                    added += 1
        tally(self.redactions, project, scan.run())
        self._columns()
        return added

    def _add_span(
        self, span: Span, where: _Where, res_values: dict[str, Any], scan: Scan, resource: int
    ) -> None:
        """`resource`: where the scan holds the span's resource attributes. (Each field of the
        span is read once: every read of a protobuf field builds a new Python object.)"""
        values, texts = attributes(span.attributes)
        scan.deny(values, texts)
        since = scan.mark()
        span_events = span.events
        events = _events(span_events, scan) if span_events else _NO_EVENTS
        name, kind, status = span.name, span.kind, span.status
        code = status.code
        n = normalize(name, values, res_values, is_error=code == 2, events=events[0], client=kind == 3)
        moved = 0
        for key, column, bit in _CONTENT_BITS:
            if key in texts and getattr(n, column):
                del texts[key]  # stored once, in its own column
                moved |= bit
        trace_id = span.trace_id.hex()
        start, end = span.start_time_unix_nano, span.end_time_unix_nano
        project, service, scope_name, scope_version, res_texts = where
        links = span.links
        row = [
            # the OTel fields, in the order of _OTEL_COLUMNS
            project,
            trace_id,
            span.span_id.hex(),
            span.parent_span_id.hex(),
            span.trace_state,
            name,
            _SPAN_KINDS[kind] if kind < 6 else "UNSPECIFIED",
            start,
            end,
            end - start if end > start else 0,
            service,
            scope_name,
            scope_version,
            res_texts,
            texts,
            _STATUS[code] if code < 3 else "UNSET",
            status.message,
            *events[1],
            *(_links(links, scan) if links else _NO_LINKS),
            *_normalized_values(n),
            *_derived_row(n, self.pricer),
        ]
        self.rows.append(row)
        if scan is not OFF:
            scan.pair(values, texts, denied=True)
            own, made = _cells(moved)
            scan.cells(row, own)
            scan.made(row, made, since, resource)
        self.traces.add((project, trace_id))
        if _OUTCOME_NAME in values or _OUTCOME_EVENT in events[1][1]:
            self.outcome_traces.add((project, trace_id))
        if n.convention in TOOLS:
            found = span_session(n.convention, values, n.conversation_id)
            if found is not None and found[2]:
                self.sessions.add(project, found, start, end)
            elif found is not None:
                self.sessions.add_trace(project, found[0], trace_id, start, end)


_OUTCOME_NAME, _OUTCOME_EVENT = sc.TT_OUTCOME_NAME, sc.TT_OUTCOME_EVENT


def _record_batch(rows: list[list[Any]]) -> pa.RecordBatch:
    """A request's rows as Arrow columns: each column converted at once, the resource attributes a
    resource at a time (its spans share one map)."""
    columns = zip(*rows, strict=True) if rows else [()] * len(SPAN_SCHEMA)
    arrays = [
        convert(column) if convert is not None else pa.array(column, type=field.type)
        for column, field, convert in zip(columns, SPAN_SCHEMA, _CONVERT, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=SPAN_SCHEMA)


def _shared_maps(texts: Iterable[dict[str, str]]) -> pa.Array:
    """A Map column whose rows are few maps, each shared by a run of rows (one object): each map
    converted once, then repeated."""
    shared: list[dict[str, str]] = []
    at: list[int] = []
    last = None
    for one in texts:
        if one is not last:
            shared.append(one)
            last = one
        at.append(len(shared) - 1)
    return pa.array(shared, type=_MAP).take(pa.array(at, type=pa.int32()))


#: the columns `_record_batch` builds otherwise than with `pa.array`, by index
_CONVERT = [_shared_maps if name == "resource_attributes" else None for name in SPAN_COLUMNS]


def _events(span_events: Iterable[Span.Event], scan: Scan) -> _Events:
    """A span's events (it has some): for the normalizer, and the events.* columns."""
    events: list[tuple[str, dict[str, Any]]] = []
    times: list[int] = []
    names: list[str] = []
    texts: list[dict[str, str]] = []
    for ev in span_events:
        ev_values, ev_texts = attributes(ev.attributes)
        scan.pair(ev_values, ev_texts)
        name = ev.name
        events.append((name, ev_values))
        times.append(ev.time_unix_nano)
        names.append(name)
        texts.append(ev_texts)
    scan.strings(names)
    return events, (times, names, texts)


def _links(links: Iterable[Span.Link], scan: Scan) -> tuple[list[Any], ...]:
    texts = [attributes(ln.attributes)[1] for ln in links]
    for link_texts in texts:
        scan.pair(None, link_texts)
    return (
        [ln.trace_id.hex() for ln in links],
        [ln.span_id.hex() for ln in links],
        [ln.trace_state for ln in links],
        texts,
    )


def _derived_row(n: Normalized, pricer: PriceBook | None) -> tuple[Any, ...]:
    """The flags and the cost of a span, in the order of _DERIVED_COLUMNS."""
    cost, source, version, catalog = call_cost(
        pricer,
        n.provider,
        (n.response_model, n.request_model),
        n.billable,
        (n.input_tokens, n.output_tokens, n.cache_read_tokens, n.cache_write_tokens),
        n.reported_cost,
    )
    return (
        1 if n.usage_reported else 0,
        1 if n.billable else 0,
        1 if n.cache_reported else 0,
        n.reported_cost,
        cost,
        source,
        version,
        catalog,
    )


LOG_COLUMNS = (
    "project",
    "timestamp",
    "observed_timestamp",
    "trace_id",
    "span_id",
    "flags",
    "severity_text",
    "severity_number",
    "service_name",
    "scope_name",
    "scope_version",
    "event_name",
    "body",
    "resource_attributes",
    "attributes",
    "record_hash",
)


#: `agent_events`: a coding agent's log events, typed and ordered by session
AGENT_EVENT_COLUMNS = (
    "project",
    "tool",
    "session_id",
    "prompt_id",
    "timestamp",
    "event",
    "sequence",
    "service_name",
    "trace_id",
    "span_id",
    "resource_attributes",
    "attributes",
    "body",
    "record_hash",
)


class LogBatch:
    """Log records as sent (`logs`), and those of coding agents once more as `agent_events`."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        self.rows: list[list[Any]] = []
        self.agent_events: list[list[Any]] = []
        self.sessions = Touched()
        self.redactor = redactor
        #: values redacted, by (project, rule)
        self.redactions: Counter[tuple[str, str]] = Counter()

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, project: str, request: ExportLogsServiceRequest) -> int:
        """Add the records of a request: decoded and redacted first, then made rows (the service,
        the event's name and its session are read from what is kept)."""
        scan = OFF if self.redactor is None else self.redactor.scan()
        decoded = []
        for resource_logs in request.resource_logs:
            res_values, res_texts = attributes(resource_logs.resource.attributes)
            scan.pair(res_values, res_texts)
            for scope_logs in resource_logs.scope_logs:
                for rec in scope_logs.log_records:
                    values, texts = attributes(rec.attributes)
                    scan.pair(values, texts)
                    body = [_text(any_value(rec.body))]
                    scan.strings(body)
                    decoded.append((res_texts, scope_logs.scope, rec, texts, body))
        tally(self.redactions, project, scan.run())
        for res_texts, scope, rec, texts, body in decoded:
            service = res_texts.get("service.name", "unknown_service")
            event_name = getattr(rec, "event_name", "") or texts.get("event.name", "")
            digest = hashlib.blake2b(rec.SerializeToString(deterministic=True), digest_size=8).digest()
            timestamp = rec.time_unix_nano or rec.observed_time_unix_nano
            row = [
                project,
                ts(timestamp),
                ts(rec.observed_time_unix_nano),
                rec.trace_id.hex(),
                rec.span_id.hex(),
                rec.flags,
                rec.severity_text,
                min(rec.severity_number, 255),
                service,
                scope.name,
                scope.version,
                event_name,
                body[0],
                res_texts,
                texts,
                int.from_bytes(digest, "little"),
            ]
            self.rows.append(row)
            found = recognize(service, event_name, texts)
            if found is not None:
                self._agent_event(row, found, texts, timestamp)
        return len(decoded)

    def _agent_event(
        self, row: list[Any], found: tuple[str, str, str, str], texts: dict[str, str], at: int
    ) -> None:
        tool, short, session, prompt = found
        project, stamp, _, trace_id, span_id, *_ = row
        try:
            sequence = int(texts.get("event.sequence", -1))
        except ValueError:
            sequence = -1
        self.agent_events.append(
            [
                project,
                tool,
                session,
                prompt,
                stamp,
                short,
                sequence,
                row[8],
                trace_id,
                span_id,
                row[13],
                texts,
                row[12],
                row[15],
            ]
        )
        self.sessions.add(project, found, at, at)


# --- a batch of spool records, flattened -------------------------------------------------------


class Flattened:
    """One batch of spool records, ready for ClickHouse to read.

    Spans are an Arrow stream: in memory (`span_arrow`), or staged in a file (`span_file`) that
    a worker process wrote, so that the inserting process reads it from disk instead of
    receiving it through a pipe. Logs and metric points, rare and small, are JSONCompactEachRow
    bytes.
    """

    __slots__ = (
        "agent_event_json",
        "log_count",
        "log_json",
        "metric_count",
        "metric_json",
        "outcome_traces",
        "redactions",
        "sessions",
        "span_arrow",
        "span_count",
        "span_file",
        "traces",
    )

    def __init__(
        self,
        spans: SpanBatch,
        logs: LogBatch,
        stage_dir: Path | None = None,
        metrics: MetricBatch | None = None,
    ) -> None:
        self.span_count = len(spans)
        self.span_arrow = b""
        self.span_file: Path | None = None
        if len(spans):
            if stage_dir is None:
                self.span_arrow = spans.arrow()
            else:
                self.span_file = stage_dir / f"{uuid.uuid4().hex}.arrow"
                spans.write_arrow(self.span_file)
        self.traces = spans.traces
        self.outcome_traces = spans.outcome_traces
        self.log_count = len(logs)
        self.log_json = _encode(logs.rows) if len(logs) else b""
        self.agent_event_json = _encode(logs.agent_events) if logs.agent_events else b""
        #: the coding agents' sessions this batch brought events or spans of
        self.sessions = logs.sessions
        self.sessions.update(spans.sessions)
        self.metric_count = len(metrics) if metrics is not None else 0
        self.metric_json = _encode(metrics.rows) if metrics is not None and len(metrics) else b""
        #: values redacted, by (project, rule)
        self.redactions = spans.redactions + logs.redactions
        if metrics is not None:
            self.redactions += metrics.redactions

    def discard(self) -> None:
        """Remove the staged file (after its insert, or when the batch is abandoned)."""
        if self.span_file is not None:
            self.span_file.unlink(missing_ok=True)


def _encode(rows: Iterable[Any]) -> bytes:
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_json_default).encode
    return "\n".join(map(dumps, rows)).encode()


#: a spool record as (kind, project, payload), the payload given or where to read it
SpoolItem = tuple[int, str, bytes | Stored]


def flatten_records(
    records: list[SpoolItem],
    pricer: PriceBook | None,
    stage_dir: Path | None = None,
    redactor: Redactor | None = None,
) -> Flattened:
    # here, not at the top: metric_points builds its rows with this module's helpers
    from tokentrail.collector.metric_points import MetricBatch

    spans, logs, metrics = SpanBatch(pricer, redactor), LogBatch(redactor), MetricBatch(redactor)
    for kind, project, data in records:
        payload = load_payload(data) if isinstance(data, Stored) else data
        if kind == KIND_TRACES:
            spans.add(project, ExportTraceServiceRequest.FromString(payload))
        elif kind == KIND_LOGS:
            logs.add(project, ExportLogsServiceRequest.FromString(payload))
        elif kind == KIND_METRICS:
            metrics.add(project, ExportMetricsServiceRequest.FromString(payload))
    return Flattened(spans, logs, stage_dir, metrics)
