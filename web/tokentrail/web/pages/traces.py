"""The trace list (`/`, `/traces`, `/traces.json`): a page of the filter's traces in the chosen
order, the totals of every trace the filter selects, and the filter menus' choices. htmx asks
for the results alone (`HX-Target: results`) when the filter form changes.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from tokentrail.store import Client
from tokentrail.store import traces as reads
from tokentrail.web import render
from tokentrail.web.deps import Inputs, get_client
from tokentrail.web.filters import TRACE_PARAMS, TraceFilter, query_args

__all__ = ["router", "traces_json", "traces_view"]

router = APIRouter(include_in_schema=False)
_inputs = Inputs(*TRACE_PARAMS)


def traces_view(
    f: TraceFilter = Depends(_inputs.filter), client: Client = Depends(get_client)
) -> dict[str, Any]:
    page = reads.traces(client, f)
    return {
        "filter": f,
        "traces": page.rows,
        "totals": reads.totals(client, f),
        "facets": reads.facets(client, f),
        "next": query_args(f, cursor=page.next_cursor) if page.next_cursor else None,
        "first_page": f.cursor is None,
        "project": f.project,
        "has_data": bool(page.rows) or reads.has_data(client, f.project),
        "projects": reads.projects(client),
    }


def traces_json(data: dict[str, Any]) -> dict[str, Any]:
    f: TraceFilter = data["filter"]
    return {
        "filter": {k: v for k, v in asdict(f).items() if k != "cursor"},
        **{k: data[k] for k in ("totals", "traces", "next", "has_data")},
    }


@router.get("/traces.json")
def traces_twin(data: dict[str, Any] = Depends(traces_view)) -> Response:
    return render.json(traces_json(data))


@router.get("/traces", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
def traces_page(request: Request, data: dict[str, Any] = Depends(traces_view)) -> Response:
    results = request.headers.get("HX-Request") and request.headers.get("HX-Target") == "results"
    return render.html(request, "_traces_results.html" if results else "traces.html", data)
