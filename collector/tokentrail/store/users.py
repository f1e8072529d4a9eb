"""Who may sign in to the web UI, with which password, to read which projects; and the UI's
sign-in sessions (`users`, `memberships` and `ui_sessions`, migrations/0011_users.sql).

Every change is a new row with a later `updated_at` and every read is FINAL, so the latest row
counts. Passwords are kept as scrypt hashes (memory-hard, so a stolen table is slow to attack),
each with its own random salt and with the cost parameters in the hash string, so stronger
parameters later do not invalidate older hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from tokentrail.store._rows import bound, first, rows

__all__ = [
    "PROJECT",
    "User",
    "add_membership",
    "create_session",
    "get_user",
    "hash_password",
    "list_users",
    "live_session",
    "normalize_email",
    "remove_membership",
    "remove_user",
    "revoke_session",
    "revoke_sessions",
    "save_user",
    "verify_password",
]

#: a project's name, as the web UI and the collector accept it
PROJECT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}$")

# scrypt at N=2^15, r=8: 32 MiB and ~0.1 s a hash on a server core (OWASP's minimum is 2^17
# with r=8, p=1 for a slow offline attack budget; 2^15 keeps a sign-in well under a second here)
_N, _R, _P = 1 << 15, 8, 1
_SCHEME = "scrypt"


def normalize_email(raw: str) -> str:
    """The e-mail address as accounts are keyed: trimmed, lower case. ValueError if it is not one."""
    email = raw.strip().lower()
    if not _EMAIL.match(email):
        raise ValueError(f"{raw!r} is not an e-mail address")
    return email


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str, *, n: int = _N, r: int = _R, p: int = _P) -> str:
    """`scrypt$n$r$p$salt$hash`: a fresh 16-byte salt, a 32-byte key."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_maxmem(n, r, p), dklen=32)
    return f"{_SCHEME}${n}${r}${p}${_b64(salt)}${_b64(key)}"


def _maxmem(n: int, r: int, p: int) -> int:
    return 128 * r * (n + p + 2) + (1 << 20)


