"""Decode OTLP request bodies (protobuf or JSON, optionally gzip) and drop what cannot be stored.

Pure functions: bytes in, protobuf message and a count of rejected items out. Both receivers
(HTTP and gRPC) call these through `ingest`. A span, log record or metric data point the writer
could not store or no reader could use (ids of the wrong length, times outside what ClickHouse
holds, a span that ends before it starts, a point without its time or value, or whose value is
not a finite number) is dropped here, one by one, and reported to its sender in
`partial_success`: were it spooled, it would fail every batch it rides in and hold back
everyone's data, or spoil every sum it is part of.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

__all__ = [
    "MAX_GROUPS",
    "MAX_TIME_UNIX_NANO",
    "BadRequest",
    "BodyTimeout",
    "BodyTooLarge",
    "Decoded",
    "Signal",
    "decode",
    "gunzip",
    "gzip_bytes",
    "load_json",
    "validate_logs",
    "validate_metrics",
    "validate_traces",
]

_T = TypeVar("_T")
Signal = Literal["traces", "logs", "metrics"]
Encoding = Literal["protobuf", "json"]
Request = ExportTraceServiceRequest | ExportLogsServiceRequest | ExportMetricsServiceRequest

_REQUEST_TYPES: dict[str, type[Request]] = {
    "traces": ExportTraceServiceRequest,
    "logs": ExportLogsServiceRequest,
    "metrics": ExportMetricsServiceRequest,
}


class BadRequest(ValueError):
    """The body cannot be decoded; the message says what is wrong and is returned to the sender."""


class BodyTooLarge(ValueError):
    """The body (or what it inflates to) is over the configured limit."""


class BodyTimeout(TimeoutError):
    """The body did not arrive within the configured time."""


@dataclass
class Decoded:
    request: Request
    #: protobuf encoding of `request` (the original bytes when nothing was dropped)
    payload: bytes
    accepted: int
    rejected: int
    reason: str = ""


def gunzip(body: bytes, limit: int) -> bytes:
    """Inflate a gzip body, refusing to grow past `limit` bytes (a small bomb must not eat memory)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid gzip: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge(f"decompressed body is larger than the limit of {limit} bytes")
    if not inflater.eof:
        raise BadRequest("gzip body is truncated")
    return out


# OTLP/JSON writes trace and span ids as hex, where protobuf's JSON mapping expects base64.
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def _too_deep(limit: int) -> BadRequest:
    return BadRequest(f"JSON body is nested deeper than the limit of {limit} levels")


def _prepare_json(obj: Any, depth_left: int, limit: int) -> None:
    """Check nesting and turn hex ids into base64, in one walk over the parsed body."""
    if depth_left <= 0:
        raise _too_deep(limit)
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in _ID_FIELDS and isinstance(value, str) and value:
                try:
                    obj[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise BadRequest(f"{key} {value[:40]!r} is not hex") from None
            elif isinstance(value, (dict, list)):
                _prepare_json(value, depth_left - 1, limit)
    else:
        for item in obj:
            if isinstance(item, (dict, list)):
                _prepare_json(item, depth_left - 1, limit)


def _loads(body: bytes, max_depth: int) -> Any:
    try:
        return json.loads(body)
    except RecursionError:  # nested far deeper than any limit: the parser gave up
        raise _too_deep(max_depth) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None


def load_json(body: bytes, max_depth: int) -> Any:
    """`json.loads`, refusing (BadRequest) a body that is not JSON or nests deeper than `max_depth`."""
    data = _loads(body, max_depth)
    if isinstance(data, (dict, list)):
        _check_depth(data, max_depth, max_depth)
    return data


def _check_depth(obj: Any, depth_left: int, limit: int) -> None:
    if depth_left <= 0:
        raise _too_deep(limit)
    for item in obj.values() if isinstance(obj, dict) else obj:
        if isinstance(item, (dict, list)):
            _check_depth(item, depth_left - 1, limit)


def _parse(signal: Signal, body: bytes, encoding: Encoding, max_json_depth: int) -> Any:
    message = _REQUEST_TYPES[signal]()
    if encoding == "protobuf":
        try:
            message.ParseFromString(body)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise BadRequest(f"body is not a valid OTLP {signal} protobuf message: {_short(exc)}") from None
        return message
    data = _loads(body, max_json_depth)
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object with resourceSpans, resourceLogs or resourceMetrics")
    _prepare_json(data, max_json_depth, max_json_depth)
    try:
        # Receivers must ignore unknown fields (OTLP spec, JSON encoding).
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError) as exc:
        raise BadRequest(f"body is not a valid OTLP {signal} JSON message: {_short(exc)}") from None
    return message


