"""What happened in a coding agent's session, told once for all three tools.

A `Session` is a list of `Prompt`s; a prompt is an ordered list of steps: model requests (with the
attempts that failed before them), tool uses (a subagent's own steps nest inside the tool that
started it) and compactions. Token counts are kept the way Anthropic's API reports them (input
EXCLUSIVE of cache reads and writes, output INCLUSIVE of reasoning); each tool's emitter turns
them into the numbers that tool sends. Time is simulated: `timeline()` places every step at its
own nanosecond, so a day of work is emitted in seconds and sending the same session twice sends
the same records.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

Tool = Literal["claude_code", "codex", "gemini_cli"]
TOOLS: tuple[Tool, ...] = ("claude_code", "codex", "gemini_cli")

# where a tool's permission decision came from, in words common to the three tools
DecisionSource = Literal["config", "user", "hook"]

_MS = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class FailedAttempt:
    """One attempt of a model request that got no usable answer."""

    status_code: int | None  # HTTP status (429, 529, 500, ...); None for a connection error
    error: str
    duration_ms: int
    retry_delay_ms: int = 0  # the back-off before the next attempt
    # Gemini CLI: the stream ended with no usable content (HTTP 200) and the chat retried it
    invalid_content: bool = False


@dataclass(eq=False)
class ModelRequest:
    """One model call as the agent made it, and the failed attempts before it.

    `exhausted`: every attempt failed (`failures` are all of them) and there is no response."""

    model: str
    input_tokens: int  # fresh input: EXCLUSIVE of cache reads and cache writes (Anthropic's field)
    output_tokens: int  # all output, reasoning included
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0  # part of output_tokens
    duration_ms: int = 2_000  # the successful attempt
    ttft_ms: int = 600
    request_id: str = ""  # the provider's id of the response
    client_request_id: str = ""
    failures: tuple[FailedAttempt, ...] = ()
    exhausted: bool = False
    cost_usd: float | None = None  # the cost the tool itself reports (Claude Code only), else None
    stop_reason: Literal["end_turn", "tool_use", "max_tokens"] = "end_turn"
    response_length: int = 0  # characters of text in the answer (0: tool calls only)
    purpose: Literal["main", "compact"] = "main"

    @property
    def inclusive_input(self) -> int:
        """Input tokens as OpenTelemetry counts them: fresh + cache reads + cache writes."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def attempts(self) -> int:
        return len(self.failures) + (0 if self.exhausted else 1)

    @property
    def wall_ms(self) -> int:
        """From the first attempt's start to the answer (or the last failure)."""
        failed = sum(f.duration_ms + f.retry_delay_ms for f in self.failures)
        if self.exhausted:
            return failed - (self.failures[-1].retry_delay_ms if self.failures else 0)
        return failed + self.duration_ms


@dataclass(eq=False)
class Subagent:
    """A subagent started by a tool call (Claude Code's Agent/Task tool, a Gemini CLI agent tool)."""

    name: str  # the agent type: "Explore", "codebase_investigator"
    agent_id: str
    steps: list[Step] = field(default_factory=list)

    @property
    def wall_ms(self) -> int:
        return sum(s.wall_ms for s in self.steps)


@dataclass(eq=False)
class ToolUse:
    """One tool call: the permission decision, then (when accepted) its execution."""

    name: str  # as the tool names it: "Read", "shell", "read_file"
    call_id: str  # tool_use_id / call_id
    parameters: dict[str, Any]
    duration_ms: int  # execution (for a subagent's tool: at least the subagent's own time)
    success: bool = True
    error: str = ""  # error category when it failed: "Error:ENOENT", "ShellError"
    decision: Literal["accept", "reject"] = "accept"
    decision_source: DecisionSource = "config"
    wait_ms: int = 0  # time spent waiting for the user's decision
    result_size_bytes: int = 0
    lines_added: int = 0
    lines_removed: int = 0
    read_only: bool = False  # it only reads (a file, a search): repeating it re-reads the same thing
    subagent: Subagent | None = None

    @property
    def executed(self) -> bool:
        return self.decision == "accept"

    @property
    def arguments(self) -> str:
        """The parameters as the tool serializes them (JSON)."""
        return json.dumps(self.parameters, separators=(",", ":"))

    @property
    def input_size_bytes(self) -> int:
        return len(self.arguments.encode())

    @property
    def wall_ms(self) -> int:
        if not self.executed:
            return self.wait_ms
        own = self.subagent.wall_ms if self.subagent else 0
        return self.wait_ms + max(self.duration_ms, own)


@dataclass(eq=False)
class Compaction:
    """The conversation summarised to make room (Claude Code `compaction`, Gemini `chat_compression`)."""

    tokens_before: int
    tokens_after: int
    duration_ms: int
    trigger: Literal["auto", "manual"] = "auto"
    request: ModelRequest | None = None  # the summarising model call, made inside the compaction

    @property
    def wall_ms(self) -> int:
        return max(self.duration_ms, self.request.wall_ms if self.request else 0)


