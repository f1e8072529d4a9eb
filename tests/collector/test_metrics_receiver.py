"""OTLP metrics into a running collector: from the OpenTelemetry SDK over HTTP and gRPC, as JSON,
with bad points and bad bodies, and through the spool across a restart; asserted in ClickHouse."""

from __future__ import annotations

import gzip
import json
import struct
from itertools import accumulate

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from tests.support.collector import running_collector
from tests.support.meters import Temporality, Transport, sdk_meters
from tokentrail.collector.spool import KIND_LOGS, KIND_METRICS, KIND_TRACES, Spool

_RESOURCE = {"service.name": "claude-code", "team": "payments"}
_COMMITS = [2, 3, 1]  # added between exports
_TOKENS = [1200, 800, 400]  # recorded between exports


@pytest.mark.parametrize(
    ("transport", "temporality", "workers"),
    [
        ("http", "delta", 0),
        ("grpc", "cumulative", 0),
        ("http", "cumulative", 1),
    ],  # 1: a worker process flattens
)
def test_sdk_metrics_are_stored_one_row_per_point(
    settings, store, transport: Transport, temporality: Temporality, workers: int
):
    with running_collector(settings.with_(writer_workers=workers), store) as tt:
        meters = sdk_meters(tt, transport, temporality, _RESOURCE)
        for added, recorded in zip(_COMMITS, _TOKENS, strict=True):
            meters.add("claude_code.commit.count", added, user__email="ada@example.com")
            meters.record("codex.turn.token_usage", recorded, token_type="input", model="gpt-5")
            meters.export()
        meters.close()  # the last export repeats the cumulative points, and sends no delta ones
        tt.flush()
        rows = tt.query(
            "SELECT metric, kind, temporality, monotonic, value, count, service_name, attributes, "
            "resource_attributes['team'], scope_name FROM metric_points FINAL ORDER BY metric, time"
        )
        counts = tt.query(
            "SELECT metric, uniqExact(series), uniqExact(start_time) FROM metric_points GROUP BY metric"
        )
        stats = tt.collector.stats.snapshot()

    who, model = {"user.email": "ada@example.com"}, {"token_type": "input", "model": "gpt-5"}

    # what each export carries: the amounts since the last one (delta) or since the start (cumulative)
    def sent(amounts: list[int]) -> list[int]:
        return amounts if temporality == "delta" else [*accumulate(amounts), sum(amounts)]

    commits = [
        (
            "claude_code.commit.count",
            "sum",
            temporality,
            1,
            float(v),
            0,
            "claude-code",
            who,
            "payments",
            "agent",
        )
        for v in sent(_COMMITS)
    ]
    tokens = [
        (
            "codex.turn.token_usage",
            "histogram",
            temporality,
            0,
            float(v),
            n,
            "claude-code",
            model,
            "payments",
            "agent",
        )
        for v, n in zip(sent(_TOKENS), sent([1] * len(_TOKENS)), strict=True)
    ]
    assert rows == commits + tokens
    # one series per metric; a cumulative series keeps its start time, delta points each have their own
    starts = 1 if temporality == "cumulative" else len(_COMMITS)
    assert sorted(counts) == [("claude_code.commit.count", 1, starts), ("codex.turn.token_usage", 1, starts)]
    points = len(rows)
    assert stats["tokentrail_metrics_received_total"] == points
    assert stats["tokentrail_metrics_spooled_total"] == points
    assert stats["tokentrail_metrics_stored_total"] == points
    assert stats["tokentrail_metrics_rejected_total"] == 0


def _point(value: object = 5, time: str = "1700000000000000000", **extra: object) -> dict[str, object]:
    point: dict[str, object] = {
        "startTimeUnixNano": "1699999990000000000",
        "timeUnixNano": time,
        "attributes": [{"key": "user.email", "value": {"stringValue": "ada@example.com"}}],
        **extra,
    }
    if isinstance(value, int):
        point["asInt"] = str(value)
    elif value is not None:
        point["asDouble"] = value
    return point


def _sum(name: str, *points: dict[str, object], temporality: int = 2) -> dict[str, object]:
    return {
        "name": name,
        "unit": "{commit}",
        "sum": {"dataPoints": list(points), "aggregationTemporality": temporality, "isMonotonic": True},
    }


def _body(*metrics: dict[str, object]) -> dict[str, object]:
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": "gemini-cli"}}]}
    return {"resourceMetrics": [{"resource": resource, "scopeMetrics": [{"metrics": list(metrics)}]}]}


