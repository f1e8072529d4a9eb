"""Stand-ins for Claude Code, OpenAI Codex CLI and Gemini CLI: each turns a scenario (`Session`)
into exactly the OpenTelemetry log events, metrics and (Claude Code traces beta) spans that tool
sends, and exports them through the real OpenTelemetry Python SDK and OTLP exporters. The ground
truth (`ground_truth`) says, from the scenario alone, what a correct backend must show.

    session = realistic_session("claude_code", seed=1)
    emit(session, tt.http_url, spans=True)               # events, spans, metrics; flushed
    emit_spans(session, tt.grpc_endpoint, "grpc")        # the spans again: a re-sent batch
    expected = ground_truth(session, spans=True)

`endpoint` is the collector's base URL for "http" (`http://127.0.0.1:4318`; /v1/logs etc. are
appended) and host:port for "grpc". Each `emit_*` can also take an SDK exporter instead (an
InMemoryLogExporter, InMemorySpanExporter or any MetricExporter), so a test can see the records.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.metrics.export import MetricExporter, MetricsData
from opentelemetry.sdk.trace.export import SpanExporter

from tests.support.coding_agents import claude_code, codex, gemini_cli
from tests.support.coding_agents.builders import (
    DAY_REQUESTS,
    DAY_TOOL_CALLS,
    day_long_session,
    realistic_session,
)
from tests.support.coding_agents.otel import (
    LogEvent,
    Measurement,
    MetricPlan,
    Protocol,
    SpanRecord,
    export_logs,
    export_metrics,
    export_spans,
    log_exporter,
    metric_exporter,
    read_metrics,
    span_exporter,
)
from tests.support.coding_agents.scenario import (
    TOOLS,
    Compaction,
    FailedAttempt,
    ModelRequest,
    Prompt,
    Session,
    Subagent,
    Tool,
    ToolUse,
)
from tests.support.coding_agents.truth import SessionTruth, ground_truth

__all__ = [
    "DAY_REQUESTS",
    "DAY_TOOL_CALLS",
    "TOOLS",
    "Compaction",
    "Emitted",
    "FailedAttempt",
    "ModelRequest",
    "Prompt",
    "Session",
    "SessionTruth",
    "Subagent",
    "Tool",
    "ToolUse",
    "day_long_session",
    "emit",
    "emit_events",
    "emit_metrics",
    "emit_spans",
    "events",
    "ground_truth",
    "measurements",
    "metrics_data",
    "realistic_session",
    "resource",
    "spans",
]


@dataclass(frozen=True)
class _Emulator:
    resource: Callable[[Session], dict[str, Any]]
    events: Callable[..., list[LogEvent]]
    measurements: Callable[[Session], list[Measurement]]
    metrics: MetricPlan
    spans: Callable[[Session], list[SpanRecord]] | None = None


_EMULATORS: dict[str, _Emulator] = {
    "claude_code": _Emulator(
        claude_code.resource,
        claude_code.events,
        claude_code.measurements,
        claude_code.METRICS,
        claude_code.spans,
    ),
    "codex": _Emulator(codex.resource, codex.events, codex.measurements, codex.METRICS),
    "gemini_cli": _Emulator(
        gemini_cli.resource, gemini_cli.events, gemini_cli.measurements, gemini_cli.METRICS
    ),
}


@dataclass(frozen=True)
class Emitted:
    """What one `emit` sent: log records, spans and metric data points."""

    events: int
    spans: int
    metric_points: int


def resource(session: Session) -> dict[str, Any]:
    """The OTLP resource the tool sends (service.name, version, OTEL_RESOURCE_ATTRIBUTES keys)."""
    return _EMULATORS[session.tool].resource(session)


def events(session: Session, *, trace_context: bool = False) -> list[LogEvent]:
    """The tool's log events for the session, in emission order, before they meet the SDK."""
    return _EMULATORS[session.tool].events(session, trace_context=trace_context)


def spans(session: Session) -> list[SpanRecord]:
    """Claude Code's traces-beta spans (the other tools send none here)."""
    make = _EMULATORS[session.tool].spans
    return make(session) if make is not None else []


def measurements(session: Session) -> list[Measurement]:
    return _EMULATORS[session.tool].measurements(session)


def metrics_data(session: Session) -> list[MetricsData]:
    """The session's metrics as the tool's periodic reader would export them, one MetricsData per
    simulated export interval with activity, read through the SDK's InMemoryMetricReader."""
    emulator = _EMULATORS[session.tool]
    return read_metrics(
        emulator.measurements(session), emulator.resource(session), emulator.metrics, session.start_ns
    )


def emit_events(
    session: Session,
    endpoint: str | None = None,
    protocol: Protocol = "http",
    *,
    exporter: LogRecordExporter | None = None,
    trace_context: bool = False,
) -> int:
    """Send the session's log events (a LoggerProvider and batch processor, flushed); returns how
    many. `trace_context`: Claude Code with traces beta on, each event carries its span's ids."""
    records = events(session, trace_context=trace_context)
    return _send(exporter, lambda: log_exporter(_required(endpoint), protocol), export_logs, records, session)


def emit_spans(
    session: Session,
    endpoint: str | None = None,
    protocol: Protocol = "http",
    *,
    exporter: SpanExporter | None = None,
) -> int:
    """Send Claude Code's spans (a TracerProvider and batch processor, flushed); returns how many."""
    records = spans(session)
    if not records:
        return 0
    return _send(
        exporter, lambda: span_exporter(_required(endpoint), protocol), export_spans, records, session
    )


def emit_metrics(
    session: Session,
    endpoint: str | None = None,
    protocol: Protocol = "http",
    *,
    exporter: MetricExporter | None = None,
) -> int:
    """Send the session's metrics, one export per simulated interval; returns the data points."""
    return _send(
        exporter,
        lambda: metric_exporter(_required(endpoint), protocol),
        lambda batches, _, target: export_metrics(batches, target),
        metrics_data(session),
        session,
    )


def emit(
    session: Session,
    endpoint: str,
    protocol: Protocol = "http",
    *,
    spans: bool = False,
    metrics: bool = True,
) -> Emitted:
    """Send everything the tool sends for the session: its events, then (Claude Code with traces
    beta) its spans, then its metrics. With `spans`, events carry their span context."""
    sent_events = emit_events(session, endpoint, protocol, trace_context=spans)
    sent_spans = emit_spans(session, endpoint, protocol) if spans else 0
    points = emit_metrics(session, endpoint, protocol) if metrics else 0
    return Emitted(sent_events, sent_spans, points)


def _send(
    given: Any, make: Callable[[], Any], send: Callable[[Any, Any, Any], int], records: Any, session: Session
) -> int:
    """Send records with the caller's exporter, or with an OTLP exporter made and shut down here."""
    target = given or make()
    try:
        return send(records, resource(session), target)
    finally:
        if given is None:
            target.shutdown()


def _required(endpoint: str | None) -> str:
    if not endpoint:
        raise ValueError("an endpoint or an exporter is needed")
    return endpoint
