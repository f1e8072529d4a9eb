"""The engine-parsing measurement stores what the OTLP requests say: every span, with the ids, names,
kinds, times, status and attribute values the protobuf messages carry."""

from __future__ import annotations

import json
import random
from pathlib import Path

import chdb
import pyarrow as pa

from bench.otlp_protobuf import create_tables, insert, otlp_schema
from bench.payloads import export_request, iter_spans
from tokentrail.collector.flatten import flatten_records
from tokentrail.collector.spool import KIND_TRACES
from tokentrail.pricing import PriceBook

_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")


def test_the_engine_stores_each_span_as_sent(chdb_dir: Path, tmp_path: Path) -> None:
    requests = [export_request(60, random.Random(seed)) for seed in (1, 2)]
    schema = tmp_path / "otlp.proto"
    schema.write_text(otlp_schema())
    conn = chdb.connect(str(chdb_dir / "chdb"))
    try:
        create_tables(conn, schema, "bench_protobuf")
        insert(conn, [r.SerializeToString() for r in requests], "bench_protobuf")
        result = conn.query(
            "SELECT span_id, trace_id, parent_span_id, name, span_kind, toUnixTimestamp64Nano(start_time),"
            " duration_ns, status_code, attributes FROM bench_protobuf.spans",
            "JSONEachRow",
        )
        stored = {row["span_id"]: row for row in map(json.loads, bytes(result.bytes()).decode().splitlines())}
    finally:
        conn.query("DROP DATABASE bench_protobuf")
        conn.query("USE default")
        conn.close()
    sent = [span for request in requests for span in iter_spans(request)]
    assert len(stored) == len(sent) == 120
    for span in sent:
        row = stored[span.span_id.hex()]
        assert row["trace_id"] == span.trace_id.hex()
        assert row["parent_span_id"] == span.parent_span_id.hex()
        assert (row["name"], row["span_kind"]) == (span.name, _KINDS[span.kind])
        assert int(row["toUnixTimestamp64Nano(start_time)"]) == span.start_time_unix_nano
        assert int(row["duration_ns"]) == span.end_time_unix_nano - span.start_time_unix_nano
        assert row["status_code"] == ("UNSET", "OK", "ERROR")[span.status.code]
        for kv in span.attributes:
            value = kv.value
            kind = value.WhichOneof("value")
            if kind == "string_value":
                assert row["attributes"][kv.key] == value.string_value
            elif kind == "int_value":
                assert row["attributes"][kv.key] == str(value.int_value)
        assert set(row["attributes"]) == {kv.key for kv in span.attributes}


#: the normalized columns the engine's view computes as the collector's Python does
_SAME = (
    "step_kind",
    "step_subkind",
    "operation",
    "agent_name",
    "request_model",
    "response_model",
    "provider",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "usage_reported",
    "billable",
    "tool_name",
    "tool_call_id",
    "tool_arguments",
    "conversation_id",
    "response_id",
    "input_messages",
    "output_messages",
)


def test_the_engines_normalization_agrees_with_the_collectors(chdb_dir: Path, tmp_path: Path) -> None:
    """The measured SQL normalization is the collector's on these payloads: same kinds, models,
    tokens, tools and conversations per span, and the catalog's cost to the last few bits."""
    requests = [export_request(60, random.Random(seed)) for seed in (3, 4, 5)]
    # one call reports its input as Anthropic's usage does, without the tokens read from the cache
    usage = {
        kv.key: kv.value
        for kv in next(s for s in iter_spans(requests[0]) if s.name.startswith("chat")).attributes
    }
    usage["gen_ai.usage.input_tokens"].int_value, usage["gen_ai.usage.cache_read.input_tokens"].int_value = (
        100,
        900,
    )
    bodies = [r.SerializeToString() for r in requests]
    schema = tmp_path / "otlp.proto"
    schema.write_text(otlp_schema())
    conn = chdb.connect(str(chdb_dir / "chdb"))
    try:
        create_tables(conn, schema, "bench_normalized", normalized=True)
        insert(conn, bodies, "bench_normalized")
        columns = ", ".join(_SAME)
        result = conn.query(
            f"SELECT span_id, {columns}, cost_usd FROM bench_normalized.spans ORDER BY span_id", "Arrow"
        )
        engine = pa.ipc.open_file(pa.BufferReader(bytes(result.bytes()))).read_all()
    finally:
        conn.query("DROP DATABASE bench_normalized")
        conn.query("USE default")
        conn.close()
    flattened = flatten_records([(KIND_TRACES, "default", body) for body in bodies], PriceBook())
    python = pa.ipc.open_stream(flattened.span_arrow).read_all().sort_by("span_id")
    assert engine.num_rows == python.num_rows == 180
    assert engine["span_id"].to_pylist() == python["span_id"].to_pylist()
    for name in _SAME:
        assert engine[name].to_pylist() == [
            int(v) if isinstance(v, bool) else v for v in python[name].to_pylist()
        ], name
    billed = list(zip(engine["cost_usd"].to_pylist(), python["cost_usd"].to_pylist(), strict=True))
    assert sum(p is not None for _, p in billed) > 0
    for e, p in billed:
        assert (e is None) == (p is None)
        if p is not None:
            assert abs(e - p) <= 1e-12 + 1e-9 * p
