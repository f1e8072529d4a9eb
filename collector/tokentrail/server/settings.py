"""One frozen settings object per server process, read from the environment by `from_env`, with
the waste rules' thresholds and the budgets among its values.

Servers are strict: a bad value stops start-up with a message that names the variable.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = [
    "AUTH_MODES",
    "MAX_RETENTION_DAYS",
    "REDACT_DEFAULT",
    "REDACT_SETS",
    "Budget",
    "Settings",
    "SettingsError",
    "Thresholds",
    "from_env",
    "is_loopback",
    "parse_budgets",
]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_HEADER = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_HOSTNAME = re.compile(r"^[a-z0-9.:_-]{1,253}$")
#: how the web UI knows who asks: nobody signs in, built-in accounts, or a sign-on proxy's header
AUTH_MODES = ("none", "password", "header")
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
#: the built-in redaction rule sets (`tokentrail.collector.redact` holds their rules)
REDACT_SETS = ("secrets", "emails", "cards")
#: on unless TOKENTRAIL_REDACT says otherwise: API keys, tokens and passwords have no use in
#: telemetry and card numbers may not be kept; e-mail addresses are how coding agents name the
#: developer (`user.email`), so hiding them is a choice to make
REDACT_DEFAULT = ("secrets", "cards")
_RULE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_BUDGET = re.compile(r"^(daily|monthly):(project|service|user)=([^:,]{1,200}):([0-9]+(?:\.[0-9]+)?)$")


class SettingsError(ValueError):
    """A setting has a value the server cannot run with."""


@dataclass(frozen=True)
class Thresholds:
    """The waste rules' settings (`TOKENTRAIL_WASTE_*`; the README documents each)."""

    #: a cycle repeating this often in a row is a loop; one that occurs twice is a duplicate tool call
    loop_min_repeats: int = 3
    loop_max_cycle: int = 4
    #: context bloat: stale context up to the first call's input (at least this much) is allowed…
    bloat_min_tokens: int = 1_000
    #: …and never more than this, nor more than this share of the model's context window
    bloat_carry_tokens: int = 16_000
    bloat_window_share: float = 0.1
    cache_min_tokens: int = 1024
    cache_ttl_seconds: float = 300.0
    oversized_max_output_tokens: int = 16
    oversized_min_saving: float = 0.5
    #: a run that ended in an error without a successful outcome counts as no outcome
    no_outcome_on_error: bool = True


@dataclass(frozen=True)
class Budget:
    """A spend limit (`TOKENTRAIL_BUDGETS`; tokentrail.analysis.budgets watches them)."""

    period: str  # "daily" or "monthly"
    scope: str  # "project", "service" or "user"
    value: str  # the project, service or user it limits
    limit_usd: float
    project: str  # the project whose spend counts

    @property
    def key(self) -> str:
        return f"{self.period}:{self.scope}={self.value}"


