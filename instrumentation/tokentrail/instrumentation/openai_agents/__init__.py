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

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from agents.tracing import TracingProcessor
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from tokentrail import semconv as sc
from tokentrail.instrumentation import _content, _invocation, _spans
from tokentrail.instrumentation._invocation import get_field, text_part, tool_call_part, tool_response_part
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


@dataclass
class _Open:
    span: Span
    scope: _spans.Scope
    previous: otel_context.Context  # the context current before this span was made current
    named: bool  # whether the span's name already carries what it names (a model, a target agent)
    tool_calls: list[tuple[str, str]] = field(default_factory=list)  # (tool name, call id) not yet run


# --- reading SDK payloads (never raise: every caller is wrapped in `safely`) -------------------------


def _parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [text_part(content)] if content else []
    parts: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else ():
        text = get_field(block, "text")
        if isinstance(text, str):
            parts.append(text_part(text))
        elif get_field(block, "type"):
            parts.append({"type": str(get_field(block, "type"))})
    return parts


def _message(item: Any) -> dict[str, Any] | None:
    """One Chat Completions message or Responses item; None for items that are not messages."""
    kind, role = get_field(item, "type"), get_field(item, "role")
    if kind == "function_call":  # Responses: the model asked for a tool
        call = tool_call_part(
            get_field(item, "call_id"), get_field(item, "name"), get_field(item, "arguments")
        )
        return {"role": "assistant", "parts": [call]}
    if kind == "function_call_output":  # Responses: a tool's answer
        return {
            "role": "tool",
            "parts": [tool_response_part(get_field(item, "call_id"), get_field(item, "output"))],
        }
    if role == "tool":  # Chat Completions: a tool's answer
        ident = get_field(item, "call_id") or get_field(item, "tool_call_id")
        return {"role": "tool", "parts": [tool_response_part(ident, get_field(item, "content"))]}
    if not role:
        return None
    parts = _parts(get_field(item, "content"))
    for call in get_field(item, "tool_calls") or ():
        function = get_field(call, "function")
        parts.append(
            tool_call_part(
                get_field(call, "id"), get_field(function, "name"), get_field(function, "arguments")
            )
        )
    return {"role": str(role), "parts": parts}


def _messages(items: Any) -> list[dict[str, Any]]:
    """Chat Completions messages or Responses items, in the OTel GenAI message shape."""
    if isinstance(items, str):
        return [{"role": "user", "parts": [text_part(items)]}]
    messages = (_message(item) for item in (items if isinstance(items, (list, tuple)) else ()))
    return [m for m in messages if m is not None]


def _tool_calls(items: Any) -> list[tuple[str, str]]:
    """(name, id) of the tool calls a model's output asks for, in order."""
    calls: list[tuple[str, str]] = []
    for item in items if isinstance(items, (list, tuple)) else ():
        if get_field(item, "type") == "function_call" and get_field(item, "call_id"):
            calls.append((str(get_field(item, "name")), str(get_field(item, "call_id"))))
        for call in get_field(item, "tool_calls") or ():
            if get_field(call, "id"):
                calls.append(
                    (str(get_field(get_field(call, "function"), "name")), str(get_field(call, "id")))
                )
    return calls


def _set_usage(span: Span, usage: Any) -> None:
    """The SDK's usage (a dict on generation spans, a `ResponseUsage` on responses), in OpenAI's
    shape; the SDK fills in a cache write count of 0 where the provider reported none."""
    counted = _invocation.openai_usage(usage, chat=False)
    _invocation.set_usage(span, replace(counted, cache_write=counted.cache_write or None))


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
        scope: _spans.Scope | None = None,
    ) -> _Open:
        if scope is None:
            scope = parent.scope if parent is not None else _spans.current_scope()
        context = trace.set_span_in_context(parent.span) if parent is not None else None
        span = _spans.start_span(_TRACER, name, kind, attributes, scope=scope, context=context)
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
        outer = _spans.current_scope()
        scope: _spans.Scope = (getattr(trace_, "group_id", None) or outer[0], outer[1], outer[2])
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
                    output = data.output if data.type == "generation" else get_field(data.response, "output")
                    parent.tool_calls.extend(_tool_calls(output))
            error = span.error
            if error:
                message = str(get_field(error, "message") or "error")
                detail = get_field(get_field(error, "data"), "error")
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


# --- what each kind of SDK span becomes ----------------------------------------------------------------

Described = tuple[str, SpanKind, dict[str, Any]]  # span name, kind, attributes at the start


def _agent(data: Any) -> Described:
    attributes = {sc.GEN_AI_OPERATION_NAME: sc.OP_INVOKE_AGENT, sc.GEN_AI_AGENT_NAME: data.name}
    return f"invoke_agent {data.name}", SpanKind.INTERNAL, attributes


