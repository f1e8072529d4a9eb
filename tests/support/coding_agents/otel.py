"""Sending a tool's records through the real OpenTelemetry Python SDK and its OTLP exporters.

Each emitter describes its records as plain values (`LogEvent`, `SpanRecord`, `Measurement`);
this module turns them into SDK log records, spans and metric points at their simulated times
and exports them. Ids and timestamps come from the scenario, so sending a session twice sends
the same records (a re-sent batch). Metrics are read with the SDK's in-memory reader once per
simulated export interval in which something was measured (idle intervals are not exported:
a delta interval would be empty and a cumulative one would repeat the last values), and each
point is stamped with its interval, as the tool's periodic reader would have done.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, UpDownCounter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

Protocol = Literal["http", "grpc"]
Temporality = Literal["delta", "cumulative"]


@dataclass(frozen=True)
class LogEvent:
    """One OTLP log record (an "event") as a tool sends it."""

    ts_ns: int
    attributes: dict[str, Any]
    body: str | None = None
    scope: str = ""
    event_name: str | None = None  # the log record's own event_name field, when the tool sets it
    severity: SeverityNumber | None = None
    severity_text: str | None = None
    trace_id: int = 0  # the span the record was emitted in, when it was
    span_id: int = 0


@dataclass(frozen=True)
class SpanEventRecord:
    name: str
    ts_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SpanRecord:
    name: str
    trace_id: int
    span_id: int
    parent_span_id: int  # 0 for a root span
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: tuple[SpanEventRecord, ...] = ()
    error: str | None = None  # status ERROR with this description
    scope: str = ""


@dataclass(frozen=True)
class Instrument:
    name: str
    kind: Literal["counter", "histogram"]
    unit: str = ""
    description: str = ""


@dataclass(frozen=True)
class Measurement:
    ts_ns: int
    instrument: Instrument
    value: int | float
    attributes: dict[str, Any]


@dataclass(frozen=True)
class MetricPlan:
    """How a tool reads its metrics: meter scope, temporality and export interval."""

    scope: str
    temporality: Temporality
    interval_ms: int


def _context(trace_id: int, span_id: int) -> Context | None:
    if not trace_id or not span_id:
        return None
    parent = SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(parent))


class _Borrowed(LogRecordExporter, SpanExporter):
    """A caller's exporter, lent to a provider that must not shut it down. It remembers failed
    exports: a batch processor only logs them, and a lost batch must fail the sender."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.failures: list[str] = []

    def export(self, batch: Any) -> Any:
        result = self.inner.export(batch)
        if result not in (LogRecordExportResult.SUCCESS, SpanExportResult.SUCCESS):
            self.failures.append(f"{len(batch)} records: {result}")
        return result

    def raise_failures(self) -> None:
        if self.failures:
            raise RuntimeError("OTLP export failed: " + "; ".join(self.failures))

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _queue(count: int) -> int:
    """A batch processor queue that holds every record: the SDK drops what does not fit."""
    return max(2_048, count + 1)


def export_logs(events: Sequence[LogEvent], resource: dict[str, Any], exporter: LogRecordExporter) -> int:
    """Emit the events through a LoggerProvider with a batch processor; returns how many."""
    provider = LoggerProvider(resource=Resource(resource))
    borrowed = _Borrowed(exporter)
    processor = BatchLogRecordProcessor(
        borrowed, schedule_delay_millis=60_000, max_export_batch_size=512, max_queue_size=_queue(len(events))
    )
    provider.add_log_record_processor(processor)
    loggers: dict[str, Any] = {}
    for event in events:
        logger = loggers.get(event.scope)
        if logger is None:
            logger = loggers[event.scope] = provider.get_logger(event.scope)
        logger.emit(
            timestamp=event.ts_ns,
            observed_timestamp=event.ts_ns,
            context=_context(event.trace_id, event.span_id) or Context(),
            severity_number=event.severity,
            severity_text=event.severity_text,
            body=event.body,
            attributes=event.attributes,
            event_name=event.event_name,
        )
    provider.force_flush()
    provider.shutdown()
    borrowed.raise_failures()
    return len(events)


class _ScriptedIds(IdGenerator):
    """Hands out the ids the next span must have (the scenario's, not random ones)."""

    def __init__(self) -> None:
        self.trace_id = 0
        self.span_id = 0

    def generate_span_id(self) -> int:
        return self.span_id

    def generate_trace_id(self) -> int:
        return self.trace_id


