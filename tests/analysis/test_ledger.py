"""Properties of the ledger for any trace: the buckets add up to the trace's cost, no bucket is
negative, and no dollar of a call is charged twice."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tokentrail.analysis.ledger import BUCKETS, Thresholds, analyze, context_per_call

MODELS = {"big": (5e-6, 2.5e-6, 2e-5), "small": (1.5e-7, 7.5e-8, 6e-7), "nocache": (1e-6, 1e-6, 2e-6)}
#: a span row as the analysis reads it (tokentrail.analysis.run), every column at its empty value
SPAN: dict[str, Any] = {
    "span_id": "",
    "parent_span_id": "",
    "name": "",
    "step_kind": "other",
    "step_subkind": "",
    "start_ns": 0,
    "duration_ns": 1,
    "status_code": "UNSET",
    "tool_name": "",
    "tool_args_hash": 0,
    "has_tool_args": False,
    "model": "",
    "request_model": "",
    "provider": "",
    "agent_name": "",
    "input_tokens": 0,
    "output_tokens": 0,
    "cache_read_tokens": 0,
    "cache_reported": True,
    "billable": 0,
    "cost_usd": None,
    "input_hash": 0,
    "system_hash": 0,
    "requested_tools": [],
    "finish_reasons": [],
    "error_type": "",
    "retry_attempt": 0,
}


def _evidence(step: str, kind: str, provider: str) -> list[tuple[str, int, str]]:
    return [(m, 3, "t") for m in MODELS]


def _prices(provider: str, model: str, input_tokens: int) -> tuple[float, float, float] | None:
    return MODELS.get(model)


def _cost(model: str, inp: int, out: int, cached: int) -> float | None:
    unit = MODELS.get(model)
    if unit is None:
        return None
    return (inp - cached) * unit[0] + cached * unit[1] + out * unit[2]


@st.composite
def traces(draw: Any) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 25))
    spans = [
        dict(
            SPAN,
            span_id="root",
            step_kind="agent",
            duration_ns=10**12,
            agent_name="a",
            status_code=draw(st.sampled_from(["UNSET", "ERROR"])),
        )
    ]
    clock = 1
    for i in range(n):
        kind = draw(st.sampled_from(["llm", "llm", "tool", "retry", "agent", "http"]))
        # HTTP attempts sit under model calls; everything else under agents and retries
        kinds = (
            ("llm",) if kind == "http" and any(s["step_kind"] == "llm" for s in spans) else ("agent", "retry")
        )
        parent = draw(st.sampled_from([s["span_id"] for s in spans if s["step_kind"] in kinds]))
        base = dict(
            spans[0],
            span_id=f"s{i}",
            parent_span_id=parent,
            step_kind=kind,
            start_ns=clock,
            duration_ns=draw(st.integers(0, 10**12)),
            status_code=draw(st.sampled_from(["UNSET", "UNSET", "ERROR"])),
        )
        clock += draw(st.integers(1, 10**12))
        if kind == "llm":
            model = draw(st.sampled_from([*MODELS, "unknown"]))
            inp = draw(st.integers(0, 200_000))
            out = draw(st.integers(0, 5000))
            cached = draw(st.integers(0, inp))
            base.update(
                model=model,
                provider="p",
                input_tokens=inp,
                output_tokens=out,
                cache_read_tokens=cached,
                billable=draw(st.sampled_from([0, 1, 1])),
                cost_usd=_cost(model, inp, out, cached),
                input_hash=draw(st.integers(0, 3)),
                finish_reasons=[draw(st.sampled_from(["stop", "length", "tool_calls"]))],
                cache_reported=draw(st.booleans()),
                system_hash=draw(st.integers(0, 2)),
                requested_tools=draw(st.lists(st.integers(1, 3), max_size=2)),
                retry_attempt=draw(st.sampled_from([0, 0, 1, 3])),
            )
        elif kind == "http":
            base.update(
                step_kind="other", step_subkind="http", error_type=draw(st.sampled_from(["", "429", "500"]))
            )
        elif kind == "tool":
            base.update(
                tool_name=draw(st.sampled_from(["a", "b", "Read"])),
                step_subkind=draw(st.sampled_from(["", "read"])),
                tool_args_hash=draw(st.integers(0, 2)),
                has_tool_args=draw(st.booleans()),
            )
        spans.append(base)
    return spans


@settings(max_examples=300, deadline=None)
@given(traces(), st.integers(1, 50_000), st.integers(1, 4000), st.sampled_from(["", "success", "failure"]))
def test_buckets_add_up_and_no_dollar_counts_twice(spans, bloat, cache_min, outcome):
    t = Thresholds(bloat_carry_tokens=bloat, cache_min_tokens=cache_min)
    ledger = analyze(spans, _prices, _evidence, t, outcome=outcome)
    total = sum(
        s["cost_usd"]
        for s in spans
        if s["step_kind"] == "llm" and s["billable"] and s["cost_usd"] is not None
    )
    assert math.isclose(ledger.total_usd, total, rel_tol=1e-9, abs_tol=1e-12)
    assert set(ledger.buckets) == set(BUCKETS)
    assert all(v >= -1e-12 for v in ledger.buckets.values())
    assert math.isclose(sum(ledger.buckets.values()), total, rel_tol=1e-9, abs_tol=1e-12)
    charged: dict[str, float] = defaultdict(float)
    cost = {s["span_id"]: s["cost_usd"] for s in spans}
    for f in ledger.findings:
        if f.rule == "retry.http_attempt":
            assert f.wasted_usd == 0.0 and f.time_lost_ns >= 0  # an attempt that failed was not billed
        elif f.wasted_usd is not None:
            assert f.wasted_usd >= 0
            charged[f.span_id] += f.wasted_usd
        else:
            assert cost[f.span_id] is None  # only an unpriced call has an unknown waste
    for span_id, amount in charged.items():
        assert amount <= (cost[span_id] or 0.0) + 1e-12  # an unbilled attempt costs $0
    assert math.isclose(sum(charged.values()), ledger.wasted_usd, rel_tol=1e-9, abs_tol=1e-12)
    # a call is charged by one definite rule at most (earlier attempts it reports are not the call)
    charges = [
        f
        for f in ledger.findings
        if f.detector in ("retry", "loop", "duplicate") and f.rule != "retry.reported_attempts"
    ]
    assert len({f.span_id for f in charges}) == len(charges)
    assert all(f.wasted_usd == 0.0 for f in ledger.findings if f.rule == "retry.reported_attempts")


def _growing_run(inputs: tuple[int, ...]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """An agent run's root span and its model calls, one per input size, each answering 100 tokens."""
    base = dict(
        SPAN,
        parent_span_id="root",
        step_kind="llm",
        model="big",
        provider="p",
        billable=1,
        finish_reasons=["stop"],
    )
    root = dict(SPAN, span_id="root", step_kind="agent", agent_name="a")
    calls = [
        dict(
            base,
            span_id=f"c{i}",
            start_ns=i + 1,
            input_tokens=n,
            output_tokens=100,
            cost_usd=_cost("big", n, 100, 0),
        )
        for i, n in enumerate(inputs)
    ]
    return root, calls


