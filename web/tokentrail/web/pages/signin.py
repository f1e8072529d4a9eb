"""Signing in and out (`/signin`, `/signout`).

With `TOKENTRAIL_AUTH=password` the form checks the account's password, starts a session (a row
in `ui_sessions` and a signed cookie) and goes on to the page asked for. Failed attempts slow
the next ones down, per account and per client address (`tokentrail.web.sessions.Throttle`);
an attempt made too soon is refused (429) without its password being checked. Signing out
revokes the session on the server, so a kept copy of the cookie opens nothing. With header
sign-in, signing out leads to the proxy's own sign-out (`TOKENTRAIL_AUTH_SIGNOUT_URL`).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tokentrail.server.settings import Settings
from tokentrail.store import Client
from tokentrail.store import users as accounts
from tokentrail.web import render
from tokentrail.web.auth import client_address
from tokentrail.web.clients import get_client, get_settings
from tokentrail.web.filters import parse_query
from tokentrail.web.sessions import SESSION_COOKIE, SessionCookie, Signer, Throttle

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

_MESSAGES = {
    "expired": "Your session has ended. Sign in again to go on.",
    "signed_out": "You are signed out.",
}
_WRONG = "Wrong e-mail address or password."


def _next(raw: str) -> str:
    """Where to go after signing in: a path of this site only (never another host)."""
    parts = urlsplit(raw)
    odd = any(ord(c) < 0x21 or ord(c) == 0x7F for c in raw)  # browsers drop tabs and newlines
    if odd or not raw.startswith("/") or raw.startswith("//") or "\\" in raw or parts.scheme or parts.netloc:
        return "/"
    return raw


def _form(request: Request, next_url: str, message: str = "", email: str = "", status: int = 200) -> Response:
    data: dict[str, Any] = {"next": next_url, "message": message, "email": email}
    return render.html(request, "signin.html", data, status)


@router.get("/signin", response_class=HTMLResponse)
def signin_page(request: Request, settings: Settings = Depends(get_settings)) -> Response:
    params = parse_query(request.scope.get("query_string", b""), ("next", "why"), "/signin")
    next_url = _next(params.get("next", "/"))
    if settings.auth == "none":
        return RedirectResponse(next_url, 303)
    if settings.auth == "header":
        return render.error(
            request, 401, "Sign in", "Sign in through the single sign-on proxy in front of Tokentrail."
        )
    return _form(request, next_url, _MESSAGES.get(params.get("why", ""), ""))


@router.post("/signin", response_class=HTMLResponse)
def signin(
    request: Request,
    email: str = Form("", max_length=320),
    password: str = Form("", max_length=1024),
    next_url: str = Form("/", alias="next", max_length=2000),
    settings: Settings = Depends(get_settings),
    client: Client = Depends(get_client),
) -> Response:
    next_url = _next(next_url)
    if settings.auth != "password":
        return RedirectResponse("/signin", 303)
    account = email.strip().lower()
    address = client_address(request, settings)
    throttle: Throttle = request.app.state.throttle
    now: float = request.app.state.clock()
    wait = throttle.wait(account, address, now)
    if wait > 0:
        seconds = math.ceil(wait)
        response = _form(
            request,
            next_url,
            f"Too many failed sign-ins. Try again in {seconds} second{'s' if seconds != 1 else ''}.",
            email,
            429,
        )
        response.headers["Retry-After"] = str(seconds)
        return response
    user = None
    try:
        user = accounts.get_user(client, accounts.normalize_email(account))
    except ValueError:
        pass
    known = user is not None and not user.disabled
    if not accounts.verify_password(password, user.password_hash if user and known else ""):
        throttle.failed(account, address, now)
        return _form(request, next_url, _WRONG, email, 401)
    assert user is not None
    throttle.succeeded(account)
    ends = datetime.fromtimestamp(now + settings.session_max_seconds, UTC).replace(tzinfo=None)
    sid = accounts.create_session(client, user.email, ends)
    signer: Signer = request.app.state.signer
    request.state.session_cookie = signer.session(SessionCookie(sid, user.email, now, now))
    return RedirectResponse(next_url, 303)


@router.post("/signout")
def signout(
    request: Request, settings: Settings = Depends(get_settings), client: Client = Depends(get_client)
) -> Response:
    signer: Signer = request.app.state.signer
    cookie = signer.read_session(request.cookies.get(SESSION_COOKIE))
    if cookie is not None:
        accounts.revoke_session(client, cookie.sid)
    request.state.session_cookie = ""  # deleted
    if settings.auth == "header":
        return RedirectResponse(settings.auth_signout_url or "/", 303)
    return RedirectResponse("/signin?why=signed_out" if settings.auth == "password" else "/", 303)
