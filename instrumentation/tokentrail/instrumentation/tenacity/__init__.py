"""tenacity: every attempt of a retried call becomes a retry span under its caller.

Wraps `Retrying.__call__` and `AsyncRetrying.__call__`, which both the `@retry` decorator and
`Retrying()(fn)` go through; each attempt gets `tokentrail.retry.attempt` (1-based), the previous
attempt's failure as `tokentrail.retry.reason`, the wait before it as `tokentrail.retry.wait_s`,
and a link to the first attempt. (`for attempt in Retrying():` loops are not covered.)
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Collection
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap

from tokentrail.instrumentation._api import Step, retry

__all__ = ["TenacityInstrumentor"]

_instruments = ("tenacity >= 8.0",)


class _Attempts:
    """Turns each call of the retried function into one attempt span."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or "call"
        self.attempt = 0
        self.first: Step | None = None
        self.reason: str | None = None
        self.ended: float | None = None

    def scope(self) -> Any:
        self.attempt += 1
        scope = retry(self.name, self.attempt, reason=self.reason, first=self.first)
        return scope

    def opened(self, step: Step) -> None:
        self.first = self.first or step
        if self.ended is not None:
            step.set_attribute("tokentrail.retry.wait_s", round(time.monotonic() - self.ended, 6))

    def closed(self, exc: BaseException | None) -> None:
        self.ended = time.monotonic()
        self.reason = f"{type(exc).__name__}: {exc}"[:200] if exc is not None else None


def _sync_call(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not args:
        return wrapped(*args, **kwargs)
    fn, rest = args[0], args[1:]
    attempts = _Attempts(fn)

    @functools.wraps(fn)
    def attempt(*a: Any, **kw: Any) -> Any:
        with attempts.scope() as step:
            attempts.opened(step)
            try:
                result = fn(*a, **kw)
            except BaseException as exc:
                attempts.closed(exc)
                raise
            attempts.closed(None)
            return result

    return wrapped(attempt, *rest, **kwargs)


async def _async_call(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    if not args:
        return await wrapped(*args, **kwargs)
    fn, rest = args[0], args[1:]
    attempts = _Attempts(fn)

    @functools.wraps(fn)
    async def attempt(*a: Any, **kw: Any) -> Any:
        async with attempts.scope() as step:
            attempts.opened(step)
            try:
                result = await fn(*a, **kw)
            except BaseException as exc:
                attempts.closed(exc)
                raise
            attempts.closed(None)
            return result

    return await wrapped(attempt, *rest, **kwargs)


class TenacityInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        wrapt.wrap_function_wrapper("tenacity", "Retrying.__call__", _sync_call)
        wrapt.wrap_function_wrapper("tenacity.asyncio", "AsyncRetrying.__call__", _async_call)

    def _uninstrument(self, **kwargs: Any) -> None:
        import tenacity
        import tenacity.asyncio

        unwrap(tenacity.Retrying, "__call__")
        unwrap(tenacity.asyncio.AsyncRetrying, "__call__")
