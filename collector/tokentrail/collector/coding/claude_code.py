"""Claude Code's log events as tasks: one per `prompt.id`, shaped like its own (beta) traces.

- `user_prompt` → the root `claude_code.interaction` (prompt length, and the text when the user
  lets it be logged).
- `api_request` → a `claude_code.llm_request` model call: the raw Anthropic usage (input tokens
  exclusive of cache reads and writes; the normalizer makes them inclusive), and `cost_usd` kept
  as the reported cost beside the catalog's.
- `api_error` → a failed `claude_code.llm_request` attempt (its status code as the error), so a
  chain of them followed by a request is a retry chain; `api_retries_exhausted` fails the task.
- `tool_decision` + `tool_result`, joined by `tool_use_id` → a `claude_code.tool` span (decision,
  success, duration, sizes, and the parameters when sent); a rejected tool that never ran is a
  step of no duration.
- `compaction` → a `claude_code.compaction` step; `assistant_response` → the answer of the request
  it names; `api_refusal` and other events → events on the root.
- Subagents (`query_source` = subagent) run inside the main agent's Task/Agent tool: what happens
  while that tool runs nests under it.
"""

from __future__ import annotations

from typing import Any

from tokentrail.collector.coding.model import (
    Draft,
    Event,
    Task,
    by_prompt,
    http_error,
    nest_in_subagents,
    standard_attributes,
    task_of,
    tool_use,
    user_prompt,
)

__all__ = ["SUBAGENT_TOOLS", "tasks"]

#: the tools that start a subagent
SUBAGENT_TOOLS = frozenset({"Task", "Agent"})


def tasks(events: list[Event]) -> list[Task]:
    return [_task(prompt, evs) for prompt, evs in by_prompt(events)]


def _task(prompt: str, events: list[Event]) -> Task:
    root = standard_attributes(events[0], "claude-code")
    steps: list[Draft] = []
    tools: dict[str, Draft] = {}
    requests: dict[str, Draft] = {}
    root_events: list[tuple[str, int, dict[str, Any]]] = []
    error: str | None = None
    for event in events:
        name = event.name
        if name == "user_prompt":
            user_prompt(root, event)
        elif name in ("api_request", "api_error"):
            steps.append(_request(event, requests))
        elif name in ("tool_decision", "tool_result"):
            tool_use(event, tools, steps, "claude_code.tool", event.get("tool_use_id"))
        elif name == "compaction":
            steps.append(_step(event, "claude_code.compaction", f"compaction:{event.record_hash}"))
        elif name == "assistant_response":
            answered = requests.get(event.get("request_id"))
            if answered is not None and event.get("response"):
                answered.attrs["gen_ai.completion"] = event.get("response")
        else:
            if name == "api_retries_exhausted":
                error = f"gave up after {event.get('total_attempts') or '?'} attempts"
            root_events.append((f"claude_code.{name}", event.time_ns, event.own()))
    nest_in_subagents(steps, lambda d: d.attrs.get("tool_name") in SUBAGENT_TOOLS)
    task = task_of(prompt, "claude_code.interaction", events, root, steps)
    task.root.error, task.root.events = error or task.root.error, root_events
    return task


def _step(event: Event, name: str, key: str, extra: dict[str, Any] | None = None) -> Draft:
    start = event.time_ns - event.duration_ns()
    return Draft(key, name, start, event.time_ns, event.own(extra), context=event.span_id)


def _request(event: Event, requests: dict[str, Draft]) -> Draft:
    """A model call, or a failed attempt at one (`api_error`: its `attempt` is the attempt's number)."""
    request_id, client_id = event.get("request_id"), event.get("client_request_id")
    ids = tuple(i for i in (request_id, client_id) if i)
    if event.name == "api_request":
        draft = _step(
            event, "claude_code.llm_request", f"request:{request_id or client_id or event.record_hash}"
        )
        draft.ids = ids
        if request_id:
            requests[request_id] = draft
        return draft
    status = event.get("status_code")
    extra = {"success": "false", **http_error(status)}
    draft = _step(
        event,
        "claude_code.llm_request",
        f"error:{client_id or request_id}:{event.get('attempt')}:{event.record_hash}",
        extra,
    )
    draft.error = event.get("error") or (f"HTTP {status}" if status else "request failed")
    # logged once, when the client gave up: the tool's own span of the request says the same
    draft.ids, draft.model_call = ids, True
    return draft
