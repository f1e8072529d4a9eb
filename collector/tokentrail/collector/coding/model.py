"""What the session builder works with: a coding agent's stored events, and the spans it drafts.

A translator (`claude_code`, `codex`, `gemini_cli`) reads one session's events and drafts its
tasks: one per prompt or turn, a root and its steps. Each draft carries the event's own
attributes under the tool's own names, so the spans it becomes are normalized by the same rules
as the tool's own spans (`tokentrail.collector.normalize`): Claude Code's token counts are made
inclusive of cache there, Codex's and Gemini CLI's are already.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tokentrail import semconv as sc
from tokentrail.collector.coding.events import SOURCE_ATTRIBUTE

__all__ = ["STANDARD", "Draft", "Event", "Task", "http_error", "number", "standard_attributes"]

#: the attributes every event of a session repeats (who, which install, which session and
#: prompt): the root of each task carries them, the steps do not repeat them
STANDARD = (
    "session.id",
    "conversation.id",
    "prompt.id",
    "prompt_id",
    "user.email",
    "user.account_uuid",
    "user.account_id",
    "user.id",
    "installation.id",
    "organization.id",
    "app.version",
    "app.entrypoint",
    "terminal.type",
    "auth_mode",
    "workspace.host_paths",
    "team",
    "repository",
)
_PER_EVENT = frozenset(
    (*STANDARD[2:], "event.name", "event.sequence", "event.timestamp", "session.id", "conversation.id")
)


def number(value: str | None) -> float:
    """An attribute's number (sent as text or not at all): 0 when absent or not a number."""
    if not value:
        return 0.0
    try:
        result = float(value)
    except ValueError:
        return 0.0
    return result if result == result else 0.0  # NaN


def http_error(status: str) -> dict[str, str]:
    """The error type of a failed request whose HTTP status is `status` (as sent, text), when it
    is one ({} when none was sent or it is no error)."""
    code = number(status)
    return {sc.ERROR_TYPE: str(int(code))} if code >= 400 else {}


