"""/metrics of a running collector, scraped after real OTLP exports and parsed the way Prometheus
reads it; /api/status shows the same values."""

from __future__ import annotations

import math

import httpx
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter

from tests.support.collector import Running, running_collector, scrape

_REQUESTS = "tokentrail_request_duration_seconds_count"
_WRITES = "tokentrail_write_duration_seconds_count"


def _send_spans(exporter: SpanExporter, count: int) -> None:
    """`count` spans, each exported on its own (one request a span)."""
    provider = TracerProvider(resource=Resource.create({"service.name": "metrics-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("metrics-test")
    for n in range(count):
        tracer.start_span(f"chat {n}", attributes={"gen_ai.operation.name": "chat"}).end()
    provider.shutdown()


def _send_log(exporter: HttpLogExporter | GrpcLogExporter) -> None:
    provider = LoggerProvider(resource=Resource.create({"service.name": "metrics-test"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    provider.get_logger("metrics-test").emit(body="api_request", attributes={"event.name": "api_request"})
    provider.shutdown()


def _send_everything(tt: Running) -> None:
    """3 spans over HTTP and 2 over gRPC, a log record over each."""
    _send_spans(HttpSpanExporter(endpoint=f"{tt.http_url}/v1/traces"), 3)
    _send_spans(GrpcSpanExporter(endpoint=tt.grpc_endpoint, insecure=True), 2)
    _send_log(HttpLogExporter(endpoint=f"{tt.http_url}/v1/logs"))
    _send_log(GrpcLogExporter(endpoint=tt.grpc_endpoint, insecure=True))
    tt.flush()


def test_counters_match_what_was_sent_and_histograms_time_requests_and_writes(settings, store):
    with running_collector(settings, store) as tt:
        before = scrape(tt.http_url)
        assert before["tokentrail_spans_received_total"] == 0
        assert before[f'{_REQUESTS}{{protocol="grpc",signal="logs"}}'] == 0, "every series from the start"
        _send_everything(tt)
        after = scrape(tt.http_url)
        assert tt.query("SELECT count() FROM spans FINAL") == [(5,)]
        for noun, sent in (("spans", 5), ("logs", 2)):
            for stage in ("received", "spooled", "stored"):
                assert after[f"tokentrail_{noun}_{stage}_total"] == sent, (noun, stage)
            assert after[f"tokentrail_{noun}_rejected_total"] == 0
        assert after["tokentrail_spool_backlog_bytes"] == 0
        assert after["tokentrail_writer_stalled"] == 0
        for protocol, signal, requests in (
            ("http", "traces", 3),
            ("grpc", "traces", 2),
            ("http", "logs", 1),
            ("grpc", "logs", 1),
        ):
            labels = f'{{protocol="{protocol}",signal="{signal}"}}'
            assert after[_REQUESTS + labels] == before[_REQUESTS + labels] + requests, labels
            assert after[f'tokentrail_request_duration_seconds_bucket{{le="+Inf",{labels[1:]}'] == requests
            assert after[f"tokentrail_request_duration_seconds_sum{labels}"] > 0
        assert after[_WRITES] > before[_WRITES] == 0
        assert after["tokentrail_write_duration_seconds_sum"] > 0
        status = httpx.get(f"{tt.http_url}/api/status").json()["stats"]
        assert status["tokentrail_spans_stored_total"] == 5
        for name, value in status.items():
            if name != "tokentrail_spool_free_bytes":  # the disk is shared: it moves between reads
                # a counter with labels (redactions by project and rule) is its samples' sum
                labeled = [v for sample, v in after.items() if sample.startswith(name + "{")]
                assert (after[name] if name in after else sum(labeled)) == value, name


def test_metrics_are_served_in_the_format_the_scraper_asks_for(settings, store):
    with running_collector(settings, store) as tt:
        plain = httpx.get(f"{tt.http_url}/metrics")
        assert plain.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert "# TYPE tokentrail_spans_received_total counter" in plain.text
        assert "# TYPE tokentrail_request_duration_seconds histogram" in plain.text
        assert "# TYPE tokentrail_write_duration_seconds histogram" in plain.text
        open_metrics = httpx.get(
            f"{tt.http_url}/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert open_metrics.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
        assert open_metrics.text.endswith("# EOF\n")


def test_two_collectors_in_one_process_count_apart(settings, store, tmp_path):
    with (
        running_collector(settings, store) as first,
        running_collector(settings.with_(data_dir=tmp_path / "second"), store) as second,
    ):
        _send_spans(HttpSpanExporter(endpoint=f"{second.http_url}/v1/traces"), 2)
        second.flush()
        assert scrape(second.http_url)["tokentrail_spans_stored_total"] == 2
        assert scrape(first.http_url)["tokentrail_spans_received_total"] == 0


def test_a_reading_that_fails_is_nan_on_metrics_and_null_on_status(settings, store, monkeypatch):
    """The spool's free space cannot be read (statvfs fails): /metrics says NaN, /api/status still
    answers, with null for it, and every other value."""
    with running_collector(settings, store) as tt:

        def broken() -> int:
            raise OSError("statvfs failed")

        monkeypatch.setattr(tt.collector.spool, "free_bytes", broken)
        families = scrape(tt.http_url)
        assert math.isnan(families["tokentrail_spool_free_bytes"])
        status = httpx.get(f"{tt.http_url}/api/status")
        assert status.status_code == 200
        body = status.json()
        assert body["stats"]["tokentrail_spool_free_bytes"] is None
        assert body["spool"]["free_bytes"] is None
        assert body["stats"]["tokentrail_spans_received_total"] == 0
