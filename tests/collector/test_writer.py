"""The writer against the real engine: billable leaves, summaries, outages and refused records."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tokentrail.collector.spool import KIND_TRACES, Spool
from tokentrail.collector.stats import Stats
from tokentrail.collector.writer import Writer

TRACE = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")


def _span(request: ExportTraceServiceRequest, span_id: str, parent: str, name: str, **attrs: Any) -> None:
    rs = request.resource_spans[0] if request.resource_spans else request.resource_spans.add()
    scope = rs.scope_spans[0] if rs.scope_spans else rs.scope_spans.add()
    span = scope.spans.add()
    span.trace_id, span.span_id = TRACE, bytes.fromhex(span_id)
    if parent:
        span.parent_span_id = bytes.fromhex(parent)
    span.name = name
    span.start_time_unix_nano = 1_700_000_000_000_000_000 + int(span_id[-2:], 16) * 1000
    span.end_time_unix_nano = span.start_time_unix_nano + 5_000_000
    for key, value in attrs.items():
        kv = span.attributes.add()
        kv.key = key.replace("__", ".")
        if isinstance(value, int):
            kv.value.int_value = value
        else:
            kv.value.string_value = value


def _framework_wrapping_client_call() -> bytes:
    """A LangChain-style chat span whose child is the client library's chat span; both report usage."""
    request = ExportTraceServiceRequest()
    _span(request, "00000000000000a1", "", "invoke_agent planner",
          gen_ai__operation__name="invoke_agent", gen_ai__agent__name="planner")  # fmt: skip
    usage = {"gen_ai__usage__input_tokens": 900, "gen_ai__usage__output_tokens": 100}
    _span(request, "00000000000000a2", "00000000000000a1", "chat gpt-4o", gen_ai__operation__name="chat",
          gen_ai__request__model="gpt-4o", **usage)  # fmt: skip
    _span(request, "00000000000000a3", "00000000000000a2", "chat gpt-4o", gen_ai__operation__name="chat",
          gen_ai__request__model="gpt-4o", gen_ai__provider__name="openai", **usage)  # fmt: skip
    return request.SerializeToString()


@pytest.fixture
def spool(tmp_path):
    s = Spool(tmp_path / "spool")
    yield s
    s.close()


def test_only_the_leaf_model_call_is_billed(store, spool):
    writer = Writer(store.new_client(), spool, Stats())
    spool.append(KIND_TRACES, "default", _framework_wrapping_client_call())
    writer.flush()
    rows = store.client.query("SELECT span_id, billable FROM spans FINAL ORDER BY span_id").result_rows
    assert rows == [("00000000000000a1", 0), ("00000000000000a2", 0), ("00000000000000a3", 1)]
    summary = store.client.query(
        "SELECT llm_calls, input_tokens, output_tokens, agent_name, root_name FROM traces FINAL"
    ).result_rows
    assert summary == [(1, 900, 100, "planner", "invoke_agent planner")]


def test_late_spans_update_the_summary(store, spool):
    writer = Writer(store.new_client(), spool, Stats())
    request = ExportTraceServiceRequest()
    _span(request, "00000000000000b2", "00000000000000b1", "chat gpt-4o", gen_ai__operation__name="chat",
          gen_ai__request__model="gpt-4o", gen_ai__usage__input_tokens=10, gen_ai__usage__output_tokens=1)  # fmt: skip
    spool.append(KIND_TRACES, "default", request.SerializeToString())
    writer.flush()
    assert store.client.query("SELECT root_name, span_count FROM traces FINAL").result_rows == [("chat gpt-4o", 1)]
    root = ExportTraceServiceRequest()
    _span(root, "00000000000000b1", "", "invoke_agent late", gen_ai__operation__name="invoke_agent")
    spool.append(KIND_TRACES, "default", root.SerializeToString())
    writer.flush()
    assert store.client.query("SELECT root_name, span_count, input_tokens FROM traces FINAL").result_rows == [
        ("invoke_agent late", 2, 10)
    ]


class _Down:
    """A ClickHouse that is not there: every call fails like a refused connection."""

    def insert(self, *a: Any, **k: Any) -> None:
        raise ConnectionRefusedError("connection refused")

    raw_insert = insert
    command = insert


