"""The trace list (`/`, `/traces`, `/traces.json`): a page of the filter's traces in the chosen
order, the totals of every trace the filter selects, and the filter menus' choices.

htmx asks for a part of the page, and only what that part shows is read: the results (totals and
a page of traces, `HX-Target: results`) when the filter form changes; a page of traces alone
(`HX-Target: page`) when the list is sorted or paged, which changes no total. The totals take most
of the list's time (they aggregate every trace the filter selects); the menus' choices and the
project list show only on a whole page.
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


def traces_view(f: TraceFilter, client: Client, shows: str = "whole") -> dict[str, Any]:
    """What the list shows: a page of traces, and (unless `shows` is "page") the filter's totals,
    and (for a "whole" page) the filter menus' choices and the projects."""
    page = reads.traces(client, f)
    data: dict[str, Any] = {
        "filter": f,
        "traces": page.rows,
        "next": query_args(f, cursor=page.next_cursor) if page.next_cursor else None,
        "first_page": f.cursor is None,
        "project": f.project,
        "has_data": bool(page.rows) or reads.has_data(client, f.project),
    }
    if shows != "page":
        data["totals"] = reads.totals(client, f)
    if shows == "whole":
        data["facets"] = reads.facets(client, f)
        data["projects"] = reads.projects(client)
    return data


def _part(request: Request) -> str:
    """The part of the list an htmx request swaps in ("results" or "page"), else "whole"."""
    target = request.headers.get("HX-Target") if request.headers.get("HX-Request") else None
    return target if target in _PARTS else "whole"


_PARTS = {"results": "_traces_results.html", "page": "_traces_page.html", "whole": "traces.html"}


def traces_json(data: dict[str, Any]) -> dict[str, Any]:
    f: TraceFilter = data["filter"]
    return {
        "filter": {k: v for k, v in asdict(f).items() if k != "cursor"},
        **{k: data[k] for k in ("totals", "traces", "next", "has_data")},
    }


@router.get("/traces.json")
def traces_twin(f: TraceFilter = Depends(_inputs.filter), client: Client = Depends(get_client)) -> Response:
    return render.json(traces_json(traces_view(f, client, "results")))


@router.get("/traces", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
def traces_page(
    request: Request, f: TraceFilter = Depends(_inputs.filter), client: Client = Depends(get_client)
) -> Response:
    part = _part(request)
    return render.html(request, _PARTS[part], traces_view(f, client, part))
