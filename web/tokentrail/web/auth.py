"""Who is asking, and what they may read.

Every route of the web UI depends on `authenticate` (an app-wide dependency), which finds the
caller and refuses one it cannot identify, and on `check_form_token`, which refuses a
state-changing request without the form token of its browser (CSRF). How a caller is known
follows `TOKENTRAIL_AUTH`:

- `none`: nobody signs in and everyone reads every project (the laptop default; the UI then
  serves a loopback address only, unless told otherwise);
- `password`: a signed session cookie from the sign-in form (`tokentrail.web.pages.signin`);
- `header`: the e-mail address a single sign-on proxy puts in `TOKENTRAIL_AUTH_HEADER`, believed
  only from the proxies' addresses (`TOKENTRAIL_TRUSTED_PROXIES`).

In every mode a read key in `Authorization: Bearer …` also opens the `.json` and `.csv` routes,
for its project only. A signed-in account reads the projects it is a member of; `?project=` may
pick among them and is refused (403) outside them.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

from fastapi import Depends, Request

from tokentrail.server.settings import Settings
from tokentrail.store import Client
from tokentrail.store import users as accounts
from tokentrail.store.keys import KeyRing, KeysUnavailable
from tokentrail.web.clients import get_client, get_settings
from tokentrail.web.sessions import SESSION_COOKIE, TOKEN_COOKIE, SessionCookie, Signer

__all__ = [
    "PUBLIC_PATHS",
    "Caller",
    "Forbidden",
    "Grant",
    "KeyVerifier",
    "Unauthenticated",
    "authenticate",
    "check_form_token",
    "client_address",
    "form_token",
    "over_tls",
]

logger = logging.getLogger("tokentrail.web")

#: routes anyone may ask for: the sign-in form, and signing out (which needs no live session)
PUBLIC_PATHS = frozenset({"/signin", "/signout"})
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: a session's cookie is rewritten (its last-seen time moved) at most this often
_REFRESH_SECONDS = 60.0


class Unauthenticated(Exception):
    """The caller did not say who they are (or their session ended): 401, or the sign-in page."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        #: why a browser is sent to the sign-in form: "" or "expired"
        self.reason = reason


class Forbidden(Exception):
    """The caller is known but may not do this: 403."""


@dataclass(frozen=True)
class Grant:
    """What a valid API key allows: one project, to send to ("ingest") or to read ("read")."""

    project: str
    scope: Literal["ingest", "read"]
    key_id: str


class KeyVerifier(Protocol):
    """Checks a presented API key (the key ring of the store, or the keys in the settings)."""

    def verify(self, presented: str) -> Grant | None: ...


class RingKeys:
    """The project's API keys as `tokentrail.store.keys.KeyRing` holds them (the database's and
    the environment's, revocation within seconds): a read key reads its project."""

    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring

    def verify(self, presented: str) -> Grant | None:
        try:
            grant = self._ring.verify(presented)
        except KeysUnavailable:
            return None
        if grant is None or not grant.allows("read"):
            return None
        return Grant(grant.project, "read", grant.key_id)


@dataclass(frozen=True)
class Caller:
    """Who is asking: `kind` "anonymous" (no sign-in configured), "user" or "key"."""

    kind: Literal["anonymous", "user", "key"]
    #: the account's e-mail address, or the key's id
    name: str = ""
    #: the projects they may read, sorted; None: every project
    projects: tuple[str, ...] | None = None
    #: the session of a password sign-in
    session: SessionCookie | None = None

    def may_read(self, project: str) -> bool:
        return self.projects is None or project in self.projects

    def project(self, asked: str, default: str) -> str:
        """The project a request reads: the one asked for if they may read it (Forbidden
        otherwise), else the default project if theirs, else the first of theirs."""
        if asked:
            if not self.may_read(asked):
                raise Forbidden(f"project {asked} is not one of yours")
            return asked
        if self.may_read(default):
            return default
        if not self.projects:
            raise Forbidden(
                f"{self.name} is not a member of any project yet: an administrator adds it "
                "with `tokentrail users add`"
            )
        return self.projects[0]


def _now(request: Request) -> float:
    clock: Callable[[], float] = request.app.state.clock
    return clock()


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC).replace(tzinfo=None)


def _in(address: str, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net) for net in networks)


def _peer(request: Request) -> str:
    return request.client.host if request.client else ""


def client_address(request: Request, settings: Settings) -> str:
    """The address of whoever made the request: the peer, or behind trusted proxies the last
    address in X-Forwarded-For that is not one of them."""
    peer = _peer(request)
    if not _in(peer, settings.trusted_proxies):
        return peer
    hops = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in(hop, settings.trusted_proxies):
            return hop
    return hops[0] if hops else peer


