"""Real OTLP from the OpenTelemetry SDK's exporters into a running collector, asserted in ClickHouse."""

from __future__ import annotations

import gzip
import json
import time

import httpx
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.support.collector import running_collector, scrape
from tokentrail import semconv as sc
from tokentrail.collector.decode import BadRequest, decode
from tokentrail.collector.flatten import SpanBatch


def _agent_run(provider: TracerProvider) -> str:
    tracer = provider.get_tracer("test-agent")
    with tracer.start_as_current_span(
        "invoke_agent triage",
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "triage",
            "gen_ai.conversation.id": "conv-42",
        },
    ) as root:
        with tracer.start_as_current_span(
            "chat gpt-4o-mini",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.usage.input_tokens": 1200,
                "gen_ai.usage.output_tokens": 80,
                "gen_ai.usage.cache_read.input_tokens": 1000,
                "gen_ai.response.finish_reasons": ("tool_call",),
            },
        ):
            pass
        with tracer.start_as_current_span(
            "execute_tool lookup_order",
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "lookup_order",
                "gen_ai.tool.call.id": "call_1",
            },
        ) as tool:
            tool.set_status(Status(StatusCode.ERROR, "order service timed out"))
        return format(root.get_span_context().trace_id, "032x")


def _provider(exporter) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.mark.parametrize("transport", ["http", "http-gzip", "grpc", "http-worker-process"])
def test_sdk_exporter_spans_land_normalized(settings, store, transport):
    workers = 1 if transport == "http-worker-process" else 0
    with running_collector(settings.with_(writer_workers=workers), store) as tt:
        exporter: SpanExporter
        if transport == "grpc":
            exporter = GrpcSpanExporter(endpoint=tt.grpc_endpoint, insecure=True)
        else:
            exporter = HttpSpanExporter(
                endpoint=f"{tt.http_url}/v1/traces",
                compression=Compression.Gzip if transport == "http-gzip" else Compression.NoCompression,
            )
        provider = _provider(exporter)
        trace_id = _agent_run(provider)
        provider.shutdown()
        tt.flush()
        rows = tt.query(
            "SELECT name, step_kind, service_name, request_model, response_model, provider, input_tokens,"
            " output_tokens, cache_read_tokens, billable, conversation_id, tool_name, status_code"
            " FROM spans FINAL WHERE trace_id = {t:String} ORDER BY start_time",
            t=trace_id,
        )
        assert rows == [
            ("invoke_agent triage", "agent", "support-bot", "", "", "", 0, 0, 0, 0, "conv-42", "", "UNSET"),
            (
                "chat gpt-4o-mini",
                "llm",
                "support-bot",
                "gpt-4o-mini",
                "gpt-4o-mini-2024-07-18",
                "openai",
                1200,
                80,
                1000,
                1,
                "",
                "",
                "UNSET",
            ),
            (
                "execute_tool lookup_order",
                "tool",
                "support-bot",
                "",
                "",
                "",
                0,
                0,
                0,
                0,
                "",
                "lookup_order",
                "ERROR",
            ),
        ]
        summary = tt.query(
            "SELECT root_name, agent_name, span_count, llm_calls, tool_calls, error_count, input_tokens,"
            " output_tokens, conversation_id, status FROM traces FINAL WHERE trace_id = {t:String}",
            t=trace_id,
        )
        assert summary == [("invoke_agent triage", "triage", 3, 1, 1, 1, 1200, 80, "conv-42", "ok")]
        stats = tt.collector.stats.snapshot()
        assert stats["tokentrail_spans_stored_total"] == 3
        assert stats["tokentrail_spans_spooled_total"] == 3


def _json_payload(trace_hex: str, spans: list[tuple[str, str, str]]) -> dict:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "hand-made"},
                        "spans": [
                            {
                                "traceId": trace_hex,
                                "spanId": span_id,
                                "parentSpanId": parent,
                                "name": name,
                                "kind": 3,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000001500000000",
                                "attributes": [
                                    {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                                    {
                                        "key": "gen_ai.request.model",
                                        "value": {"stringValue": "claude-sonnet-4-5"},
                                    },
                                    {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "500"}},
                                    {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "20"}},
                                    {"key": "future.field", "value": {"stringValue": "kept"}},
                                ],
                                "unknownFieldFromANewerSpec": True,
                            }
                            for span_id, parent, name in spans
                        ],
                    }
                ],
            }
        ]
    }


