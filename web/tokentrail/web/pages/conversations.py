"""Conversations (`/conversations`, `.json`): the filter's traces grouped by conversation id,
latest activity first, a page at a time."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from tokentrail.store import Client
from tokentrail.store import traces as reads
from tokentrail.web import render
from tokentrail.web.deps import Inputs, get_client
from tokentrail.web.filters import CONVERSATION_PARAMS, TraceFilter, query_args

__all__ = ["conversations_view", "router"]

router = APIRouter(include_in_schema=False)
_inputs = Inputs(*CONVERSATION_PARAMS)


def conversations_view(
    f: TraceFilter = Depends(_inputs.filter), client: Client = Depends(get_client)
) -> dict[str, Any]:
    page = reads.conversations(client, f)
    return {
        "filter": f,
        "conversations": page.rows,
        "next": query_args(f, cursor=page.next_cursor) if page.next_cursor else None,
        "project": f.project,
    }


@router.get("/conversations.json")
def conversations_twin(data: dict[str, Any] = Depends(conversations_view)) -> Response:
    return render.json({"conversations": data["conversations"], "next": data["next"]})


@router.get("/conversations", response_class=HTMLResponse)
def conversations_page(request: Request, data: dict[str, Any] = Depends(conversations_view)) -> Response:
    return render.html(request, "conversations.html", data)