def parse_budgets(raw: str, default_project: str = "default") -> list[Budget]:
    """`daily:project=default:50,monthly:service=support-bot:1000` → budgets; ValueError says what is wrong."""
    budgets = []
    for item in filter(None, (p.strip() for p in raw.split(","))):
        match = _BUDGET.match(item)
        if not match:
            raise ValueError(
                f"{item!r} is not period:scope=value:usd (period daily|monthly, scope project|service|user)"
            )
        value = match[3].strip()
        budgets.append(
            Budget(
                match[1],
                match[2],
                value,
                float(match[4]),
                value if match[2] == "project" else default_project,
            )
        )
    return budgets


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    #: `chdb:///abs/path` (embedded) or `http(s)://user:password@host:8123`.
    clickhouse_url: str
    database: str = "tokentrail"
    #: ClickHouse cluster name: the schema becomes replicated tables sharded across it
    #: (tokentrail.store.cluster); empty for a single server or chDB.
    cluster: str = ""
    #: days telemetry is kept (a TTL on every telemetry table, set by `migrate`); 0 keeps it forever
    retention_days: int = 0
    host: str = "127.0.0.1"
    otlp_http_port: int = 4318
    otlp_grpc_port: int = 4317
    ui_port: int = 4320
    #: the embedded database's ClickHouse HTTP interface (tokentrail.server.clickhouse_http):
    #: where it listens (port 0: any free port, found in the endpoint file) and its password
    #: (empty: a new random one at each start, written only to the endpoint file)
    database_host: str = "127.0.0.1"
    database_port: int = 0
    database_password: str = ""
    #: the web UI's listen address, apart from the collector's `host`
    ui_host: str = "127.0.0.1"
    #: the Host header values the web UI answers (a name elsewhere is refused: DNS rebinding)
    ui_hosts: tuple[str, ...] = _LOOPBACK_NAMES
    #: without sign-in the UI serves a non-loopback address only when this says so
    ui_allow_anonymous: bool = False
    #: "none", "password" or "header" (AUTH_MODES)
    auth: str = "none"
    #: the request header a trusted single sign-on proxy names the signed-in e-mail address in
    auth_header: str = "X-Forwarded-Email"
    #: where "Sign out" leads with header sign-in (the proxy's own sign-out, a path), if anywhere
    auth_signout_url: str = ""
    #: addresses (IPs or networks) of the reverse proxies whose identity and X-Forwarded-For /
    #: X-Forwarded-Proto headers are believed
    trusted_proxies: tuple[str, ...] = ()
    #: the key sessions and form tokens are signed with; empty: one generated under data_dir
    secret_key: str = ""
    #: a session ends after this long without a request, and this long after sign-in whatever
    session_idle_seconds: int = 2 * 3600
    session_max_seconds: int = 24 * 3600
    #: API key -> project (TOKENTRAIL_API_KEYS): keys with both scopes, beside the database's keys.
    #: With neither: no authentication, everything goes to `default_project`.
    api_keys: Mapping[str, str] = field(default_factory=dict)
    #: keys created or revoked in the database take effect within this long (tokentrail.store.keys)
    key_cache_seconds: float = 2.0
    default_project: str = "default"
    spool_max_bytes: int = 1 << 30
    max_body_bytes: int = 32 << 20
    #: OTLP/JSON costs far more CPU to decode than protobuf (~0.1 s a MiB of real telemetry, ~2 s
    #: a MiB of empty objects, against milliseconds): a lower limit keeps one request to seconds
    max_json_body_bytes: int = 4 << 20
    #: deepest nesting of arrays and objects accepted in a JSON body
    max_json_depth: int = 64
    #: requests (HTTP: also open connections) handled at once on each OTLP port
    max_concurrent_requests: int = 256
    #: a request's headers must arrive within this long of its first byte (or of the connection)
    header_timeout_seconds: float = 10.0
    #: a request's body must arrive within this long of its headers
    body_timeout_seconds: float = 30.0
    writer_batch_spans: int = 20_000
    writer_flush_seconds: float = 0.5
    #: processes that flatten spans for the writer; 0 flattens on the writer thread
    writer_workers: int = 2
    summary_interval_seconds: float = 1.0
    #: Per-query memory limit for the embedded engine (chDB defaults to 0.9 x RAM).
    chdb_max_memory_bytes: int = 4 << 30
    #: a trace is analysed for waste once it has had no new spans for this long
    waste_idle_seconds: float = 30.0
    #: the waste detectors' thresholds (tokentrail.analysis.ledger documents each rule)
    waste: Thresholds = field(default_factory=Thresholds)
    #: a span or resource attribute that names a task's type (else `tokentrail.task.type`)
    task_type_attribute: str = ""
    #: a root-span or resource attribute that names the team a trace belongs to (costs by team)
    team_attribute: str = "team"
    #: spend limits (tokentrail.analysis.budgets) and where to post alerts about them
    budgets: tuple[Budget, ...] = ()
    budget_webhook: str = ""
    #: redaction at ingest (tokentrail.collector.redact): the built-in rule sets on, extra
    #: patterns as (name, regular expression), and attribute keys (globs, any case) whose values
    #: are replaced whole
    redact: tuple[str, ...] = REDACT_DEFAULT
    redact_patterns: tuple[tuple[str, str], ...] = ()
    redact_keys: tuple[str, ...] = ()

    @property
    def auth_on(self) -> bool:
        """Whether callers must say who they are: a sign-in mode, or API keys."""
        return self.auth != "none" or bool(self.api_keys)

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def embedded(self) -> bool:
        return self.clickhouse_url.startswith("chdb:")

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def _int(env: Mapping[str, str], name: str, default: int, low: int = 0, high: int = 1 << 62) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={value} is out of range ({low} to {high})")
    return value