def _short(exc: BaseException, limit: int = 500) -> str:
    # protobuf's messages for deeply nested input repeat one phrase per level
    text = str(exc)
    return text if len(text) <= limit else f"{text[: limit // 2]} … {text[-limit // 2 :]}"


# What ClickHouse can store. DateTime64(9) is signed 64-bit nanoseconds since the epoch, so the
# latest storable time is 2262-04-11T23:47:16.854775807Z; OTLP times are unsigned, so every other
# value is after 1970 and inside the range (which starts in 1900).
MAX_TIME_UNIX_NANO = (1 << 63) - 1
_LATEST = "2262-04-11T23:47:16Z"
_ZERO_TRACE_ID = bytes(16)
_ZERO_SPAN_ID = bytes(8)
# A request of millions of empty resource or scope groups costs seconds of CPU to walk through
# (a 32 KiB gzip body can inflate to 16 million of them) and holds no data.
MAX_GROUPS = 100_000

#: (kind, why) for an item the writer could not store, None when it can; the sender is told the
#: first reason of each kind
Problem = tuple[str, str] | None


def _after_latest(field: str, value: int) -> tuple[str, str]:
    return f"{field} late", f"{field} {value} is after {_LATEST}, the latest time ClickHouse can store"


def _span_problem(span: Any) -> Problem:
    trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE_ID:
        return "trace_id", f"trace_id is {_bytes(trace_id)}: it must be 16 bytes, not all zero"
    if len(span_id) != 8 or span_id == _ZERO_SPAN_ID:
        return "span_id", f"span_id is {_bytes(span_id)}: it must be 8 bytes, not all zero"
    if parent and len(parent) != 8:
        return "parent_span_id", f"parent_span_id is {_bytes(parent)}: it must be 8 bytes or empty"
    start, end = span.start_time_unix_nano, span.end_time_unix_nano
    if not 0 < start <= end <= MAX_TIME_UNIX_NANO:
        # 0 is "unset" in OTLP; a span without its times would sit in January 1970, outside
        # every time range anyone looks at, and its duration would be meaningless
        if start == 0:
            return "start unset", "start_time_unix_nano is 0 (unset): a span needs its start time"
        if start > MAX_TIME_UNIX_NANO:
            return _after_latest("start_time_unix_nano", start)
        if end == 0:
            return "end unset", "end_time_unix_nano is 0 (unset): a span needs its end time"
        if end > MAX_TIME_UNIX_NANO:
            return _after_latest("end_time_unix_nano", end)
        return "end before start", f"end_time_unix_nano {end} is before start_time_unix_nano {start}"
    # Enums are open in proto3: a negative one decodes, and would index the writer's name tables
    # from the end (or past it).
    if span.kind < 0:
        return "kind", f"kind {span.kind} is not a span kind (0 to 5)"
    if span.status.code < 0:
        return "status.code", f"status.code {span.status.code} is not a status code (0 to 2)"
    for i, event in enumerate(span.events):
        if event.time_unix_nano > MAX_TIME_UNIX_NANO:
            return _after_latest(f"events[{i}].time_unix_nano", event.time_unix_nano)
    return None


def _log_problem(record: Any) -> Problem:
    # Log records need no ids, and either time may be 0 (unknown; OTLP allows it); only ids that
    # are present but malformed, and times ClickHouse cannot hold, are refused.
    if record.trace_id and len(record.trace_id) != 16:
        return "trace_id", f"trace_id is {_bytes(record.trace_id)}: it must be 16 bytes or empty"
    if record.span_id and len(record.span_id) != 8:
        return "span_id", f"span_id is {_bytes(record.span_id)}: it must be 8 bytes or empty"
    if record.time_unix_nano > MAX_TIME_UNIX_NANO:
        return _after_latest("time_unix_nano", record.time_unix_nano)
    if record.observed_time_unix_nano > MAX_TIME_UNIX_NANO:
        return _after_latest("observed_time_unix_nano", record.observed_time_unix_nano)
    if record.severity_number < 0:  # an open enum: see _span_problem
        return "severity_number", f"severity_number {record.severity_number} is not a severity (0 to 24)"
    return None


