"""Run the waste ledger over stored traces and store what it finds.

Traces are analysed once they have been idle for `waste_idle_seconds` (no new spans; a late span
or outcome makes a trace due again), by a background thread of the server, and on demand over a
time range (`tokentrail analyze --since 7d`). The spans of a batch of traces are read in one query
of typed columns; the ledger itself is per trace.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from tokentrail.analysis.ledger import (
    BUCKETS,
    Ledger,
    Previous,
    Thresholds,
    analyze,
    largest_carried_item,
    scoped_step_keys,
    successful_steps,
)
from tokentrail.analysis.outcomes import traces_with_outcome
from tokentrail.collector.pricing import PriceBook
from tokentrail.server.settings import Settings

__all__ = ["Analyzer", "analyze_range", "analyze_traces"]

logger = logging.getLogger("tokentrail.analysis")

_SPAN_COLUMNS = ("trace_id", "span_id", "parent_span_id", "name", "step_kind", "step_subkind", "start_ns", "duration_ns",
                 "status_code", "tool_name", "tool_args_hash", "has_tool_args", "model", "request_model", "provider",
                 "agent_name", "input_tokens", "output_tokens", "cache_read_tokens", "cache_reported", "billable",
                 "cost_usd", "input_hash", "system_hash", "requested_tools", "finish_reasons", "error_type",
                 "outcome")  # fmt: skip

_SPANS = """
SELECT trace_id, span_id, parent_span_id, name, step_kind, step_subkind, toUnixTimestamp64Nano(start_time),
    duration_ns, status_code, tool_name, tool_args_hash, tool_args_hash != 0,
    if(response_model != '', response_model, request_model), request_model, provider, agent_name, input_tokens,
    output_tokens, cache_read_tokens, cache_reported, billable, cost_usd, input_hash, system_hash, requested_tools,
    finish_reasons, error_type,
    '' -- the outcome comes from the outcomes table (traces_with_outcome), not from attribute maps
FROM spans FINAL
WHERE project = {project:String} AND trace_id IN {trace_ids:Array(String)}
ORDER BY trace_id, start_time, span_id
"""

_TRACES = traces_with_outcome(
    "t.trace_id, t.start_time, t.service_name, t.agent_name, t.user_id, t.conversation_id, t.task_type",
    "project = {project:String} AND trace_id IN {trace_ids:Array(String)}",
)

# The trace before each of these in its conversation, by the same agent (a new task of one chat
# re-sends its history; another agent's task in the same conversation need not): its last model
# call, for cache misses across traces.
_PREVIOUS = """
SELECT t.trace_id, p.trace_id, p.span_id, p.model, p.input_tokens, p.output_tokens, p.end_ns
FROM (
    SELECT trace_id, conversation_id, agent_name, start_time FROM traces FINAL
    WHERE project = {project:String} AND trace_id IN {trace_ids:Array(String)} AND conversation_id != ''
) AS t
ASOF JOIN (
    SELECT c.trace_id AS trace_id, c.conversation_id AS conversation_id, c.agent_name AS agent_name,
        c.start_time AS start_time, l.span_id AS span_id, l.model AS model, l.input_tokens AS input_tokens,
        l.output_tokens AS output_tokens, l.end_ns AS end_ns
    FROM (
        SELECT trace_id, conversation_id, agent_name, start_time FROM traces FINAL
        WHERE project = {project:String} AND conversation_id IN (
            SELECT conversation_id FROM traces FINAL
            WHERE project = {project:String} AND trace_id IN {trace_ids:Array(String)} AND conversation_id != '')
    ) AS c
    INNER JOIN (
        SELECT trace_id, argMax(span_id, end_time) AS span_id,
            argMax(if(request_model != '', request_model, response_model), end_time) AS model,
            argMax(input_tokens, end_time) AS input_tokens, argMax(output_tokens, end_time) AS output_tokens,
            toUnixTimestamp64Nano(max(end_time)) AS end_ns
        FROM spans FINAL
        WHERE project = {project:String} AND billable = 1 AND step_kind = 'llm' AND trace_id IN (
            SELECT trace_id FROM traces FINAL WHERE project = {project:String} AND conversation_id IN (
                SELECT conversation_id FROM traces FINAL
                WHERE project = {project:String} AND trace_id IN {trace_ids:Array(String)} AND conversation_id != ''))
        GROUP BY trace_id
    ) AS l ON l.trace_id = c.trace_id
) AS p ON t.conversation_id = p.conversation_id AND t.agent_name = p.agent_name AND t.start_time > p.start_time
"""

# which models did the kinds of step of this batch successfully (the oversized-model rule's evidence)
_EVIDENCE = """
SELECT step, step_kind, provider, model, uniqExact(trace_id), any(trace_id) FROM model_steps FINAL
WHERE project = {project:String} AND step IN {steps:Array(String)} AND start_time > now64(9) - INTERVAL 30 DAY
GROUP BY step, step_kind, provider, model
"""

_PENDING = """
SELECT t.project, t.trace_id FROM (
    SELECT project, trace_id, max(updated_at) AS updated FROM traces
    WHERE updated_at > now64(3) - toIntervalSecond({lookback:UInt32})
    GROUP BY project, trace_id
    HAVING updated < now64(3) - toIntervalMillisecond({idle_ms:UInt32})
) AS t
LEFT JOIN (
    SELECT project, trace_id, max(analyzed_at) AS analyzed FROM trace_waste GROUP BY project, trace_id
) AS w ON t.project = w.project AND t.trace_id = w.trace_id
WHERE w.analyzed < t.updated
ORDER BY t.updated
LIMIT {limit:UInt32}
"""

_WASTE_COLUMNS = ["project", "trace_id", "start_time", "service_name", "agent_name", "user_id", "total_usd",
                  *(f"{b}_usd" for b in BUCKETS), "wasted_tokens", "findings", "unpriced_calls", "outcome",
                  "analyzed_at"]  # fmt: skip
_FINDING_COLUMNS = ["project", "trace_id", "analyzed_at", "detector", "span_id", "related_span_ids", "wasted_usd",
                    "wasted_tokens", "reason", "model", "start_time", "service_name", "agent_name", "user_id", "rule",
                    "evidence", "time_lost_ns"]  # fmt: skip
_STEP_COLUMNS = ["project", "step", "step_kind", "provider", "model", "trace_id", "span_id", "calls", "start_time",
                 "analyzed_at"]  # fmt: skip

_CHUNK = 1000


class _Evidence:
    """Which models did which kinds of step successfully: stored evidence plus this batch's own."""

    def __init__(self) -> None:
        self.models: dict[tuple[str, str, str], dict[str, tuple[set[str], str]]] = defaultdict(dict)

    def add(self, step: str, kind: str, provider: str, model: str, traces: int | set[str], example: str) -> None:
        seen, first = self.models[(step, kind, provider)].get(model, (set(), example))
        if isinstance(traces, set):
            seen |= traces
        else:  # stored rows: count them as distinct placeholder traces
            seen |= {f"stored:{i}" for i in range(traces)}
        self.models[(step, kind, provider)][model] = (seen, first)

    def __call__(self, step: str, kind: str, provider: str) -> list[tuple[str, int, str]]:
        return [(m, len(seen), example) for m, (seen, example) in self.models.get((step, kind, provider), {}).items()]


