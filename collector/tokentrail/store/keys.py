"""Projects and their API keys: created and revoked from the CLI, checked by the collector (ingest)
and the web UI (read).

**The key.** `tt_<key_id>_<secret>`: `key_id` is 16 hex digits that name the key in lists and in
`tokentrail keys revoke`; the secret is 32 random bytes from `secrets.token_urlsafe` (43
characters). The whole text is returned once, by `create_key`, and never again: ClickHouse keeps
only the SHA-256 of the secret (`api_keys.secret_sha256`). A salted slow hash protects guessable
passwords; a 256-bit random secret cannot be guessed, so a plain hash is enough, and whoever reads
the table holds no usable key. A presented key is compared with `hmac.compare_digest`, and every
check does the same work whether the text looks like a key or not, matches an id or not.

**Scopes.** A key has one: `ingest` sends telemetry (OTLP over HTTP and gRPC) and outcomes
(`POST /api/outcomes`) into its project; `read` reads its project's data. A key may expire
(`expires_at`) and may be revoked (`revoked_at`); either refuses it from then on.

**The environment's keys.** `TOKENTRAIL_API_KEYS=key:project,...` (`Settings.api_keys`) keeps
working for simple setups: each is a key with both scopes, `ingest` and `read`, on its project,
with the key id `"env"`. They are changed by editing the variable and restarting.

**When authentication is on.** As soon as a key exists: one in the environment, or one created
in the database, revoked and expired ones included. Revoking the last key must not open the door
it was meant to close, so a database that has ever had a key keeps asking for one. With no key at
all, the collector stays open and files everything under the default project.

**The stable API** (the collector and the web import it)::

    ring = KeyRing(settings, client)        # client: a ClickHouse client of its own, or None
    ring.keys_exist() -> bool               # authentication is on (see above)
    ring.verify(presented) -> Grant | None  # None: missing, unknown, revoked, expired
    ring.check(presented) -> Grant          # the same, raising KeyRefused with the reason
    grant.project, grant.scopes, grant.key_id, grant.allows("read")

`KeyRing` checks against keys read from ClickHouse no more than `TOKENTRAIL_KEY_CACHE_SECONDS`
(2 s) before (read again when a check finds them older), so a key created or revoked takes effect
within that long, in every process, without a restart. If
ClickHouse cannot be read, the keys read last stay in force (logged); before any was read, a check
that the environment's keys cannot answer raises `KeysUnavailable` (a retryable refusal).

The CLI's functions: `create_project`, `list_projects`, `create_key`, `list_keys`, `revoke_key`,
`parse_key_id`. They raise `KeysError` with a message for the user.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, overload

from tokentrail.server.settings import Settings
from tokentrail.store._rows import first, rows

__all__ = [
    "ENV_KEY_ID",
    "SCOPES",
    "Grant",
    "KeyInfo",
    "KeyRefused",
    "KeyRing",
    "KeysError",
    "KeysUnavailable",
    "NewKey",
    "Project",
    "create_key",
    "create_project",
    "list_keys",
    "list_projects",
    "parse_key_id",
    "revoke_key",
]

logger = logging.getLogger("tokentrail.keys")

SCOPES = ("ingest", "read")
#: the key id of a grant from TOKENTRAIL_API_KEYS
ENV_KEY_ID = "env"

_PROJECT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_KEY = re.compile(r"^tt_([0-9a-f]{16})_([A-Za-z0-9_-]{20,200})$")
_KEY_ID = re.compile(r"^(?:tt_)?([0-9a-f]{16})(?:_.*)?$")
_LABEL_MAX = 200
#: compared against when a presented key names no known key, so that the check costs the same
_NO_HASH = hashlib.sha256(b"no such key").hexdigest()

_SEND_IT = (
    "send it as `Authorization: Bearer <key>` (OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20<key>)"
)


class KeysError(ValueError):
    """A project or key operation cannot be done as asked (the message says why)."""


class KeyRefused(PermissionError):
    """A presented key grants nothing: missing, unknown, revoked, expired, or of a deleted project."""


class KeysUnavailable(RuntimeError):
    """The keys could not be read from ClickHouse yet: whether a key is valid is unknown (retry)."""


@dataclass(frozen=True)
class Grant:
    """What a valid key allows: its project, its scopes, and which key it was ("env" for one of
    TOKENTRAIL_API_KEYS, which grant both scopes)."""

    project: str
    scopes: frozenset[str]
    key_id: str

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass(frozen=True)
class Project:
    name: str
    created_at: datetime


@dataclass(frozen=True)
class KeyInfo:
    """A stored key as lists show it: everything but the secret (which is not stored)."""

    key_id: str
    project: str
    scope: str
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime | None = None) -> str:
        """`revoked`, `expired` or `active`."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or datetime.now(UTC)):
            return "expired"
        return "active"


