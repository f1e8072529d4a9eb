"""How fast the engine itself turns OTLP requests into span rows: the measurement behind the idea
of letting ClickHouse parse OTLP (`FORMAT ProtobufSingle` with the OTLP schema), beside the
engine's own ceiling for span rows.

`bench.ingest`'s payloads (150 requests of 1,000 spans) are streamed, one request or several an INSERT
(the collector's writer inserts up to 20,000 spans at once), into a `Null` table whose columns follow `ExportTraceServiceRequest`;
a materialized view flattens them with `ARRAY JOIN` into a table made like `spans`: the OTel columns
(ids in hex, times, kind and status names, resource, scope, attribute maps, events, links). The
normalized columns (convention, step, model, usage, cost, hashes, messages) stay at their defaults:
no SQL here computes them, so this is an upper bound for the parsing half of such a design, not a
write path. The schema is printed from the descriptors of the installed `opentelemetry-proto`
package. Then the same rows are copied by `INSERT … SELECT` (the ceiling `bench.ingest` prints).

Prints spans/s and CPU µs a span (this process's CPU time; the engine runs in it) for both, and
checks that every span and attribute arrived. Run: `python -m bench.otlp_protobuf [--requests 150]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import chdb
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, FileDescriptor
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.payloads import encoded_batches
from tokentrail.store.migrations import schema_statements

_SCALARS = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_DOUBLE: "double",
    FieldDescriptor.TYPE_FLOAT: "float",
    FieldDescriptor.TYPE_FIXED32: "fixed32",
    FieldDescriptor.TYPE_FIXED64: "fixed64",
    FieldDescriptor.TYPE_SFIXED32: "sfixed32",
    FieldDescriptor.TYPE_SFIXED64: "sfixed64",
    FieldDescriptor.TYPE_SINT32: "sint32",
    FieldDescriptor.TYPE_SINT64: "sint64",
}


def _files(root: FileDescriptor) -> list[FileDescriptor]:
    seen: dict[str, FileDescriptor] = {}

    def visit(f: FileDescriptor) -> None:
        for dep in f.dependencies:
            visit(dep)
        seen.setdefault(f.name, f)

    visit(root)
    return list(seen.values())


def _enum(e: EnumDescriptor, indent: str) -> list[str]:
    values = [f"{indent}  {v.name} = {v.number};" for v in e.values]
    return [f"{indent}enum {e.name} {{", *values, f"{indent}}}"]


def _message(m: Descriptor, indent: str) -> list[str]:
    lines = [f"{indent}message {m.name} {{"]
    for nested in m.nested_types:
        lines += _message(nested, indent + "  ")
    for e in m.enum_types:
        lines += _enum(e, indent + "  ")
    for field in m.fields:
        if field.containing_oneof is None:
            lines.append(f"{indent}  {_field(field)}")
    for oneof in m.oneofs:
        lines += [
            f"{indent}  oneof {oneof.name} {{",
            *(f"{indent}    {_field(f)}" for f in oneof.fields),
            f"{indent}  }}",
        ]
    lines.append(f"{indent}}}")
    return lines


def _field(field: FieldDescriptor) -> str:
    if field.type in (FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_ENUM):
        named = field.message_type or field.enum_type
        assert named is not None
        kind = named.full_name
    else:
        kind = _SCALARS[field.type]
    repeated = "repeated " if field.is_repeated else ""
    return f"{repeated}{kind} {field.name} = {field.number};"


def otlp_schema() -> str:
    """The OTLP trace request's messages as one proto3 file, from the installed descriptors.

    ClickHouse reads a schema from one file here; the messages of several packages go into one, named
    by their full names without their packages (none of these collide)."""
    lines = ['syntax = "proto3";', "package otlp;"]
    for f in _files(trace_service_pb2.DESCRIPTOR):
        for e in f.enum_types_by_name.values():
            lines += _enum(e, "")
        for m in f.message_types_by_name.values():
            lines += _message(m, "")
    text = "\n".join(lines) + "\n"
    for f in _files(trace_service_pb2.DESCRIPTOR):
        text = text.replace(f" {f.package}.", " ")
    return text


#: AnyValue's scalar fields, and which of its `oneof value` was set (input_format_protobuf_oneof_presence)
_VALUE = (
    "Tuple(string_value String, bool_value Bool, int_value Int64, double_value Float64, value Enum8("
    "'none' = 0, 'string' = 1, 'bool' = 2, 'int' = 3, 'double' = 4, 'array' = 5, 'kvlist' = 6, 'bytes' = 7))"
)
_KV = f"Array(Tuple(key String, value {_VALUE}))"
_SPAN = (
    f"Tuple(trace_id String, span_id String, trace_state String, parent_span_id String, name String, "
    f"kind Int32, start_time_unix_nano UInt64, end_time_unix_nano UInt64, attributes {_KV}, "
    f"events Array(Tuple(time_unix_nano UInt64, name String, attributes {_KV})), "
    f"links Array(Tuple(trace_id String, span_id String, trace_state String, attributes {_KV})), "
    f"status Tuple(message String, code Int32))"
)
_REQUEST = (
    f"resource_spans Array(Tuple(resource Tuple(attributes {_KV}), "
    f"scope_spans Array(Tuple(scope Tuple(name String, version String), spans Array({_SPAN})))))"
)


def _as_map(kvs: str) -> str:
    text = (
        "multiIf(kv.value.value = 'string', kv.value.string_value, kv.value.value = 'int', "
        "toString(kv.value.int_value), kv.value.value = 'double', toString(kv.value.double_value), "
        "kv.value.value = 'bool', if(kv.value.bool_value, 'true', 'false'), '')"
    )
    return f"mapFromArrays(arrayMap(kv -> kv.key, {kvs}), arrayMap(kv -> {text}, {kvs}))"


def _nanos(column: str) -> str:
    return f"fromUnixTimestamp64Nano(toInt64({column}))"


_VIEW = f"""
SELECT
    'default' AS project,
    lower(hex(s.trace_id)) AS trace_id,
    lower(hex(s.span_id)) AS span_id,
    lower(hex(s.parent_span_id)) AS parent_span_id,
    s.trace_state AS trace_state,
    s.name AS name,
    arrayElement(['UNSPECIFIED', 'INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'], s.kind + 1)
        AS span_kind,
    {_nanos("s.start_time_unix_nano")} AS start_time,
    {_nanos("s.end_time_unix_nano")} AS end_time,
    s.end_time_unix_nano - s.start_time_unix_nano AS duration_ns,
    resource['service.name'] AS service_name,
    ss.scope.name AS scope_name,
    ss.scope.version AS scope_version,
    resource AS resource_attributes,
    {_as_map("s.attributes")} AS attributes,
    arrayElement(['UNSET', 'OK', 'ERROR'], s.status.code + 1) AS status_code,
    s.status.message AS status_message,
    arrayMap(e -> {_nanos("e.time_unix_nano")}, s.events) AS `events.time`,
    arrayMap(e -> e.name, s.events) AS `events.name`,
    arrayMap(e -> {_as_map("e.attributes").replace("kv", "ekv")}, s.events) AS `events.attributes`,
    arrayMap(l -> lower(hex(l.trace_id)), s.links) AS `links.trace_id`,
    arrayMap(l -> lower(hex(l.span_id)), s.links) AS `links.span_id`,
    arrayMap(l -> l.trace_state, s.links) AS `links.trace_state`,
    arrayMap(l -> {_as_map("l.attributes").replace("kv", "lkv")}, s.links) AS `links.attributes`
