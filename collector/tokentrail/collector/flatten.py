"""Turn decoded OTLP requests into column-oriented row batches for ClickHouse.

Span rows are the OTel fields plus the normalized columns (`normalize`) and cost (`pricing`).
Everything here is pure and CPU-bound; it is the ingest hot path, so it appends straight into
per-column lists instead of building a dict per row, and hands ClickHouse an Arrow stream:
built column by column in C++, and read by ClickHouse without parsing text.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from tokentrail import semconv as sc
from tokentrail.collector.normalize import normalize
from tokentrail.collector.spool import KIND_LOGS, KIND_TRACES, Stored, load_payload
from tokentrail.pricing import PriceBook, price_call

__all__ = [
    "LOG_COLUMNS",
    "SPAN_COLUMNS",
    "SPAN_SCHEMA",
    "Flattened",
    "LogBatch",
    "SpanBatch",
    "SpoolItem",
    "any_value",
    "attributes",
    "flatten_in_worker",
    "flatten_records",
    "init_worker",
]

_SPAN_KINDS = ("UNSPECIFIED", "INTERNAL", "SERVER", "CLIENT", "PRODUCER", "CONSUMER")
_STATUS = ("UNSET", "OK", "ERROR")


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value
    return None


def _text(value: Any) -> str:
    """The string form stored in attribute maps (as the OTel ClickHouse exporter does)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, default=_json_default, separators=(",", ":"))


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


def ts(nanos: int) -> str:
    """A DateTime64(9) value for JSON input: seconds with nine decimals, exact (no float). Ten
    digits of seconds: ClickHouse reads a shorter number (a time before 1973) as something else."""
    return f"{nanos // 1_000_000_000:010d}.{nanos % 1_000_000_000:09d}"


def attributes(kvs: Iterable[KeyValue]) -> tuple[dict[str, Any], dict[str, str]]:
    """(Python values for the normalizer, string values for the attribute Map column)."""
    values: dict[str, Any] = {}
    others: list[str] = []
    for kv in kvs:
        value = kv.value
        kind = value.WhichOneof("value")
        # the hot path: most attributes are strings (kept inline: no call per attribute)
        if kind == "string_value":
            values[kv.key] = value.string_value
        else:
            key = kv.key
            values[key] = value.int_value if kind == "int_value" else any_value(value)
            others.append(key)
    texts = values.copy()  # the same strings; only the other kinds need a text form
    for key in others:
        texts[key] = _text(values[key])
    return values, texts


# Content attributes the normalizer moves into columns of their own (kept once, not twice).
_CONTENT_KEYS = (
    (sc.GEN_AI_INPUT_MESSAGES, "input_messages"),
    (sc.GEN_AI_OUTPUT_MESSAGES, "output_messages"),
    (sc.GEN_AI_SYSTEM_INSTRUCTIONS, "system_instructions"),
    (sc.GEN_AI_TOOL_CALL_ARGUMENTS, "tool_arguments"),
    (sc.GEN_AI_TOOL_CALL_RESULT, "tool_result"),
)

SPAN_COLUMNS = (
    "project",
    "trace_id",
    "span_id",
    "parent_span_id",
    "trace_state",
    "name",
    "span_kind",
    "start_time",
    "end_time",
    "duration_ns",
    "service_name",
    "scope_name",
    "scope_version",
    "resource_attributes",
    "attributes",
    "status_code",
    "status_message",
    "events.time",
    "events.name",
    "events.attributes",
    "links.trace_id",
    "links.span_id",
    "links.trace_state",
    "links.attributes",
    "convention",
    "step_kind",
    "step_subkind",
    "operation",
    "agent_name",
    "workflow_name",
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
    "cost_usd",
    "cost_source",
    "price_version",
    "tool_name",
    "tool_call_id",
    "tool_args_hash",
    "input_hash",
    "conversation_id",
    "user_id",
    "response_id",
    "finish_reasons",
    "error_type",
    "retry_attempt",
    "retry_reason",
    "input_messages",
    "output_messages",
    "system_instructions",
    "tool_arguments",
    "tool_result",
    "cache_reported",
    "reported_cost_usd",
    "catalog_cost_usd",
    "system_hash",
    "requested_tools",
)

