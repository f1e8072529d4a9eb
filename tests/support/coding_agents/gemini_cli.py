"""Gemini CLI's telemetry for a session: log events and metrics (packages/core/src/telemetry).

- Records are emitted by the `gemini-cli` logger with a human-readable body; the `event.name`
  attribute is the full name (`gemini_cli.api_response`). Common attributes: `session.id`,
  `installation.id`, `interactive`, `user.email`, `auth_type`. Numbers are numbers and
  `success` a boolean. Prompt content is logged by default (`logPrompts` true).
- Every attempt of a model call logs `gemini_cli.api_request` and then `gemini_cli.api_response`
  or `gemini_cli.api_error`, each followed by a `gen_ai.client.inference.operation.details`
  record (the OTel GenAI event, with `gen_ai.usage.*` on responses): a backend must not count
  those twice. All of them carry the prompt's `prompt_id`; a subagent's calls carry
  `<agent_id>#<turn>` instead.
- Tokens: `input_token_count` (Gemini's promptTokenCount) INCLUDES
  `cached_content_token_count`; `output_token_count` (candidatesTokenCount) EXCLUDES
  `thoughts_token_count`.
- A stream that ends without usable content is retried by the chat (`gemini_cli.chat.
  content_retry`) after its `api_response` was logged; `gemini_cli.tool_call` carries no call id.
- Metrics are cumulative (the JavaScript SDK's default), read every 10 s; `gemini_cli.*`
  counters and `ms` histograms, and the OTel `gen_ai.client.token.usage` (`token`) and
  `gen_ai.client.operation.duration` (`s`). An API error counts twice in
  `gemini_cli.api.request.count` (once with `error_type`, once without), as Gemini CLI does.
"""

from __future__ import annotations

import json
from typing import Any

from tests.support.coding_agents.otel import Instrument, LogEvent, Measurement, MetricPlan
from tests.support.coding_agents.scenario import (
    Compaction,
    FailedAttempt,
    ModelRequest,
    Placed,
    PlacedPrompt,
    Session,
    ToolUse,
    iso,
)

SERVICE_NAME = "gemini-cli"
SCOPE = "gemini-cli"
AUTH_TYPE = "gemini-api-key"
PROVIDER = "gcp.gen_ai"
OPERATION_DETAILS = "gen_ai.client.inference.operation.details"
SERVER = {"server.address": "generativelanguage.googleapis.com", "server.port": 443}

METRICS = MetricPlan(SCOPE, "cumulative", 10_000)
SESSION_COUNT = Instrument("gemini_cli.session.count", "counter", "", "Count of CLI sessions started.")
API_REQUEST_COUNT = Instrument(
    "gemini_cli.api.request.count", "counter", "", "Counts API requests, tagged by model and status."
)
API_REQUEST_LATENCY = Instrument(
    "gemini_cli.api.request.latency", "histogram", "ms", "Latency of API requests in milliseconds."
)
TOKEN_USAGE = Instrument("gemini_cli.token.usage", "counter", "", "Counts the total number of tokens used.")
TOOL_CALL_COUNT = Instrument(
    "gemini_cli.tool.call.count", "counter", "", "Counts tool calls, tagged by function name and success."
)
TOOL_CALL_LATENCY = Instrument(
    "gemini_cli.tool.call.latency", "histogram", "ms", "Latency of tool calls in milliseconds."
)
CHAT_COMPRESSION = Instrument("gemini_cli.chat_compression", "counter", "", "Counts chat compression events.")
CONTENT_RETRY = Instrument(
    "gemini_cli.chat.content_retry.count",
    "counter",
    "",
    "Counts retries due to content errors (e.g., empty stream).",
)
GENAI_TOKEN_USAGE = Instrument(
    "gen_ai.client.token.usage", "histogram", "token", "Number of input and output tokens used."
)
GENAI_DURATION = Instrument("gen_ai.client.operation.duration", "histogram", "s", "GenAI operation duration.")

_MS = 1_000_000


def resource(session: Session) -> dict[str, Any]:
    return {
        "service.name": SERVICE_NAME,
        "service.version": "v22.17.0",  # Gemini CLI reports Node's process.version
        "session.id": session.session_id,
        "host.name": "dev-laptop",
        "telemetry.sdk.language": "nodejs",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": "2.0.1",
        **session.resource,
    }


