"""Flattening's own pieces: an attribute list as values and texts, and a batch's resource columns."""

from __future__ import annotations

import base64
import json
from typing import Any

import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tokentrail.collector.flatten import SpanBatch, attributes


def _set(value: AnyValue, python: Any) -> None:
    if isinstance(python, bool):
        value.bool_value = python
    elif isinstance(python, int):
        value.int_value = python
    elif isinstance(python, float):
        value.double_value = python
    elif isinstance(python, bytes):
        value.bytes_value = python
    elif isinstance(python, list):
        value.array_value.SetInParent()
        for item in python:
            _set(value.array_value.values.add(), item)
    elif isinstance(python, dict):
        value.kvlist_value.SetInParent()
        for key, item in python.items():
            kv = value.kvlist_value.values.add()
            kv.key = key
            _set(kv.value, item)
    elif isinstance(python, str):
        value.string_value = python


def _kvs(*pairs: tuple[str, Any]) -> list[KeyValue]:
    kvs = []
    for key, python in pairs:
        kv = KeyValue(key=key)
        _set(kv.value, python)
        kvs.append(kv)
    return kvs


def test_attributes_of_every_kind_as_values_and_as_texts():
    sent = [
        ("text", "hello"),
        ("empty", ""),
        ("count", 1024),
        ("zero", 0),
        ("negative", -7),
        ("flag", True),
        ("off", False),
        ("ratio", 0.25),
        ("raw", b"\x00\xff"),
        ("list", ["a", 1, 2.5]),
        ("strings", ["stop", 'say "hi"\n', "café", ""]),
        ("map", {"k": "v", "n": 3}),
        ("unset", None),
    ]
    values, texts = attributes(_kvs(*sent))
    assert values == dict(sent)
    assert list(texts) == [key for key, _ in sent]  # the order sent
    assert texts == {
        "text": "hello",
        "empty": "",
        "count": "1024",
        "zero": "0",
        "negative": "-7",
        "flag": "true",
        "off": "false",
        "ratio": "0.25",
        "raw": base64.b64encode(b"\x00\xff").decode(),
        "list": json.dumps(["a", 1, 2.5], separators=(",", ":")),
        "strings": json.dumps(["stop", 'say "hi"\n', "café", ""], ensure_ascii=False, separators=(",", ":")),
        "map": json.dumps({"k": "v", "n": 3}, separators=(",", ":")),
        "unset": "",
    }


def test_a_key_sent_twice_keeps_its_first_place_and_its_last_value():
    values, texts = attributes(_kvs(("a", 5), ("b", "x"), ("a", "five"), ("b", 0)))
    assert values == {"a": "five", "b": 0}
    assert texts == {"a": "five", "b": "0"}
    assert list(values) == list(texts) == ["a", "b"]


def _request(services: list[str], spans_each: int) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for n, service in enumerate(services):
        rs = request.resource_spans.add()
        rs.resource.attributes.extend(_kvs(("service.name", service), ("host", f"h{n}")))
        for scope_name in ("first", "second"):
            scope = rs.scope_spans.add()
            scope.scope.name = scope_name
            for i in range(spans_each):
                span = scope.spans.add()
                span.trace_id, span.span_id = bytes([n + 1]) * 16, bytes([n + 1, i + 1]) * 4
                span.name = f"{service} {scope_name} {i}"
                span.start_time_unix_nano, span.end_time_unix_nano = (
                    1_700_000_000_000_000_000,
                    1_700_000_001_000_000_000,
                )
    return request


def test_each_span_row_carries_its_own_resource():
    batch = SpanBatch()
    services = ["alpha", "beta", "gamma"]
    batch.add("p", _request(services, spans_each=3))
    table = pa.ipc.open_stream(batch.arrow()).read_all()
    rows = table.select(["name", "service_name", "resource_attributes"]).to_pylist()
    assert len(rows) == len(services) * 2 * 3
    for row in rows:
        service = row["name"].split()[0]
        n = services.index(service)
        assert row["service_name"] == service
        assert row["resource_attributes"] == [("service.name", service), ("host", f"h{n}")]
