"""The waste ledger of one trace: every dollar of model spend in exactly one bucket.

Pure functions over a trace's spans (typed columns only), so the rules are tested without a
database and the same code runs for one trace or a million. The buckets add up to the trace's
cost by construction: each rule takes its share from what earlier rules left of a call's cost,
and whatever is left is productive.

Order of the rules (first match takes the call's whole remaining cost in the definite tier):

Definite waste: the work was thrown away.
1. retry: a model call that failed (error status, or cut off at the token limit) and was made
   again later in the same agent run with the same model. Waste = the failed call's cost.
2. loop: the agent repeated a cycle of steps (A→B→A→B, or the same tool with the same arguments
   over and over) in its run. Steps are model calls (by model) and tool calls (by tool and
   argument hash); a cycle must contain a tool call and repeat at least `loop_min_repeats` times.
   Waste = the model calls of every complete iteration after the first.
3. duplicate: a model call with the same model and the same input (hash of system instructions
   and messages, so it needs captured content) as an earlier successful call of the trace.
   Waste = the repeat's cost.
4. no outcome: the task's recorded outcome is a failure (`tokentrail.outcome.success=false`),
   or the run ended in an error with no successful outcome. Waste = all its remaining cost.

Avoidable cost (the work was needed, the price was not), per remaining call, in this order:
5. context bloat: of the input carried over from the same agent's previous call (see
   `context_split`), the tokens beyond `bloat_carry_tokens`. Waste = those tokens at the price
   they were billed at (fresh input price, or the cache-read price for the part that was cached).
6. cache miss: carried-over tokens not read from the prompt cache although the model offers one
   (its cache-read price is below its input price), when there are at least `cache_min_tokens`.
   Waste = those tokens × (input price − cache-read price). The reason says why the prefix missed:
   the model changed since the previous call, a gap longer than `cache_ttl_seconds`, or the
   prefix itself changed (or caching was not enabled).
7. oversized model: a call that produced at most `oversized_max_output_tokens` and ended
   normally, where a cheaper model of the same provider that this project already uses would
   have cost at least `oversized_min_saving` less for the same tokens. Waste = cost − that cost.
8. productive: the rest.

A call whose model has no known price adds tokens but no dollars (its cost is unknown, not
zero); its findings say so with a wasted cost of None.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BUCKETS", "DEFINITE", "Finding", "Ledger", "Thresholds", "analyze", "context_split",
           "largest_carried_item"]

BUCKETS = ("retry", "loop", "duplicate", "no_outcome", "context_bloat", "cache_miss", "oversized_model",
           "productive")  # fmt: skip
DEFINITE = ("retry", "loop", "duplicate", "no_outcome")
_TRUNCATED = frozenset({"length", "max_tokens", "model_length"})
_CUT = re.compile(r"…\[truncated (\d+) chars\]$")


@dataclass(frozen=True)
class Thresholds:
    loop_min_repeats: int = 2
    loop_max_cycle: int = 4
    bloat_carry_tokens: int = 16_000
    cache_min_tokens: int = 1024
    cache_ttl_seconds: float = 300.0
    oversized_max_output_tokens: int = 16
    oversized_min_saving: float = 0.5
    #: a run that ended in an error without a successful outcome counts as no outcome
    no_outcome_on_error: bool = True


@dataclass
class Finding:
    detector: str
    span_id: str
    wasted_usd: float | None  # None: the model has no known price
    wasted_tokens: int
    related: list[str] = field(default_factory=list)
    reason: str = ""
    model: str = ""


@dataclass
class Ledger:
    total_usd: float
    buckets: dict[str, float]
    findings: list[Finding]
    wasted_tokens: int
    unpriced_calls: int
    outcome: str  # "success", "failure" or ""

    @property
    def wasted_usd(self) -> float:
        return sum(v for k, v in self.buckets.items() if k != "productive")


# (provider, model, input tokens) -> (fresh input, cache read, output) USD per token, or None
Prices = Callable[[str, str, int], tuple[float, float, float] | None]


@dataclass
class _Call:
    span: dict[str, Any]
    scope: str  # span id of the nearest agent ancestor ("" at top level)
    cost: float | None
    remaining: float
    failed: bool
    carried: int = 0
    cached: int = 0


def context_split(input_tokens: int, cached: int, prior: int) -> tuple[int, int, int]:
    """(cached, carried over, new) tokens of a call's input, from token counts alone: the part of
    its uncached input up to the size of the same agent's previous call (input + output) is
    carried over, the rest is new."""
    cached = min(max(cached, 0), input_tokens)
    carried = min(max(0, min(input_tokens, prior) - cached), input_tokens - cached)
    return cached, carried, input_tokens - cached - carried


def _scopes(spans: Sequence[dict[str, Any]]) -> dict[str, str]:
    """span id -> span id of its nearest agent ancestor (itself excluded)."""
    by_id = {s["span_id"]: s for s in spans}
    found: dict[str, str] = {}
    for span in spans:
        seen = set()
        parent = span["parent_span_id"]
        scope = ""
        while parent and parent in by_id and parent not in seen:
            seen.add(parent)
            if by_id[parent]["step_kind"] == "agent":
                scope = parent
                break
            parent = by_id[parent]["parent_span_id"]
        found[span["span_id"]] = scope
    return found


def _take(call: _Call, amount: float) -> float:
    amount = max(0.0, min(amount, call.remaining))
    call.remaining -= amount
    return amount


def _loops(steps: list[tuple[Any, _Call | None]], t: Thresholds) -> list[tuple[list[int], list[int], int]]:
    """Repeated cycles in a run's step sequence: (first iteration positions, later positions, length)."""
    keys = [k for k, _ in steps]
    used = [False] * len(keys)
    found = []
    for length in range(1, t.loop_max_cycle + 1):
        i = 0
        while i + length * t.loop_min_repeats <= len(keys):
            cycle = keys[i : i + length]
            if any(used[i : i + length]) or not any(k[0] == "tool" for k in cycle):
                i += 1
                continue
            end = i + length
            while end + length <= len(keys) and keys[end : end + length] == cycle and not any(used[end : end + length]):
                end += length
            if (end - i) // length >= t.loop_min_repeats:
                for j in range(i, end):
                    used[j] = True
                found.append((list(range(i, i + length)), list(range(i + length, end)), length))
                i = end
            else:
                i += 1
    return found


