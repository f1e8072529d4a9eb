"""What a page's route is given (FastAPI dependencies): the settings, a ClickHouse client of its
own for the request, and its query's parameters, project and trace filter.

Each route takes a fixed set of parameters (`Inputs`): one it does not read is a `BadRequest`
naming it, before anything is queried. The exception handlers (`tokentrail.web.app`) turn
`BadRequest` and `NotFound` into the route's kind of error response.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import Depends, Request

from tokentrail.server.settings import Settings
from tokentrail.store import Client, Store
from tokentrail.web.filters import BadRequest, TraceFilter, parse_query, parse_trace_filter

__all__ = ["Clients", "Inputs", "get_client", "get_settings"]

_PROJECT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Clients:
    """Clients of one store, each lent to one request at a time (a client runs one query at a
    time); closed together when the app stops."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._idle: list[Client] = []
        self._all: list[Client] = []
        self._lock = threading.Lock()

    def lend(self) -> Iterator[Client]:
        with self._lock:
            client = self._idle.pop() if self._idle else None
        if client is None:
            client = self._store.new_client()
            with self._lock:
                self._all.append(client)
        try:
            yield client
        finally:
            with self._lock:
                self._idle.append(client)

    def close(self) -> None:
        with self._lock:
            for client in self._all:
                client.close()
            self._all.clear()
            self._idle.clear()


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_client(request: Request) -> Iterator[Client]:
    """A client for this request alone."""
    clients: Clients = request.app.state.clients
    yield from clients.lend()


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
            params: dict[str, str] = Depends(self.params), settings: Settings = Depends(get_settings)
        ) -> str:
            project = params.get("project", "").strip() or settings.default_project
            if not _PROJECT.match(project):
                raise BadRequest("project must be 1 to 64 letters, digits, - or _")
            return project

        return project

    def _filter(self) -> Callable[..., Any]:
        async def trace_filter(
            params: dict[str, str] = Depends(self.params), project: str = Depends(self.project)
        ) -> TraceFilter:
            return parse_trace_filter(params, project)

        return trace_filter