def test_otlp_json_with_hex_ids_is_accepted(settings, store):
    trace_hex = "5b8efff798038103d269b633813fc60c"
    with running_collector(settings, store) as tt:
        payload = _json_payload(trace_hex, [("eee19b7ec3c1b174", "", "chat claude-sonnet-4-5")])
        r = httpx.post(f"{tt.http_url}/v1/traces", json=payload)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/json"
        tt.flush()
        rows = tt.query(
            "SELECT span_id, duration_ns, request_model, input_tokens, attributes['future.field'], span_kind"
            " FROM spans FINAL WHERE trace_id = {t:String}",
            t=trace_hex,
        )
        assert rows == [("eee19b7ec3c1b174", 1_500_000_000, "claude-sonnet-4-5", 500, "kept", "CLIENT")]


def test_invalid_ids_are_rejected_one_by_one_and_the_rest_stored(settings, store):
    trace_hex = "0af7651916cd43dd8448eb211c80319c"
    spans = [
        ("b7ad6b7169203331", "", "good one"),
        ("0000000000000000", "", "zero span id"),
        ("c7ad6b7169203331", "b7ad6b7169203331", "good child"),
    ]
    with running_collector(settings, store) as tt:
        r = httpx.post(f"{tt.http_url}/v1/traces", json=_json_payload(trace_hex, spans))
        assert r.status_code == 200
        body = r.json()
        assert body["partialSuccess"]["rejectedSpans"] == "1"
        assert "zero span id" in body["partialSuccess"]["errorMessage"]
        tt.flush()
        names = tt.query(
            "SELECT name FROM spans FINAL WHERE trace_id = {t:String} ORDER BY name", t=trace_hex
        )
        assert names == [("good child",), ("good one",)]
        assert tt.collector.stats.snapshot()["tokentrail_spans_rejected_total"] == 1


def test_protobuf_partial_success_is_encoded_as_protobuf(settings, store):
    with running_collector(settings, store) as tt:
        request = ExportTraceServiceRequest()
        span = request.resource_spans.add().scope_spans.add().spans.add()
        span.trace_id = b"\x01" * 16
        span.span_id = b"\x02" * 4  # too short
        span.name = "short id"
        r = httpx.post(
            f"{tt.http_url}/v1/traces",
            content=request.SerializeToString(),
            headers={"content-type": "application/x-protobuf"},
        )
        assert r.status_code == 200
        reply = ExportTraceServiceResponse.FromString(r.content)
        assert reply.partial_success.rejected_spans == 1
        assert reply.partial_success.error_message == (
            "1 spans rejected: span 'short id': span_id is 4 bytes: it must be 8 bytes, not all zero"
        )


