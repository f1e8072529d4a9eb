"""Wrapping a model client's calls (openai, anthropic): the span is current during the call, a
failure fails it, and a streamed response keeps it open until the stream is done.

A provider module gives `Hooks`: how to start its span (through `_invocation.start`), how to read a
response, and how to gather a stream's items. A stream is returned wrapped in `StreamProxy`, which
ends the span once, when the stream is used up, closed or left. The user's exceptions pass through
unchanged; our own reading of requests and responses never raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span

from tokentrail.instrumentation import _invocation
from tokentrail.instrumentation._safe import safely

__all__ = [
    "Accumulator",
    "Hooks",
    "StreamProxy",
    "async_wrapper",
    "base_url",
    "current",
    "finished",
    "scalars",
    "sent",
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


def base_url(instance: Any) -> str | None:
    """The base URL of the client a resource (`client.chat.completions`, `client.messages`) belongs to;
    OpenAI- and Anthropic-style resources both keep their client as `_client`."""
    url = getattr(getattr(instance, "_client", None), "base_url", None)
    return None if url is None else str(url)


@contextmanager
def current(span: Span) -> Iterator[None]:
    """The span is current while the call runs; an exception from the call fails it and passes on."""
    token = otel_context.attach(trace.set_span_in_context(span))
    try:
        yield
    except BaseException as exc:
        _invocation.fail(span, exc)
        raise
    finally:
        otel_context.detach(token)


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
            _invocation.fail(self._self_span, exc)

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
        with current(span):
            response = wrapped(*args, **kwargs)
        return finished(span, response, kwargs, hooks)

    return wrapper


def async_wrapper(hooks: Hooks) -> Wrapper:
    async def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        span = hooks.start(instance, kwargs)
        if span is None:
            return await wrapped(*args, **kwargs)
        with current(span):
            response = await wrapped(*args, **kwargs)
        return finished(span, response, kwargs, hooks)

    return wrapper