_STR = pa.string()
_MAP = pa.map_(pa.string(), pa.string())
_NS = pa.timestamp("ns")  # DateTime64(9): nanoseconds since the epoch, exact
_ARROW_TYPES: dict[str, pa.DataType] = {
    "start_time": _NS,
    "end_time": _NS,
    "duration_ns": pa.uint64(),
    "resource_attributes": _MAP,
    "attributes": _MAP,
    "events.time": pa.list_(_NS),
    "events.name": pa.list_(_STR),
    "events.attributes": pa.list_(_MAP),
    "links.trace_id": pa.list_(_STR),
    "links.span_id": pa.list_(_STR),
    "links.trace_state": pa.list_(_STR),
    "links.attributes": pa.list_(_MAP),
    "input_tokens": pa.uint64(),
    "output_tokens": pa.uint64(),
    "cache_read_tokens": pa.uint64(),
    "cache_write_tokens": pa.uint64(),
    "reasoning_tokens": pa.uint64(),
    "usage_reported": pa.uint8(),
    "billable": pa.uint8(),
    "cost_usd": pa.float64(),
    "tool_args_hash": pa.uint64(),
    "input_hash": pa.uint64(),
    "finish_reasons": pa.list_(_STR),
    "retry_attempt": pa.uint16(),
    "cache_reported": pa.uint8(),
    "reported_cost_usd": pa.float64(),
    "catalog_cost_usd": pa.float64(),
    "system_hash": pa.uint64(),
    "requested_tools": pa.list_(pa.uint64()),
}
#: the Arrow schema of span batches; every column not listed above is a string
SPAN_SCHEMA = pa.schema([(name, _ARROW_TYPES.get(name, _STR)) for name in SPAN_COLUMNS])


