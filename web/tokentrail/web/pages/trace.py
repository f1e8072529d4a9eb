"""One trace (`/trace/{id}`, `.json`): its summary, waste ledger and findings, the context chart
(per model call: cached, carried over and new input, as the ledger splits it) and the nested
timeline. The page renders the first `PAGE_ROWS` timeline rows; htmx fetches the rest from
`/trace/{id}/rows`, which reads only the spans (and the findings' badges) and lays them out. One
span in full (`/trace/{id}/span/{span_id}`, `.json`) is a partial for htmx or a page of its own.

For a large trace: past `MAX_FINDINGS_SHOWN` findings the page reads every finding as a badge
and only the listed ones in full, the layout places only the bars that are drawn, the rows read a
span's columns by key, and the cycle collector waits while the page is built (`_collector_paused`).
"""

from __future__ import annotations

import gc
import heapq
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from tokentrail.store import Client
from tokentrail.store import spans as span_reads
from tokentrail.store import traces as trace_reads
from tokentrail.web import render, waste
from tokentrail.web.deps import Inputs, get_client
from tokentrail.web.filters import NotFound, check_id, whole_number
from tokentrail.web.messages import clip, json_or_text, messages, parts
from tokentrail.web.timeline import ChartColumn, ContextStep, chart_columns, context_steps, layout

__all__ = ["json_view", "router", "rows_view", "span_json", "span_view", "trace_json", "trace_view"]

#: a trace page shows at most this many spans (the JSON API says when it cut)
MAX_TRACE_SPANS = 50_000
#: waterfall rows rendered at once; the rest load on demand (a 10,000-span page stays light)
PAGE_ROWS = 1000
#: findings listed in a trace's ledger box
MAX_FINDINGS_SHOWN = 50

router = APIRouter(include_in_schema=False)
_project = Inputs("project")
_rows = Inputs("project", "first")


def _spans(client: Client, project: str, trace_id: str) -> tuple[str, list[dict[str, Any]], bool]:
    """(checked trace id, its first MAX_TRACE_SPANS spans, whether it has more)."""
    trace_id = check_id(trace_id, 32, "trace id")
    spans = span_reads.spans(client, project, trace_id, MAX_TRACE_SPANS + 1)
    if not spans:
        raise NotFound(f"no trace {trace_id} in project {project}")
    return trace_id, spans[:MAX_TRACE_SPANS], len(spans) > MAX_TRACE_SPANS


