"""Waterfall layout and the context split, without a database."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from tokentrail.web.timeline import axis_ticks, context_steps, layout


def _span(
    span_id: str, parent: str = "", start: int = 0, dur: int = 10, kind: str = "other", **kw: Any
) -> dict[str, Any]:
    row = {
        "span_id": span_id,
        "parent_span_id": parent,
        "name": span_id,
        "step_kind": kind,
        "step_subkind": "",
        "start_ns": start,
        "duration_ns": dur,
        "billable": 0,
        "agent_name": "",
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_read_tokens": 0,
        "model": "",
        "status_code": "UNSET",
        "error_type": "",
        "finish_reasons": [],
        "cost_usd": None,
    }
    row.update(kw)
    return row


def test_depth_first_with_orphans_cycles_and_unknown_kinds():
    spans = [
        _span("a", start=0, dur=100, kind="agent"),
        _span("b", "a", 10, 20, kind="llm"),
        _span("c", "b", 12, 5, kind="weird"),
        _span("d", "a", 50, 50, kind="tool"),
        _span("o", "missing", 60, 10),
        _span("x", "y", 70, 1),
        _span("y", "x", 71, 1),
    ]
    tl = layout(spans)
    assert [(r.span["span_id"], r.depth) for r in tl.rows] == [
        ("a", 0),
        ("b", 1),
        ("c", 2),
        ("d", 1),
        ("o", 0),
        ("x", 0),
        ("y", 1),
    ]
    assert [r.kind for r in tl.rows] == ["agent", "llm", "other", "tool", "other", "other", "other"]
    assert tl.rows[4].orphan and not tl.rows[0].orphan
    assert (tl.rows[3].left, tl.rows[3].width) == (50.0, 50.0)
    assert tl.duration_ns == 100 and tl.ticks == [(0.0, 0), (20.0, 20), (40.0, 40), (60.0, 60), (80.0, 80)]


def test_the_time_axis_reads_round_steps_a_fifth_of_it_apart_or_more():
    hour = 3_600_000_000_000
    assert [offset for _, offset in axis_ticks(250 * 60 * 10**9)] == [0, hour, 2 * hour, 3 * hour]
    round_steps = {n * 10**k for k in range(9) for n in (1, 2, 5)}
    round_steps |= {n * 10**9 for n in (1, 2, 5, 10, 15, 30)} | {
        n * 60 * 10**9 for n in (1, 2, 5, 10, 15, 30)
    }
    round_steps |= {n * hour for n in (1, 2, 3, 6, 12, 24, 48, 96, 168, 336, 720)}
    total = 1
    while total < 90 * 24 * hour:  # 1 ns to 90 days, some 7% apart
        ticks = axis_ticks(total)
        offsets = [offset for _, offset in ticks]
        step = offsets[1] if len(offsets) > 1 else 0
        assert offsets[0] == 0 and ticks[0][0] == 0.0
        if total >= 5:
            assert step in round_steps and offsets == [k * step for k in range(len(offsets))], total
            assert 2 <= len(ticks) <= 5, (total, ticks)
            assert all(b - a >= 20.0 - 0.01 for (a, _), (b, _) in pairwise(ticks))
        assert all(pct <= 92.0 for pct, _ in ticks)
        assert all(abs(pct - offset / total * 100) < 0.001 for pct, offset in ticks)
        total = total * 107 // 100 + 1


def test_big_traces_start_with_deep_subtrees_collapsed():
    spans = [_span("root")]
    for i in range(300):
        spans += [_span(f"s{i}", "root", i), _span(f"h{i}", f"s{i}", i), _span(f"r{i}", f"h{i}", i)]
    tl = layout(spans)
    by_id = {r.span["span_id"]: r for r in tl.rows}
    assert len(tl.rows) == 901
    assert not by_id["s7"].hidden and not by_id["h7"].hidden and by_id["h7"].collapsed
    assert by_id["r7"].hidden


def test_context_split_is_the_ledgers_per_agent_run():
    """Calls are grouped by the agent run they are in (their nearest agent span), as the ledger
    groups them: the client libraries' chat spans name no agent of their own."""
    calls = [
        _span("a", kind="agent", agent_name="writer"),
        _span("b", kind="agent", agent_name="reviewer"),
        _span("1", "a", kind="llm", billable=1, input_tokens=1000, output_tokens=100),
        _span("2", "b", kind="llm", billable=1, input_tokens=500, output_tokens=50),
        _span("e", "a", kind="embedding", billable=1, input_tokens=7777),
        _span("3", "a", kind="llm", billable=1, input_tokens=1500, output_tokens=10, cache_read_tokens=800),
        _span("4", "a", kind="llm", billable=0, input_tokens=9999),
    ]
    steps = context_steps(calls)
    assert [(s.span_id, s.agent) for s in steps] == [("1", "writer"), ("2", "reviewer"), ("3", "writer")]
    assert [(s.cached, s.carried, s.new) for s in steps] == [(0, 0, 1000), (0, 0, 500), (800, 300, 400)]
    assert all(s.cached + s.carried + s.new == s.input_tokens for s in steps)


def test_context_split_matches_the_ledgers_findings():
    """The chart's carried-over tokens are the ones the cache-miss rule charges."""
    from tokentrail.analysis.ledger import Thresholds, analyze

    calls = [
        _span("a", kind="agent", agent_name="writer"),
        _span(
            "1",
            "a",
            1,
            kind="llm",
            billable=1,
            input_tokens=3000,
            output_tokens=100,
            model="m",
            provider="p",
            cost_usd=0.01,
            cache_reported=True,
        ),
        _span(
            "2",
            "a",
            2,
            kind="llm",
            billable=1,
            input_tokens=5000,
            output_tokens=100,
            model="m",
            provider="p",
            cost_usd=0.01,
            cache_reported=True,
        ),
    ]
    for row in calls:
        row.update(
            tool_name="",
            tool_args_hash=0,
            has_tool_args=False,
            request_model="",
            input_hash=0,
            system_hash=0,
            requested_tools=[],
            outcome="",
        )
    steps = context_steps(calls)
    ledger = analyze(calls, lambda *_: (2e-6, 1e-6, 8e-6), None, Thresholds())
    (miss,) = [f for f in ledger.findings if f.detector == "cache_miss"]
    assert steps[1].carried == miss.wasted_tokens == 3100


def test_chart_buckets_long_traces_into_averages():
    from tokentrail.web.timeline import ContextStep, chart_columns

    steps = [ContextStep(f"{i:016x}", "m", "a", 100 + i, 0, 0, 100 + i, 10) for i in range(1000)]
    columns = chart_columns(steps, most=300)
    assert len(columns) == 250 and (columns[0].first, columns[0].last) == (1, 4)
    assert columns[0].step.input_tokens == (100 + 101 + 102 + 103) // 4
    assert columns[0].step.span_id == f"{3:016x}"  # a click opens the bucket's largest call
    assert [c.step for c in chart_columns(steps[:5])] == steps[:5]
