"""Run the waste ledger over stored traces and store what it finds.

Traces are analysed once they have been idle for `waste_idle_seconds` (no new spans; a late span
or outcome makes a trace due again), by a background thread of the server, and on demand over a
time range (`tokentrail analyze --since 7d`).

A run reads chunks of traces (their spans' typed columns, as an Arrow stream), works out their
ledgers (`tokentrail.analysis.judge`, in-process or, for long ranges, in worker processes) and
writes the rows back as Arrow streams; a second thread reads the next chunk and writes the last
one meanwhile. The oversized-model rule's evidence is what earlier runs stored plus what each chunk
shows; traces whose verdict depends on evidence another chunk of the same run brought are judged
once more at the end, so the result does not depend on how the traces were cut into chunks.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from tokentrail.analysis.judge import (
    FINDING_COLUMNS,
    STEP_COLUMNS,
    WASTE_COLUMNS,
    Judged,
    Known,
    TraceInfo,
    judge,
)
from tokentrail.analysis.ledger import Previous, Thresholds
from tokentrail.analysis.outcomes import traces_with_outcome
from tokentrail.pricing import PriceBook
from tokentrail.server.settings import Settings

__all__ = ["Analyzer", "analyze_range", "analyze_traces"]

logger = logging.getLogger("tokentrail.analysis")

# no FINAL (it doubles the read): the few replaced rows are dropped by `judge.newest_copies`
_SPANS = """
SELECT trace_id, span_id, parent_span_id, step_kind, step_subkind, toUnixTimestamp64Nano(start_time),
    duration_ns, status_code, tool_name, tool_args_hash, tool_args_hash != 0,
    if(response_model != '', response_model, request_model), request_model, provider, agent_name, input_tokens,
    output_tokens, cache_read_tokens, cache_reported, billable, cost_usd, input_hash, system_hash, requested_tools,
    finish_reasons, error_type, ingested_at
FROM spans
WHERE project = {project:String} AND trace_id IN {trace_ids:Array(String)}
ORDER BY trace_id, start_time, span_id
"""

# the outcome comes from the outcomes table, not from attribute maps
_TRACES = traces_with_outcome(
    "t.trace_id, toUnixTimestamp64Nano(t.start_time), t.service_name, t.agent_name, t.user_id, t.conversation_id, "
    "t.task_type",
    "project = {project:String} AND trace_id IN {trace_ids:Array(String)}",
)

# Cache misses across traces: the trace before each of these in its conversation, by the same
# agent (a new task of one chat re-sends its history; another agent's task in the same
# conversation need not), and that trace's last model call.
_CONVERSATIONS = """
SELECT trace_id, conversation_id, agent_name, toUnixTimestamp64Nano(start_time) FROM traces FINAL
WHERE project = {project:String} AND conversation_id IN {conversations:Array(String)}
  AND start_time > fromUnixTimestamp64Nano({since:Int64})
"""

# (no FINAL: a rewritten row repeats its tokens, and argMax picks one of the copies)
_LAST_CALLS = """
SELECT trace_id, argMax(span_id, end_time), argMax(if(request_model != '', request_model, response_model), end_time),
    argMax(input_tokens, end_time), argMax(output_tokens, end_time), toUnixTimestamp64Nano(max(end_time))
FROM spans
WHERE project = {project:String} AND trace_id IN {trace_ids:Array(String)} AND billable = 1 AND step_kind = 'llm'
GROUP BY trace_id
"""

# which models did which kinds of step successfully (the oversized-model rule's evidence, as earlier
# analyses stored it)
_EVIDENCE = """
SELECT step, step_kind, provider, model, groupUniqArray(1000)(trace_id) FROM model_steps FINAL
WHERE project = {project:String} AND start_time > now64(9) - INTERVAL 30 DAY
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

_CHUNK = 1000


@dataclass
class _Chunk:
    ids: list[str]
    spans: bytes
    info: dict[str, TraceInfo]
    previous: dict[str, Previous]


def analyze_traces(
    client: Any,
    project: str,
    trace_ids: Sequence[str],
    prices: PriceBook,
    t: Thresholds = Thresholds(),
    *,
    workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
    _again: bool = True,
) -> int:
    """Analyse these traces of one project and store their ledgers, findings and model steps;
    returns how many were analysed (a trace whose summary is not written yet waits for it).
    With `workers`, a long list is judged in that many processes."""
    ids = list(trace_ids)
    if not ids:
        return 0
    stored = _stored_evidence(client, project)
    chunks = [ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK)]
    pool = _judges(prices, workers) if workers > 1 and len(chunks) > 2 else None
    seen_in: dict[str, set[int]] = defaultdict(set)  # kind of step -> the chunks with evidence of it
    asked: dict[str, tuple[int, set[str]]] = {}  # trace -> (its chunk, the kinds of its short answers)
    judged = 0
    with ThreadPoolExecutor(1, thread_name_prefix="tokentrail-analysis-io") as io, pool or nullcontext():
        fetching = io.submit(_fetch, client, project, chunks[0], t)
        judging: deque[tuple[int, Future[Judged]]] = deque()
        writing: list[Future[None]] = []
        for k in range(len(chunks)):
            chunk = fetching.result()
            if k + 1 < len(chunks):
                fetching = io.submit(_fetch, client, project, chunks[k + 1], t)
            args = (chunk.spans, chunk.info, chunk.previous, stored, project, t)
            if pool is not None:
                judging.append((k, pool.submit(_judge_in_worker, *args)))
            else:
                done: Future[Judged] = Future()
                done.set_result(judge(prices, *args))
                judging.append((k, done))
            while judging and (len(judging) >= max(workers, 1) or k == len(chunks) - 1):
                index, future = judging.popleft()
                result = future.result()
                for step, *_ in result.step_rows:
                    seen_in[step].add(index)
                asked.update({trace: (index, keys) for trace, keys in result.candidates.items()})
                judged += result.traces
                writing.append(io.submit(_write, client, result))
                if progress is not None:
                    progress(judged, len(ids))
        for written in writing:
            written.result()
    again = [trace for trace, (index, keys) in asked.items() if any(seen_in[key] - {index} for key in keys)]
    if again and len(chunks) > 1 and _again:
        # evidence from another chunk of this run may change these verdicts: judge them with all of it
        analyze_traces(client, project, again, prices, t, _again=False)
    return judged


