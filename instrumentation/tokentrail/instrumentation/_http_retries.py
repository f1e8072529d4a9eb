"""The HTTP retries that the openai and anthropic clients make on their own (408/409/429/5xx,
timeouts, dropped connections, with backoff) inside one `create` call, made visible.

Both clients share one generated base client: each attempt starts with `_build_request(...,
retries_taken=n)`, and a failed attempt that will be tried again goes through
`_sleep_for_retry(retries_taken=n, response=...)`, which computes the backoff (honouring
`retry-after`) and sleeps. Wrapping those two gives one `retry {call}` span per failed attempt,
under the model call's span: it starts when the attempt started and ends when the backoff ends,
with the attempt number, the HTTP status (or the error), and the wait. The final, successful
attempt is the model call itself.
"""

from __future__ import annotations

import importlib
import time
from contextvars import ContextVar
from typing import Any

import wrapt
from opentelemetry import trace
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from tokentrail import semconv as sc
from tokentrail.instrumentation._safe import safely

__all__ = ["install", "uninstall"]

_TRACER = "tokentrail.http_retries"
# when the current attempt started (set per attempt; a call's attempts run in one context)
_attempt_start: ContextVar[int] = ContextVar("tokentrail_attempt_start", default=0)
_installed: set[str] = set()


def _build_request(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    _attempt_start.set(time.time_ns())
    return wrapped(*args, **kwargs)


@safely
def _start(kwargs: dict[str, Any]) -> Span | None:
    current = trace.get_current_span()
    if not current.get_span_context().is_valid:
        return None  # not inside a model call we trace
    response = kwargs.get("response")
    attempt = int(kwargs.get("retries_taken", 0)) + 1
    if response is not None:
        reason = f"{response.status_code} {getattr(response, 'reason_phrase', '') or ''}".strip()
    else:
        reason = "timeout or connection error"
    attributes: dict[str, Any] = {sc.TT_STEP_KIND: sc.STEP_RETRY, sc.TT_RETRY_ATTEMPT: attempt,
                                  sc.TT_RETRY_REASON: reason, sc.TT_RETRY_LAYER: "http"}  # fmt: skip
    if response is not None:
        attributes[sc.HTTP_RESPONSE_STATUS_CODE] = int(response.status_code)
        attributes[sc.ERROR_TYPE] = str(response.status_code)
    else:
        attributes[sc.ERROR_TYPE] = "connection"
    name = getattr(current, "name", "") or "call"
    start = _attempt_start.get() or time.time_ns()
    span = trace.get_tracer(_TRACER).start_span(f"retry {name}", kind=SpanKind.INTERNAL, attributes=attributes,
                                                start_time=start)  # fmt: skip
    span.set_status(Status(StatusCode.ERROR, reason))
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
    """Wrap the retry loop of a client package's base client (`openai._base_client`, …)."""
    if module in _installed:
        return
    try:
        importlib.import_module(module)
        wrapt.wrap_function_wrapper(module, "SyncAPIClient._build_request", _build_request)
        wrapt.wrap_function_wrapper(module, "AsyncAPIClient._build_request", _build_request)
        wrapt.wrap_function_wrapper(module, "SyncAPIClient._sleep_for_retry", _sleep)
        wrapt.wrap_function_wrapper(module, "AsyncAPIClient._sleep_for_retry", _async_sleep)
    except (ImportError, AttributeError):  # a client version without this retry loop: no retry spans
        return
    _installed.add(module)


def uninstall(module: str) -> None:
    if module not in _installed:
        return
    loaded = importlib.import_module(module)
    for cls in ("SyncAPIClient", "AsyncAPIClient"):
        for method in ("_build_request", "_sleep_for_retry"):
            unwrap(getattr(loaded, cls), method)
    _installed.discard(module)