def export_spans(spans: Sequence[SpanRecord], resource: dict[str, Any], exporter: SpanExporter) -> int:
    """Start and end each span at its simulated times, with the scenario's ids and parents."""
    ids = _ScriptedIds()
    provider = TracerProvider(resource=Resource(resource), id_generator=ids)
    borrowed = _Borrowed(exporter)
    provider.add_span_processor(
        BatchSpanProcessor(
            borrowed,
            max_queue_size=_queue(len(spans)),
            schedule_delay_millis=60_000,
            max_export_batch_size=512,
        )
    )
    tracers: dict[str, Any] = {}
    for record in spans:
        tracer = tracers.get(record.scope)
        if tracer is None:
            tracer = tracers[record.scope] = provider.get_tracer(record.scope)
        ids.trace_id, ids.span_id = record.trace_id, record.span_id
        span = tracer.start_span(
            record.name,
            context=_context(record.trace_id, record.parent_span_id) or Context(),
            kind=SpanKind.INTERNAL,
            attributes=record.attributes,
            start_time=record.start_ns,
        )
        for event in record.events:
            span.add_event(event.name, event.attributes, timestamp=event.ts_ns)
        if record.error is not None:
            span.set_status(Status(StatusCode.ERROR, record.error))
        span.end(end_time=record.end_ns)
    provider.force_flush()
    provider.shutdown()
    borrowed.raise_failures()
    return len(spans)


def _temporality(temporality: Temporality) -> dict[type, AggregationTemporality]:
    value = AggregationTemporality.DELTA if temporality == "delta" else AggregationTemporality.CUMULATIVE
    return {Counter: value, Histogram: value, UpDownCounter: AggregationTemporality.CUMULATIVE}


def _retimed(data: MetricsData, start_ns: int, end_ns: int) -> MetricsData:
    """The same points, stamped with the simulated interval instead of the wall clock."""

    def metric(m: Metric) -> Metric:
        points: Any = m.data
        stamped = [
            replace(p, start_time_unix_nano=start_ns, time_unix_nano=end_ns) for p in points.data_points
        ]
        return replace(m, data=replace(points, data_points=stamped))

    return replace(
        data,
        resource_metrics=[
            replace(
                rm,
                scope_metrics=[
                    replace(sm, metrics=[metric(m) for m in sm.metrics]) for sm in rm.scope_metrics
                ],
            )
            for rm in data.resource_metrics
        ],
    )


def read_metrics(
    measurements: Iterable[Measurement], resource: dict[str, Any], plan: MetricPlan, start_ns: int
) -> list[MetricsData]:
    """Record the measurements with a MeterProvider and read them once per simulated interval."""
    reader = InMemoryMetricReader(preferred_temporality=_temporality(plan.temporality))
    provider = MeterProvider(resource=Resource(resource), metric_readers=[reader])
    meter = provider.get_meter(plan.scope)
    instruments: dict[str, Any] = {}
    interval = plan.interval_ms * 1_000_000
    batches: list[MetricsData] = []
    window: int | None = None

    def read(index: int) -> None:
        data = reader.get_metrics_data()
        if data is None or not data.resource_metrics:
            return
        begin = start_ns + index * interval
        first = begin if plan.temporality == "delta" else start_ns
        batches.append(_retimed(data, first, begin + interval))

    for m in sorted(measurements, key=lambda m: m.ts_ns):
        index = max(0, (m.ts_ns - start_ns) // interval)
        if window is not None and index != window:
            read(window)
        window = index
        instrument: Any = instruments.get(m.instrument.name)
        if instrument is None:
            create = meter.create_counter if m.instrument.kind == "counter" else meter.create_histogram
            instrument = instruments[m.instrument.name] = create(
                m.instrument.name, unit=m.instrument.unit, description=m.instrument.description
            )
        if m.instrument.kind == "counter":
            instrument.add(m.value, m.attributes)
        else:
            instrument.record(m.value, m.attributes)
    if window is not None:
        read(window)
    provider.shutdown()
    return batches


def export_metrics(batches: Sequence[MetricsData], exporter: MetricExporter) -> int:
    """Export each interval's points; returns how many data points were sent."""
    points = 0
    for data in batches:
        result = exporter.export(data)
        if result is not MetricExportResult.SUCCESS:
            raise RuntimeError(f"metric export failed: {result}")
        points += count_points(data)
    return points


def count_points(data: MetricsData) -> int:
    return sum(
        len(m.data.data_points) for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    )


def _grpc_target(endpoint: str) -> str:
    return endpoint.split("://", 1)[-1].rstrip("/")


def _http_url(endpoint: str, signal: str) -> str:
    return f"{endpoint.rstrip('/')}/v1/{signal}"


def log_exporter(endpoint: str, protocol: Protocol) -> LogRecordExporter:
    """An OTLP log exporter: `endpoint` is the base URL (http) or host:port (grpc)."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs

        return GrpcLogs(endpoint=_grpc_target(endpoint), insecure=True)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs

    return HttpLogs(endpoint=_http_url(endpoint, "logs"))


def span_exporter(endpoint: str, protocol: Protocol) -> SpanExporter:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans

        return GrpcSpans(endpoint=_grpc_target(endpoint), insecure=True)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans

    return HttpSpans(endpoint=_http_url(endpoint, "traces"))


def metric_exporter(endpoint: str, protocol: Protocol) -> MetricExporter:
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics

        return GrpcMetrics(endpoint=_grpc_target(endpoint), insecure=True)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetrics

    return HttpMetrics(endpoint=_http_url(endpoint, "metrics"))
