"""The collector's own metrics: served on /metrics, and read by /api/status and `tokentrail status`.

Each collector keeps them in a `prometheus_client` registry of its own (not the library's global
one), so several collectors in one process (tests) count apart. Three kinds:

- counters the collector increments (`add`): items (spans, log records, metric data points)
  received, spooled, stored, rejected, refused and invalid requests, write errors, dead-lettered
  records; and values redacted at ingest, by project and rule (`count_redactions`);
- readings taken when asked (`gauge`, `counter`): values another object keeps, such as the spool's
  backlog and error count, or whether the writer is stalled; a reading that fails shows as NaN;
- histograms: how long an OTLP export request takes to answer, by protocol (http, grpc) and signal
  (traces, logs, metrics), and how long a batch's insert into ClickHouse takes.

`snapshot` is the counters and readings by name (what /api/status shows; a counter with labels as
its total over them, `redactions` has it by label); /metrics is the library's exposition of the
whole registry, in the format the scraper asks for.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["Stats"]

_COUNTERS = {
    "tokentrail_spans_received_total": "Spans received in OTLP requests (accepted or rejected).",
    "tokentrail_spans_rejected_total": "Spans rejected for invalid ids or undecodable requests.",
    "tokentrail_spans_spooled_total": "Spans written durably to the spool and acknowledged.",
    "tokentrail_spans_stored_total": "Spans inserted into ClickHouse.",
    "tokentrail_logs_received_total": "Log records received.",
    "tokentrail_logs_rejected_total": "Log records rejected.",
    "tokentrail_logs_spooled_total": "Log records written durably to the spool and acknowledged.",
    "tokentrail_logs_stored_total": "Log records inserted into ClickHouse.",
    "tokentrail_metrics_received_total": "Metric data points received (accepted or rejected).",
    "tokentrail_metrics_rejected_total": "Metric data points rejected.",
    "tokentrail_metrics_spooled_total": "Metric data points written durably to the spool and acknowledged.",
    "tokentrail_metrics_stored_total": "Metric data points inserted into ClickHouse.",
    "tokentrail_requests_refused_total": "Requests answered 503/UNAVAILABLE: the spool was full or could not write.",
    "tokentrail_requests_invalid_total": "Requests answered 4xx/INVALID_ARGUMENT.",
    "tokentrail_write_errors_total": "Failed writes to ClickHouse (retried, or the record set aside).",
    "tokentrail_records_dead_lettered_total": "Spool records that flattening or ClickHouse refused on their own, "
    "kept in spool/dead.",
}
# An export request is answered within the body deadline (30 s by default); most take milliseconds
# (decode, one shared fsync). An insert takes longer, and much longer when ClickHouse is busy.
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_WRITE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _shown(value: float) -> float | None:
    """A value as /api/status shows it: a count as the whole number it is, and a reading that
    failed (NaN on /metrics) as null, which JSON can carry."""
    if math.isnan(value):
        return None
    return int(value) if value.is_integer() else value


class _Readings(Collector):
    """Values read when the registry is collected: (kind, help, read) by name."""

    def __init__(self) -> None:
        self.read: dict[str, tuple[str, str, Callable[[], float]]] = {}

    def collect(self) -> Iterator[Metric]:
        for name, (kind, help_text, read) in list(self.read.items()):
            try:
                value = float(read())
            except Exception:
                value = math.nan
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, help_text, value=value)


class Stats:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._counters = {
            name: Counter(name, text, registry=self.registry) for name, text in _COUNTERS.items()
        }
        self._readings = _Readings()
        self.registry.register(self._readings)
        self._requests = Histogram(
            "tokentrail_request_duration_seconds",
            "Time to answer an OTLP export request, from its arrival to the answer.",
            ("protocol", "signal"),
            registry=self.registry,
            buckets=_REQUEST_BUCKETS,
        )
        for protocol in ("http", "grpc"):
            for signal in ("traces", "logs", "metrics"):
                self._requests.labels(protocol, signal)  # shown from the start, at zero
        self._redactions = Counter(
            "tokentrail_redactions_total",
            "Values redacted at ingest before they were stored, by project and rule.",
            ("project", "rule"),
            registry=self.registry,
        )
        self._writes = Histogram(
            "tokentrail_write_duration_seconds",
            "Time to insert one batch into ClickHouse (inserts that succeeded).",
            registry=self.registry,
            buckets=_WRITE_BUCKETS,
        )

    def add(self, name: str, value: int = 1) -> None:
        self._counters[name].inc(value)

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A value read when asked."""
        self._readings.read[name] = ("gauge", help_text, read)

    def counter(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A counter kept elsewhere (read when asked); its name ends in `_total`."""
        if not name.endswith("_total"):
            raise ValueError(f"a counter's name ends in _total: {name}")
        self._readings.read[name] = ("counter", help_text, read)

    def request_timer(self, protocol: str, signal: str) -> Histogram:
        """The histogram of one receiver's requests: `with timer.time(): ...` observes one."""
        return self._requests.labels(protocol, signal)

    def count_redactions(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Values redacted in a stored batch, by (project, rule)."""
        for (project, rule), n in counts.items():
            self._redactions.labels(project, rule).inc(n)

    def redactions(self) -> list[dict[str, Any]]:
        """What was redacted, by project and rule: `[{"project", "rule", "count"}]`, the most first."""
        found = [
            {"project": s.labels["project"], "rule": s.labels["rule"], "count": int(s.value)}
            for family in self._redactions.collect()
            for s in family.samples
            if s.name == "tokentrail_redactions_total"
        ]
        return sorted(found, key=lambda r: (-r["count"], r["project"], r["rule"]))

    def observe_write(self, seconds: float) -> None:
        self._writes.observe(seconds)

    def snapshot(self) -> dict[str, float | None]:
        """Counters (whole numbers) and readings, by name: what /api/status shows."""
        values: dict[str, float | None] = {}
        for family in self.registry.collect():
            if family.type == "counter":
                name = family.name + "_total"  # not its `_created` time
                counts = [s.value for s in family.samples if s.name == name]
                values[name] = _shown(math.fsum(counts))  # a counter with labels: its total
            elif family.type == "gauge":
                values |= {s.name: _shown(s.value) for s in family.samples if s.name == family.name}
        return values

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """/metrics: the registry in the format `accept` asks for (Prometheus text by default), and
        its content type."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type

    def prometheus(self) -> str:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry).decode()
