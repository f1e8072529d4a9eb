"""Coding agents end to end: each tool's emulator sends the events (and spans) the tool documents
through the real OTel SDK exporters to a running collector; what is stored must be what the
scenario's ground truth says, whatever the tool and whichever order its signals arrive in."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.support.coding_agents import (
    SessionTruth,
    emit,
    emit_events,
    emit_spans,
    ground_truth,
    realistic_session,
)
from tests.support.coding_agents import events as events_of
from tests.support.coding_agents import resource as resource_of
from tests.support.coding_agents.otel import export_logs, log_exporter
from tests.support.collector import Running, running_collector
from tests.support.recorder import prices
from tokentrail.analysis.run import analyze_range
from tokentrail.cli import main as cli

#: the provider each tool's models are priced under, for the catalog's figures
_PROVIDERS = {"claude_code": "anthropic", "codex": "openai", "gemini_cli": "gcp.gemini"}


def _traces(run: Running) -> list[dict[str, Any]]:
    columns = (
        "trace_id, llm_calls, tool_calls, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, "
        "reasoning_tokens, cost_usd, unpriced_calls, user_id, conversation_id, coding_agent, team, repository, status"
    )
    rows = run.query(f"SELECT {columns} FROM traces FINAL ORDER BY start_time")
    names = [c.strip() for c in columns.split(",")]
    return [dict(zip(names, row, strict=True)) for row in rows]


def _failed_attempts(run: Running, tool: str) -> dict[str, int]:
    """Per trace, the attempts at a model call that got no answer: one failed call each (Codex and
    Gemini CLI log every attempt), or as many as Claude Code's one `api_error` numbers (it logs
    the request it gave up on, as attempt N)."""
    counted = "sum(greatest(retry_attempt, 1))" if tool == "claude_code" else "count()"
    rows = run.query(
        f"SELECT trace_id, {counted} FROM spans FINAL WHERE step_kind = 'llm' AND status_code = 'ERROR' "
        "GROUP BY trace_id"
    )
    return dict(rows)  # type: ignore[arg-type]


def _catalog_cost(tool: str, truth: SessionTruth, index: int) -> float:
    """A trace's cost from the price catalog and the scenario's tokens (or the cost the tool reported)."""
    total = 0.0
    for call in truth.traces[index].calls:
        if not call.succeeded:
            continue
        if call.cost_usd is not None:
            total += call.cost_usd
            continue
        cost = prices().cost(
            _PROVIDERS[tool],
            call.model,
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
            cache_read_tokens=call.cache_read_tokens,
            cache_write_tokens=call.cache_write_tokens,
        )
        assert cost is not None, f"the catalog has no price for {call.model}"
        total += cost
    return total


def _assert_traces_match(run: Running, truth: SessionTruth, tool: str, *, own_spans: bool = False) -> None:
    traces = _traces(run)
    assert len(traces) == len(truth.traces), "one trace per prompt"
    failed = _failed_attempts(run, tool)
    # one model-call span per answered request: no twin, no leftover of an earlier build
    answered = dict(
        run.query(
            "SELECT trace_id, countIf(status_code != 'ERROR') FROM spans FINAL WHERE step_kind = 'llm' GROUP BY trace_id"
        )
    )
    for got, want in zip(traces, truth.traces, strict=True):
        totals = want.totals
        assert got["llm_calls"] == totals.calls == answered[got["trace_id"]]
        assert got["tool_calls"] == totals.tool_calls
        # input inclusive of cache reads and writes, whatever the tool's own semantics
        assert got["input_tokens"] == totals.input_tokens
        assert got["output_tokens"] == totals.output_tokens
        assert got["cache_read_tokens"] == totals.cache_read_tokens
        assert got["cache_write_tokens"] == totals.cache_write_tokens
        assert got["reasoning_tokens"] == totals.reasoning_tokens
        assert got["unpriced_calls"] == 0
        assert math.isclose(got["cost_usd"], _catalog_cost(tool, truth, want.index), rel_tol=1e-9)
        assert got["user_id"] == "dana@acme.example"
        assert got["conversation_id"] == truth.session_id
        assert (got["coding_agent"], got["team"], got["repository"]) == (tool, "platform", "acme/acme-api")
        if not own_spans:  # every attempt the events show as failed is a failed model call
            assert failed.get(got["trace_id"], 0) == len(want.failed_attempts)
    gave_up = {index for index, _ in truth.waste.gave_up}
    if not own_spans:  # the tool's own root span says how its prompt ended
        assert [t["status"] for t in traces] == [
            "error" if i in gave_up else "ok" for i in range(len(traces))
        ]


@pytest.mark.parametrize(
    ("tool", "protocol"),
    [("claude_code", "http"), ("codex", "http"), ("gemini_cli", "http"), ("claude_code", "grpc")],
)
def test_each_prompt_becomes_a_trace_with_the_tools_figures(settings, store, tool, protocol):
    session = realistic_session(tool, seed=1)
    truth = ground_truth(session)
    with running_collector(settings, store, pricer=prices()) as run:
        endpoint = run.http_url if protocol == "http" else run.grpc_endpoint
        emit(session, endpoint, protocol, metrics=False)
        run.flush()
        _assert_traces_match(run, truth, tool)
        # the events are kept as sent, and typed by session
        kept = run.query("SELECT count() FROM logs")[0][0]
        typed = run.query("SELECT count(), uniqExact(session_id) FROM agent_events FINAL")[0]
        assert kept == typed[0] > 0 and typed[1] == 1


def test_a_re_sent_session_is_counted_once(settings, store):
    session = realistic_session("codex", seed=2)
    truth = ground_truth(session)
    with running_collector(settings, store, pricer=prices()) as run:
        for _ in range(2):
            emit_events(session, run.http_url)
            run.flush()
        _assert_traces_match(run, truth, "codex")


@pytest.mark.parametrize("spans_first", [False, True], ids=["events-first", "spans-first"])
def test_claude_code_spans_and_events_count_each_request_once(settings, store, spans_first):
    """With the traces beta on, the tool's own spans are used; what only the events say (the
    compaction, the prompt's figures) joins them, and no request or tool use counts twice."""
    session = realistic_session("claude_code", seed=1)
    truth = ground_truth(session, spans=True)
    with running_collector(settings, store, pricer=prices()) as run:
        first, second = (emit_spans, emit_events) if spans_first else (emit_events, emit_spans)
        first(session, run.http_url)
        run.flush()
        second(session, run.http_url)
        run.flush()
        _assert_traces_match(run, truth, "claude_code", own_spans=True)
        # the traces are the tool's own: no trace written from events is left
        own = {
            r[0]
            for r in run.query(
                "SELECT DISTINCT trace_id FROM spans FINAL WHERE name = 'claude_code.interaction' AND attributes['tokentrail.source'] = ''"
            )
        }
        assert {t["trace_id"] for t in _traces(run)} == own
        added = run.query(
            "SELECT name, count() FROM spans FINAL WHERE attributes['tokentrail.source'] = 'events' GROUP BY name"
        )
        # only what the spans do not hold: the compaction, and what the events say of each prompt
        assert dict(added) == {
            "claude_code.compaction": 1,
            "claude_code.interaction events": len(truth.traces),
        }


