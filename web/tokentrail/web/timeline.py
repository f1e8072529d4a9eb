"""A trace's spans → waterfall rows and the per-step context chart. Pure functions over the rows
`tokentrail.store.spans.spans` returns, so they are tested and benchmarked without a database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokentrail.analysis.ledger import context_per_call

__all__ = [
    "KINDS",
    "ChartColumn",
    "ContextStep",
    "Row",
    "Timeline",
    "axis_ticks",
    "chart_columns",
    "context_steps",
    "layout",
]

#: step kinds the UI colours; anything else shows as "other"
KINDS = ("agent", "plan", "llm", "tool", "retry", "retrieval", "embedding", "other")
_KNOWN = frozenset(KINDS)

#: above this many spans, subtrees below `_DEEP` start collapsed so the page stays light
_COLLAPSE_ABOVE = 500
_DEEP = 2
_MIN_WIDTH = 0.2  # percent: a 1 µs span is still a visible, clickable bar

_S, _M, _H = 1_000_000_000, 60_000_000_000, 3_600_000_000_000
#: the time axis's steps: round values a reader adds up at a glance, from 1 ns to 30 days
_STEPS = [
    *(n * 10**k for k in range(9) for n in (1, 2, 5)),
    *(n * _S for n in (1, 2, 5, 10, 15, 30)),
    *(n * _M for n in (1, 2, 5, 10, 15, 30)),
    *(n * _H for n in (1, 2, 3, 6, 12, 24, 48, 96, 168, 336, 720)),
]
_AXIS_INTERVALS = 5  # at most this many steps fit the axis
_AXIS_END = 92.0  # percent: a label further right would run past the axis or into the one before


@dataclass(slots=True)
class Row:
    span: dict[str, Any]
    depth: int
    children: int
    kind: str
    hidden: bool  # under a collapsed ancestor
    collapsed: bool  # its own children start hidden
    orphan: bool  # its parent is not in the trace (not received, or still on its way)
    start_ns: int  # the trace's time axis: its start and length
    total_ns: int

    # The bar's place is worked out when it is drawn: a page draws 1,000 of a trace's rows.
    @property
    def left(self) -> float:
        """Percent of the trace's duration before the bar starts."""
        return round(self._left(), 3)

    @property
    def width(self) -> float:
        """Percent of the trace's duration the bar covers (a 1 µs span is still visible)."""
        width: float = max(self.span["duration_ns"] / self.total_ns * 100, _MIN_WIDTH)
        return round(min(width, 100 - self._left()), 3)

    def _left(self) -> float:
        left: float = (self.span["start_ns"] - self.start_ns) / self.total_ns * 100
        return min(left, 100 - _MIN_WIDTH)


@dataclass
class Timeline:
    rows: list[Row]
    start_ns: int
    duration_ns: int
    ticks: list[tuple[float, int]]  # (percent, offset ns)


def layout(spans: Sequence[dict[str, Any]]) -> Timeline:
    """Depth-first rows (children in start order) with bar positions on the trace's time axis."""
    if not spans:
        return Timeline([], 0, 0, [])
    ids = {s["span_id"] for s in spans}
    children: dict[str, list[dict[str, Any]]] = {}
    roots: list[dict[str, Any]] = []
    for span in spans:  # already in start order
        parent = span["parent_span_id"]
        if parent and parent in ids and parent != span["span_id"]:
            children.setdefault(parent, []).append(span)
        else:
            roots.append(span)
    start = min(s["start_ns"] for s in spans)
    end = max(s["start_ns"] + s["duration_ns"] for s in spans)
    total = max(end - start, 1)
    collapse = len(spans) > _COLLAPSE_ABOVE
    rows: list[Row] = []
    seen: set[str] = set()
    leaf: list[dict[str, Any]] = []
    # (span, depth, hidden); a stack instead of recursion: agent traces can nest deeply
    stack: list[tuple[dict[str, Any], int, bool]] = [(r, 0, False) for r in reversed(roots)]
    pending = iter(spans)
    while True:
        if not stack:
            # spans whose parents form a cycle (bad input) are reached from no root: show them too
            rest = next((s for s in pending if s["span_id"] not in seen), None)
            if rest is None:
                break
            stack.append((rest, 0, False))
        span, depth, hidden = stack.pop()
        span_id, parent, kind = span["span_id"], span["parent_span_id"], span["step_kind"]
        if span_id in seen:  # a parent cycle in bad input; show each span once
            continue
        seen.add(span_id)
        kids = children.get(span_id, leaf)
        collapsed = collapse and depth >= _DEEP and bool(kids)
        rows.append(
            Row(
                span=span,
                depth=depth,
                children=len(kids),
                kind=kind if kind in _KNOWN else "other",
                hidden=hidden,
                collapsed=collapsed,
                orphan=bool(parent) and parent not in ids,
                start_ns=start,
                total_ns=total,
            )
        )
        if kids:
            stack.extend([(kid, depth + 1, hidden or collapsed) for kid in reversed(kids)])
    return Timeline(rows, start, total, axis_ticks(total))


