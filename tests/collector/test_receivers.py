"""Real OTLP from the OpenTelemetry SDK's exporters into a running collector, asserted in ClickHouse."""

from __future__ import annotations

import gzip
import json

import httpx
import pytest
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
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.collector.harness import running_collector


def _agent_run(provider: TracerProvider) -> str:
    tracer = provider.get_tracer("test-agent")
    with tracer.start_as_current_span("invoke_agent triage", attributes={
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "triage",
        "gen_ai.conversation.id": "conv-42",
    }) as root:
        with tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
            "gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 80,
            "gen_ai.usage.cache_read.input_tokens": 1000,
            "gen_ai.response.finish_reasons": ("tool_call",),
        }):
            pass
        with tracer.start_as_current_span("execute_tool lookup_order", attributes={
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order",
            "gen_ai.tool.call.id": "call_1",
        }) as tool:
            tool.set_status(Status(StatusCode.ERROR, "order service timed out"))
        return format(root.get_span_context().trace_id, "032x")  # fmt: skip


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
            ("chat gpt-4o-mini", "llm", "support-bot", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "openai",
             1200, 80, 1000, 1, "", "", "UNSET"),
            ("execute_tool lookup_order", "tool", "support-bot", "", "", "", 0, 0, 0, 0, "",
             "lookup_order", "ERROR"),
        ]  # fmt: skip
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
        "resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
            "scopeSpans": [{
                "scope": {"name": "hand-made"},
                "spans": [{
                    "traceId": trace_hex, "spanId": span_id, "parentSpanId": parent, "name": name,
                    "kind": 3, "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000001500000000",
                    "attributes": [
                        {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
                        {"key": "gen_ai.request.model", "value": {"stringValue": "claude-sonnet-4-5"}},
                        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "500"}},
                        {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "20"}},
                        {"key": "future.field", "value": {"stringValue": "kept"}},
                    ],
                    "unknownFieldFromANewerSpec": True,
                } for span_id, parent, name in spans],
            }],
        }]
    }  # fmt: skip


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
        names = tt.query("SELECT name FROM spans FINAL WHERE trace_id = {t:String} ORDER BY name", t=trace_hex)
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
            f"{tt.http_url}/v1/traces", content=request.SerializeToString(),
            headers={"content-type": "application/x-protobuf"},
        )  # fmt: skip
        assert r.status_code == 200
        reply = ExportTraceServiceResponse.FromString(r.content)
        assert reply.partial_success.rejected_spans == 1


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
        r = httpx.post(url, content=bomb, headers={"content-type": "application/x-protobuf", "content-encoding": "gzip"})
        assert r.status_code == 413
        r = httpx.post(url, content=b"{}", headers={"content-type": "application/json", "content-encoding": "br"})
        assert r.status_code == 415
        assert tt.collector.stats.snapshot()["tokentrail_requests_invalid_total"] >= 2
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
            r = httpx.post(f"{tt.http_url}/v1/traces", json=_json_payload(trace_hex, [("a7ad6b7169203331", "", "x")]))
            statuses.append(r.status_code)
        assert 503 in statuses and statuses[0] == 200
        refused = httpx.post(f"{tt.http_url}/v1/traces", json=_json_payload("f" * 32, [("a7ad6b7169203331", "", "x")]))
        assert refused.status_code == 503
        assert refused.headers["retry-after"]
        assert "retry later" in refused.json()["message"]
        accepted = statuses.count(200)
        tt.flush()
        assert tt.query("SELECT count() FROM spans FINAL") == [(accepted,)]


def test_logs_are_stored_over_http_and_grpc(settings, store):
    with running_collector(settings, store) as tt:
        for exporter in (HttpLogExporter(endpoint=f"{tt.http_url}/v1/logs"),
                         GrpcLogExporter(endpoint=tt.grpc_endpoint, insecure=True)):
            provider = LoggerProvider(resource=Resource.create({"service.name": "claude-code"}))
            provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
            provider.get_logger("cc").emit(
                body="api_request",
                attributes={"event.name": "api_request", "model": "claude-sonnet-4-5", "input_tokens": 12},
            )
            provider.shutdown()
        tt.flush()
        rows = tt.query("SELECT service_name, event_name, body, attributes['model'], attributes['input_tokens'] FROM logs FINAL")
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
        httpx.post(f"{tt.http_url}/v1/traces", json=_json_payload("3af7651916cd43dd8448eb211c80319c",
                                                                  [("a7ad6b7169203331", "", "x")]))
        tt.flush()
        text = httpx.get(f"{tt.http_url}/metrics").text
        assert "tokentrail_spans_received_total 1" in text
        assert "tokentrail_spans_stored_total 1" in text
        assert "# TYPE tokentrail_spool_backlog_bytes gauge" in text
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
    body = request.SerializeToString()
    keyed = settings.with_(api_keys={"k1": "team-a"}, spool_max_bytes=5000)
    with running_collector(keyed, store, writer=False) as tt, grpc.insecure_channel(tt.grpc_endpoint) as channel:
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