def analyze(spans: Sequence[dict[str, Any]], prices: Prices, alternatives: Sequence[tuple[str, str]] = (),
            t: Thresholds = Thresholds(), outcome: str = "") -> Ledger:  # fmt: skip
    """The ledger of one trace. `spans` are rows in start order; `alternatives` are the
    (provider, model) pairs the project uses, candidates for the oversized-model rule; `outcome`
    is the trace's verdict from the outcomes table ("success", "failure" or "" when unknown, in
    which case outcome attributes on its spans decide)."""
    scopes = _scopes(spans)
    by_id = {s["span_id"]: s for s in spans}
    calls: list[_Call] = []
    wrappers = {s["parent_span_id"] for s in spans if s["step_kind"] == "llm"}
    for span in spans:
        if span["step_kind"] not in ("llm", "embedding"):
            continue
        if not span["billable"]:
            # A failed request that reported no usage (a 429, a timeout) is still an attempt of a
            # retry chain; it was not billed, so it costs 0 here. Framework spans around one are not.
            if span["status_code"] != "ERROR" or span["input_tokens"] or span["span_id"] in wrappers:
                continue
            span = dict(span, cost_usd=0.0)
        parent = by_id.get(span["parent_span_id"])
        failed = (span["status_code"] == "ERROR" or bool(_TRUNCATED & set(span["finish_reasons"]))
                  or (parent is not None and parent["step_kind"] == "retry" and parent["status_code"] == "ERROR"))  # fmt: skip
        cost = span["cost_usd"]
        calls.append(_Call(span, scopes[span["span_id"]], cost, cost or 0.0, failed))
    findings: list[Finding] = []
    buckets = dict.fromkeys(BUCKETS, 0.0)

    def waste(detector: str, call: _Call, amount: float | None, tokens: int, related: list[str], reason: str) -> None:
        taken = _take(call, amount) if amount is not None and call.cost is not None else None
        if taken is not None:
            buckets[detector] += taken
        findings.append(Finding(detector, call.span["span_id"], taken, tokens, related, reason, call.span["model"]))

    def full(call: _Call) -> float | None:
        return call.remaining if call.cost is not None else None

    def tokens(call: _Call) -> int:
        return int(call.span["input_tokens"]) + int(call.span["output_tokens"])

    # 1. retry
    for i, call in enumerate(calls):
        if not call.failed:
            continue
        again = next((c for c in calls[i + 1 :] if c.scope == call.scope and c.span["model"] == call.span["model"]), None)
        if again is not None:
            why = call.span["error_type"] or "cut off at the token limit"
            waste("retry", call, full(call), tokens(call), [again.span["span_id"]],
                  f"failed ({why}) and was tried again")  # fmt: skip
    done = {f.span_id for f in findings}

    # 2. loop: per agent run, the sequence of model and tool steps
    runs: dict[str, list[tuple[Any, _Call | None]]] = defaultdict(list)
    call_of = {c.span["span_id"]: c for c in calls}
    for span in spans:
        if span["span_id"] in call_of:
            runs[scopes[span["span_id"]]].append((("llm", span["model"]), call_of[span["span_id"]]))
        elif span["step_kind"] == "tool":
            # without captured arguments two calls of one tool cannot be told apart: never a cycle
            args = span["tool_args_hash"] if span["has_tool_args"] else span["span_id"]
            runs[scopes[span["span_id"]]].append((("tool", span["tool_name"], args), None))
    for steps in runs.values():
        for first, later, length in _loops(steps, t):
            iterations = 1 + len(later) // length
            tools = " → ".join(str(steps[j][0][1]) for j in first)
            for n, j in enumerate(later):
                repeat = steps[j][1]
                if repeat is None or repeat.span["span_id"] in done:
                    continue
                origin = steps[first[n % length]][1]
                waste("loop", repeat, full(repeat), tokens(repeat), [origin.span["span_id"]] if origin else [],
                      f"iteration {n // length + 2} of {iterations} of the cycle {tools}")  # fmt: skip
                done.add(repeat.span["span_id"])

    # 3. duplicate
    seen: dict[tuple[str, int], str] = {}
    for call in calls:
        key = (call.span["model"], int(call.span["input_hash"]))
        if not key[1] or call.failed:
            continue
        if key in seen and call.span["span_id"] not in done:
            waste("duplicate", call, full(call), tokens(call), [seen[key]], "same model and input as an earlier call")
            done.add(call.span["span_id"])
        seen.setdefault(key, call.span["span_id"])

    # 4. no outcome
    outcomes = {s["outcome"] for s in spans if s.get("outcome")}
    root_error = any(s["status_code"] == "ERROR" for s in spans if not s["parent_span_id"])
    if not outcome:
        outcome = "failure" if "false" in outcomes else "success" if "true" in outcomes else ""
    if outcome == "failure" or (t.no_outcome_on_error and root_error and outcome != "success"):
        why = "the recorded outcome is a failure" if outcome == "failure" else "the run ended in an error"
        for call in calls:
            if call.span["span_id"] not in done and (call.remaining > 0 or call.cost is None):
                waste("no_outcome", call, full(call), tokens(call), [], why)
        outcome = outcome or "failure"
    else:
        _avoidable(calls, prices, alternatives, t, waste)

    buckets["productive"] = sum(c.remaining for c in calls if c.cost is not None)
    total = sum(c.cost for c in calls if c.cost is not None and c.span["billable"])
    wasted_tokens = sum(f.wasted_tokens for f in findings)
    return Ledger(total, buckets, findings, wasted_tokens, sum(1 for c in calls if c.cost is None), outcome)