class SpanBatch:
    def __init__(self, pricer: PriceBook | None = None) -> None:
        self.pricer = pricer
        self.columns: list[list[Any]] = [[] for _ in SPAN_COLUMNS]
        self.traces: set[tuple[str, str]] = set()
        #: traces with a span that records an outcome: only these need outcomes filed
        self.outcome_traces: set[tuple[str, str]] = set()

    def __len__(self) -> int:
        return len(self.columns[0])

    def arrow(self) -> bytes:
        """The batch as one Arrow IPC stream."""
        arrays = [
            pa.array(column, type=field.type) for column, field in zip(self.columns, SPAN_SCHEMA, strict=True)
        ]
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, SPAN_SCHEMA) as stream:
            stream.write_batch(pa.RecordBatch.from_arrays(arrays, schema=SPAN_SCHEMA))
        return bytes(sink.getvalue())

    def add(self, project: str, request: ExportTraceServiceRequest) -> int:
        (
            c_project,
            c_trace,
            c_span,
            c_parent,
            c_state,
            c_name,
            c_kind,
            c_start,
            c_end,
            c_dur,
            c_service,
            c_scope,
            c_scope_v,
            c_res,
            c_attrs,
            c_status,
            c_status_msg,
            c_ev_time,
            c_ev_name,
            c_ev_attrs,
            c_ln_trace,
            c_ln_span,
            c_ln_state,
            c_ln_attrs,
            c_conv,
            c_step,
            c_sub,
            c_op,
            c_agent,
            c_wf,
            c_req_model,
            c_resp_model,
            c_provider,
            c_in,
            c_out,
            c_cread,
            c_cwrite,
            c_reason,
            c_usage,
            c_billable,
            c_cost,
            c_cost_src,
            c_price_v,
            c_tool,
            c_tool_id,
            c_args_hash,
            c_input_hash,
            c_conv_id,
            c_user,
            c_resp_id,
            c_finish,
            c_err,
            c_retry,
            c_retry_reason,
            c_in_msgs,
            c_out_msgs,
            c_sys,
            c_tool_args,
            c_tool_result,
            c_cache_rep,
            c_rep_cost,
            c_cat_cost,
            c_sys_hash,
            c_req_tools,
        ) = self.columns
        pricer = self.pricer
        added = 0
        for resource_spans in request.resource_spans:
            res_values, res_texts = attributes(resource_spans.resource.attributes)
            service = res_texts.get("service.name", "unknown_service")
            for scope_spans in resource_spans.scope_spans:
                scope_name = scope_spans.scope.name
                scope_version = scope_spans.scope.version
                for span in scope_spans.spans:
                    trace_id = span.trace_id.hex()
                    values, texts = attributes(span.attributes)
                    status = span.status
                    is_error = status.code == 2
                    events: list[tuple[str, dict[str, Any]]] = []
                    ev_time: list[int] = []
                    ev_name: list[str] = []
                    ev_attrs: list[dict[str, str]] = []
                    for ev in span.events:
                        ev_values, ev_texts = attributes(ev.attributes)
                        events.append((ev.name, ev_values))
                        ev_time.append(ev.time_unix_nano)
                        ev_name.append(ev.name)
                        ev_attrs.append(ev_texts)
                    n = normalize(
                        span.name, values, res_values, is_error=is_error, events=events, client=span.kind == 3
                    )  # SPAN_KIND_CLIENT
                    for key, column in _CONTENT_KEYS:
                        if key in texts and getattr(n, column):
                            del texts[key]  # stored once, in its own column

                    c_project.append(project)
                    c_trace.append(trace_id)
                    c_span.append(span.span_id.hex())
                    c_parent.append(span.parent_span_id.hex())
                    c_state.append(span.trace_state)
                    c_name.append(span.name)
                    c_kind.append(_SPAN_KINDS[span.kind] if span.kind < 6 else "UNSPECIFIED")
                    start, end = span.start_time_unix_nano, span.end_time_unix_nano
                    c_start.append(start)
                    c_end.append(end)
                    c_dur.append(end - start if end > start else 0)
                    c_service.append(service)
                    c_scope.append(scope_name)
                    c_scope_v.append(scope_version)
                    c_res.append(res_texts)
                    c_attrs.append(texts)
                    code = status.code
                    c_status.append(_STATUS[code] if code < 3 else "UNSET")
                    c_status_msg.append(status.message)
                    c_ev_time.append(ev_time)
                    c_ev_name.append(ev_name)
                    c_ev_attrs.append(ev_attrs)
                    links = span.links
                    if links:
                        c_ln_trace.append([ln.trace_id.hex() for ln in links])
                        c_ln_span.append([ln.span_id.hex() for ln in links])
                        c_ln_state.append([ln.trace_state for ln in links])
                        c_ln_attrs.append([attributes(ln.attributes)[1] for ln in links])
                    else:
                        c_ln_trace.append([])
                        c_ln_span.append([])
                        c_ln_state.append([])
                        c_ln_attrs.append([])

                    c_conv.append(n.convention)
                    c_step.append(n.step_kind)
                    c_sub.append(n.step_subkind)
                    c_op.append(n.operation)
                    c_agent.append(n.agent_name)
                    c_wf.append(n.workflow_name)
                    c_req_model.append(n.request_model)
                    c_resp_model.append(n.response_model)
                    c_provider.append(n.provider)
                    c_in.append(n.input_tokens)
                    c_out.append(n.output_tokens)
                    c_cread.append(n.cache_read_tokens)
                    c_cwrite.append(n.cache_write_tokens)
                    c_reason.append(n.reasoning_tokens)
                    c_usage.append(1 if n.usage_reported else 0)
                    c_billable.append(1 if n.billable else 0)
                    priced = price_call(
                        pricer,
                        n.provider,
                        (n.response_model, n.request_model),
                        billable=n.billable,
                        input_tokens=n.input_tokens,
                        output_tokens=n.output_tokens,
                        cache_read_tokens=n.cache_read_tokens,
                        cache_write_tokens=n.cache_write_tokens,
                        reported=n.reported_cost,
                    )
                    c_cost.append(priced.cost)
                    c_cost_src.append(priced.source)
                    c_price_v.append(priced.version)
                    c_rep_cost.append(n.reported_cost)
                    c_cat_cost.append(priced.catalog)
                    c_tool.append(n.tool_name)
                    c_tool_id.append(n.tool_call_id)
                    c_args_hash.append(n.tool_args_hash)
                    c_input_hash.append(n.input_hash)
                    c_conv_id.append(n.conversation_id)
                    c_user.append(n.user_id)
                    c_resp_id.append(n.response_id)
                    c_finish.append(n.finish_reasons)
                    c_err.append(n.error_type)
                    c_retry.append(n.retry_attempt)
                    c_retry_reason.append(n.retry_reason)
                    c_in_msgs.append(n.input_messages)
                    c_out_msgs.append(n.output_messages)
                    c_sys.append(n.system_instructions)
                    c_tool_args.append(n.tool_arguments)
                    c_tool_result.append(n.tool_result)
                    c_cache_rep.append(1 if n.cache_reported else 0)
                    c_sys_hash.append(n.system_hash)
                    c_req_tools.append(n.requested_tools)
                    self.traces.add((project, trace_id))
                    if sc.TT_OUTCOME_NAME in values or sc.TT_OUTCOME_EVENT in ev_name:
                        self.outcome_traces.add((project, trace_id))
                    added += 1
        return added


LOG_COLUMNS = (
    "project",
    "timestamp",
    "observed_timestamp",
    "trace_id",
    "span_id",
    "flags",
    "severity_text",
    "severity_number",
    "service_name",
    "scope_name",
    "scope_version",
    "event_name",
    "body",
    "resource_attributes",
    "attributes",
    "record_hash",
)