def test_outage_keeps_everything_in_the_spool_until_clickhouse_returns(store, spool):
    stats = Stats()
    writer = Writer(_Down(), spool, stats)
    writer.backoff_base = 0.001
    spool.append(KIND_TRACES, "default", _framework_wrapping_client_call())
    for _ in range(8):
        assert writer.drain_once() == 0
    assert spool.backlog_bytes > 0
    assert stats.snapshot()["tokentrail_write_errors_total"] == 8
    assert "connection refused" in writer.last_error
    assert not (spool.directory / "dead").exists()  # an outage sets nothing aside

    writer.client = store.new_client()  # ClickHouse is back
    writer.flush()
    assert spool.backlog_bytes == 0
    assert store.client.query("SELECT count() FROM spans FINAL").result_rows == [(3,)]


def test_a_record_clickhouse_refuses_is_set_aside_visibly(store, spool):
    client = store.new_client()
    real_raw_insert = client.raw_insert

    def refuse_poison(table: str, columns: Any, data: bytes, **kw: Any) -> Any:
        if b"poison" in data:
            raise ValueError("Cannot parse input: poison")
        return real_raw_insert(table, columns, data, **kw)

    client.raw_insert = refuse_poison
    stats = Stats()
    writer = Writer(client, spool, stats)
    writer.backoff_base = 0.001
    poison = ExportTraceServiceRequest()
    _span(poison, "00000000000000c1", "", "poison", gen_ai__operation__name="chat")
    spool.append(KIND_TRACES, "default", poison.SerializeToString())
    spool.append(KIND_TRACES, "default", _framework_wrapping_client_call())
    for _ in range(20):
        writer.drain_once()
    writer.flush()
    assert store.client.query("SELECT count() FROM spans FINAL").result_rows == [(3,)]
    dead = sorted(p.suffix for p in (spool.directory / "dead").iterdir())
    assert dead == [".pb", ".txt"]
    assert stats.snapshot()["tokentrail_records_quarantined_total"] == 1


def test_load_writes_and_summarizes_and_prices_unlisted_snapshots_as_requested(store):
    from tokentrail.collector.pricing import PriceBook
    from tokentrail.collector.writer import load

    request = ExportTraceServiceRequest()
    usage = {"gen_ai__usage__input_tokens": 1000, "gen_ai__usage__output_tokens": 200, "gen_ai__provider__name": "openai",
             "gen_ai__operation__name": "chat", "gen_ai__request__model": "gpt-4o-mini"}  # fmt: skip
    _span(request, "00000000000000c1", "", "chat gpt-4o-mini", gen_ai__response__model="gpt-4o-mini-2099-01-01", **usage)
    _span(request, "00000000000000c2", "", "chat gpt-4o-mini", gen_ai__response__model="gpt-4o-mini", **usage)
    prices = PriceBook()
    assert prices.cost("openai", "gpt-4o-mini-2099-01-01", input_tokens=1000, output_tokens=200) is None
    assert load(store.client, "default", [request.SerializeToString()], prices) == 2
    costs = store.client.query("SELECT cost_usd, cost_source FROM spans FINAL ORDER BY span_id").result_rows
    expected = prices.cost("openai", "gpt-4o-mini", input_tokens=1000, output_tokens=200)
    assert expected is not None
    assert costs == [(expected, "computed"), (expected, "computed")]
    assert store.client.query("SELECT cost_usd, unpriced_calls FROM traces FINAL").result_rows == [(2 * expected, 0)]


def test_embedding_calls_are_billed_on_their_input(store):
    from tokentrail.collector.pricing import PriceBook
    from tokentrail.collector.writer import load

    request = ExportTraceServiceRequest()
    _span(request, "00000000000000e1", "", "embeddings text-embedding-3-small", gen_ai__operation__name="embeddings",
          gen_ai__provider__name="openai", gen_ai__request__model="text-embedding-3-small",
          gen_ai__usage__input_tokens=100_000)  # fmt: skip
    prices = PriceBook()
    load(store.client, "default", [request.SerializeToString()], prices)
    expected = prices.cost("openai", "text-embedding-3-small", input_tokens=100_000, output_tokens=0)
    assert expected is not None and expected > 0
    rows = store.client.query("SELECT step_kind, billable, cost_usd FROM spans FINAL").result_rows
    assert rows == [("embedding", 1, expected)]
    assert store.client.query("SELECT llm_calls, cost_usd FROM traces FINAL").result_rows == [(1, expected)]
