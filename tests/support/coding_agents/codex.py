"""OpenAI Codex CLI's telemetry for a session: log events and metrics (codex-rs/otel).

Codex logs through `tracing` and OpenTelemetry's tracing bridge, so:

- the `event.name` attribute is the full name (`codex.api_request`), the record has no body, its
  own event_name is the tracing event's name (`event <file>:<line>`), its scope is the tracing
  target `codex_otel.log_only`, severity INFO;
- fields written with `%` are Display strings (`duration_ms`, `prompt_length`,
  `input_token_count`, `output_token_count`, `tool_token_count`, `success`), integer fields are
  integers (`attempt`, `http.response.status_code`, `cached_token_count`,
  `reasoning_token_count`), flags are booleans;
- every event carries `event.timestamp`, `conversation.id`, `app.version`, `auth_mode`,
  `originator`, `user.account_id`, `user.email`, `terminal.type`, `model`, `slug`.

Turns are not numbered: a turn begins at its `codex.user_prompt`. Each attempt of a model request
is a `codex.api_request` (with `attempt`); tokens come only on `codex.sse_event` with
`event.kind=response.completed`, which is logged twice: once when the SSE event is read (no
tokens) and once with the usage (OpenAI semantics: `input_token_count` INCLUDES
`cached_token_count`, `output_token_count` includes `reasoning_token_count`, and
`tool_token_count` carries the response's total_tokens). Tool calls pair `codex.tool_decision`
and `codex.tool_result` by `call_id`. Metrics are delta (meter `codex`); durations are `ms`
histograms. Only a few SSE kinds per response are emulated (created, output items, completed),
not the per-token deltas.
"""

from __future__ import annotations

from typing import Any

from opentelemetry._logs import SeverityNumber

from tests.support.coding_agents.otel import Instrument, LogEvent, Measurement, MetricPlan
from tests.support.coding_agents.scenario import ModelRequest, Placed, PlacedPrompt, Session, ToolUse, iso

SERVICE_NAME = "codex_cli_rs"
ORIGINATOR = "codex_cli_rs"
LOG_SCOPE = "codex_otel.log_only"
METER_SCOPE = "codex"
REDACTED = "[REDACTED]"
AUTH_MODE = "chatgpt"
_SOURCE_FILE = "otel/src/events/session_telemetry.rs"
# the line of each event's tracing macro: only its shape matters (`event <file>:<line>`)
_LINES = {
    "codex.conversation_starts": 402,
    "codex.api_request": 486,
    "codex.sse_event": 731,
    "codex.user_prompt": 820,
    "codex.tool_decision": 845,
    "codex.tool_result": 941,
}

METRICS = MetricPlan(METER_SCOPE, "delta", 60_000)
API_REQUEST = Instrument("codex.api_request", "counter")
API_REQUEST_DURATION = Instrument(
    "codex.api_request.duration_ms", "histogram", "ms", "Duration in milliseconds."
)
SSE_EVENT = Instrument("codex.sse_event", "counter")
SSE_EVENT_DURATION = Instrument("codex.sse_event.duration_ms", "histogram", "ms", "Duration in milliseconds.")
TOOL_CALL = Instrument("codex.tool.call", "counter")
TOOL_CALL_DURATION = Instrument("codex.tool.call.duration_ms", "histogram", "ms", "Duration in milliseconds.")
TURN_TOKEN_USAGE = Instrument("codex.turn.token_usage", "histogram")
TURN_E2E = Instrument("codex.turn.e2e_duration_ms", "histogram", "ms", "Duration in milliseconds.")
TURN_TTFT = Instrument("codex.turn.ttft.duration_ms", "histogram", "ms", "Duration in milliseconds.")

_MS = 1_000_000


def resource(session: Session) -> dict[str, Any]:
    return {
        "service.name": SERVICE_NAME,
        "service.version": session.app_version,
        "env": "dev",
        "host.name": "dev-laptop",
        "telemetry.sdk.language": "rust",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": "0.31.0",
        **session.resource,
    }


def _model(session: Session) -> str:
    for prompt in session.prompts:
        for step in prompt.steps:
            if isinstance(step, ModelRequest):
                return step.model
    return ""