def over_tls(request: Request, settings: Settings) -> bool:
    """Whether the browser reached us over TLS: directly, or as a trusted proxy says."""
    if request.url.scheme == "https":
        return True
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return forwarded == "https" and _in(_peer(request), settings.trusted_proxies)


def _is_export(request: Request) -> bool:
    path = getattr(request.scope.get("route"), "path", None) or request.url.path
    return path.endswith((".json", ".csv"))


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _from_key(request: Request, presented: str) -> Caller:
    keys: KeyVerifier = request.app.state.keys
    grant = keys.verify(presented)
    if grant is None or grant.scope != "read":
        raise Unauthenticated("unknown API key, or not a read key")
    return Caller("key", grant.key_id, (grant.project,))


def _account(client: Client, email: str) -> Caller:
    user = accounts.get_user(client, email)
    if user is None or user.disabled:
        raise Unauthenticated(f"no account {email}: an administrator adds it with `tokentrail users add`")
    return Caller("user", user.email, user.projects)


def _from_header(request: Request, settings: Settings, client: Client) -> Caller:
    claimed = request.headers.get(settings.auth_header, "").strip()
    if claimed and not _in(_peer(request), settings.trusted_proxies):
        logger.warning("%s from %s, not a trusted proxy: ignored", settings.auth_header, _peer(request))
        claimed = ""
    if not claimed:
        raise Unauthenticated("sign in through the single sign-on proxy in front of Tokentrail")
    try:
        email = accounts.normalize_email(claimed)
    except ValueError:
        raise Unauthenticated(f"{settings.auth_header} names no e-mail address") from None
    return _account(client, email)


def _from_session(request: Request, settings: Settings, client: Client) -> Caller:
    signer: Signer = request.app.state.signer
    cookie = signer.read_session(request.cookies.get(SESSION_COOKIE))
    if cookie is None:
        raise Unauthenticated("sign in first (or send a read key as `Authorization: Bearer <key>`)")
    now = _now(request)
    if (
        now - cookie.issued > settings.session_max_seconds
        or now - cookie.seen > settings.session_idle_seconds
    ):
        raise Unauthenticated("your session has expired: sign in again", "expired")
    if accounts.live_session(client, cookie.sid, _utc(now)) != cookie.email:
        raise Unauthenticated("your session has ended: sign in again", "expired")
    caller = _account(client, cookie.email)
    if now - cookie.seen > min(_REFRESH_SECONDS, settings.session_idle_seconds / 10):
        cookie = SessionCookie(cookie.sid, cookie.email, cookie.issued, now)
        request.state.session_cookie = signer.session(cookie)
    return Caller("user", caller.name, caller.projects, cookie)


def authenticate(
    request: Request, settings: Settings = Depends(get_settings), client: Client = Depends(get_client)
) -> Caller | None:
    """The caller (also kept as `request.state.caller`); None on a public route."""
    route = getattr(request.scope.get("route"), "path", "")
    if route in PUBLIC_PATHS:
        return None
    presented = _bearer(request) if _is_export(request) else None
    if presented is not None:
        caller = _from_key(request, presented)
    elif settings.auth == "none":
        caller = Caller("anonymous")
    elif settings.auth == "header":
        caller = _from_header(request, settings, client)
    else:
        caller = _from_session(request, settings, client)
    request.state.caller = caller
    return caller


def _binding(request: Request) -> str:
    """What a browser's form token is bound to: its session, else its random cookie."""
    signer: Signer = request.app.state.signer
    cookie = signer.read_session(request.cookies.get(SESSION_COOKIE))
    if cookie is not None:
        return "session:" + cookie.sid
    nonce = getattr(request.state, "token_cookie", None) or request.cookies.get(TOKEN_COOKIE, "")
    return "browser:" + nonce if nonce else ""


def form_token(request: Request) -> str:
    """The token this browser's forms (and htmx requests) send back."""
    signer: Signer = request.app.state.signer
    binding = _binding(request)
    return signer.form_token(binding) if binding else ""


async def check_form_token(request: Request) -> None:
    """A request that changes something must carry its browser's form token, as the form field
    `csrf_token` or the header `X-CSRF-Token`."""
    if request.method in _SAFE_METHODS:
        return
    token = request.headers.get("x-csrf-token", "")
    if not token and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get("csrf_token")
        token = value if isinstance(value, str) else ""
    signer: Signer = request.app.state.signer
    if not signer.check_form_token(_binding(request), token):
        raise Forbidden("this form has expired or came from another site: reload the page and try again")
