"""openai_agents: the OpenAI Agents SDK's traces and spans as GenAI spans, from a tracing processor.

The SDK traces itself; a `TracingProcessor` added with `add_trace_processor` sees every trace and
span start and end, and maps them, keeping the SDK's nesting:
- the trace (one workflow, possibly several agents) → `invoke_workflow {workflow_name}`, with the
  trace's `group_id` as `gen_ai.conversation.id` on every span of it;
- agent → `invoke_agent {name}`; generation and response → `chat {model}` (CLIENT) with usage
  (input includes cached tokens, as OpenAI reports it); function → `execute_tool {name}`;
- handoff → `handoff {to_agent}` and guardrail → `guardrail {name}`, step kind other, with the
  attribute names OTel contrib's openai-agents instrumentation uses (from/to agent, name, triggered);
- the runner's task and turn spans are left out (their children move up): they only group, and
  their usage repeats their children's.

Each span is made current where the SDK starts it (the SDK keeps its own current span the same
way), so the openai client's span and manual spans inside a tool nest under it; the previous
context is restored where the SDK ends it. The SDK's default export to OpenAI is not touched:
turn it off with `set_trace_processors` or `OPENAI_AGENTS_DISABLE_TRACING` if it is not wanted
(the latter disables the SDK's tracing altogether, and with it these spans).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from agents.tracing import TracingProcessor
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from tokentrail import semconv as sc
from tokentrail.instrumentation import _api, _content, _llm
from tokentrail.instrumentation._safe import logger, safely

__all__ = ["OpenAIAgentsInstrumentor"]

_instruments = ("openai-agents >= 0.1",)
_TRACER = "tokentrail.openai_agents"

# Names OTel contrib's openai-agents instrumentation emits and the collector already reads;
# semconv.py does not carry them yet.
GEN_AI_HANDOFF_FROM_AGENT = "gen_ai.handoff.from_agent"
GEN_AI_HANDOFF_TO_AGENT = "gen_ai.handoff.to_agent"
GEN_AI_GUARDRAIL_NAME = "gen_ai.guardrail.name"
GEN_AI_GUARDRAIL_TRIGGERED = "gen_ai.guardrail.triggered"
OP_AGENT_HANDOFF = "agent_handoff"
OP_GUARDRAIL_CHECK = "guardrail_check"

_GROUPING = ("task", "turn")  # span types left out; their children move up to their parent
_MAX_ORPHANS = 1024

Scope = tuple[str | None, str | None, str | None]  # conversation, user, task


@dataclass
class _Open:
    span: Span
    scope: Scope
    previous: otel_context.Context  # the context current before this span was made current
    named: bool  # whether the span's name already carries what it names (a model, a target agent)
    tool_calls: list[tuple[str, str]] = field(default_factory=list)  # (tool name, call id) not yet run


# --- reading SDK payloads (never raise: every caller is wrapped in `safely`) -------------------------


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def _as_int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}] if content else []
    parts: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else ():
        text = _get(block, "text")
        if isinstance(text, str):
            parts.append({"type": "text", "content": text})
        elif _get(block, "type"):
            parts.append({"type": str(_get(block, "type"))})
    return parts


def _messages(items: Any) -> list[dict[str, Any]]:
    """Chat Completions messages or Responses items, in the OTel GenAI message shape."""
    if isinstance(items, str):
        return [{"role": "user", "parts": [{"type": "text", "content": items}]}]
    out: list[dict[str, Any]] = []
    for item in items if isinstance(items, (list, tuple)) else ():
        kind, role = _get(item, "type"), _get(item, "role")
        if kind == "function_call":  # Responses: the model asked for a tool
            out.append(
                {
                    "role": "assistant",
                    "parts": [
                        {
                            "type": "tool_call",
                            "id": _get(item, "call_id"),
                            "name": _get(item, "name"),
                            "arguments": _get(item, "arguments"),
                        }
                    ],
                }
            )
        elif kind == "function_call_output" or role == "tool":
            out.append(
                {
                    "role": "tool",
                    "parts": [
                        {
                            "type": "tool_call_response",
                            "id": _get(item, "call_id") or _get(item, "tool_call_id"),
                            "response": _get(item, "output")
                            if kind == "function_call_output"
                            else _get(item, "content"),
                        }
                    ],
                }
            )
        elif role:
            parts = _parts(_get(item, "content"))
            for call in _get(item, "tool_calls") or ():
                function = _get(call, "function")
                parts.append(
                    {
                        "type": "tool_call",
                        "id": _get(call, "id"),
                        "name": _get(function, "name"),
                        "arguments": _get(function, "arguments"),
                    }
                )
            out.append({"role": str(role), "parts": parts})
    return out


def _tool_calls(items: Any) -> list[tuple[str, str]]:
    """(name, id) of the tool calls a model's output asks for, in order."""
    calls: list[tuple[str, str]] = []
    for item in items if isinstance(items, (list, tuple)) else ():
        if _get(item, "type") == "function_call" and _get(item, "call_id"):
            calls.append((str(_get(item, "name")), str(_get(item, "call_id"))))
        for call in _get(item, "tool_calls") or ():
            if _get(call, "id"):
                calls.append((str(_get(_get(call, "function"), "name")), str(_get(call, "id"))))
    return calls


