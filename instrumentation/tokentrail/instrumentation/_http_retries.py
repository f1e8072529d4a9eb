"""The HTTP retries that the openai and anthropic clients make on their own (408/409/429/5xx,
timeouts, dropped connections, with backoff) inside one `create` call, made visible.

Both clients share one generated base client: each attempt starts with `_build_request(...,
retries_taken=n)`, and a failed attempt that will be tried again goes through
`_sleep_for_retry(retries_taken=n, response=...)`, which computes the backoff (honouring
`retry-after`) and sleeps. Wrapping those two private methods is the narrowest hook that sees
exactly the attempts the client decided to retry, with their response and the wait: an httpx event
hook sees every response but not whether the client will retry it nor how long it will wait, and
has to be added to each client the application builds (or to the user's own http client).

Each failed attempt becomes one `retry {call}` span under the span that is current during the call
(the model call's `chat {model}` span, or the client library's own call span nested in it): it
starts when the attempt started and ends when the backoff ends, with the attempt number, the HTTP
status (or the error), and the wait; attempts after the first link to the first, as manual retry
spans do. The final, successful attempt is the model call itself.
"""

from __future__ import annotations

import importlib
import sys
import time
from contextvars import ContextVar
from http import HTTPStatus
from typing import Any

import wrapt
from opentelemetry import trace
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode

from tokentrail import semconv as sc
from tokentrail.instrumentation._safe import safely

__all__ = ["install", "uninstall"]

_TRACER = "tokentrail.http_retries"
_CLASSES = ("SyncAPIClient", "AsyncAPIClient")
_METHODS = ("_build_request", "_sleep_for_retry")
# Status codes the clients retry whose phrase `http.HTTPStatus` does not know.
_PHRASES = {529: "Overloaded"}

# When the current attempt started (set per attempt; one call's attempts run in one context).
_attempt_start: ContextVar[int] = ContextVar("tokentrail_attempt_start", default=0)
# The span of the first failed attempt, with the id of the span it sits under: later attempts link to it.
_first: ContextVar[tuple[int, SpanContext] | None] = ContextVar("tokentrail_first_attempt", default=None)
_installed: set[str] = set()


def _build_request(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    _attempt_start.set(time.time_ns())
    return wrapped(*args, **kwargs)


def _reason(response: Any, error: BaseException | None) -> tuple[str, str]:
    """(`tokentrail.retry.reason`, `error.type`) of a failed attempt."""
    if response is not None:
        code = int(response.status_code)
        phrase = str(getattr(response, "reason_phrase", "") or "") or _PHRASES.get(code, "")
        if not phrase:
            try:
                phrase = HTTPStatus(code).phrase
            except ValueError:
                pass
        return f"{code} {phrase}".strip(), str(code)
    # The clients sleep inside the `except` block of a timeout or connection error: that error is the reason.
    if error is not None:
        return f"{type(error).__name__}: {error}".rstrip(": ")[:200], type(error).__qualname__
    return "timeout or connection error", "_OTHER"


def _call_name(current: Span, options: Any) -> str:
    """`chat gpt-4o` for a model call (ours, or the client's own span inside it), else `POST /files`."""
    attributes = getattr(current, "attributes", None) or {}
    operation, model = attributes.get(sc.GEN_AI_OPERATION_NAME), attributes.get(sc.GEN_AI_REQUEST_MODEL)
    if operation and model:
        return f"{operation} {model}"
    method, url = getattr(options, "method", None), getattr(options, "url", None)
    if method and url:
        return f"{str(method).upper()} {url}"
    return getattr(current, "name", "") or "http"


@safely
def _start(kwargs: dict[str, Any]) -> Span | None:
    current = trace.get_current_span()
    parent = current.get_span_context()
    if not parent.is_valid:
        return None  # an untraced call: a retry span would be an orphan root
    response = kwargs.get("response")
    attempt = int(kwargs.get("retries_taken", 0)) + 1
    reason, error_type = _reason(response, sys.exc_info()[1] if response is None else None)
    attributes: dict[str, Any] = {
        sc.TT_STEP_KIND: sc.STEP_RETRY,
        sc.TT_RETRY_ATTEMPT: attempt,
        sc.TT_RETRY_REASON: reason,
        sc.TT_RETRY_LAYER: "http",
        sc.ERROR_TYPE: error_type,
    }
    if response is not None:
        attributes[sc.HTTP_RESPONSE_STATUS_CODE] = int(response.status_code)
    first = _first.get()
    links: list[Link] = []
    if attempt > 1 and first is not None and first[0] == parent.span_id:
        links.append(Link(first[1]))
        attributes[sc.TT_RETRY_FIRST_SPAN_ID] = format(first[1].span_id, "016x")
    start = _attempt_start.get() or time.time_ns()
    span = trace.get_tracer(_TRACER).start_span(
        f"retry {_call_name(current, kwargs.get('options'))}",
        kind=SpanKind.INTERNAL,
        attributes=attributes,
        links=links,
        start_time=start,
    )
    span.set_status(Status(StatusCode.ERROR, reason))
    if attempt == 1:
        _first.set((parent.span_id, span.get_span_context()))
    return span


@safely
def _end(span: Span | None, waited: float) -> None:
    if span is not None:
        span.set_attribute(sc.TT_RETRY_WAIT_S, round(waited, 3))
        span.end()


def _sleep(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    span = _start(kwargs)
    began = time.monotonic()
    try:
        return wrapped(*args, **kwargs)
    finally:
        _end(span, time.monotonic() - began)


async def _async_sleep(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    span = _start(kwargs)
    began = time.monotonic()
    try:
        return await wrapped(*args, **kwargs)
    finally:
        _end(span, time.monotonic() - began)


def install(module: str) -> None:
    """Wrap the retry loop of a client package's base client (`openai._base_client`, …).

    All four methods or none: a client version without this retry loop gets no retry spans."""
    if module in _installed:
        return
    try:
        loaded = importlib.import_module(module)
    except ImportError:
        return
    if not all(callable(getattr(getattr(loaded, cls, None), m, None)) for cls in _CLASSES for m in _METHODS):
        return
    wrapt.wrap_function_wrapper(loaded, "SyncAPIClient._build_request", _build_request)
    wrapt.wrap_function_wrapper(loaded, "AsyncAPIClient._build_request", _build_request)
    wrapt.wrap_function_wrapper(loaded, "SyncAPIClient._sleep_for_retry", _sleep)
    wrapt.wrap_function_wrapper(loaded, "AsyncAPIClient._sleep_for_retry", _async_sleep)
    _installed.add(module)


def uninstall(module: str) -> None:
    if module not in _installed:
        return
    loaded = importlib.import_module(module)
    for cls in _CLASSES:
        for method in _METHODS:
            unwrap(getattr(loaded, cls), method)
    _installed.discard(module)