@dataclass(frozen=True)
class NewKey:
    """A key just created: `key` is its full text, shown once and stored nowhere."""

    key: str
    info: KeyInfo


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@overload
def _utc(value: datetime) -> datetime: ...
@overload
def _utc(value: None) -> None: ...
@overload
def _utc(value: datetime | None) -> datetime | None: ...
def _utc(value: datetime | None) -> datetime | None:
    """A datetime read back from ClickHouse as an aware UTC datetime (naive ones are UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _insert(client: Any, table: str, row: dict[str, Any]) -> None:
    # synchronous even where the server batches inserts: a revocation is read back at once
    client.insert(table, [list(row.values())], column_names=list(row), settings={"async_insert": 0})


# --- projects ---------------------------------------------------------------------------------------

_PROJECTS = """
SELECT name, created_at FROM projects FINAL
WHERE deleted = 0 AND ({name:String} = '' OR name = {name:String})
ORDER BY name
"""


def _check_project_name(name: str) -> str:
    if not _PROJECT.match(name):
        raise KeysError(f"project name {name!r} must be 1 to 64 letters, digits, - or _")
    return name


def list_projects(client: Any) -> list[Project]:
    """The projects (not deleted), by name."""
    return [Project(r["name"], _utc(r["created_at"])) for r in rows(client, _PROJECTS, {"name": ""})]


def create_project(client: Any, name: str, *, now: datetime | None = None) -> Project:
    """A new project; KeysError when the name is not valid or the project exists."""
    _check_project_name(name)
    if first(client, _PROJECTS, {"name": name}) is not None:
        raise KeysError(f"project {name!r} exists already")
    now = now or datetime.now(UTC)
    _insert(client, "projects", {"name": name, "created_at": now, "deleted": 0, "updated_at": now})
    return Project(name, now)


# --- keys ---------------------------------------------------------------------------------------------

_KEY_COLUMNS = "key_id, project, scope, label, created_at, expires_at, revoked_at"
_KEYS = f"""
SELECT {_KEY_COLUMNS} FROM api_keys FINAL
WHERE ({{project:String}} = '' OR project = {{project:String}})
ORDER BY project, created_at, key_id
"""
_KEY_BY_ID = f"SELECT {_KEY_COLUMNS}, secret_sha256 FROM api_keys FINAL WHERE key_id = {{key_id:String}}"


def _info(r: dict[str, Any]) -> KeyInfo:
    return KeyInfo(
        key_id=r["key_id"],
        project=r["project"],
        scope=r["scope"],
        label=r["label"],
        created_at=_utc(r["created_at"]),
        expires_at=_utc(r["expires_at"]),
        revoked_at=_utc(r["revoked_at"]),
    )


def parse_key_id(text: str) -> str:
    """The key id in `text`: an id (16 hex digits), `tt_<id>`, or a whole key."""
    match = _KEY_ID.match(text.strip())
    if not match:
        raise KeysError(f"{text!r} is not a key id (16 hex digits, as `tokentrail keys list` shows them)")
    return match[1]


def create_key(
    client: Any,
    project: str,
    scope: str,
    *,
    label: str = "",
    expires_in: timedelta | None = None,
    now: datetime | None = None,
) -> NewKey:
    """A new key of `scope` on an existing `project`, valid for `expires_in` (None: until revoked).
    The returned `NewKey.key` is the only copy of the key's text."""
    if scope not in SCOPES:
        raise KeysError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    _check_project_name(project)
    if first(client, _PROJECTS, {"name": project}) is None:
        raise KeysError(
            f"no project {project!r}: create it first with `tokentrail projects create {project}`"
        )
    if len(label) > _LABEL_MAX or any(not c.isprintable() for c in label):
        raise KeysError(f"a key's name must be at most {_LABEL_MAX} printable characters")
    if expires_in is not None and expires_in <= timedelta(0):
        raise KeysError("a key must expire in the future")
    now = now or datetime.now(UTC)
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    info = KeyInfo(
        key_id=key_id,
        project=project,
        scope=scope,
        label=label,
        created_at=now,
        expires_at=now + expires_in if expires_in is not None else None,
        revoked_at=None,
    )
    _insert(
        client,
        "api_keys",
        {
            "key_id": key_id,
            "project": project,
            "scope": scope,
            "secret_sha256": _sha256(secret),
            "label": label,
            "created_at": now,
            "expires_at": info.expires_at,
            "revoked_at": None,
            "updated_at": now,
        },
    )
    return NewKey(f"tt_{key_id}_{secret}", info)


