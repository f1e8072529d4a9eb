"""The web UI: FastAPI + Jinja2, htmx for partial updates. Every page has a JSON twin at the same
path plus `.json`, built from the same data (`tokentrail.web.pages`).

`create_app(settings, store)` is called by `tokentrail up` / `tokentrail web`; nothing is built at
import time. A bad parameter (`BadRequest`) is a 400 and a missing trace or span (`NotFound`) a
404, answered as the route answers (`tokentrail.web.render.error`). Every response carries the
security headers: span content is untrusted, so no inline or foreign script can run, whatever
slips through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.middleware.gzip import GZipMiddleware

from tokentrail.server.settings import Settings
from tokentrail.store import Store
from tokentrail.web import render
from tokentrail.web.deps import Clients
from tokentrail.web.filters import BadRequest, NotFound
from tokentrail.web.pages import ROUTERS

__all__ = ["create_app"]

_HERE = Path(__file__).resolve().parent
_HEADERS = {
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


async def _bad_request(request: Request, exc: Exception) -> Response:
    return render.error(request, 400, "Bad request", str(exc))


async def _not_found(request: Request, exc: Exception) -> Response:
    return render.error(request, 404, "Not found", str(exc))


def create_app(settings: Settings, store: Store) -> FastAPI:
    clients = Clients(store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        clients.close()

    app = FastAPI(title="Tokentrail", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.clients = clients
    app.state.templates = render.templates(settings)
    app.add_middleware(_SecurityHeaders)
    # a 10,000-span trace page is ~5 MB of repetitive HTML and ~10x smaller compressed
    app.add_middleware(GZipMiddleware, minimum_size=2048)
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")
    app.add_exception_handler(BadRequest, _bad_request)
    app.add_exception_handler(NotFound, _not_found)
    for router in ROUTERS:
        _mount(app, router)
    return app


def _mount(app: FastAPI, router: APIRouter) -> None:
    """The router's routes, each added to the app itself (in order: a page's `.json` route comes
    before the page's), so that `app.routes` lists every route."""
    for route in router.routes:
        if not isinstance(route, APIRoute):
            raise TypeError(f"a page's router holds API routes only, not {route!r}")
        app.add_api_route(
            route.path,
            route.endpoint,
            methods=sorted(route.methods or ()),
            response_class=route.response_class,
            include_in_schema=False,
        )