def _model_call(data: Any) -> Described:
    """A generation (Chat Completions) or response (Responses API) span: a model call."""
    model = getattr(data, "model", None) or get_field(getattr(data, "response", None), "model")
    config = getattr(data, "model_config", None) or {}
    params = {
        attr: value
        for attr, param in (
            (sc.GEN_AI_REQUEST_TEMPERATURE, "temperature"),
            (sc.GEN_AI_REQUEST_TOP_P, "top_p"),
            (sc.GEN_AI_REQUEST_MAX_TOKENS, "max_tokens"),
        )
        if isinstance(value := get_field(config, param), (int, float)) and not isinstance(value, bool)
    }
    base_url = get_field(config, "base_url")
    request = _invocation.Request(
        sc.OP_CHAT, "openai", model, server=str(base_url) if base_url else None, params=params
    )
    return _invocation.span_name(request), SpanKind.CLIENT, _invocation.request_attributes(request)


def _function(data: Any) -> Described:
    attributes = {
        sc.GEN_AI_OPERATION_NAME: sc.OP_EXECUTE_TOOL,
        sc.GEN_AI_TOOL_NAME: data.name,
        sc.GEN_AI_TOOL_TYPE: "function",
    }
    return f"execute_tool {data.name}", SpanKind.INTERNAL, attributes


def _handoff(data: Any) -> Described:
    to_agent = getattr(data, "to_agent", None)
    attributes = {
        sc.GEN_AI_OPERATION_NAME: OP_AGENT_HANDOFF,
        sc.TT_STEP_KIND: sc.STEP_OTHER,
        sc.TT_STEP_SUBKIND: "handoff",
        GEN_AI_HANDOFF_FROM_AGENT: getattr(data, "from_agent", None),
        GEN_AI_HANDOFF_TO_AGENT: to_agent,
    }
    return (f"handoff {to_agent}" if to_agent else "handoff"), SpanKind.INTERNAL, attributes


def _guardrail(data: Any) -> Described:
    attributes = {
        sc.GEN_AI_OPERATION_NAME: OP_GUARDRAIL_CHECK,
        sc.TT_STEP_KIND: sc.STEP_OTHER,
        sc.TT_STEP_SUBKIND: "guardrail",
        GEN_AI_GUARDRAIL_NAME: data.name,
    }
    return f"guardrail {data.name}", SpanKind.INTERNAL, attributes


_DESCRIBE = {
    "agent": _agent,
    "generation": _model_call,
    "response": _model_call,
    "function": _function,
    "handoff": _handoff,
    "guardrail": _guardrail,
}


def _describe(data: Any, kind: str) -> Described:
    """Span name, kind and start attributes for one SDK span."""
    describe = _DESCRIBE.get(kind)
    if describe is not None:
        return describe(data)
    # custom, mcp_tools, speech, transcription, and types newer than this module
    label = getattr(data, "name", None) or getattr(data, "server", None)
    attributes = {sc.TT_STEP_KIND: sc.STEP_OTHER, sc.TT_STEP_SUBKIND: kind or None}
    return (f"{kind or 'span'} {label}" if label else kind or "span"), SpanKind.INTERNAL, attributes


# --- what each kind of SDK span says only when it ends ----------------------------------------------


def _end_generation(opened: _Open, data: Any) -> None:
    span = opened.span
    if data.model and not opened.named:
        span.update_name(f"chat {data.model}")
    _set_usage(span, data.usage)
    if _content.capturing():
        _invocation.set_messages(span, input=_messages(data.input), output=_messages(data.output))


def _end_response(opened: _Open, data: Any) -> None:
    span, response = opened.span, data.response
    model = get_field(response, "model")
    _invocation.set_response(span, model=model, ident=get_field(response, "id"), finish=())
    if model and not opened.named:
        span.update_name(f"chat {model}")
        span.set_attribute(sc.GEN_AI_REQUEST_MODEL, str(model))
    _set_usage(span, get_field(response, "usage") or data.usage)
    if _content.capturing():
        output = _messages(get_field(response, "output"))
        _invocation.set_messages(span, input=_messages(data.input), output=output)


def _end_function(opened: _Open, data: Any) -> None:
    _content.record(opened.span, sc.GEN_AI_TOOL_CALL_ARGUMENTS, data.input)
    _content.record(opened.span, sc.GEN_AI_TOOL_CALL_RESULT, data.output)


def _end_handoff(opened: _Open, data: Any) -> None:
    for attr, value in (
        (GEN_AI_HANDOFF_FROM_AGENT, data.from_agent),
        (GEN_AI_HANDOFF_TO_AGENT, data.to_agent),
    ):
        if value:
            opened.span.set_attribute(attr, str(value))
    if data.to_agent and not opened.named:
        opened.span.update_name(f"handoff {data.to_agent}")


def _end_guardrail(opened: _Open, data: Any) -> None:
    opened.span.set_attribute(GEN_AI_GUARDRAIL_TRIGGERED, bool(data.triggered))


_FINISH = {
    "generation": _end_generation,
    "response": _end_response,
    "function": _end_function,
    "handoff": _end_handoff,
    "guardrail": _end_guardrail,
}


def _finish(opened: _Open, data: Any, kind: str) -> None:
    """Attributes only known when the SDK span ends."""
    finish = _FINISH.get(kind)
    if finish is not None:
        finish(opened, data)


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