def common(session: Session) -> dict[str, Any]:
    return {
        "session.id": session.session_id,
        "installation.id": session.user_id,
        "interactive": True,
        "user.email": session.user_email,
        "auth_type": AUTH_TYPE,
    }


def role(placed: Placed) -> str:
    request = placed.step
    assert isinstance(request, ModelRequest)
    if placed.agent is not None:
        return "subagent"
    return "utility_compressor" if request.purpose == "compact" else "main"


def prompt_ids(prompt: PlacedPrompt) -> dict[int, str]:
    """The prompt_id each step's records carry: a subagent's turns have ids of their own."""
    ids: dict[int, str] = {}
    turns: dict[str, int] = {}
    for placed in prompt.steps:
        if placed.agent is None:
            ids[id(placed.step)] = prompt.prompt.prompt_id
            continue
        agent = placed.agent.agent_id
        if isinstance(placed.step, ModelRequest):
            turns[agent] = turns.get(agent, -1) + 1
        ids[id(placed.step)] = f"{agent}#{max(0, turns.get(agent, 0))}"
    return ids


def _convention(model: str, *, response: bool = True) -> dict[str, Any]:
    attrs = {
        "gen_ai.operation.name": "generate_content",
        "gen_ai.provider.name": PROVIDER,
        "gen_ai.request.model": model,
    }
    if response:
        attrs["gen_ai.response.model"] = model
    return attrs


_CONFIG = {"gen_ai.request.temperature": 1, "gen_ai.request.top_p": 0.95, "gen_ai.request.top_k": 64}


