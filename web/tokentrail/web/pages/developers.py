"""Developers: what coding agents (Claude Code, Codex CLI, Gemini CLI) cost per successful task.

- `/developers` (`.json`, `.csv`): per developer, team, repository or coding agent, the sessions,
  tasks (one per prompt), successful tasks, cost, cost per task and per successful task, waste
  and its share, and the outcomes by name (a merged pull request: how many, and the cost of the
  work they judge per success); a trend per day or week; the waste ledger of coding-agent work
  by bucket. Rows never rank by tokens: by cost per successful task (groups without a
  successful task apart, after the others) or by waste.
- `/developers/sessions` (`.json`): the sessions, latest activity first, a page at a time.
- `/developers/sessions/{session_id}` (`.json`): one session's prompts on one time axis, with
  the idle gaps between them, a page of `PROMPTS_PER_PAGE` at a time.

Every read is of coding-agent traces only: the trace filter's `coding_agent` narrows to one tool,
else every tool counts (`ANY_CODING_AGENT`). A task succeeded when an outcome on its trace, its
task id or its session says so, as everywhere (`tokentrail.store.outcomes`).
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from tokentrail.pricing import PriceBook
from tokentrail.store import Client, usage_metrics
from tokentrail.store import developers as reads
from tokentrail.store.filters import ANY_CODING_AGENT, TraceFilter
from tokentrail.store.outcomes import latest_outcomes
from tokentrail.web import render, waste
from tokentrail.web.deps import Inputs, get_client
from tokentrail.web.filters import CODING_AGENTS, FILTER_PARAMS, RANGE_PARAMS, BadRequest, query_args
from tokentrail.web.pages.costs import per_success

__all__ = [
    "IDLE_GAP_NS",
    "PROMPTS_PER_PAGE",
    "developers_csv",
    "developers_json",
    "developers_view",
    "router",
    "session_view",
    "sessions_view",
]

#: prompts a session page shows at once (a day-long session of ~300 prompts fits on one)
PROMPTS_PER_PAGE = 300
#: a pause between two prompts at least this long is drawn as an idle gap
IDLE_GAP_NS = 5 * 60 * 10**9
#: the longest session id a page takes
MAX_SESSION_ID = 500
#: grouping -> how the page names it
GROUP_LABELS = {
    "developer": "developer",
    "team": "team",
    "repository": "repository",
    "coding_agent": "coding agent",
}
#: grouping -> the trace filter that selects one group's tasks (for its links)
GROUP_FILTERS = {
    "developer": "user",
    "team": "team",
    "repository": "repository",
    "coding_agent": "coding_agent",
}
ORDER_LABELS = {"per_success": "cost per successful task", "waste": "waste"}

router = APIRouter(include_in_schema=False)
_report = Inputs(*FILTER_PARAMS, "by", "period", "order")
_sessions = Inputs(*FILTER_PARAMS, "limit", "cursor")
_session = Inputs(*RANGE_PARAMS, "limit", "cursor")


def _coding(f: TraceFilter) -> TraceFilter:
    """The filter over coding-agent traces: the one tool it names, else all of them."""
    return f if f.coding_agent else replace(f, coding_agent=ANY_CODING_AGENT)


def _choice(params: dict[str, str], name: str, choices: dict[str, Any], default: str) -> str:
    value = params.get(name, "").strip() or default
    if value not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}; got {value[:40]!r}")
    return value


def _figures(row: dict[str, Any]) -> dict[str, Any]:
    """A group's derived figures: cost per task and per successful task, the success rate, and
    the waste's share of the analysed cost."""
    per_success(row)
    row["cost_per_task_usd"] = row["cost_usd"] / row["tasks"] if row["tasks"] else None
    row["waste_share"] = row["wasted_usd"] / row["analyzed_usd"] if row["analyzed_usd"] > 0 else None
    return row


