"""Metrics sent the way coding agents send them: the OpenTelemetry SDK's `MeterProvider` with its
OTLP exporter (over HTTP or gRPC, delta or cumulative), exporting when the test says so."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, ObservableCounter, UpDownCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from tests.support.collector import Running

Transport = Literal["http", "grpc"]
Temporality = Literal["delta", "cumulative"]


@dataclass
class Meters:
    """One process's meters: `add` to a counter, `record` into a histogram, `export` what was
    measured (one OTLP request), `close` (a last export). Attribute names are given with `__`
    for `.` (`user__email=...`)."""

    provider: MeterProvider
    _instruments: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, amount: float, unit: str = "", **attributes: str) -> None:
        if name not in self._instruments:
            self._instruments[name] = self.provider.get_meter("agent").create_counter(name, unit=unit)
        self._instruments[name].add(amount, _dotted(attributes))

    def record(self, name: str, amount: float, unit: str = "", **attributes: str) -> None:
        if name not in self._instruments:
            self._instruments[name] = self.provider.get_meter("agent").create_histogram(name, unit=unit)
        self._instruments[name].record(amount, _dotted(attributes))

    def export(self) -> None:
        assert self.provider.force_flush(timeout_millis=10_000)

    def close(self) -> None:
        self.provider.shutdown()


def _dotted(attributes: dict[str, str]) -> dict[str, str]:
    return {key.replace("__", "."): value for key, value in attributes.items()}


def sdk_meters(
    tt: Running, transport: Transport, temporality: Temporality, resource: dict[str, str]
) -> Meters:
    """Meters exporting to the running collector `tt` (only when `export` or `close` is called)."""
    chosen = AggregationTemporality.DELTA if temporality == "delta" else AggregationTemporality.CUMULATIVE
    preferred: dict[type, AggregationTemporality] = {
        kind: chosen for kind in (Counter, Histogram, ObservableCounter, UpDownCounter)
    }
    exporter: HttpMetricExporter | GrpcMetricExporter
    if transport == "http":
        exporter = HttpMetricExporter(endpoint=f"{tt.http_url}/v1/metrics", preferred_temporality=preferred)
    else:
        exporter = GrpcMetricExporter(
            endpoint=tt.grpc_endpoint, insecure=True, preferred_temporality=preferred
        )
    # an interval of an hour: nothing is exported but what the test asks for
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    return Meters(MeterProvider(metric_readers=[reader], resource=Resource.create(resource)))
