"""Cost per task and per successful task (`/costs`, `.json`), its spread, and right-sizing advice.

Cost per successful task is the spend of all tasks of a group (failed and unjudged ones
included: that money was spent to get the successes) divided by the number of successful ones.
The trace filters select the tasks; with a model filter, the breakdown by model and the advice
count that model's calls only. The advice's monthly saving scales what the oversized-model rule
found in the window to 30 days (only for a bounded window).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from tokentrail.server.settings import Settings
from tokentrail.store import Client
from tokentrail.store import costs as reads
from tokentrail.store.filters import TraceFilter
from tokentrail.web import render
from tokentrail.web.deps import Inputs, get_client, get_settings
from tokentrail.web.filters import FILTER_PARAMS, BadRequest

__all__ = ["costs", "costs_json", "per_success", "router"]

router = APIRouter(include_in_schema=False)
_inputs = Inputs(*FILTER_PARAMS, "by")


def per_success(row: dict[str, Any]) -> dict[str, Any]:
    """A row of tasks with its cost per successful task and its success rate (of the judged tasks)."""
    row["cost_per_success_usd"] = row["cost_usd"] / row["succeeded"] if row["succeeded"] else None
    judged = row["succeeded"] + row["failed"]
    row["success_rate"] = row["succeeded"] / judged if judged else None
    return row


def _groups(client: Client, f: TraceFilter, by: str, team_attribute: str) -> list[dict[str, Any]]:
    if by != "model":
        return [per_success(r) for r in reads.groups(client, f, by, team_attribute)]
    # per model the spread is per call, not per task
    return [dict(per_success(r), per="call") for r in reads.by_model(client, f)]


def _advice(client: Client, f: TraceFilter, window_days: float) -> list[dict[str, Any]]:
    """The right-sizing rows worth showing: a step the rule flagged, or a task type run on more
    than one model (for comparison)."""
    advice = reads.advice(client, f)
    models_per_task: dict[str, int] = {}
    for row in advice:
        row["success_rate"] = row["succeeded"] / row["judged"] if row["judged"] else None
        row["monthly_saving_usd"] = (
            row["oversized_usd"] * 30 / window_days if window_days and row["oversized_usd"] else None
        )
        models_per_task[row["task"]] = models_per_task.get(row["task"], 0) + 1
    return [r for r in advice if r["oversized_usd"] or models_per_task[r["task"]] > 1]


def costs(client: Client, f: TraceFilter, by: str, now_ns: int, team_attribute: str) -> dict[str, Any]:
    if by not in reads.GROUPS:
        raise BadRequest(f"by must be one of {', '.join(reads.GROUPS)}; got {by[:40]!r}")
    window_days = max((((f.end_ns or now_ns) - f.start_ns) / 86_400e9) if f.start_ns else 0.0, 0.0)
    totals = per_success(reads.totals(client, f))
    if not totals["tasks"]:
        totals.update(mean_usd=None, p50_usd=None, p95_usd=None)
    return {
        "filter": f,
        "project": f.project,
        "by": by,
        "groups": list(reads.GROUPS),
        "totals": totals,
        "rows": _groups(client, f, by, team_attribute),
        "trend": _groups(client, f, "day", team_attribute),
        "advice": _advice(client, f, window_days),
        "window_days": window_days,
    }


def costs_view(
    f: TraceFilter = Depends(_inputs.filter),
    params: dict[str, str] = Depends(_inputs.params),
    settings: Settings = Depends(get_settings),
    client: Client = Depends(get_client),
) -> dict[str, Any]:
    by = params.get("by", "").strip() or "task"
    return costs(client, f, by, time.time_ns(), settings.team_attribute)


def costs_json(data: dict[str, Any]) -> dict[str, Any]:
    return {k: data[k] for k in ("by", "totals", "rows", "trend", "advice", "window_days")}


@router.get("/costs.json")
def costs_twin(data: dict[str, Any] = Depends(costs_view)) -> Response:
    return render.json(costs_json(data))


@router.get("/costs", response_class=HTMLResponse)
def costs_page(request: Request, data: dict[str, Any] = Depends(costs_view)) -> Response:
    return render.html(request, "costs.html", data)