def _set_usage(span: Span, usage: Any) -> None:
    """The SDK's usage (a dict on generation spans, a `ResponseUsage` on responses): OpenAI semantics,
    input tokens include the cached ones."""
    input_tokens, output_tokens = _as_int(_get(usage, "input_tokens")), _as_int(_get(usage, "output_tokens"))
    if input_tokens is None or output_tokens is None:
        return
    details_in, details_out = _get(usage, "input_tokens_details"), _get(usage, "output_tokens_details")
    _llm.set_usage(
        span,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read=_as_int(_get(details_in, "cached_tokens")),
        cache_write=_as_int(_get(details_in, "cache_write_tokens")) or None,
        reasoning=_as_int(_get(details_out, "reasoning_tokens")),
    )


def _server(config: Any) -> dict[str, Any]:
    base = urlsplit(str(_get(config, "base_url") or ""))
    if not base.hostname:
        return {}
    return {
        sc.SERVER_ADDRESS: base.hostname,
        sc.SERVER_PORT: base.port or (443 if base.scheme == "https" else 80),
    }


# --- the processor ----------------------------------------------------------------------------------


class _Processor(TracingProcessor):  # type: ignore[misc]
    """Maps SDK traces and spans to OTel spans; starts nothing once its instrumentor is uninstrumented."""

    def __init__(self) -> None:
        self.active = True
        self._open: dict[str, _Open] = {}  # SDK trace or span id → its OTel span
        self._skipped: dict[str, str] = {}  # SDK task/turn span id → the id its children belong to
        self._orphans: dict[int, otel_context.Context] = {}  # ended spans that were not current then

    # -- the tree and the current context

    def _parent(self, span: Any) -> tuple[str, _Open | None]:
        key = span.parent_id or span.trace_id
        for _ in range(64):
            if key not in self._skipped:
                break
            key = self._skipped[key]
        return key, self._open.get(key)

    def _open_span(
        self,
        key: str,
        parent: _Open | None,
        name: str,
        kind: SpanKind,
        attributes: dict[str, Any],
        scope: Scope | None = None,
    ) -> _Open:
        if scope is None:
            scope = parent.scope if parent is not None else _api._scope.get()
        for attr, value in (
            (sc.GEN_AI_CONVERSATION_ID, scope[0]),
            (sc.USER_ID, scope[1]),
            (sc.TT_TASK_ID, scope[2]),
        ):
            if value and attr not in attributes:
                attributes[attr] = value
        context = trace.set_span_in_context(parent.span) if parent is not None else None
        span = trace.get_tracer(_TRACER).start_span(
            name,
            context=context,
            kind=kind,
            attributes={k: v for k, v in attributes.items() if v is not None},
        )
        previous = otel_context.get_current()
        otel_context.attach(trace.set_span_in_context(span, previous))
        opened = _Open(span=span, scope=scope, previous=previous, named=" " in name)
        self._open[key] = opened
        return opened

    def _close(self, key: str) -> _Open | None:
        opened = self._open.pop(key, None)
        if opened is None:
            return None
        opened.span.end()
        ident = opened.span.get_span_context().span_id
        if trace.get_current_span() is not opened.span:
            # Ended out of order, or in another context: whoever ends the span current here skips it.
            if len(self._orphans) >= _MAX_ORPHANS:
                self._orphans.clear()
            self._orphans[ident] = opened.previous
            return opened
        target = opened.previous
        for _ in range(64):
            below = trace.get_current_span(target).get_span_context().span_id
            if below not in self._orphans:
                break
            target = self._orphans.pop(below)
        otel_context.attach(target)
        return opened

    # -- traces

    @safely
    def on_trace_start(self, trace_: Any) -> None:
        if not self.active:
            return
        outer = _api._scope.get()
        scope: Scope = (getattr(trace_, "group_id", None) or outer[0], outer[1], outer[2])
        name = str(getattr(trace_, "name", "") or "workflow")
        attributes: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: sc.OP_INVOKE_WORKFLOW,
            sc.GEN_AI_WORKFLOW_NAME: name,
        }
        self._open_span(
            trace_.trace_id, None, f"invoke_workflow {name}", SpanKind.INTERNAL, attributes, scope
        )

    @safely
    def on_trace_end(self, trace_: Any) -> None:
        self._close(trace_.trace_id)

    # -- spans

    @safely
    def on_span_start(self, span: Any) -> None:
        if not self.active:
            return
        data = span.span_data
        kind = str(getattr(data, "type", "") or "")
        key, parent = self._parent(span)
        if kind in _GROUPING:
            self._skipped[span.span_id] = key
            return
        name, span_kind, attributes = _describe(data, kind)
        if kind == "function" and parent is not None:  # the call id, from the model output that asked for it
            call = next((c for c in parent.tool_calls if c[0] == data.name), None)
            if call is not None:
                parent.tool_calls.remove(call)
                attributes[sc.GEN_AI_TOOL_CALL_ID] = call[1]
        self._open_span(span.span_id, parent, name, span_kind, attributes)

    @safely
    def on_span_end(self, span: Any) -> None:
        if self._skipped.pop(span.span_id, None) is not None:
            return
        opened = self._open.get(span.span_id)
        if opened is None:
            return
        data = span.span_data
        try:
            _finish(opened, data, str(getattr(data, "type", "") or ""))
            if getattr(data, "type", None) in ("generation", "response"):
                _, parent = self._parent(span)
                if parent is not None:
                    output = data.output if data.type == "generation" else _get(data.response, "output")
                    parent.tool_calls.extend(_tool_calls(output))
            error = span.error
            if error:
                message = str(_get(error, "message") or "error")
                detail = _get(_get(error, "data"), "error")
                opened.span.set_status(
                    Status(StatusCode.ERROR, f"{message}: {detail}"[:500] if detail else message)
                )
                opened.span.set_attribute(sc.ERROR_TYPE, message[:100])
        except Exception:
            logger.debug("tokentrail: reading an openai-agents span failed", exc_info=True)
        self._close(span.span_id)

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass


