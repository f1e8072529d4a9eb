"""The web UI: FastAPI + Jinja2, htmx for partial updates. Every page has a JSON twin at the same
path plus `.json`, built from the same view dict.

`create_app(settings, store)` is called by `tokentrail up` / `tokentrail web`; nothing is built at
import time.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import asdict, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.middleware.gzip import GZipMiddleware

from tokentrail.analysis.budgets import evaluate
from tokentrail.server.settings import Settings
from tokentrail.store import Store
from tokentrail.web import views
from tokentrail.web.costs import CostQueries, costs_json, costs_view
from tokentrail.web.filters import (
    CONVERSATION_PARAMS,
    RANGE_PARAMS,
    TRACE_PARAMS,
    BadRequest,
    TraceFilter,
    parse_query,
    parse_trace_filter,
    whole_number,
)
from tokentrail.web.format import FILTERS
from tokentrail.web.queries import Queries
from tokentrail.web.timeline import KINDS
from tokentrail.web.waste import (
    FINDINGS_SHOWN,
    MAX_EXPORT,
    WasteQueries,
    findings_csv,
    findings_json,
    findings_view,
    report_csv,
    report_json,
    report_view,
)

__all__ = ["create_app"]

_HERE = Path(__file__).resolve().parent
_PROJECT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_HEADERS = {
    # Span content is untrusted: no inline or foreign script can run, whatever slips through.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class _SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers.update(_HEADERS)
        return response


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _jsonable(asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _query_string(default_project: str) -> Callable[..., str]:
    def qs(args: dict[str, Any], project: str) -> str:
        """`?a=1&b=2` for a link, the project included unless it is the default one."""
        items = dict(args)
        if project != default_project:
            items["project"] = project
        return "?" + urlencode(items) if items else ""

    return qs


def _project_query(default_project: str) -> Callable[..., str]:
    def project_query(project: str, leading: str = "&") -> str:
        return "" if project == default_project else leading + urlencode({"project": project})

    return project_query


def create_app(settings: Settings, store: Store) -> FastAPI:
    local = threading.local()
    clients: list[Any] = []
    clients_lock = threading.Lock()

    def client() -> Any:
        # One client per worker thread: a client runs one query at a time.
        c = getattr(local, "client", None)
        if c is None:
            c = local.client = store.new_client()
            with clients_lock:
                clients.append(c)
        return c

    def queries() -> Queries:
        return Queries(client())

    def waste_queries() -> WasteQueries:
        return WasteQueries(client())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        with clients_lock:
            for client in clients:
                client.close()
            clients.clear()

    app = FastAPI(title="Tokentrail", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(_SecurityHeaders)
    # a 10,000-span trace page is ~5 MB of repetitive HTML and ~10x smaller compressed
    app.add_middleware(GZipMiddleware, minimum_size=2048)
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")
    templates = Jinja2Templates(directory=_HERE / "templates")
    templates.env.filters.update(FILTERS)
    templates.env.globals.update(
        kinds=KINDS,
        qs=_query_string(settings.default_project),
        project_query=_project_query(settings.default_project),
    )

    def params_of(request: Request, accepted: Collection[str]) -> dict[str, str]:
        """The query's parameters, refused with a 400 unless each is one this route reads."""
        route = request.scope.get("route")
        page = getattr(route, "path", None) or request.url.path
        return parse_query(request.scope.get("query_string", b""), accepted, page)

    def project_of(params: dict[str, str]) -> str:
        project = params.get("project", "").strip() or settings.default_project
        if not _PROJECT.match(project):
            raise BadRequest("project must be 1 to 64 letters, digits, - or _")
        return project

    def page(request: Request, template: str, data: dict[str, Any], status: int = 200) -> Response:
        project = data.get("project") or settings.default_project
        context = {
            "request": request,
            "project": project,
            "default_project": settings.default_project,
            **data,
        }
        return templates.TemplateResponse(request, template, context, status_code=status)

    def handle(
        request: Request,
        as_json: bool,
        build: Callable[[], tuple[str, dict[str, Any]]],
        to_json: Callable[[dict[str, Any]], Any] | None = None,
    ) -> Response:
        try:
            template, data = build()
        except BadRequest as exc:
            return _error(request, as_json, 400, "Bad request", str(exc))
        except views.NotFound as exc:
            return _error(request, as_json, 404, "Not found", str(exc))
        if as_json:
            return JSONResponse(_jsonable(to_json(data) if to_json else data))
        if request.headers.get("HX-Request") and request.headers.get("HX-Target") == "results":
            template = "_traces_results.html" if template == "traces.html" else template
        return page(request, template, data)

    def _error(request: Request, as_json: bool, status: int, title: str, message: str) -> Response:
        if as_json:
            return JSONResponse({"error": message}, status_code=status)
        return page(request, "error.html", {"title": title, "message": message}, status)

    def trace_filter(params: dict[str, str]) -> TraceFilter:
        return parse_trace_filter(params, project_of(params))

    def traces_json(data: dict[str, Any]) -> dict[str, Any]:
        f: TraceFilter = data["filter"]
        return {
            "filter": {k: v for k, v in asdict(f).items() if k != "cursor"},
            "totals": data["totals"],
            "traces": data["traces"],
            "next": data["next"],
            "has_data": data["has_data"],
        }

    def traces(request: Request, as_json: bool) -> Response:
        def build() -> tuple[str, dict[str, Any]]:
            f = trace_filter(params_of(request, TRACE_PARAMS))
            q = queries()
            data = views.traces_view(q, f)
            data.update(
                project=f.project,
                has_data=bool(data["traces"]) or q.has_data(f.project),
                projects=q.projects(),
            )
            return "traces.html", data

        return handle(request, as_json, build, traces_json)

    def conversations(request: Request, as_json: bool) -> Response:
        def build() -> tuple[str, dict[str, Any]]:
            f = trace_filter(params_of(request, CONVERSATION_PARAMS))
            data = views.conversations_view(queries(), f)
            data["project"] = f.project
            return "conversations.html", data

        def to_json(data: dict[str, Any]) -> dict[str, Any]:
            return {"conversations": data["conversations"], "next": data["next"]}

        return handle(request, as_json, build, to_json)

    def trace(request: Request, as_json: bool, trace_id: str) -> Response:
        def build() -> tuple[str, dict[str, Any]]:
            project = project_of(params_of(request, ("project",)))
            return "trace.html", views.trace_view(queries(), project, trace_id, waste_queries())

        return handle(request, as_json, build, views.trace_json)

    def trace_rows(request: Request) -> Response:
        """The next waterfall rows of a large trace, for htmx to put in place of its button."""

        def build() -> tuple[str, dict[str, Any]]:
            params = params_of(request, ("project", "first"))
            first = whole_number(params, "first", 0, 0, views.MAX_TRACE_SPANS)
            trace_id = request.path_params["trace_id"]
            data = views.trace_view(queries(), project_of(params), trace_id, waste_queries())
            data["first"] = first
            data["count"] = data["page_rows"]
            return "_wf_rows.html", data

        return handle(request, False, build)

    def span(request: Request, as_json: bool, trace_id: str, span_id: str) -> Response:
        def build() -> tuple[str, dict[str, Any]]:
            project = project_of(params_of(request, ("project",)))
            data = views.span_view(queries(), project, trace_id, span_id, waste_queries())
            # htmx swaps the detail into the trace page; opened directly it is a page of its own
            return ("_span.html" if request.headers.get("HX-Request") else "span.html"), data

        return handle(request, as_json, build, views.span_json)

    def waste_report(request: Request, as_json: bool, template: str = "waste.html") -> Response:
        def build() -> tuple[str, dict[str, Any]]:
            params = params_of(request, (*RANGE_PARAMS, "by"))
            f = trace_filter(params)
            data = report_view(waste_queries(), f, params.get("by", "").strip() or "agent")
            data["project"] = f.project
            return template, data

        return handle(request, as_json, build, report_json)

    def costs(request: Request, as_json: bool) -> Response:
        def build() -> tuple[str, dict[str, Any]]:
            params = params_of(request, (*RANGE_PARAMS, "by"))
            f = trace_filter(params)
            queries = CostQueries(client(), settings.team_attribute)
            data = costs_view(queries, f, params.get("by", "").strip() or "task", time.time_ns())
            data["project"] = f.project
            return "costs.html", data

        return handle(request, as_json, build, costs_json)

    def overview(request: Request, as_json: bool) -> Response:
        def build() -> tuple[str, dict[str, Any]]:
            f = trace_filter(params_of(request, RANGE_PARAMS))
            data = report_view(waste_queries(), f, "agent")
            data["project"] = f.project
            data["budgets"] = evaluate(client(), [b for b in settings.budgets if b.project == f.project])
            return "overview.html", data

        def to_json(data: dict[str, Any]) -> dict[str, Any]:
            budgets = [dict(asdict(s), state=s.state) for s in data["budgets"]]
            return {**report_json(data), "budgets": budgets}

        return handle(request, as_json, build, to_json)

    def findings(request: Request, as_json: bool) -> Response:
        def build() -> tuple[str, dict[str, Any]]:
            params = params_of(request, (*RANGE_PARAMS, "detector"))
            f = trace_filter(params)
            limit = MAX_EXPORT if as_json else FINDINGS_SHOWN
            data = findings_view(waste_queries(), f, params.get("detector", "").strip(), limit)
            data["project"] = f.project
            return "findings.html", data

        return handle(request, as_json, build, findings_json)

    def findings_export(request: Request) -> Response:
        try:
            params = params_of(request, (*RANGE_PARAMS, "detector"))
            detector = params.get("detector", "").strip()
            data = findings_view(waste_queries(), trace_filter(params), detector, MAX_EXPORT)
        except BadRequest as exc:
            return PlainTextResponse(str(exc) + "\n", status_code=400)
        return Response(
            findings_csv(data),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="tokentrail-findings.csv"'},
        )

    def waste_csv(request: Request) -> Response:
        try:
            params = params_of(request, (*RANGE_PARAMS, "by"))
            data = report_view(waste_queries(), trace_filter(params), params.get("by", "").strip() or "agent")
        except BadRequest as exc:
            return PlainTextResponse(str(exc) + "\n", status_code=400)
        name = f"tokentrail-waste-by-{data['by']}.csv"
        return Response(
            report_csv(data),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    def twin(path: str, handler: Callable[..., Response]) -> None:
        """Register a page and its JSON twin (`path.json`) on one handler."""

        def as_page(request: Request) -> Response:
            return handler(request, False, **request.path_params)

        def as_json(request: Request) -> Response:
            return handler(request, True, **request.path_params)

        # the .json route first: `{trace_id}` alone would also match "abc.json"
        app.add_api_route(path + ".json", as_json, methods=["GET"], include_in_schema=False)
        app.add_api_route(
            path, as_page, methods=["GET"], response_class=HTMLResponse, include_in_schema=False
        )

    app.add_api_route("/waste.csv", waste_csv, methods=["GET"], include_in_schema=False)
    app.add_api_route("/findings.csv", findings_export, methods=["GET"], include_in_schema=False)
    twin("/waste", waste_report)
    twin("/findings", findings)
    twin("/overview", overview)
    twin("/costs", costs)
    twin("/traces", traces)
    twin("/conversations", conversations)
    app.add_api_route(
        "/trace/{trace_id}/rows",
        trace_rows,
        methods=["GET"],
        response_class=HTMLResponse,
        include_in_schema=False,
    )
    twin("/trace/{trace_id}", trace)
    twin("/trace/{trace_id}/span/{span_id}", span)

    def index(request: Request) -> Response:
        return traces(request, False)

    app.add_api_route("/", index, methods=["GET"], response_class=HTMLResponse, include_in_schema=False)

    return app