def _findings(run: Running) -> list[dict[str, Any]]:
    rows = run.query(
        "SELECT t.start_time, f.rule, f.wasted_usd, f.evidence FROM waste_findings AS f "
        "JOIN traces AS t FINAL ON t.trace_id = f.trace_id "
        "WHERE (f.trace_id, f.analyzed_at) IN (SELECT trace_id, analyzed_at FROM trace_waste FINAL)"
    )
    starts = sorted({r[0] for r in rows} | {r[0] for r in run.query("SELECT start_time FROM traces FINAL")})
    return [
        {"trace": starts.index(r[0]), "rule": r[1], "usd": r[2], "evidence": json.loads(r[3])} for r in rows
    ]


@pytest.mark.parametrize(
    ("tool", "spans"),
    [("claude_code", False), ("claude_code", True), ("codex", False), ("gemini_cli", False)],
)
def test_the_ledger_finds_a_coding_sessions_waste(settings, store, tool, spans):
    session = realistic_session(tool, seed=1)
    truth = ground_truth(session, spans=spans)
    with running_collector(settings, store, pricer=prices()) as run:
        emit(session, run.http_url, spans=spans, metrics=False)
        run.flush()
        analyze_range(store.client, "default", 0, 2**62, prices(), workers=1)
        found = _findings(run)

        def where(rule: str) -> list[int]:
            return sorted(f["trace"] for f in found if f["rule"] == rule)

        # the same file read again with nothing changed in between
        assert where("duplicate.reread") == sorted({r.trace for r in truth.waste.repeated_calls})
        # the prompt cache gone cold after an idle gap beyond its lifetime
        assert where("cache_miss.expired") == sorted({m.trace for m in truth.waste.cache_misses})
        # every failed attempt that was tried again: one finding each, or one naming how many
        retried = sum(
            1 if f["rule"] == "retry.failed_call" else f["evidence"]["failed_attempts"]
            for f in found
            if f["rule"] in ("retry.failed_call", "retry.reported_attempts")
        )
        assert retried == len(truth.waste.retries) - len(truth.waste.gave_up)
        assert all(
            f["usd"] == 0 for f in found if f["rule"].startswith("retry.")
        )  # attempts that failed are not billed
        # a prompt that gave up is work with no outcome (unless the tool's own root says otherwise)
        if not spans:
            assert set(where("no_outcome.error")) == {t for t, _ in truth.waste.gave_up}
        else:  # the compaction's summarizing request is what the context's growth cost
            assert where("context_bloat.compaction") == [t for t, _ in truth.waste.compactions]
        # the buckets add up to each trace's cost
        for total, summed, cost in run.query(
            "SELECT w.total_usd, w.retry_usd + w.loop_usd + w.duplicate_usd + w.no_outcome_usd + w.context_bloat_usd "
            "+ w.cache_miss_usd + w.oversized_model_usd + w.productive_usd, t.cost_usd "
            "FROM trace_waste AS w FINAL JOIN traces AS t FINAL ON t.trace_id = w.trace_id"
        ):
            assert math.isclose(total, cost, rel_tol=1e-9) and math.isclose(summed, total, rel_tol=1e-9)


