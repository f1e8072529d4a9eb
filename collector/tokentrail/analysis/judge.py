"""Work out the ledgers of a chunk of traces, from its spans as read (an Arrow stream), into rows
for `trace_waste`, `waste_findings` and `model_steps` (Arrow streams again). No database here: the
same function runs in-process or in a worker process, which only ever sees bytes and plain data.
"""

from __future__ import annotations

import gc
import json
import math
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from itertools import repeat
from operator import attrgetter
from typing import Any, NamedTuple

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from tokentrail.analysis.ledger import (
    BUCKETS,
    Finding,
    Ledger,
    Previous,
    Thresholds,
    analyze,
    successful_steps,
)
from tokentrail.server.no_pandas import leave_out_pandas

__all__ = [
    "FINDING_SCHEMA",
    "STEP_SCHEMA",
    "WASTE_SCHEMA",
    "Evidence",
    "Judged",
    "Known",
    "TraceInfo",
    "init_worker",
    "judge",
    "judge_in_worker",
    "newest_copies",
]


class TraceInfo(NamedTuple):
    """What a trace's summary and its outcome verdict say (`tokentrail.store.ledger.trace_summaries`)."""

    start_ns: int
    service_name: str
    agent_name: str
    user_id: str
    conversation_id: str
    task_type: str
    outcome: str  # "success", "failure" or "" (unknown)
    repository: str = ""

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TraceInfo:
        return cls(
            row["start_ns"],
            row["service_name"],
            row["agent_name"],
            row["user_id"],
            row["conversation_id"],
            row["task_type"],
            row["outcome"],
            row.get("repository", ""),
        )