@dataclass(slots=True)
class Event:
    """One stored event (`agent_events`), attributes as text."""

    name: str
    time_ns: int
    sequence: int
    prompt: str
    attrs: dict[str, str]
    resource: dict[str, str]
    trace_id: str
    span_id: str
    record_hash: int

    def get(self, key: str) -> str:
        return self.attrs.get(key, "")

    def duration_ns(self) -> int:
        return int(number(self.attrs.get("duration_ms")) * 1_000_000)

    def own(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The event's attributes without the session's standard ones, plus `extra`."""
        attrs: dict[str, Any] = {k: v for k, v in self.attrs.items() if k not in _PER_EVENT}
        attrs[SOURCE_ATTRIBUTE] = "events"
        attrs["tokentrail.event"] = self.name
        if extra:
            attrs.update(extra)
        return attrs


@dataclass(slots=True)
class Draft:
    """A span to write. `key` names it within its task (it becomes the span id, so writing the
    task again replaces it); `parent` is the key of its parent, "" for the task's root."""

    key: str
    name: str
    start_ns: int
    end_ns: int
    attrs: dict[str, Any]
    parent: str = ""
    #: the status message of a failed step (its status is then ERROR)
    error: str | None = None
    #: request and tool-call ids under which the tool's own spans may hold the same step
    ids: tuple[str, ...] = ()
    #: a model request (answered or failed)
    model_call: bool = False
    #: the span the event it came from was logged in (the tool's own span of the step, when it
    #: sends spans and logs within them)
    context: str = ""
    events: list[tuple[str, int, dict[str, Any]]] = field(default_factory=list)


@dataclass(slots=True)
class Task:
    """One prompt (or turn) of a session: its root and its steps."""

    key: str
    root: Draft
    steps: list[Draft]
    resource: dict[str, str]
    #: span contexts the events were emitted in (the tool's own trace, when it sends spans)
    trace_ids: set[str] = field(default_factory=set)


def standard_attributes(first: Event, agent: str) -> dict[str, Any]:
    """A task root's attributes: the session's standard ones, from its first event, named as an
    agent run of `agent` (the tool)."""
    attrs: dict[str, Any] = {k: first.attrs[k] for k in STANDARD if first.attrs.get(k)}
    attrs[SOURCE_ATTRIBUTE] = "events"
    attrs[sc.GEN_AI_OPERATION_NAME] = sc.OP_INVOKE_AGENT
    attrs[sc.GEN_AI_AGENT_NAME] = agent
    return attrs


def task_of(key: str, name: str, events: list[Event], root_attrs: dict[str, Any], steps: list[Draft]) -> Task:
    """A task whose root spans its events and steps, and failed when its last model request did
    (the tool gave up on it)."""
    starts = [e.time_ns - e.duration_ns() for e in events] + [d.start_ns for d in steps]
    ends = [e.time_ns for e in events] + [d.end_ns for d in steps]
    root = Draft("", name, min(starts), max(ends), root_attrs)
    requests = [d for d in steps if d.model_call]
    last = max(requests, key=lambda d: d.end_ns) if requests else None
    if last is not None and last.error is not None:
        root.error = f"the task ended on a failed model request ({last.error})"
    traces = {e.trace_id for e in events if e.trace_id and e.trace_id.strip("0")}
    return Task(key, root, steps, dict(events[0].resource), traces)


def nest_in_subagents(steps: list[Draft], is_subagent: Any) -> None:
    """Steps that ran while a subagent tool ran (Claude Code's Task/Agent tool) nest under it:
    the main agent waits on that tool, so what happens meanwhile is the subagent's work."""
    runs = sorted((d for d in steps if is_subagent(d)), key=lambda d: (d.start_ns, -d.end_ns))
    if not runs:
        return
    for step in steps:
        if step.parent:
            continue
        inner = [
            r
            for r in runs
            if r is not step and r.start_ns <= step.start_ns and step.end_ns <= r.end_ns and r.key != step.key
        ]
        if inner:
            step.parent = max(inner, key=lambda r: r.start_ns).key  # the innermost


def tool_use(event: Event, tools: dict[str, Draft], steps: list[Draft], name: str, call_id: str) -> Draft:
    """A tool's decision and result events (joined by `call_id`) as one step: the result's time
    and duration win; a tool that was decided on but never ran is a step of no duration."""
    call = call_id or f"{event.get('tool_name')}:{event.record_hash}"
    extra: dict[str, Any] = {sc.GEN_AI_OPERATION_NAME: sc.OP_EXECUTE_TOOL}
    draft = tools.get(call)
    if draft is None:
        draft = Draft(
            f"tool:{call}", name, event.time_ns - event.duration_ns(), event.time_ns, event.own(extra)
        )
        draft.ids = (call_id,) if call_id else ()
        draft.context = event.span_id
        tools[call] = draft
        steps.append(draft)
    else:
        draft.attrs.update(event.own(extra))
        if event.name.endswith("tool_result"):
            draft.start_ns, draft.end_ns = event.time_ns - event.duration_ns(), event.time_ns
    draft.attrs["tokentrail.event"] = "tool_use"
    if event.name.endswith("tool_result") and event.get("success").lower() == "false":
        draft.error = event.get("error") or event.get("error_type") or "tool failed"
    return draft


def by_prompt(events: list[Event]) -> list[tuple[str, list[Event]]]:
    """The events of each prompt, in the order they happened (events of no prompt are left out)."""
    groups: dict[str, list[Event]] = {}
    for event in events:
        if event.prompt:
            groups.setdefault(event.prompt, []).append(event)
    return [(prompt, sorted(evs, key=lambda e: (e.time_ns, e.sequence))) for prompt, evs in groups.items()]


def user_prompt(root: dict[str, Any], event: Event) -> None:
    """The user's prompt on the task's root: its length, and its text when the user lets the tool
    log it (Claude Code writes `<REDACTED>` otherwise, Codex `[REDACTED]`)."""
    root["user_prompt_length"] = event.get("prompt_length")
    text = event.get("prompt")
    if text and text not in ("<REDACTED>", "[REDACTED]"):
        root["user_prompt"] = text


def turns(events: list[Event]) -> list[list[Event]]:
    """A session's events split into turns at its user prompts, in the order they happened (the
    tool works on one prompt at a time: what happens until the next one is this one's work)."""
    out: list[list[Event]] = []
    for event in sorted(events, key=lambda e: (e.time_ns, e.sequence, e.record_hash)):
        if event.name == "user_prompt" or not out:
            out.append([])
        out[-1].append(event)
    return out


def turn_key(events: list[Event]) -> str:
    """A turn's stable name: its prompt's id when the tool gives one, else its first event's."""
    first = events[0]
    if first.name == "user_prompt" and first.prompt:
        return first.prompt
    return f"{first.time_ns}:{first.record_hash}"
