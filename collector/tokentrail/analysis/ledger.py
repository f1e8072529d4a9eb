"""The waste ledger of one trace: every dollar of model spend in exactly one bucket.

Pure functions over a trace's spans (typed columns only), so the rules are tested without a
database and the same code runs for one trace or a million. The buckets add up to the trace's
cost by construction: each rule takes its share from what earlier rules left of a call's cost,
and whatever is left is productive. Every finding names its rule, the spans it compared and the
numbers behind its dollars (`evidence`).

Terms. A *model call* is a leaf span of a model invocation (an LLM or embedding span; a framework
span around the client's own span repeats its usage and is not billed again). It *failed* when
it ended in an error (status, `error.type`, an HTTP 4xx/5xx) or was cut off at the output limit.
A failed call that reported no usage was not billed: it costs $0 but still counts as an attempt.
An *agent run* is the subtree of the nearest agent span (the whole trace when there is none).

Definite waste: the work was thrown away. First match takes the call's whole remaining cost.
1. retry. (a) A failed model call, tried again later in the same agent run with the same model.
   (b) An HTTP attempt under a model call (an HTTP client span of httpx, requests, aiohttp or
   urllib3 instrumentation, or Tokentrail's own retry span) that failed with 408/409/429/5xx or
   a transport error and was followed by another attempt: the client retried on its own. (c) A
   model call its emitter numbers as attempt N (Claude Code) whose earlier attempts left no span.
   Waste = the failed call's cost ($0 for unbilled attempts); the time lost is recorded.
2. loop. A cycle of steps (model calls by model; tool calls by tool and arguments) that contains
   a tool call and repeats at least `loop_min_repeats` times in a row in an agent run. Tool steps
   come from tool spans; in a run with none, from the tool calls the model asked for in its
   captured output. Waste = the model calls of every iteration after the first.
3. duplicate. (a) A model call with the same model and the same input (system instructions and
   messages, so it needs captured content) as an earlier successful call of the trace. (b) A cycle
   as in 2 that occurs only twice: a single re-request of the same tool with the same arguments,
   whose result was already there. Waste = the repeat's cost. (c) A tool call that only reads (a
   coding agent's file read or search) with the same arguments as an earlier read of its run, or
   of the conversation's earlier tasks, with only reads in between (no edit, command or
   compaction). Waste = the share of the asking call's cost that such reads were of its calls.
4. no outcome. The task's recorded outcome is a failure, or the run ended in an error with no
   successful outcome. Waste = all its remaining cost.

Avoidable cost (the work was needed, the price was not) follows in `tokentrail.analysis.avoidable`:
5. context bloat (stale context re-sent; and a coding agent's compaction requests, whose context
grew until it had to be summarized; after a compaction the run's context starts again),
6. cache miss, 7. oversized model. 8. Productive: the rest.

A call whose model has no known price adds tokens but no dollars (its cost is unknown, not
zero); its findings say so with a wasted cost of None.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tokentrail.analysis import avoidable
from tokentrail.analysis.avoidable import Evidence, Previous, Prices, Windows, largest_carried_item, step_keys
from tokentrail.analysis.calls import Call, Thresholds, usd_formula

__all__ = [
    "BUCKETS",
    "DEFINITE",
    "Evidence",
    "Finding",
    "Ledger",
    "Previous",
    "Prices",
    "Thresholds",
    "analyze",
    "context_per_call",
    "largest_carried_item",
    "successful_steps",
    "trace_failed",
]

BUCKETS = (
    "retry",
    "loop",
    "duplicate",
    "no_outcome",
    "context_bloat",
    "cache_miss",
    "oversized_model",
    "productive",
)
DEFINITE = ("retry", "loop", "duplicate", "no_outcome")
_TRUNCATED = frozenset(
    {"length", "max_tokens", "model_length", "max_output_tokens", "incomplete", "MAX_TOKENS"}
)
_RETRIED_STATUS = frozenset({"408", "409", "429"})


@dataclass(slots=True)
class Finding:
    detector: str
    span_id: str
    wasted_usd: float | None  # None: the model has no known price
    wasted_tokens: int
    related: list[str] = field(default_factory=list)
    reason: str = ""
    model: str = ""
    #: the rule that made it (`retry.failed_call`, `cache_miss.model_changed`…)
    rule: str = ""
    #: the numbers the dollars rest on, and the formula that combines them
    evidence: dict[str, Any] = field(default_factory=dict)
    #: wall time the waste cost (a failed attempt and the wait before the next one)
    time_lost_ns: int = 0


@dataclass
class Ledger:
    total_usd: float
    buckets: dict[str, float]
    findings: list[Finding]
    wasted_tokens: int
    unpriced_calls: int
    outcome: str  # "success", "failure" or ""
    #: model -> the cost of its billable calls (a call of unknown price counts 0)
    model_usd: dict[str, float] = field(default_factory=dict)

    @property
    def wasted_usd(self) -> float:
        return sum(v for k, v in self.buckets.items() if k != "productive")


Waste = Callable[..., None]


# span id -> its span: the index of a trace's spans that the rules share
_ById = dict[str, dict[str, Any]]


def _by_id(spans: Sequence[dict[str, Any]]) -> _ById:
    return {s["span_id"]: s for s in spans}


def _scopes(spans: Sequence[dict[str, Any]], by_id: _ById) -> dict[str, str]:
    """span id -> span id of its nearest agent ancestor (itself excluded). A tool under which
    model calls run (a coding agent's subagent, started as a tool) is an agent run of its own."""
    runs = {s["span_id"] for s in spans if s["step_kind"] == "agent"} | _model_running_tools(spans, by_id)
    return _nearest(spans, by_id, runs)


def _ancestors(span: dict[str, Any], by_id: _ById) -> Iterator[dict[str, Any]]:
    """The span's parent, its parent's parent… as far as the trace holds them (a cycle ends it)."""
    seen: set[str] = set()
    parent = span["parent_span_id"]
    while parent and parent in by_id and parent not in seen:
        seen.add(parent)
        yield by_id[parent]
        parent = by_id[parent]["parent_span_id"]


def _nearest(spans: Sequence[dict[str, Any]], by_id: _ById, wanted: set[str]) -> dict[str, str]:
    """span id -> span id of its nearest ancestor (`_ancestors`) among `wanted`, "" for none. A
    span whose parent is not wanted has its parent's answer, so each path up the tree is walked
    once however many spans hang below it; a path that runs into a parent cycle (bad input) is
    walked span by span as `_ancestors` does."""
    nearest: dict[str, str] = {}
    for span in spans:
        path: list[str] = []  # spans that share the answer found above them
        on_path: set[str] = set()
        span_id = span["span_id"]
        answer: str | None = None
        while span_id not in nearest:
            path.append(span_id)
            on_path.add(span_id)
            parent = by_id[span_id]["parent_span_id"]
            if not parent or parent not in by_id:
                answer = ""
                break
            if parent in wanted:
                answer = parent
                break
            if parent in on_path:
                break  # a cycle
            span_id = parent
        else:
            answer = nearest[span_id]
        for below in path:
            if answer is None:
                walk = _ancestors(by_id[below], by_id)
                nearest[below] = next((a["span_id"] for a in walk if a["span_id"] in wanted), "")
            else:
                nearest[below] = answer
    return nearest


def _model_running_tools(spans: Sequence[dict[str, Any]], by_id: _ById) -> set[str]:
    """Tool spans with a model call beneath them (below any agent span between them). A tool
    with none beneath it has no span beneath it at all, the usual case: no walk up the tree then."""
    tools = {span_id for span_id, s in by_id.items() if s["step_kind"] == "tool"}
    if tools.isdisjoint([s["parent_span_id"] for s in spans]):
        return set()
    steps = {span_id for span_id, s in by_id.items() if s["step_kind"] in ("agent", "tool")}
    nearest = _nearest(spans, by_id, steps)
    return {
        step
        for s in spans
        if s["step_kind"] == "llm" and (step := nearest[s["span_id"]]) and by_id[step]["step_kind"] == "tool"
    }


def _failed(span: dict[str, Any]) -> bool:
    return (
        span["status_code"] == "ERROR"
        or bool(span["error_type"])
        or not _TRUNCATED.isdisjoint(span["finish_reasons"])
    )


def _calls(spans: Sequence[dict[str, Any]], scopes: dict[str, str], by_id: _ById) -> list[Call]:
    """The trace's model calls in start order: billed leaves, and failed attempts that were not
    billed. A leaf under a framework's span of the same call takes what only the framework span
    recorded (content, finish reasons): the leaf knows the usage, the framework the conversation."""
    wrappers = {
        s["parent_span_id"]
        for s in spans
        if s["step_kind"] in ("llm", "embedding") and s["step_subkind"] != "attempt"
    }
    calls = []
    for span in spans:
        if span["step_kind"] not in ("llm", "embedding"):
            continue
        if not span["billable"]:
            # A failed request that reported no usage (a 429, a timeout) is still an attempt of a
            # retry chain; it was not billed, so it costs 0 here. Framework spans around one are not.
            if not (span["status_code"] == "ERROR" or span["error_type"]) or span["input_tokens"]:
                continue
            if span["span_id"] in wrappers:
                continue
            span = dict(span, cost_usd=0.0)
        parent = by_id.get(span["parent_span_id"])
        if (
            parent is not None
            and parent["step_kind"] == span["step_kind"]
            and span["step_subkind"] != "attempt"
        ):
            span = _inherit(span, parent)
        failed = _failed(span) or (
            parent is not None and parent["step_kind"] == "retry" and parent["status_code"] == "ERROR"
        )
        cost = span["cost_usd"]
        calls.append(Call(span, scopes[span["span_id"]], cost, cost or 0.0, failed))
    return calls


_INHERITED = ("input_hash", "system_hash", "requested_tools", "finish_reasons", "request_model")


def _inherit(span: dict[str, Any], wrapper: dict[str, Any]) -> dict[str, Any]:
    missing = {k: wrapper[k] for k in _INHERITED if not span.get(k) and wrapper.get(k)}
    return dict(span, **missing) if missing else span


class _Charges:
    """The `waste` callable every rule charges through: takes its share of the call's remaining
    cost into the rule's bucket and records the finding."""

    def __init__(self) -> None:
        self.buckets = dict.fromkeys(BUCKETS, 0.0)
        self.findings: list[Finding] = []

    def __call__(
        self,
        detector: str,
        call: Call,
        amount: float | None,
        tokens: int,
        related: list[str],
        reason: str,
        rule: str,
        numbers: dict[str, Any],
        time_lost_ns: int = 0,
        span_id: str = "",
    ) -> None:
        # nothing to take is $0 even on a call of unknown price (an attempt that failed was not billed)
        taken = (
            0.0
            if amount == 0
            else call.take(amount)
            if amount is not None and call.cost is not None
            else None
        )
        if taken is not None:
            self.buckets[detector] += taken
        self.findings.append(
            Finding(
                detector,
                span_id or call.span["span_id"],
                taken,
                tokens,
                related,
                reason,
                call.span["model"],
                rule,
                numbers,
                time_lost_ns,
            )
        )


def analyze(
    spans: Sequence[dict[str, Any]],
    prices: Prices,
    evidence: Evidence | None = None,
    t: Thresholds = Thresholds(),
    outcome: str = "",
    previous: Previous | None = None,
    task_type: str = "",
    windows: Windows | None = None,
    repository: str = "",
) -> Ledger:
    """The ledger of one trace. `spans` are rows in start order. `evidence` answers which cheaper
    models this project has seen doing a kind of step (the oversized-model rule's evidence);
    `outcome` is the trace's verdict from the outcomes table ("success", "failure" or "" when
    unknown); `previous` is the last model call of the conversation's previous trace, for cache
    misses across traces."""
    by_id = _by_id(spans)
    scopes = _scopes(spans, by_id)
    calls = _calls(spans, scopes, by_id)
    waste = _Charges()
    done: set[str] = set()
    _retries(calls, spans, waste, done)
    _cycles(spans, calls, scopes, t, waste, done)
    _rereads(spans, calls, scopes, waste, done, previous.reads if previous is not None else None)
    _duplicate_requests(calls, by_id, waste, done)
    outcome = _no_outcome(spans, calls, t, outcome, waste, done)
    if outcome != "failure":
        avoidable.apply(
            calls, spans, scopes, prices, evidence, t, waste, previous, task_type, windows, repository
        )

    buckets = waste.buckets
    buckets["productive"] = sum(c.remaining for c in calls if c.cost is not None)
    total = sum(c.cost for c in calls if c.cost is not None and c.span["billable"])
    model_usd: dict[str, float] = {}
    for c in calls:
        if c.span["billable"]:
            model = c.span["model"]
            model_usd[model] = model_usd.get(model, 0.0) + (c.cost or 0.0)
    wasted_tokens = sum(f.wasted_tokens for f in waste.findings)
    unpriced = sum(1 for c in calls if c.cost is None)
    return Ledger(total, buckets, waste.findings, wasted_tokens, unpriced, outcome, model_usd)


def _retries(calls: list[Call], spans: Sequence[dict[str, Any]], waste: Waste, done: set[str]) -> None:
    _failed_calls_tried_again(calls, waste, done)
    _http_attempts(calls, spans, waste)
    _reported_attempts(calls, waste)


def _reported_attempts(calls: list[Call], waste: Waste) -> None:
    """(c) A model call its emitter numbers as attempt N (Claude Code's `attempt`), whose earlier
    attempts left no span of their own: they failed and the client tried again. $0 (a failed
    attempt is not billed); the time they took is inside the call's own."""
    failed_before: dict[tuple[str, str], int] = defaultdict(
        int
    )  # (run, model) → failed calls since a success
    for call in calls:
        key = (call.scope, call.model)
        attempt = int(call.span.get("retry_attempt") or 0)
        missing = attempt - 1 - failed_before[key]
        if missing > 0:
            waste(
                "retry",
                call,
                0.0,
                0,
                [],
                f"attempt {attempt}: the {missing} before it failed and were tried again by the client"
                if missing > 1
                else f"attempt {attempt}: the one before it failed and was tried again by the client",
                "retry.reported_attempts",
                {
                    "attempt": attempt,
                    "failed_attempts": missing,
                    "formula": "attempts that failed were not billed: $0; their time is inside this call's",
                },
            )
        failed_before[key] = failed_before[key] + 1 if call.failed else 0


def _failed_calls_tried_again(calls: list[Call], waste: Waste, done: set[str]) -> None:
    """(a) A failed call tried again with the same model in the same run."""
    for i, call in enumerate(calls):
        if not call.failed:
            continue
        # an attempt nested in a model call was retried by that call (pydantic-ai's attempt spans);
        # a failed call that recorded no model (some bridges drop it on errors) matches any model
        again = next((c for c in calls if c.span["span_id"] == call.span["parent_span_id"]), None) or next(
            (
                c
                for c in calls[i + 1 :]
                if c.scope == call.scope and (c.model == call.model or not call.model)
            ),
            None,
        )
        if again is None:
            continue
        why = call.span["error_type"] or "cut off at the output limit"
        if why.isdigit():
            why = f"HTTP {why}"
        gap = again.span["start_ns"] - call.span["start_ns"]
        waste(
            "retry",
            call,
            call.whole(),
            call.tokens,
            [again.span["span_id"]],
            f"failed ({why}) and was tried again",
            "retry.failed_call",
            {"error": why, "retried_by": again.span["span_id"], "model": call.model, **usd_formula(call)},
            max(gap, 0),
        )
        done.add(call.span["span_id"])


def _http_attempts(calls: list[Call], spans: Sequence[dict[str, Any]], waste: Waste) -> None:
    """(b) Attempts an HTTP client made inside one model call. (Most traces have no attempt
    spans: the model calls are indexed only when some span may be one.)"""
    maybe = [s for s in spans if s["step_subkind"] == "http" or s["step_kind"] == "retry"]
    if not maybe:
        return
    attempts: dict[str, list[dict[str, Any]]] = defaultdict(list)
    call_of = {c.span["span_id"]: c for c in calls}
    parents = {s["span_id"]: s for s in spans if s["step_kind"] in ("llm", "embedding")}
    for span in maybe:
        owner = span["parent_span_id"]
        if owner in parents:
            attempts[owner].append(span)
    for owner, tries in attempts.items():
        found = call_of.get(owner) or next((c for c in calls if c.span["parent_span_id"] == owner), None)
        # a call that reported no usage is still where the attempts happened; they cost it nothing
        call = found or Call(parents[owner], "", 0.0, 0.0, False)
        for i, attempt in enumerate(tries):
            ours = attempt["step_kind"] == "retry"  # Tokentrail's own: one span per retried attempt
            nxt = tries[i + 1] if i + 1 < len(tries) else None
            if ours or (_retried_status(attempt) and nxt is not None):
                _charge_attempt(waste, call, owner, attempt, nxt, i + 1, len(tries) + (1 if ours else 0))


def _retried_status(attempt: dict[str, Any]) -> bool:
    """The attempt failed in a way clients retry: 408/409/429/5xx or a transport error."""
    status = attempt["error_type"]
    return (
        status in _RETRIED_STATUS
        or status.startswith("5")
        or (attempt["status_code"] == "ERROR" and not status.isdigit())
    )


def _charge_attempt(
    waste: Waste,
    call: Call,
    owner: str,
    attempt: dict[str, Any],
    nxt: dict[str, Any] | None,
    number: int,
    of: int,
) -> None:
    status = attempt["error_type"]
    lost = (nxt["start_ns"] - attempt["start_ns"]) if nxt is not None else attempt["duration_ns"]
    what = f"HTTP {status}" if status.isdigit() else (status or "a transport error")
    waste(
        "retry",
        call,
        0.0,
        0,
        [nxt["span_id"] if nxt else owner],
        f"attempt {number} of {of} failed ({what}); the client tried again after {lost / 1e9:.2f} s",
        "retry.http_attempt",
        {
            "status": what,
            "attempt": number,
            "model_call": owner,
            "time_lost_s": round(lost / 1e9, 3),
            "formula": "an attempt that failed was not billed: $0; its time is what it cost",
        },
        max(lost, 0),
        span_id=attempt["span_id"],
    )


# one step of an agent run: its key (what makes two steps the same), its model call if it is one,
# and the span it comes from
_Step = tuple[Any, Call | None, str]


def _cycles(
    spans: Sequence[dict[str, Any]],
    calls: list[Call],
    scopes: dict[str, str],
    t: Thresholds,
    waste: Waste,
    done: set[str],
) -> None:
    """Loops (a cycle repeating `loop_min_repeats` times or more) and duplicate tool calls (a cycle
    that occurs twice), per agent run."""
    for steps in _runs(spans, calls, scopes).values():
        for first, later, length in _find_cycles([k for k, _, _ in steps], t):
            iterations = 1 + len(later) // length
            for n, j in enumerate(later):
                repeat = steps[j][1]
                if repeat is None or repeat.span["span_id"] in done:
                    continue
                origin = steps[first[n % length]][2]
                _charge_repeat(
                    waste, t, [steps[k] for k in first], repeat, origin, n // length + 2, iterations
                )
                done.add(repeat.span["span_id"])


def _runs(
    spans: Sequence[dict[str, Any]], calls: list[Call], scopes: dict[str, str]
) -> dict[str, list[_Step]]:
    """Each agent run's steps in order: model calls by model; tool calls by tool and arguments,
    from tool spans, or in a run with none, from the tool calls the model asked for."""
    runs: dict[str, list[_Step]] = defaultdict(list)
    call_of = {c.span["span_id"]: c for c in calls}
    with_tool_spans = {scopes[s["span_id"]] for s in spans if s["step_kind"] == "tool"}
    for span in spans:
        scope = scopes[span["span_id"]]
        call = call_of.get(span["span_id"])
        if call is not None:
            runs[scope].append((("llm", call.model), call, span["span_id"]))
            if scope not in with_tool_spans:  # the tools left no spans: the model's requests stand in
                for h in span.get("requested_tools") or ():
                    runs[scope].append((("tool", "", h), None, span["span_id"]))
        elif span["step_kind"] == "tool":
            # without captured arguments two calls of one tool cannot be told apart: never a cycle
            args = span["tool_args_hash"] if span["has_tool_args"] else span["span_id"]
            runs[scope].append((("tool", span["tool_name"], args), None, span["span_id"]))
    return runs


def _charge_repeat(
    waste: Waste,
    t: Thresholds,
    first: list[_Step],
    repeat: Call,
    origin: str,
    iteration: int,
    iterations: int,
) -> None:
    """A model call in a later iteration of a cycle: a loop's, or a duplicate tool call's."""
    names = " → ".join(str(key[1]) or "tool" for key, _, _ in first)
    numbers = {
        "cycle": names,
        "iterations": iterations,
        "iteration": iteration,
        "first_iteration": [span_id for _, _, span_id in first],
        **usd_formula(repeat),
    }
    if iterations >= t.loop_min_repeats:
        reason = f"iteration {iteration} of {iterations} of the cycle {names}"
        waste("loop", repeat, repeat.whole(), repeat.tokens, [origin], reason, "loop.cycle", numbers)
        return
    tools = [span_id for key, _, span_id in first if key[0] == "tool"]
    waste(
        "duplicate",
        repeat,
        repeat.whole(),
        repeat.tokens,
        [origin, *tools],
        f"asked for the same tool call again ({names}); its result was already there",
        "duplicate.tool_call",
        numbers,
    )


def _find_cycles(keys: list[Any], t: Thresholds) -> list[tuple[list[int], list[int], int]]:
    """Repeated cycles (at least twice in a row) in a step sequence: (first iteration positions,
    later positions, length). Shortest cycles first; a step belongs to one cycle at most."""
    tools = [k for k in keys if k[0] == "tool"]
    if len(set(tools)) == len(tools):
        return []  # a cycle repeats a tool step, and none repeats
    is_tool = [k[0] == "tool" for k in keys]
    used = [False] * len(keys)
    found = []
    for length in range(1, t.loop_max_cycle + 1):
        i = 0
        while i + length * 2 <= len(keys):
            cycle = keys[i : i + length]
            if True in used[i : i + length] or True not in is_tool[i : i + length]:
                i += 1
                continue
            end = i + length
            while (
                end + length <= len(keys)
                and keys[end : end + length] == cycle
                and True not in used[end : end + length]
            ):
                end += length
            if (end - i) // length >= 2:
                for j in range(i, end):
                    used[j] = True
                found.append((list(range(i, i + length)), list(range(i + length, end)), length))
                i = end
            else:
                i += 1
    return found


def _rereads(
    spans: Sequence[dict[str, Any]],
    calls: list[Call],
    scopes: dict[str, str],
    waste: Waste,
    done: set[str],
    fresh: dict[tuple[str, int], str] | None = None,
) -> None:
    """3 (c). A tool call that only reads (step subkind `read`: a coding agent's file read, search
    or listing, or a shell command that only reads) with the same arguments as an earlier read of
    its run, with only reads in between: what it read was already in the context. A tool that may
    write (an edit, a command) or a compaction clears what the run has seen. The trace's main run
    starts with `fresh`: the reads of the conversation's earlier tasks still in its context.
    Charged to the model call that asked for it: the share of its cost that such reads were of
    the tool calls it asked for."""
    call_of = {c.span["span_id"]: c for c in calls}
    roots = {s["span_id"] for s in spans if not s["parent_span_id"]} | {""}
    runs: dict[str, _Reads] = {}
    for span in spans:
        scope = scopes[span["span_id"]]
        run = runs.get(scope)
        if run is None:
            run = runs[scope] = _Reads(dict(fresh or {}) if scope in roots else {})
        call = call_of.get(span["span_id"])
        if call is not None:
            run.asked_by = call
        elif span["step_subkind"] == "compaction":
            run.seen.clear()
        elif span["step_kind"] == "tool":
            run.tool(span)
    for run in runs.values():
        for call_id, reads in run.repeats.items():
            if call_id not in done:
                _charge_rereads(waste, run.callers[call_id], reads, run.asked[call_id])
                done.add(call_id)


class _Reads:
    """What one run has read and not changed since, and the reads it repeated, per asking call."""

    def __init__(self, seen: dict[tuple[str, int], str]) -> None:
        self.seen = seen  # (tool, arguments hash) → the span that first read it
        self.asked_by: Call | None = None
        self.asked: dict[str, int] = defaultdict(int)  # model call → tool calls it led to
        self.repeats: dict[str, list[tuple[str, str, str]]] = defaultdict(list)  # → (tool, first, again)
        self.callers: dict[str, Call] = {}

    def tool(self, span: dict[str, Any]) -> None:
        caller = self.asked_by
        if caller is not None:
            self.asked[caller.span["span_id"]] += 1
        if span["step_subkind"] != "read":
            self.seen.clear()  # it may have changed what was read
            return
        if not span["has_tool_args"]:
            return
        key = (span["tool_name"], int(span["tool_args_hash"]))
        first = self.seen.get(key)
        if first is not None and caller is not None:
            self.repeats[caller.span["span_id"]].append((span["tool_name"], first, span["span_id"]))
            self.callers[caller.span["span_id"]] = caller
        self.seen.setdefault(key, span["span_id"])


def _charge_rereads(waste: Waste, call: Call, reads: list[tuple[str, str, str]], asked: int) -> None:
    n = len(reads)
    tools = sorted({tool for tool, _, _ in reads})
    left = call.whole()
    waste(
        "duplicate",
        call,
        left * n / asked if left is not None else None,
        call.tokens * n // asked,
        [span for _, first, again in reads for span in (first, again)],
        f"asked to read again ({', '.join(tools)}) what had been read earlier in the conversation, "
        "with nothing changed in between",
        "duplicate.reread",
        {
            "tools": tools,
            "reads_again": [again for _, _, again in reads],
            "first_reads": [first for _, first, _ in reads],
            "tool_calls_asked": asked,
            "formula": f"${call.cost or 0:.6f} × {n} of the {asked} tool calls it asked for",
        },
    )


def _duplicate_requests(calls: list[Call], by_id: _ById, waste: Waste, done: set[str]) -> None:
    seen: dict[tuple[str, str, int, int], str] = {}
    for call in calls:
        # The same input size too: an emitter that records only part of the input (some drop tool
        # results and instructions) would otherwise make every call of a tool chain look alike. And
        # the same agent: another agent asking alike did not have the first one's answer.
        agent = by_id.get(call.scope)
        who = agent["agent_name"] if agent is not None else ""
        key = (who, call.model, int(call.span["input_hash"]), int(call.span["input_tokens"]))
        if not key[2] or call.failed:
            continue
        if key in seen and call.span["span_id"] not in done:
            waste(
                "duplicate",
                call,
                call.whole(),
                call.tokens,
                [seen[key]],
                "same model and input as an earlier call",
                "duplicate.request",
                {"same_as": seen[key], "model": call.model, **usd_formula(call)},
            )
            done.add(call.span["span_id"])
        seen.setdefault(key, call.span["span_id"])


def trace_failed(spans: Sequence[dict[str, Any]], outcome: str, t: Thresholds) -> tuple[str, bool, str]:
    """(outcome, failed, why): the task's outcome ("success", "failure" or "", from the outcomes
    the reconciler filed, `tokentrail.store.outcomes`); failed when that is a failure or the run
    ended in an error without a successful outcome."""
    if outcome == "failure":
        return outcome, True, "the recorded outcome is a failure"
    if t.no_outcome_on_error and outcome != "success" and _ended_in_error(spans):
        return outcome, True, "the run ended in an error"
    return outcome, False, ""


def _ended_in_error(spans: Sequence[dict[str, Any]]) -> bool:
    """The root span ended in an error; or the root is only a workflow around agents (an agent span
    without an agent, whose status some bridges set OK whatever happened) and the agent that held
    the task last did."""
    roots = [s for s in spans if not s["parent_span_id"]]
    if any(s["status_code"] == "ERROR" for s in roots):
        return True
    workflows = {s["span_id"] for s in roots if s["step_kind"] == "agent" and s["step_subkind"] == "workflow"}
    if not workflows:
        return False
    scopes = _scopes(spans, _by_id(spans))
    agents = [s for s in spans if s["step_kind"] == "agent" and scopes[s["span_id"]] in workflows]
    return bool(agents) and max(agents, key=lambda s: s["start_ns"])["status_code"] == "ERROR"


def _no_outcome(
    spans: Sequence[dict[str, Any]],
    calls: list[Call],
    t: Thresholds,
    outcome: str,
    waste: Waste,
    done: set[str],
) -> str:
    outcome, failed, why = trace_failed(spans, outcome, t)
    if not failed:
        return outcome
    rule = "no_outcome.failure" if outcome == "failure" else "no_outcome.error"
    for call in calls:
        if call.span["span_id"] not in done:  # attempts that cost $0 included: they were part of it
            waste(
                "no_outcome",
                call,
                call.whole(),
                call.tokens,
                [],
                why,
                rule,
                {"outcome": outcome or "error", **usd_formula(call)},
            )
    return "failure"


def successful_steps(
    spans: Sequence[dict[str, Any]], outcome: str, t: Thresholds, task_type: str = "", repository: str = ""
) -> tuple[list[tuple[str, str, str, str, str]], set[str]]:
    """The oversized-model rule's evidence in a trace: (step, step kind, provider, model, span id) of
    each model call that did a short job well (an answer of at most `oversized_max_output_tokens`
    that ended normally and was no tool call, in a task that did not fail); and the kinds of step
    of all its short answers, whose verdicts depend on that evidence."""
    short = [
        s
        for s in spans
        if s["step_kind"] == "llm"
        and s["billable"]
        and int(s["output_tokens"]) <= t.oversized_max_output_tokens
        and not _failed(s)
    ]
    if not short:
        return [], set()
    keys = step_keys(spans, _scopes(spans, _by_id(spans)), task_type, repository)
    asked = {keys[s["span_id"]] for s in short if keys.get(s["span_id"])}
    if trace_failed(spans, outcome, t)[1]:
        return [], asked
    return [
        (keys[s["span_id"]], s["step_kind"], s["provider"], s["model"], s["span_id"])
        for s in short
        if keys.get(s["span_id"])
        and not s["requested_tools"]
        and not set(s["finish_reasons"]) - avoidable.NORMAL_FINISH
    ], asked


def context_per_call(spans: Sequence[dict[str, Any]]) -> list[avoidable.Context]:
    """Each successful model call's input split as the context rules split it (cached, carried over
    from the run's previous call, new, and how much of it is stale): the trace page's context chart
    shows what the ledger charges."""
    by_id = _by_id(spans)
    return avoidable.contexts(_calls(spans, _scopes(spans, by_id), by_id))
