"""The coding-agent emulators send what Claude Code, Codex CLI and Gemini CLI document, through the
real OpenTelemetry SDK, and their ground truth agrees with the records they send.

Records are captured with the SDK's in-memory exporters and reader, and once over the wire by a
small OTLP/HTTP and OTLP/gRPC receiver. Expected values come from the scenario (the steps a
session was built from), never from the emitters.
"""

from __future__ import annotations

import gzip
import re
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics.export import AggregationTemporality, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from tests.support.coding_agents import (
    DAY_REQUESTS,
    DAY_TOOL_CALLS,
    TOOLS,
    Compaction,
    ModelRequest,
    Session,
    Tool,
    ToolUse,
    day_long_session,
    emit,
    emit_events,
    emit_metrics,
    emit_spans,
    ground_truth,
    metrics_data,
    realistic_session,
)
from tests.support.collector import free_port

_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# -- capture helpers -------------------------------------------------------------------------


def logs_of(session: Session, *, trace_context: bool = False) -> list[ReadableLogRecord]:
    exporter = InMemoryLogRecordExporter()
    sent = emit_events(session, exporter=exporter, trace_context=trace_context)
    records = list(exporter.get_finished_logs())
    assert len(records) == sent
    return records


def spans_of(session: Session) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    sent = emit_spans(session, exporter=exporter)
    found = list(exporter.get_finished_spans())
    assert len(found) == sent
    return found


def attrs(record: ReadableLogRecord) -> dict[str, Any]:
    return dict(record.log_record.attributes or {})


def named(records: list[ReadableLogRecord], name: str) -> list[dict[str, Any]]:
    return [attrs(r) for r in records if attrs(r).get("event.name") == name]


def requests(session: Session) -> list[ModelRequest]:
    """Every model request of the scenario, a compaction's and a subagent's included."""
    return [p.step for prompt in session.timeline() for p in prompt.requests()]  # type: ignore[misc]


def tools(session: Session) -> list[ToolUse]:
    return [p.step for prompt in session.timeline() for p in prompt.steps if isinstance(p.step, ToolUse)]


def points(batches: list[MetricsData], name: str) -> list[tuple[Any, Any, dict[str, Any]]]:
    """(metric, point, attributes) of every exported point of a metric."""
    return [
        (m, p, dict(p.attributes or {}))
        for data in batches
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
        for p in m.data.data_points
    ]


@pytest.fixture(scope="module")
def sessions() -> dict[Tool, Session]:
    return {tool: realistic_session(tool, seed=7) for tool in TOOLS}


# -- Claude Code -----------------------------------------------------------------------------


