"""Claude Code's telemetry for a session: log events, metrics and (traces beta) spans.

Names and shapes follow Claude Code's monitoring documentation (code.claude.com/docs/en/
monitoring-usage):

- Events: the record's body is the full name (`claude_code.api_request`), the `event.name`
  attribute the short one (`api_request`); every event carries the standard attributes,
  `event.timestamp`, `event.sequence` (a per-process counter from 0) and `prompt.id`.
  Numbers are sent as strings (`"1234"`), `success` as `"true"`/`"false"`; the documented
  exceptions are numbers: `status_code` on `api_error`/`api_retries_exhausted` and
  `cost_usd_micros`. Keys of OTEL_RESOURCE_ATTRIBUTES are copied onto every event and point.
- Token counts are the raw Anthropic usage fields: `input_tokens` EXCLUDES cache reads and
  writes. `cost_usd` is Claude Code's own estimate (list price).
- Retries are internal: an attempt that failed before a request succeeded leaves no event. Only
  a request that gave up leaves `api_error` (`attempt` = attempts made) and, after more than one
  attempt, `api_retries_exhausted`. The `llm_request` span shows every request's `attempt` count
  and one `gen_ai.request.attempt` span event per retry.
- Metrics are delta counters (Claude Code's default temporality), exported every 60 s.
- Spans: `claude_code.interaction` per prompt; `claude_code.llm_request` and `claude_code.tool`
  under it; `claude_code.tool.blocked_on_user` and `claude_code.tool.execution` under each tool;
  a subagent's spans under the Agent tool's span that started it. Span numbers are numbers.
"""

from __future__ import annotations

import json
from typing import Any

from tests.support.coding_agents.otel import (
    Instrument,
    LogEvent,
    Measurement,
    MetricPlan,
    SpanEventRecord,
    SpanRecord,
)
from tests.support.coding_agents.scenario import (
    Compaction,
    ModelRequest,
    Placed,
    PlacedPrompt,
    Session,
    ToolUse,
    iso,
    stable_id,
    stable_uuid,
)

SERVICE_NAME = "claude-code"
LOG_SCOPE = "com.anthropic.claude_code.events"
METER_SCOPE = "com.anthropic.claude_code"
TRACER_SCOPE = "com.anthropic.claude_code.tracing"
REDACTED = "<REDACTED>"
MAIN_QUERY_SOURCE = "repl_main_thread"
COMPACT_QUERY_SOURCE = "compact"
EDIT_TOOLS = frozenset({"Edit", "Write", "NotebookEdit"})
AGENT_TOOLS = frozenset({"Agent", "Task"})

METRICS = MetricPlan(METER_SCOPE, "delta", 60_000)
SESSION_COUNT = Instrument("claude_code.session.count", "counter", "", "Count of CLI sessions started")
TOKEN_USAGE = Instrument("claude_code.token.usage", "counter", "tokens", "Number of tokens used")
COST_USAGE = Instrument("claude_code.cost.usage", "counter", "USD", "Cost of the Claude Code session")
ACTIVE_TIME = Instrument("claude_code.active_time.total", "counter", "s", "Total active time in seconds")
EDIT_DECISION = Instrument(
    "claude_code.code_edit_tool.decision", "counter", "", "Count of code editing tool permission decisions"
)
LINES_OF_CODE = Instrument(
    "claude_code.lines_of_code.count", "counter", "", "Count of lines of code modified"
)

_LANGUAGES = {".py": "Python", ".ts": "TypeScript", ".js": "JavaScript", ".md": "Markdown", ".go": "Go"}
_MS = 1_000_000


def resource(session: Session) -> dict[str, Any]:
    return {
        "service.name": SERVICE_NAME,
        "service.version": session.app_version,
        "os.type": "linux",
        "os.version": "6.8.0-49-generic",
        "host.arch": "amd64",
        **session.resource,
    }


def account_id(session: Session) -> str:
    """user.account_id: the account in the tagged form of Anthropic's admin API."""
    return "user_01" + session.account_id.replace("-", "")[:22]


def _identity(session: Session) -> dict[str, Any]:
    """Standard attributes shared by metrics and events; custom resource keys never override them."""
    standard = {
        "session.id": session.session_id,
        "organization.id": session.organization_id,
        "user.account_uuid": session.account_id,
        "user.account_id": account_id(session),
        "user.id": session.user_id,
        "user.email": session.user_email,
        "terminal.type": session.terminal_type,
    }
    return {**session.resource, **standard}


