"""Which log records and spans come from a coding agent, and which session they belong to.

A coding agent's log record names its tool by its event name (`claude_code.api_request`,
`codex.sse_event`, `gemini_cli.api_response`; Claude Code also sends the short form,
`api_request`, in `event.name`) or by its resource's `service.name`. Its session is Claude Code's
and Gemini CLI's `session.id`, Codex's `conversation.id`; its prompt, Claude Code's `prompt.id`
and Gemini CLI's `prompt_id` (Codex names none: its turns are split at its user prompts).

`Touched` collects, per (project, tool, session), what a batch brought: the prompts it named and
the time it spans. The session builder rebuilds those prompts (and, for Codex, the turns that
overlap that time) once the batch is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "CLAUDE_CODE",
    "CODEX",
    "GEMINI_CLI",
    "SOURCE_ATTRIBUTE",
    "TOOLS",
    "Recognized",
    "Touched",
    "recognize",
    "span_session",
]

CLAUDE_CODE = "claude_code"
CODEX = "codex"
GEMINI_CLI = "gemini_cli"
TOOLS = (CLAUDE_CODE, CODEX, GEMINI_CLI)

#: on every span the session builder writes, with the value "events": what the tool sent as log
#: events, not as spans (so it is told apart from the tool's own spans, and replaced or withdrawn)
SOURCE_ATTRIBUTE = "tokentrail.source"

_PREFIXES = tuple((f"{tool}.", tool) for tool in TOOLS)
_SERVICES = {
    "claude-code": CLAUDE_CODE,
    "claude_code": CLAUDE_CODE,
    "codex_cli_rs": CODEX,
    "codex-cli": CODEX,
    "codex_exec": CODEX,
    "codex": CODEX,
    "gemini-cli": GEMINI_CLI,
    "gemini_cli": GEMINI_CLI,
}
_SESSION_KEYS = {
    CLAUDE_CODE: ("session.id",),
    CODEX: ("conversation.id", "session.id"),
    GEMINI_CLI: ("session.id", "gen_ai.conversation.id"),
}
_PROMPT_KEYS = {CLAUDE_CODE: ("prompt.id",), CODEX: (), GEMINI_CLI: ("prompt_id", "prompt.id")}

#: (tool, the event's short name, session id, prompt id)
Recognized = tuple[str, str, str, str]


def _tool_of(service: str) -> str:
    tool = _SERVICES.get(service, "")
    if not tool and service.startswith("gemini-cli"):
        return GEMINI_CLI
    return tool


def _first(attrs: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    for key in keys:
        value = attrs.get(key)
        if value not in (None, ""):
            return str(value)
    return ""


def recognize(service: str, event_name: str, attrs: Mapping[str, Any]) -> Recognized | None:
    """The tool, short event name, session and prompt of a coding agent's log record; None for
    any other record, and for a record of no session (the tool's start-up and auth events).

    The `event.name` attribute is read before the record's own event name: Codex's records name
    the source line that logged them there (`event codex-rs/…:123`)."""
    named = str(attrs.get("event.name") or "")
    tool, short = "", named or event_name
    for candidate in (named, event_name):
        for prefix, found in _PREFIXES:
            if candidate.startswith(prefix):
                tool, short = found, candidate[len(prefix) :]
                break
        if tool:
            break
    tool = tool or _tool_of(service)
    if not tool:
        return None
    session = _first(attrs, _SESSION_KEYS[tool])
    if not session:
        return None
    return tool, short, session, _first(attrs, _PROMPT_KEYS[tool])


def span_session(convention: str, attrs: Mapping[str, Any], conversation_id: str) -> Recognized | None:
    """A coding agent's own span (its traces), as the session and prompt it belongs to (the
    session "" when the span names none); None for any other span and for the spans the session
    builder wrote."""
    if convention not in TOOLS or attrs.get(SOURCE_ATTRIBUTE):
        return None
    return convention, "", conversation_id, _first(attrs, _PROMPT_KEYS[convention])


class Touched:
    """Per (project, tool, session): the prompts a batch named and the time it spans (ns). And the
    tool's own traces that named no session (`traces`): the sessions whose events were logged in
    them are found when the batch is built."""

    __slots__ = ("sessions", "traces")

    def __init__(self) -> None:
        self.sessions: dict[tuple[str, str, str], tuple[set[str], int, int]] = {}
        self.traces: dict[tuple[str, str, str], tuple[int, int]] = {}

    def __bool__(self) -> bool:
        return bool(self.sessions) or bool(self.traces)

    def add(self, project: str, found: Recognized, start_ns: int, end_ns: int) -> None:
        tool, _, session, prompt = found
        key = (project, tool, session)
        seen = self.sessions.get(key)
        if seen is None:
            self.sessions[key] = ({prompt} if prompt else set(), start_ns, end_ns)
            return
        prompts, lo, hi = seen
        if prompt:
            prompts.add(prompt)
        if start_ns < lo or end_ns > hi:
            self.sessions[key] = (prompts, min(lo, start_ns), max(hi, end_ns))

    def add_trace(self, project: str, tool: str, trace_id: str, start_ns: int, end_ns: int) -> None:
        """A span of the tool's own trace `trace_id` that names no session."""
        key = (project, tool, trace_id)
        lo, hi = self.traces.get(key, (start_ns, end_ns))
        self.traces[key] = (min(lo, start_ns), max(hi, end_ns))

    def update(self, other: Touched) -> None:
        for (project, tool, session), (prompts, lo, hi) in other.sessions.items():
            for prompt in prompts or [""]:
                self.add(project, (tool, "", session, prompt), lo, hi)
        for (project, tool, trace_id), (lo, hi) in other.traces.items():
            self.add_trace(project, tool, trace_id, lo, hi)

    def take(self) -> Touched:
        """What was collected, leaving this empty."""
        taken = Touched()
        taken.sessions, taken.traces = self.sessions, self.traces
        self.sessions, self.traces = {}, {}
        return taken