def _describe(data: Any, kind: str) -> tuple[str, SpanKind, dict[str, Any]]:
    """Span name, kind and start attributes for one SDK span."""
    if kind == "agent":
        return (
            f"invoke_agent {data.name}",
            SpanKind.INTERNAL,
            {sc.GEN_AI_OPERATION_NAME: sc.OP_INVOKE_AGENT, sc.GEN_AI_AGENT_NAME: data.name},
        )
    if kind in ("generation", "response"):
        model = getattr(data, "model", None) or _get(getattr(data, "response", None), "model")
        attributes = {
            sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT,
            sc.GEN_AI_PROVIDER_NAME: "openai",
            sc.GEN_AI_REQUEST_MODEL: str(model) if model else None,
            **_server(getattr(data, "model_config", None)),
        }
        config = getattr(data, "model_config", None) or {}
        for attr, param in (
            (sc.GEN_AI_REQUEST_TEMPERATURE, "temperature"),
            (sc.GEN_AI_REQUEST_TOP_P, "top_p"),
            (sc.GEN_AI_REQUEST_MAX_TOKENS, "max_tokens"),
        ):
            value = _get(config, param)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                attributes[attr] = value
        return (f"chat {model}" if model else "chat"), SpanKind.CLIENT, attributes
    if kind == "function":
        return (
            f"execute_tool {data.name}",
            SpanKind.INTERNAL,
            {
                sc.GEN_AI_OPERATION_NAME: sc.OP_EXECUTE_TOOL,
                sc.GEN_AI_TOOL_NAME: data.name,
                sc.GEN_AI_TOOL_TYPE: "function",
            },
        )
    if kind == "handoff":
        to_agent = getattr(data, "to_agent", None)
        return (
            (f"handoff {to_agent}" if to_agent else "handoff"),
            SpanKind.INTERNAL,
            {
                sc.GEN_AI_OPERATION_NAME: OP_AGENT_HANDOFF,
                sc.TT_STEP_KIND: sc.STEP_OTHER,
                sc.TT_STEP_SUBKIND: "handoff",
                GEN_AI_HANDOFF_FROM_AGENT: getattr(data, "from_agent", None),
                GEN_AI_HANDOFF_TO_AGENT: to_agent,
            },
        )
    if kind == "guardrail":
        return (
            f"guardrail {data.name}",
            SpanKind.INTERNAL,
            {
                sc.GEN_AI_OPERATION_NAME: OP_GUARDRAIL_CHECK,
                sc.TT_STEP_KIND: sc.STEP_OTHER,
                sc.TT_STEP_SUBKIND: "guardrail",
                GEN_AI_GUARDRAIL_NAME: data.name,
            },
        )
    # custom, mcp_tools, speech, transcription, and types newer than this module
    label = getattr(data, "name", None) or getattr(data, "server", None)
    return (
        (f"{kind or 'span'} {label}" if label else kind or "span"),
        SpanKind.INTERNAL,
        {sc.TT_STEP_KIND: sc.STEP_OTHER, sc.TT_STEP_SUBKIND: kind or None},
    )


