"""Query-string parameters → validated filters. Bad input is a `BadRequest` with a message that
says which parameter is wrong and what it accepts; nothing here touches the database."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

__all__ = ["RANGES", "SORTS", "BadRequest", "TraceFilter", "check_id", "parse_trace_filter"]


class BadRequest(ValueError):
    """The request's parameters are invalid; the message is shown to the user."""


#: time-range choices in the UI, in seconds; "all" has no lower bound
RANGES: dict[str, int] = {"1h": 3600, "6h": 6 * 3600, "24h": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400,
                          "90d": 90 * 86_400, "all": 0}  # fmt: skip
SORTS = ("start", "cost", "waste", "tokens", "duration", "spans")
DEFAULT_RANGE = "7d"
MAX_LIMIT = 500
_HEX = re.compile(r"^[0-9a-f]+$")


def check_id(value: str, length: int, what: str) -> str:
    value = value.strip().lower()
    if len(value) != length or not _HEX.match(value):
        raise BadRequest(f"{what} must be {length} hexadecimal characters, got {value[:80]!r}")
    return value


@dataclass(frozen=True)
class TraceFilter:
    project: str
    range: str = DEFAULT_RANGE
    start_ns: int = 0
    end_ns: int = 0  # 0: open-ended
    service: str = ""
    agent: str = ""
    model: str = ""
    status: str = ""
    conversation: str = ""
    user: str = ""
    min_cost: float | None = None
    q: str = ""
    has_waste: bool = False
    sort: str = "start"
    dir: str = "desc"
    limit: int = 50
    cursor: tuple[Any, str] | None = field(default=None, compare=False)

    def query_args(self, **changes: Any) -> dict[str, str]:
        """The query string that reproduces this filter (for links, the form and the next page)."""
        f = replace(self, **changes) if changes else self
        args: dict[str, str] = {}
        if f.range != DEFAULT_RANGE:
            args["range"] = f.range
        if f.range == "custom":
            args["from"] = _iso(f.start_ns)
            if f.end_ns:
                args["to"] = _iso(f.end_ns)
        for name in ("service", "agent", "model", "status", "conversation", "user", "q"):
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

    @property
    def is_default(self) -> bool:
        return not any((self.service, self.agent, self.model, self.status, self.conversation, self.user, self.q,
                        self.min_cost is not None, self.has_waste))  # fmt: skip


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _time(value: str, name: str) -> int:
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} must be an ISO date or time such as 2026-11-25T08:00:00, got {value[:80]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1e9)


def encode_cursor(sort: str, direction: str, position: tuple[Any, str]) -> str:
    raw = json.dumps([sort, direction, position[0], position[1]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(text: str, sort: str, direction: str) -> tuple[Any, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        c_sort, c_dir, value, trace_id = json.loads(raw)
    except (ValueError, TypeError):
        raise BadRequest("cursor is not one this server handed out; start again from the first page") from None
    if (c_sort, c_dir) != (sort, direction) or not isinstance(value, int | float) or not isinstance(trace_id, str):
        raise BadRequest("cursor belongs to another sort order; start again from the first page")
    return value, trace_id


def _text(params: Mapping[str, str], name: str, limit: int = 200) -> str:
    value = params.get(name, "").strip()
    if len(value) > limit:
        raise BadRequest(f"{name} is longer than {limit} characters")
    return value


def _choice(params: Mapping[str, str], name: str, choices: tuple[str, ...] | list[str], default: str) -> str:
    value = params.get(name, "").strip() or default
    if value not in choices:
        raise BadRequest(f"{name} must be one of {', '.join(choices)}; got {value[:40]!r}")
    return value


def parse_trace_filter(params: Mapping[str, str], project: str, now_ns: int | None = None) -> TraceFilter:
    now_ns = now_ns if now_ns is not None else time.time_ns()
    start_ns = end_ns = 0
    if params.get("since"):  # `since=24h`, `since=90m`, `since=3600s`: a window ending now
        raw = params["since"].strip()
        units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
        if raw[-1:] not in units or not raw[:-1].isdigit() or int(raw[:-1]) <= 0:
            raise BadRequest(f"since must be a duration such as 90m, 24h or 7d, got {raw[:40]!r}")
        range_ = "custom"
        start_ns = now_ns - int(raw[:-1]) * units[raw[-1]] * 1_000_000_000
    elif params.get("from") or params.get("to"):
        range_ = "custom"
        start_ns = _time(params["from"], "from") if params.get("from") else 0
        end_ns = _time(params["to"], "to") if params.get("to") else 0
        if end_ns and end_ns <= start_ns:
            raise BadRequest("to must be later than from")
    else:
        range_ = _choice(params, "range", list(RANGES), DEFAULT_RANGE)
        start_ns = now_ns - RANGES[range_] * 1_000_000_000 if RANGES[range_] else 0
    min_cost: float | None = None
    if params.get("min_cost", "").strip():
        try:
            min_cost = float(params["min_cost"])
        except ValueError:
            raise BadRequest(f"min_cost must be a number of dollars, got {params['min_cost'][:40]!r}") from None
        if not min_cost >= 0 or min_cost == float("inf"):
            raise BadRequest("min_cost must be zero or more")
    try:
        limit = int(params.get("limit") or 50)
    except ValueError:
        raise BadRequest("limit must be a whole number") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
    sort = _choice(params, "sort", SORTS, "start")
    direction = _choice(params, "dir", ("desc", "asc"), "desc")
    cursor = _decode_cursor(params["cursor"], sort, direction) if params.get("cursor") else None
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
        min_cost=min_cost,
        q=_text(params, "q"),
        has_waste=_choice(params, "has_waste", ("", "0", "1"), "") == "1",
        sort=sort,
        dir=direction,
        limit=limit,
        cursor=cursor,
    )