def test_claude_code_events_carry_the_documented_names_attributes_and_types(sessions):
    session = sessions["claude_code"]
    records = logs_of(session)
    sequence = []
    for record in records:
        a = attrs(record)
        assert record.log_record.body == f"claude_code.{a['event.name']}", (
            "body: full name; event.name: short"
        )
        assert record.instrumentation_scope is not None
        assert record.instrumentation_scope.name == "com.anthropic.claude_code.events"
        for key in (
            "session.id",
            "user.email",
            "user.account_uuid",
            "organization.id",
            "terminal.type",
            "prompt.id",
        ):
            assert isinstance(a[key], str) and a[key], key
        assert a["session.id"] == session.session_id
        assert a["team"] == session.resource["team"], "OTEL_RESOURCE_ATTRIBUTES keys are copied onto events"
        assert _ISO.match(a["event.timestamp"])
        ts = record.log_record.timestamp
        assert ts is not None and datetime.fromisoformat(a["event.timestamp"]).timestamp() == pytest.approx(
            ts / 1e9, abs=0.001
        )
        sequence.append(a["event.sequence"])
    assert sequence == list(range(len(records))), "event.sequence counts from 0 in emission order"
    resource = records[0].resource.attributes
    assert resource["service.name"] == "claude-code"
    assert resource["repository"] == session.resource["repository"]

    answered = [r for r in requests(session) if not r.exhausted]
    api = named(records, "api_request")
    assert [a["request_id"] for a in api] == [r.request_id for r in answered]
    for a, r in zip(api, answered, strict=True):
        for key in (
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "cache_creation_tokens",
            "duration_ms",
            "cost_usd",
        ):
            assert isinstance(a[key], str), f"{key} is sent as a string"
        assert int(a["input_tokens"]) == r.input_tokens, "input EXCLUDES cache reads and writes"
        assert int(a["cache_read_tokens"]) == r.cache_read_tokens
        assert int(a["cache_creation_tokens"]) == r.cache_write_tokens
        assert float(a["cost_usd"]) == pytest.approx(r.cost_usd)
        assert a["cost_usd_micros"] == round(float(a["cost_usd"]) * 1e6)
    results = named(records, "tool_result")
    executed = [t for t in tools(session) if t.executed]
    assert sorted(a["tool_use_id"] for a in results) == sorted(t.call_id for t in executed), (
        "none for a rejection"
    )
    assert {a["success"] for a in results} == {"true", "false"}
    decisions = named(records, "tool_decision")
    assert [a["tool_use_id"] for a in decisions] == [t.call_id for t in tools(session)]
    assert {a["decision"] for a in decisions} == {"accept", "reject"}
    compactions = [s for p in session.prompts for s in p.steps if isinstance(s, Compaction)]
    assert [(int(a["pre_tokens"]), int(a["post_tokens"])) for a in named(records, "compaction")] == [
        (c.tokens_before, c.tokens_after) for c in compactions
    ]
    subagent_calls = [a for a in api if a.get("agent.name")]
    assert subagent_calls and all(a["query_source"] == a["agent.name"] for a in subagent_calls)


def test_claude_code_logs_a_retry_only_when_the_request_gives_up(sessions):
    session = sessions["claude_code"]
    records = logs_of(session)
    gave_up = [r for r in requests(session) if r.exhausted]
    recovered = [r for r in requests(session) if r.failures and not r.exhausted]
    assert gave_up and recovered
    errors = named(records, "api_error")
    assert [(int(a["attempt"]), a["status_code"]) for a in errors] == [
        (len(r.failures), r.failures[-1].status_code) for r in gave_up
    ], "one api_error per request that gave up; attempt = attempts made; status_code is a number"
    exhausted = named(records, "api_retries_exhausted")
    assert [int(a["total_attempts"]) for a in exhausted] == [len(r.failures) for r in gave_up]

    events_only, traced = ground_truth(session), ground_truth(session, spans=True)
    assert events_only.totals.failed_attempts == sum(len(r.failures) for r in gave_up)
    assert traced.totals.failed_attempts == sum(len(r.failures) for r in gave_up + recovered)


