"""One model call as a GenAI span, made the same way by every instrumentor and by `tokentrail.llm`.

The OTel GenAI conventions describe an inference (`chat`, `text_completion`, `embeddings`) as one
CLIENT span. An instrumentor reads its library's objects and hands over what it found; this module
turns that into the span, in three steps:
- start: `{operation} {model}` with the request — operation, provider, requested model, server,
  request parameters and, when content capture is on, system instructions and input messages —
  all set when the span starts, where a sampler sees them (`Request`, `start`);
- what came back: response model, id and finish reasons (`set_response`), token usage
  (`set_usage`), messages (`set_messages`);
- the end: `span.end()`, or `fail` for an exception (an `exception` event, status ERROR,
  `error.type`), which also ends the span.

Usage is in OTel semantics: input tokens include cache reads and cache writes, output tokens
include reasoning. Providers count differently: `openai_usage` reads OpenAI's shape (its input
count already includes the cached part), `anthropic_usage` Anthropic's (its input count leaves
cache reads and writes out, so they are added). A count the provider did not report stays unset.

Messages take the conventions' shape, `[{"role": …, "parts": [{"type": "text", "content": …}]}]`,
built from `text_part`, `reasoning_part`, `tool_call_part` and `tool_response_part`. An empty
conversation is not recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry.trace import Span, SpanKind

from tokentrail import semconv as sc
from tokentrail.instrumentation import _content, _spans
from tokentrail.instrumentation._safe import safely

__all__ = [
    "Request",
    "Usage",
    "anthropic_usage",
    "as_count",
    "fail",
    "get_field",
    "openai_usage",
    "reasoning_part",
    "request_attributes",
    "set_messages",
    "set_response",
    "set_usage",
    "span_name",
    "start",
    "text_part",
    "tool_call_part",
    "tool_response_part",
]


@dataclass(frozen=True)
class Request:
    """What a model call asks for, as far as its library tells."""

    operation: str
    provider: str | None
    model: Any
    #: the base URL the client sends to: `server.address` and `server.port`
    server: str | None = None
    #: request parameters by attribute (`gen_ai.request.temperature`: 0.2, …)
    params: Mapping[str, Any] = field(default_factory=dict)
    #: system instructions and input messages, in the conventions' shape; recorded only when content
    #: capture is on, so callers build them only then (`_content.capturing()`)
    system: Any = None
    messages: Any = None


@dataclass(frozen=True)
class Usage:
    """Token counts in OTel semantics; None where the provider did not say."""

    input_tokens: int | None = None  # includes cache reads and writes
    output_tokens: int | None = None  # includes reasoning
    cache_read: int | None = None
    cache_write: int | None = None
    reasoning: int | None = None


def span_name(request: Request) -> str:
    return f"{request.operation} {request.model}" if request.model else request.operation


def _server(url: str | None) -> dict[str, Any]:
    base = urlsplit(url or "")
    if not base.hostname:
        return {}
    return {
        sc.SERVER_ADDRESS: base.hostname,
        sc.SERVER_PORT: base.port or (443 if base.scheme == "https" else 80),
    }


def request_attributes(request: Request) -> dict[str, Any]:
    """The span's attributes at its start; None values are left out when the span starts."""
    attributes: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: request.operation,
        sc.GEN_AI_PROVIDER_NAME: request.provider,
        sc.GEN_AI_REQUEST_MODEL: str(request.model) if request.model else None,
        **_server(request.server),
        **request.params,
    }
    if _content.capturing():
        for key, value in (
            (sc.GEN_AI_SYSTEM_INSTRUCTIONS, request.system),
            (sc.GEN_AI_INPUT_MESSAGES, request.messages),
        ):
            if value:
                attributes[key] = _content.prepare(value)
    return attributes


def start(
    tracer: str,
    request: Request,
    *,
    scope: _spans.Scope = (None, None, None),
    context: otel_context.Context | None = None,
) -> Span:
    """The model call's CLIENT span, under `context` (default: the current span)."""
    return _spans.start_span(
        tracer,
        span_name(request),
        SpanKind.CLIENT,
        request_attributes(request),
        scope=scope,
        context=context,
    )