# A metric data point: its kind of metric (the field of `Metric.data` that holds it) and whether
# its metric needs an aggregation temporality (sums and histograms: increments are read by it).
_POINT_KINDS = {
    "gauge": False,
    "sum": True,
    "histogram": True,
    "exponential_histogram": True,
    "summary": False,
}
_TEMPORALITIES = (1, 2)  # AGGREGATION_TEMPORALITY_DELTA, _CUMULATIVE


def _metric_problem(metric: Any, kind: str) -> Problem:
    """What makes every point of a metric unusable, if anything."""
    if not metric.name:
        return "metric name", "the metric has no name"
    if _POINT_KINDS[kind]:
        temporality = getattr(metric, kind).aggregation_temporality
        if temporality not in _TEMPORALITIES:
            return (
                "aggregation_temporality",
                f"aggregation_temporality is {temporality}: a {kind} needs 1 (delta) or 2 (cumulative)",
            )
    return None


def _always(value: _T) -> Callable[[Any], _T]:
    """A function of a point that gives the same value for every point (its metric's problem or
    name)."""
    return lambda _: value


def _point_problem(point: Any) -> Problem:
    """A metric data point the writer could not store, or that would spoil every sum it is in."""
    at, start = point.time_unix_nano, point.start_time_unix_nano
    if at == 0:
        return "time unset", "time_unix_nano is 0 (unset): a point needs its time"
    if at > MAX_TIME_UNIX_NANO:
        return _after_latest("time_unix_nano", at)
    if start > at:
        return "start after time", f"start_time_unix_nano {start} is after time_unix_nano {at}"
    if point.DESCRIPTOR.name == "NumberDataPoint":
        which = point.WhichOneof("value")
        if which is None:
            return "value unset", "the point has no value (as_int or as_double)"
        if which == "as_double" and not math.isfinite(point.as_double):
            return "value", f"value {point.as_double} is not a finite number"
        return None
    if not math.isfinite(point.sum):
        return "sum", f"sum {point.sum} is not a finite number"
    bounds = getattr(point, "explicit_bounds", None)
    if bounds is not None and point.bucket_counts and len(point.bucket_counts) != len(bounds) + 1:
        return (
            "bucket_counts",
            f"bucket_counts has {len(point.bucket_counts)} entries for {len(bounds)} explicit_bounds: "
            f"it needs {len(bounds) + 1}",
        )
    return None


def _bytes(raw: bytes) -> str:
    if raw and raw == bytes(len(raw)):
        return f"{len(raw)} zero bytes"
    return f"{len(raw)} bytes" if raw else "empty"


def _span_name(span: Any) -> str:
    return f"span {span.name[:80]!r}"


def _log_name(record: Any) -> str:
    event = getattr(record, "event_name", "")
    return f"log record {event[:80]!r}" if event else "log record"