def list_keys(client: Any, project: str | None = None) -> list[KeyInfo]:
    """Every stored key (revoked and expired ones too) of `project`, or of all projects."""
    return [_info(r) for r in rows(client, _KEYS, {"project": project or ""})]


def revoke_key(client: Any, key_id: str, *, now: datetime | None = None) -> KeyInfo:
    """Revoke a key (by its id, or its whole text); a key revoked already keeps its first
    revocation time. KeysError for an unknown key."""
    key_id = parse_key_id(key_id)
    found = first(client, _KEY_BY_ID, {"key_id": key_id})
    if found is None:
        raise KeysError(f"no key {key_id} (`tokentrail keys list` shows the keys)")
    info = _info(found)
    if info.revoked_at is not None:
        return info
    now = now or datetime.now(UTC)
    _insert(
        client,
        "api_keys",
        {
            "key_id": key_id,
            "project": info.project,
            "scope": info.scope,
            "secret_sha256": found["secret_sha256"],
            "label": info.label,
            "created_at": info.created_at,
            "expires_at": info.expires_at,
            "revoked_at": now,
            # later than the row it replaces, even if this machine's clock is behind
            "updated_at": max(now, info.created_at + timedelta(microseconds=1)),
        },
    )
    return replace(info, revoked_at=now)


# --- checking presented keys --------------------------------------------------------------------------

_RING_KEYS = """
SELECT key_id, project, scope, secret_sha256, expires_at, revoked_at FROM api_keys FINAL
"""
_RING_PROJECTS = "SELECT name FROM projects FINAL WHERE deleted = 0"


@dataclass(frozen=True)
class _Stored:
    project: str
    scope: str
    secret_sha256: str
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class _Snapshot:
    keys: dict[str, _Stored]
    projects: frozenset[str]


def _load(client: Any) -> _Snapshot:
    keys = {
        r["key_id"]: _Stored(
            r["project"], r["scope"], r["secret_sha256"], _utc(r["expires_at"]), _utc(r["revoked_at"])
        )
        for r in rows(client, _RING_KEYS)
    }
    return _Snapshot(keys, frozenset(r["name"] for r in rows(client, _RING_PROJECTS)))


