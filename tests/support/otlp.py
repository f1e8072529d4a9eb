"""OTLP requests built by hand, span by span, for the writer's and repricing's tests."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

TRACE = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")


def add_span(request: ExportTraceServiceRequest, span_id: str, parent: str, name: str, **attrs: Any) -> None:
    rs = request.resource_spans[0] if request.resource_spans else request.resource_spans.add()
    scope = rs.scope_spans[0] if rs.scope_spans else rs.scope_spans.add()
    span = scope.spans.add()
    span.trace_id, span.span_id = TRACE, bytes.fromhex(span_id)
    if parent:
        span.parent_span_id = bytes.fromhex(parent)
    span.name = name
    span.start_time_unix_nano = 1_700_000_000_000_000_000 + int(span_id[-2:], 16) * 1000
    span.end_time_unix_nano = span.start_time_unix_nano + 5_000_000
    for key, value in attrs.items():
        kv = span.attributes.add()
        kv.key = key.replace("__", ".")
        if isinstance(value, int):
            kv.value.int_value = value
        elif isinstance(value, float):
            kv.value.double_value = value
        else:
            kv.value.string_value = value