class _Events:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.common = common(session)
        self.out: list[LogEvent] = []

    def add(self, ts: int, name: str, body: str, attrs: dict[str, Any]) -> None:
        attributes = {**self.common, "event.name": name, "event.timestamp": iso(ts)}
        attributes.update({k: v for k, v in attrs.items() if v is not None})
        self.out.append(LogEvent(ts, attributes, body, SCOPE))

    def prompt(self, prompt: PlacedPrompt) -> None:
        p = prompt.prompt
        self.add(
            prompt.start_ns,
            "gemini_cli.user_prompt",
            f"User prompt. Length: {p.length}.",
            {
                "prompt_length": p.length,
                "prompt_id": p.prompt_id,
                "auth_type": AUTH_TYPE,
                "prompt": p.text if self.session.log_prompts else None,
            },
        )
        ids = prompt_ids(prompt)
        for placed in prompt.steps:
            pid = ids[id(placed.step)]
            step = placed.step
            if isinstance(step, ModelRequest):
                self.request(placed, step, pid)
            elif isinstance(step, ToolUse):
                self.tool(placed, step, pid)
            elif isinstance(step, Compaction):
                self.add(
                    placed.end_ns,
                    "gemini_cli.chat_compression",
                    f"Chat compression (Saved {step.tokens_before - step.tokens_after} tokens)",
                    {"tokens_before": step.tokens_before, "tokens_after": step.tokens_after},
                )

    def request(self, placed: Placed, r: ModelRequest, pid: str) -> None:
        failures: list[FailedAttempt | None] = [*r.failures, *([] if r.exhausted else [None])]
        for n, ((start, end), failure) in enumerate(zip(placed.attempts(), failures, strict=True)):
            self.api_request(start, r.model, pid, role(placed))
            if failure is not None and not failure.invalid_content:
                self.api_error(end, r.model, pid, role(placed), failure)
                continue
            self.api_response(end, placed, r, pid, empty=failure is not None)
            if failure is not None:
                self.add(
                    end,
                    "gemini_cli.chat.content_retry",
                    f"Content retry attempt {n} due to NO_RESPONSE_TEXT.",
                    {
                        "attempt_number": n,
                        "error_type": "NO_RESPONSE_TEXT",
                        "retry_delay_ms": failure.retry_delay_ms,
                        "model": r.model,
                    },
                )

    def api_request(self, ts: int, model: str, pid: str, role: str) -> None:
        self.add(
            ts,
            "gemini_cli.api_request",
            f"API request to {model}.",
            {"model": model, "prompt_id": pid, "role": role},
        )
        self.add(
            ts,
            OPERATION_DETAILS,
            f"GenAI operation request details from {model}.",
            {**_CONFIG, **_convention(model, response=False), **SERVER},
        )

    def api_error(self, ts: int, model: str, pid: str, role: str, failure: FailedAttempt) -> None:
        error_type = "ApiError" if failure.status_code is not None else "FetchError"
        self.add(
            ts,
            "gemini_cli.api_error",
            f"API error for {model}. Error: {failure.error}. Duration: {failure.duration_ms}ms.",
            {
                "error.message": failure.error,
                "model_name": model,
                "duration": failure.duration_ms,
                "model": model,
                "error": failure.error,
                "status_code": failure.status_code,
                "duration_ms": failure.duration_ms,
                "prompt_id": pid,
                "auth_type": AUTH_TYPE,
                "role": role,
                "error.type": error_type,
                "http.status_code": failure.status_code,
            },
        )
        self.add(
            ts,
            OPERATION_DETAILS,
            f"GenAI operation error details from {model}. Error: {failure.error}. Duration: {failure.duration_ms}ms.",
            {**_CONFIG, **_convention(model), **SERVER},
        )

    def api_response(self, ts: int, placed: Placed, r: ModelRequest, pid: str, *, empty: bool) -> None:
        usage = gemini_usage(r) if not empty else dict.fromkeys(gemini_usage(r), 0)
        duration = r.duration_ms
        finish = [] if empty else ["stop"]
        self.add(
            ts,
            "gemini_cli.api_response",
            f"API response from {r.model}. Status: 200. Duration: {duration}ms.",
            {
                "model": r.model,
                "duration_ms": duration,
                **usage,
                "prompt_id": pid,
                "auth_type": AUTH_TYPE,
                "status_code": 200,
                "finish_reasons": finish,
                "role": role(placed),
                "http.status_code": 200,
            },
        )
        self.add(
            ts,
            OPERATION_DETAILS,
            f"GenAI operation details from {r.model}. Status: 200. Duration: {duration}ms.",
            {
                "gen_ai.response.id": None if empty else r.request_id,  # only this record has it
                "gen_ai.response.finish_reasons": finish,
                **_CONFIG,
                **_convention(r.model),
                **SERVER,
                "gen_ai.usage.input_tokens": usage["input_token_count"],
                "gen_ai.usage.output_tokens": usage["output_token_count"],
            },
        )

    def tool(self, placed: Placed, t: ToolUse, pid: str) -> None:
        if t.subagent is not None and t.executed:
            agent = t.subagent
            self.add(
                placed.decided_ns(),
                "gemini_cli.agent.start",
                f"Agent {agent.name} started. ID: {agent.agent_id}",
                {"agent_id": agent.agent_id, "agent_name": agent.name},
            )
            turns = sum(isinstance(s, ModelRequest) for s in agent.steps)
            self.add(
                placed.end_ns,
                "gemini_cli.agent.finish",
                f"Agent {agent.name} finished. Reason: GOAL. Duration: {agent.wall_ms}ms. Turns: {turns}.",
                {
                    "agent_id": agent.agent_id,
                    "agent_name": agent.name,
                    "duration_ms": agent.wall_ms,
                    "turn_count": turns,
                    "terminate_reason": "GOAL",
                },
            )
        decision = tool_decision(t)
        success = t.executed and t.success
        duration = t.wall_ms - t.wait_ms if t.executed else 0
        body = f"Tool call: {t.name}{f'. Decision: {decision}' if decision else ''}. Success: {str(success).lower()}."
        error = None if success or not t.executed else t.error
        self.add(
            placed.end_ns,
            "gemini_cli.tool_call",
            f"{body} Duration: {duration}ms.",
            {
                "function_name": t.name,
                "duration_ms": duration,
                "success": success,
                "decision": decision,
                "prompt_id": pid,
                "tool_type": "native",
                "content_length": t.result_size_bytes if t.executed else None,
                "start_time": placed.decided_ns() // _MS,
                "end_time": placed.end_ns // _MS,
                "function_args": json.dumps(t.parameters, indent=2) if self.session.log_prompts else None,
                "error": error,
                "error.message": error,
                "error_type": error and "execution_failed",
                "error.type": error and "execution_failed",
            },
        )