def analyze_traces(client: Any, project: str, trace_ids: Sequence[str], prices: PriceBook,
                   t: Thresholds = Thresholds()) -> dict[str, Ledger]:  # fmt: skip
    """Analyse these traces of one project and store their ledgers, findings and model steps."""
    ledgers: dict[str, Ledger] = {}
    for i in range(0, len(trace_ids), _CHUNK):
        params = {"project": project, "trace_ids": list(trace_ids[i : i + _CHUNK])}
        spans: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in client.query(_SPANS, parameters=params).result_rows:
            spans[row[0]].append(dict(zip(_SPAN_COLUMNS, row, strict=True)))
        info = {r[0]: r[1:] for r in client.query(_TRACES, parameters=params).result_rows}
        previous = {r[0]: Previous(*r[1:]) for r in client.query(_PREVIOUS, parameters=params).result_rows}
        # First the batch's own evidence (a cheaper model seen in this batch counts at once), then the stored.
        evidence = _Evidence()
        steps: list[list[Any]] = []
        now = datetime.now(tz=UTC)
        for trace_id, rows in spans.items():
            if trace_id not in info:
                continue
            start, *_, task_type, outcome, _ = info[trace_id]
            for step, kind, provider, model, span_id in successful_steps(rows, outcome, t, task_type):
                evidence.add(step, kind, provider, model, {trace_id}, trace_id)
                steps.append([project, step, kind, provider, model, trace_id, span_id, 1, start, now])
        wanted = sorted({key[0] for key in evidence.models} | {
            k for trace_id, rows in spans.items() if trace_id in info
            for k in scoped_step_keys(rows, info[trace_id][5]).values()})  # fmt: skip
        if wanted:
            for step, kind, provider, model, traces, example in client.query(
                    _EVIDENCE, parameters={"project": project, "steps": wanted}).result_rows:  # fmt: skip
                evidence.add(step, kind, provider, model, traces, example)
        waste_rows: list[list[Any]] = []
        finding_rows: list[list[Any]] = []
        for trace_id, rows in spans.items():
            if trace_id not in info:
                continue  # its summary is not written yet; it is analysed when it is
            start, service, agent, user, _, task_type, outcome, _ = info[trace_id]
            ledger = analyze(rows, prices.unit_prices, evidence, t, outcome=outcome, previous=previous.get(trace_id),
                             task_type=task_type)  # fmt: skip
            ledgers[trace_id] = ledger
            waste_rows.append([project, trace_id, start, service, agent, user, ledger.total_usd,
                               *(ledger.buckets[b] for b in BUCKETS), ledger.wasted_tokens, len(ledger.findings),
                               ledger.unpriced_calls, ledger.outcome, now])  # fmt: skip
            finding_rows.extend(
                [project, trace_id, now, f.detector, f.span_id, f.related, f.wasted_usd, f.wasted_tokens, f.reason,
                 f.model, start, service, agent, user, f.rule, json.dumps(f.evidence, default=str), f.time_lost_ns]
                for f in ledger.findings
            )  # fmt: skip
        _name_carried_items(client, project, finding_rows)
        if steps:
            client.insert("model_steps", steps, column_names=_STEP_COLUMNS, settings={"async_insert": 0})
        if finding_rows:
            client.insert("waste_findings", finding_rows, column_names=_FINDING_COLUMNS, settings={"async_insert": 0})
        if waste_rows:
            client.insert("trace_waste", waste_rows, column_names=_WASTE_COLUMNS, settings={"async_insert": 0})
    return ledgers