def _standard(session: Session) -> dict[str, Any]:
    """Standard attributes of events and spans (which, unlike metrics, carry the version)."""
    return {**_identity(session), "app.version": session.app_version, "app.entrypoint": "cli"}


def query_source(placed: Placed) -> str:
    request = placed.step
    assert isinstance(request, ModelRequest)
    if placed.agent is not None:
        return placed.agent.name
    return COMPACT_QUERY_SOURCE if request.purpose == "compact" else MAIN_QUERY_SOURCE


def query_category(placed: Placed) -> str:
    """The `query_source` of the cost and token metrics: main, subagent or auxiliary."""
    if placed.agent is not None:
        return "subagent"
    return "auxiliary" if query_source(placed) == COMPACT_QUERY_SOURCE else "main"


def decision_source(tool: ToolUse) -> str:
    if tool.decision_source == "user":
        return "user_temporary" if tool.decision == "accept" else "user_reject"
    return tool.decision_source


def attempt_client_ids(request: ModelRequest) -> list[str]:
    """x-client-request-id of each attempt; the last is the request's own."""
    earlier = [stable_uuid(request.client_request_id, n) for n in range(1, request.attempts)]
    if request.exhausted:
        earlier.append(stable_uuid(request.client_request_id, request.attempts))
        return earlier
    return [*earlier, request.client_request_id]


class SpanIds:
    """The trace and span ids of a session's spans, which its events also carry when traced."""

    def __init__(self, session: Session) -> None:
        self.session = session.session_id

    def trace(self, prompt: PlacedPrompt) -> int:
        return stable_id(self.session, "trace", prompt.prompt.prompt_id, bits=128)

    def interaction(self, prompt: PlacedPrompt) -> int:
        return stable_id(self.session, "interaction", prompt.prompt.prompt_id)

    def step(self, placed: Placed, part: str = "") -> int:
        step = placed.step
        key = step.call_id if isinstance(step, ToolUse) else f"{placed.prompt}:{placed.start_ns}:{id(step)}"
        if isinstance(step, ModelRequest):
            key = step.client_request_id or key
        return stable_id(self.session, "span", key, part)

    def parent(self, prompt: PlacedPrompt, placed: Placed) -> int:
        """A step's parent span: the Agent tool that started its subagent, else the interaction."""
        if placed.parent is not None:
            for other in prompt.steps:
                if other.step is placed.parent:
                    return self.step(other)
        return self.interaction(prompt)


def _tool_input(tool: ToolUse) -> str:
    """tool_input as Claude Code logs it: values over 512 characters truncated."""
    return json.dumps({k: (v[:512] if isinstance(v, str) else v) for k, v in tool.parameters.items()})


def _tool_parameters(tool: ToolUse) -> str | None:
    """tool_parameters: documented for Bash, MCP, Skill and Agent/Task tools."""
    if tool.name == "Bash":
        command = str(tool.parameters.get("command", ""))
        return json.dumps(
            {
                "bash_command": command.split(" ", 1)[0],
                "full_command": command,
                "timeout": tool.parameters.get("timeout", 120000),
                "description": tool.parameters.get("description", ""),
                "dangerouslyDisableSandbox": False,
            }
        )
    if tool.name in AGENT_TOOLS:
        return json.dumps({"subagent_type": tool.parameters.get("subagent_type", "")})
    return None


