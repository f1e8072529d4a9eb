"""What a page's route is given (FastAPI dependencies): the settings, a ClickHouse client of its
own for the request, and its query's parameters, project (one the caller may read,
`tokentrail.web.auth`) and trace filter.

Each route takes a fixed set of parameters (`Inputs`): one it does not read is a `BadRequest`
naming it, before anything is queried. The exception handlers (`tokentrail.web.app`) turn
`BadRequest` and `NotFound` into the route's kind of error response.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import Depends, Request

from tokentrail.server.settings import Settings
from tokentrail.web.auth import Caller, authenticate
from tokentrail.web.clients import Clients, get_client, get_settings
from tokentrail.web.filters import BadRequest, TraceFilter, parse_query, parse_trace_filter

__all__ = ["Clients", "Inputs", "get_client", "get_settings"]

_PROJECT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Inputs:
    """The dependencies of routes that take the query parameters `accepted`: `params` (refused
    with a 400 unless each is accepted), `project` and the trace `filter` they describe."""

    def __init__(self, *accepted: str) -> None:
        self.accepted = accepted
        self.params = self._params()
        self.project = self._project()
        self.filter = self._filter()

    def _params(self) -> Callable[..., Any]:
        async def params(request: Request) -> dict[str, str]:
            route = request.scope.get("route")
            page = getattr(route, "path", None) or request.url.path
            return parse_query(request.scope.get("query_string", b""), self.accepted, page)

        return params

    def _project(self) -> Callable[..., Any]:
        async def project(
            params: dict[str, str] = Depends(self.params),
            settings: Settings = Depends(get_settings),
            caller: Caller | None = Depends(authenticate),
        ) -> str:
            asked = params.get("project", "").strip()
            if asked and not _PROJECT.match(asked):
                raise BadRequest("project must be 1 to 64 letters, digits, - or _")
            if caller is None:
                raise RuntimeError("a route that reads a project is not public")
            return caller.project(asked, settings.default_project)

        return project

    def _filter(self) -> Callable[..., Any]:
        async def trace_filter(
            params: dict[str, str] = Depends(self.params), project: str = Depends(self.project)
        ) -> TraceFilter:
            return parse_trace_filter(params, project)

        return trace_filter
