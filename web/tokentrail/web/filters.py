"""Query-string parameters → validated filters (`tokentrail.store.filters.TraceFilter`, which the
storage layer turns into SQL), and a filter back into the query string of a link. Bad input is a
`BadRequest` with a message that says which parameter is wrong and what it accepts; nothing here
touches the database.

Each route takes a fixed set of parameters (`parse_query`): one it does not read is refused
rather than ignored, so a filter that a page cannot apply never looks applied. A parameter given
twice, a value that is not UTF-8 or holds a NUL, and a value longer than its limit are refused too.

Times are clamped to what a ClickHouse `DateTime64(9)` holds, 1900-01-01 to 2262-04-11
(`MIN_NS`, `MAX_NS`): no span is stored outside it, so a wider range selects the same rows, and a
clamped bound never overflows the Int64 nanoseconds the queries bind.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote_to_bytes

from tokentrail.store.filters import (
    ANY_CODING_AGENT,
    DEFAULT_RANGE,
    INTEGER_SORTS,
    MAX_NS,
    MIN_NS,
    SORTS,
    TraceFilter,
)

__all__ = [
    "CODING_AGENTS",
    "CONVERSATION_PARAMS",
    "FILTER_PARAMS",
    "INTEGER_SORTS",
    "MAX_NS",
    "MIN_NS",
    "RANGES",
    "RANGE_PARAMS",
    "SORTS",
    "TRACE_PARAMS",
    "BadRequest",
    "NotFound",
    "TraceFilter",
    "check_id",
    "parse_query",
    "parse_trace_filter",
    "query_args",
    "whole_number",
]


class BadRequest(ValueError):
    """The request's parameters are invalid; the message is shown to the user (a 400)."""


class NotFound(LookupError):
    """What the request names does not exist; the message is shown to the user (a 404)."""


#: time-range choices in the UI, in seconds; "all" has no lower bound
RANGES: dict[str, int] = {
    "1h": 3600,
    "6h": 6 * 3600,
    "24h": 86_400,
    "7d": 7 * 86_400,
    "30d": 30 * 86_400,
    "90d": 90 * 86_400,
    "all": 0,
}
MAX_LIMIT = 500
#: the coding agents a trace can come from (`traces.coding_agent`), and their names as shown
CODING_AGENTS = {"claude_code": "Claude Code", "codex": "Codex CLI", "gemini_cli": "Gemini CLI"}

#: the filters that keep the traces with one value of a column (as text in a query string)
_EQUALS = (
    "service",
    "agent",
    "model",
    "status",
    "conversation",
    "user",
    "team",
    "repository",
    "coding_agent",
)
#: the parameters of each kind of page
RANGE_PARAMS = ("project", "range", "from", "to", "since")
#: a time range and what narrows its traces: every report takes these (tokentrail.store.filters applies them)
FILTER_PARAMS = (*RANGE_PARAMS, *_EQUALS, "min_cost", "q", "has_waste")
#: the trace list also pages and sorts
TRACE_PARAMS = (*FILTER_PARAMS, "sort", "dir", "limit", "cursor")
# conversations are always listed by their latest activity
CONVERSATION_PARAMS = tuple(p for p in TRACE_PARAMS if p not in ("sort", "dir"))