def test_claude_code_spans_nest_per_prompt_and_share_ids_with_the_events(sessions):
    session = sessions["claude_code"]
    found = spans_of(session)
    by_id = {s.context.span_id: s for s in found}
    roots = [s for s in found if s.parent is None]
    assert [s.name for s in roots] == ["claude_code.interaction"] * len(session.prompts)
    assert len({s.context.trace_id for s in roots}) == len(session.prompts), "one trace per prompt"
    for s in found:
        span_attrs = dict(s.attributes or {})
        assert span_attrs["span.type"] == s.name.removeprefix("claude_code.")
        if s.parent is not None:
            assert by_id[s.parent.span_id].context.trace_id == s.context.trace_id

    llm = [s for s in found if s.name == "claude_code.llm_request"]
    scenario = requests(session)
    assert len(llm) == len(scenario)
    for span, request in zip(sorted(llm, key=lambda s: s.start_time or 0), scenario, strict=True):
        a = dict(span.attributes or {})
        assert a["attempt"] == len(request.failures) + (0 if request.exhausted else 1)
        assert len(span.events) == a["attempt"] - 1, "one gen_ai.request.attempt span event per retry"
        assert a["success"] is (not request.exhausted)
        assert (span.status.status_code is StatusCode.ERROR) is request.exhausted
        if not request.exhausted:
            assert a["request_id"] == a["gen_ai.response.id"] == request.request_id
            assert a["input_tokens"] == request.input_tokens, "span numbers are numbers"

    tool_spans = {dict(s.attributes or {})["tool_use_id"]: s for s in found if s.name == "claude_code.tool"}
    assert set(tool_spans) == {t.call_id for t in tools(session)}
    for s in found:
        if s.name in ("claude_code.tool.blocked_on_user", "claude_code.tool.execution"):
            assert s.parent is not None and by_id[s.parent.span_id].name == "claude_code.tool"
    agent_tool = next(t for t in tools(session) if t.subagent is not None)
    assert agent_tool.subagent is not None
    nested = [s for s in found if dict(s.attributes or {}).get("agent_id") == agent_tool.subagent.agent_id]
    assert nested and all(
        s.parent and s.parent.span_id == tool_spans[agent_tool.call_id].context.span_id for s in nested
    )

    traced = logs_of(session, trace_context=True)
    for record in traced:
        a = attrs(record)
        span = by_id[record.log_record.span_id or 0]
        assert record.log_record.trace_id == span.context.trace_id
        if a["event.name"] == "api_request":
            assert dict(span.attributes or {})["request_id"] == a["request_id"]
        if a["event.name"] == "tool_result":
            assert dict(span.attributes or {})["tool_use_id"] == a["tool_use_id"]


# -- Codex -----------------------------------------------------------------------------------


def test_codex_events_split_turns_at_user_prompts_and_count_tokens_on_response_completed(sessions):
    session = sessions["codex"]
    records = logs_of(session)
    names = [attrs(r)["event.name"] for r in records]
    assert names[0] == "codex.conversation_starts"
    assert names.count("codex.user_prompt") == len(session.prompts)
    for record in records:
        a = attrs(record)
        assert record.log_record.body is None
        assert re.match(r"^event \S+\.rs:\d+$", record.log_record.event_name or "")
        assert a["conversation.id"] == session.session_id
        assert _ISO.match(a["event.timestamp"])
        for key in ("app.version", "auth_mode", "originator", "terminal.type", "model", "slug", "user.email"):
            assert a[key], key
    assert records[0].resource.attributes["service.name"] == "codex_cli_rs"

    attempts = named(records, "codex.api_request")
    scenario = requests(session)
    assert len(attempts) == sum(len(r.failures) + (0 if r.exhausted else 1) for r in scenario)
    assert all(isinstance(a["attempt"], int) and isinstance(a["duration_ms"], str) for a in attempts)
    failed = [a for a in attempts if a.get("http.response.status_code") != 200]
    assert [a["http.response.status_code"] for a in failed] == [
        f.status_code for r in scenario for f in r.failures
    ]

    completed = [a for a in named(records, "codex.sse_event") if a["event.kind"] == "response.completed"]
    with_tokens = [a for a in completed if "input_token_count" in a]
    answered = [r for r in scenario if not r.exhausted]
    assert len(completed) == 2 * len(answered), "response.completed is logged once read and once with usage"
    for a, r in zip(with_tokens, answered, strict=True):
        assert int(a["input_token_count"]) == r.input_tokens + r.cache_read_tokens, "input INCLUDES cached"
        assert a["cached_token_count"] == r.cache_read_tokens
        assert a["reasoning_token_count"] == r.reasoning_tokens
        assert int(a["tool_token_count"]) == int(a["input_token_count"]) + int(a["output_token_count"])
    decisions = {a["call_id"]: a for a in named(records, "codex.tool_decision")}
    results = {a["call_id"]: a for a in named(records, "codex.tool_result")}
    assert set(decisions) == set(results) == {t.call_id for t in tools(session)}
    rejected = [t for t in tools(session) if not t.executed]
    assert [decisions[t.call_id]["decision"] for t in rejected] == ["denied"] * len(rejected)

    truth = ground_truth(session)
    assert truth.totals.input_tokens == sum(int(a["input_token_count"]) for a in with_tokens)
    assert truth.totals.output_tokens == sum(int(a["output_token_count"]) for a in with_tokens)
    assert truth.totals.failed_attempts == len(failed)
    assert all(t.prompt_id is None for t in truth.traces), "Codex turns have no id"