def _auth_env() -> dict[str, Any]:
    return {
        "auth.env_openai_api_key_present": False,
        "auth.env_codex_api_key_present": False,
        "auth.env_codex_api_key_enabled": False,
        "auth.env_refresh_token_url_override_present": False,
    }


class _Events:
    def __init__(self, session: Session) -> None:
        self.session = session
        model = _model(session)
        self.common = {
            "conversation.id": session.session_id,
            "app.version": session.app_version,
            "auth_mode": AUTH_MODE,
            "originator": ORIGINATOR,
            "user.account_id": session.account_id,
            "user.email": session.user_email,
            "terminal.type": session.terminal_type,
            "model": model,
            "slug": model,
        }
        self.out: list[LogEvent] = []

    def add(self, ts: int, name: str, fields: dict[str, Any]) -> None:
        attributes = {"event.name": name, **{k: v for k, v in fields.items() if v is not None}}
        attributes.update({"event.timestamp": iso(ts), **self.common})
        self.out.append(
            LogEvent(
                ts,
                attributes,
                None,
                LOG_SCOPE,
                event_name=f"event {_SOURCE_FILE}:{_LINES[name]}",
                severity=SeverityNumber.INFO,
                severity_text="INFO",
            )
        )

    def start(self) -> None:
        self.add(
            self.session.start_ns,
            "codex.conversation_starts",
            {
                "provider_name": "openai",
                **_auth_env(),
                "reasoning_effort": "medium",
                "reasoning_summary": "auto",
                "context_window": 272_000,
                "auto_compact_token_limit": 244_800,
                "approval_policy": "on-request",
                "sandbox_policy": "workspace-write",
                "mcp_servers": "",
            },
        )

    def prompt(self, prompt: PlacedPrompt) -> None:
        p = prompt.prompt
        self.add(
            prompt.start_ns,
            "codex.user_prompt",
            {"prompt_length": str(p.length), "prompt": p.text if self.session.log_prompts else REDACTED},
        )
        for placed in prompt.steps:
            if isinstance(placed.step, ModelRequest):
                self.request(placed)
            elif isinstance(placed.step, ToolUse):
                self.tool(placed)

    def request(self, placed: Placed) -> None:
        r = placed.step
        assert isinstance(r, ModelRequest)
        outcomes: list[tuple[int | None, str | None, int]] = [
            (f.status_code, f.error, f.duration_ms) for f in r.failures
        ]
        if not r.exhausted:
            outcomes.append((200, None, r.ttft_ms))
        for attempt, ((start, _), (status, error, ms)) in enumerate(
            zip(placed.attempts(), outcomes, strict=True), 1
        ):
            self.add(
                start + ms * _MS,
                "codex.api_request",
                {
                    "duration_ms": str(ms),
                    "http.response.status_code": status,
                    "error.message": error,
                    "attempt": attempt,
                    "auth.header_attached": True,
                    "auth.header_name": "authorization",
                    "auth.retry_after_unauthorized": False,
                    "endpoint": "/responses",
                    **_auth_env(),
                },
            )
        if r.exhausted:
            return
        for ts, kind, ms in sse_events(placed):
            self.add(ts, "codex.sse_event", {"event.kind": kind, "duration_ms": str(ms)})
        total = r.inclusive_input + r.output_tokens
        self.add(
            placed.end_ns,
            "codex.sse_event",
            {
                "event.kind": "response.completed",
                "input_token_count": str(r.inclusive_input),
                "output_token_count": str(r.output_tokens),
                "cached_token_count": r.cache_read_tokens,
                "reasoning_token_count": r.reasoning_tokens,
                "tool_token_count": str(total),
            },
        )

    def tool(self, placed: Placed) -> None:
        t = placed.step
        assert isinstance(t, ToolUse)
        self.add(
            placed.decided_ns(),
            "codex.tool_decision",
            {
                "tool_name": t.name,
                "call_id": t.call_id,
                "decision": "approved" if t.executed else "denied",
                "source": "user" if t.decision_source == "user" else "config",
                "execpolicy_matched": "",
            },
        )
        output = "exec command rejected by user" if not t.executed else (t.error or "ok")
        self.add(
            placed.end_ns,
            "codex.tool_result",
            {
                "tool_name": t.name,
                "call_id": t.call_id,
                "arguments": t.arguments,
                "duration_ms": str(t.wall_ms - t.wait_ms),
                "success": "true" if t.executed and t.success else "false",
                "output": output,
                "mcp_server": "",
                "mcp_server_origin": "",
            },
        )