def _avoidable(calls: list[_Call], prices: Prices, alternatives: Sequence[tuple[str, str]], t: Thresholds,
               waste: Callable[..., None]) -> None:  # fmt: skip
    previous: dict[str, _Call] = {}
    first: dict[str, tuple[int, int]] = {}  # scope -> (input of its first call, calls so far)
    for call in calls:
        span = call.span
        if span["step_kind"] != "llm":
            continue  # an embedding's input is not a conversation: no context rules for it
        before = previous.get(call.scope)
        previous[call.scope] = call
        start_input, n = first.get(call.scope, (int(span["input_tokens"]), 0))
        first[call.scope] = (start_input, n + 1)
        if call.failed:
            continue
        inp, out = int(span["input_tokens"]), int(span["output_tokens"])
        prior = int(before.span["input_tokens"]) + int(before.span["output_tokens"]) if before else 0
        cached, carried, _ = context_split(inp, int(span["cache_read_tokens"]), prior)
        unit = prices(span["provider"], span["model"], inp)
        priced = call.cost is not None and unit is not None
        # 5. context bloat
        excess = max(0, carried - t.bloat_carry_tokens)
        if excess:
            fresh = unit[0] if unit else 0.0
            waste("context_bloat", call, excess * fresh if priced else None, excess,
                  [before.span["span_id"]] if before else [],
                  f"carried {carried:,} tokens of earlier context, {excess:,} over the {t.bloat_carry_tokens:,}-token "
                  f"budget; the context grew from {start_input:,} to {inp:,} tokens over {n + 1} calls"
                  + (f" ({inp / start_input:.1f}x)" if start_input else ""))  # fmt: skip
        # 6. cache miss
        missed = carried - excess
        if before is not None and missed >= t.cache_min_tokens and unit is not None and unit[1] < unit[0]:
            gap = (span["start_ns"] - before.span["start_ns"] - before.span["duration_ns"]) / 1e9
            if before.span["model"] != span["model"]:
                why = f"the model changed from {before.span['model']}"
            elif gap > t.cache_ttl_seconds:
                why = f"{gap:.0f} s since the previous call, beyond the {t.cache_ttl_seconds:.0f} s cache lifetime"
            else:
                why = "the prompt prefix changed, or caching was not enabled for it"
            waste("cache_miss", call, missed * (unit[0] - unit[1]) if priced else None, missed,
                  [before.span["span_id"]], f"{missed:,} carried-over tokens were not read from the cache: {why}")  # fmt: skip
        # 7. oversized model
        if (not priced or not call.cost or out > t.oversized_max_output_tokens
                or set(span["finish_reasons"]) - {"stop", "end_turn"}):  # fmt: skip
            continue
        best: tuple[float, str] | None = None
        for provider, model in alternatives:
            if provider != span["provider"] or model == span["model"]:
                continue
            alt = prices(provider, model, inp)
            if alt is None:
                continue
            alt_cost = (inp - cached) * alt[0] + cached * alt[1] + out * alt[2]
            if best is None or alt_cost < best[0]:
                best = (alt_cost, model)
        assert call.cost is not None
        if best is not None and best[0] <= (1 - t.oversized_min_saving) * call.cost:
            waste("oversized_model", call, call.cost - best[0], 0, [],
                  f"{out} output tokens; {best[1]}, which this project already uses, would cost "
                  f"{best[0] / call.cost:.0%} of it")  # fmt: skip


def largest_carried_item(input_messages: str) -> tuple[str, int] | None:
    """From a call's captured input (OTel message JSON): the largest tool result or earlier
    message it carried along, as (what it is, estimated tokens at ~4 characters a token)."""
    import json

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
            body = part.get("response", part.get("content", ""))
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
