"""What the web UI signs and remembers for a browser: the session cookie, the form token, the
signing key, and the failed sign-ins that slow the next ones down.

The session cookie holds the session's id, its account and two times (signed in, last seen),
signed with HMAC-SHA256: a browser can read it but not change it. It is also checked against
`ui_sessions` on every request, so signing out ends it on the server whatever copy of the cookie
is kept. Form tokens (CSRF) are an HMAC of the session's id, or of a random per-browser cookie
before sign-in: another site can make a browser post a form, but cannot read the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from tokentrail.server.settings import Settings

__all__ = ["SESSION_COOKIE", "TOKEN_COOKIE", "SessionCookie", "Signer", "Throttle", "secret_key"]

SESSION_COOKIE = "tt_session"
#: a random value per browser that form tokens are bound to before sign-in
TOKEN_COOKIE = "tt_csrf"
_KEY_FILE = "ui_secret_key"


def secret_key(settings: Settings) -> bytes:
    """TOKENTRAIL_SECRET_KEY, else a key generated once and kept (readable by its owner only) in
    the data directory, so that sessions outlive a restart."""
    if settings.secret_key:
        return settings.secret_key.encode()
    path = Path(settings.data_dir) / _KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text().strip()
        if len(key) < 32:
            raise OSError(f"{path} holds no key: delete it, and one is made at the next start") from None
        return key.encode()
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key.encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class SessionCookie:
    sid: str
    email: str
    #: Unix times: signed in, and the last request that refreshed the cookie
    issued: float
    seen: float


class Signer:
    """Signs and checks the session cookie and form tokens with one key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, purpose: str, data: bytes) -> bytes:
        return hmac.new(self._key, purpose.encode() + b"\0" + data, hashlib.sha256).digest()

    def session(self, cookie: SessionCookie) -> str:
        body = json.dumps(
            {"sid": cookie.sid, "email": cookie.email, "iat": cookie.issued, "seen": cookie.seen},
            separators=(",", ":"),
        ).encode()
        return f"{_b64(body)}.{_b64(self._mac('session', body))}"

    def read_session(self, value: str | None) -> SessionCookie | None:
        """The cookie's session, or None when it is missing, malformed or not signed by us."""
        if not value or value.count(".") != 1 or len(value) > 4096:
            return None
        body_text, mac_text = value.split(".")
        try:
            body, mac = _unb64(body_text), _unb64(mac_text)
            if not hmac.compare_digest(mac, self._mac("session", body)):
                return None
            data = json.loads(body)
            return SessionCookie(
                str(data["sid"]), str(data["email"]), float(data["iat"]), float(data["seen"])
            )
        except (ValueError, KeyError, TypeError):
            return None

    def form_token(self, binding: str) -> str:
        """The CSRF token of a session id (or of a browser's random cookie before sign-in)."""
        return _b64(self._mac("csrf", binding.encode()))

    def check_form_token(self, binding: str, token: str) -> bool:
        return bool(binding) and hmac.compare_digest(self.form_token(binding), token)


class Throttle:
    """Failed sign-ins per account and per client address. Past `free` failures in a row, each
    failure makes the next attempt wait twice as long as the last (1 s, 2 s, 4 s… up to `cap`); one
    made sooner is refused without its password being checked. A success clears the account's
    count (not the address's); counts are forgotten after `forget` seconds without a failure.
    Kept in the process (a UI run as several processes slows each apart)."""

    def __init__(
        self,
        *,
        free_account: int = 5,
        free_address: int = 20,
        cap: float = 900.0,
        forget: float = 3600.0,
        size: int = 100_000,
    ) -> None:
        self._free = {"account": free_account, "address": free_address}
        self._cap = cap
        self._forget = forget
        self._size = size
        self._failures: OrderedDict[tuple[str, str], tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _delay(self, kind: str, count: int) -> float:
        """The wait after `count` failures in a row: none up to `free`, then 1 s, 2 s, 4 s…"""
        over = count - self._free[kind]
        return 0.0 if over <= 0 else min(self._cap, 2.0 ** (over - 1))

    def wait(self, account: str, address: str, now: float) -> float:
        """Seconds until a sign-in to `account` from `address` may be tried; 0 if now."""
        longest = 0.0
        with self._lock:
            for key in (("account", account), ("address", address)):
                count, last = self._failures.get(key, (0, 0.0))
                if count and now - last > self._forget:
                    continue
                longest = max(longest, last + self._delay(key[0], count) - now)
        return max(0.0, longest)

    def failed(self, account: str, address: str, now: float) -> None:
        with self._lock:
            for key in (("account", account), ("address", address)):
                count, last = self._failures.pop(key, (0, 0.0))
                self._failures[key] = (1 if now - last > self._forget else count + 1, now)
            while len(self._failures) > self._size:
                self._failures.popitem(last=False)

    def succeeded(self, account: str) -> None:
        with self._lock:
            self._failures.pop(("account", account), None)
