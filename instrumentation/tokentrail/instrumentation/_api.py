"""The manual API: agent runs, plan steps, tool calls, retry attempts, model calls and outcomes.

Each step is a context manager (sync and async) and a decorator (sync and async functions), and
emits one span following the OTel GenAI conventions. The user's exceptions pass through as the
same object; the span records them. Conversation, user and task ids set on `agent(...)` are put
on every span started inside it.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind

from tokentrail import semconv as sc
from tokentrail.instrumentation import _content, _invocation, _spans
from tokentrail.instrumentation._safe import logger, safely

__all__ = ["Step", "agent", "llm", "plan", "record_outcome", "retry", "retrying", "tool"]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

_TRACER = "tokentrail"


class Step:
    """A handle on the span of one step, returned by `with agent(...) as step:`."""

    def __init__(self, span: Span) -> None:
        self.span = span

    @property
    def span_id(self) -> str:
        return format(self.span.get_span_context().span_id, "016x")

    @property
    def trace_id(self) -> str:
        return format(self.span.get_span_context().trace_id, "032x")

    @safely
    def set_attribute(self, key: str, value: Any) -> None:
        self.span.set_attribute(key, value)

    @safely
    def set_usage(
        self,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cache_read_tokens: int | None = None,
        cache_write_tokens: int | None = None,
        reasoning_tokens: int | None = None,
    ) -> None:
        """Token usage; input counts include cached tokens (OTel semantics)."""
        usage = _invocation.Usage(
            input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens
        )
        _invocation.set_usage(self.span, usage)

    @safely
    def set_response(
        self, *, model: str | None = None, id: str | None = None, finish_reasons: Sequence[str] | None = None
    ) -> None:
        _invocation.set_response(self.span, model=model, ident=id, finish=finish_reasons or ())

    @safely
    def set_messages(self, *, input: Any = None, output: Any = None, system: Any = None) -> None:
        """Conversation content in the OTel message shape; recorded only when capture is on."""
        _invocation.set_messages(self.span, input=input, output=output, system=system)

    @safely
    def set_result(self, result: Any) -> None:
        """A tool's result; recorded only when content capture is on."""
        _content.record(self.span, sc.GEN_AI_TOOL_CALL_RESULT, result)