_S, _F, _U64, _NS = pa.string(), pa.float64(), pa.uint64(), pa.timestamp("ns")
_MS = pa.timestamp("ms")
#: the rows written to `trace_waste`, `waste_findings` and `model_steps`, by column name
WASTE_SCHEMA = pa.schema(
    [
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
        ("detectors", pa.list_(_S)),
        ("detector_findings", pa.list_(pa.uint32())),
        ("detector_usd", pa.list_(_F)),
        ("detector_tokens", pa.list_(_U64)),
        ("detector_top_usd", pa.list_(_F)),
        ("detectors_recorded", pa.uint8()),
        ("call_models", pa.list_(_S)),
        ("call_model_usd", pa.list_(_F)),
        ("finding_models", pa.list_(_S)),
        ("finding_detectors", pa.list_(_S)),
        ("finding_counts", pa.list_(pa.uint32())),
        ("finding_usd", pa.list_(_F)),
        ("finding_tokens", pa.list_(_U64)),
        ("models_recorded", pa.uint8()),
    ]
)
FINDING_SCHEMA = pa.schema(
    [
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
)
STEP_SCHEMA = pa.schema(
    [
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
)


_plain = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _compact(evidence: Any) -> str | bytes:
    """A finding's evidence as compact JSON (UTF-8, non-ASCII text as is), the evidence column's
    text. A chunk's ~14,000 findings each encode theirs: orjson takes ~60% of the time `json`
    takes. What orjson refuses (an integer beyond 64 bits) is written by `json`. A float may be
    spelled otherwise (`0.00001` for `1e-05`) but reads back the same; NaN and infinities, which
    JSON does not have, are written null."""
    try:
        return orjson.dumps(evidence)
    except TypeError:
        return _plain(_finite(evidence))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


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


class _Columns:
    """A table's rows gathered column by column, by name, into one Arrow stream. The columns a
    group of rows shares (a trace's own, down its findings) hold one value a group, repeated in
    Arrow when the stream is made rather than as a Python value a row."""

    def __init__(self, schema: pa.Schema, shared: Iterable[str] = ()) -> None:
        self.schema = schema
        self.columns: dict[str, list[Any]] = {name: [] for name in schema.names}
        self.shared = frozenset(shared)
        self.group_of: list[int] = []  # each row's group, when columns are shared
        self.groups = 0
        self.rows = 0

    def add(self, row: dict[str, Any]) -> None:
        """One row, of a table without shared columns."""
        for name, value in row.items():
            self.columns[name].append(value)
        self.rows += 1

    def extend(self, count: int, shared: dict[str, Any]) -> None:
        """`count` rows of one group, with its `shared` values (their own columns are added by
        name, a value a row)."""
        for name, value in shared.items():
            self.columns[name].append(value)
        self.group_of.extend([self.groups] * count)
        self.groups += 1
        self.rows += count

    def stream(self) -> bytes:
        """The rows as one Arrow stream; empty bytes for no rows: nothing to insert. A column left
        out or filled short makes the batch fail, never shifts it."""
        if not self.rows:
            return b""
        rows = pa.array(self.group_of, pa.int64()) if self.shared else None
        arrays = []
        for column in self.schema:
            values = pa.array(self.columns[column.name], type=column.type)
            arrays.append(values.take(rows) if rows is not None and column.name in self.shared else values)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, self.schema) as out:
            out.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
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


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    """The table's rows as dicts, built column by column (converting a whole column at once is
    many times faster than row by row). A text column of few values (a model, a kind of step) is
    converted through its distinct values: its rows share one string object a value, made and
    freed once rather than once a row. The column names, and those shared values, are the
    interpreter's own copies of those strings (`sys.intern`): the rules look each row up by names
    written in the code, and compare and index those values again and again, which the same
    object answers at once where an equal one is compared character by character."""
    columns = []
    for column in table.columns:
        if pa.types.is_string(column.type) and len(column) > 1 and not column.null_count:
            encoded = column.combine_chunks().dictionary_encode()
            if len(encoded.dictionary) <= len(column) // 2:
                values = list(map(sys.intern, encoded.dictionary.to_pylist()))
                columns.append(list(map(values.__getitem__, encoded.indices.to_pylist())))
                continue
        columns.append(column.to_pylist())
    names = list(map(sys.intern, table.schema.names))
    # (the columns of a table are all as long: no need to check each row)
    return list(map(dict, map(zip, repeat(names), zip(*columns, strict=False))))


def _by_trace(table: pa.Table) -> dict[str, list[dict[str, Any]]]:
    """`newest_copies` of a table's rows. When no span id comes twice, the usual case (else a span
    may have a second copy), the rows hold only what the rules read (not the trace id, nor when
    the row was written), and each run of rows of one trace (the query orders them by trace) is
    cut out of the list in one piece."""
    span_ids = table.column("span_id")
    if pc.count_distinct(span_ids).as_py() < len(span_ids):
        return newest_copies(_rows(table))
    if not len(span_ids):
        return {}
    trace_ids = table.column("trace_id").combine_chunks()
    rows = _rows(table.drop_columns([c for c in ("trace_id", "ingested_at") if c in table.schema.names]))
    changes = pc.indices_nonzero(pc.not_equal(trace_ids[1:], trace_ids[:-1])).to_pylist()
    starts = [0, *(i + 1 for i in changes)]
    spans: dict[str, list[dict[str, Any]]] = {}
    for trace_id, start, end in zip(
        trace_ids.take(starts).to_pylist(), starts, [*starts[1:], len(rows)], strict=True
    ):
        if trace_id in spans:  # rows not in trace order: the runs of a trace, one after the other
            spans[trace_id].extend(rows[start:end])
        else:
            spans[trace_id] = rows[start:end]
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
    """The ledgers of a chunk of traces. `prices`: a PriceBook; `spans_stream`: the chunk's spans
    (`tokentrail.store.ledger.spans_stream`); `info`: per trace its summary and outcome (a trace
    without one is left for later: its summary is not written yet); `previous`: per trace the last
    model call of its conversation's previous trace."""
    spans = _by_trace(pa.ipc.open_stream(spans_stream).read_all())
    traces = {trace_id: rows for trace_id, rows in spans.items() if trace_id in info}
    now = int(datetime.now(tz=UTC).timestamp() * 1000)
    # a chunk asks for a few models' windows over and over; their prices too, but for calls of
    # all sizes (a price may depend on the input's size): few calls ask for one a second time
    unit_prices, windows = prices.unit_prices, cache(prices.context_window)
    evidence = Evidence(stored)
    steps = _Steps(project, now)
    for trace_id, rows in traces.items():
        steps.add(trace_id, rows, info[trace_id], evidence, t)
    waste, found = _Columns(WASTE_SCHEMA), _Columns(FINDING_SCHEMA, _WHERE)
    for trace_id, rows in traces.items():
        trace = info[trace_id]
        ledger = analyze(
            rows,
            unit_prices,
            evidence,
            t,
            outcome=trace.outcome,
            previous=previous.get(trace_id),
            task_type=trace.task_type,
            windows=windows,
            repository=trace.repository,
        )
        where = _where(project, trace_id, trace, now)
        waste.add({**where, **_ledger_columns(ledger)})
        found.extend(len(ledger.findings), where)
        _finding_columns(found, ledger.findings)
    step_rows = _Columns(STEP_SCHEMA)
    for row in steps.rows.values():
        step_rows.add(row)
    return Judged(
        waste.rows, waste.stream(), found.stream(), step_rows.stream(), steps.seen, steps.candidates
    )


_worker_prices: Any = None


def init_worker(prices: Any) -> None:
    """A worker process's start: the price book its judgements use (and no pandas,
    `tokentrail.server.no_pandas`)."""
    global _worker_prices
    leave_out_pandas()
    _worker_prices = prices


def judge_in_worker(*args: Any) -> Judged:
    """`judge` in a worker process, with the price book it started with. The cycle collector
    waits meanwhile: a chunk makes a few hundred thousand objects that live until its rows are
    written, and would be scanned again and again for nothing (the process does nothing else)."""
    assert _worker_prices is not None
    gc.disable()
    try:
        return judge(_worker_prices, *args)
    finally:
        gc.enable()


class _Steps:
    """The oversized-model rule's evidence a chunk shows: `model_steps` rows, (step, step kind,
    provider, model, trace id) for the rest of the run, and the traces whose verdicts depend on it."""

    def __init__(self, project: str, now: int) -> None:
        self.project, self.now = project, now
        self.rows: dict[tuple[str, ...], dict[str, Any]] = {}
        self.seen: list[tuple[str, str, str, str, str]] = []
        self.candidates: dict[str, set[str]] = {}

    def add(
        self, trace_id: str, spans: list[dict[str, Any]], trace: TraceInfo, evidence: Evidence, t: Thresholds
    ) -> None:
        found, keys = successful_steps(spans, trace.outcome, t, trace.task_type, trace.repository)
        if keys:
            self.candidates[trace_id] = keys
        for step, kind, provider, model, span_id in found:
            evidence.add(step, kind, provider, model, (trace_id,))
            self.seen.append((step, kind, provider, model, trace_id))
            row = self.rows.setdefault(
                (step, kind, provider, model, trace_id),
                {
                    "project": self.project,
                    "step": step,
                    "step_kind": kind,
                    "provider": provider,
                    "model": model,
                    "trace_id": trace_id,
                    "span_id": span_id,
                    "calls": 0,
                    "start_time": trace.start_ns,
                    "analyzed_at": self.now,
                },
            )
            row["calls"] += 1


#: the columns a trace's ledger and its findings share
_WHERE = ("project", "trace_id", "start_time", "service_name", "agent_name", "user_id", "analyzed_at")
_BUCKET_COLUMNS = tuple(f"{b}_usd" for b in BUCKETS)


def _where(project: str, trace_id: str, trace: TraceInfo, now: int) -> dict[str, Any]:
    """The columns a trace's ledger and its findings share (`_WHERE`)."""
    return dict(
        zip(
            _WHERE,
            (project, trace_id, trace.start_ns, trace.service_name, trace.agent_name, trace.user_id, now),
            strict=True,
        )
    )


def _ledger_columns(ledger: Ledger) -> dict[str, Any]:
    return {
        "total_usd": ledger.total_usd,
        **{name: ledger.buckets[b] for name, b in zip(_BUCKET_COLUMNS, BUCKETS, strict=True)},
        "wasted_tokens": ledger.wasted_tokens,
        "findings": len(ledger.findings),
        "unpriced_calls": ledger.unpriced_calls,
        "outcome": ledger.outcome,
        **_per_detector(ledger.findings),
        **_per_model(ledger),
    }


def _sums(findings: list[Finding], key: Callable[[Finding], Any]) -> dict[Any, list[Any]]:
    """The findings summed per `key`, in the order the keys first come: [findings, usd, tokens,
    top usd] (a finding of unknown price counts $0, as the report counts it)."""
    sums: dict[Any, list[Any]] = {}
    for f in findings:
        dollars, k = f.wasted_usd or 0.0, key(f)
        found = sums.get(k)
        if found is None:
            sums[k] = [1, dollars, f.wasted_tokens, dollars]
        else:
            found[0] += 1
            found[1] += dollars
            found[2] += f.wasted_tokens
            found[3] = max(found[3], dollars)
    return sums


def _per_detector(findings: list[Finding]) -> dict[str, Any]:
    """The findings summed per detector, in the order the detectors first found something: the
    ledger's `detector_*` columns."""
    sums = _sums(findings, attrgetter("detector"))
    return {
        "detectors": list(sums),
        "detector_findings": [s[0] for s in sums.values()],
        "detector_usd": [s[1] for s in sums.values()],
        "detector_tokens": [s[2] for s in sums.values()],
        "detector_top_usd": [s[3] for s in sums.values()],
        "detectors_recorded": 1,
    }


def _per_model(ledger: Ledger) -> dict[str, Any]:
    """The ledger's cost per model, and its findings summed per model and detector: the ledger's
    `call_*`, `finding_*` columns."""
    sums = _sums(ledger.findings, attrgetter("model", "detector"))
    return {
        "call_models": list(ledger.model_usd),
        "call_model_usd": list(ledger.model_usd.values()),
        "finding_models": [model for model, _ in sums],
        "finding_detectors": [detector for _, detector in sums],
        "finding_counts": [s[0] for s in sums.values()],
        "finding_usd": [s[1] for s in sums.values()],
        "finding_tokens": [s[2] for s in sums.values()],
        "models_recorded": 1,
    }


_FINDING_FIELDS = (
    ("detector", "detector"),
    ("span_id", "span_id"),
    ("related_span_ids", "related"),
    ("wasted_usd", "wasted_usd"),
    ("wasted_tokens", "wasted_tokens"),
    ("reason", "reason"),
    ("model", "model"),
    ("rule", "rule"),
    ("evidence", "evidence"),
    ("time_lost_ns", "time_lost_ns"),
)


def _finding_columns(columns: _Columns, findings: list[Finding]) -> None:
    """Findings' own columns, the evidence encoded as JSON: a trace's, as soon as its ledger is
    made, while its findings are still in the processor's cache."""
    for name, attribute in _FINDING_FIELDS:
        values = map(attrgetter(attribute), findings)
        columns.columns[name].extend(map(_compact, values) if name == "evidence" else values)