def gemini_usage(r: ModelRequest) -> dict[str, int]:
    """api_response's usage: input includes cached content, output excludes thoughts."""
    candidates = r.output_tokens - r.reasoning_tokens
    return {
        "input_token_count": r.inclusive_input,
        "output_token_count": candidates,
        "cached_content_token_count": r.cache_read_tokens,
        "thoughts_token_count": r.reasoning_tokens,
        "tool_token_count": 0,
        "total_token_count": r.inclusive_input + candidates + r.reasoning_tokens,
    }


def tool_decision(tool: ToolUse) -> str | None:
    """Gemini CLI's decision: absent when no confirmation was asked (allowed by policy)."""
    if tool.decision == "reject":
        return "reject"
    return "accept" if tool.decision_source == "user" else None


def events(session: Session, *, trace_context: bool = False) -> list[LogEvent]:
    """The session's log records in the order Gemini CLI emits them."""
    builder = _Events(session)
    for prompt in session.timeline():
        builder.prompt(prompt)
    return sorted(builder.out, key=lambda e: e.ts_ns)


def measurements(session: Session) -> list[Measurement]:
    base = common(session)
    out = [Measurement(session.start_ns, SESSION_COUNT, 1, base)]

    def add(ts: int, instrument: Instrument, value: int | float, extra: dict[str, Any]) -> None:
        out.append(Measurement(ts, instrument, value, {**base, **extra}))

    for prompt in session.timeline():
        for placed in prompt.steps:
            step = placed.step
            if isinstance(step, ModelRequest):
                _request_measurements(add, placed, step)
            elif isinstance(step, ToolUse):
                attrs = {
                    "function_name": step.name,
                    "success": step.executed and step.success,
                    "tool_type": "native",
                }
                decision = tool_decision(step)
                if decision:
                    attrs["decision"] = decision
                add(placed.end_ns, TOOL_CALL_COUNT, 1, attrs)
                ms = step.wall_ms - step.wait_ms if step.executed else 0
                add(placed.end_ns, TOOL_CALL_LATENCY, ms, {"function_name": step.name})
            elif isinstance(step, Compaction):
                add(
                    placed.end_ns,
                    CHAT_COMPRESSION,
                    1,
                    {"tokens_before": step.tokens_before, "tokens_after": step.tokens_after},
                )
    return out


def _request_measurements(add: Any, placed: Placed, r: ModelRequest) -> None:
    convention = _convention(r.model)
    failures: list[FailedAttempt | None] = [*r.failures, *([] if r.exhausted else [None])]
    for (_, end), failure in zip(placed.attempts(), failures, strict=True):
        if failure is not None and not failure.invalid_content:
            error_type = "ApiError" if failure.status_code is not None else "FetchError"
            status: int | str = failure.status_code if failure.status_code is not None else "error"
            add(
                end, API_REQUEST_COUNT, 1, {"model": r.model, "status_code": status, "error_type": error_type}
            )
            add(end, API_REQUEST_LATENCY, failure.duration_ms, {"model": r.model})
            add(end, API_REQUEST_COUNT, 1, {"model": r.model, "status_code": status})
            add(end, API_REQUEST_LATENCY, failure.duration_ms, {"model": r.model})
            add(end, GENAI_DURATION, failure.duration_ms / 1000, {**convention, "error.type": error_type})
            continue
        usage = gemini_usage(r) if failure is None else dict.fromkeys(gemini_usage(r), 0)
        add(end, API_REQUEST_COUNT, 1, {"model": r.model, "status_code": 200})
        add(end, API_REQUEST_LATENCY, r.duration_ms, {"model": r.model})
        add(end, GENAI_DURATION, r.duration_ms / 1000, convention)
        for kind, key in (
            ("input", "input_token_count"),
            ("output", "output_token_count"),
            ("cache", "cached_content_token_count"),
            ("thought", "thoughts_token_count"),
            ("tool", "tool_token_count"),
        ):
            add(end, TOKEN_USAGE, usage[key], {"model": r.model, "type": kind})
            if kind in ("input", "output"):
                add(end, GENAI_TOKEN_USAGE, usage[key], {**convention, "gen_ai.token.type": kind})
        if failure is not None:
            add(end, CONTENT_RETRY, 1, {})
