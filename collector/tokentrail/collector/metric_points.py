"""Turn decoded OTLP metrics requests into rows of `metric_points`: one row per data point.

Every kind of point is kept, as sent: a sum's or a gauge's value; a histogram's, an exponential
histogram's or a summary's sum (`value`, 0 when the sender left it out) and count. A cumulative
point stays cumulative here: readers (`tokentrail.store.usage_metrics`) take the increments.

`series` names one time series: a stable 64-bit hash of the metric's name, its scope's name, its
resource's attributes and the point's attributes (the scope too, so that two libraries reporting
a metric of the same name never share a series). The table keeps one row per (series, start
time, time), so a batch sent again replaces its rows.

Rows go to ClickHouse as JSONCompactEachRow, like log rows: metrics come a few points a minute
per process, not thousands of spans a second.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric

from tokentrail.collector.flatten import attributes, ts
from tokentrail.collector.redact import OFF, Redactor, tally

__all__ = ["METRIC_COLUMNS", "MetricBatch", "series_hash"]

#: the columns of a row, in the order `MetricBatch.rows` holds them
METRIC_COLUMNS = (
    "project",
    "metric",
    "kind",
    "unit",
    "temporality",
    "monotonic",
    "start_time",
    "time",
    "value",
    "count",
    "service_name",
    "scope_name",
    "resource_attributes",
    "attributes",
    "series",
)

_TEMPORALITY = {1: "delta", 2: "cumulative"}


def series_hash(metric: str, scope: str, resource: dict[str, str], point: dict[str, str]) -> int:
    """The series of a point: the same name, scope and attributes always give the same number."""
    text = json.dumps(
        [metric, scope, sorted(resource.items()), sorted(point.items())],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _points(metric: Metric) -> Iterable[tuple[Any, str, int, float, int]]:
    """(point, temporality, monotonic, value, count) of each data point of a metric."""
    point: Any
    kind = metric.WhichOneof("data")
    if kind == "gauge":
        for point in metric.gauge.data_points:
            yield point, "", 0, _number(point), 0
    elif kind == "sum":
        data = metric.sum
        temporality = _TEMPORALITY.get(data.aggregation_temporality, "")
        monotonic = 1 if data.is_monotonic else 0
        for point in data.data_points:
            yield point, temporality, monotonic, _number(point), 0
    elif kind in ("histogram", "exponential_histogram"):
        histogram = getattr(metric, kind)
        temporality = _TEMPORALITY.get(histogram.aggregation_temporality, "")
        for point in histogram.data_points:
            yield point, temporality, 0, point.sum, point.count
    elif kind == "summary":
        # a summary's count and sum are cumulative (OTLP: it has no temporality of its own)
        for point in metric.summary.data_points:
            yield point, "cumulative", 0, point.sum, point.count


def _number(point: Any) -> float:
    return float(point.as_int if point.WhichOneof("value") == "as_int" else point.as_double)


class MetricBatch:
    """Rows of `metric_points`, in the order of METRIC_COLUMNS."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        self.rows: list[list[Any]] = []
        self.redactor = redactor
        #: values redacted, by (project, rule)
        self.redactions: Counter[tuple[str, str]] = Counter()

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, project: str, request: ExportMetricsServiceRequest) -> int:
        """Add every data point of a request; returns how many. Attributes are redacted before
        the service and the series are read from them."""
        scan = OFF if self.redactor is None else self.redactor.scan()
        rows: list[list[Any]] = []
        for resource_metrics in request.resource_metrics:
            res_values, res_texts = attributes(resource_metrics.resource.attributes)
            scan.pair(res_values, res_texts)
            for scope_metrics in resource_metrics.scope_metrics:
                scope = scope_metrics.scope.name
                for metric in scope_metrics.metrics:
                    kind = metric.WhichOneof("data") or ""
                    for point, temporality, monotonic, value, count in _points(metric):
                        values, texts = attributes(point.attributes)
                        scan.pair(values, texts)
                        rows.append(
                            [
                                project,
                                metric.name,
                                kind,
                                metric.unit,
                                temporality,
                                monotonic,
                                ts(point.start_time_unix_nano),
                                ts(point.time_unix_nano),
                                value,
                                count,
                                "",  # the service, once redacted
                                scope,
                                res_texts,
                                texts,
                                0,  # the series, likewise
                            ]
                        )
        tally(self.redactions, project, scan.run())
        for row in rows:
            metric_name, scope, res_texts, texts = row[1], row[11], row[12], row[13]
            row[10] = res_texts.get("service.name", "unknown_service")
            row[14] = series_hash(metric_name, scope, res_texts, texts)
        self.rows += rows
        return len(rows)