def _outcomes(found: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Outcome rows by group key, each with its cost per success (the cost of the work the
    outcomes of that name judge ÷ how many of them say success)."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for row in found:
        row["cost_per_success_usd"] = row["cost_usd"] / row["succeeded"] if row["succeeded"] else None
        by_key.setdefault(row["key"], []).append({k: v for k, v in row.items() if k != "key"})
    return by_key


def developers(client: Client, f: TraceFilter, by: str, period: str, order: str) -> dict[str, Any]:
    """The report's data: its groups in `order`, totals, trend per `period` and coding-work ledger."""
    scoped = _coding(f)
    outcomes = _outcomes(reads.outcomes_by_name(client, scoped, by))
    rows = [_figures(r) for r in reads.groups(client, scoped, by, order)]
    for row in rows:
        row["outcomes"] = outcomes.get(row["key"], [])
    totals = _figures(reads.totals(client, scoped) or _empty_totals())
    totals["outcomes"] = _outcomes(reads.outcomes_by_name(client, scoped, None)).get("all", [])
    trend = [_figures(r) for r in reads.trend(client, scoped, period)]
    reader = waste.reader(client)
    ledger = reader.totals(scoped)
    metrics = _from_metrics(client, f, by)
    return {
        "filter": f,
        "scoped": scoped,
        "project": f.project,
        "by": by,
        "period": period,
        "order": order,
        "groups": GROUP_LABELS,
        "group_filter": GROUP_FILTERS[by],
        "orders": ORDER_LABELS,
        "coding_agents": CODING_AGENTS,
        "totals": totals,
        "rows": rows,
        # groups without a successful task are listed apart when the order is per successful task
        "ranked": [r for r in rows if r["succeeded"]] if order == "per_success" else rows,
        "unranked": [r for r in rows if not r["succeeded"]] if order == "per_success" else [],
        "outcome_names": sorted({o["name"] for r in rows for o in r["outcomes"]}),
        "trend": trend,
        "trend_top": max([t["cost_usd"] for t in trend] + [1e-12]),
        "ledger": waste.report_row(ledger, key="coding agents") if ledger.get("traces") else None,
        "buckets": list(waste.BUCKETS),
        "labels": waste.LABELS,
        "metrics": metrics,
        # a team that sends only metrics still has its cost per developer
        "has_data": bool(rows) or bool(metrics["rows"]) or reads.has_coding_data(client, f.project),
    }


#: how far apart the metrics' and the traces' cost of a developer's day may be before it is listed
_APART = 0.05


@cache
def _prices() -> PriceBook:
    """The price catalog, loaded once: metrics report tokens that are priced when read."""
    return PriceBook()


def _from_metrics(client: Client, f: TraceFilter, by: str) -> dict[str, Any]:
    """What the tools' own OTLP metrics say for the window, per group of `by` (cost, commits, pull
    requests), and how far their cost is from the traces' (`tokentrail.store.usage_metrics`). The
    window applies; the other filters do not (metric points carry none of the traces' fields)."""
    start = datetime.fromtimestamp(f.start_ns / 1e9, UTC) if f.start_ns else datetime(1970, 1, 1, tzinfo=UTC)
    end = datetime.fromtimestamp(f.end_ns / 1e9, UTC) if f.end_ns else datetime.now(UTC) + timedelta(days=1)
    groups: dict[str, dict[str, Any]] = {}
    usage = usage_metrics.read_usage(client, f.project, start, end, pricer=_prices())
    for row in usage_metrics.daily_usage(client, f.project, start, end, by, usage=usage):
        group = groups.setdefault(
            row.key, {"key": row.key, "cost_usd": 0.0, "unpriced_tokens": 0, "commits": 0, "pull_requests": 0}
        )
        group["cost_usd"] += row.cost_usd or 0.0
        group["unpriced_tokens"] += row.unpriced_tokens
        group["commits"] += row.commits
        group["pull_requests"] += row.pull_requests
    if not groups:
        return {"rows": []}
    days = usage_metrics.reconcile_with_traces(client, f.project, start, end, usage=usage)
    metrics_usd = sum(d.metrics_cost_usd or 0.0 for d in days)
    traces_usd = sum(d.traces_cost_usd or 0.0 for d in days)
    traced: dict[str, float] = {}  # developer → the cost of their traces
    for d in days:
        traced[d.developer] = traced.get(d.developer, 0.0) + (d.traces_cost_usd or 0.0)
    ordered = sorted(groups.values(), key=lambda g: -g["cost_usd"])
    for group in ordered:
        if by == "developer" and group["key"] in traced:
            group["traces_cost_usd"] = traced[group["key"]]
    return {
        "rows": ordered,
        "metrics_usd": metrics_usd,
        "traces_usd": traces_usd,
        "apart_usd": metrics_usd - traces_usd,
        "apart": (metrics_usd - traces_usd) / traces_usd if traces_usd else None,
        # the developer-days on which the two disagree by more than 5% (or one side is missing)
        "days": [
            {**asdict(d), "day": d.day.isoformat()}
            for d in days
            if d.relative_difference is None or abs(d.relative_difference) > _APART
        ],
    }


def _empty_totals() -> dict[str, Any]:
    return {
        "key": "all",
        **dict.fromkeys(("sessions", "developers", "tasks", "succeeded", "failed", "unpriced_calls"), 0),
        **dict.fromkeys(("cost_usd", "wasted_usd", "analyzed_usd"), 0.0),
        "not_analyzed": 0,
    }


def developers_view(
    f: TraceFilter = Depends(_report.filter),
    params: dict[str, str] = Depends(_report.params),
    client: Client = Depends(get_client),
) -> dict[str, Any]:
    by = _choice(params, "by", reads.GROUPS, "developer")
    period = _choice(params, "period", reads.PERIODS, "day")
    order = _choice(params, "order", reads.ORDERS, "per_success")
    return developers(client, f, by, period, order)


def developers_json(data: dict[str, Any]) -> dict[str, Any]:
    return {
        k: data[k]
        for k in (
            "by",
            "period",
            "order",
            "totals",
            "rows",
            "trend",
            "ledger",
            "buckets",
            "metrics",
            "has_data",
        )
    }


def _usd(value: float | None) -> str:
    return "" if value is None else f"{value:.8f}"


def developers_csv(data: dict[str, Any]) -> str:
    """One line per group, in the page's order; per outcome name its successes and the cost per
    success."""
    out = io.StringIO()
    writer = csv.writer(out)
    names = data["outcome_names"]
    writer.writerow(
        [
            data["by"],
            "sessions",
            "tasks",
            "succeeded",
            "failed",
            "cost_usd",
            "cost_per_task_usd",
            "cost_per_success_usd",
            "wasted_usd",
            "waste_share",
            "unpriced_calls",
            *(waste.cell(f"{n} {what}") for n in names for what in ("succeeded", "cost_per_success_usd")),
        ]
    )
    for r in data["rows"]:
        outcomes = {o["name"]: o for o in r["outcomes"]}
        per_name = []
        for n in names:
            o = outcomes.get(n)
            per_name += [o["succeeded"], _usd(o["cost_per_success_usd"])] if o else [0, ""]
        writer.writerow(
            [
                waste.cell(r["key"]),
                r["sessions"],
                r["tasks"],
                r["succeeded"],
                r["failed"],
                _usd(r["cost_usd"]),
                _usd(r["cost_per_task_usd"]),
                _usd(r["cost_per_success_usd"]),
                _usd(r["wasted_usd"]),
                "" if r["waste_share"] is None else f"{r['waste_share']:.4f}",
                r["unpriced_calls"],
                *per_name,
            ]
        )
    return out.getvalue()


@router.get("/developers.csv")
def developers_export(data: dict[str, Any] = Depends(developers_view)) -> Response:
    return render.csv(developers_csv(data), f"tokentrail-developers-by-{data['by']}.csv")


@router.get("/developers.json")
def developers_twin(data: dict[str, Any] = Depends(developers_view)) -> Response:
    return render.json(developers_json(data))


@router.get("/developers", response_class=HTMLResponse)
def developers_page(request: Request, data: dict[str, Any] = Depends(developers_view)) -> Response:
    return render.html(request, "developers.html", data)


# --- sessions ------------------------------------------------------------------------------------


def _session_outcomes(client: Client, project: str, sessions: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Session id -> the latest outcome of each name recorded on the session itself."""
    found: dict[str, list[dict[str, Any]]] = {}
    for row in latest_outcomes(client, project, [], [], sessions):
        found.setdefault(row["target_id"], []).append(row)
    return found


def _window(f: TraceFilter) -> dict[str, str]:
    """The query string of the filter's time window alone: what a session page takes."""
    return {k: v for k, v in query_args(f).items() if k in ("range", "from", "to")}


def sessions_view(
    f: TraceFilter = Depends(_sessions.filter), client: Client = Depends(get_client)
) -> dict[str, Any]:
    page = reads.sessions(client, _coding(f))
    found = page.rows
    outcomes = _session_outcomes(client, f.project, [s["session_id"] for s in found])
    for s in found:
        s["outcomes"] = outcomes.get(s["session_id"], [])
        s["cost_per_success_usd"] = s["cost_usd"] / s["succeeded"] if s["succeeded"] else None
    return {
        "filter": f,
        "project": f.project,
        "sessions": found,
        "window": _window(f),
        "coding_agents": CODING_AGENTS,
        "next": query_args(f, cursor=page.next_cursor) if page.next_cursor else None,
        "has_data": bool(found) or reads.has_coding_data(client, f.project),
    }


@router.get("/developers/sessions.json")
def sessions_twin(data: dict[str, Any] = Depends(sessions_view)) -> Response:
    return render.json({k: data[k] for k in ("sessions", "next", "has_data")})


@router.get("/developers/sessions", response_class=HTMLResponse)
def sessions_page(request: Request, data: dict[str, Any] = Depends(sessions_view)) -> Response:
    return render.html(request, "developer_sessions.html", data)


# --- one session ---------------------------------------------------------------------------------


def _checked_session(session_id: str) -> str:
    if not session_id.strip():
        raise BadRequest("session id is empty: open a session from /developers/sessions")
    if len(session_id) > MAX_SESSION_ID:
        raise BadRequest(f"session id is longer than {MAX_SESSION_ID} characters")
    if "\x00" in session_id:
        raise BadRequest("session id must not contain NUL characters")
    return session_id


def _lay_out(
    prompts: list[dict[str, Any]], before: dict[str, Any] | None, t0: int, t1: int
) -> list[dict[str, Any]]:
    """Each prompt's place on the session's time axis (left and width in %), its number, and the
    idle time before it (since the latest end of the prompts before it; `before` is the last
    prompt of the previous page)."""
    span = max(t1 - t0, 1)
    latest_end = before["end_ns"] if before else None
    first_day = _moment(t0).date()
    for p in prompts:
        start = _moment(p["start_ns"])
        p["started"] = start.strftime("%H:%M:%S")
        p["started_day"] = start.strftime("%m-%d") if start.date() != first_day else ""
        p["left_pct"] = max(0.0, (p["start_ns"] - t0) / span * 100)
        p["width_pct"] = min(max(p["duration_ns"] / span * 100, 0.0), 100.0 - p["left_pct"])
        p["gap_ns"] = max(p["start_ns"] - latest_end, 0) if latest_end is not None else None
        p["idle"] = p["gap_ns"] is not None and p["gap_ns"] >= IDLE_GAP_NS
        if p["idle"]:
            p["gap_left_pct"] = max(0.0, (latest_end - t0) / span * 100)  # type: ignore[operator]
            p["gap_width_pct"] = p["gap_ns"] / span * 100
        latest_end = max(latest_end or 0, p["end_ns"])
    return prompts


def _moment(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def _ticks(t0: int, t1: int) -> list[dict[str, Any]]:
    """Five labelled times along the session's axis (UTC). A session that spans days gives the
    date on its first label and wherever the day changes, and times alone between: five labels
    with dates do not fit the axis's width."""
    moments = [_moment(t0 + (t1 - t0) * i // 4) for i in range(5)]
    shape = "%H:%M:%S" if t1 - t0 < 120 * 10**9 else "%H:%M"
    spans_days = moments[0].date() != moments[-1].date()
    ticks = []
    for i, m in enumerate(moments):
        dated = spans_days and (i == 0 or m.date() != moments[i - 1].date())
        ticks.append({"pct": i * 25, "label": m.strftime(f"%m-%d {shape}" if dated else shape)})
    return ticks


def session(client: Client, f: TraceFilter, session_id: str, limit: int) -> dict[str, Any]:
    """One session's summary and a page of its prompts (from the filter's cursor on)."""
    summary = reads.session(client, f, session_id)
    data: dict[str, Any] = {
        "filter": f,
        "project": f.project,
        "session_id": session_id,
        "session": summary,
        "prompts": [],
        "next": None,
        "first_number": 1,
        "outcomes": [],
        "coding_agents": CODING_AGENTS,
        "idle_gap_ns": IDLE_GAP_NS,
    }
    if summary is None:
        return data
    after: tuple[int, str] | None = f.cursor  # the previous page's last prompt
    found = reads.prompts(client, f, session_id, after, limit + 2)
    before = (
        found.pop(0) if found and after and (found[0]["start_ns"], found[0]["trace_id"]) == after else None
    )
    more = len(found) > limit
    found = found[:limit]
    findings = reads.findings_per_prompt(client, f.project, [p["trace_id"] for p in found])
    judged = latest_outcomes(
        client, f.project, [p["trace_id"] for p in found], [p["task_id"] for p in found], [session_id]
    )
    by_target: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for o in judged:
        by_target.setdefault((o["target_kind"], o["target_id"]), []).append(o)
    for p in found:
        p["retries"] = findings.get(p["trace_id"], {}).get("retries", 0)
        p["badges"] = by_target.get(("trace", p["trace_id"]), []) + (
            by_target.get(("task", p["task_id"]), []) if p["task_id"] else []
        )
    _lay_out(found, before, summary["first_ns"], summary["last_ns"])
    summary["idle_ns"] = max(summary["last_ns"] - summary["first_ns"] - summary["busy_ns"], 0)
    summary["cost_per_success_usd"] = (
        summary["cost_usd"] / summary["succeeded"] if summary["succeeded"] else None
    )
    last = found[-1] if found else None
    data.update(
        prompts=found,
        next=query_args(f, limit=limit, cursor=(last["start_ns"], last["trace_id"]))
        if more and last
        else None,
        first_number=(reads.prompts_through(client, f, session_id, after) if after else 0) + 1,
        outcomes=by_target.get(("conversation", session_id), []),
        ticks=_ticks(summary["first_ns"], summary["last_ns"]),
    )
    return data


def session_view(
    session_id: str,
    f: TraceFilter = Depends(_session.filter),
    params: dict[str, str] = Depends(_session.params),
    client: Client = Depends(get_client),
) -> dict[str, Any]:
    limit = f.limit if "limit" in params else PROMPTS_PER_PAGE
    return session(client, f, _checked_session(session_id), limit)


def session_json(data: dict[str, Any]) -> dict[str, Any]:
    f: TraceFilter = data["filter"]
    return {
        "filter": {k: v for k, v in asdict(f).items() if k in ("project", "range", "start_ns", "end_ns")},
        **{k: data[k] for k in ("session_id", "session", "outcomes", "prompts", "next")},
    }


@router.get("/developers/sessions/{session_id:path}.json")
def session_twin(data: dict[str, Any] = Depends(session_view)) -> Response:
    return render.json(session_json(data))


@router.get("/developers/sessions/{session_id:path}", response_class=HTMLResponse)
def session_page(request: Request, data: dict[str, Any] = Depends(session_view)) -> Response:
    return render.html(request, "developer_session.html", data)