def _float(env: Mapping[str, str], name: str, default: float, high: float = float("inf")) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not 0 < value <= high:  # also refuses nan
        bound = f" and at most {high:g}" if high < float("inf") else ""
        raise SettingsError(f"{name}={raw!r} must be greater than 0{bound}")
    return value


def _json_body_limit(env: Mapping[str, str], max_body: int) -> int:
    """TOKENTRAIL_MAX_JSON_BODY_BYTES: at most TOKENTRAIL_MAX_BODY_BYTES, which a smaller body
    limit lowers it to unless it is set explicitly."""
    name = "TOKENTRAIL_MAX_JSON_BODY_BYTES"
    if not env.get(name, "").strip():
        return min(Settings.max_json_body_bytes, max_body)
    value = _int(env, name, Settings.max_json_body_bytes, 1024)
    if value > max_body:
        raise SettingsError(
            f"{name}={value} is larger than TOKENTRAIL_MAX_BODY_BYTES={max_body}: lower it or raise that"
        )
    return value


#: the longest retention: a row's time plus this stays within what a ClickHouse DateTime holds
#: (up to 2106), which the TTL is computed in
MAX_RETENTION_DAYS = 10_000


def _retention_days(raw: str) -> int:
    """TOKENTRAIL_RETENTION_DAYS: a whole number of days, 1 to MAX_RETENTION_DAYS; 0 or unset: forever."""
    name = "TOKENTRAIL_RETENTION_DAYS"
    keep = "or 0 (or unset) to keep it forever"
    if not raw.strip():
        return 0
    try:
        days = int(raw.strip())
    except ValueError:
        raise SettingsError(
            f"{name}={raw!r} is not a whole number of days: give how many days to keep telemetry, {keep}"
        ) from None
    if not 0 <= days <= MAX_RETENTION_DAYS:
        raise SettingsError(f"{name}={days} must be 1 to {MAX_RETENTION_DAYS} days, {keep}")
    return days


