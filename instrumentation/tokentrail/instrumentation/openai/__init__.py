"""openai: a `chat {model}` span for every chat completion, sync, async and streaming.

Usage comes from the response, or from the final chunk of a stream; input tokens are OpenAI's
`prompt_tokens`, which include the cached part (OTel semantics). A stream is wrapped so the span
ends when the stream is consumed, closed or left; everything else about it is unchanged.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from tokentrail import semconv as sc
from tokentrail.instrumentation import _content
from tokentrail.instrumentation._safe import safely

__all__ = ["OpenAIInstrumentor"]

_instruments = ("openai >= 1.40",)
_MODULE = "openai.resources.chat.completions"


def _messages(messages: Any) -> list[dict[str, Any]]:
    out = []
    for m in messages or ():
        content = m.get("content") if isinstance(m, dict) else None
        role = m.get("role", "user") if isinstance(m, dict) else "user"
        parts: list[dict[str, Any]] = []
        if isinstance(content, str):
            parts.append({"type": "text", "content": content})
        elif isinstance(content, list):
            parts.extend({"type": "text", "content": p.get("text", "")} for p in content if isinstance(p, dict))
        out.append({"role": role, "parts": parts})
    return out


@safely
def _start(instance: Any, kwargs: dict[str, Any]) -> Span:
    model = str(kwargs.get("model", ""))
    attributes: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT, sc.GEN_AI_PROVIDER_NAME: "openai", sc.GEN_AI_REQUEST_MODEL: model,
    }  # fmt: skip
    for key, arg in ((sc.GEN_AI_REQUEST_MAX_TOKENS, "max_tokens"), (sc.GEN_AI_REQUEST_TEMPERATURE, "temperature"),
                     (sc.GEN_AI_REQUEST_TOP_P, "top_p"), (sc.GEN_AI_REQUEST_STREAM, "stream")):  # fmt: skip
        if isinstance(kwargs.get(arg), (int, float, bool)):
            attributes[key] = kwargs[arg]
    base = urlsplit(str(getattr(getattr(instance, "_client", None), "base_url", "")))
    if base.hostname:
        attributes[sc.SERVER_ADDRESS] = base.hostname
        attributes[sc.SERVER_PORT] = base.port or (443 if base.scheme == "https" else 80)
    messages = _content.policy().prepare(_messages(kwargs.get("messages")))
    if messages is not None:
        attributes[sc.GEN_AI_INPUT_MESSAGES] = messages
    return trace.get_tracer("tokentrail.openai").start_span(f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes)


@safely
def _record(span: Span, *, model: Any, ident: Any, finish: list[str], usage: Any, text: str | None) -> None:
    if model:
        span.set_attribute(sc.GEN_AI_RESPONSE_MODEL, str(model))
    if ident:
        span.set_attribute(sc.GEN_AI_RESPONSE_ID, str(ident))
    if finish:
        span.set_attribute(sc.GEN_AI_RESPONSE_FINISH_REASONS, finish)
    if usage is not None:
        span.set_attribute(sc.GEN_AI_USAGE_INPUT_TOKENS, int(usage.prompt_tokens or 0))
        span.set_attribute(sc.GEN_AI_USAGE_OUTPUT_TOKENS, int(usage.completion_tokens or 0))
        cached = getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", None)
        if cached is not None:
            span.set_attribute(sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, int(cached))
        reasoning = getattr(getattr(usage, "completion_tokens_details", None), "reasoning_tokens", None)
        if reasoning is not None:
            span.set_attribute(sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, int(reasoning))
    output = _content.policy().prepare([{"role": "assistant", "parts": [{"type": "text", "content": text}]}]) if text else None
    if output is not None:
        span.set_attribute(sc.GEN_AI_OUTPUT_MESSAGES, output)


def _record_response(span: Span, response: Any) -> None:
    choices = getattr(response, "choices", None) or []
    text = getattr(getattr(choices[0], "message", None), "content", None) if choices else None
    _record(span, model=getattr(response, "model", None), ident=getattr(response, "id", None),
            finish=[str(c.finish_reason) for c in choices if getattr(c, "finish_reason", None)],
            usage=getattr(response, "usage", None), text=text)  # fmt: skip


def _fail(span: Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, str(exc)[:500]))
    span.set_attribute(sc.ERROR_TYPE, type(exc).__qualname__)
    span.end()


class _StreamProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """Passes every chunk through and ends the span once, when the stream is done with."""

    def __init__(self, stream: Any, span: Span) -> None:
        super().__init__(stream)
        self._self_span = span
        self._self_state: dict[str, Any] = {"text": [], "finish": [], "usage": None, "model": None, "id": None}
        self._self_done = False

    def _self_observe(self, chunk: Any) -> None:
        state = self._self_state
        state["model"] = state["model"] or getattr(chunk, "model", None)
        state["id"] = state["id"] or getattr(chunk, "id", None)
        if getattr(chunk, "usage", None) is not None:
            state["usage"] = chunk.usage
        for choice in getattr(chunk, "choices", None) or []:
            if getattr(choice, "finish_reason", None):
                state["finish"].append(str(choice.finish_reason))
            content = getattr(getattr(choice, "delta", None), "content", None)
            if content:
                state["text"].append(content)

    def _self_end(self, exc: BaseException | None = None) -> None:
        if self._self_done:
            return
        self._self_done = True
        if exc is not None:
            _fail(self._self_span, exc)
            return
        s = self._self_state
        _record(self._self_span, model=s["model"], ident=s["id"], finish=s["finish"], usage=s["usage"],
                text="".join(s["text"]) or None)  # fmt: skip
        self._self_span.end()

    def __iter__(self) -> Any:
        try:
            for chunk in self.__wrapped__:
                safely(self._self_observe)(chunk)
                yield chunk
        except BaseException as exc:
            self._self_end(exc)
            raise
        self._self_end()

    async def __aiter__(self) -> Any:
        try:
            async for chunk in self.__wrapped__:
                safely(self._self_observe)(chunk)
                yield chunk
        except BaseException as exc:
            self._self_end(exc)
            raise
        self._self_end()

    def close(self) -> Any:
        self._self_end()
        return self.__wrapped__.close()

    def __enter__(self) -> Any:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        self._self_end()
        return self.__wrapped__.__exit__(*exc)

    async def __aenter__(self) -> Any:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        self._self_end()
        return await self.__wrapped__.__aexit__(*exc)


def _finished(span: Span, response: Any, kwargs: dict[str, Any]) -> Any:
    """End the span now, or hand it to a stream proxy that ends it when the stream is done."""
    if kwargs.get("stream"):
        return _StreamProxy(response, span)
    _record_response(span, response)
    span.end()
    return response


def _sync_create(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    span = _start(instance, kwargs)
    if span is None:
        return wrapped(*args, **kwargs)
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        response = wrapped(*args, **kwargs)
    except BaseException as exc:
        _fail(span, exc)
        raise
    finally:
        otel_context.detach(token)
    return _finished(span, response, kwargs)


async def _async_create(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    span = _start(instance, kwargs)
    if span is None:
        return await wrapped(*args, **kwargs)
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        response = await wrapped(*args, **kwargs)
    except BaseException as exc:
        _fail(span, exc)
        raise
    finally:
        otel_context.detach(token)
    return _finished(span, response, kwargs)


class OpenAIInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        wrapt.wrap_function_wrapper(_MODULE, "Completions.create", _sync_create)
        wrapt.wrap_function_wrapper(_MODULE, "AsyncCompletions.create", _async_create)

    def _uninstrument(self, **kwargs: Any) -> None:
        import openai.resources.chat.completions as module

        unwrap(module.Completions, "create")
        unwrap(module.AsyncCompletions, "create")
