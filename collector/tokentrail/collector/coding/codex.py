"""Codex CLI's log events as tasks: one per turn, a turn running from one `codex.user_prompt` of a
conversation to the next (Codex names no prompt id).

- `user_prompt` → the root (an agent run of `codex`), with the prompt's length and, when
  `log_user_prompt` is on, its text.
- `api_request` → an attempt at the model: a failed one (an HTTP status ≥ 400 or an error) is a
  failed model call, so a chain of them followed by an answer is a retry chain; a successful one
  starts the model call its response completes.
- `sse_event` with `event.kind` = `response.completed` → the model call: tokens in OpenAI's
  semantics (`input_token_count` includes `cached_token_count`), reasoning tokens apart. Codex
  logs a completion twice, with and without its usage: the one with it is the call (the other
  only when no such one follows). The same for `websocket_event`.
- `tool_decision` + `tool_result`, joined by `call_id` → a tool step (decision, success, duration,
  arguments and output when sent).
- `conversation_starts` names the provider (and the model) of the turns after it.
"""

from __future__ import annotations

from typing import Any

from tokentrail import semconv as sc
from tokentrail.collector.coding.model import (
    Draft,
    Event,
    Task,
    http_error,
    number,
    standard_attributes,
    task_of,
    tool_use,
    turn_key,
    turns,
    user_prompt,
)

__all__ = ["tasks"]

_COMPLETED = ("response.completed",)


def tasks(events: list[Event], start: Event | None = None) -> list[Task]:
    """`start`: the conversation's `conversation_starts` event, when it is not among `events`."""
    starts = [e for e in events if e.name == "conversation_starts"]
    start = max(starts, key=lambda e: e.time_ns) if starts else start
    provider = (start.get("provider_name") if start is not None else "") or "openai"
    return [_turn(turn, provider) for turn in turns([e for e in events if e.name != "conversation_starts"])]


def _turn(events: list[Event], provider: str) -> Task:
    first = events[0]
    root = standard_attributes(first, "codex")
    steps: list[Draft] = []
    tools: dict[str, Draft] = {}
    attempt_start: int | None = None
    answered: Event | None = None  # a response.completed without usage, not yet drafted
    drafted = False  # the request's response has been drafted
    for event in events:
        name = event.name
        if name in ("api_request", "websocket_request", "user_prompt"):
            if answered is not None:
                steps.append(_response(answered, provider, attempt_start))
            answered, drafted = None, False
        if name == "user_prompt":
            user_prompt(root, event)
        elif name in ("api_request", "websocket_request"):
            failed = _failure(event)
            if failed is None:
                attempt_start = event.time_ns - event.duration_ns()
            else:
                steps.append(_failed_attempt(event, provider, failed))
        elif name in ("sse_event", "websocket_event") and event.get("event.kind") in _COMPLETED:
            # Codex logs a response's completion twice, once with its usage: one model call
            if not event.get("input_token_count"):
                # its twin with the usage may be logged before or after it, as soon as the stream ends
                if not drafted:
                    answered = event
                continue
            if not drafted:
                steps.append(_response(event, provider, attempt_start))
            answered = attempt_start = None
            drafted = True
        elif name in ("tool_decision", "tool_result"):
            tool_use(event, tools, steps, f"execute_tool {event.get('tool_name')}", event.get("call_id"))
    if answered is not None:
        steps.append(_response(answered, provider, attempt_start))
    return task_of(turn_key(events), "codex.turn", events, root, steps)


def _status(event: Event) -> str:
    return event.get("http.response.status_code") or event.get("status")


def _failure(event: Event) -> str | None:
    status = _status(event)
    error = event.get("error.message") or event.get("error")
    if number(status) >= 400 or error:
        return error or f"HTTP {status}"
    return None


def _model(event: Event, provider: str, extra: dict[str, Any]) -> dict[str, Any]:
    return event.own({sc.GEN_AI_PROVIDER_NAME: provider, sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT, **extra})


def _failed_attempt(event: Event, provider: str, error: str) -> Draft:
    extra = http_error(_status(event))
    draft = Draft(
        f"attempt:{event.time_ns}:{event.record_hash}",
        "codex.api_request",
        event.time_ns - event.duration_ns(),
        event.time_ns,
        _model(event, provider, extra),
        model_call=True,
        context=event.span_id,
    )
    draft.error = error
    return draft


def _response(event: Event, provider: str, attempt_start: int | None) -> Draft:
    start = attempt_start if attempt_start is not None else event.time_ns - event.duration_ns()
    response_id = event.get("response_id") or event.get("response.id")
    draft = Draft(
        f"response:{response_id or event.record_hash}",
        "stream_request",
        min(start, event.time_ns),
        event.time_ns,
        _model(event, provider, {}),
        model_call=True,
        context=event.span_id,
    )
    draft.ids = (response_id,) if response_id else ()
    return draft