# -- Gemini CLI ------------------------------------------------------------------------------


def test_gemini_cli_events_carry_prompt_ids_and_gemini_token_semantics(sessions):
    session = sessions["gemini_cli"]
    records = logs_of(session)
    for record in records:
        a = attrs(record)
        assert a["event.name"].startswith(("gemini_cli.", "gen_ai.")), "event.name is the full name"
        assert isinstance(record.log_record.body, str) and record.log_record.body
        assert a["session.id"] == session.session_id and a["installation.id"] == session.user_id
        assert a["interactive"] is True
    names = Counter(attrs(r)["event.name"] for r in records)
    model_records = (
        names["gemini_cli.api_request"] + names["gemini_cli.api_response"] + names["gemini_cli.api_error"]
    )
    assert names["gen_ai.client.inference.operation.details"] == model_records, "each has its GenAI twin"

    main_ids = {p.prompt_id for p in session.prompts}
    for a in named(records, "gemini_cli.api_request") + named(records, "gemini_cli.api_response"):
        if a["role"] == "subagent":
            assert re.match(r"^[0-9a-f-]{36}#\d+$", a["prompt_id"]), (
                "a subagent's turns have ids of their own"
            )
        else:
            assert a["prompt_id"] in main_ids

    truth = ground_truth(session)
    responses = [a for a in named(records, "gemini_cli.api_response") if a["finish_reasons"]]
    assert sum(a["input_token_count"] for a in responses) == truth.totals.input_tokens, (
        "input INCLUDES cached"
    )
    assert sum(a["cached_content_token_count"] for a in responses) == truth.totals.cache_read_tokens
    assert (
        sum(a["output_token_count"] + a["thoughts_token_count"] for a in responses)
        == truth.totals.output_tokens
    ), "output EXCLUDES thoughts"
    errors = named(records, "gemini_cli.api_error")
    retries = named(records, "gemini_cli.chat.content_retry")
    assert len(errors) + len(retries) == truth.totals.failed_attempts
    assert all(isinstance(a["status_code"], int) for a in errors)
    assert [
        (a["tokens_before"], a["tokens_after"]) for a in named(records, "gemini_cli.chat_compression")
    ] == [(c.tokens_before, c.tokens_after) for _, c in truth.waste.compactions]
    calls = named(records, "gemini_cli.tool_call")
    assert len(calls) == len(tools(session)) and all("call_id" not in a for a in calls)
    assert all(isinstance(a["success"], bool) and isinstance(a["duration_ms"], int) for a in calls)


# -- metrics ---------------------------------------------------------------------------------


_TEMPORALITY = {
    "claude_code": AggregationTemporality.DELTA,
    "codex": AggregationTemporality.DELTA,
    "gemini_cli": AggregationTemporality.CUMULATIVE,
}


@pytest.mark.parametrize("tool", TOOLS)
def test_metrics_are_read_per_simulated_interval_with_the_tools_temporality(sessions, tool):
    session = sessions[tool]
    batches = metrics_data(session)
    assert batches
    end = session.end_ns()
    for data in batches:
        for rm in data.resource_metrics:
            assert rm.resource.attributes["team"] == session.resource["team"]
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    temporality = getattr(m.data, "aggregation_temporality", None)
                    assert temporality is _TEMPORALITY[tool], m.name
                    for p in m.data.data_points:
                        assert session.start_ns <= p.start_time_unix_nano < p.time_unix_nano
                        assert p.time_unix_nano - end < 60_000_000_000, "stamped in simulated time"