class _StepScope:
    """Context manager and decorator that opens one span per use."""

    def __init__(
        self,
        name: str,
        kind: SpanKind,
        attributes: Mapping[str, Any],
        links: Sequence[Link] = (),
        scope: _spans.Scope | None = None,
    ) -> None:
        self._name, self._kind, self._attributes, self._links, self._scope = (
            name,
            kind,
            attributes,
            links,
            scope,
        )
        self._tokens: list[tuple[object, contextvars.Token[_spans.Scope] | None, Span]] = []

    def _start(self) -> Step:
        span = _spans.start_span(
            _TRACER,
            self._name,
            self._kind,
            self._attributes,
            scope=self._scope or _spans.current_scope(),
            links=self._links,
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        scope_token = _spans.enter_scope(self._scope) if self._scope is not None else None
        self._tokens.append((token, scope_token, span))
        return Step(span)

    def _finish(self, exc: BaseException | None) -> None:
        token, scope_token, span = self._tokens.pop()
        try:
            if exc is not None:
                _spans.record_failure(span, exc)
            span.end()
        except Exception:
            logger.debug("tokentrail: ending span failed", exc_info=True)
        finally:
            otel_context.detach(token)  # type: ignore[arg-type]
            if scope_token is not None:
                _spans.leave_scope(scope_token)

    def __enter__(self) -> Step:
        return self._start()

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._finish(exc)  # returns None: the user's exception is never swallowed

    async def __aenter__(self) -> Step:
        return self._start()

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._finish(exc)

    def __call__(self, fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self._copy():
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._copy():
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def _copy(self) -> _StepScope:
        return _StepScope(self._name, self._kind, self._attributes, self._links, self._scope)


def agent(
    name: str,
    *,
    conversation_id: str | None = None,
    user_id: str | None = None,
    task_id: str | None = None,
    task_type: str | None = None,
) -> _StepScope:
    """An agent run: `invoke_agent {name}`; its ids go on every span started inside it."""
    outer = _spans.current_scope()
    scope = (conversation_id or outer[0], user_id or outer[1], task_id or outer[2])
    attributes = {
        sc.GEN_AI_OPERATION_NAME: sc.OP_INVOKE_AGENT,
        sc.GEN_AI_AGENT_NAME: name,
        sc.TT_TASK_TYPE: task_type,
    }
    return _StepScope(f"invoke_agent {name}", SpanKind.INTERNAL, attributes, scope=scope)


def plan(agent: str | None = None) -> _StepScope:
    attributes = {
        sc.GEN_AI_OPERATION_NAME: sc.OP_PLAN,
        sc.TT_STEP_KIND: sc.STEP_PLAN,
        sc.GEN_AI_AGENT_NAME: agent,
    }
    return _StepScope(f"plan {agent}" if agent else "plan", SpanKind.INTERNAL, attributes)


def tool(name: str, *, call_id: str | None = None, arguments: Any = None) -> _StepScope:
    attributes = {
        sc.GEN_AI_OPERATION_NAME: sc.OP_EXECUTE_TOOL,
        sc.GEN_AI_TOOL_NAME: name,
        sc.GEN_AI_TOOL_CALL_ID: call_id,
        sc.GEN_AI_TOOL_CALL_ARGUMENTS: _content.prepare(arguments),
    }
    return _StepScope(f"execute_tool {name}", SpanKind.INTERNAL, attributes)


def llm(model: str, *, provider: str, operation: str = sc.OP_CHAT) -> _StepScope:
    """A model call the application makes itself: set its usage and response on the step."""
    request = _invocation.Request(operation, provider, model)
    return _StepScope(
        _invocation.span_name(request), SpanKind.CLIENT, _invocation.request_attributes(request)
    )


def retry(name: str, attempt: int, *, reason: str | None = None, first: Step | None = None) -> _StepScope:
    """One attempt of a retried operation (1-based), linked to the first attempt's span."""
    links = [Link(first.span.get_span_context())] if first is not None else []
    attributes = {
        sc.TT_STEP_KIND: sc.STEP_RETRY,
        sc.TT_RETRY_ATTEMPT: attempt,
        sc.TT_RETRY_REASON: reason,
        sc.TT_RETRY_FIRST_SPAN_ID: first.span_id if first is not None else None,
    }
    return _StepScope(f"retry {name}", SpanKind.INTERNAL, attributes, links=links)


def retrying(
    fn: Callable[[], T],
    *,
    name: str | None = None,
    attempts: int = 3,
    on: tuple[type[BaseException], ...] = (Exception,),
    wait: float = 0.0,
) -> T:
    """Call `fn` up to `attempts` times, each attempt a retry span; re-raises the last failure."""
    label: str = name or getattr(fn, "__name__", None) or "call"
    first: Step | None = None
    reason: str | None = None
    for attempt in range(1, attempts + 1):
        try:
            with retry(label, attempt, reason=reason, first=first) as step:
                first = first or step
                return fn()
        except on as exc:
            if attempt == attempts:
                raise
            reason = f"{type(exc).__name__}: {exc}"[:200]
            if wait:
                time.sleep(wait * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


@safely
def record_outcome(
    name: str,
    *,
    success: bool,
    value: str | float | None = None,
    trace_id: str | None = None,
    conversation_id: str | None = None,
    task_id: str | None = None,
) -> None:
    """Record how a task ended. Without a target it lands on the current span (and, via
    attributes, on the trace); with a trace, conversation or task id it is a span of its own that
    the collector attaches to that target, even hours later and from another process."""
    attributes: dict[str, Any] = {sc.TT_OUTCOME_NAME: name, sc.TT_OUTCOME_SUCCESS: success}
    if value is not None:
        attributes[sc.TT_OUTCOME_VALUE] = value
    current = trace.get_current_span()
    if (
        trace_id is None
        and conversation_id is None
        and task_id is None
        and current.get_span_context().is_valid
    ):
        current.add_event(sc.TT_OUTCOME_EVENT, attributes)
        for key, val in attributes.items():
            current.set_attribute(key, val)
        return
    for key, val in (
        (sc.TT_OUTCOME_TRACE_ID, trace_id),
        (sc.GEN_AI_CONVERSATION_ID, conversation_id),
        (sc.TT_TASK_ID, task_id),
    ):
        if val:
            attributes[key] = val
    span = trace.get_tracer(_TRACER).start_span(
        f"outcome {name}", attributes=attributes, context=otel_context.Context()
    )
    span.end()
