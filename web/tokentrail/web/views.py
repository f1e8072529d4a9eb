"""Views build plain dicts; templates only format them and the JSON twin of a page is the same
dict. Raises `NotFound` / `BadRequest`; the app turns them into 404 / 400 pages."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from tokentrail.web.filters import TraceFilter, check_id
from tokentrail.web.queries import Queries
from tokentrail.web.timeline import chart_columns, context_steps, layout
from tokentrail.web.waste import LABELS, WasteQueries

__all__ = ["NotFound", "conversations_view", "span_view", "trace_view", "traces_view"]

#: a trace page shows at most this many spans (the JSON API says when it cut)
MAX_TRACE_SPANS = 50_000
#: waterfall rows rendered at once; the rest load on demand (a 10,000-span page stays light)
PAGE_ROWS = 1000
#: findings listed in a trace's ledger box
MAX_FINDINGS_SHOWN = 50
#: longest text shown inline in a span's detail; the JSON API returns everything
MAX_TEXT = 20_000


class NotFound(LookupError):
    pass


def traces_view(queries: Queries, f: TraceFilter) -> dict[str, Any]:
    page = queries.traces(f)
    return {
        "filter": f,
        "traces": page.rows,
        "totals": queries.totals(f),
        "facets": queries.facets(f),
        "next": f.query_args(cursor=page.next_cursor) if page.next_cursor else None,
        "first_page": f.cursor is None,
    }


def conversations_view(queries: Queries, f: TraceFilter) -> dict[str, Any]:
    page = queries.conversations(f)
    return {
        "filter": f,
        "conversations": page.rows,
        "next": f.query_args(cursor=page.next_cursor) if page.next_cursor else None,
    }


def trace_view(
    queries: Queries, project: str, trace_id: str, waste: WasteQueries | None = None
) -> dict[str, Any]:
    trace_id = check_id(trace_id, 32, "trace id")
    spans = queries.spans(project, trace_id, MAX_TRACE_SPANS + 1)
    if not spans:
        raise NotFound(f"no trace {trace_id} in project {project}")
    truncated = len(spans) > MAX_TRACE_SPANS
    spans = spans[:MAX_TRACE_SPANS]
    # The summary lags the spans by a second or two; a trace still arriving has none yet.
    summary = queries.trace(project, trace_id)
    steps = context_steps(spans)
    chart = chart_columns(steps)
    findings = waste.findings(project, trace_id) if waste is not None else []
    names = {s["span_id"]: s["name"] for s in spans}
    position = {s["span_id"]: i for i, s in enumerate(spans)}
    findings.sort(key=lambda x: (position.get(x["span_id"], len(spans)), x["detector"]))  # in timeline order
    marks: dict[str, list[dict[str, Any]]] = {}
    for finding in findings:
        marks.setdefault(finding["span_id"], []).append(finding)
    # context findings flagged on the chart: per column, which calls were bloated or missed the cache
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
    shown = findings
    if len(findings) > MAX_FINDINGS_SHOWN:  # the costliest; the JSON twin lists every one
        shown = sorted(findings, key=lambda x: -(x["wasted_usd"] or 0.0))[:MAX_FINDINGS_SHOWN]
    return {
        "project": project,
        "trace_id": trace_id,
        "summary": summary,
        "findings_shown": shown,
        "ledger": waste.ledger(project, trace_id) if waste is not None else None,
        "findings": findings,
        "marks": marks,
        "names": names,
        "labels": LABELS,
        "timeline": layout(spans),
        "page_rows": PAGE_ROWS,
        "context": steps,
        "chart": chart,
        "chart_flags": flags,
        "truncated": truncated,
    }


def trace_json(data: dict[str, Any]) -> dict[str, Any]:
    """The trace page's data without its layout details."""
    timeline = data["timeline"]
    return {
        "project": data["project"],
        "trace_id": data["trace_id"],
        "summary": data["summary"],
        "ledger": data["ledger"],
        "findings": data["findings"],
        "truncated": data["truncated"],
        "spans": [dict(row.span, depth=row.depth, kind=row.kind) for row in timeline.rows],
        "context": [asdict(step) for step in data["context"]],
    }