def test_bloat_reason_says_how_fast_the_context_grew_and_what_was_carried():
    import json

    from tokentrail.analysis.ledger import largest_carried_item

    root, calls = _growing_run((5_000, 30_000, 60_000))
    ledger = analyze([root, *calls], _prices, None, Thresholds(bloat_carry_tokens=16_000))
    (bloat,) = [f for f in ledger.findings if f.detector == "context_bloat"]
    assert bloat.span_id == "c2" and "grew from 5,000 to 60,000 tokens over 3 calls (12.0x)" in bloat.reason
    assert bloat.rule == "context_bloat.stale_context"
    # the previous call's 30,000 input tokens less the task's own 5,000 are stale; 5,000 of them are allowed
    assert (bloat.evidence["stale_tokens"], bloat.evidence["allowance"], bloat.wasted_tokens) == (
        25_000,
        5_000,
        20_000,
    )
    messages = [
        {"role": "user", "parts": [{"type": "text", "content": "Write the reply."}]},
        {"role": "assistant", "parts": [{"type": "tool_call", "id": "call_1", "name": "fetch_crm_history"}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "x" * 40_000}]},
        {"role": "user", "parts": [{"type": "text", "content": "Shorter, please."}]},
    ]
    assert largest_carried_item(json.dumps(messages)) == (
        "the result of tool fetch_crm_history (message 3 of 4)",
        10_000,
    )
    assert largest_carried_item("not json") is None


