"""The overview (`/overview`, `.json`): the budgets' state, and the waste report's totals, trend
and findings for a time range (`tokentrail.web.pages.waste`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from tokentrail.analysis.budgets import evaluate
from tokentrail.server.settings import Settings
from tokentrail.store import Client
from tokentrail.store.filters import TraceFilter
from tokentrail.web import render
from tokentrail.web.deps import Inputs, get_client, get_settings
from tokentrail.web.filters import RANGE_PARAMS
from tokentrail.web.pages.waste import report, report_json

__all__ = ["overview_view", "router"]

router = APIRouter(include_in_schema=False)
_inputs = Inputs(*RANGE_PARAMS)


def overview_view(
    f: TraceFilter = Depends(_inputs.filter),
    settings: Settings = Depends(get_settings),
    client: Client = Depends(get_client),
) -> dict[str, Any]:
    data = report(client, f, "agent")
    data["budgets"] = evaluate(client, [b for b in settings.budgets if b.project == f.project])
    return data


@router.get("/overview.json")
def overview_twin(data: dict[str, Any] = Depends(overview_view)) -> Response:
    budgets = [dict(asdict(s), state=s.state) for s in data["budgets"]]
    return render.json({**report_json(data), "budgets": budgets})


@router.get("/overview", response_class=HTMLResponse)
def overview_page(request: Request, data: dict[str, Any] = Depends(overview_view)) -> Response:
    return render.html(request, "overview.html", data)