def test_an_outcome_recorded_for_a_session_judges_its_prompts(settings, store, capsys):
    session = realistic_session("gemini_cli", seed=3)
    with running_collector(settings, store, pricer=prices()) as run:
        emit(session, run.http_url, metrics=False)
        response = httpx.post(
            f"{run.http_url}/api/outcomes",
            json={"session_id": session.session_id, "name": "ci_passed", "success": True},
        )
        assert response.status_code == 202, response.text
        assert (
            cli(
                [
                    "outcome",
                    "pr_merged",
                    "--session",
                    session.session_id,
                    "--success",
                    "--value",
                    "417",
                    "--url",
                    run.http_url,
                ]
            )
            == 0
        )
        assert "recorded pr_merged" in capsys.readouterr().out
        run.flush()
        rows = run.query(
            "SELECT name, target_kind, target_id, success, value FROM outcomes FINAL ORDER BY name"
        )
        assert rows == [
            ("ci_passed", "conversation", session.session_id, 1, ""),
            ("pr_merged", "conversation", session.session_id, 1, "417"),
        ]


def test_a_refused_outcome_says_why(settings, store, capsys):
    with running_collector(settings, store) as run:
        code = cli(["outcome", "pr_merged", "--trace", "not-a-trace-id", "--url", run.http_url])
        assert code == 1
        assert "trace_id must be 32 hexadecimal characters" in capsys.readouterr().err


