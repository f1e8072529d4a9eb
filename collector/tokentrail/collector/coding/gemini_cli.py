"""Gemini CLI's log events as tasks: one per user prompt, named by its `prompt_id`. A turn runs
until the next user prompt: its subagents' events carry prompt ids of their own
(`<agent_id>#<turn>`), and its `agent.start`/`agent.finish` events none.

- `user_prompt` → the root (an agent run of `gemini-cli`), with the prompt's length and text.
- `api_request` starts a model call that `api_response` completes: tokens in Gemini's semantics
  (`input_token_count` includes `cached_content_token_count`), thoughts as reasoning tokens.
- `api_error` → a failed model call; `chat.content_retry` → a failed attempt (the stream's content
  was invalid and the request was sent again), its wait as the time it lost;
  `chat.content_retry_failure` fails the task.
- `tool_call` → a tool step (function name and arguments, decision, success, duration).
- `chat_compression` → a compaction step (tokens before and after).
- `agent.start` … `agent.finish` → a subagent run, under which what happens meanwhile nests.
"""

from __future__ import annotations

from typing import Any

from tokentrail import semconv as sc
from tokentrail.collector.coding.model import (
    Draft,
    Event,
    Task,
    http_error,
    nest_in_subagents,
    number,
    standard_attributes,
    task_of,
    turn_key,
    turns,
    user_prompt,
)

__all__ = ["tasks"]

_PROVIDER = "gcp.gemini"


def tasks(events: list[Event]) -> list[Task]:
    return [_task(turn_key(turn), turn) for turn in turns(events)]


def _task(prompt: str, events: list[Event]) -> Task:
    root = standard_attributes(events[0], "gemini-cli")
    steps: list[Draft] = []
    agents: dict[str, Draft] = {}
    requested: dict[str, int] = {}  # model → when its request went out
    retries: list[Event] = []
    error: str | None = None
    for event in events:
        name = event.name
        if name == "user_prompt":
            user_prompt(root, event)
        elif name == "api_request":
            requested[event.get("model")] = event.time_ns
        elif name in ("api_response", "api_error"):
            steps.append(_model_call(event, requested.pop(event.get("model"), None)))
        elif name == "chat.content_retry":
            retries.append(event)  # judged once every answer is drafted (they may share a time)
        elif name == "chat.content_retry_failure":
            error = "the model's answer stayed invalid after every retry"
        elif name == "tool_call":
            steps.append(_tool_call(event))
        elif name == "chat_compression":
            steps.append(
                Draft(
                    f"compaction:{event.record_hash}",
                    "gemini_cli.chat_compression",
                    event.time_ns,
                    event.time_ns,
                    event.own(),
                )
            )
        elif name in ("agent.start", "agent.finish"):
            _agent(event, agents, steps)
    for event in retries:
        _content_retry(event, steps)
    nest_in_subagents(steps, lambda d: d.name == "gemini_cli.agent")
    task = task_of(prompt, "gemini_cli.prompt", events, root, steps)
    task.root.error = error or task.root.error
    return task


def _model_call(event: Event, requested_at: int | None) -> Draft:
    status = event.get("status_code")
    error_type = http_error(status)
    extra: dict[str, Any] = {
        sc.GEN_AI_PROVIDER_NAME: _PROVIDER,
        sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT,
        **error_type,
    }
    failed = event.name == "api_error" or bool(error_type)
    end = event.time_ns
    start = requested_at if requested_at is not None and requested_at <= end else end - event.duration_ns()
    response_id = event.get("response_id")
    draft = Draft(
        f"{event.name}:{response_id or event.record_hash}",
        f"chat {event.get('model')}",
        start,
        end,
        event.own(extra),
        model_call=True,
        context=event.span_id,
    )
    draft.ids = (response_id,) if response_id else ()
    if failed:
        draft.error = event.get("error") or f"HTTP {status}"
    return draft


_USAGE = (
    "input_token_count",
    "output_token_count",
    "cached_content_token_count",
    "thoughts_token_count",
    "tool_token_count",
    "total_token_count",
)


def _content_retry(event: Event, steps: list[Draft]) -> None:
    """The answer just before was invalid (an empty stream, say) and the request is sent again:
    that answer is a failed attempt. Without one (its response not logged), the wait is."""
    answered = [
        d
        for d in steps
        if d.model_call
        and d.error is None
        and d.attrs.get("model") == event.get("model")
        and d.end_ns <= event.time_ns
    ]
    draft = max(answered, key=lambda d: d.end_ns) if answered else None
    if draft is None:
        wait = int(number(event.get("retry_delay_ms")) * 1_000_000)
        extra = {sc.GEN_AI_PROVIDER_NAME: _PROVIDER, sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT}
        draft = Draft(
            f"content_retry:{event.record_hash}",
            f"chat {event.get('model')}",
            event.time_ns - wait,
            event.time_ns,
            event.own(extra),
            model_call=True,
        )
        steps.append(draft)
    elif not any(number(draft.attrs.get(k)) for k in _USAGE):
        for key in _USAGE:  # an answer of nothing billed nothing
            draft.attrs.pop(key, None)
    draft.attrs[sc.ERROR_TYPE] = "invalid_content"
    draft.error = f"invalid content ({event.get('error_type') or 'retried'})"


def _tool_call(event: Event) -> Draft:
    call_id = event.get("call_id") or event.get("tool_call_id")
    draft = Draft(
        f"tool:{call_id or event.record_hash}",
        f"execute_tool {event.get('function_name')}",
        event.time_ns - event.duration_ns(),
        event.time_ns,
        event.own({sc.GEN_AI_OPERATION_NAME: sc.OP_EXECUTE_TOOL}),
        context=event.span_id,
    )
    draft.ids = (call_id,) if call_id else ()
    if event.get("success").lower() == "false":
        draft.error = event.get("error") or "tool failed"
    return draft


def _agent(event: Event, agents: dict[str, Draft], steps: list[Draft]) -> None:
    agent_id = event.get("agent_id") or event.get("agent_name")
    draft = agents.get(agent_id)
    if draft is None:
        attrs = event.own(
            {sc.GEN_AI_OPERATION_NAME: sc.OP_INVOKE_AGENT, sc.GEN_AI_AGENT_NAME: event.get("agent_name")}
        )
        draft = agents[agent_id] = Draft(
            f"agent:{agent_id}", "gemini_cli.agent", event.time_ns, event.time_ns, attrs
        )
        steps.append(draft)
    if event.name == "agent.finish":
        draft.end_ns = max(draft.end_ns, event.time_ns)
        draft.attrs.update(event.own({"terminate_reason": event.get("terminate_reason")}))
        if event.get("terminate_reason") not in ("", "GOAL", "goal"):
            draft.error = f"subagent ended: {event.get('terminate_reason')}"
    else:
        draft.start_ns = min(draft.start_ns, event.time_ns)