FROM otlp_in
ARRAY JOIN resource_spans AS rs
ARRAY JOIN rs.scope_spans AS ss
ARRAY JOIN ss.spans AS s
LEFT ARRAY JOIN [{_as_map("rs.resource.attributes")}] AS resource
"""


def _cpu() -> float:
    return time.process_time()


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _length_delimited(bodies: list[bytes]) -> bytes:
    return b"".join(_varint(len(body)) + body for body in bodies)


def create_tables(conn: Any, schema: Path, database: str = "default") -> None:
    """The product's schema in `database`, the request table (`Null`: nothing is kept of it) and the
    view from it into `spans`; the connection reads `Protobuf` by `schema` from then on."""
    conn.query(f"CREATE DATABASE IF NOT EXISTS {database}")
    conn.query(f"USE {database}")
    for statement in schema_statements():
        conn.query(statement)
    conn.query(f"CREATE TABLE {database}.otlp_in ({_REQUEST}) ENGINE = Null")
    view = _VIEW.replace("FROM otlp_in", f"FROM {database}.otlp_in")
    conn.query(f"CREATE MATERIALIZED VIEW {database}.otlp_spans TO {database}.spans AS {view}")
    conn.query(f"SET format_schema = '{schema}:ExportTraceServiceRequest'")
    conn.query("SET input_format_protobuf_oneof_presence = 1")


def insert(conn: Any, bodies: list[bytes], database: str = "default") -> None:
    """One INSERT of request bodies, as `Protobuf` (each message preceded by its length)."""
    inserter = conn.send_insert(f"INSERT INTO {database}.otlp_in", "Protobuf")
    try:
        inserter.append(_length_delimited(bodies))
        inserter.finish()
    except BaseException:
        inserter.cancel()
        raise


def _run(conn: Any, bodies: list[bytes], per_insert: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(bodies), per_insert):
        insert(conn, bodies[start : start + per_insert])
    return time.perf_counter() - wall, time.process_time() - cpu


def _sent(bodies: list[bytes]) -> tuple[int, int]:
    spans = attributes = 0
    for body in bodies:
        for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
            for ss in rs.scope_spans:
                spans += len(ss.spans)
                attributes += sum(len(s.attributes) for s in ss.spans)
    return spans, attributes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=150, help="requests of 1,000 spans")
    parser.add_argument("--per-insert", default="1,20", help="requests per INSERT, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    bodies = encoded_batches(args.requests, 1000, seed=7)
    spans, attributes = _sent(bodies)
    sizes = [int(n) for n in args.per_insert.split(",")]
    parsed: dict[int, list[tuple[float, float]]] = {n: [] for n in sizes}
    ceiling: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        schema = Path(tmp) / "otlp_trace.proto"
        schema.write_text(otlp_schema())
        for run in range(args.runs):
            for n in sizes:
                conn = chdb.connect(str(Path(tmp) / f"db{run}-{n}"))
                create_tables(conn, schema)
                wall, cpu = _run(conn, bodies, n)
                got = tuple(
                    int(x) for x in _one_row(conn, "SELECT count(), sum(length(attributes)) FROM spans")
                )
                if got != (spans, attributes):
                    raise SystemExit(f"stored {got} spans and attributes; sent {spans:,}, {attributes:,}")
                parsed[n].append((spans / wall, cpu / spans * 1e6))
                if n == sizes[-1]:
                    conn.query("CREATE TABLE spans_copy AS spans")
                    wall, cpu = time.perf_counter(), time.process_time()
                    conn.query("INSERT INTO spans_copy SELECT * FROM spans")
                    ceiling.append(
                        (spans / (time.perf_counter() - wall), (time.process_time() - cpu) / spans * 1e6)
                    )
                conn.close()
    top = statistics.median(r[0] for r in ceiling)
    print(f"{spans:,} spans, {attributes:,} attributes; medians of {args.runs} runs")
    print(f"{'':<36}{'spans/s':>10}{'CPU µs a span':>15}{'of ceiling':>12}")
    for n in sizes:
        rate = statistics.median(r[0] for r in parsed[n])
        print(
            f"{f'parsed, {n} request(s) an INSERT':<36}{rate:>10,.0f}"
            f"{statistics.median(r[1] for r in parsed[n]):>15.1f}{rate / top:>12.0%}"
        )
    print(f"{'ceiling (INSERT … SELECT)':<36}{top:>10,.0f}{statistics.median(r[1] for r in ceiling):>15.1f}")


def _one_row(conn: Any, sql: str) -> list[str]:
    return bytes(conn.query(sql, "TSV").bytes()).decode().split()


if __name__ == "__main__":
    main()