class _Events:
    def __init__(self, session: Session, trace_context: bool) -> None:
        self.session = session
        self.standard = _standard(session)
        self.ids = SpanIds(session) if trace_context else None
        self.out: list[LogEvent] = []

    def add(
        self, ts: int, name: str, prompt_id: str, attrs: dict[str, Any], span: tuple[int, int] = (0, 0)
    ) -> None:
        attributes = {**self.standard, "event.name": name, "event.timestamp": iso(ts), "prompt.id": prompt_id}
        attributes.update({k: v for k, v in attrs.items() if v is not None})
        trace_id, span_id = span if self.ids else (0, 0)
        self.out.append(
            LogEvent(ts, attributes, f"claude_code.{name}", LOG_SCOPE, trace_id=trace_id, span_id=span_id)
        )

    def prompt(self, prompt: PlacedPrompt) -> None:
        p = prompt.prompt
        span = (self.ids.trace(prompt), self.ids.interaction(prompt)) if self.ids else (0, 0)
        self.add(
            prompt.start_ns,
            "user_prompt",
            p.prompt_id,
            {
                "prompt_length": str(p.length),
                "prompt": p.text if self.session.log_prompts else REDACTED,
                "message.uuid": stable_uuid(p.prompt_id, "message"),
            },
            span,
        )
        for placed in prompt.steps:
            step_span = (self.ids.trace(prompt), self.ids.step(placed)) if self.ids else (0, 0)
            if isinstance(placed.step, ModelRequest):
                self.request(prompt, placed, step_span)
            elif isinstance(placed.step, ToolUse):
                self.tool(prompt, placed, step_span)
            elif isinstance(placed.step, Compaction):
                self.compaction(prompt, placed, span)

    def request(self, prompt: PlacedPrompt, placed: Placed, span: tuple[int, int]) -> None:
        r = placed.step
        assert isinstance(r, ModelRequest)
        common = {
            "model": r.model,
            "speed": "normal",
            "query_source": query_source(placed),
            "agent.name": placed.agent.name if placed.agent else None,
        }
        pid = prompt.prompt.prompt_id
        if r.exhausted:
            last = r.failures[-1]
            self.add(
                placed.end_ns,
                "api_error",
                pid,
                {
                    **common,
                    "error": last.error,
                    "status_code": last.status_code,
                    "duration_ms": str(last.duration_ms),
                    "attempt": str(r.attempts),
                    "client_request_id": attempt_client_ids(r)[-1],
                },
                span,
            )
            if r.attempts > 1:
                self.add(
                    placed.end_ns,
                    "api_retries_exhausted",
                    pid,
                    {
                        "model": r.model,
                        "error": last.error,
                        "status_code": last.status_code,
                        "total_attempts": str(r.attempts),
                        "total_retry_duration_ms": str(r.wall_ms),
                        "speed": "normal",
                    },
                    span,
                )
            return
        cost = r.cost_usd or 0.0
        self.add(
            placed.end_ns,
            "api_request",
            pid,
            {
                **common,
                "cost_usd": str(cost),
                "cost_usd_micros": round(cost * 1_000_000),
                "duration_ms": str(r.duration_ms),
                "input_tokens": str(r.input_tokens),
                "output_tokens": str(r.output_tokens),
                "cache_read_tokens": str(r.cache_read_tokens),
                "cache_creation_tokens": str(r.cache_write_tokens),
                "request_id": r.request_id,
                "client_request_id": r.client_request_id,
            },
            span,
        )
        if r.response_length:
            self.add(
                placed.end_ns,
                "assistant_response",
                pid,
                {
                    "response_length": str(r.response_length),
                    "response": REDACTED,
                    "model": r.model,
                    "request_id": r.request_id,
                    "query_source": query_source(placed),
                },
                span,
            )

    def tool(self, prompt: PlacedPrompt, placed: Placed, span: tuple[int, int]) -> None:
        t = placed.step
        assert isinstance(t, ToolUse)
        pid = prompt.prompt.prompt_id
        details = self.session.log_tool_details
        parameters = _tool_parameters(t) if details else None
        self.add(
            placed.decided_ns(),
            "tool_decision",
            pid,
            {
                "tool_name": t.name,
                "tool_use_id": t.call_id,
                "decision": t.decision,
                "source": decision_source(t),
                "tool_source": "builtin",
                "tool_parameters": parameters,
            },
            span,
        )
        if not t.executed:
            return
        exec_span = (span[0], self.ids.step(placed, "execution")) if self.ids else span
        self.add(
            placed.end_ns,
            "tool_result",
            pid,
            {
                "tool_name": t.name,
                "tool_use_id": t.call_id,
                "success": "true" if t.success else "false",
                "duration_ms": str(t.wall_ms - t.wait_ms),
                "error_type": None if t.success else t.error,
                "decision_type": "accept",
                "decision_source": decision_source(t),
                "tool_input_size_bytes": str(t.input_size_bytes),
                "tool_result_size_bytes": str(t.result_size_bytes),
                "tool_parameters": parameters,
                "tool_input": _tool_input(t) if details else None,
            },
            exec_span,
        )

    def compaction(self, prompt: PlacedPrompt, placed: Placed, span: tuple[int, int]) -> None:
        c = placed.step
        assert isinstance(c, Compaction)
        self.add(
            placed.end_ns,
            "compaction",
            prompt.prompt.prompt_id,
            {
                "trigger": c.trigger,
                "success": "true",
                "duration_ms": str(c.wall_ms),
                "pre_tokens": str(c.tokens_before),
                "post_tokens": str(c.tokens_after),
            },
            span,
        )