def _poisoned_batch() -> tuple[list[ReadableSpan], str]:
    """Finished SDK spans, three the writer could not store among two it can; and the trace id."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "poisoned"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("fuzzer")
    with tracer.start_as_current_span("good root") as root:
        with tracer.start_as_current_span("good child"):
            pass
        tracer.start_span("from the far future", start_time=2**64 - 1).end(end_time=2**64 - 1)
        now = time.time_ns()
        tracer.start_span("ends before it starts", start_time=now).end(end_time=now - 1000)
        late_event = tracer.start_span("event after 2262")
        late_event.add_event("boom", timestamp=2**64 - 1)
        late_event.end()
    return list(memory.get_finished_spans()), format(root.get_span_context().trace_id, "032x")


def _canary(provider_name: str) -> tuple[list[ReadableSpan], str]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": provider_name}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("canary").start_as_current_span("canary") as span:
        pass
    return list(memory.get_finished_spans()), format(span.get_span_context().trace_id, "032x")


def _stored_within(tt, trace_id: str, seconds: float) -> list[tuple]:
    deadline = time.monotonic() + seconds
    while True:
        rows: list[tuple] = tt.query(
            "SELECT name FROM spans FINAL WHERE trace_id = {t:String} ORDER BY name", t=trace_id
        )
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_spans_the_writer_cannot_store_are_rejected_and_do_not_hold_back_others(settings, store, transport):
    spans, trace_id = _poisoned_batch()
    with running_collector(settings, store) as tt:
        exporter: SpanExporter
        if transport == "grpc":
            exporter = GrpcSpanExporter(endpoint=tt.grpc_endpoint, insecure=True)
        else:
            exporter = HttpSpanExporter(endpoint=f"{tt.http_url}/v1/traces")
        assert exporter.export(spans) == SpanExportResult.SUCCESS  # one request, poison and all
        canary, canary_trace = _canary("canary")
        assert exporter.export(canary) == SpanExportResult.SUCCESS
        # no writer retries, no batch held back: the canary lands at once
        assert _stored_within(tt, canary_trace, 5) == [("canary",)]
        assert _stored_within(tt, trace_id, 5) == [("good child",), ("good root",)]
        stats = tt.collector.stats.snapshot()
        assert stats["tokentrail_spans_rejected_total"] == 3
        assert stats["tokentrail_write_errors_total"] == 0
        exporter.shutdown()

        # what the sender is told, field by field
        r = httpx.post(
            f"{tt.http_url}/v1/traces",
            content=encode_spans(spans).SerializeToString(),
            headers={"content-type": "application/x-protobuf"},
        )
        partial = ExportTraceServiceResponse.FromString(r.content).partial_success
        assert r.status_code == 200 and partial.rejected_spans == 3
        backwards = next(s for s in spans if s.name == "ends before it starts")
        assert partial.error_message == (
            "3 spans rejected: span 'from the far future': start_time_unix_nano 18446744073709551615 is after "
            "2262-04-11T23:47:16Z, the latest time ClickHouse can store; span 'ends before it starts': "
            f"end_time_unix_nano {backwards.end_time} is before start_time_unix_nano {backwards.start_time}; "
            "span 'event after 2262': events[0].time_unix_nano 18446744073709551615 is after 2262-04-11T23:47:16Z,"
            " the latest time ClickHouse can store"
        )


def test_times_at_the_edges_of_what_clickhouse_stores(settings, store):
    latest = 2**63 - 1  # 2262-04-11T23:47:16.854775807Z
    cases = [
        ("unset start", 0, 10, "start_time_unix_nano is 0 (unset)"),
        ("unset end", 10, 0, "end_time_unix_nano is 0 (unset)"),
        ("end past 2262", 10, latest + 1, f"end_time_unix_nano {latest + 1} is after 2262-04-11T23:47:16Z"),
        ("the latest", latest, latest, ""),
        ("the earliest", 1, 1, ""),
        ("instant", 5, 5, ""),
    ]
    trace_hex = "6af7651916cd43dd8448eb211c80319c"
    payload = _json_payload(trace_hex, [(f"{i + 1:016x}", "", name) for i, (name, *_) in enumerate(cases)])
    for span, (_, start, end, _) in zip(
        payload["resourceSpans"][0]["scopeSpans"][0]["spans"], cases, strict=True
    ):
        span["startTimeUnixNano"], span["endTimeUnixNano"] = str(start), str(end)
    with running_collector(settings, store) as tt:
        r = httpx.post(f"{tt.http_url}/v1/traces", json=payload)
        assert r.status_code == 200
        message = r.json()["partialSuccess"]["errorMessage"]
        assert r.json()["partialSuccess"]["rejectedSpans"] == "3" and message.startswith("3 spans rejected: ")
        for name, _, _, why in cases:
            assert (f"span {name!r}: {why}" in message) == bool(why), name
        tt.flush()
        rows = tt.query(
            "SELECT name, toString(start_time), toString(end_time) FROM spans FINAL"
            " WHERE trace_id = {t:String} ORDER BY start_time",
            t=trace_hex,
        )
        assert rows == [
            ("the earliest", "1970-01-01 00:00:00.000000001", "1970-01-01 00:00:00.000000001"),
            ("instant", "1970-01-01 00:00:00.000000005", "1970-01-01 00:00:00.000000005"),
            ("the latest", "2262-04-11 23:47:16.854775807", "2262-04-11 23:47:16.854775807"),
        ]
        assert tt.collector.stats.snapshot()["tokentrail_write_errors_total"] == 0


def _log_payload(*records: tuple[str, str, str]) -> dict:
    return {
        "resourceLogs": [
            {
                "scopeLogs": [
                    {
                        "logRecords": [
                            {
                                "body": {"stringValue": body},
                                "timeUnixNano": at,
                                "observedTimeUnixNano": observed,
                            }
                            for body, at, observed in records
                        ]
                    }
                ]
            }
        ]
    }


def test_log_records_with_times_clickhouse_cannot_store_are_rejected(settings, store):
    now = "1700000000000000000"
    payload = _log_payload(
        ("ok", now, now), ("far future", str(2**64 - 1), now), ("observed later", now, str(2**63))
    )
    with running_collector(settings, store) as tt:
        r = httpx.post(f"{tt.http_url}/v1/logs", json=payload)
        assert r.status_code == 200
        assert r.json()["partialSuccess"] == {
            "rejectedLogRecords": "2",
            "errorMessage": "2 log records rejected: log record: time_unix_nano 18446744073709551615 is after "
            "2262-04-11T23:47:16Z, the latest time ClickHouse can store; log record: observed_time_unix_nano "
            "9223372036854775808 is after 2262-04-11T23:47:16Z, the latest time ClickHouse can store",
        }
        tt.flush()
        assert tt.query("SELECT body, toString(timestamp) FROM logs FINAL") == [
            ("ok", "2023-11-14 22:13:20.000000000")
        ]


def test_log_records_without_times_are_kept(settings, store):
    # OTLP allows both times to be unset: such a record is stored at the epoch, not refused
    payload = _log_payload(
        ("no time at all", "0", "0"),
        ("observed unset", "1700000000000000000", "0"),
        ("early", "1000000000", "1000000000"),
    )
    with running_collector(settings, store) as tt:
        r = httpx.post(f"{tt.http_url}/v1/logs", json=payload)
        assert r.status_code == 200 and "partialSuccess" not in r.json()
        tt.flush()
        assert tt.query("SELECT body, toString(timestamp) FROM logs FINAL ORDER BY timestamp") == [
            ("no time at all", "1970-01-01 00:00:00.000000000"),
            ("early", "1970-01-01 00:00:01.000000000"),
            ("observed unset", "2023-11-14 22:13:20.000000000"),
        ]
        assert tt.collector.stats.snapshot()["tokentrail_write_errors_total"] == 0


def test_a_request_larger_than_the_whole_spool_is_413_not_retry_later(settings, store):
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x07" * 16, b"\x08" * 8, "x" * 20_000
    span.start_time_unix_nano = span.end_time_unix_nano = time.time_ns()
    body = request.SerializeToString()
    import grpc

    with running_collector(settings.with_(spool_max_bytes=10_000), store, writer=False) as tt:
        r = httpx.post(
            f"{tt.http_url}/v1/traces", content=body, headers={"content-type": "application/x-protobuf"}
        )
        assert r.status_code == 413 and "retry-after" not in r.headers
        with grpc.insecure_channel(tt.grpc_endpoint) as channel:
            export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
            with pytest.raises(grpc.RpcError) as err:
                export(body, timeout=10)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # a request that fits is still taken
        span.name = "small"
        r = httpx.post(
            f"{tt.http_url}/v1/traces",
            content=request.SerializeToString(),
            headers={"content-type": "application/x-protobuf"},
        )
        assert r.status_code == 200


def test_bad_requests_get_clear_errors(settings, store):
    with running_collector(settings.with_(max_body_bytes=64 * 1024), store) as tt:
        url = f"{tt.http_url}/v1/traces"
        r = httpx.post(url, content=b"\xff\x00garbage", headers={"content-type": "application/x-protobuf"})
        assert r.status_code == 400
        assert b"not a valid OTLP traces protobuf" in r.content
        r = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400
        assert "not valid JSON" in r.json()["message"]
        r = httpx.post(url, content=b"hello", headers={"content-type": "text/plain"})
        assert r.status_code == 415
        assert "application/x-protobuf" in r.json()["message"]
        r = httpx.post(url, content=b"x" * (65 * 1024), headers={"content-type": "application/x-protobuf"})
        assert r.status_code == 413
        bomb = gzip.compress(b"\x00" * (10 << 20))
        r = httpx.post(
            url, content=bomb, headers={"content-type": "application/x-protobuf", "content-encoding": "gzip"}
        )
        assert r.status_code == 413
        r = httpx.post(
            url, content=b"{}", headers={"content-type": "application/json", "content-encoding": "br"}
        )
        assert r.status_code == 415
        assert (tt.collector.stats.snapshot()["tokentrail_requests_invalid_total"] or 0) >= 2
        tt.flush()
        assert tt.query("SELECT count() FROM spans") == [(0,)]


def test_resent_batch_is_not_counted_twice(settings, store):
    trace_hex = "1af7651916cd43dd8448eb211c80319c"
    payload = _json_payload(trace_hex, [("a7ad6b7169203331", "", "chat claude-sonnet-4-5")])
    with running_collector(settings, store) as tt:
        for _ in range(3):
            assert httpx.post(f"{tt.http_url}/v1/traces", json=payload).status_code == 200
            tt.flush()
        assert tt.query("SELECT count() FROM spans FINAL WHERE trace_id = {t:String}", t=trace_hex) == [(1,)]
        assert tt.query(
            "SELECT span_count, input_tokens FROM traces FINAL WHERE trace_id = {t:String}", t=trace_hex
        ) == [(1, 500)]


def test_full_spool_answers_503_and_nothing_is_lost(settings, store):
    with running_collector(settings.with_(spool_max_bytes=1000), store, writer=False) as tt:
        statuses = []
        for i in range(6):
            trace_hex = f"{i + 1:032x}"
            r = httpx.post(
                f"{tt.http_url}/v1/traces", json=_json_payload(trace_hex, [("a7ad6b7169203331", "", "x")])
            )
            statuses.append(r.status_code)
        assert 503 in statuses and statuses[0] == 200
        refused = httpx.post(
            f"{tt.http_url}/v1/traces", json=_json_payload("f" * 32, [("a7ad6b7169203331", "", "x")])
        )
        assert refused.status_code == 503
        assert refused.headers["retry-after"]
        assert "retry later" in refused.json()["message"]
        accepted = statuses.count(200)
        tt.flush()
        assert tt.query("SELECT count() FROM spans FINAL") == [(accepted,)]


def test_logs_are_stored_over_http_and_grpc(settings, store):
    with running_collector(settings, store) as tt:
        for exporter in (
            HttpLogExporter(endpoint=f"{tt.http_url}/v1/logs"),
            GrpcLogExporter(endpoint=tt.grpc_endpoint, insecure=True),
        ):
            provider = LoggerProvider(resource=Resource.create({"service.name": "claude-code"}))
            provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
            provider.get_logger("cc").emit(
                body="api_request",
                attributes={"event.name": "api_request", "model": "claude-sonnet-4-5", "input_tokens": 12},
            )
            provider.shutdown()
        tt.flush()
        rows = tt.query(
            "SELECT service_name, event_name, body, attributes['model'], attributes['input_tokens'] FROM logs FINAL"
        )
        assert rows == [("claude-code", "api_request", "api_request", "claude-sonnet-4-5", "12")] * 2


def test_api_keys_choose_the_project_and_unknown_keys_get_401(settings, store):
    keyed = settings.with_(api_keys={"k-team-a": "team-a"})
    payload = _json_payload("2af7651916cd43dd8448eb211c80319c", [("a7ad6b7169203331", "", "chat")])
    with running_collector(keyed, store) as tt:
        url = f"{tt.http_url}/v1/traces"
        r = httpx.post(url, json=payload)
        assert r.status_code == 401
        assert "API key" in r.json()["message"]
        r = httpx.post(url, json=payload, headers={"authorization": "Bearer nope"})
        assert r.status_code == 401
        r = httpx.post(url, json=payload, headers={"authorization": "Bearer k-team-a"})
        assert r.status_code == 200
        tt.flush()
        assert tt.query("SELECT project, count() FROM spans FINAL GROUP BY project") == [("team-a", 1)]


def test_metrics_endpoint_reports_counters(settings, store):
    with running_collector(settings, store) as tt:
        httpx.post(
            f"{tt.http_url}/v1/traces",
            json=_json_payload("3af7651916cd43dd8448eb211c80319c", [("a7ad6b7169203331", "", "x")]),
        )
        tt.flush()
        metrics = scrape(tt.http_url)
        assert metrics["tokentrail_spans_received_total"] == 1
        assert metrics["tokentrail_spans_stored_total"] == 1
        assert "# TYPE tokentrail_spool_backlog_bytes gauge" in httpx.get(f"{tt.http_url}/metrics").text
        status = httpx.get(f"{tt.http_url}/api/status").json()
        assert status["stats"]["tokentrail_spans_stored_total"] == 1
        assert json.dumps(status)


def test_grpc_errors_use_the_retryable_codes(settings, store):
    import grpc

    def call(channel, body: bytes, key: str | None = None):
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        metadata = [("authorization", f"Bearer {key}")] if key else None
        return export(body, metadata=metadata, timeout=10)

    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x07" * 16, b"\x08" * 8, "x" * 2000
    span.start_time_unix_nano = span.end_time_unix_nano = 1_700_000_000_000_000_000
    body = request.SerializeToString()
    keyed = settings.with_(api_keys={"k1": "team-a"}, spool_max_bytes=5000)
    with (
        running_collector(keyed, store, writer=False) as tt,
        grpc.insecure_channel(tt.grpc_endpoint) as channel,
    ):
        with pytest.raises(grpc.RpcError) as err:
            call(channel, body)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as err:
            call(channel, b"\xff\x00garbage", "k1")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid OTLP traces protobuf" in (err.value.details() or "")
        codes = []
        for _ in range(4):
            try:
                reply = ExportTraceServiceResponse.FromString(call(channel, body, "k1"))
                codes.append(("OK", reply.partial_success.rejected_spans))
            except grpc.RpcError as exc:
                codes.append((exc.code().name, 0))
        assert codes[0] == ("OK", 0)
        assert ("UNAVAILABLE", 0) in codes


# --- whatever the receivers accept, the writer can store -------------------------------------------

_KEYS = st.one_of(
    st.sampled_from([sc.GEN_AI_USAGE_INPUT_TOKENS, sc.GEN_AI_USAGE_OUTPUT_TOKENS, sc.GEN_AI_REQUEST_MODEL]),
    st.sampled_from(
        sorted({v for k, v in vars(sc).items() if k.isupper() and isinstance(v, str) and "." in v})
    ),
)
_VALUES = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(lambda v: ("int_value", v)),
    st.floats(allow_nan=True, allow_infinity=True).map(lambda v: ("double_value", v)),
    st.sampled_from([1e19, 1e30, -1.0, float("inf")]).map(lambda v: ("double_value", v)),
    st.sampled_from(["", "1e300", "nan", "-5", "9" * 30, "gpt-4o", '[{"role": "user"}]', "{"]).map(
        lambda v: ("string_value", v)
    ),
    st.booleans().map(lambda v: ("bool_value", v)),
)
_EDGES = [0, 1, 2**31 - 1, 2**63 - 1, 2**63, 2**64 - 1]
# a storable span, then perhaps one field set to an edge value (of its type, not necessarily storable)
_DAMAGE = st.one_of(
    st.just(("", None)),
    st.tuples(
        st.sampled_from(["trace_id", "span_id", "parent_span_id"]),
        st.sampled_from([b"", b"\x01" * 4, bytes(8), bytes(16), b"\x01" * 17]),
    ),
    st.tuples(
        st.sampled_from(["start_time_unix_nano", "end_time_unix_nano", "event"]), st.sampled_from(_EDGES)
    ),
    st.tuples(st.sampled_from(["kind", "status"]), st.sampled_from([-(2**31), -7, -1, 6, 2**31 - 1])),
)
_SPANS = st.lists(
    st.tuples(
        st.binary(min_size=16, max_size=16),
        st.binary(min_size=8, max_size=8),
        st.integers(1, 2**62),
        st.integers(0, 10**12),
        st.lists(st.tuples(_KEYS, _VALUES), max_size=6),
        _DAMAGE,
    ),
    min_size=1,
    max_size=4,
)


@hsettings(max_examples=300, deadline=None, derandomize=True)
@given(_SPANS)
def test_every_span_the_receivers_accept_can_be_written(spans):
    """The writer must never meet a span it cannot store: that is what stalls it for everyone."""
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for trace_id, span_id, start, duration, attrs, (field, bad) in spans:
        span = scope.spans.add(
            trace_id=trace_id,
            span_id=span_id,
            name="chat x",
            start_time_unix_nano=start,
            end_time_unix_nano=start + duration,
        )
        span.attributes.add(key=sc.GEN_AI_OPERATION_NAME).value.string_value = "chat"  # a model call
        for key, (kind, value) in attrs:
            setattr(span.attributes.add(key=key).value, kind, value)
        if field == "event":
            span.events.add(name="e", time_unix_nano=bad)
        elif field == "status":
            span.status.code = bad
        elif field:
            setattr(span, field, bad)
    try:
        decoded = decode("traces", request.SerializeToString(), "protobuf")
    except BadRequest:
        return
    assert decoded.accepted + decoded.rejected == len(spans)
    batch = SpanBatch()
    batch.add("p", ExportTraceServiceRequest.FromString(decoded.payload))
    assert batch.arrow()