class _Rejections:
    """Counts what was dropped and keeps the first reason of each kind, for the sender."""

    def __init__(self) -> None:
        self.count = 0
        self.reasons: dict[str, str] = {}

    def drop(self, items: Any, problem: Callable[[Any], Problem], describe: Callable[[Any], str]) -> int:
        """Delete the items of a repeated field the writer could not store; returns how many are left."""
        bad = []
        for i, item in enumerate(items):
            found = problem(item)
            if found is not None:
                bad.append(i)
                self._note(found, describe(item))
        return self._delete(items, bad)

    def drop_spans(self, spans: Any) -> int:
        """`drop` for spans, with the common case (good ids and times, no events) checked inline:
        this runs for every span received."""
        bad = []
        for i, span in enumerate(spans):
            trace_id, span_id, parent = span.trace_id, span.span_id, span.parent_span_id
            start, end = span.start_time_unix_nano, span.end_time_unix_nano
            if (
                len(trace_id) == 16
                and len(span_id) == 8
                and (not parent or len(parent) == 8)
                and 0 < start <= end <= MAX_TIME_UNIX_NANO
                and trace_id != _ZERO_TRACE_ID
                and span_id != _ZERO_SPAN_ID
                and span.kind >= 0
                and span.status.code >= 0
                and not span.events
            ):
                continue
            found = _span_problem(span)
            if found is not None:
                bad.append(i)
                self._note(found, _span_name(span))
        return self._delete(spans, bad)

    def _note(self, found: tuple[str, str], what: str) -> None:
        kind, why = found
        if kind not in self.reasons:
            self.reasons[kind] = f"{what}: {why}"

    def _delete(self, items: Any, bad: list[int]) -> int:
        for i in reversed(bad):
            del items[i]
        self.count += len(bad)
        return len(items)

    @property
    def reason(self) -> str:
        reasons = list(self.reasons.values())
        more = f" (and {len(reasons) - 3} more kinds)" if len(reasons) > 3 else ""
        return "; ".join(reasons[:3]) + more


def _check_groups(groups: Any, inner: str) -> None:
    total = len(groups)
    if total <= MAX_GROUPS:
        for group in groups:
            total += len(getattr(group, inner))
            if total > MAX_GROUPS:
                break
    if total > MAX_GROUPS:
        raise BadRequest(
            f"request has more than {MAX_GROUPS} resource and scope groups: send fewer, fuller ones"
        )


def validate_traces(request: ExportTraceServiceRequest) -> tuple[int, int, str]:
    """Remove the spans the writer could not store; returns (accepted, rejected, reason)."""
    _check_groups(request.resource_spans, "scope_spans")
    rejections = _Rejections()
    accepted = 0
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            accepted += rejections.drop_spans(scope_spans.spans)
    return accepted, rejections.count, rejections.reason


def validate_logs(request: ExportLogsServiceRequest) -> tuple[int, int, str]:
    """Remove the log records the writer could not store; returns (accepted, rejected, reason)."""
    _check_groups(request.resource_logs, "scope_logs")
    rejections = _Rejections()
    accepted = 0
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            accepted += rejections.drop(scope_logs.log_records, _log_problem, _log_name)
    return accepted, rejections.count, rejections.reason


def validate_metrics(request: ExportMetricsServiceRequest) -> tuple[int, int, str]:
    """Remove the metric data points the writer could not store (or no sum could use); returns
    (accepted, rejected, reason), counted in data points."""
    _check_groups(request.resource_metrics, "scope_metrics")
    rejections = _Rejections()
    accepted = 0
    empty = 0
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                points = getattr(metric, kind).data_points if kind is not None else ()
                if kind is None or not points:
                    empty += 1  # like an empty group: no data, and a cost to walk through
                    if empty > MAX_GROUPS:
                        raise BadRequest(
                            f"request has more than {MAX_GROUPS} metrics without data points: "
                            "send fewer, fuller ones"
                        )
                    continue
                found = _metric_problem(metric, kind)
                problem = _point_problem if found is None else _always(found)
                accepted += rejections.drop(points, problem, _always(f"metric {metric.name[:80]!r}"))
    return accepted, rejections.count, rejections.reason


_VALIDATORS: dict[str, Callable[[Any], tuple[int, int, str]]] = {
    "traces": validate_traces,
    "logs": validate_logs,
    "metrics": validate_metrics,
}


def decode(signal: Signal, body: bytes, encoding: Encoding, max_json_depth: int = 64) -> Decoded:
    request = _parse(signal, body, encoding, max_json_depth)
    accepted, rejected, reason = _VALIDATORS[signal](request)
    # the original bytes when nothing was dropped: re-encoding costs as much as parsing
    payload = body if encoding == "protobuf" and not rejected else request.SerializeToString()
    return Decoded(request, payload, accepted, rejected, reason)


def gzip_bytes(data: bytes) -> bytes:
    """gzip `data` (tests and benchmarks send compressed bodies)."""
    return gzip.compress(data, compresslevel=1)