def test_claude_code_metrics_add_up_to_the_ground_truth(sessions):
    session = sessions["claude_code"]
    truth = ground_truth(session)
    batches = metrics_data(session)
    tokens = Counter[str]()
    for m, p, a in points(batches, "claude_code.token.usage"):
        assert m.unit == "tokens" and "prompt.id" not in a
        tokens[a["type"]] += p.value
    assert tokens["input"] + tokens["cacheRead"] + tokens["cacheCreation"] == truth.totals.input_tokens
    assert tokens["cacheRead"] == truth.totals.cache_read_tokens
    assert tokens["output"] == truth.totals.output_tokens
    cost = points(batches, "claude_code.cost.usage")
    assert cost[0][0].unit == "USD"
    assert sum(p.value for _, p, _ in cost) == pytest.approx(truth.totals.cost_usd)
    assert {a["query_source"] for _, _, a in cost} == {"main", "subagent", "auxiliary"}


def test_codex_and_gemini_metrics_add_up_to_the_ground_truth(sessions):
    codex, gemini = sessions["codex"], sessions["gemini_cli"]
    turn = points(metrics_data(codex), "codex.turn.token_usage")
    assert (
        sum(p.sum for _, p, a in turn if a["token_type"] == "input")
        == ground_truth(codex).totals.input_tokens
    )
    latency = points(metrics_data(codex), "codex.api_request.duration_ms")
    assert latency[0][0].unit == "ms"

    truth = ground_truth(gemini)
    final = points(metrics_data(gemini)[-1:], "gemini_cli.token.usage")  # cumulative: the last read holds all
    by_type = Counter[str]()
    for _, p, a in final:
        by_type[a["type"]] += p.value
    assert by_type["input"] == truth.totals.input_tokens
    assert by_type["output"] + by_type["thought"] == truth.totals.output_tokens


# -- re-sending, ground truth, the day-long session, the wire --------------------------------


def test_a_session_sent_twice_sends_the_same_records(sessions):
    for tool in TOOLS:
        first, second = (
            logs_of(sessions[tool], trace_context=True),
            logs_of(sessions[tool], trace_context=True),
        )
        assert [r.to_json() for r in first] == [r.to_json() for r in second], tool
    spans = [
        [
            (s.context.trace_id, s.context.span_id, s.start_time, s.end_time)
            for s in spans_of(sessions["claude_code"])
        ]
        for _ in range(2)
    ]
    assert spans[0] == spans[1]


@pytest.mark.parametrize("tool", TOOLS)
def test_ground_truth_finds_the_waste_the_scenario_was_built_with(sessions, tool):
    session = sessions[tool]
    truth = ground_truth(session, spans=True)
    assert len(truth.traces) == len(session.prompts)
    assert [len(t.calls) for t in truth.traces] == [sum(1 for _ in p.requests()) for p in session.timeline()]
    storm = max(len(r.failures) for r in requests(session) if not r.exhausted)
    assert any(s.failed_attempts == storm for s in truth.waste.retry_storms)
    assert len(truth.waste.gave_up) == sum(r.exhausted for r in requests(session))
    reread = [r for r in truth.waste.repeated_calls if "src/config.py" in r.arguments]
    assert len(reread) == 2, "src/config.py is read in prompt 0, then again in prompts 1 and 3"
    idle = max(session.prompts, key=lambda p: p.idle_before_ms)
    [miss] = truth.waste.cache_misses
    assert (miss.trace, miss.call) == (session.prompts.index(idle), 0)
    assert miss.idle_s > idle.idle_before_ms / 1000
    assert len(truth.waste.compactions) == (0 if tool == "codex" else 1)
    subagents = [s for t in truth.traces for s in t.subagents]
    assert len(subagents) == (0 if tool == "codex" else 1)
    first = truth.traces[0].calls[0]
    request = requests(session)[0]
    assert first.input_tokens == request.input_tokens + request.cache_read_tokens + request.cache_write_tokens