@cache
def _dummy() -> str:
    """Checked against when the account is unknown or has no password, so that a sign-in takes
    as long whether or not the account exists."""
    return hash_password(secrets.token_urlsafe(16))


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` matches the hash (compared in constant time); False for an empty or
    malformed hash, after as much work as a real check."""
    try:
        scheme, n, r, p, salt, key = (encoded or _dummy()).split("$")
        params = int(n), int(r), int(p)
        if scheme != _SCHEME or not (2 <= params[0] <= 1 << 20 and 1 <= params[1] <= 32 and params[2] == 1):
            raise ValueError(scheme)
        expected = base64.b64decode(key, validate=True)
        found = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt, validate=True),
            n=params[0],
            r=params[1],
            p=params[2],
            maxmem=_maxmem(*params),
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(found, expected) and bool(encoded)


@dataclass(frozen=True)
class User:
    email: str
    password_hash: str
    disabled: bool
    #: the projects the user is a member of, sorted
    projects: tuple[str, ...]

    @property
    def has_password(self) -> bool:
        return bool(self.password_hash)


_clock_lock = threading.Lock()
_last = datetime.min


def _now() -> datetime:
    """Now (naive UTC, microseconds), later than any earlier call in this process: two changes in
    one microsecond still replace each other in order."""
    global _last
    with _clock_lock:
        now = max(datetime.now(UTC).replace(tzinfo=None), _last + timedelta(microseconds=1))
        _last = now
        return now


def _insert(client: Any, table: str, columns: list[str], values: list[list[Any]]) -> None:
    client.insert(table, values, column_names=columns, settings={"async_insert": 0})


_USER = """
SELECT email, password_hash, disabled FROM users FINAL WHERE email = {email:String}
"""
_USERS = "SELECT email, password_hash, disabled FROM users FINAL ORDER BY email"
_PROJECTS = """
SELECT email, groupArray(project) AS projects
FROM (SELECT email, project FROM memberships FINAL WHERE removed = 0 {where} ORDER BY email, project)
GROUP BY email
"""


def _user(row: dict[str, Any], projects: dict[str, list[str]]) -> User:
    return User(
        row["email"], row["password_hash"], bool(row["disabled"]), tuple(projects.get(row["email"], ()))
    )


def get_user(client: Any, email: str) -> User | None:
    """The account and its projects (an account disabled keeps its row: `disabled`)."""
    found = first(client, _USER, {"email": email})
    if found is None:
        return None
    projects = rows(client, _PROJECTS.format(where="AND email = {email:String}"), {"email": email})
    return _user(found, {r["email"]: r["projects"] for r in projects})


def list_users(client: Any) -> list[User]:
    projects = {r["email"]: r["projects"] for r in rows(client, _PROJECTS.format(where=""))}
    return [_user(r, projects) for r in rows(client, _USERS)]


def save_user(client: Any, email: str, password_hash: str, *, disabled: bool = False) -> None:
    """Create or replace the account's row (its memberships stay)."""
    _insert(
        client,
        "users",
        ["email", "password_hash", "disabled", "updated_at"],
        [[email, password_hash, int(disabled), _now()]],
    )


def add_membership(client: Any, email: str, project: str, role: str = "member") -> None:
    if not PROJECT.match(project):
        raise ValueError(f"project {project!r} must be 1 to 64 letters, digits, - or _")
    _insert(
        client,
        "memberships",
        ["email", "project", "role", "removed", "updated_at"],
        [[email, project, role, 0, _now()]],
    )


def remove_membership(client: Any, email: str, project: str) -> None:
    _insert(
        client,
        "memberships",
        ["email", "project", "role", "removed", "updated_at"],
        [[email, project, "member", 1, _now()]],
    )


def remove_user(client: Any, email: str) -> None:
    """Disable the account, drop its password and memberships, and end its sessions."""
    user = get_user(client, email)
    for project in user.projects if user else ():
        remove_membership(client, email, project)
    save_user(client, email, "", disabled=True)
    revoke_sessions(client, email)


# sessions -----------------------------------------------------------------------------------

_SESSION = """
SELECT email FROM ui_sessions FINAL
WHERE session_id = {sid:String} AND revoked = 0 AND expires_at > {now:DateTime64(6)}
"""
_REVOKE_ALL = """
INSERT INTO ui_sessions (session_id, email, created_at, expires_at, revoked, updated_at)
SELECT session_id, email, created_at, expires_at, 1, {now:DateTime64(6)}
FROM ui_sessions FINAL WHERE email = {email:String} AND revoked = 0
"""


def create_session(client: Any, email: str, expires_at: datetime) -> str:
    """A new session of the account, valid until `expires_at` (naive UTC) unless revoked; its id
    (256 random bits)."""
    sid = secrets.token_urlsafe(32)
    now = _now()
    _insert(
        client,
        "ui_sessions",
        ["session_id", "email", "created_at", "expires_at", "revoked", "updated_at"],
        [[sid, email, now, expires_at, 0, now]],
    )
    return sid


def live_session(client: Any, sid: str, now: datetime) -> str | None:
    """The e-mail address of a session that exists, is not revoked and has not expired at `now`."""
    found = first(client, _SESSION, {"sid": sid, "now": now})
    return str(found["email"]) if found else None


def revoke_session(client: Any, sid: str) -> None:
    found = first(
        client,
        "SELECT email, created_at, expires_at FROM ui_sessions FINAL WHERE session_id = {sid:String}",
        {"sid": sid},
    )
    if found is None:
        return
    _insert(
        client,
        "ui_sessions",
        ["session_id", "email", "created_at", "expires_at", "revoked", "updated_at"],
        [[sid, found["email"], found["created_at"], found["expires_at"], 1, _now()]],
    )


def revoke_sessions(client: Any, email: str) -> None:
    """End every session of the account (a new password, a removed account)."""
    client.command(
        _REVOKE_ALL, parameters=bound({"email": email, "now": _now()}), settings={"async_insert": 0}
    )
