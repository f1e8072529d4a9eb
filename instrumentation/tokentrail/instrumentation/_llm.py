"""What the model-client instrumentors share, so every provider's `chat {model}` span behaves alike.

A provider module says how to start its span and how to read a response or a stream's items; the
span's context, its failures and the lifetime of a streamed response are handled here once. The
user's exceptions pass through unchanged; our own reading of requests and responses never raises.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from tokentrail import semconv as sc
from tokentrail.instrumentation import _content
from tokentrail.instrumentation._safe import safely

__all__ = [
    "Accumulator",
    "Hooks",
    "StreamProxy",
    "async_wrapper",
    "fail",
    "finished",
    "scalars",
    "sent",
    "set_content",
    "set_response",
    "set_usage",
    "start_chat",
    "sync_wrapper",
]

Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]


class Accumulator(Protocol):
    """Gathers what a streamed response says, item by item, and puts it on the span at the end."""

    def add(self, item: Any) -> None: ...

    def record(self, span: Span) -> None: ...


@dataclass(frozen=True)
class Hooks:
    """A provider's part: `start` returns None when it failed, and the call then runs untraced."""

    start: Callable[[Any, dict[str, Any]], Span | None]
    record: Callable[[Span, Any], None]
    accumulator: Callable[[], Accumulator]


