"""Work out the ledgers of a chunk of traces, from its spans as read (an Arrow stream), into rows
for `trace_waste`, `waste_findings` and `model_steps` (Arrow streams again). No database here: the
same function runs in-process or in a worker process, which only ever sees bytes and plain data.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from tokentrail.analysis.ledger import BUCKETS, Previous, Thresholds, analyze, successful_steps

__all__ = [
    "FINDING_COLUMNS",
    "SPAN_COLUMNS",
    "STEP_COLUMNS",
    "WASTE_COLUMNS",
    "Evidence",
    "Judged",
    "TraceInfo",
    "judge",
]

#: the columns of a span row, as the analysis reads them (tokentrail.analysis.run)
SPAN_COLUMNS = [
    "trace_id",
    "span_id",
    "parent_span_id",
    "step_kind",
    "step_subkind",
    "start_ns",
    "duration_ns",
    "status_code",
    "tool_name",
    "tool_args_hash",
    "has_tool_args",
    "model",
    "request_model",
    "provider",
    "agent_name",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_reported",
    "billable",
    "cost_usd",
    "input_hash",
    "system_hash",
    "requested_tools",
    "finish_reasons",
    "error_type",
    "ingested_at",
]

# (start ns, service, agent, user, conversation id, task type, outcome)
TraceInfo = tuple[int, str, str, str, str, str, str]

_S, _F, _U64, _NS = pa.string(), pa.float64(), pa.uint64(), pa.timestamp("ns")
_MS = pa.timestamp("ms")
WASTE_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("project", _S),
    ("trace_id", _S),
    ("start_time", _NS),
    ("service_name", _S),
    ("agent_name", _S),
    ("user_id", _S),
    ("total_usd", _F),
    *((f"{b}_usd", _F) for b in BUCKETS),
    ("wasted_tokens", _U64),
    ("findings", pa.uint32()),
    ("unpriced_calls", pa.uint32()),
    ("outcome", _S),
    ("analyzed_at", _MS),
]
FINDING_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("project", _S),
    ("trace_id", _S),
    ("analyzed_at", _MS),
    ("detector", _S),
    ("span_id", _S),
    ("related_span_ids", pa.list_(_S)),
    ("wasted_usd", _F),
    ("wasted_tokens", _U64),
    ("reason", _S),
    ("model", _S),
    ("start_time", _NS),
    ("service_name", _S),
    ("agent_name", _S),
    ("user_id", _S),
    ("rule", _S),
    ("evidence", _S),
    ("time_lost_ns", _U64),
]
STEP_COLUMNS: list[tuple[str, pa.DataType]] = [
    ("project", _S),
    ("step", _S),
    ("step_kind", _S),
    ("provider", _S),
    ("model", _S),
    ("trace_id", _S),
    ("span_id", _S),
    ("calls", pa.uint32()),
    ("start_time", _NS),
    ("analyzed_at", _MS),
]

_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

# (step, step kind, provider) -> model -> the traces it did the step in (up to 1,000 of them)
Known = dict[tuple[str, str, str], dict[str, set[str]]]


@dataclass
class Evidence:
    """Which models did which kinds of step successfully: what earlier analyses stored, plus what a
    chunk shows of itself (a cheaper model in the same chunk counts at once)."""

    stored: Known = field(default_factory=dict)
    own: dict[tuple[str, str, str], dict[str, set[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(set))
    )

    def add(self, step: str, kind: str, provider: str, model: str, traces: Iterable[str]) -> None:
        self.own[(step, kind, provider)][model].update(traces)

    def __call__(self, step: str, kind: str, provider: str) -> list[tuple[str, int, str]]:
        key = (step, kind, provider)
        stored = self.stored.get(key, {})
        own = self.own.get(key, {})
        out = []
        for model in stored.keys() | own.keys():
            seen = stored.get(model, set()) | own.get(model, set())  # a trace analysed again counts once
            out.append((model, len(seen), min(seen)))
        return out


@dataclass
class Judged:
    traces: int
    waste: bytes  # Arrow streams, ready to insert
    findings: bytes
    steps: bytes
    #: (step, step kind, provider, model, trace id): the chunk's evidence, for the rest of the run
    step_rows: list[tuple[str, str, str, str, str]]
    #: trace id -> the kinds of step of its short answers (their verdict depends on the evidence)
    candidates: dict[str, set[str]]


def _stream(columns: list[tuple[str, pa.DataType]], rows: list[list[Any]]) -> bytes:
    """Rows as one Arrow stream (empty bytes for no rows: nothing to insert)."""
    if not rows:
        return b""
    schema = pa.schema(columns)
    arrays = [
        pa.array(values, type=dtype)
        for values, (_, dtype) in zip(zip(*rows, strict=True), columns, strict=True)
    ]
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as out:
        out.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema))
    return bytes(sink.getvalue())


def newest_copies(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows by trace, in the query's order, each span once: its newest copy (a row rewritten by a
    summary or a reprice, or re-sent, has several until the table merges them)."""
    spans: dict[str, list[dict[str, Any]]] = defaultdict(list)
    seen: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row["trace_id"], row["span_id"])
        trace = spans[key[0]]
        if key not in seen:
            seen[key] = len(trace)
            trace.append(row)
        elif row["ingested_at"] >= trace[seen[key]]["ingested_at"]:
            trace[seen[key]] = row
    return spans