def _api_keys(raw: str) -> dict[str, str]:
    """`key1:project1,key2:project2`; a key without a project maps to `default`."""
    keys: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, _, project = item.partition(":")
        project = project.strip() or "default"
        if not key.strip():
            raise SettingsError(f"TOKENTRAIL_API_KEYS has an entry with an empty key: {item!r}")
        if not _IDENT.match(project.replace("-", "_")):
            raise SettingsError(
                f"TOKENTRAIL_API_KEYS: project name {project!r} must be letters, digits, - or _"
            )
        keys[key.strip()] = project
    return keys


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    data_dir = Path(env.get("TOKENTRAIL_DATA_DIR") or ".tokentrail").expanduser().resolve()
    url = env.get("TOKENTRAIL_CLICKHOUSE_URL", "").strip() or f"chdb://{data_dir / 'chdb'}"
    if not url.startswith(("chdb:", "http://", "https://")):
        raise SettingsError(
            f"TOKENTRAIL_CLICKHOUSE_URL={url!r}: use chdb:///absolute/path or http(s)://host:8123"
        )
    database = env.get("TOKENTRAIL_CLICKHOUSE_DATABASE", "tokentrail")
    if not _IDENT.match(database):
        raise SettingsError(f"TOKENTRAIL_CLICKHOUSE_DATABASE={database!r} is not a valid database name")
    if _float(env, "TOKENTRAIL_WASTE_OVERSIZED_MIN_SAVING", 0.5) >= 1:
        raise SettingsError(
            "TOKENTRAIL_WASTE_OVERSIZED_MIN_SAVING is a share of the cost: above 0 and below 1"
        )
    cluster = env.get("TOKENTRAIL_CLICKHOUSE_CLUSTER", "")
    if cluster and not _IDENT.match(cluster):
        raise SettingsError(f"TOKENTRAIL_CLICKHOUSE_CLUSTER={cluster!r} is not a valid cluster name")
    max_body = _int(env, "TOKENTRAIL_MAX_BODY_BYTES", 32 << 20, 1024, (2 << 30) - 1)
    return Settings(
        data_dir=data_dir,
        clickhouse_url=url,
        database=database,
        cluster=cluster,
        retention_days=_retention_days(env.get("TOKENTRAIL_RETENTION_DAYS", "")),
        host=env.get("TOKENTRAIL_HOST", "127.0.0.1"),
        otlp_http_port=_int(env, "TOKENTRAIL_OTLP_HTTP_PORT", 4318, 0, 65535),
        otlp_grpc_port=_int(env, "TOKENTRAIL_OTLP_GRPC_PORT", 4317, 0, 65535),
        ui_port=_int(env, "TOKENTRAIL_UI_PORT", 4320, 0, 65535),
        **_database_endpoint(env),
        **_sign_in(env),
        api_keys=_api_keys(env.get("TOKENTRAIL_API_KEYS", "")),
        key_cache_seconds=_float(env, "TOKENTRAIL_KEY_CACHE_SECONDS", 2.0, 3600),
        spool_max_bytes=_int(env, "TOKENTRAIL_SPOOL_MAX_BYTES", 1 << 30, 1 << 20),
        max_body_bytes=max_body,
        max_json_body_bytes=_json_body_limit(env, max_body),
        # deeper than protobuf's own limit of 100 nested messages could never be decoded anyway
        max_json_depth=_int(env, "TOKENTRAIL_MAX_JSON_DEPTH", 64, 8, 128),
        max_concurrent_requests=_int(env, "TOKENTRAIL_MAX_CONCURRENT_REQUESTS", 256, 1, 100_000),
        header_timeout_seconds=_float(env, "TOKENTRAIL_HEADER_TIMEOUT_SECONDS", 10.0, 3600),
        body_timeout_seconds=_float(env, "TOKENTRAIL_BODY_TIMEOUT_SECONDS", 30.0, 3600),
        writer_batch_spans=_int(env, "TOKENTRAIL_WRITER_BATCH_SPANS", 20_000, 1),
        writer_flush_seconds=_float(env, "TOKENTRAIL_WRITER_FLUSH_SECONDS", 0.5),
        writer_workers=_int(env, "TOKENTRAIL_WRITER_WORKERS", 2, 0, 64),
        summary_interval_seconds=_float(env, "TOKENTRAIL_SUMMARY_INTERVAL_SECONDS", 1.0),
        chdb_max_memory_bytes=_int(env, "TOKENTRAIL_CHDB_MAX_MEMORY_BYTES", 4 << 30, 64 << 20),
        waste_idle_seconds=_float(env, "TOKENTRAIL_WASTE_IDLE_SECONDS", 30.0),
        waste=_thresholds(env),
        task_type_attribute=env.get("TOKENTRAIL_TASK_TYPE_ATTRIBUTE", "").strip(),
        team_attribute=env.get("TOKENTRAIL_TEAM_ATTRIBUTE", "").strip() or "team",
        budgets=_budgets(env),
        budget_webhook=_webhook(env),
        redact=_redact_sets(env.get("TOKENTRAIL_REDACT", "")),
        redact_patterns=_redact_patterns(env.get("TOKENTRAIL_REDACT_PATTERNS", "")),
        redact_keys=_redact_keys(env.get("TOKENTRAIL_REDACT_KEYS", "")),
    )


def _database_endpoint(env: Mapping[str, str]) -> dict[str, Any]:
    host = env.get("TOKENTRAIL_DATABASE_HOST", "").strip() or "127.0.0.1"
    password = env.get("TOKENTRAIL_DATABASE_PASSWORD", "")
    if not is_loopback(host) and len(password) < 16:
        raise SettingsError(
            f"TOKENTRAIL_DATABASE_HOST={host!r} is reachable from other machines: set "
            "TOKENTRAIL_DATABASE_PASSWORD (16 characters or more) for its clients"
        )
    return {
        "database_host": host,
        "database_port": _int(env, "TOKENTRAIL_DATABASE_PORT", 0, 0, 65535),
        "database_password": password,
    }