_HEX = re.compile(r"^[0-9a-f]+$")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DURATION = re.compile(r"([0-9]+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: longest value of a parameter, in characters (a cursor carries a conversation id of up to 500)
_LONGEST = {"cursor": 8192, "conversation": 500, "user": 500, "repository": 500}
_DEFAULT_LONGEST = 200


def _shown(name: str) -> str:
    return name if _NAME.fullmatch(name) else repr(name[:40])


def parse_query(raw: bytes, accepted: Collection[str], page: str) -> dict[str, str]:
    """The raw query string → {name: value}, strictly: each name at most once, one of `accepted`,
    its value UTF-8 without NUL and within its length limit."""
    params: dict[str, str] = {}
    for pair in raw.split(b"&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition(b"=")
        name_bytes = unquote_to_bytes(raw_name.replace(b"+", b" "))
        try:
            name = name_bytes.decode()
        except UnicodeDecodeError:
            shown = repr(name_bytes.decode(errors="replace")[:40])
            raise BadRequest(f"parameter name {shown} is not valid UTF-8") from None
        if name not in accepted:
            raise BadRequest(f"{_shown(name)} is not a parameter of {page}; it takes {', '.join(accepted)}")
        if name in params:
            raise BadRequest(f"{name} is given more than once; give it once")
        try:
            value = unquote_to_bytes(raw_value.replace(b"+", b" ")).decode()
        except UnicodeDecodeError:
            raise BadRequest(f"{name} is not valid UTF-8") from None
        if "\x00" in value:
            raise BadRequest(f"{name} must not contain NUL characters")
        longest = _LONGEST.get(name, _DEFAULT_LONGEST)
        if len(value) > longest:
            raise BadRequest(f"{name} is longer than {longest} characters")
        params[name] = value
    return params


def check_id(value: str, length: int, what: str) -> str:
    value = value.strip().lower()
    if len(value) != length or not _HEX.match(value):
        raise BadRequest(f"{what} must be {length} hexadecimal characters, got {value[:80]!r}")
    return value


def whole_number(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name, "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()):
        raise BadRequest(f"{name} must be a whole number between {low} and {high}, got {raw[:40]!r}")
    value = int(raw)  # at most _DEFAULT_LONGEST digits: well within int()'s limit
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {raw[:40]}")
    return value


def query_args(f: TraceFilter, **changes: Any) -> dict[str, str]:
    """The query string that reproduces `f` (for links, the forms and the next page)."""
    f = replace(f, **changes) if changes else f
    args: dict[str, str] = {}
    if f.range != DEFAULT_RANGE:
        args["range"] = f.range
    if f.range == "custom":
        args["from"] = _iso(f.start_ns)
        if f.end_ns:
            args["to"] = _iso(f.end_ns)
    for name in (*_EQUALS, "q"):
        if getattr(f, name):
            args[name] = getattr(f, name)
    if f.min_cost is not None:
        args["min_cost"] = repr(f.min_cost)
    if f.has_waste:
        args["has_waste"] = "1"
    if f.sort != "start":
        args["sort"] = f.sort
    if f.dir != "desc":
        args["dir"] = f.dir
    if f.limit != 50:
        args["limit"] = str(f.limit)
    if f.cursor is not None:
        args["cursor"] = encode_cursor(f.sort, f.dir, f.cursor)
    return args


def _iso(ns: int) -> str:
    # integer arithmetic: a float of nanoseconds since 1970 is off by up to a microsecond
    moment = _EPOCH + timedelta(microseconds=ns // 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S" + (".%f" if moment.microsecond else ""))


def _clamp(ns: int) -> int:
    return min(max(ns, MIN_NS), MAX_NS)


def _time(value: str, name: str) -> int:
    """An ISO date or time (UTC unless it says otherwise) → Unix nanoseconds, unclamped."""
    text = value.strip()
    try:
        if len(text) > 64:
            raise ValueError
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(
            f"{name} must be an ISO date or time such as 2026-11-25T08:00:00, got {text[:80]!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def encode_cursor(sort: str, direction: str, position: tuple[Any, str]) -> str:
    raw = json.dumps([sort, direction, position[0], position[1]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(text: str, sort: str, direction: str) -> tuple[Any, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        c_sort, c_dir, value, key = json.loads(raw)
    except (ValueError, TypeError, RecursionError):
        raise BadRequest(
            "cursor is not one this server handed out; start again from the first page"
        ) from None
    if (c_sort, c_dir) != (sort, direction):
        raise BadRequest("cursor belongs to another sort order; start again from the first page")
    # the value is bound as the sort key's type: a float on an integer key, or a number out of the
    # type's range, would fail in the database (or wrap around) instead of selecting a page
    if isinstance(value, bool) or not isinstance(key, str):
        value = None
    elif sort in INTEGER_SORTS:
        value = value if isinstance(value, int) and -(2**63) <= value < 2**63 else None
    elif isinstance(value, int | float):
        value = float(value) if abs(value) < 1e308 and math.isfinite(value) else None
    else:
        value = None
    if value is None:
        raise BadRequest("cursor is not one this server handed out; start again from the first page")
    return value, key


def _text(params: Mapping[str, str], name: str, limit: int = 200) -> str:
    value = params.get(name, "").strip()
    if len(value) > limit:
        raise BadRequest(f"{name} is longer than {limit} characters")
    return value


def _choice(
    params: Mapping[str, str], name: str, choices: tuple[str, ...] | list[str], default: str, also: str = ""
) -> str:
    value = params.get(name, "").strip() or default
    if value not in choices:
        shown = ", ".join(c for c in choices if c)
        raise BadRequest(f"{name} must be one of {shown}{also}; got {value[:40]!r}")
    return value


def _window(params: Mapping[str, str], now_ns: int) -> tuple[str, int, int]:
    """(range, start_ns, end_ns) from `range`, `since` or `from`/`to`.

    A preset `range` wins over `from`/`to`: the traces form sends both when a preset is picked
    while a custom range is shown. `range=custom` goes with `from`/`to` (links carry it)."""
    preset = params.get("range", "").strip()
    since = params.get("since", "").strip()
    has_bounds = bool(params.get("from", "").strip() or params.get("to", "").strip())
    if since:  # `since=24h`, `since=90m`, `since=3600s`: a window ending now
        if has_bounds:
            raise BadRequest("since cannot be combined with from or to; give one of them")
        if preset not in ("", "custom"):
            raise BadRequest("since cannot be combined with range; give one of them")
        match = _DURATION.fullmatch(since)
        if match is None or int(match[1]) == 0:
            raise BadRequest(f"since must be a duration such as 90m, 24h or 7d, got {since[:40]!r}")
        # a window reaching back before 1900 starts at 1900: nothing older can be stored
        return "custom", _clamp(now_ns - int(match[1]) * _UNITS[match[2]] * 1_000_000_000), 0
    if has_bounds and preset in ("", "custom"):
        start = _time(params["from"], "from") if params.get("from", "").strip() else None
        end = _time(params["to"], "to") if params.get("to", "").strip() else None
        if start is not None and end is not None and end <= start:
            raise BadRequest("to must be later than from")
        # 0 means "no bound": an end at the epoch itself moves 1 ns earlier (the end is exclusive)
        start_ns = _clamp(start) if start is not None else 0
        end_ns = (_clamp(end) or -1) if end is not None else 0
        return "custom", start_ns, end_ns
    range_ = _choice(params, "range", list(RANGES), DEFAULT_RANGE, also=" (or custom, with from and to)")
    return range_, _clamp(now_ns - RANGES[range_] * 1_000_000_000) if RANGES[range_] else 0, 0


def parse_trace_filter(params: Mapping[str, str], project: str, now_ns: int | None = None) -> TraceFilter:
    range_, start_ns, end_ns = _window(params, now_ns if now_ns is not None else time.time_ns())
    min_cost: float | None = None
    raw_cost = params.get("min_cost", "").strip()
    if raw_cost:
        if not _NUMBER.fullmatch(raw_cost):
            raise BadRequest(f"min_cost must be a number of dollars, got {raw_cost[:40]!r}")
        min_cost = float(raw_cost)
        if min_cost < 0:
            raise BadRequest("min_cost must be zero or more")
        if math.isinf(min_cost):
            raise BadRequest(f"min_cost must be a number of dollars below 1e308, got {raw_cost[:40]!r}")
    limit = whole_number(params, "limit", 50, 1, MAX_LIMIT)
    sort = _choice(params, "sort", SORTS, "start")
    direction = _choice(params, "dir", ("desc", "asc"), "desc")
    raw_cursor = params.get("cursor", "").strip()
    cursor = _decode_cursor(raw_cursor, sort, direction) if raw_cursor else None
    return TraceFilter(
        project=project,
        range=range_,
        start_ns=start_ns,
        end_ns=end_ns,
        service=_text(params, "service"),
        agent=_text(params, "agent"),
        model=_text(params, "model"),
        status=_choice(params, "status", ("", "ok", "error"), ""),
        conversation=_text(params, "conversation", 500),
        user=_text(params, "user", 500),
        team=_text(params, "team"),
        repository=_text(params, "repository", 500),
        coding_agent=_choice(params, "coding_agent", ("", ANY_CODING_AGENT, *CODING_AGENTS), ""),
        min_cost=min_cost,
        q=_text(params, "q"),
        has_waste=_choice(params, "has_waste", ("", "0", "1"), "") == "1",
        sort=sort,
        dir=direction,
        limit=limit,
        cursor=cursor,
    )