def _name_carried_items(client: Any, project: str, rows: list[list[Any]]) -> None:
    """Where message content was captured, a context-bloat finding also names the largest thing
    the call carried along (token counts alone cannot say which tool output it was)."""
    bloat = {(r[1], r[4]): r for r in rows if r[3] == "context_bloat"}
    if not bloat:
        return
    # the billed leaf may be a client library's own span under ours; the content is then on ours
    spans = client.query(
        "SELECT trace_id, span_id, parent_span_id, input_messages FROM spans FINAL WHERE project = {project:String} "
        "AND trace_id IN {trace_ids:Array(String)} AND step_kind = 'llm'",
        parameters={"project": project, "trace_ids": sorted({t for t, _ in bloat})},
    ).result_rows  # fmt: skip
    content = {(t, s): m for t, s, _, m in spans if m}
    parents = {(t, s): p for t, s, p, _ in spans}
    for (trace_id, span_id), row in bloat.items():
        messages = content.get((trace_id, span_id)) or content.get((trace_id, parents.get((trace_id, span_id), "")))
        item = largest_carried_item(messages) if messages else None
        if item is not None:
            row[8] += f"; the largest item carried along is {item[0]}, ~{item[1]:,} tokens"


def analyze_range(client: Any, project: str, start_ns: int, end_ns: int, prices: PriceBook,
                  t: Thresholds = Thresholds(), progress: Callable[[int, int], None] | None = None) -> int:  # fmt: skip
    """Re-analyse every trace of a project that started in [start_ns, end_ns); returns how many."""
    ids = [r[0] for r in client.query(
        "SELECT trace_id FROM traces FINAL WHERE project = {project:String} "
        "AND start_time >= fromUnixTimestamp64Nano({start:Int64}) AND start_time < fromUnixTimestamp64Nano({end:Int64}) "
        "ORDER BY trace_id", parameters={"project": project, "start": start_ns, "end": end_ns}).result_rows]  # fmt: skip
    done = 0
    for i in range(0, len(ids), _CHUNK * 5):
        batch = ids[i : i + _CHUNK * 5]
        analyze_traces(client, project, batch, prices, t)
        done += len(batch)
        if progress is not None:
            progress(done, len(ids))
    return done


class Analyzer:
    """Background analysis of traces that have gone quiet."""

    def __init__(self, client: Any, settings: Settings, prices: PriceBook, *, interval: float = 5.0) -> None:
        self.client = client
        self.settings = settings
        self.prices = prices
        self.interval = interval
        self.thresholds = settings.waste
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.analyzed = 0

    def run_once(self, limit: int = 5000) -> int:
        params = {"lookback": 7 * 86_400, "idle_ms": int(self.settings.waste_idle_seconds * 1000), "limit": limit}
        by_project: dict[str, list[str]] = defaultdict(list)
        for project, trace_id in self.client.query(_PENDING, parameters=params).result_rows:
            by_project[project].append(trace_id)
        done = 0
        for project, ids in by_project.items():
            done += len(analyze_traces(self.client, project, ids, self.prices, self.thresholds))
        self.analyzed += done
        return done

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                while self.run_once() and not self._stop.is_set():
                    pass
            except Exception:
                logger.exception("waste analysis step failed; retrying")
                time.sleep(self.interval)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tokentrail-analysis", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