def events(session: Session, *, trace_context: bool = False) -> list[LogEvent]:
    """The session's log events in the order Claude Code emits them, `event.sequence` from 0.

    `trace_context`: each event carries the span it was emitted in (tracing beta on)."""
    builder = _Events(session, trace_context)
    for prompt in session.timeline():
        builder.prompt(prompt)
    ordered = sorted(enumerate(builder.out), key=lambda pair: (pair[1].ts_ns, pair[0]))
    return [
        LogEvent(
            e.ts_ns,
            {**e.attributes, "event.sequence": seq},
            e.body,
            e.scope,
            trace_id=e.trace_id,
            span_id=e.span_id,
        )
        for seq, (_, e) in enumerate(ordered)
    ]


def _span_attrs(session: Session, span_type: str, attrs: dict[str, Any]) -> dict[str, Any]:
    return {**_standard(session), "span.type": span_type, **{k: v for k, v in attrs.items() if v is not None}}


def spans(session: Session) -> list[SpanRecord]:
    """The traces-beta spans: one trace per prompt."""
    ids = SpanIds(session)
    out: list[SpanRecord] = []
    for number, prompt in enumerate(session.timeline(), start=1):
        trace_id = ids.trace(prompt)
        p = prompt.prompt
        out.append(
            SpanRecord(
                "claude_code.interaction",
                trace_id,
                ids.interaction(prompt),
                0,
                prompt.start_ns,
                prompt.end_ns,
                _span_attrs(
                    session,
                    "interaction",
                    {
                        "user_prompt": p.text if session.log_prompts else REDACTED,
                        "user_prompt_length": p.length,
                        "interaction.sequence": number,
                        "interaction.duration_ms": (prompt.end_ns - prompt.start_ns) // _MS,
                    },
                ),
                scope=TRACER_SCOPE,
            )
        )
        for placed in prompt.steps:
            parent = ids.parent(prompt, placed)
            if isinstance(placed.step, ModelRequest):
                out.append(_llm_span(session, ids, prompt, placed, trace_id, parent))
            elif isinstance(placed.step, ToolUse):
                out.extend(_tool_spans(session, ids, placed, trace_id, parent))
    return out


def _llm_span(
    session: Session, ids: SpanIds, prompt: PlacedPrompt, placed: Placed, trace_id: int, parent: int
) -> SpanRecord:
    r = placed.step
    assert isinstance(r, ModelRequest)
    attempts = placed.attempts()
    client_ids = attempt_client_ids(r)
    retries = tuple(
        SpanEventRecord(
            "gen_ai.request.attempt", start, {"attempt": n, "client_request_id": client_ids[n - 1]}
        )
        for n, (start, _) in enumerate(attempts, start=1)
        if n > 1
    )
    attrs: dict[str, Any] = {
        "model": r.model,
        "gen_ai.system": "anthropic",
        "gen_ai.request.model": r.model,
        "query_source": query_source(placed),
        "agent_id": placed.agent.agent_id if placed.agent else None,
        "speed": "normal",
        "llm_request.context": "tool" if placed.parent is not None else "interaction",
        "duration_ms": r.wall_ms,
        "client_request_id": client_ids[-1],
        "attempt": r.attempts,
        "success": not r.exhausted,
    }
    if r.exhausted:
        last = r.failures[-1]
        attrs.update({"status_code": last.status_code, "error": last.error})
    else:
        attrs.update(
            {
                "ttft_ms": r.ttft_ms,
                "input_tokens": r.input_tokens,
                "output_tokens": r.output_tokens,
                "cache_read_tokens": r.cache_read_tokens,
                "cache_creation_tokens": r.cache_write_tokens,
                "request_id": r.request_id,
                "gen_ai.response.id": r.request_id,
                "response.has_tool_call": r.stop_reason == "tool_use",
                "stop_reason": r.stop_reason,
                "gen_ai.response.finish_reasons": [r.stop_reason],
            }
        )
    return SpanRecord(
        "claude_code.llm_request",
        trace_id,
        ids.step(placed),
        parent,
        placed.start_ns,
        placed.end_ns,
        _span_attrs(session, "llm_request", attrs),
        events=retries,
        error=r.failures[-1].error if r.exhausted else None,
        scope=TRACER_SCOPE,
    )


