"""The web UI: FastAPI + Jinja2, htmx for partial updates. Every page has a JSON twin at the same
path plus `.json`, built from the same data (`tokentrail.web.pages`).

`create_app(settings, store)` is called by `tokentrail up` / `tokentrail web`; nothing is built at
import time. A bad parameter (`BadRequest`) is a 400 and a missing trace or span (`NotFound`) a
404, answered as the route answers (`tokentrail.web.render.error`). Every response carries the
security headers: span content is untrusted, so no inline or foreign script can run, whatever
slips through.

Every route but `/health` (`tokentrail.web.pages.health`: whether the database answers, nothing
more) depends on `tokentrail.web.auth.authenticate` and `check_form_token`: a caller who
has not signed in gets 401 on a `.json`/`.csv` route and the sign-in form on a page, one asking
for a project not theirs 403, and a form posted without its token 403. A request naming a host
that is not ours (`TOKENTRAIL_UI_HOSTS`) is refused before anything else: a page on another
site cannot reach the UI by pointing its own name at our address (DNS rebinding). Without
sign-in the UI refuses to serve a non-loopback address unless `TOKENTRAIL_UI_ALLOW_ANONYMOUS=1`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.middleware.gzip import GZipMiddleware

from tokentrail.server.settings import Settings, SettingsError, is_loopback
from tokentrail.store import Store
from tokentrail.store.keys import KeyRing
from tokentrail.web import render
from tokentrail.web.auth import (
    Forbidden,
    KeyVerifier,
    RingKeys,
    Unauthenticated,
    authenticate,
    check_form_token,
    over_tls,
)
from tokentrail.web.clients import Clients
from tokentrail.web.filters import BadRequest, NotFound
from tokentrail.web.pages import ROUTERS
from tokentrail.web.pages.health import health
from tokentrail.web.sessions import SESSION_COOKIE, TOKEN_COOKIE, Signer, Throttle, secret_key

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


def _host(header: str) -> str:
    """The name in a Host header, without its port (`[::1]:4320` → `::1`)."""
    if header.startswith("["):
        return header[1 : header.find("]")].lower() if "]" in header else ""
    return header.rsplit(":", 1)[0].lower() if header.count(":") == 1 else header.lower()


class _Guard(BaseHTTPMiddleware):
    """Refuses a Host that is not ours; gives a browser without one its random form-token
    cookie; writes the session cookie a route or `authenticate` changed (`request.state`)."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        settings: Settings = request.app.state.settings
        host = _host(request.headers.get("host", ""))
        if host not in settings.ui_hosts:
            return PlainTextResponse(
                f"this server does not answer for the host {host!r} (TOKENTRAIL_UI_HOSTS)\n", 400
            )
        fresh = None
        if not request.cookies.get(TOKEN_COOKIE):
            fresh = request.state.token_cookie = secrets.token_urlsafe(24)
        response = await call_next(request)
        secure = over_tls(request, settings)
        if fresh is not None:
            response.set_cookie(TOKEN_COOKIE, fresh, httponly=True, samesite="lax", secure=secure)
        session = getattr(request.state, "session_cookie", None)
        if session:
            response.set_cookie(
                SESSION_COOKIE,
                session,
                max_age=settings.session_max_seconds,
                httponly=True,
                samesite="lax",
                secure=secure,
            )
        elif session == "":
            response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax", secure=secure)
        if settings.auth != "none" and not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response


async def _unauthenticated(request: Request, exc: Exception) -> Response:
    settings: Settings = request.app.state.settings
    route = getattr(request.scope.get("route"), "path", None) or request.url.path
    if route.endswith((".json", ".csv")) or settings.auth != "password":
        response = render.error(request, 401, "Sign in", str(exc))
        response.headers["WWW-Authenticate"] = 'Bearer realm="tokentrail"'
        return response
    query = {"next": request.url.path + (f"?{request.url.query}" if request.url.query else "")}
    if isinstance(exc, Unauthenticated) and exc.reason:
        query["why"] = exc.reason
    target = "/signin?" + urlencode(query)
    if request.headers.get("HX-Request"):  # htmx: the whole page goes to the sign-in form
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, 303)


async def _forbidden(request: Request, exc: Exception) -> Response:
    return render.error(request, 403, "Forbidden", str(exc))


def _check_exposure(settings: Settings) -> None:
    """Without sign-in, the UI serves this machine only, unless told to serve anyone."""
    if settings.auth == "none" and not is_loopback(settings.ui_host) and not settings.ui_allow_anonymous:
        raise SettingsError(
            f"TOKENTRAIL_UI_HOST={settings.ui_host} would show every project to anyone who reaches it, "
            "without sign-in: set TOKENTRAIL_AUTH=password (or header, behind a sign-on proxy), "
            "or serve 127.0.0.1, or set TOKENTRAIL_UI_ALLOW_ANONYMOUS=1 to serve it anyway"
        )


async def _bad_request(request: Request, exc: Exception) -> Response:
    return render.error(request, 400, "Bad request", str(exc))


async def _not_found(request: Request, exc: Exception) -> Response:
    return render.error(request, 404, "Not found", str(exc))


def create_app(settings: Settings, store: Store, *, keys: KeyVerifier | None = None) -> FastAPI:
    """The UI over `store`; `keys` checks read keys (by default the store's key ring: the
    database's keys and the settings')."""
    _check_exposure(settings)
    clients = Clients(store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        clients.close()

    app = FastAPI(
        title="Tokentrail",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(check_form_token), Depends(authenticate)],
    )
    app.state.settings = settings
    app.state.clients = clients
    app.state.templates = render.templates(settings)
    app.state.signer = Signer(secret_key(settings))
    app.state.keys = keys if keys is not None else RingKeys(KeyRing(settings, store.new_client()))
    app.state.throttle = Throttle()
    app.state.clock = time.time
    app.add_middleware(_Guard)
    app.add_middleware(_SecurityHeaders)
    # a large trace page is ~1 MB of repetitive HTML and ~12x smaller compressed; zlib's default
    # level 6 compresses it in ~13 ms, Starlette's default 9 in ~23 ms for 4% less
    app.add_middleware(GZipMiddleware, minimum_size=2048, compresslevel=6)
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")
    app.add_route("/health", health, methods=["GET"], include_in_schema=False)
    app.add_exception_handler(BadRequest, _bad_request)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(Unauthenticated, _unauthenticated)
    app.add_exception_handler(Forbidden, _forbidden)
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
