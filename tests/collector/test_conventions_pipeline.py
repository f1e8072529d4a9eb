"""Every convention fixture sent with the real OTel SDK exporter, checked as rows in ClickHouse."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.support.collector import running_collector
from tests.support.conventions import CASES, check
from tokentrail.collector.flatten import SPAN_COLUMNS
from tokentrail.pricing import PriceBook

_NORMALIZED = [c for c in SPAN_COLUMNS[SPAN_COLUMNS.index("convention") :] if c != "price_version"]


def test_all_conventions_through_the_pipeline(settings, store):
    with running_collector(settings, store, pricer=PriceBook()) as tt:
        trace_ids = {}
        for case in CASES:
            provider = TracerProvider(resource=Resource.create(case.resource))
            provider.add_span_processor(
                SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{tt.http_url}/v1/traces"))
            )
            span = provider.get_tracer("fixtures").start_span(
                case.span_name,
                attributes=case.attributes,
                kind=SpanKind.CLIENT if case.client else SpanKind.INTERNAL,
            )
            if case.error:
                span.record_exception(
                    type("RateLimitError", (Exception,), {"__module__": "openai"})("slow down")
                )
                span.set_status(Status(StatusCode.ERROR))
            span.end()
            trace_ids[case.name] = format(span.get_span_context().trace_id, "032x")
            provider.shutdown()
        tt.flush()
        for case in CASES:
            result = tt.store.client.query(
                f"SELECT {', '.join(f'`{c}`' for c in _NORMALIZED)} FROM spans FINAL WHERE trace_id = {{t:String}}",
                parameters={"t": trace_ids[case.name]},
            )
            rows = [dict(zip(_NORMALIZED, r, strict=True)) for r in result.result_rows]
            assert len(rows) == 1, case.name
            row = rows[0]
            expected = {
                k: (int(v) if isinstance(v, bool) else v)
                for k, v in case.expected.items()
                if k != "reported_cost"
            }
            check(row, expected)
            if "reported_cost" in case.expected:
                assert row["reported_cost_usd"] == case.expected["reported_cost"]
                if case.expected["reported_cost"] == 0 and (row["input_tokens"] or row["output_tokens"]):
                    assert row["cost_source"] == "computed" and row["cost_usd"] > 0, (
                        case.name
                    )  # a $0 is not a price
                else:
                    assert (row["cost_usd"], row["cost_source"]) == (
                        case.expected["reported_cost"],
                        "reported",
                    )
            elif row["billable"]:
                assert row["cost_source"] in ("computed", "unknown"), case.name
                assert (row["cost_usd"] is None) == (row["cost_source"] == "unknown")
        priced = tt.query(
            "SELECT cost_usd, cost_source, price_version FROM spans FINAL WHERE trace_id = {t:String}",
            t=trace_ids["otel-current"],
        )[0]
        assert priced[1] == "computed" and priced[0] > 0
        assert priced[2].startswith("genai-prices ")