def is_loopback(host: str) -> bool:
    """Whether a listen address is reachable from this machine only."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise SettingsError(f"{name}={raw!r}: use 1 or 0")


def _proxies(raw: str) -> tuple[str, ...]:
    found = []
    for item in filter(None, (p.strip() for p in raw.split(","))):
        try:
            found.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise SettingsError(
                f"TOKENTRAIL_TRUSTED_PROXIES: {item!r} is not an IP address or network"
            ) from None
    return tuple(found)


def _ui_hosts(env: Mapping[str, str], ui_host: str) -> tuple[str, ...]:
    raw = env.get("TOKENTRAIL_UI_HOSTS", "").strip()
    if not raw:
        wildcard = ui_host in ("0.0.0.0", "::", "")
        return _LOOPBACK_NAMES + (() if wildcard or ui_host in _LOOPBACK_NAMES else (ui_host.lower(),))
    names = tuple(n.strip().lower().strip("[]") for n in raw.split(",") if n.strip())
    for name in names:
        if not _HOSTNAME.match(name):
            raise SettingsError(f"TOKENTRAIL_UI_HOSTS: {name!r} is not a host name (no scheme or port)")
    return names


def _sign_in(env: Mapping[str, str]) -> dict[str, Any]:
    """The web UI's address, sign-in and session settings."""
    auth = env.get("TOKENTRAIL_AUTH", "").strip().lower() or "none"
    if auth not in AUTH_MODES:
        raise SettingsError(f"TOKENTRAIL_AUTH={auth!r}: use {', '.join(AUTH_MODES)}")
    header = env.get("TOKENTRAIL_AUTH_HEADER", "").strip() or "X-Forwarded-Email"
    if not _HEADER.match(header):
        raise SettingsError(f"TOKENTRAIL_AUTH_HEADER={header!r} is not a header name")
    proxies = _proxies(env.get("TOKENTRAIL_TRUSTED_PROXIES", ""))
    if auth == "header" and not proxies:
        raise SettingsError(
            "TOKENTRAIL_AUTH=header needs TOKENTRAIL_TRUSTED_PROXIES: the addresses of the proxies "
            f"allowed to set {header} (anyone else could claim to be anybody)"
        )
    secret = env.get("TOKENTRAIL_SECRET_KEY", "").strip()
    if secret and len(secret) < 32:
        raise SettingsError(
            "TOKENTRAIL_SECRET_KEY must be at least 32 characters (e.g. `openssl rand -hex 32`)"
        )
    idle = _int(env, "TOKENTRAIL_SESSION_IDLE_SECONDS", 2 * 3600, 60, 90 * 86_400)
    most = _int(env, "TOKENTRAIL_SESSION_MAX_SECONDS", 24 * 3600, 60, 90 * 86_400)
    if idle > most:
        raise SettingsError(
            f"TOKENTRAIL_SESSION_IDLE_SECONDS={idle} is longer than TOKENTRAIL_SESSION_MAX_SECONDS={most}"
        )
    signout = env.get("TOKENTRAIL_AUTH_SIGNOUT_URL", "").strip()
    if signout and (not signout.startswith("/") or signout.startswith("//")):
        # a path of the UI's own site: the pages' Content-Security-Policy lets a form lead nowhere else
        raise SettingsError(
            f"TOKENTRAIL_AUTH_SIGNOUT_URL={signout!r} must be a path, such as /oauth2/sign_out"
        )
    ui_host = env.get("TOKENTRAIL_UI_HOST", "").strip() or "127.0.0.1"
    return {
        "ui_host": ui_host,
        "ui_hosts": _ui_hosts(env, ui_host),
        "ui_allow_anonymous": _flag(env, "TOKENTRAIL_UI_ALLOW_ANONYMOUS"),
        "auth": auth,
        "auth_header": header,
        "auth_signout_url": signout,
        "trusted_proxies": proxies,
        "secret_key": secret,
        "session_idle_seconds": idle,
        "session_max_seconds": most,
    }


def _redact_sets(raw: str) -> tuple[str, ...]:
    """`secrets,cards` (the default when empty), or `none`."""
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    if not names:
        return REDACT_DEFAULT
    if names == ["none"]:
        return ()
    unknown = [n for n in names if n not in REDACT_SETS]
    if unknown:
        raise SettingsError(
            f"TOKENTRAIL_REDACT: unknown rule set {unknown[0]!r}; "
            f"use a comma-separated list of {', '.join(REDACT_SETS)}, or none"
        )
    return tuple(n for n in REDACT_SETS if n in names)