class KeyRing:
    """The valid keys, as one process sees them: the environment's, and the database's as read
    no more than `settings.key_cache_seconds` before. Thread-safe; one per process is enough.

    `client` is a ClickHouse client used by this object only (None: the environment's keys only).
    `clock` (wall time, for expiry) and `timer` (monotonic, for the cache) can be replaced in tests.
    """

    def __init__(
        self,
        settings: Settings,
        client: Any | None,
        *,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._env = [(_sha256(key), project) for key, project in settings.api_keys.items()]
        self._client = client
        self._ttl = settings.key_cache_seconds
        self._clock = clock
        self._timer = timer
        self._lock = threading.Lock()
        self._snapshot: _Snapshot | None = None if client is not None else _Snapshot({}, frozenset())
        self._read_at = float("-inf")  # when the database was last read, or tried

    def keys_exist(self) -> bool:
        """Whether authentication is on: any key in the environment, or any key ever created in
        the database (KeysUnavailable when the database could never be read)."""
        if self._env:
            return True
        snapshot = self._current()
        if snapshot is None:
            raise KeysUnavailable("cannot read the API keys from ClickHouse yet; retry")
        return bool(snapshot.keys)

    def verify(self, presented: str | None) -> Grant | None:
        """The grant of a valid key; None for a missing, unknown, revoked or expired one.
        (KeysUnavailable when the database's keys were never read and none of the environment's
        matches.)"""
        try:
            return self.check(presented)
        except KeyRefused:
            return None

    def check(self, presented: str | None) -> Grant:
        """The grant of a valid key; KeyRefused says why there is none, in words for the sender."""
        presented = (presented or "").strip()
        if not presented:
            raise KeyRefused(f"missing API key: {_SEND_IT}")
        # The same steps for every text: hash it, compare with every environment key, compare its
        # secret with the stored hash of the key it names (or with a stand-in).
        whole = _sha256(presented)
        env_project = None
        for digest, project in self._env:
            if hmac.compare_digest(digest, whole):
                env_project = project
        match = _KEY.match(presented)
        key_id, secret = (match[1], match[2]) if match else ("", presented)
        snapshot = self._current()
        if snapshot is None and env_project is None:
            raise KeysUnavailable("cannot read the API keys from ClickHouse yet; retry")
        stored = snapshot.keys.get(key_id) if snapshot is not None else None
        secret_matches = hmac.compare_digest(_sha256(secret), stored.secret_sha256 if stored else _NO_HASH)
        if env_project is not None:
            return Grant(env_project, frozenset(SCOPES), ENV_KEY_ID)
        if stored is None or not secret_matches or snapshot is None:
            raise KeyRefused(
                "unknown API key: check that the whole key was sent "
                f"(`tokentrail keys list` shows the valid ones); {_SEND_IT}"
            )
        # Past here the sender holds the key: telling them why it no longer works is safe.
        if stored.revoked_at is not None:
            raise KeyRefused(f"API key {key_id} was revoked at {_iso(stored.revoked_at)}")
        if stored.expires_at is not None and stored.expires_at.timestamp() <= self._clock():
            raise KeyRefused(f"API key {key_id} expired at {_iso(stored.expires_at)}")
        if stored.project not in snapshot.projects:
            raise KeyRefused(f"API key {key_id} belongs to project {stored.project!r}, which was deleted")
        return Grant(stored.project, frozenset((stored.scope,)), key_id)

    def _current(self) -> _Snapshot | None:
        """The keys as last read, read again first when they are older than the cache allows. One
        thread reads; the others go on with the keys read last (or wait, when there are none)."""
        snapshot = self._snapshot
        if self._client is None or self._timer() - self._read_at < self._ttl:
            return snapshot
        if not self._lock.acquire(blocking=snapshot is None):
            return snapshot
        try:
            now = self._timer()
            if now - self._read_at >= self._ttl:
                self._read_at = now
                try:
                    self._snapshot = _load(self._client)
                except Exception as exc:
                    kept = "keeping the keys read before" if self._snapshot else "no keys read yet"
                    logger.warning("cannot read API keys from ClickHouse (%s); %s", exc, kept)
        finally:
            self._lock.release()
        return self._snapshot

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
