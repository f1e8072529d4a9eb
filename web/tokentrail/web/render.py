"""A page's data → its response: the HTML page (Jinja2, autoescaped: span content is untrusted),
the JSON twin (the same data as plain JSON types), a CSV download, and the error response of the
route's kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.templating import Jinja2Templates

from tokentrail.server.settings import Settings
from tokentrail.web.auth import Caller, form_token
from tokentrail.web.filters import query_args
from tokentrail.web.format import FILTERS
from tokentrail.web.timeline import KINDS

__all__ = ["csv", "error", "html", "json", "templates"]

_HERE = Path(__file__).resolve().parent


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


def templates(settings: Settings) -> Jinja2Templates:
    found = Jinja2Templates(directory=_HERE / "templates")
    found.env.filters.update(FILTERS)
    found.env.globals.update(
        kinds=KINDS,
        qs=_query_string(settings.default_project),
        project_query=_project_query(settings.default_project),
        query_args=query_args,
    )
    return found


def html(request: Request, template: str, data: dict[str, Any], status: int = 200) -> Response:
    settings: Settings = request.app.state.settings
    caller: Caller | None = getattr(request.state, "caller", None)
    context = {
        "request": request,
        "project": data.get("project") or settings.default_project,
        "default_project": settings.default_project,
        **data,
        "caller": caller,
        "csrf_token": form_token(request),
    }
    if caller is not None and caller.projects is not None:
        context["projects"] = list(caller.projects)  # the switcher offers theirs only
    found: Jinja2Templates = request.app.state.templates
    return found.TemplateResponse(request, template, context, status_code=status)


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


def json(data: Any) -> JSONResponse:
    return JSONResponse(_jsonable(data))


def csv(text: str, filename: str) -> Response:
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def error(request: Request, status: int, title: str, message: str) -> Response:
    """An error as the route answers: `{"error": …}` for a JSON twin, the text for a CSV
    download, else the error page."""
    route = getattr(request.scope.get("route"), "path", None) or request.url.path
    if route.endswith(".json"):
        return JSONResponse({"error": message}, status_code=status)
    if route.endswith(".csv"):
        return PlainTextResponse(message + "\n", status_code=status)
    return html(request, "error.html", {"title": title, "message": message}, status)
