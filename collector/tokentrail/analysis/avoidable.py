"""Avoidable cost: the work was needed, the price was not. Rules 5-7 of the ledger, applied to
each model call's cost that rules 1-4 left, in this order, per agent run, from token counts (no
captured content needed):

5. context bloat. The first call of a run reads the task (system prompt, tools, the request). A
   later call re-sends what earlier calls already read: the *stale* context is the previous call's
   input beyond the first call's (`min(previous input, this input) - first input`; earlier tool
   results, earlier turns). The run may carry as much stale context as the task itself
   (`allowance = min(bloat_carry_tokens, max(bloat_min_tokens, first input))`); beyond that it is
   bloat. Waste = the excess tokens at the price they were billed at: the cache-read price for the
   part the provider read from its cache (the prompt's cached prefix), the input price otherwise.
6. cache miss. Tokens carried over from the previous call (its input and output, up to this
   call's input; for a trace's first call, the last call of the conversation's previous trace) that
   the provider did not read from its cache, when there are at least `cache_min_tokens`, the model
   has a cache price below its input price, and the emitter reports cached tokens at all (without
   that a miss cannot be told from a hit). Waste = those tokens, less the bloat already charged,
   × (input price − cache-read price). The reason says why the prefix missed: the model changed,
   a gap longer than `cache_ttl_seconds`, or the prefix changed (or caching was not enabled).
7. oversized model. A call that ended normally with at most `oversized_max_output_tokens` of
   output that is not a tool call, on a model for which this project has *evidence* of a cheaper
   one: a model of the same provider and operation that completed the same kind of step
   successfully (same agent, else same task type, else same system prompt) and would cost at most
   `1 - oversized_min_saving` of this call for the same tokens. Waste = cost − that cost.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tokentrail.analysis.calls import Call, Thresholds, per_mtok, usd_formula

__all__ = [
    "NORMAL_FINISH",
    "Context",
    "Evidence",
    "Previous",
    "Prices",
    "Windows",
    "apply",
    "context_split",
    "contexts",
    "largest_carried_item",
    "step_keys",
]

# (provider, model, input tokens) -> (fresh input, cache read, output) USD per token, or None
Prices = Callable[[str, str, int], tuple[float, float, float] | None]
# (step, step kind, provider) -> [(model, traces it did that step in, an example trace id)]
Evidence = Callable[[str, str, str], list[tuple[str, int, str]]]
# (provider, model) -> the model's context window in tokens, or None
Windows = Callable[[str, str], int | None]
Waste = Callable[..., None]

NORMAL_FINISH = frozenset({"stop", "end_turn", "STOP", "stop_sequence", "completed", "FINISH_REASON_STOP"})
_CUT = re.compile(r"…\[truncated (\d+) chars\]$")


@dataclass(frozen=True)
class Previous:
    """The last model call of the conversation's previous trace (for cache misses across traces),
    and the reads of its earlier traces still in the context (for rereads across traces)."""

    trace_id: str
    span_id: str
    model: str
    input_tokens: int
    output_tokens: int
    end_ns: int
    #: (tool, arguments hash) → the span that read it
    reads: dict[tuple[str, int], str] = field(default_factory=dict)


def context_split(input_tokens: int, cached: int, prior: int) -> tuple[int, int, int]:
    """(cached, carried over, new) tokens of a call's input, from token counts alone: the part of
    its uncached input up to the size of the same agent's previous call (input + output) is
    carried over, the rest is new."""
    cached = min(max(cached, 0), input_tokens)
    carried = min(max(0, min(input_tokens, prior) - cached), input_tokens - cached)
    return cached, carried, input_tokens - cached - carried


def step_keys(
    spans: Sequence[dict[str, Any]], scopes: dict[str, str], task_type: str = "", repository: str = ""
) -> dict[str, str]:
    """span id -> the kind of step a model call does: `agent:NAME` (its agent run), else
    `task:TYPE` (the trace's task type), else `system:HASH` (its system prompt); absent if none.
    Work on a repository (a coding agent's, or any trace naming one) is compared within it: its
    keys end in `@REPOSITORY`."""
    by_id = {s["span_id"]: s for s in spans}
    keys = {}
    for span in spans:
        if span["step_kind"] not in ("llm", "embedding"):
            continue
        agent = by_id.get(scopes.get(span["span_id"], ""))
        if agent is not None:  # an agent run, or a subagent run as a tool
            key = f"agent:{agent['agent_name'] or agent['tool_name']}"
        elif task_type:
            key = f"task:{task_type}"
        elif span.get("system_hash"):
            key = f"system:{int(span['system_hash']):016x}"
        else:
            continue
        keys[span["span_id"]] = f"{key}@{repository}" if repository else key
    return keys


@dataclass(slots=True)
class Context:
    """A model call's input as the context rules see it."""

    call: Call
    before: Call | None  # the run's previous call (None: the run's first)
    across: Previous | None  # for a trace's first call: the conversation's previous trace's last call
    base: int  # the input of the run's first call: the task itself
    calls: int  # the run's calls so far, this one included
    cached: int
    carried: int  # uncached input carried over from the previous call
    new: int
    stale: int  # input that earlier calls of the run already read (re-sent)


def contexts(
    calls: list[Call], previous: Previous | None = None, compactions: Sequence[tuple[str, int]] = ()
) -> list[Context]:
    """Per model call that sent input (not embeddings: their input is not a conversation), in
    order: its input split into cached / carried over / new, and how much of it is stale. The
    rules judge the successful ones; a failed one still carried its context. `compactions`:
    (run, end) of each compaction: the run's context starts again after one."""
    last: dict[str, Call] = {}
    first: dict[str, tuple[int, int]] = {}  # scope -> (input of its first call, calls so far)
    trace_start = True
    out = []
    for call in calls:
        span = call.span
        if span["step_kind"] != "llm" or (call.failed and not call.tokens) or not int(span["input_tokens"]):
            continue  # a failed attempt (or an empty answer) that reported nothing carried nothing
        before = last.get(call.scope)
        if (
            compactions
            and before is not None
            and any(
                scope == call.scope and before.span["start_ns"] < end <= span["start_ns"]
                for scope, end in compactions
            )
        ):
            del last[call.scope], first[call.scope]
        inp = int(span["input_tokens"])
        before = last.get(call.scope)
        last[call.scope] = call
        base, n = first.get(call.scope, (inp, 0))
        first[call.scope] = (base, n + 1)
        across = previous if before is None and trace_start else None
        trace_start = False
        if before is not None:
            prior = int(before.span["input_tokens"]) + int(before.span["output_tokens"])
        else:
            prior = across.input_tokens + across.output_tokens if across is not None else 0
        cached, carried, new = context_split(inp, int(span["cache_read_tokens"]), prior)
        stale = max(0, min(int(before.span["input_tokens"]), inp) - base) if before is not None else 0
        out.append(Context(call, before, across, base, n + 1, cached, carried, new, stale))
    return out


def apply(
    calls: list[Call],
    spans: Sequence[dict[str, Any]],
    scopes: dict[str, str],
    prices: Prices,
    evidence: Evidence | None,
    t: Thresholds,
    waste: Waste,
    previous: Previous | None = None,
    task_type: str = "",
    windows: Windows | None = None,
    repository: str = "",
) -> None:
    # the oversized-model rule needs the run's shape only when some call gave a short answer
    short = evidence is not None and any(
        int(c.span["output_tokens"]) <= t.oversized_max_output_tokens and not c.failed for c in calls
    )
    keys = step_keys(spans, scopes, task_type, repository) if short else {}
    chose_tool = _chose_tool(spans, scopes, calls) if short else set()
    cache_seen = any(c.span.get("cache_reported", True) for c in calls)
    compactions = [
        (scopes[s["span_id"]], s["start_ns"], s["start_ns"] + s["duration_ns"])
        for s in spans
        if s["step_subkind"] == "compaction"
    ]
    summarized = _compaction_requests(calls, compactions, waste)
    for c in contexts(calls, previous, [(scope, end) for scope, _, end in compactions]):
        if c.call.span["span_id"] in summarized:
            continue
        if c.call.failed:
            continue  # thrown away already (a retry): nothing of it is avoidable cost
        call, span = c.call, c.call.span
        unit = prices(span["provider"], span["model"], int(span["input_tokens"]))
        priced = call.cost is not None and unit is not None
        # 5. context bloat
        window = windows(span["provider"], span["model"]) if windows is not None and c.stale else None
        excess_fresh = _context_bloat(c, unit, priced, window, t, waste)
        # 6. cache miss
        missed = c.carried - excess_fresh
        observable = span.get("cache_reported", True) or cache_seen
        if (
            (c.before is not None or c.across is not None)
            and observable
            and missed >= t.cache_min_tokens
            and unit is not None
            and unit[1] < unit[0]
        ):
            _cache_miss(call, c.before, c.across, missed, unit, priced, t, waste)
        # 7. oversized model
        if short and priced and evidence is not None:
            step = keys.get(span["span_id"], "")
            chose = span["span_id"] in chose_tool
            _oversized(call, step, c.cached, unit, prices, evidence, t, waste, chose)


def _allowance(c: Context, window: int | None, t: Thresholds) -> tuple[int, str]:
    """How much stale context the run may carry, and what bounds it."""
    allowance, bound = max(t.bloat_min_tokens, c.base), "the task's own input"
    if allowance == t.bloat_min_tokens and c.base < t.bloat_min_tokens:
        bound = "the minimum"
    if allowance > t.bloat_carry_tokens:
        allowance, bound = t.bloat_carry_tokens, "the cap"
    if window and t.bloat_window_share * window < allowance:
        allowance, bound = (
            int(t.bloat_window_share * window),
            f"{t.bloat_window_share:.0%} of the model's window",
        )
    return allowance, bound


def _compaction_requests(
    calls: list[Call], compactions: list[tuple[str, int, int]], waste: Waste
) -> set[str]:
    """5 (b). The model requests a compaction made (a coding agent summarizing its context once it
    grew too large): the whole of each is what the growth cost. Returns their span ids."""
    charged = set()
    for scope, start, end in compactions:
        for call in calls:
            span = call.span
            if call.scope != scope or not start <= span["start_ns"] < end or span["span_id"] in charged:
                continue
            waste(
                "context_bloat",
                call,
                call.whole(),
                call.tokens,
                [],
                f"the context grew until it had to be compacted: this request summarized "
                f"{int(span['input_tokens']):,} tokens of it",
                "context_bloat.compaction",
                {"input": int(span["input_tokens"]), **usd_formula(call)},
            )
            charged.add(span["span_id"])
    return charged


def _context_bloat(
    c: Context,
    unit: tuple[float, float, float] | None,
    priced: bool,
    window: int | None,
    t: Thresholds,
    waste: Waste,
) -> int:
    """Charge stale context beyond the allowance; returns how much of the excess was not cached
    (the cache-miss rule does not charge it again)."""
    allowance, bound = _allowance(c, window, t)
    excess = max(0, c.stale - allowance)
    excess_cached = min(excess, max(0, c.cached - (c.base + allowance)))  # the cache holds the prompt's start
    excess_fresh = excess - excess_cached
    if not excess or c.before is None:
        return excess_fresh
    inp = int(c.call.span["input_tokens"])
    fresh_price, read_price = (unit[0], unit[1]) if unit else (0.0, 0.0)
    amount = excess_fresh * fresh_price + excess_cached * read_price
    fresh_m, read_m = per_mtok(fresh_price), per_mtok(read_price)
    waste(
        "context_bloat",
        c.call,
        amount if priced else None,
        excess,
        [c.before.span["span_id"]],
        f"re-sent {c.stale:,} tokens of earlier results the run had already read, {excess:,} beyond the "
        f"allowance of {allowance:,} ({bound}); the context grew from {c.base:,} to {inp:,} tokens over "
        f"{c.calls} calls"
        + (f" ({inp / c.base:.1f}x)" if c.base else "")
        + (f", {inp / window:.0%} of the model's {window:,}-token window" if window else ""),
        "context_bloat.stale_context",
        {
            "first_call_input": c.base,
            "previous_call_input": int(c.before.span["input_tokens"]),
            "input": inp,
            "stale_tokens": c.stale,
            "allowance": allowance,
            "allowance_is": bound,
            "excess_tokens": excess,
            "excess_cached_tokens": excess_cached,
            "calls_so_far": c.calls,
            "context_window": window,
            "input_usd_per_mtok": fresh_m,
            "cache_read_usd_per_mtok": read_m,
            "formula": f"{excess_fresh:,} × ${fresh_m:g}/M + {excess_cached:,} × ${read_m:g}/M = ${amount:.6f}"
            if priced
            else "the model's price is unknown",
        },
    )
    return excess_fresh


def _cache_miss(
    call: Call,
    before: Call | None,
    across: Previous | None,
    missed: int,
    unit: tuple[float, float, float],
    priced: bool,
    t: Thresholds,
    waste: Waste,
) -> None:
    span = call.span
    if before is not None:
        origin = before.span
        prev_model, prev_end, prev_id = (
            before.model,
            origin["start_ns"] + origin["duration_ns"],
            origin["span_id"],
        )
        where = "the previous call"
    else:
        assert across is not None
        prev_model, prev_end, prev_id = across.model, across.end_ns, across.span_id
        where = f"the conversation's previous task (trace {across.trace_id[:12]}…)"
    gap = (span["start_ns"] - prev_end) / 1e9
    model = call.model
    if prev_model != model:
        why, rule = f"the model changed from {prev_model}", "cache_miss.model_changed"
    elif gap > t.cache_ttl_seconds:
        why, rule = (
            f"{gap:.0f} s since {where}, beyond the {t.cache_ttl_seconds:.0f} s cache lifetime",
            "cache_miss.expired",
        )
    else:
        why, rule = (
            "the prompt prefix changed, or caching was not enabled for it",
            "cache_miss.prefix_changed",
        )
    amount = missed * (unit[0] - unit[1])
    fresh_m, read_m = per_mtok(unit[0]), per_mtok(unit[1])
    waste(
        "cache_miss",
        call,
        amount if priced else None,
        missed,
        [prev_id],
        f"{missed:,} tokens carried over from {where} were not read from the cache: {why}",
        rule,
        {
            "previous_call": prev_id,
            "previous_model": prev_model,
            "gap_s": round(gap, 3),
            "missed_tokens": missed,
            "cached_tokens": int(span["cache_read_tokens"]),
            "input_usd_per_mtok": fresh_m,
            "cache_read_usd_per_mtok": read_m,
            "formula": f"{missed:,} × (${fresh_m:g} − ${read_m:g})/M = ${amount:.6f}",
        },
    )


def _chose_tool(spans: Sequence[dict[str, Any]], scopes: dict[str, str], calls: list[Call]) -> set[str]:
    """Model calls that a tool call or a handoff followed in their run before the next model call:
    their short output was a choice of what to do next, whatever finish reason was recorded."""
    call_ids = {c.span["span_id"] for c in calls}
    last: dict[str, str] = {}
    chose = set()
    for span in spans:
        scope = scopes.get(span["span_id"], "")
        if span["span_id"] in call_ids:
            last[scope] = span["span_id"]
        elif (span["step_kind"] == "tool" or span["step_subkind"] == "handoff") and scope in last:
            chose.add(last.pop(scope))
    return chose


def _oversized(
    call: Call,
    step: str,
    cached: int,
    unit: tuple[float, float, float] | None,
    prices: Prices,
    evidence: Evidence,
    t: Thresholds,
    waste: Waste,
    chose_tool: bool,
) -> None:
    span = call.span
    out = int(span["output_tokens"])
    # A short answer is evidence of a small job only when it is an answer: a tool choice is not
    # (told by its finish reason, its captured output, or the tool that ran next).
    if (
        not step
        or not call.cost
        or out > t.oversized_max_output_tokens
        or set(span["finish_reasons"]) - NORMAL_FINISH
        or span.get("requested_tools")
        or chose_tool
    ):
        return
    best = _cheapest_seen(call, step, cached, prices, evidence)
    if best is None or best[0] > (1 - t.oversized_min_saving) * call.cost:
        return
    alt_cost, model, traces, example = best
    kind, _, named = step.partition(":")
    named, _, repository = named.partition("@")
    what = {"agent": "the same agent", "task": "the same task type", "system": "the same system prompt"}.get(
        kind, step
    )
    where = f" in {repository[:60]}" if repository else ""
    waste(
        "oversized_model",
        call,
        call.cost - alt_cost,
        0,
        [],
        f"{out} output tokens; {model} did {what} ({named[:40]}){where} successfully in {traces} "
        f"trace{'s' if traces != 1 else ''} of this project, and would cost {alt_cost / call.cost:.0%} of it",
        "oversized_model.cheaper_model_seen",
        {
            "step": step,
            "output_tokens": out,
            "suggested_model": model,
            "evidence_traces": traces,
            "example_trace": example,
            "cost_usd": call.cost,
            "suggested_cost_usd": alt_cost,
            "formula": f"${call.cost:.6f} − ${alt_cost:.6f} (the same tokens on {model}) = ${call.cost - alt_cost:.6f}",
        },
    )


def _cheapest_seen(
    call: Call, step: str, cached: int, prices: Prices, evidence: Evidence
) -> tuple[float, str, int, str] | None:
    """Of the other models seen doing this kind of step, the one that would cost least for the
    call's tokens: (that cost, model, traces it did the step in, an example trace)."""
    span = call.span
    out, inp = int(span["output_tokens"]), int(span["input_tokens"])
    best: tuple[float, str, int, str] | None = None
    for model, traces, example in evidence(step, span["step_kind"], span["provider"]):
        if model == span["model"]:
            continue
        alt = prices(span["provider"], model, inp)
        if alt is None:
            continue
        alt_cost = (inp - cached) * alt[0] + cached * alt[1] + out * alt[2]
        if best is None or alt_cost < best[0]:
            best = (alt_cost, model, traces, example)
    return best


def largest_carried_item(input_messages: str) -> tuple[str, int] | None:
    """From a call's captured input (OTel message JSON): the largest tool result or earlier
    message it carried along, as (what it is, estimated tokens at ~4 characters a token)."""
    try:
        messages = json.loads(input_messages)
    except ValueError:
        return None
    if not isinstance(messages, list) or len(messages) < 2:
        return None
    names: dict[str, str] = {}
    best: tuple[str, int] | None = None
    for i, message in enumerate(messages[:-1]):  # the last message is the new input
        if not isinstance(message, dict):
            continue
        role = str(message.get("role", ""))
        for part in message.get("parts") or []:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "tool_call":
                names[str(part.get("id", ""))] = str(part.get("name", ""))
                continue
            body = part.get("response", part.get("result", part.get("content", "")))
            body = body if isinstance(body, str) else json.dumps(body)
            cut = _CUT.search(body)  # the SDK cut a long value when capturing it and said by how much
            size = (len(body) + (int(cut[1]) if cut else 0)) // 4
            if part.get("type") == "tool_call_response":
                what = f"the result of tool {names.get(str(part.get('id', '')), '') or part.get('id', '?')}"
            elif role == "tool":
                what = "a tool result"
            else:
                what = f"a {role or 'earlier'} message"
            what += f" (message {i + 1} of {len(messages)})"
            if best is None or size > best[1]:
                best = (what, size)
    return best