def _redact_patterns(raw: str) -> tuple[tuple[str, str], ...]:
    """A JSON object of name to regular expression (`{"ticket": "TCK-[0-9]{6}"}`), or a JSON list
    of expressions, all named `custom`. Each must compile and must not match the empty string."""
    name = "TOKENTRAIL_REDACT_PATTERNS"
    if not raw.strip():
        return ()
    try:
        decoded = json.loads(raw)
    except ValueError as exc:
        raise SettingsError(
            f"{name} is not JSON ({exc}): write an object of name to regular expression, "
            'e.g. {"ticket": "TCK-[0-9]{6}"} (a backslash is written twice in JSON)'
        ) from None
    if isinstance(decoded, list):
        decoded = [("custom", p) for p in decoded]
    elif isinstance(decoded, dict):
        decoded = list(decoded.items())
    else:
        raise SettingsError(f"{name} must be a JSON object of name to regular expression, or a list")
    patterns = []
    for rule, pattern in decoded:
        if not isinstance(rule, str) or not _RULE_NAME.match(rule):
            raise SettingsError(f"{name}: the name {rule!r} must be lower-case letters, digits or _")
        if not isinstance(pattern, str) or not pattern:
            raise SettingsError(f"{name}: the pattern of {rule!r} must be a non-empty string")
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise SettingsError(
                f"{name}: the pattern of {rule!r}, {pattern!r}, is not a valid regular expression: {exc}"
            ) from None
        if compiled.search("") is not None:
            raise SettingsError(
                f"{name}: the pattern of {rule!r}, {pattern!r}, matches the empty string "
                "(it would match everywhere)"
            )
        patterns.append((rule, pattern))
    return tuple(patterns)


def _redact_keys(raw: str) -> tuple[str, ...]:
    """Comma-separated attribute keys or globs (`*`, `?`, `[...]`), in any case."""
    return tuple(k.strip().lower() for k in raw.split(",") if k.strip())


def _budgets(env: Mapping[str, str]) -> tuple[Budget, ...]:
    try:
        return tuple(parse_budgets(env.get("TOKENTRAIL_BUDGETS", ""), "default"))
    except ValueError as exc:
        raise SettingsError(f"TOKENTRAIL_BUDGETS: {exc}") from None


def _webhook(env: Mapping[str, str]) -> str:
    url = env.get("TOKENTRAIL_BUDGET_WEBHOOK", "").strip()
    if url and not url.startswith(("http://", "https://")):
        raise SettingsError(f"TOKENTRAIL_BUDGET_WEBHOOK={url!r} must be an http(s) URL")
    return url


def _thresholds(env: Mapping[str, str]) -> Thresholds:
    d = Thresholds()
    return Thresholds(
        loop_min_repeats=_int(env, "TOKENTRAIL_WASTE_LOOP_MIN_REPEATS", d.loop_min_repeats, 2, 100),
        bloat_min_tokens=_int(env, "TOKENTRAIL_WASTE_BLOAT_MIN_TOKENS", d.bloat_min_tokens, 0),
        bloat_carry_tokens=_int(env, "TOKENTRAIL_WASTE_BLOAT_CARRY_TOKENS", d.bloat_carry_tokens, 1),
        bloat_window_share=_float(env, "TOKENTRAIL_WASTE_BLOAT_WINDOW_SHARE", d.bloat_window_share),
        cache_min_tokens=_int(env, "TOKENTRAIL_WASTE_CACHE_MIN_TOKENS", d.cache_min_tokens, 1),
        cache_ttl_seconds=_float(env, "TOKENTRAIL_WASTE_CACHE_TTL_SECONDS", d.cache_ttl_seconds),
        oversized_max_output_tokens=_int(
            env, "TOKENTRAIL_WASTE_OVERSIZED_MAX_OUTPUT_TOKENS", d.oversized_max_output_tokens, 0
        ),
        oversized_min_saving=_float(env, "TOKENTRAIL_WASTE_OVERSIZED_MIN_SAVING", d.oversized_min_saving),
    )