def judge(
    prices: Any,
    spans_stream: bytes,
    info: dict[str, TraceInfo],
    previous: dict[str, Previous],
    stored: Known,
    project: str,
    t: Thresholds,
) -> Judged:
    """The ledgers of a chunk of traces. `prices`: a PriceBook; `info`: per trace its summary and
    outcome; `previous`: per trace the last model call of its conversation's previous trace."""
    table = pa.ipc.open_stream(spans_stream).read_all()
    spans = newest_copies(table.rename_columns(SPAN_COLUMNS).to_pylist())
    now = int(datetime.now(tz=UTC).timestamp() * 1000)
    evidence = Evidence(stored)
    step_rows: list[tuple[str, str, str, str, str]] = []
    steps: dict[tuple[str, ...], list[Any]] = {}
    candidates: dict[str, set[str]] = {}
    for trace_id, rows in spans.items():
        if trace_id not in info:
            continue
        start, *_, task_type, outcome = info[trace_id]
        found, keys = successful_steps(rows, outcome, t, task_type)
        if keys:
            candidates[trace_id] = keys
        for step, kind, provider, model, span_id in found:
            evidence.add(step, kind, provider, model, (trace_id,))
            step_rows.append((step, kind, provider, model, trace_id))
            row = steps.setdefault(
                (step, kind, provider, model, trace_id),
                [project, step, kind, provider, model, trace_id, span_id, 0, start, now],
            )
            row[7] += 1
    waste_rows: list[list[Any]] = []
    finding_rows: list[list[Any]] = []
    for trace_id, rows in spans.items():
        if trace_id not in info:
            continue  # its summary is not written yet; it is analysed when it is
        start, service, agent, user, _, task_type, outcome = info[trace_id]
        ledger = analyze(
            rows,
            prices.unit_prices,
            evidence,
            t,
            outcome=outcome,
            previous=previous.get(trace_id),
            task_type=task_type,
            windows=prices.context_window,
        )
        waste_rows.append(
            [
                project,
                trace_id,
                start,
                service,
                agent,
                user,
                ledger.total_usd,
                *(ledger.buckets[b] for b in BUCKETS),
                ledger.wasted_tokens,
                len(ledger.findings),
                ledger.unpriced_calls,
                ledger.outcome,
                now,
            ]
        )
        finding_rows.extend(
            [
                project,
                trace_id,
                now,
                f.detector,
                f.span_id,
                f.related,
                f.wasted_usd,
                f.wasted_tokens,
                f.reason,
                f.model,
                start,
                service,
                agent,
                user,
                f.rule,
                _compact(f.evidence),
                f.time_lost_ns,
            ]
            for f in ledger.findings
        )
    return Judged(
        len(waste_rows),
        _stream(WASTE_COLUMNS, waste_rows),
        _stream(FINDING_COLUMNS, finding_rows),
        _stream(STEP_COLUMNS, list(steps.values())),
        step_rows,
        candidates,
    )