def _marks(findings: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Findings by the span they charge, for the timeline's badges."""
    marks: dict[str, list[dict[str, Any]]] = {}
    for finding in findings:
        marks.setdefault(finding["span_id"], []).append(finding)
    return marks


def _chart_flags(
    steps: list[ContextStep], chart: list[ChartColumn], findings: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per chart column: which of its calls were bloated or missed the cache."""
    flagged = {x["span_id"]: x for x in findings if x["detector"] in ("context_bloat", "cache_miss")}
    flags = []
    for column in chart:
        hits = [flagged[c.span_id] for c in steps[column.first - 1 : column.last] if c.span_id in flagged]
        flags.append(
            {
                "detectors": sorted({h["detector"] for h in hits}),
                "count": len(hits),
                "reason": hits[0]["reason"] if hits else "",
            }
        )
    return flags


def _chart_top(chart: list[ChartColumn]) -> int:
    """The chart's scale: its tallest input and its tallest output, stacked (at least 1)."""
    if not chart:
        return 1
    return max(max(c.step.input_tokens for c in chart) + max(c.step.output for c in chart), 1)


def _trace(client: Client, project: str, trace_id: str) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """What the page and its JSON twin both show (summary, ledger, timeline, context split), the
    spans they come from, and how many findings the ledger has."""
    trace_id, spans, truncated = _spans(client, project, trace_id)
    ledger = waste.reader(client).ledger(project, trace_id)
    data = {
        "project": project,
        "trace_id": trace_id,
        # the summary lags the spans by a second or two; a trace still arriving has none yet
        "summary": trace_reads.trace(client, project, trace_id),
        "ledger": waste.ledger(ledger),
        "timeline": layout(spans),
        "context": context_steps(spans),
        "truncated": truncated,
    }
    return data, spans, ledger["findings"] if ledger else 0


def _in_timeline_order(found: list[dict[str, Any]], spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`found` sorted as the timeline shows their spans (a span the trace lacks last), by detector."""
    position = {s["span_id"]: i for i, s in enumerate(spans)}
    found.sort(key=lambda x: (position.get(x["span_id"], len(spans)), x["detector"]))
    return found


def _costliest(found: list[dict[str, Any]], spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The findings a page lists: all of them, or the costliest, those of equal cost in timeline
    order (the JSON twin lists every one). Only the findings that cost at least the last listed
    one are put in timeline order: a large trace has thousands."""
    if len(found) <= MAX_FINDINGS_SHOWN:
        return found
    least = heapq.nlargest(MAX_FINDINGS_SHOWN, (x["wasted_usd"] or 0.0 for x in found))[-1]
    dearest = _in_timeline_order([x for x in found if (x["wasted_usd"] or 0.0) >= least], spans)
    return sorted(dearest, key=lambda x: -(x["wasted_usd"] or 0.0))[:MAX_FINDINGS_SHOWN]


def _page_findings(
    client: Client, project: str, trace_id: str, spans: list[dict[str, Any]], expected: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(every finding, the ones the page lists in full). With more findings than a page lists,
    every one is read as a badge (span, detector, reason, dollars), by detector and span, and only
    the listed ones in full: a large trace has thousands, and their evidence is most of what they
    weigh. `expected`: how many the ledger says there are."""
    reader = waste.reader(client)
    if expected <= MAX_FINDINGS_SHOWN:
        found = _in_timeline_order(reader.trace_findings(project, trace_id), spans)
        return found, waste.findings(client, project, _costliest(found, spans))
    found = reader.trace_marks(project, trace_id)
    picked = _costliest(found, spans)
    stored = reader.trace_findings(project, trace_id, sorted({x["span_id"] for x in picked}))
    by_key = {(x["detector"], x["span_id"]): x for x in stored}
    # a finding missing here was replaced by a newer analysis between the two reads
    shown = [by_key[key] for x in picked if (key := (x["detector"], x["span_id"])) in by_key]
    return found, waste.findings(client, project, shown)


def _names(spans: list[dict[str, Any]], shown: list[dict[str, Any]]) -> dict[str, str]:
    """span id -> name of the spans the listed findings charge or point to."""
    wanted = {x["span_id"] for x in shown} | {r for x in shown for r in x["related"]}
    return {s["span_id"]: s["name"] for s in spans if s["span_id"] in wanted}


def trace_view(client: Client, project: str, trace_id: str) -> dict[str, Any]:
    """The page's data. Every finding shows as a badge and a chart flag; only the costliest are
    listed in full (the JSON twin has every one)."""
    data, spans, expected = _trace(client, project, trace_id)
    found, shown = _page_findings(client, project, data["trace_id"], spans, expected)
    chart = chart_columns(data["context"])
    return {
        **data,
        "findings_shown": shown,
        "findings": found,
        "marks": _marks(found),
        "names": _names(spans, shown),
        "labels": waste.LABELS,
        "page_rows": PAGE_ROWS,
        "chart": chart,
        "chart_flags": _chart_flags(data["context"], chart, found),
        "chart_top": _chart_top(chart),
        "peak_input": max((s.input_tokens for s in data["context"]), default=0),
    }


def json_view(client: Client, project: str, trace_id: str) -> dict[str, Any]:
    """The JSON twin's data: what the page shows, every finding in full."""
    data, spans, _ = _trace(client, project, trace_id)
    found = waste.reader(client).trace_findings(project, data["trace_id"])
    return {**data, "findings": _in_timeline_order(waste.findings(client, project, found), spans)}


def trace_json(data: dict[str, Any]) -> dict[str, Any]:
    """The trace page's data without its layout details."""
    return {
        **{k: data[k] for k in ("project", "trace_id", "summary", "ledger", "findings", "truncated")},
        "spans": [dict(row.span, depth=row.depth, kind=row.kind) for row in data["timeline"].rows],
        "context": [asdict(step) for step in data["context"]],
    }


def rows_view(client: Client, project: str, trace_id: str, first: int) -> dict[str, Any]:
    """Timeline rows from `first` on: the spans laid out, with their waste badges."""
    trace_id, spans, _ = _spans(client, project, trace_id)
    return {
        "project": project,
        "trace_id": trace_id,
        "timeline": layout(spans),
        "marks": _marks(waste.reader(client).trace_marks(project, trace_id)),
        "labels": waste.LABELS,
        "first": first,
        "count": PAGE_ROWS,
    }


def span_view(
    trace_id: str,
    span_id: str,
    project: str = Depends(_project.project),
    client: Client = Depends(get_client),
) -> dict[str, Any]:
    trace_id = check_id(trace_id, 32, "trace id")
    span_id = check_id(span_id, 16, "span id")
    span = span_reads.span(client, project, trace_id, span_id)
    if span is None:
        raise NotFound(f"no span {span_id} in trace {trace_id}")
    events = [
        {"time_ns": t, "name": n, "attributes": sorted(a.items())}
        for t, n, a in zip(span["events_time"], span["events_name"], span["events_attributes"], strict=False)
    ]
    system = json_or_text(span["system_instructions"])
    findings = waste.findings(
        client, project, waste.reader(client).trace_findings(project, trace_id, [span_id])
    )
    return {
        "project": project,
        "trace_id": trace_id,
        "span": span,
        "attributes": sorted((k, clip(v)) for k, v in span["attributes"].items()),
        "resource": sorted((k, clip(v)) for k, v in span["resource_attributes"].items()),
        "events": events,
        "links": list(zip(span["links_trace_id"], span["links_span_id"], strict=False)),
        "input_messages": messages(span["input_messages"]),
        "output_messages": messages(span["output_messages"]),
        "system": parts(system) if system is not None else None,
        "tool_arguments": clip(span["tool_arguments"]) if span["tool_arguments"] else None,
        "tool_result": clip(span["tool_result"]) if span["tool_result"] else None,
        "findings": findings,
        "labels": waste.LABELS,
    }


def span_json(data: dict[str, Any]) -> dict[str, Any]:
    """Everything stored for the span, unclipped."""
    span = dict(data["span"])
    for column in ("input_messages", "output_messages", "system_instructions"):
        span[column] = json_or_text(span[column])
    return {"project": data["project"], "trace_id": data["trace_id"], "span": span}


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector waits while a trace's page is built. A large trace makes tens of
    thousands of small containers (a dict per span and finding, a row per span) that live until
    the page is rendered and form no cycles: the collector would walk them, and everything else
    the process holds, several times a page for nothing (~90 ms of a 10,000-span page's ~400).
    Reference counting frees them as ever. Two pages built at once may resume it early: that
    costs only time."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


# each .json route before its page: `{trace_id}` alone would also match "abc.json"
@router.get("/trace/{trace_id}.json")
def trace_twin(
    trace_id: str, project: str = Depends(_project.project), client: Client = Depends(get_client)
) -> Response:
    with _collector_paused():
        return render.json(trace_json(json_view(client, project, trace_id)))


@router.get("/trace/{trace_id}", response_class=HTMLResponse)
def trace_page(
    request: Request,
    trace_id: str,
    project: str = Depends(_project.project),
    client: Client = Depends(get_client),
) -> Response:
    with _collector_paused():
        return render.html(request, "trace.html", trace_view(client, project, trace_id))


@router.get("/trace/{trace_id}/rows", response_class=HTMLResponse)
def trace_rows(
    request: Request,
    trace_id: str,
    params: dict[str, str] = Depends(_rows.params),
    project: str = Depends(_rows.project),
    client: Client = Depends(get_client),
) -> Response:
    """The next waterfall rows of a large trace, for htmx to put in place of its button."""
    first = whole_number(params, "first", 0, 0, MAX_TRACE_SPANS)
    with _collector_paused():
        return render.html(request, "_wf_rows.html", rows_view(client, project, trace_id, first))


@router.get("/trace/{trace_id}/span/{span_id}.json")
def span_twin(data: dict[str, Any] = Depends(span_view)) -> Response:
    return render.json(span_json(data))


@router.get("/trace/{trace_id}/span/{span_id}", response_class=HTMLResponse)
def span_page(request: Request, data: dict[str, Any] = Depends(span_view)) -> Response:
    # htmx swaps the detail into the trace page; opened directly it is a page of its own
    template = "_span.html" if request.headers.get("HX-Request") else "span.html"
    return render.html(request, template, data)