def sent(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The call's arguments as the request body will carry them: `extra_body` overrides, as in the SDKs.

    Parameters an SDK version has no argument for (Anthropic's `temperature` in newer clients) are
    passed this way, and still belong on the span.
    """
    extra = kwargs.get("extra_body")
    return {**kwargs, **extra} if isinstance(extra, Mapping) else dict(kwargs)


def scalars(kwargs: Mapping[str, Any], params: Mapping[str, str]) -> dict[str, Any]:
    """`{attribute: kwargs[arg]}` for the numeric and boolean arguments given; SDK sentinels are skipped."""
    return {
        key: kwargs[arg] for key, arg in params.items() if isinstance(kwargs.get(arg), (int, float, bool))
    }


def start_chat(
    tracer: str,
    provider: str,
    instance: Any,
    kwargs: Mapping[str, Any],
    attributes: Mapping[str, Any],
    operation: str = sc.OP_CHAT,
) -> Span:
    """A CLIENT span for one model call (`chat {model}`, `embeddings {model}`), with the attributes a
    sampler should see from the start."""
    model = str(kwargs.get("model", ""))
    attrs: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: operation,
        sc.GEN_AI_PROVIDER_NAME: provider,
        sc.GEN_AI_REQUEST_MODEL: model,
    }
    # Both OpenAI- and Anthropic-style resources keep their client as `_client`.
    base = urlsplit(str(getattr(getattr(instance, "_client", None), "base_url", "")))
    if base.hostname:
        attrs[sc.SERVER_ADDRESS] = base.hostname
        attrs[sc.SERVER_PORT] = base.port or (443 if base.scheme == "https" else 80)
    attrs.update(attributes)
    return trace.get_tracer(tracer).start_span(f"{operation} {model}", kind=SpanKind.CLIENT, attributes=attrs)


def set_response(span: Span, *, model: Any, ident: Any, finish: Sequence[str]) -> None:
    if model:
        span.set_attribute(sc.GEN_AI_RESPONSE_MODEL, str(model))
    if ident:
        span.set_attribute(sc.GEN_AI_RESPONSE_ID, str(ident))
    if finish:
        span.set_attribute(sc.GEN_AI_RESPONSE_FINISH_REASONS, list(finish))


def set_usage(
    span: Span,
    *,
    input_tokens: int,
    output_tokens: int,
    cache_read: int | None = None,
    cache_write: int | None = None,
    reasoning: int | None = None,
) -> None:
    """Token counts in OTel semantics: `input_tokens` already includes the cached parts."""
    span.set_attribute(sc.GEN_AI_USAGE_INPUT_TOKENS, input_tokens)
    span.set_attribute(sc.GEN_AI_USAGE_OUTPUT_TOKENS, output_tokens)
    for key, value in (
        (sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, cache_read),
        (sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS, cache_write),
        (sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, reasoning),
    ):
        if value is not None:
            span.set_attribute(key, value)


def set_content(span: Span, key: str, value: Any) -> None:
    """Message content, only as far as the capture policy allows."""
    text = _content.policy().prepare(value) if value else None
    if text is not None:
        span.set_attribute(key, text)


@safely
def fail(span: Span, exc: BaseException) -> None:
    try:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, str(exc)[:500]))
        span.set_attribute(sc.ERROR_TYPE, type(exc).__qualname__)
    finally:
        span.end()


class StreamProxy(wrapt.ObjectProxy):  # type: ignore[misc]
    """Passes every item through and ends the span once: when the stream is used up, closed or left."""

    def __init__(self, stream: Any, span: Span, accumulator: Accumulator) -> None:
        super().__init__(stream)
        self._self_span = span
        self._self_acc = accumulator
        self._self_done = False

    def _self_add(self, item: Any) -> None:
        safely(self._self_acc.add)(item)

    def _self_end(self, exc: BaseException | None = None) -> None:
        if self._self_done:
            return
        self._self_done = True
        # Even a failed stream has been billed for what it read, so its usage so far is kept.
        safely(self._self_acc.record)(self._self_span)
        if exc is None or isinstance(exc, GeneratorExit):  # GeneratorExit: the reader stopped early
            self._self_span.end()
        else:
            fail(self._self_span, exc)

    def __iter__(self) -> Any:
        try:
            for item in self.__wrapped__:
                self._self_add(item)
                yield item
        except BaseException as exc:
            self._self_end(exc)
            raise
        self._self_end()

    def __next__(self) -> Any:
        try:
            item = next(self.__wrapped__)
        except StopIteration:
            self._self_end()
            raise
        except BaseException as exc:
            self._self_end(exc)
            raise
        self._self_add(item)
        return item

    async def __aiter__(self) -> Any:
        try:
            async for item in self.__wrapped__:
                self._self_add(item)
                yield item
        except BaseException as exc:
            self._self_end(exc)
            raise
        self._self_end()

    async def __anext__(self) -> Any:
        try:
            item = await self.__wrapped__.__anext__()
        except StopAsyncIteration:
            self._self_end()
            raise
        except BaseException as exc:
            self._self_end(exc)
            raise
        self._self_add(item)
        return item

    def close(self) -> Any:
        self._self_end()
        return self.__wrapped__.close()  # a coroutine for async streams, awaited by the caller

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


def finished(span: Span, response: Any, kwargs: Mapping[str, Any], hooks: Hooks) -> Any:
    """End the span now, or hand it to a stream proxy that ends it when the stream is done."""
    # A raw response (`with_raw_response`) of a streaming call is not iterable: it ends here, unread.
    if kwargs.get("stream") and (hasattr(type(response), "__iter__") or hasattr(type(response), "__aiter__")):
        accumulator = safely(hooks.accumulator)()
        if accumulator is not None:
            return StreamProxy(response, span, accumulator)
    safely(hooks.record)(span, response)
    span.end()
    return response


def sync_wrapper(hooks: Hooks) -> Wrapper:
    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        span = hooks.start(instance, kwargs)
        if span is None:
            return wrapped(*args, **kwargs)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            response = wrapped(*args, **kwargs)
        except BaseException as exc:
            fail(span, exc)
            raise
        finally:
            otel_context.detach(token)
        return finished(span, response, kwargs, hooks)

    return wrapper


def async_wrapper(hooks: Hooks) -> Wrapper:
    async def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        span = hooks.start(instance, kwargs)
        if span is None:
            return await wrapped(*args, **kwargs)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            response = await wrapped(*args, **kwargs)
        except BaseException as exc:
            fail(span, exc)
            raise
        finally:
            otel_context.detach(token)
        return finished(span, response, kwargs, hooks)

    return wrapper