def sse_events(placed: Placed) -> list[tuple[int, str, int]]:
    """(time, kind, wait in ms) of the SSE events read for a response, completed last."""
    r = placed.step
    assert isinstance(r, ModelRequest)
    start = placed.attempts()[-1][0]
    kinds = ["response.created"]
    if r.reasoning_tokens:
        kinds.append("response.output_item.done")  # the reasoning item
    if r.response_length:
        kinds.append("response.output_item.done")  # the message
    if r.stop_reason == "tool_use":
        kinds.append("response.output_item.done")  # the function call
    kinds.append("response.completed")
    out = []
    previous = start
    first, last = start + r.ttft_ms * _MS, start + r.duration_ms * _MS
    for n, kind in enumerate(kinds):
        ts = first + (last - first) * n // (len(kinds) - 1)
        out.append((ts, kind, (ts - previous) // _MS))
        previous = ts
    return out


def events(session: Session, *, trace_context: bool = False) -> list[LogEvent]:
    """The session's log events in the order Codex logs them (Codex sends no span context)."""
    builder = _Events(session)
    builder.start()
    for prompt in session.timeline():
        builder.prompt(prompt)
    return sorted(builder.out, key=lambda e: e.ts_ns)


def measurements(session: Session) -> list[Measurement]:
    model = _model(session)
    tags = {
        "auth_mode": AUTH_MODE,
        "session_source": "cli",
        "originator": ORIGINATOR,
        "model": model,
        "app.version": session.app_version,
    }
    out: list[Measurement] = []

    def add(ts: int, instrument: Instrument, value: int | float, extra: dict[str, Any]) -> None:
        out.append(Measurement(ts, instrument, value, {**tags, **extra}))

    for prompt in session.timeline():
        usage = {"input": 0, "cached_input": 0, "output": 0, "reasoning_output": 0}
        first_token: int | None = None
        for placed in prompt.steps:
            step = placed.step
            if isinstance(step, ModelRequest):
                _request_measurements(add, placed, step)
                if not step.exhausted:
                    usage["input"] += step.inclusive_input
                    usage["cached_input"] += step.cache_read_tokens
                    usage["output"] += step.output_tokens
                    usage["reasoning_output"] += step.reasoning_tokens
                    if first_token is None:
                        first_token = (placed.attempts()[-1][0] - prompt.start_ns) // _MS + step.ttft_ms
            elif isinstance(step, ToolUse):
                success = "true" if step.executed and step.success else "false"
                attrs = {"tool": step.name, "success": success}
                add(placed.end_ns, TOOL_CALL, 1, attrs)
                add(placed.end_ns, TOOL_CALL_DURATION, float(step.wall_ms - step.wait_ms), attrs)
        end = prompt.end_ns
        for kind, value in (("total", usage["input"] + usage["output"]), *usage.items()):
            add(end, TURN_TOKEN_USAGE, float(value), {"token_type": kind, "tmp_mem_enabled": "false"})
        add(end, TURN_E2E, float((end - prompt.start_ns) // _MS), {})
        if first_token is not None:
            add(end, TURN_TTFT, float(first_token), {})
    return out


def _request_measurements(add: Any, placed: Placed, request: ModelRequest) -> None:
    statuses = [(f.status_code, f.duration_ms) for f in request.failures]
    if not request.exhausted:
        statuses.append((200, request.ttft_ms))
    for (start, _), (status, ms) in zip(placed.attempts(), statuses, strict=True):
        ok = status is not None and 200 <= status < 300
        attrs = {
            "status": str(status) if status is not None else "none",
            "success": "true" if ok else "false",
        }
        add(start + ms * _MS, API_REQUEST, 1, attrs)
        add(start + ms * _MS, API_REQUEST_DURATION, float(ms), attrs)
    if request.exhausted:
        return
    for ts, kind, ms in sse_events(placed):
        attrs = {"kind": kind, "success": "true"}
        add(ts, SSE_EVENT, 1, attrs)
        add(ts, SSE_EVENT_DURATION, float(ms), attrs)