def axis_ticks(total_ns: int) -> list[tuple[float, int]]:
    """The time axis's labels, (percent, offset ns): 0 and multiples of the smallest round step that
    fits at most five times (a 4 h 10 m trace gets 0, 1 h, 2 h and 3 h). Labels sit at least a fifth
    of the axis apart, and none close to its right end, so that none runs into another."""
    step = next((s for s in _STEPS if total_ns <= s * _AXIS_INTERVALS), _STEPS[-1])
    ticks = []
    for k in range(total_ns // step + 1):
        pct = k * step / total_ns * 100
        if pct > _AXIS_END:
            break
        ticks.append((round(pct, 3), k * step))
    return ticks


@dataclass
class ContextStep:
    span_id: str
    label: str
    agent: str
    input_tokens: int
    cached: int
    carried: int
    new: int
    output: int
    stale: int = 0  # input earlier calls of the run already read (what the bloat rule weighs)


def context_steps(spans: Sequence[dict[str, Any]]) -> list[ContextStep]:
    """Input of every successful model call, split into cached, carried over and new tokens: the
    split the waste ledger's context rules use (`tokentrail.analysis.ledger.context_per_call`), so
    the chart shows what the ledger charges. Carried over: uncached input up to the size of the
    previous call of the same agent run (its input + output); cached: what the provider reported
    reading from its prompt cache."""
    by_id = {s["span_id"]: s for s in spans}
    steps = []
    for c in context_per_call(spans):
        span = c.call.span
        agent = by_id.get(c.call.scope)
        steps.append(
            ContextStep(
                span_id=span["span_id"],
                label=span["model"] or span["name"],
                agent=agent["agent_name"] if agent else "",
                input_tokens=int(span["input_tokens"]),
                cached=c.cached,
                carried=c.carried,
                new=c.new,
                output=int(span["output_tokens"]),
                stale=c.stale,
            )
        )
    return steps


@dataclass
class ChartColumn:
    first: int  # 1-based call numbers this column covers
    last: int
    step: ContextStep  # the call itself, or the bucket's average (span_id: its largest call)


def chart_columns(steps: Sequence[ContextStep], most: int = 300) -> list[ChartColumn]:
    """One column per call; past `most` calls, consecutive calls share a column showing their
    average, so a 10,000-call trace still draws a readable chart of a few hundred columns."""
    size = max(1, -(-len(steps) // most))
    columns = []
    for i in range(0, len(steps), size):
        bucket = steps[i : i + size]
        if len(bucket) == 1:
            columns.append(ChartColumn(i + 1, i + 1, bucket[0]))
            continue
        n = len(bucket)
        biggest = max(bucket, key=lambda s: s.input_tokens)
        columns.append(
            ChartColumn(
                i + 1,
                i + n,
                ContextStep(
                    span_id=biggest.span_id,
                    label=f"average of calls {i + 1}-{i + n}",
                    agent="",
                    input_tokens=sum(s.input_tokens for s in bucket) // n,
                    cached=sum(s.cached for s in bucket) // n,
                    carried=sum(s.carried for s in bucket) // n,
                    new=sum(s.new for s in bucket) // n,
                    output=sum(s.output for s in bucket) // n,
                ),
            )
        )
    return columns