def analyze_range(
    client: Any,
    project: str,
    start_ns: int,
    end_ns: int,
    prices: PriceBook,
    t: Thresholds = Thresholds(),
    progress: Callable[[int, int], None] | None = None,
    workers: int = 2,
) -> int:
    """Re-analyse every trace of a project that started in [start_ns, end_ns); returns how many.
    Long ranges are judged in `workers` processes."""
    ids = [
        r[0]
        for r in client.query(
            "SELECT trace_id FROM traces FINAL WHERE project = {project:String} "
            "AND start_time >= fromUnixTimestamp64Nano({start:Int64}) AND start_time < fromUnixTimestamp64Nano({end:Int64}) "
            "ORDER BY trace_id",
            parameters={"project": project, "start": start_ns, "end": end_ns},
        ).result_rows
    ]
    return analyze_traces(client, project, ids, prices, t, workers=workers, progress=progress)


def _stored_evidence(client: Any, project: str) -> Known:
    known: Known = defaultdict(dict)
    for step, kind, provider, model, traces in client.query(
        _EVIDENCE, parameters={"project": project}
    ).result_rows:
        known[(step, kind, provider)][model] = set(traces)
    return dict(known)


def _judges(prices: PriceBook, workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),  # never fork chDB
        initializer=_init_judge,
        initargs=(prices,),
    )


_judge_prices: PriceBook | None = None


def _init_judge(prices: PriceBook) -> None:
    global _judge_prices
    _judge_prices = prices


def _judge_in_worker(*args: Any) -> Judged:
    assert _judge_prices is not None
    return judge(_judge_prices, *args)


def _fetch(client: Any, project: str, ids: list[str], t: Thresholds) -> _Chunk:
    params = {"project": project, "trace_ids": ids}
    spans = client.raw_query(_SPANS, parameters=params, fmt="ArrowStream")
    info: dict[str, TraceInfo] = {
        r[0]: tuple(r[1:8]) for r in client.query(_TRACES, parameters=params).result_rows
    }  # type: ignore[misc]
    return _Chunk(ids, spans, info, _previous_traces(client, project, info, t))


def _previous_traces(
    client: Any, project: str, info: dict[str, TraceInfo], t: Thresholds
) -> dict[str, Previous]:
    """trace id -> the last model call of the trace before it in its conversation, by its agent."""
    mine = {trace_id: row for trace_id, row in info.items() if row[4]}
    if not mine:
        return {}
    since = min(row[0] for row in mine.values()) - 7 * 86_400 * 10**9
    by_conversation: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    for trace_id, conversation, agent, start_ns in client.query(
        _CONVERSATIONS,
        parameters={
            "project": project,
            "conversations": sorted({r[4] for r in mine.values()}),
            "since": since,
        },
    ).result_rows:
        by_conversation[(conversation, agent)].append((start_ns, trace_id))
    before: dict[str, str] = {}
    for trace_id, row in mine.items():
        starts = sorted(by_conversation.get((row[4], row[2]), []))
        here = next((i for i, (_, other) in enumerate(starts) if other == trace_id), 0)
        if here > 0:
            before[trace_id] = starts[here - 1][1]
    if not before:
        return {}
    last = {
        r[0]: r
        for r in client.query(
            _LAST_CALLS, parameters={"project": project, "trace_ids": sorted(set(before.values()))}
        ).result_rows
    }
    return {trace: Previous(*last[prev]) for trace, prev in before.items() if prev in last}


def _write(client: Any, judged: Judged) -> None:
    for table, columns, data in (
        ("model_steps", STEP_COLUMNS, judged.steps),
        ("waste_findings", FINDING_COLUMNS, judged.findings),
        ("trace_waste", WASTE_COLUMNS, judged.waste),
    ):
        if data:
            client.raw_insert(
                table, [c for c, _ in columns], data, settings={"async_insert": 0}, fmt="ArrowStream"
            )


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
        params = {
            "lookback": 7 * 86_400,
            "idle_ms": int(self.settings.waste_idle_seconds * 1000),
            "limit": limit,
        }
        by_project: dict[str, list[str]] = defaultdict(list)
        for project, trace_id in self.client.query(_PENDING, parameters=params).result_rows:
            by_project[project].append(trace_id)
        done = 0
        for project, ids in by_project.items():
            done += analyze_traces(self.client, project, ids, self.prices, self.thresholds)
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
