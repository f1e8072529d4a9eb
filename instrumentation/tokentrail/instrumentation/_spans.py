"""How every Tokentrail span starts and fails, whichever part of the SDK opens it.

The scope is what `tokentrail.agent(conversation_id=…, user_id=…, task_id=…)` sets: those ids go
on every span started inside it, by the manual API and by the instrumentors alike (an
instrumentor whose library has ids of its own, such as a LangChain `thread_id`, passes a scope of
its own). Attributes whose value is None are left out, so callers can write optional attributes
inline. A failure is recorded the same way everywhere: the exception as an event, status ERROR
with the message, and `error.type`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from tokentrail import semconv as sc

__all__ = ["Scope", "current_scope", "enter_scope", "leave_scope", "record_failure", "start_span"]

Scope = tuple[str | None, str | None, str | None]
"""(conversation id, user id, task id)"""

_scope: contextvars.ContextVar[Scope] = contextvars.ContextVar("tokentrail_scope", default=(None, None, None))


def current_scope() -> Scope:
    """The scope of the innermost `tokentrail.agent(...)`."""
    return _scope.get()


def enter_scope(scope: Scope) -> contextvars.Token[Scope]:
    return _scope.set(scope)


def leave_scope(token: contextvars.Token[Scope]) -> None:
    _scope.reset(token)


def start_span(
    tracer: str,
    name: str,
    kind: SpanKind,
    attributes: Mapping[str, Any],
    *,
    scope: Scope,
    context: otel_context.Context | None = None,
    links: Sequence[Link] = (),
) -> Span:
    """A span with `attributes` (None values left out) and the scope's ids where not already set."""
    attrs = {key: value for key, value in attributes.items() if value is not None}
    for key, value in zip((sc.GEN_AI_CONVERSATION_ID, sc.USER_ID, sc.TT_TASK_ID), scope, strict=True):
        if value and key not in attrs:
            attrs[key] = value
    return trace.get_tracer(tracer).start_span(
        name, context=context, kind=kind, attributes=attrs, links=list(links)
    )


def record_failure(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, str(error)[:500]))
    span.set_attribute(sc.ERROR_TYPE, type(error).__qualname__)