def test_the_day_long_session_has_two_thousand_requests_and_five_thousand_tool_calls():
    for tool in TOOLS:
        session = day_long_session(tool)
        assert len(requests(session)) == DAY_REQUESTS and len(tools(session)) == DAY_TOOL_CALLS
        truth = ground_truth(session, spans=True)
        assert (truth.totals.calls, truth.totals.tool_calls) == (DAY_REQUESTS, DAY_TOOL_CALLS)
        assert truth.waste.cache_misses and truth.waste.repeated_calls and truth.waste.retries
        assert (session.end_ns() - session.start_ns) / 3.6e12 > 7, "a working day"
    records = logs_of(session)  # Gemini CLI's
    names = Counter(attrs(r)["event.name"] for r in records)
    assert names["gemini_cli.tool_call"] == DAY_TOOL_CALLS
    assert names["gemini_cli.api_response"] == DAY_REQUESTS
    claude = day_long_session("claude_code")
    assert len([s for s in spans_of(claude) if s.name == "claude_code.llm_request"]) == DAY_REQUESTS


class _Receiver:
    """A minimal OTLP receiver (HTTP and gRPC) that decodes and keeps what it is sent."""

    def __init__(self) -> None:
        self.logs: list[Any] = []
        self.spans: list[Any] = []
        self.points = 0

    def take(self, signal: str, body: bytes) -> None:
        if signal == "logs":
            logs = logs_service_pb2.ExportLogsServiceRequest.FromString(body)
            self.logs += [r for rl in logs.resource_logs for sl in rl.scope_logs for r in sl.log_records]
        elif signal == "traces":
            traces = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            self.spans += [s for rs in traces.resource_spans for ss in rs.scope_spans for s in ss.spans]
        else:
            metrics = metrics_service_pb2.ExportMetricsServiceRequest.FromString(body)
            for rm in metrics.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        self.points += len(getattr(m, m.WhichOneof("data") or "sum").data_points)


@pytest.fixture
def receiver() -> Iterator[tuple[_Receiver, str, str]]:
    got = _Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            got.take(self.path.rsplit("/", 1)[-1], body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()

    class Logs(logs_service_pb2_grpc.LogsServiceServicer):
        def Export(self, request, context):  # type: ignore[no-untyped-def]
            got.take("logs", request.SerializeToString())
            return logs_service_pb2.ExportLogsServiceResponse()

    class Traces(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):  # type: ignore[no-untyped-def]
            got.take("traces", request.SerializeToString())
            return trace_service_pb2.ExportTraceServiceResponse()

    class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
        def Export(self, request, context):  # type: ignore[no-untyped-def]
            got.take("metrics", request.SerializeToString())
            return metrics_service_pb2.ExportMetricsServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        yield got, f"http://127.0.0.1:{http.server_address[1]}", f"127.0.0.1:{port}"
    finally:
        server.stop(None)
        http.shutdown()


def test_emit_sends_every_signal_over_http_and_grpc(sessions, receiver):
    got, http_url, grpc_target = receiver
    session = sessions["claude_code"]
    over_http = emit(session, http_url, "http", spans=True)
    assert (len(got.logs), len(got.spans), got.points) == (
        over_http.events,
        over_http.spans,
        over_http.metric_points,
    )
    first = list(got.logs)
    over_grpc = emit(session, grpc_target, "grpc", spans=True)
    assert over_grpc == over_http
    assert got.logs[len(first) :] == first, "the same records, whichever the protocol"
    assert len(got.spans) == 2 * over_http.spans
    typed = {kv.key: kv.value.WhichOneof("value") for kv in first[0].attributes}
    assert typed["prompt_length"] == "string_value" and typed["event.sequence"] == "int_value"
    assert emit_metrics(sessions["gemini_cli"], grpc_target, "grpc") > 0