def _tool_spans(
    session: Session, ids: SpanIds, placed: Placed, trace_id: int, parent: int
) -> list[SpanRecord]:
    t = placed.step
    assert isinstance(t, ToolUse)
    details = session.log_tool_details
    own = ids.step(placed)
    decided = placed.decided_ns()
    path = t.parameters.get("file_path") if t.name in {"Read", "Edit", "Write"} else None
    tool = SpanRecord(
        "claude_code.tool",
        trace_id,
        own,
        parent,
        placed.start_ns,
        placed.end_ns,
        _span_attrs(
            session,
            "tool",
            {
                "tool_name": t.name,
                "duration_ms": t.wall_ms,
                "result_tokens": t.result_size_bytes // 4,
                "agent_id": placed.agent.agent_id if placed.agent else None,
                "tool_use_id": t.call_id,
                "gen_ai.tool.call.id": t.call_id,
                "file_path": path if details else None,
                "full_command": t.parameters.get("command") if details and t.name == "Bash" else None,
                "subagent_type": t.parameters.get("subagent_type")
                if details and t.name in AGENT_TOOLS
                else None,
            },
        ),
        scope=TRACER_SCOPE,
    )
    blocked = SpanRecord(
        "claude_code.tool.blocked_on_user",
        trace_id,
        ids.step(placed, "blocked"),
        own,
        placed.start_ns,
        decided,
        _span_attrs(
            session,
            "tool.blocked_on_user",
            {"duration_ms": t.wait_ms, "decision": t.decision, "source": decision_source(t)},
        ),
        scope=TRACER_SCOPE,
    )
    if not t.executed:
        return [tool, blocked]
    execution = SpanRecord(
        "claude_code.tool.execution",
        trace_id,
        ids.step(placed, "execution"),
        own,
        decided,
        placed.end_ns,
        _span_attrs(
            session,
            "tool.execution",
            {
                "duration_ms": t.wall_ms - t.wait_ms,
                "tool_use_id": t.call_id,
                "gen_ai.tool.call.id": t.call_id,
                "success": t.success,
                "error": None if t.success else t.error,
            },
        ),
        error=None if t.success else t.error,
        scope=TRACER_SCOPE,
    )
    return [tool, blocked, execution]


def measurements(session: Session) -> list[Measurement]:
    """What Claude Code counts: session, tokens and cost per request, active time, edit decisions."""
    base = _identity(session)
    out = [Measurement(session.start_ns, SESSION_COUNT, 1.0, {**base, "start_type": "fresh"})]
    model = ""
    for prompt in session.timeline():
        typing = min(60.0, prompt.prompt.length / 5)
        out.append(Measurement(prompt.start_ns, ACTIVE_TIME, typing, {**base, "type": "user"}))
        for placed in prompt.steps:
            step = placed.step
            if isinstance(step, ModelRequest):
                out.append(
                    Measurement(placed.end_ns, ACTIVE_TIME, step.wall_ms / 1000, {**base, "type": "cli"})
                )
                if step.exhausted:
                    continue
                model = step.model
                attrs = {**base, "model": step.model, "query_source": query_category(placed)}
                if placed.agent is not None:
                    attrs["agent.name"] = placed.agent.name
                for kind, value in (
                    ("input", step.input_tokens),
                    ("output", step.output_tokens),
                    ("cacheRead", step.cache_read_tokens),
                    ("cacheCreation", step.cache_write_tokens),
                ):
                    out.append(Measurement(placed.end_ns, TOKEN_USAGE, float(value), {**attrs, "type": kind}))
                out.append(Measurement(placed.end_ns, COST_USAGE, step.cost_usd or 0.0, attrs))
            elif isinstance(step, ToolUse):
                out.extend(_tool_measurements(base, placed, step, model))
    return out


def _tool_measurements(base: dict[str, Any], placed: Placed, tool: ToolUse, model: str) -> list[Measurement]:
    out = []
    if tool.executed and tool.subagent is None:
        seconds = (tool.wall_ms - tool.wait_ms) / 1000
        out.append(Measurement(placed.end_ns, ACTIVE_TIME, seconds, {**base, "type": "cli"}))
    if tool.name in EDIT_TOOLS:
        path = str(tool.parameters.get("file_path", ""))
        language = next((name for ext, name in _LANGUAGES.items() if path.endswith(ext)), "unknown")
        attrs = {
            **base,
            "tool_name": tool.name,
            "decision": tool.decision,
            "source": decision_source(tool),
            "language": language,
        }
        out.append(Measurement(placed.decided_ns(), EDIT_DECISION, 1.0, attrs))
    if tool.executed and tool.success:
        for kind, lines in (("added", tool.lines_added), ("removed", tool.lines_removed)):
            if lines:
                out.append(
                    Measurement(
                        placed.end_ns, LINES_OF_CODE, float(lines), {**base, "type": kind, "model": model}
                    )
                )
    return out
