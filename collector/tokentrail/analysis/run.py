"""Run the waste ledger over stored traces and store what it finds.

Traces are analysed once they have been idle for `waste_idle_seconds` (no new spans; a late span
or outcome makes a trace due again), by a background thread of the server, and on demand over a
time range (`tokentrail analyze --since 7d`).

A run reads chunks of traces (their spans' typed columns, as an Arrow stream), works out their
ledgers (`tokentrail.analysis.judge`, in-process or, for long ranges, in worker processes) and
writes the rows back as Arrow streams; a second thread reads the next chunks and writes the last
ones meanwhile, several chunks a query and an insert. A run of several chunks first reads, once
for up to 50 chunks, its traces' summaries and the earlier traces of their conversations (the
last model call and the main run's steps of each), which each chunk's judgement needs: its traces
are spread over the whole table, and so are their conversations. The oversized-model rule's
evidence is what earlier runs stored plus what each chunk shows; traces whose verdict depends on
evidence another chunk of the same run brought are judged once more at the end, so the result
does not depend on how the traces were cut into chunks.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from bisect import bisect_right
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tokentrail.analysis.calls import asked_model
from tokentrail.analysis.judge import Judged, Known, TraceInfo, init_worker, judge, judge_in_worker
from tokentrail.analysis.ledger import Previous, Thresholds
from tokentrail.pricing import PriceBook
from tokentrail.server.settings import Settings
from tokentrail.store import claims
from tokentrail.store import ledger as stored

__all__ = ["Analyzer", "analyze_range", "analyze_traces"]

logger = logging.getLogger("tokentrail.analysis")

_CHUNK = 1000
#: chunks read in one query, and written in one insert a table: a query or an insert costs a
#: good part of its time whatever its size
_CHUNKS_PER_READ = 5
_CHUNKS_PER_WRITE = 5
#: chunks whose conversations are read together: ~50,000 traces' earlier traces take a few
#: hundred MB
_CHUNKS_PER_RUN = 50


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
    known = _stored_evidence(client, project)
    chunks = [ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK)]
    pool = _judges(prices, workers) if workers > 1 and len(chunks) > 2 else None
    seen_in: dict[str, set[int]] = defaultdict(set)  # kind of step -> the chunks with evidence of it
    asked: dict[str, tuple[int, set[str]]] = {}  # trace -> (its chunk, the kinds of its short answers)
    judged = 0
    reads = [chunks[i : i + _CHUNKS_PER_READ] for i in range(0, len(chunks), _CHUNKS_PER_READ)]
    with ThreadPoolExecutor(1, thread_name_prefix="tokentrail-analysis-io") as io, pool or nullcontext():
        # a run of several chunks reads its summaries and conversations once, for all of them
        # (in parts of up to `_CHUNKS_PER_RUN` chunks: what it reads of them takes memory)
        runs: dict[int, Future[_Earlier | None]] = {}

        per_part = max(1, _CHUNKS_PER_RUN // _CHUNKS_PER_READ)  # reads

        def fetch(r: int) -> Future[list[_Chunk]]:
            part = r // per_part
            if part not in runs:
                runs.clear()  # the part before is no longer needed
                mine = [t for read in reads[part * per_part : (part + 1) * per_part] for c in read for t in c]
                runs[part] = io.submit(_Earlier.of, client, project, mine) if len(chunks) > 1 else _none()
            return io.submit(_fetch_in, client, project, reads[r], runs[part])

        fetching = fetch(0)
        judging: deque[tuple[int, Future[Judged]]] = deque()
        writing: list[Future[None]] = []
        unwritten: list[Judged] = []
        # one chunk more than there are workers waits its turn: a worker that finishes first
        # starts on it at once rather than waiting for the oldest chunk's result to be taken
        depth = workers + 1 if pool is not None else 1
        k = 0
        for r in range(len(reads)):
            fetched = fetching.result()
            if r + 1 < len(reads):
                fetching = fetch(r + 1)
            for chunk in fetched:
                args = (chunk.spans, chunk.info, chunk.previous, known, project, t)
                if pool is not None:
                    judging.append((k, pool.submit(judge_in_worker, *args)))
                else:
                    done: Future[Judged] = Future()
                    done.set_result(judge(prices, *args))
                    judging.append((k, done))
                k += 1
                while judging and (len(judging) >= depth or k == len(chunks)):
                    index, future = judging.popleft()
                    result = future.result()
                    for step, *_ in result.step_rows:
                        seen_in[step].add(index)
                    asked.update({trace: (index, keys) for trace, keys in result.candidates.items()})
                    judged += result.traces
                    unwritten.append(result)
                    if len(unwritten) >= _CHUNKS_PER_WRITE or k == len(chunks):
                        writing.append(io.submit(_write, client, unwritten))
                        unwritten = []
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
    ids = stored.trace_ids_started(client, project, start_ns, end_ns)
    return analyze_traces(client, project, ids, prices, t, workers=workers, progress=progress)


def _stored_evidence(client: Any, project: str) -> Known:
    known: Known = defaultdict(dict)
    for row in stored.evidence(client, project):
        known[(row["step"], row["step_kind"], row["provider"])][row["model"]] = set(row["traces"])
    return dict(known)


def _judges(prices: PriceBook, workers: int) -> ProcessPoolExecutor:
    # the workers import only tokentrail.analysis.judge: no database client
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),  # never fork chDB
        initializer=init_worker,
        initargs=(prices,),
    )


def _fetch(client: Any, project: str, chunks: list[list[str]], run: _Earlier | None = None) -> list[_Chunk]:
    """These chunks' spans (read at once), summaries and previous traces: from what `run` read for
    the whole run, else (one chunk) read for this chunk alone."""
    ids = [trace_id for chunk in chunks for trace_id in chunk]
    spans = stored.spans_stream(client, project, ids)
    if run is None:
        run = _Earlier(client, project, _summaries(client, project, ids))
    parts = _split(pa.ipc.open_stream(spans).read_all(), chunks) if len(chunks) > 1 else [spans]
    fetched = []
    for chunk, part in zip(chunks, parts, strict=True):
        mine = {trace_id: run.info[trace_id] for trace_id in chunk if trace_id in run.info}
        fetched.append(_Chunk(chunk, part, mine, _previous_traces(run, mine)))
    return fetched


def _split(table: pa.Table, chunks: list[list[str]]) -> list[bytes]:
    """Each chunk's rows of spans read for several chunks, as a stream of its own. The rows come
    in trace id order: when the chunks' ids do too (a range's are read in id order), each chunk's
    rows are one slice of them, and otherwise they are picked out."""
    ids = pa.array([trace_id for chunk in chunks for trace_id in chunk], table.schema.field("trace_id").type)
    where = pc.index_in(table["trace_id"], value_set=ids)  # each row's trace's place in `ids`
    in_order = table.num_rows < 2 or pc.all(pc.less_equal(where[:-1], where[1:])).as_py()
    parts = []
    start = 0
    for chunk in chunks:
        end = start + len(chunk)
        if in_order:
            first, last = (pc.sum(pc.less(where, bound), min_count=0).as_py() for bound in (start, end))
            parts.append(_stream(table.slice(first, last - first)))
        else:
            parts.append(_stream(table.filter(pc.and_(pc.greater_equal(where, start), pc.less(where, end)))))
        start = end
    return parts


def _stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as out:
        out.write_table(table)
    return bytes(sink.getvalue())


def _fetch_in(
    client: Any, project: str, chunks: list[list[str]], run: Future[_Earlier | None]
) -> list[_Chunk]:
    # on the I/O thread, after the run's reading (submitted to it before)
    return _fetch(client, project, chunks, run.result())


def _none() -> Future[_Earlier | None]:
    done: Future[_Earlier | None] = Future()
    done.set_result(None)
    return done


#: trace ids a query names at most: ClickHouse reads far longer IN lists very slowly
_IDS_PER_QUERY = 5000
#: how far back a conversation's earlier traces are looked for
_CONVERSATION_LOOKBACK_NS = 7 * 86_400 * 10**9


def _summaries(client: Any, project: str, ids: list[str]) -> dict[str, TraceInfo]:
    info: dict[str, TraceInfo] = {}
    for i in range(0, len(ids), _IDS_PER_QUERY):
        batch = ids[i : i + _IDS_PER_QUERY]
        info.update(
            {r["trace_id"]: TraceInfo.from_row(r) for r in stored.trace_summaries(client, project, batch)}
        )
    return info


# (conversation, agent) -> its traces' (start_ns, trace_id), in start order
_Conversations = dict[tuple[str, str], list[tuple[int, str]]]


class _Earlier:
    """The summaries of some traces, and the earlier traces of their conversations (their order,
    since a week before the first of them; the last model call and the main run's steps of those
    it is asked for). A run of several chunks reads them once for all its chunks: a chunk's traces
    are spread over the whole table, and so are their conversations, and read per chunk they made
    one scattered read of most of the table each. A run of one chunk reads them for that chunk."""

    def __init__(self, client: Any, project: str, info: dict[str, TraceInfo]) -> None:
        self.client, self.project = client, project
        self.info = info
        mine = {trace_id: trace for trace_id, trace in self.info.items() if trace.conversation_id}
        self.since = min((t.start_ns for t in mine.values()), default=0) - _CONVERSATION_LOOKBACK_NS
        conversations = sorted({t.conversation_id for t in mine.values()})
        rows = [
            row
            for i in range(0, len(conversations), _IDS_PER_QUERY)
            for row in stored.conversation_traces(
                client, project, conversations[i : i + _IDS_PER_QUERY], self.since
            )
        ]
        self.conversations = _by_conversation(rows)
        self.last: dict[str, Previous] = {}
        self.steps: dict[str, list[_Step]] = defaultdict(list)
        self._last_read: set[str] = set()
        self._steps_read: set[str] = set()
        self.chains(mine, self.since)

    @classmethod
    def of(cls, client: Any, project: str, ids: list[str]) -> _Earlier:
        """For these traces, their summaries read first."""
        return cls(client, project, _summaries(client, project, ids))

    def chains(self, mine: dict[str, TraceInfo], since: int) -> dict[str, list[str]]:
        """`_chains` of these traces, counting only the traces that started after `since` (as
        `stored.conversation_traces` would have given them), with the last call of each chain's
        newest trace and the steps of every trace in them read."""
        earlier = _chains(self.conversations, mine, since)
        for batch in _batches({chain[-1] for chain in earlier.values()} - self._last_read):
            self.last.update(
                {
                    r["trace_id"]: _last_call(r)
                    for r in stored.last_model_calls(self.client, self.project, batch)
                }
            )
            self._last_read.update(batch)
        for batch in _batches({t for chain in earlier.values() for t in chain} - self._steps_read):
            for row in stored.main_run_steps(self.client, self.project, batch):
                self.steps[row["trace_id"]].append(_step(row))
            self._steps_read.update(batch)
        return earlier


def _batches(ids: set[str]) -> list[list[str]]:
    """`ids` in order, at most `_IDS_PER_QUERY` a query."""
    ordered = sorted(ids)
    return [ordered[i : i + _IDS_PER_QUERY] for i in range(0, len(ordered), _IDS_PER_QUERY)]


def _last_call(r: dict[str, Any]) -> Previous:
    return Previous(
        r["trace_id"], r["span_id"], asked_model(r), r["input_tokens"], r["output_tokens"], r["end_ns"]
    )


def _by_conversation(rows: list[dict[str, Any]]) -> _Conversations:
    found: _Conversations = defaultdict(list)
    for row in rows:
        found[(row["conversation_id"], row["agent_name"])].append((row["start_ns"], row["trace_id"]))
    for starts in found.values():
        starts.sort()
    return dict(found)


def _chains(conversations: _Conversations, mine: dict[str, TraceInfo], since: int) -> dict[str, list[str]]:
    """trace -> the traces before it in its conversation by its agent, oldest first: up to
    `_READS_LOOKBACK` of those that started after `since`."""
    earlier: dict[str, list[str]] = {}
    for trace_id, trace in mine.items():
        starts = conversations.get((trace.conversation_id, trace.agent_name), [])
        starts = starts[bisect_right(starts, (since, chr(0x10FFFF))) :]
        here = next((i for i, (_, other) in enumerate(starts) if other == trace_id), 0)
        if here > 0:
            earlier[trace_id] = [t for _, t in starts[max(0, here - _READS_LOOKBACK) : here]]
    return earlier


def _previous_traces(run: _Earlier, info: dict[str, TraceInfo]) -> dict[str, Previous]:
    """trace id -> the last model call of the trace before it in its conversation, by its agent,
    and the reads of the conversation's last few traces still in its context. (A new task of one
    chat re-sends its history; another agent's task in the same conversation need not.) `info`:
    a chunk's traces, all among `run`'s, so that their week back starts no earlier than its."""
    mine = {trace_id: trace for trace_id, trace in info.items() if trace.conversation_id}
    if not mine:
        return {}
    since = min(trace.start_ns for trace in mine.values()) - _CONVERSATION_LOOKBACK_NS
    earlier = run.chains(mine, since)
    return {
        trace: replace(run.last[chain[-1]], reads=_fresh_reads([run.steps.get(t, []) for t in chain]))
        for trace, chain in earlier.items()
        if chain[-1] in run.last
    }


#: how many of a conversation's earlier traces are looked through for reads still in the context
_READS_LOOKBACK = 5


# a main run's step as the reads need it: whether it only read, what it read (tool, arguments
# hash; None: no arguments recorded), its span
_Step = tuple[bool, tuple[str, int] | None, str]


def _step(row: dict[str, Any]) -> _Step:
    """A row of `stored.main_run_steps`, kept small: a run holds those of ~300,000 steps."""
    what = (row["tool_name"], int(row["tool_args_hash"])) if row["has_tool_args"] else None
    return row["step_subkind"] == "read", what, row["span_id"]


def _fresh_reads(traces: list[list[_Step]]) -> dict[tuple[str, int], str]:
    """The reads of these main runs (oldest first) that nothing after them may have changed: a
    tool that may write, or a compaction, clears what was read before it."""
    seen: dict[tuple[str, int], str] = {}
    for steps in traces:
        for only_reads, what, span_id in steps:
            if only_reads:
                if what is not None:
                    seen.setdefault(what, span_id)
            else:
                seen.clear()
    return seen


def _write(client: Any, judged: list[Judged]) -> None:
    """Insert the rows of these chunks, one insert a table. trace_waste last: a trace's ledger
    row says its analysis is complete."""
    streams = {
        "model_steps": [j.steps for j in judged],
        "waste_findings": [j.findings for j in judged],
        "trace_waste": [j.waste for j in judged],
    }
    stored.write_streams(client, {table: _joined(parts) for table, parts in streams.items()})


def _joined(streams: list[bytes]) -> bytes:
    """Arrow streams of one schema as one (empty bytes: no rows)."""
    tables = [pa.ipc.open_stream(s).read_all() for s in streams if s]
    if len(tables) <= 1:
        return next((s for s in streams if s), b"")
    return _stream(pa.concat_tables(tables))


#: a claimed trace not analysed within this long (its collector died) is claimed again
CLAIM_LEASE_SECONDS = 600


class Analyzer:
    """Background analysis of traces that have gone quiet. Each due trace is claimed first
    (tokentrail.store.claims): of several collectors on one database, one analyses it."""

    def __init__(self, client: Any, settings: Settings, prices: PriceBook, *, interval: float = 5.0) -> None:
        self.client = client
        self.name = claims.holder_name()
        self.settings = settings
        self.prices = prices
        self.interval = interval
        self.thresholds = settings.waste
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.analyzed = 0
        #: due traces another collector claimed first
        self.left_to_others = 0

    def run_once(self, limit: int = 5000) -> int:
        params = {
            "lookback_s": 7 * 86_400,
            "idle_ms": int(self.settings.waste_idle_seconds * 1000),
            "limit": limit,
        }
        due = [
            (r["project"], r["trace_id"], r["version"]) for r in stored.pending_traces(self.client, **params)
        ]
        won = claims.claim(self.client, "analysis", self.name, due, CLAIM_LEASE_SECONDS)
        self.left_to_others += len(due) - len(won)
        by_project: dict[str, list[str]] = defaultdict(list)
        for project, trace_id, version in due:
            if (project, trace_id, version) in won:
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
