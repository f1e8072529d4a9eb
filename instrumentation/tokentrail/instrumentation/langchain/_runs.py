"""The runs in flight: LangChain run id → its span, where a new run's span goes, and ending them.

A run's parent is the span of its `parent_run_id`, set explicitly when the span starts, never by
attaching a context inside a callback (a start and an end callback can run in different contexts,
and an attached context that is never detached would adopt every later span). A root run goes
under the caller's current span, in its `tokentrail.agent(...)` scope. Runs LangChain marks hidden
get no span; their children go to the nearest visible ancestor. Conversation and user ids come from
the run's metadata (`thread_id`, `session_id`, `user_id`, …), else from the parent run.

A model's own `stream()` calls its provider without handing over the run: the model run that starts
during the first step of such a stream takes that step's `StreamSlot`, and its span is made current
for the step (the stream wrapper detaches it), so the client's own span made in the same step nests
under it.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from tokentrail.instrumentation import _invocation, _spans
from tokentrail.instrumentation.langchain._messages import first

__all__ = ["Run", "Runs", "StreamSlot", "span_name", "stream_slot"]

TRACER = "tokentrail.langchain"
_CONVERSATION_KEYS = ("conversation_id", "thread_id", "session_id")
_USER_KEYS = ("user_id",)
_MAX_DEPTH = 64  # hidden runs skipped over when looking for a visible ancestor
# run kind → the operation its span is named after, and the span's kind (model runs: `_invocation`)
_SPANS = {
    "agent": ("invoke_agent", SpanKind.INTERNAL),
    "chain": ("chain", SpanKind.INTERNAL),
    "tool": ("execute_tool", SpanKind.INTERNAL),
    "retriever": ("retrieval", SpanKind.CLIENT),
}


@dataclass
class Run:
    span: Span
    kind: str  # "agent", "chain", "llm", "tool" or "retriever"
    name: str
    scope: _spans.Scope
    started: float
    first_token: bool = False


class StreamSlot:
    """Set while a model's `stream()` takes its first step; see the module's description."""

    __slots__ = ("run_id", "token")

    def __init__(self) -> None:
        self.run_id: UUID | None = None
        self.token: object | None = None


stream_slot: contextvars.ContextVar[StreamSlot | None] = contextvars.ContextVar(
    "tokentrail_langchain_stream", default=None
)


def span_name(kind: str, name: str) -> str:
    """`invoke_agent support`, `chain retrieve`, `execute_tool search`, `retrieval docs`."""
    return f"{_SPANS[kind][0]} {name}"


class Runs:
    def __init__(self) -> None:
        self._runs: dict[UUID, Run] = {}
        self._hidden: dict[UUID, UUID | None] = {}  # a hidden run → its parent, to skip over it

    def get(self, run_id: UUID | None) -> Run | None:
        return self._runs.get(run_id) if run_id is not None else None

    def hide(self, run_id: UUID, parent_run_id: UUID | None) -> None:
        self._hidden[run_id] = parent_run_id

    def resolve(self, run_id: UUID | None) -> Run | None:
        """The run, or its nearest visible ancestor when the run itself is hidden."""
        for _ in range(_MAX_DEPTH):
            if run_id is None:
                return None
            run = self._runs.get(run_id)
            if run is not None:
                return run
            if run_id not in self._hidden:
                return None
            run_id = self._hidden[run_id]
        return None

    def _place(
        self, parent_run_id: UUID | None, metadata: Mapping[str, Any] | None
    ) -> tuple[otel_context.Context | None, _spans.Scope]:
        """The context a new run's span starts in, and the run's scope."""
        parent = self.resolve(parent_run_id)
        if parent is not None:
            context: otel_context.Context | None = trace.set_span_in_context(parent.span)
            inherited = parent.scope
        else:
            context, inherited = None, _spans.current_scope()
        conversation = first(metadata, _CONVERSATION_KEYS) or inherited[0]
        user = first(metadata, _USER_KEYS) or inherited[1]
        return context, (_ident(conversation), _ident(user), _ident(inherited[2]))

    def start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: Mapping[str, Any] | None,
        kind: str,
        name: str,
        attributes: Mapping[str, Any],
    ) -> Run:
        """An agent, chain, tool or retriever run."""
        context, scope = self._place(parent_run_id, metadata)
        span = _spans.start_span(
            TRACER, span_name(kind, name), _SPANS[kind][1], attributes, scope=scope, context=context
        )
        run = self._runs[run_id] = Run(span, kind, name, scope, time.monotonic())
        return run

    def start_model(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: Mapping[str, Any] | None,
        request: _invocation.Request,
    ) -> Run:
        context, scope = self._place(parent_run_id, metadata)
        span = _invocation.start(TRACER, request, scope=scope, context=context)
        run = self._runs[run_id] = Run(span, "llm", str(request.model), scope, time.monotonic())
        slot = stream_slot.get()
        if slot is not None and slot.run_id is None:
            slot.run_id = run_id
            slot.token = otel_context.attach(trace.set_span_in_context(span))
        return run

    def end(self, run_id: UUID, error: BaseException | None = None) -> Run | None:
        """End the run's span; an error that is control flow, not a failure, leaves its status alone."""
        self._hidden.pop(run_id, None)
        run = self._runs.pop(run_id, None)
        if run is None:
            return None
        if error is not None and not _is_control_flow(error):
            _spans.record_failure(run.span, error)
        run.span.end()
        return run


def _ident(value: Any) -> str | None:
    return str(value) if value else None


def _is_control_flow(error: BaseException) -> bool:
    """Not failures: LangGraph's interrupts and parent commands, and a stream its reader left early."""
    return isinstance(error, GeneratorExit) or any(
        cls.__name__ == "GraphBubbleUp" for cls in type(error).__mro__
    )