def _finish(opened: _Open, data: Any, kind: str) -> None:
    """Attributes only known when the SDK span ends."""
    span, policy = opened.span, _content.policy()
    if kind == "generation":
        if data.model and not opened.named:
            span.update_name(f"chat {data.model}")
        _set_usage(span, data.usage)
        if policy.enabled:
            _llm.set_content(span, sc.GEN_AI_INPUT_MESSAGES, _messages(data.input))
            _llm.set_content(span, sc.GEN_AI_OUTPUT_MESSAGES, _messages(data.output))
    elif kind == "response":
        response = data.response
        model = _get(response, "model")
        if model:
            span.set_attribute(sc.GEN_AI_RESPONSE_MODEL, str(model))
            if not opened.named:
                span.update_name(f"chat {model}")
                span.set_attribute(sc.GEN_AI_REQUEST_MODEL, str(model))
        if _get(response, "id"):
            span.set_attribute(sc.GEN_AI_RESPONSE_ID, str(response.id))
        _set_usage(span, _get(response, "usage") or data.usage)
        if policy.enabled:
            _llm.set_content(span, sc.GEN_AI_INPUT_MESSAGES, _messages(data.input))
            _llm.set_content(span, sc.GEN_AI_OUTPUT_MESSAGES, _messages(_get(response, "output")))
    elif kind == "function":
        for attr, value in (
            (sc.GEN_AI_TOOL_CALL_ARGUMENTS, data.input),
            (sc.GEN_AI_TOOL_CALL_RESULT, data.output),
        ):
            text = policy.prepare(value)
            if text is not None:
                span.set_attribute(attr, text)
    elif kind == "handoff":
        for attr, value in (
            (GEN_AI_HANDOFF_FROM_AGENT, data.from_agent),
            (GEN_AI_HANDOFF_TO_AGENT, data.to_agent),
        ):
            if value:
                span.set_attribute(attr, str(value))
        if data.to_agent and not opened.named:
            span.update_name(f"handoff {data.to_agent}")
    elif kind == "guardrail":
        span.set_attribute(GEN_AI_GUARDRAIL_TRIGGERED, bool(data.triggered))


class OpenAIAgentsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Adds a tracing processor to the Agents SDK; `uninstrument` makes it inert (the SDK has no
    public way to remove one), and spans already open still end."""

    _processor: _Processor | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        from agents.tracing import add_trace_processor

        self._processor = _Processor()
        add_trace_processor(self._processor)

    def _uninstrument(self, **kwargs: Any) -> None:
        processor, self._processor = self._processor, None
        if processor is None:
            return
        processor.active = False
        try:  # drop it from the SDK's list when this SDK version lets us see the list
            from agents.tracing import get_trace_provider, set_trace_processors

            current: Sequence[Any] | None = getattr(
                getattr(get_trace_provider(), "_multi_processor", None), "_processors", None
            )
            if isinstance(current, tuple) and processor in current and not processor._open:
                set_trace_processors([p for p in current if p is not processor])
        except Exception:
            logger.debug("tokentrail: removing the openai-agents processor failed", exc_info=True)