def _codex_spans(session: Any) -> tuple[list[Any], bytes, set[str]]:
    """Codex's events as a version that also traces sends them: each turn a `run_turn` trace whose
    `stream_request` spans carry the usage, and each response's completion logged inside its
    stream_request span. Returns the events, the spans (an OTLP request) and the turns' trace ids."""
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    for key, value in resource_of(session).items():
        resource.resource.attributes.add(key=key, value=AnyValue(string_value=str(value)))
    scope = resource.scope_spans.add()
    turns: list[list[Any]] = []
    out, traces = [], set()
    for event in events_of(session):
        if event.attributes.get("event.name") == "codex.user_prompt":
            turns.append([])
        if turns:
            turns[-1].append(event)
        else:
            out.append(event)  # the conversation's start: logged before any turn's span
    rng = random.Random(5)
    for turn in turns:
        trace, root = rng.getrandbits(128), rng.getrandbits(64)
        traces.add(f"{trace:032x}")
        scope.spans.add(
            trace_id=trace.to_bytes(16, "big"), span_id=root.to_bytes(8, "big"), name="run_turn",
            start_time_unix_nano=turn[0].ts_ns, end_time_unix_nano=turn[-1].ts_ns,
        )  # fmt: skip
        stream: int | None = None
        for event in turn:
            a = event.attributes
            if a.get("event.name") == "codex.api_request":
                stream = None
            if a.get("event.name") == "codex.sse_event" and a.get("event.kind") == "response.completed":
                if stream is None:
                    stream = rng.getrandbits(64)
                if "input_token_count" in a:
                    span = scope.spans.add(
                        trace_id=trace.to_bytes(16, "big"), span_id=stream.to_bytes(8, "big"),
                        parent_span_id=root.to_bytes(8, "big"), name="stream_request",
                        start_time_unix_nano=event.ts_ns - 1_000_000, end_time_unix_nano=event.ts_ns,
                    )  # fmt: skip
                    span.attributes.add(key="model", value=AnyValue(string_value=str(a["model"])))
                    for key, value in (
                        ("gen_ai.usage.input_tokens", a["input_token_count"]),
                        ("gen_ai.usage.cache_read.input_tokens", a.get("cached_token_count") or 0),
                        ("gen_ai.usage.output_tokens", a["output_token_count"]),
                        ("codex.usage.reasoning_output_tokens", a.get("reasoning_token_count") or 0),
                    ):
                        span.attributes.add(key=key, value=AnyValue(int_value=int(value)))
                event = dataclasses.replace(event, trace_id=trace, span_id=stream)
            out.append(event)
    return out, request.SerializeToString(), traces


@pytest.mark.parametrize("spans_first", [False, True], ids=["events-first", "spans-first"])
def test_codex_spans_and_events_count_each_response_once(settings, store, spans_first):
    """Codex's spans name no response: a response's completion, logged inside its stream_request
    span, is that span's model call, never a second one."""
    session = realistic_session("codex", seed=6)
    truth = ground_truth(session)
    logged, spans, traces = _codex_spans(session)
    with running_collector(settings, store, pricer=prices()) as run:
        send_events = lambda: export_logs(logged, resource_of(session), log_exporter(run.http_url, "http"))  # noqa: E731
        send_spans = lambda: httpx.post(  # noqa: E731
            f"{run.http_url}/v1/traces", content=spans, headers={"content-type": "application/x-protobuf"}
        ).raise_for_status()
        for send in (send_spans, send_events) if spans_first else (send_events, send_spans):
            send()
            run.flush()
        _assert_traces_match(run, truth, "codex", own_spans=True)
        assert {t["trace_id"] for t in _traces(run)} == traces
        added = run.query(
            "SELECT DISTINCT name FROM spans FINAL WHERE attributes['tokentrail.source'] = 'events' AND step_kind = 'llm' AND status_code != 'ERROR'"
        )
        assert added == []  # every answered request is the tool's own span


@pytest.mark.parametrize("tool", ["claude_code", "codex", "gemini_cli"])
def test_a_session_built_batch_by_batch_is_the_session_built_at_once(settings, store, tool):
    """A live session arrives a few events at a time, cut anywhere (mid-prompt, between a request
    and its answer): each batch rebuilds what it touched, and the end result is the same."""
    session = realistic_session(tool, seed=7)
    truth = ground_truth(session)
    logged = events_of(session)
    with running_collector(settings, store, pricer=prices()) as run:
        exporter = log_exporter(run.http_url, "http")
        for start in range(0, len(logged), 9):
            export_logs(logged[start : start + 9], resource_of(session), exporter)
            run.flush()
        _assert_traces_match(run, truth, tool)
        # nothing left over from a build that saw only part of a prompt
        assert run.query("SELECT count() FROM traces FINAL WHERE llm_calls = 0 AND tool_calls = 0") == [(0,)]
