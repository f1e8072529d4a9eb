"""The engine-parsing measurement stores what the OTLP requests say: every span, with the ids, names,
kinds, times, status and attribute values the protobuf messages carry."""

from __future__ import annotations

import json
import random
from pathlib import Path

import chdb

from bench.otlp_protobuf import create_tables, insert, otlp_schema
from bench.payloads import export_request, iter_spans

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