class LogBatch:
    def __init__(self) -> None:
        self.rows: list[list[Any]] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, project: str, request: ExportLogsServiceRequest) -> int:
        added = 0
        for resource_logs in request.resource_logs:
            _, res_texts = attributes(resource_logs.resource.attributes)
            service = res_texts.get("service.name", "unknown_service")
            for scope_logs in resource_logs.scope_logs:
                for rec in scope_logs.log_records:
                    _, texts = attributes(rec.attributes)
                    body = any_value(rec.body)
                    event_name = getattr(rec, "event_name", "") or texts.get("event.name", "")
                    digest = hashlib.blake2b(
                        rec.SerializeToString(deterministic=True), digest_size=8
                    ).digest()
                    timestamp = rec.time_unix_nano or rec.observed_time_unix_nano
                    self.rows.append(
                        [
                            project,
                            ts(timestamp),
                            ts(rec.observed_time_unix_nano),
                            rec.trace_id.hex(),
                            rec.span_id.hex(),
                            rec.flags,
                            rec.severity_text,
                            min(rec.severity_number, 255),
                            service,
                            scope_logs.scope.name,
                            scope_logs.scope.version,
                            event_name,
                            _text(body),
                            res_texts,
                            texts,
                            int.from_bytes(digest, "little"),
                        ]
                    )
                    added += 1
        return added


# --- batch flattening, in-process or in a worker process -------------------------------------


class Flattened:
    """One batch of spool records, ready for ClickHouse to read.

    Spans are an Arrow stream: in memory (`span_arrow`), or staged in a file (`span_file`) that
    a worker process wrote, so that the inserting process reads it from disk instead of
    receiving it through a pipe. Logs, rare and small, are JSONCompactEachRow bytes.
    """

    __slots__ = ("log_count", "log_json", "outcome_traces", "span_arrow", "span_count", "span_file", "traces")

    def __init__(self, spans: SpanBatch, logs: LogBatch, stage_dir: Path | None = None) -> None:
        self.span_count = len(spans)
        self.span_arrow = b""
        self.span_file: Path | None = None
        if len(spans):
            data = spans.arrow()
            if stage_dir is None:
                self.span_arrow = data
            else:
                self.span_file = stage_dir / f"{uuid.uuid4().hex}.arrow"
                self.span_file.write_bytes(data)
        self.traces = spans.traces
        self.outcome_traces = spans.outcome_traces
        self.log_count = len(logs)
        self.log_json = _encode(logs.rows) if len(logs) else b""

    def discard(self) -> None:
        """Remove the staged file (after its insert, or when the batch is abandoned)."""
        if self.span_file is not None:
            self.span_file.unlink(missing_ok=True)


def _encode(rows: Iterable[Any]) -> bytes:
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_json_default).encode
    return "\n".join(map(dumps, rows)).encode()


#: a spool record as (kind, project, payload), the payload given or where to read it
SpoolItem = tuple[int, str, bytes | Stored]


def flatten_records(
    records: list[SpoolItem], pricer: PriceBook | None, stage_dir: Path | None = None
) -> Flattened:
    spans, logs = SpanBatch(pricer), LogBatch()
    for kind, project, data in records:
        payload = load_payload(data) if isinstance(data, Stored) else data
        if kind == KIND_TRACES:
            spans.add(project, ExportTraceServiceRequest.FromString(payload))
        elif kind == KIND_LOGS:
            logs.add(project, ExportLogsServiceRequest.FromString(payload))
    return Flattened(spans, logs, stage_dir)


_worker_pricer: PriceBook | None = None
_worker_stage_dir: Path | None = None


def _exit_with_parent(parent: int) -> None:
    # A collector killed with -9 cannot stop its workers, and they would idle on forever.
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def init_worker(with_pricing: bool, stage_dir: str | None = None) -> None:
    """Process-pool initializer: each worker builds its own price book once, and exits when the
    collector that started it is gone. With `stage_dir`, batches are handed back as files there."""
    global _worker_pricer, _worker_stage_dir
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    _worker_stage_dir = Path(stage_dir) if stage_dir else None
    if with_pricing:
        from tokentrail.pricing import PriceBook

        _worker_pricer = PriceBook()


def flatten_in_worker(records: list[SpoolItem]) -> Flattened:
    # A batch builds many small containers and no reference cycles: collecting garbage while it
    # runs only walks them again and again.
    gc.disable()
    try:
        return flatten_records(records, _worker_pricer, _worker_stage_dir)
    finally:
        gc.enable()
