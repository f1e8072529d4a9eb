"""Context for spans that are not ours: the openai client's own span, manual `tokentrail.tool(...)`
spans in a tool body, nest under the LangChain run they happen in.

Callbacks only see runs; the code that runs inside them sees the current OTel context. Three hooks
make a run's span current there, each only for as long as that code runs:
- where a model is handed its run manager (`_generate_with_cache`, `_generate_helper`, and their
  async twins), the model run's span, while the model calls its client;
- in a model's own `stream()`/`astream()`, which calls the provider without a run manager, each
  step of the stream (see `_runs.StreamSlot`);
- in the child context LangChain and LangGraph copy for every nested run (`_set_config_context`,
  the hook LangSmith uses too), the parent run's span.
A failed lookup is logged and the call runs as it would untraced.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from opentelemetry import context as otel_context
from opentelemetry import trace

from tokentrail.instrumentation._safe import logger
from tokentrail.instrumentation.langchain._handler import Handler
from tokentrail.instrumentation.langchain._runs import StreamSlot, stream_slot

__all__ = ["Wrapper", "config_context_wrapper", "model_wrappers", "stream_wrappers"]

Wrapper = Callable[[Callable[..., Any], Any, tuple[Any, ...], dict[str, Any]], Any]


def _run_manager_id(args: tuple[Any, ...], kwargs: Mapping[str, Any], position: int, key: str) -> UUID | None:
    manager = kwargs.get(key, args[position] if len(args) > position else None)
    if isinstance(manager, list):  # `_generate_helper` takes one manager per prompt
        manager = manager[0] if len(manager) == 1 else None
    run_id = getattr(manager, "run_id", None)
    return run_id if isinstance(run_id, UUID) else None


def model_wrappers(handler: Handler, position: int, key: str) -> tuple[Wrapper, Wrapper]:
    """Make the model run's span current while the model calls its client, so the client's span nests.

    `position` and `key` say where the wrapped method takes its run manager(s)."""

    @contextmanager
    def current(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Iterator[None]:
        token: object | None = None
        try:
            span = handler.span_for(_run_manager_id(args, kwargs, position, key))
            token = otel_context.attach(trace.set_span_in_context(span)) if span is not None else None
        except Exception:
            logger.debug("tokentrail: langchain context lookup failed", exc_info=True)
        try:
            yield
        finally:
            if token is not None:
                otel_context.detach(token)  # type: ignore[arg-type]

    def sync(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        with current(args, kwargs):
            return wrapped(*args, **kwargs)

    async def async_(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        with current(args, kwargs):
            return await wrapped(*args, **kwargs)

    return sync, async_


class _StreamStep:
    """One step of a model's stream: the run's span is current during it, and only during it."""

    def __init__(self, handler: Handler, slot: StreamSlot) -> None:
        self.handler, self.slot = handler, slot
        self.marker: contextvars.Token[StreamSlot | None] | None = None
        self.token: object | None = None

    def __enter__(self) -> None:
        try:
            if self.slot.run_id is None:  # the first step: the run starts in it, and takes the slot
                self.marker = stream_slot.set(self.slot)
            elif (span := self.handler.span_for(self.slot.run_id)) is not None:
                self.token = otel_context.attach(trace.set_span_in_context(span))
        except Exception:
            logger.debug("tokentrail: langchain stream context failed", exc_info=True)

    def __exit__(self, *exc: object) -> None:
        try:
            for token in (self.slot.token, self.token):
                if token is not None:
                    otel_context.detach(token)  # type: ignore[arg-type]
            self.slot.token = self.token = None
            if self.marker is not None:
                stream_slot.reset(self.marker)
                self.marker = None
        except Exception:
            logger.debug("tokentrail: langchain stream context failed", exc_info=True)


def stream_wrappers(handler: Handler) -> tuple[Wrapper, Wrapper]:
    """Give each step of a model's own `stream()`/`astream()` its run's span as the current span.

    There LangChain calls the provider without handing over the run manager, so the model-call
    wrapper above cannot see the run; without this the client's span would be a second leaf.
    """

    def traced(stream: Iterator[Any]) -> Iterator[Any]:
        slot = StreamSlot()
        try:
            while True:
                with _StreamStep(handler, slot):
                    try:
                        item = next(stream)
                    except StopIteration:
                        return
                yield item
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    async def atraced(stream: AsyncIterator[Any]) -> AsyncIterator[Any]:
        slot = StreamSlot()
        try:
            while True:
                with _StreamStep(handler, slot):
                    try:
                        item = await anext(stream)
                    except StopAsyncIteration:
                        return
                yield item
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()

    def sync(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        stream = wrapped(*args, **kwargs)
        return traced(stream) if handler.active and isinstance(stream, Iterator) else stream

    def async_(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        stream = wrapped(*args, **kwargs)
        return atraced(stream) if handler.active and isinstance(stream, AsyncIterator) else stream

    return sync, async_


def config_context_wrapper(handler: Handler) -> Wrapper:
    """Runs inside the fresh context LangChain copies for a child run: make the parent run's span current.

    That context is thrown away when the child finishes, so nothing is detached.
    """

    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        result = wrapped(*args, **kwargs)
        try:
            config = args[0] if args else kwargs.get("config")
            callbacks = config.get("callbacks") if isinstance(config, Mapping) else None
            span = handler.span_for(getattr(callbacks, "parent_run_id", None))
            if span is not None:
                otel_context.attach(trace.set_span_in_context(span))
        except Exception:
            logger.debug("tokentrail: langchain context lookup failed", exc_info=True)
        return result

    return wrapper