def _clip(text: str) -> dict[str, Any]:
    return {"text": text[:MAX_TEXT], "more": max(0, len(text) - MAX_TEXT)}


def _json_or_text(raw: str) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _parts(parts: Any) -> list[dict[str, Any]]:
    """Message parts in the OTel shape → display parts; anything unexpected shows as raw JSON."""
    shown: list[dict[str, Any]] = []
    if isinstance(parts, str):
        parts = [{"type": "text", "content": parts}]
    if not isinstance(parts, list):
        parts = [parts]
    for part in parts:
        if not isinstance(part, dict):
            shown.append({"type": "text", **_clip(str(part))})
            continue
        kind = str(part.get("type", "text"))
        if kind == "text" or kind == "reasoning":
            content = part.get("content")
            shown.append(
                {"type": kind, **_clip(content if isinstance(content, str) else json.dumps(content))}
            )
        elif kind == "tool_call":
            args = part.get("arguments")
            args_text = args if isinstance(args, str) else json.dumps(args, indent=2, ensure_ascii=False)
            shown.append(
                {
                    "type": kind,
                    "name": str(part.get("name", "")),
                    "id": str(part.get("id", "")),
                    **_clip(args_text),
                }
            )
        elif kind == "tool_call_response":
            resp = part.get("response", part.get("result"))
            resp_text = resp if isinstance(resp, str) else json.dumps(resp, indent=2, ensure_ascii=False)
            shown.append({"type": kind, "id": str(part.get("id", "")), **_clip(resp_text)})
        else:
            shown.append({"type": kind, **_clip(json.dumps(part, indent=2, ensure_ascii=False))})
    return shown


def messages(raw: str) -> list[dict[str, Any]] | None:
    """A messages column (JSON in the OTel shape) → [{role, parts}] for the chat view."""
    value = _json_or_text(raw)
    if value is None:
        return None
    if isinstance(value, str):
        return [{"role": "unknown", "parts": _parts(value)}]
    if not isinstance(value, list):
        value = [value]
    shown = []
    for message in value:
        if isinstance(message, dict):
            role = str(message.get("role", "unknown"))[:40]
            shown.append({"role": role, "parts": _parts(message.get("parts", message.get("content", "")))})
        else:
            shown.append({"role": "unknown", "parts": _parts(message)})
    return shown


def span_view(
    queries: Queries, project: str, trace_id: str, span_id: str, waste: WasteQueries | None = None
) -> dict[str, Any]:
    trace_id = check_id(trace_id, 32, "trace id")
    span_id = check_id(span_id, 16, "span id")
    span = queries.span(project, trace_id, span_id)
    if span is None:
        raise NotFound(f"no span {span_id} in trace {trace_id}")
    events = [
        {"time_ns": t, "name": n, "attributes": sorted(a.items())}
        for t, n, a in zip(span["events_time"], span["events_name"], span["events_attributes"], strict=False)
    ]
    system = _json_or_text(span["system_instructions"])
    return {
        "project": project,
        "trace_id": trace_id,
        "span": span,
        "attributes": sorted((k, _clip(v)) for k, v in span["attributes"].items()),
        "resource": sorted((k, _clip(v)) for k, v in span["resource_attributes"].items()),
        "events": events,
        "links": list(zip(span["links_trace_id"], span["links_span_id"], strict=False)),
        "input_messages": messages(span["input_messages"]),
        "output_messages": messages(span["output_messages"]),
        "system": _parts(system) if system is not None else None,
        "tool_arguments": _clip(span["tool_arguments"]) if span["tool_arguments"] else None,
        "tool_result": _clip(span["tool_result"]) if span["tool_result"] else None,
        "findings": [x for x in waste.findings(project, trace_id) if x["span_id"] == span_id]
        if waste
        else [],
        "labels": LABELS,
    }


def span_json(data: dict[str, Any]) -> dict[str, Any]:
    """Everything stored for the span, unclipped."""
    span = dict(data["span"])
    for column in ("input_messages", "output_messages", "system_instructions"):
        span[column] = _json_or_text(span[column])
    return {"project": data["project"], "trace_id": data["trace_id"], "span": span}