def set_response(span: Span, *, model: Any, ident: Any, finish: Sequence[str]) -> None:
    if model:
        span.set_attribute(sc.GEN_AI_RESPONSE_MODEL, str(model))
    if ident:
        span.set_attribute(sc.GEN_AI_RESPONSE_ID, str(ident))
    if finish:
        span.set_attribute(sc.GEN_AI_RESPONSE_FINISH_REASONS, list(finish))


def set_usage(span: Span, usage: Usage) -> None:
    for key, value in (
        (sc.GEN_AI_USAGE_INPUT_TOKENS, usage.input_tokens),
        (sc.GEN_AI_USAGE_OUTPUT_TOKENS, usage.output_tokens),
        (sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, usage.cache_read),
        (sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS, usage.cache_write),
        (sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, usage.reasoning),
    ):
        if value is not None:
            span.set_attribute(key, int(value))


def set_messages(span: Span, *, input: Any = None, output: Any = None, system: Any = None) -> None:
    """Conversation content known only after the call, as far as the capture policy allows."""
    for key, value in (
        (sc.GEN_AI_INPUT_MESSAGES, input),
        (sc.GEN_AI_OUTPUT_MESSAGES, output),
        (sc.GEN_AI_SYSTEM_INSTRUCTIONS, system),
    ):
        if value:
            _content.record(span, key, value)


@safely
def fail(span: Span, error: BaseException) -> None:
    """Record the call's exception and end its span."""
    try:
        _spans.record_failure(span, error)
    finally:
        span.end()


# --- usage as the providers report it -------------------------------------------------------------


def get_field(obj: Any, key: str) -> Any:
    """A field of a dict (a request's) or of a model object (a response's) alike; None when absent."""
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def as_count(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def openai_usage(usage: Any, *, chat: bool) -> Usage:
    """OpenAI's usage, of chat completions (`prompt_…`/`completion_…`) or of the Responses API
    (`input_…`/`output_…`); its input count already includes the cached part."""
    inputs, outputs = ("prompt", "completion") if chat else ("input", "output")
    details_in, details_out = (
        get_field(usage, f"{inputs}_tokens_details"),
        get_field(usage, f"{outputs}_tokens_details"),
    )
    return Usage(
        input_tokens=as_count(get_field(usage, f"{inputs}_tokens")),
        output_tokens=as_count(get_field(usage, f"{outputs}_tokens")),
        cache_read=as_count(get_field(details_in, "cached_tokens")),
        cache_write=as_count(get_field(details_in, "cache_write_tokens")),
        reasoning=as_count(get_field(details_out, "reasoning_tokens")),
    )


def anthropic_usage(usage: Any) -> Usage:
    """Anthropic's usage: its `input_tokens` leaves out cache reads and writes, which are added."""
    fresh = as_count(get_field(usage, "input_tokens"))
    read = as_count(get_field(usage, "cache_read_input_tokens"))
    write = as_count(get_field(usage, "cache_creation_input_tokens"))
    return Usage(
        input_tokens=None if fresh is None else fresh + (read or 0) + (write or 0),
        output_tokens=as_count(get_field(usage, "output_tokens")),
        cache_read=read,
        cache_write=write,
        reasoning=as_count(get_field(get_field(usage, "output_tokens_details"), "thinking_tokens")),
    )


# --- the message shape -----------------------------------------------------------------------------


def text_part(content: Any) -> dict[str, Any]:
    return {"type": "text", "content": content}


def reasoning_part(content: Any) -> dict[str, Any]:
    return {"type": "reasoning", "content": content}


def tool_call_part(ident: Any, name: Any, arguments: Any) -> dict[str, Any]:
    return {"type": "tool_call", "id": ident, "name": name, "arguments": arguments}


def tool_response_part(ident: Any, response: Any) -> dict[str, Any]:
    return {"type": "tool_call_response", "id": ident, "response": response}