Step = ModelRequest | ToolUse | Compaction


@dataclass(eq=False)
class Prompt:
    text: str
    prompt_id: str
    steps: list[Step] = field(default_factory=list)
    idle_before_ms: int = 0  # the user's pause since the previous prompt ended (or the session began)

    @property
    def length(self) -> int:
        return len(self.text)


@dataclass(eq=False)
class Session:
    tool: Tool
    session_id: str
    start: datetime  # timezone-aware
    prompts: list[Prompt] = field(default_factory=list)
    user_email: str = "dev@example.com"
    account_id: str = ""  # Claude Code user.account_uuid, Codex user.account_id
    organization_id: str = ""
    user_id: str = ""  # Claude Code's anonymous install id, Gemini CLI's installation.id
    app_version: str = ""
    terminal_type: str = "vscode"
    # OTEL_RESOURCE_ATTRIBUTES of the developer's machine: team, repository, ...
    resource: dict[str, str] = field(default_factory=dict)
    log_prompts: bool = False  # the tool's prompt-content switch
    log_tool_details: bool = True  # Claude Code OTEL_LOG_TOOL_DETAILS (tool input, file paths)

    @property
    def start_ns(self) -> int:
        return (self.start - _EPOCH) // timedelta(microseconds=1) * 1_000

    def timeline(self) -> list[PlacedPrompt]:
        """Every prompt and step at its simulated time, in the order they began."""
        placed: list[PlacedPrompt] = []
        cursor = self.start_ns
        for index, prompt in enumerate(self.prompts):
            begin = cursor + prompt.idle_before_ms * _MS
            steps: list[Placed] = []
            cursor = _place(prompt.steps, index, begin + _MS, None, None, steps)
            placed.append(PlacedPrompt(prompt, index, begin, cursor, steps))
        return placed

    def end_ns(self) -> int:
        timeline = self.timeline()
        return timeline[-1].end_ns if timeline else self.start_ns


@dataclass(frozen=True, eq=False)
class Placed:
    """A step at its place in time, and who took it."""

    step: Step
    prompt: int  # index of the prompt in the session
    start_ns: int
    end_ns: int
    agent: Subagent | None  # the subagent that took the step; None for the main agent
    parent: ToolUse | None  # the tool call that started that subagent

    def attempts(self) -> list[tuple[int, int]]:
        """(start, end) of each attempt of a model request: the failures, then the answer."""
        request = self.step
        assert isinstance(request, ModelRequest)
        spans: list[tuple[int, int]] = []
        t = self.start_ns
        for failure in request.failures:
            spans.append((t, t + failure.duration_ms * _MS))
            t += (failure.duration_ms + failure.retry_delay_ms) * _MS
        if not request.exhausted:
            spans.append((t, t + request.duration_ms * _MS))
        return spans

    def decided_ns(self) -> int:
        """When a tool call's permission decision was made."""
        assert isinstance(self.step, ToolUse)
        return self.start_ns + self.step.wait_ms * _MS


@dataclass(frozen=True, eq=False)
class PlacedPrompt:
    prompt: Prompt
    index: int
    start_ns: int
    end_ns: int
    steps: list[Placed]

    def requests(self) -> Iterator[Placed]:
        """Every model request of the prompt, a compaction's and a subagent's included."""
        for placed in self.steps:
            if isinstance(placed.step, ModelRequest):
                yield placed


def _place(
    steps: list[Step],
    prompt: int,
    cursor: int,
    agent: Subagent | None,
    parent: ToolUse | None,
    out: list[Placed],
) -> int:
    for step in steps:
        end = cursor + step.wall_ms * _MS
        out.append(Placed(step, prompt, cursor, end, agent, parent))
        if isinstance(step, Compaction) and step.request is not None:
            out.append(
                Placed(step.request, prompt, cursor, cursor + step.request.wall_ms * _MS, agent, parent)
            )
        if isinstance(step, ToolUse) and step.subagent is not None and step.executed:
            _place(step.subagent.steps, prompt, cursor + step.wait_ms * _MS, step.subagent, step, out)
        cursor = end
    return cursor


def stable_id(*parts: object, bits: int = 64) -> int:
    """A non-zero id derived from its parts: the same session gets the same span ids every time."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=bits // 8).digest()
    return int.from_bytes(digest, "big") or 1


def stable_uuid(*parts: object) -> str:
    """A version-4-shaped UUID derived from its parts."""
    return str(uuid.UUID(int=stable_id(*parts, bits=128), version=4))


def iso(ns: int) -> str:
    """ISO 8601 with milliseconds and a Z, as JavaScript's toISOString and Codex write it."""
    return datetime.fromtimestamp(ns / 1e9, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
