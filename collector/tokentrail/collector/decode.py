"""Decode OTLP request bodies (protobuf or JSON, optionally gzip) and drop spans with bad ids.

Pure functions: bytes in, protobuf message and a count of rejected items out. Both receivers
(HTTP and gRPC) call these through `ingest`.
"""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

__all__ = [
    "BadRequest", "BodyTooLarge", "Decoded", "Signal", "decode", "gunzip", "gzip_bytes",
    "validate_logs", "validate_traces",
]  # fmt: skip

Signal = Literal["traces", "logs"]
Encoding = Literal["protobuf", "json"]

_REQUEST_TYPES: dict[str, type[ExportTraceServiceRequest] | type[ExportLogsServiceRequest]] = {
    "traces": ExportTraceServiceRequest,
    "logs": ExportLogsServiceRequest,
}


class BadRequest(ValueError):
    """The body cannot be decoded; the message says what is wrong and is returned to the sender."""


class BodyTooLarge(ValueError):
    """The body (or what it inflates to) is over the configured limit."""


@dataclass
class Decoded:
    request: ExportTraceServiceRequest | ExportLogsServiceRequest
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


def _hex_ids_to_base64(obj: Any) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in _ID_FIELDS and isinstance(value, str) and value:
                try:
                    obj[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise BadRequest(f"{key} {value[:40]!r} is not hex") from None
            elif isinstance(value, (dict, list)):
                _hex_ids_to_base64(value)
    elif isinstance(obj, list):
        for item in obj:
            _hex_ids_to_base64(item)


def _parse(signal: Signal, body: bytes, encoding: Encoding) -> Any:
    message = _REQUEST_TYPES[signal]()
    if encoding == "protobuf":
        try:
            message.ParseFromString(body)
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise BadRequest(f"body is not a valid OTLP {signal} protobuf message: {exc}") from None
        return message
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object with resourceSpans or resourceLogs")
    _hex_ids_to_base64(data)
    try:
        # Receivers must ignore unknown fields (OTLP spec, JSON encoding).
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise BadRequest(f"body is not a valid OTLP {signal} JSON message: {exc}") from None
    return message


def _valid_id(raw: bytes, size: int) -> bool:
    return len(raw) == size and raw != bytes(size)


def _drop(items: Any, is_bad: Callable[[Any], bool]) -> tuple[int, Any]:
    """Delete the bad items of a repeated field in place; returns (how many, the first bad one)."""
    bad = [i for i, item in enumerate(items) if is_bad(item)]
    first = items[bad[0]] if bad else None
    for i in reversed(bad):
        del items[i]
    return len(bad), first


def _bad_span(span: Any) -> bool:
    return (
        not _valid_id(span.trace_id, 16)
        or not _valid_id(span.span_id, 8)
        or (bool(span.parent_span_id) and len(span.parent_span_id) != 8)
    )


def _bad_log(record: Any) -> bool:
    # Log records need no ids; only ids that are present but malformed are refused.
    return bool(record.trace_id and len(record.trace_id) != 16) or bool(record.span_id and len(record.span_id) != 8)


def validate_traces(request: ExportTraceServiceRequest) -> tuple[int, int, str]:
    """Remove spans whose ids are invalid; returns (accepted, rejected, reason)."""
    accepted = rejected = 0
    reason = ""
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            dropped, first = _drop(scope_spans.spans, _bad_span)
            if first is not None and not reason:
                reason = (
                    f"span {first.name[:80]!r} has an invalid id (trace_id must be 16 bytes, span_id 8 bytes, "
                    f"neither all zero; got {len(first.trace_id)} and {len(first.span_id)} bytes)"
                )
            rejected += dropped
            accepted += len(scope_spans.spans)
    return accepted, rejected, reason


def validate_logs(request: ExportLogsServiceRequest) -> tuple[int, int, str]:
    accepted = rejected = 0
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            dropped, _ = _drop(scope_logs.log_records, _bad_log)
            rejected += dropped
            accepted += len(scope_logs.log_records)
    return accepted, rejected, "log record has a malformed trace_id or span_id" if rejected else ""


def decode(signal: Signal, body: bytes, encoding: Encoding) -> Decoded:
    request = _parse(signal, body, encoding)
    if signal == "traces":
        accepted, rejected, reason = validate_traces(request)
    else:
        accepted, rejected, reason = validate_logs(request)
    payload = body if encoding == "protobuf" and not rejected else request.SerializeToString()
    return Decoded(request, payload, accepted, rejected, reason)


def gzip_bytes(data: bytes) -> bytes:
    """gzip `data` (tests and benchmarks send compressed bodies)."""
    return gzip.compress(data, compresslevel=1)
