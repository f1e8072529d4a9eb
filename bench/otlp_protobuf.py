"""How fast the engine itself turns OTLP requests into span rows: the measurement behind the idea
of letting ClickHouse parse OTLP (`FORMAT ProtobufSingle` with the OTLP schema), beside the
engine's own ceiling for span rows.

`bench.ingest`'s payloads (150 requests of 1,000 spans) are streamed, one request or several an INSERT
(the collector's writer inserts up to 20,000 spans at once), into a `Null` table whose columns follow `ExportTraceServiceRequest`;
a materialized view flattens them with `ARRAY JOIN` into a table made like `spans`: the OTel columns
(ids in hex, times, kind and status names, resource, scope, attribute maps, events, links). In the
`parsed` variants the normalized columns stay at their defaults. In the `parsed and normalized`
variant the view computes them too, as SQL written from the key lists of
`tokentrail.collector.normalize` (the first non-empty key wins), for the conventions these payloads
use: kind of step, operation, agent, models, provider, the five token counts, tools, conversation,
messages, and the catalog's cost from a table of unit prices (a collector would add each model it
meets); beside them, whether any value has what a redaction rule looks for (the span a real path
would hand to the redactor in Python). A test checks these columns against the collector's own
flattening of the same requests. The hashes are the engine's `cityHash64`, for their cost: the
Python's (BLAKE2b, of canonical JSON for tool arguments) cannot be computed alike in SQL. Prices are
the first band of each model's (enough for these payloads' inputs). Not computed: conventions these
payloads do not use, messages in other shapes than OTel's, the redaction itself: an upper bound for
such a write path, not one.
The schema is printed from the descriptors of the installed `opentelemetry-proto`
package. Then the same rows are copied by `INSERT … SELECT` (the ceiling `bench.ingest` prints).

Prints spans/s and CPU µs a span (this process's CPU time; the engine runs in it) for each, and
checks that every span and attribute arrived, and with the normalization that every model call was
priced. Run: `python -m bench.otlp_protobuf [--requests 150]`.
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

from bench.payloads import _MODELS, encoded_batches
from tokentrail import semconv as sc
from tokentrail.collector import normalize as nz
from tokentrail.collector.redact import _RULES
from tokentrail.pricing import PriceBook
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


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _first(keys: tuple[str, ...]) -> str:
    """The first non-empty of these attributes, as `normalize` picks it (the engine computes each
    lookup once however often it is written)."""
    parts = [f"a[{_quote(k)}] != '', a[{_quote(k)}]" for k in keys]
    return f"multiIf({', '.join(parts)}, '')"


def _kinds(value: str, table: dict[str, tuple[str, str]], part: int, default: str) -> str:
    keys = ", ".join(map(_quote, table))
    values = ", ".join(_quote(v[part]) for v in table.values())
    return f"transform({value}, [{keys}], [{values}], {_quote(default)})"


def _step(part: int) -> str:
    default = sc.STEP_OTHER if part == 0 else ""
    return (
        f"multiIf(oi != '', {_kinds('oi', nz._OPENINFERENCE, part, default)}, "
        f"tl != '', {_kinds('tl', nz._TRACELOOP, part, default)}, "
        f"operation != '', {_kinds('operation', nz._OPERATIONS, part, default)}, "
        f"{_kinds('name', nz._SPAN_NAMES, part, default)})"
    )


def _tokens(keys: tuple[str, ...]) -> str:
    return f"toUInt64OrZero({_first(keys)})"


#: what the rules look for before they run (RE2 patterns): a value that has one would go through
#: the redactor in Python; the rest is stored as parsed
_TRIGGER = "|".join(f"(?:{rule.trigger})" for rules in _RULES.values() for rule in rules)

#: the normalized columns as SQL over the parsed span (`a`: its attributes), for the conventions
#: `bench.payloads` writes and the key lists of `tokentrail.collector.normalize`
_NORMALIZED = f"""
SELECT
    o.* EXCEPT (convention, step_kind, step_subkind, operation, agent_name, workflow_name,
        request_model, response_model, provider, input_tokens, output_tokens, cache_read_tokens,
        cache_write_tokens, reasoning_tokens, usage_reported, billable, tool_name, tool_call_id,
        tool_args_hash, input_hash, conversation_id, user_id, response_id, error_type,
        retry_attempt, retry_reason, input_messages, output_messages, system_instructions,
        tool_arguments, tool_result),
    o.attributes AS a,
    a['openinference.span.kind'] AS oi,
    a['traceloop.span.kind'] AS tl,
    {_first((sc.GEN_AI_OPERATION_NAME, "llm.request.type"))} AS operation,
    multiIf(oi != '', 'openinference', tl != '', 'traceloop', operation != '', 'otel_genai', '') AS convention,
    {_step(0)} AS step_kind,
    {_step(1)} AS step_subkind,
    {_first(nz._AGENT)} AS agent_name,
    {_first(nz._WORKFLOW)} AS workflow_name,
    {_first(nz._REQUEST_MODEL)} AS request_model,
    {_first(nz._RESPONSE_MODEL)} AS response_model,
    {_first(nz._PROVIDER)} AS provider,
    {_tokens(nz._INPUT)} AS reported_input,
    -- a count smaller than its own cached part leaves the cached tokens out (`_exclusive_input`)
    if(reported_input < cache_read_tokens + cache_write_tokens,
        reported_input + cache_read_tokens + cache_write_tokens, reported_input) AS input_tokens,
    {_tokens(nz._OUTPUT)} AS output_tokens,
    {_tokens(nz._CACHE_READ)} AS cache_read_tokens,
    {_tokens(nz._CACHE_WRITE)} AS cache_write_tokens,
    {_tokens(nz._REASONING)} AS reasoning_tokens,
    toUInt8({_first(nz._INPUT)} != '' OR {_first(nz._OUTPUT)} != '') AS usage_reported,
    toUInt8(step_kind = 'llm' AND usage_reported) AS billable,
    greatest(toInt64(input_tokens) - cache_read_tokens - cache_write_tokens, 0) AS fresh_tokens,
    {_first(nz._TOOL_NAME)} AS tool_name,
    {_first(nz._TOOL_CALL_ID)} AS tool_call_id,
    {_first(nz._TOOL_ARGS)} AS tool_arguments,
    {_first(nz._TOOL_RESULT)} AS tool_result,
    if(tool_arguments != '', cityHash64(tool_name, tool_arguments), 0) AS tool_args_hash,
    a['gen_ai.input.messages'] AS input_messages,
    a['gen_ai.output.messages'] AS output_messages,
    a['gen_ai.system_instructions'] AS system_instructions,
    if(input_messages != '', cityHash64(input_messages), 0) AS input_hash,
    {_first(nz._CONVERSATION)} AS conversation_id,
    {_first(nz._USER)} AS user_id,
    {_first(nz._RESPONSE_ID)} AS response_id,
    a['error.type'] AS error_type,
    toUInt16OrZero({_first(nz._RETRY)}) AS retry_attempt,
    -- stands for the flag that would send the span through the redactor
    if(arrayExists(v -> match(v, {_quote(_TRIGGER)}), mapValues(a)), 'redact', '') AS retry_reason