def test_a_small_context_window_lowers_the_bloat_allowance():
    root, calls = _growing_run((5_000, 9_000, 13_000))

    def bloat(window: int | None) -> Any:
        ledger = analyze([root, *calls], _prices, None, Thresholds(), windows=lambda provider, model: window)
        return next((f for f in ledger.findings if f.detector == "context_bloat"), None)

    # stale at the third call: 9,000 - 5,000 = 4,000; the task's own 5,000 are allowed
    assert bloat(None) is None and bloat(1_000_000) is None
    small = bloat(20_000)  # 10% of a 20,000-token window: 2,000
    assert (
        small is not None
        and small.wasted_tokens == 2_000
        and small.evidence["allowance_is"] == "10% of the model's window"
    )
    assert "65% of the model's 20,000-token window" in small.reason


def test_reading_again_what_the_run_read_charges_the_asking_calls_share():
    """A coding agent's reads (tool spans of subkind `read`): the repeat of Read(x) with only reads
    in between is charged to the call that asked for it (half its cost: it asked for two tool
    calls); Read(x) after an Edit is not, since the edit may have changed the file."""
    spans = [dict(SPAN, span_id="root", step_kind="agent", agent_name="claude-code", duration_ns=10**12)]

    def llm(n: int, inp: int) -> None:
        cost = _cost("big", inp, 100, 0)
        spans.append(
            dict(SPAN, span_id=f"c{n}", parent_span_id="root", step_kind="llm", start_ns=len(spans) * 10,
                 model="big", provider="p", input_tokens=inp, output_tokens=100, billable=1, cost_usd=cost,
                 finish_reasons=["tool_use"])
        )  # fmt: skip

    def tool(name: str, args: int) -> None:
        spans.append(
            dict(SPAN, span_id=f"t{len(spans)}", parent_span_id="root", step_kind="tool", start_ns=len(spans) * 10,
                 tool_name=name, tool_args_hash=args, has_tool_args=True,
                 step_subkind="read" if name in ("Read", "Grep") else "")
        )  # fmt: skip

    llm(1, 1000)
    tool("Read", 1)
    tool("Grep", 2)
    llm(2, 2000)
    tool("Read", 1)  # read again: only a search in between
    tool("Edit", 1)
    llm(3, 3000)
    tool("Read", 1)  # after an edit: a fresh read
    ledger = analyze(spans, _prices, None, Thresholds())
    rereads = [f for f in ledger.findings if f.rule == "duplicate.reread"]
    assert [f.span_id for f in rereads] == ["c2"]
    c2 = _cost("big", 2000, 100, 0)
    assert c2 is not None and rereads[0].wasted_usd is not None
    assert math.isclose(rereads[0].wasted_usd, c2 / 2)
    assert math.isclose(ledger.buckets["duplicate"], c2 / 2)


def test_each_call_belongs_to_its_nearest_agent_run_whatever_the_tree():
    """A call's agent run is its nearest agent ancestor, or a tool that runs models itself: through
    deep trees, parents the trace lacks and parent cycles (bad input) alike."""

    def span(span_id: str, parent: str, kind: str) -> dict[str, Any]:
        return {**SPAN, "span_id": span_id, "parent_span_id": parent, "step_kind": kind}

    def llm(span_id: str, parent: str) -> dict[str, Any]:
        call = span(span_id, parent, "llm")
        call.update(billable=1, input_tokens=100, output_tokens=10, model="small", cost_usd=0.001)
        return call

    spans = [
        span("a", "", "agent"),
        span("t", "a", "tool"),
        llm("in-tool", "t"),
        span("g", "a", "other"),
        llm("in-step", "g"),
        *(span(f"d{i}", f"d{i - 1}" if i else "a", "other") for i in range(300)),
        llm("deep", "d299"),
        span("x", "y", "agent"),
        span("y", "x", "other"),
        llm("in-cycle", "y"),
        llm("under-cycling-agent", "x"),
        span("z", "z", "other"),
        llm("self-parented", "z"),
        llm("orphan", "missing"),
        llm("top", ""),
    ]
    assert {c.call.span["span_id"]: c.call.scope for c in context_per_call(spans)} == {
        "in-tool": "t",
        "in-step": "a",
        "deep": "a",
        "in-cycle": "x",
        "under-cycling-agent": "x",
        "self-parented": "",
        "orphan": "",
        "top": "",
    }