def test_json_points_of_every_kind_are_stored_and_bad_ones_rejected_one_by_one(settings, store):
    histogram = {
        "dataPoints": [
            {
                "timeUnixNano": "1700000000000000000",
                "count": "3",
                "sum": 42.5,
                "bucketCounts": ["1", "2"],
                "explicitBounds": [10],
            },
            {
                "timeUnixNano": "1700000000000000000",
                "count": "3",
                "sum": 1,
                "bucketCounts": ["1", "1", "1"],
                "explicitBounds": [10],
            },
        ],
        "aggregationTemporality": 1,
    }
    body = _body(
        _sum("claude_code.commit.count", _point(5), _point(7, time="0"), _point(1, time=str(2**63))),
        {
            "name": "gemini_cli.memory.usage",
            "gauge": {"dataPoints": [_point(1.5), _point("NaN"), _point(None)]},
        },
        {"name": "gemini_cli.api.request.latency", "histogram": histogram},
        {
            "name": "gemini_cli.exp",
            "exponentialHistogram": {
                "dataPoints": [{"timeUnixNano": "1700000000000000000", "count": "4", "sum": 9, "scale": 2}],
                "aggregationTemporality": 2,
            },
        },
        {
            "name": "gemini_cli.summary",
            "summary": {"dataPoints": [{"timeUnixNano": "1700000000000000000", "count": "2", "sum": 3.5}]},
        },
        _sum("gemini_cli.unspecified", _point(3), temporality=0),
        _sum("", _point(4)),
    )
    with running_collector(settings, store) as tt:
        r = httpx.post(
            f"{tt.http_url}/v1/metrics",
            content=gzip.compress(json.dumps(body).encode()),
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
        assert r.status_code == 200
        partial = r.json()["partialSuccess"]
        tt.flush()
        rows = tt.query(
            "SELECT metric, kind, temporality, value, count, toString(time) FROM metric_points FINAL ORDER BY metric"
        )
        stats = tt.collector.stats.snapshot()
    assert rows == [
        ("claude_code.commit.count", "sum", "cumulative", 5.0, 0, "2023-11-14 22:13:20.000000000"),
        ("gemini_cli.api.request.latency", "histogram", "delta", 42.5, 3, "2023-11-14 22:13:20.000000000"),
        ("gemini_cli.exp", "exponential_histogram", "cumulative", 9.0, 4, "2023-11-14 22:13:20.000000000"),
        ("gemini_cli.memory.usage", "gauge", "", 1.5, 0, "2023-11-14 22:13:20.000000000"),
        ("gemini_cli.summary", "summary", "cumulative", 3.5, 2, "2023-11-14 22:13:20.000000000"),
    ]
    rejected = 2 + 2 + 1 + 1 + 1
    assert partial["rejectedDataPoints"] == str(rejected)
    message = partial["errorMessage"]
    assert message.startswith(f"{rejected} data points rejected: ")
    assert "metric 'claude_code.commit.count': time_unix_nano is 0 (unset): a point needs its time" in message
    assert "(and " in message  # more kinds of problem than the message lists one by one
    assert stats["tokentrail_metrics_received_total"] == rejected + len(rows)
    assert stats["tokentrail_metrics_rejected_total"] == rejected


@pytest.mark.parametrize(
    ("metric", "reason"),
    [
        (
            _sum("c", _point(1, time=str(2**63))),
            "time_unix_nano 9223372036854775808 is after 2262-04-11T23:47:16Z",
        ),
        (
            _sum("c", _point(1, startTimeUnixNano="1700000000000000001")),
            "start_time_unix_nano 1700000000000000001 is after time_unix_nano",
        ),
        ({"name": "g", "gauge": {"dataPoints": [_point("Infinity")]}}, "value inf is not a finite number"),
        (
            {"name": "g", "gauge": {"dataPoints": [_point(None)]}},
            "the point has no value (as_int or as_double)",
        ),
        (
            _sum("c", _point(1), temporality=0),
            "aggregation_temporality is 0: a sum needs 1 (delta) or 2 (cumulative)",
        ),
        (_sum("", _point(1)), "the metric has no name"),
        (
            {
                "name": "h",
                "histogram": {
                    "dataPoints": [
                        {"timeUnixNano": "1", "count": "1", "bucketCounts": ["1"], "explicitBounds": [1, 2]}
                    ],
                    "aggregationTemporality": 1,
                },
            },
            "bucket_counts has 1 entries for 2 explicit_bounds: it needs 3",
        ),
        (
            {
                "name": "h",
                "histogram": {
                    "dataPoints": [{"timeUnixNano": "1", "count": "1", "sum": "-Infinity"}],
                    "aggregationTemporality": 2,
                },
            },
            "sum -inf is not a finite number",
        ),
    ],
)
def test_each_kind_of_bad_point_is_named_to_its_sender(settings, store, metric, reason):
    with running_collector(settings, store, writer=False) as tt:
        r = httpx.post(f"{tt.http_url}/v1/metrics", json=_body(metric))
    assert r.status_code == 200
    assert r.json()["partialSuccess"]["rejectedDataPoints"] == "1"
    assert reason in r.json()["partialSuccess"]["errorMessage"]


def test_bad_bodies_get_400_with_a_clear_message_and_nothing_else_is_lost(settings, store):
    good = _body(_sum("claude_code.pull_request.count", _point(1)))
    later = _body(_sum("claude_code.pull_request.count", _point(2, time="1700000060000000000")))
    with running_collector(settings.with_(max_body_bytes=64 * 1024), store) as tt:
        url = f"{tt.http_url}/v1/metrics"
        assert httpx.post(url, json=good).status_code == 200
        protobuf = {"content-type": "application/x-protobuf"}
        r = httpx.post(url, content=b"\xff\x00garbage", headers=protobuf)
        assert r.status_code == 400
        assert b"not a valid OTLP metrics protobuf" in r.content
        r = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
        assert (r.status_code, "not valid JSON" in r.json()["message"]) == (400, True)
        r = httpx.post(url, json=[1, 2])
        assert r.status_code == 400
        assert (
            r.json()["message"]
            == "body must be a JSON object with resourceSpans, resourceLogs or resourceMetrics"
        )
        r = httpx.post(url, json={"resourceMetrics": "many"})
        assert (r.status_code, "not a valid OTLP metrics JSON message" in r.json()["message"]) == (400, True)
        assert httpx.post(url, content=b"x" * (65 * 1024), headers=protobuf).status_code == 413
        r = httpx.post(
            url, content=b"{}", headers={"content-type": "application/json", "content-encoding": "br"}
        )
        assert r.status_code == 415
        with grpc.insecure_channel(tt.grpc_endpoint) as channel:
            export = channel.unary_unary("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export")
            with pytest.raises(grpc.RpcError) as err:
                export(b"\xff\x00garbage", timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid OTLP metrics protobuf" in (err.value.details() or "")
        assert httpx.post(url, json=later).status_code == 200
        tt.flush()
        assert tt.query("SELECT value FROM metric_points FINAL ORDER BY time") == [(1.0,), (2.0,)]
        stats = tt.collector.stats.snapshot()
    assert stats["tokentrail_metrics_stored_total"] == 2
    # the four 400s, the 413 and the gRPC refusal (a 415 is answered before the body is looked at)
    assert stats["tokentrail_requests_invalid_total"] == 6


def test_grpc_partial_success_counts_rejected_data_points(settings, store):
    request = ExportMetricsServiceRequest()
    metric = request.resource_metrics.add().scope_metrics.add().metrics.add()
    metric.name = "claude_code.session.count"
    metric.sum.aggregation_temporality = AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    metric.sum.is_monotonic = True
    for time in (1_700_000_000_000_000_000, 0):
        point = metric.sum.data_points.add()
        point.time_unix_nano, point.as_int = time, 1
    with running_collector(settings, store) as tt, grpc.insecure_channel(tt.grpc_endpoint) as channel:
        export = channel.unary_unary("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export")
        reply = ExportMetricsServiceResponse.FromString(export(request.SerializeToString(), timeout=10))
        tt.flush()
        assert tt.query("SELECT count() FROM metric_points FINAL") == [(1,)]
    assert reply.partial_success.rejected_data_points == 1
    assert "time_unix_nano is 0" in reply.partial_success.error_message


def test_acknowledged_metrics_are_written_after_a_restart(settings, store):
    with running_collector(settings, store, writer=False) as tt:
        meters = sdk_meters(tt, "grpc", "delta", _RESOURCE)
        for commits in _COMMITS:
            meters.add("claude_code.commit.count", commits, user__email="ada@example.com")
            meters.export()
        meters.close()
        assert tt.collector.stats.snapshot()["tokentrail_metrics_spooled_total"] == len(_COMMITS)
    assert tt.query("SELECT count() FROM metric_points") == [(0,)]  # acknowledged, not written yet
    with running_collector(settings, store) as again:  # the same spool directory
        again.flush()
        assert again.query("SELECT sum(value), count() FROM metric_points FINAL") == [
            (float(sum(_COMMITS)), len(_COMMITS))
        ]


def test_a_metrics_record_after_a_damaged_one_is_found_again(tmp_path):
    """After a record whose length was damaged, reading looks for the next record by its kind byte:
    a metrics record must be found like the others."""
    spool = Spool(tmp_path)
    spool.append(KIND_TRACES, "p", b"spans " * 30)
    damaged = spool.append(KIND_LOGS, "p", b"logs " * 30)
    spool.append(KIND_METRICS, "p", b"points " * 30)
    spool.append(KIND_LOGS, "p", b"more logs")
    spool.close()
    segment = next(tmp_path.glob("*.seg"))
    data = bytearray(segment.read_bytes())
    record = next(r for r in _records(bytes(data)) if r[1] == damaged.offset)
    struct.pack_into("<I", data, record[0], 1 << 30)  # a length far past the end of the segment
    segment.write_bytes(bytes(data))
    spool = Spool(tmp_path)
    assert [(r.kind, r.payload[:6]) for r in spool.read()] == [
        (KIND_TRACES, b"spans "),
        (KIND_METRICS, b"points"),
        (KIND_LOGS, b"more l"),
    ]
    assert spool.quarantined == 1
    spool.close()


def _records(segment: bytes) -> list[tuple[int, int]]:
    """(start, end) of each record of a segment."""
    found, at = [], 0
    while at < len(segment):
        end = at + 8 + struct.unpack_from("<I", segment, at)[0]
        found.append((at, end))
        at = end
    return found