FROM (PARSED) AS o
"""

#: the catalog's cost, from a table of unit prices the collector would fill for each model it meets
_PRICED = """
SELECT
    n.* EXCEPT (cost_usd, cost_source, a, oi, tl, reported_input, fresh_tokens),
    if(n.billable AND p.model != '',
        n.fresh_tokens * p.fresh + n.cache_read_tokens * p.cached + n.cache_write_tokens * p.written
            + n.output_tokens * p.output,
        NULL) AS cost_usd,
    if(p.model != '', 'catalog', '') AS cost_source
FROM (NORMALIZED) AS n
LEFT JOIN {database}.unit_prices AS p ON p.provider = n.provider AND p.model = n.response_model
"""


def _unit_prices(conn: Any, database: str) -> None:
    """The catalog's unit prices of the payloads' models (a collector would add each new model's)."""
    book = PriceBook()
    conn.query(
        f"CREATE TABLE {database}.unit_prices (provider String, model String, fresh Float64, "
        "cached Float64, written Float64, output Float64) ENGINE = Memory"
    )
    rows = []
    for provider, model, snapshot in _MODELS:
        for name in (model, snapshot):
            rates = book._lookup(provider, name)
            if rates is not None:
                b = rates.band(0)
                rows.append(
                    f"({_quote(provider)}, {_quote(name)}, {b.fresh_input!r}, {b.cache_read!r}, "
                    f"{b.cache_write!r}, {b.output!r})"
                )
    conn.query(f"INSERT INTO {database}.unit_prices VALUES {', '.join(rows)}")


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


def create_tables(conn: Any, schema: Path, database: str = "default", *, normalized: bool = False) -> None:
    """The product's schema in `database`, the request table (`Null`: nothing is kept of it) and the
    view from it into `spans`; the connection reads `Protobuf` by `schema` from then on. `normalized`:
    the view computes the normalized columns and the cost too (`_NORMALIZED`, `_PRICED`)."""
    conn.query(f"CREATE DATABASE IF NOT EXISTS {database}")
    conn.query(f"USE {database}")
    for statement in schema_statements():
        conn.query(statement)
    conn.query(f"CREATE TABLE {database}.otlp_in ({_REQUEST}) ENGINE = Null")
    view = _VIEW.replace("FROM otlp_in", f"FROM {database}.otlp_in")
    if normalized:
        _unit_prices(conn, database)
        inner = _NORMALIZED.replace("PARSED", view)
        view = _PRICED.format(database=database).replace("NORMALIZED", inner)
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
    # (requests an INSERT, normalized by the view) -> [(spans/s, CPU µs a span)]
    variants = [(n, False) for n in sizes] + [(sizes[-1], True)]
    parsed: dict[tuple[int, bool], list[tuple[float, float]]] = {v: [] for v in variants}
    ceiling: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        schema = Path(tmp) / "otlp_trace.proto"
        schema.write_text(otlp_schema())
        for run in range(args.runs):
            for n, normalized in variants:
                conn = chdb.connect(str(Path(tmp) / f"db{run}-{n}-{normalized}"))
                create_tables(conn, schema, normalized=normalized)
                wall, cpu = _run(conn, bodies, n)
                got = tuple(
                    int(x) for x in _one_row(conn, "SELECT count(), sum(length(attributes)) FROM spans")
                )
                if got != (spans, attributes):
                    raise SystemExit(f"stored {got} spans and attributes; sent {spans:,}, {attributes:,}")
                if normalized:
                    calls, unpriced = (
                        int(x)
                        for x in _one_row(
                            conn, "SELECT sum(billable), countIf(billable AND cost_usd IS NULL) FROM spans"
                        )
                    )
                    if not calls or unpriced:
                        raise SystemExit(f"{calls:,} model calls normalized, {unpriced:,} of them unpriced")
                parsed[(n, normalized)].append((spans / wall, cpu / spans * 1e6))
                if n == sizes[-1] and not normalized:
                    conn.query("CREATE TABLE spans_copy AS spans")
                    wall, cpu = time.perf_counter(), time.process_time()
                    conn.query("INSERT INTO spans_copy SELECT * FROM spans")
                    ceiling.append(
                        (spans / (time.perf_counter() - wall), (time.process_time() - cpu) / spans * 1e6)
                    )
                conn.close()
    top = statistics.median(r[0] for r in ceiling)
    print(f"{spans:,} spans, {attributes:,} attributes; medians of {args.runs} runs")
    print(f"{'':<48}{'spans/s':>10}{'CPU µs a span':>15}{'of ceiling':>12}")
    for n, normalized in variants:
        rate = statistics.median(r[0] for r in parsed[(n, normalized)])
        label = f"{'parsed and normalized' if normalized else 'parsed'}, {n} request(s) an INSERT"
        print(
            f"{label:<48}{rate:>10,.0f}"
            f"{statistics.median(r[1] for r in parsed[(n, normalized)]):>15.1f}{rate / top:>12.0%}"
        )
    print(f"{'ceiling (INSERT … SELECT)':<48}{top:>10,.0f}{statistics.median(r[1] for r in ceiling):>15.1f}")


def _one_row(conn: Any, sql: str) -> list[str]:
    return bytes(conn.query(sql, "TSV").bytes()).decode().split()


if __name__ == "__main__":
    main()
