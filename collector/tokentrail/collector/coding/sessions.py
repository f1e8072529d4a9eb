"""The session builder: a coding agent's stored events become spans, once per change.

The writer stores the events of a batch (`agent_events`) and notes the sessions it touched
(`events.Touched`); at its next reconcile step, `build` reads those sessions' affected prompts
back (for Codex, the turns around the batch's time), drafts their tasks with the tool's
translator, and writes them as spans through the same flatten path as any OTLP span. The span and
trace ids derive from the session and the prompt, so writing a task again replaces it.

When the tool also sent its own spans (Claude Code's traces beta, newer Codex), the same request or
tool use is never counted twice: a draft whose request id, client request id or tool-use id a
stored span of the tool already has is left out, and so is one whose event was logged inside a
span of the tool's of the same kind (a model call, a tool call); the rest of the task joins the
tool's own trace under its root. A span written earlier that the new drafts no longer hold (its step has
since arrived as the tool's own span, or the task moved to the tool's trace) is deleted, and a
trace left empty is withdrawn with its summary and its waste.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tokentrail import semconv as sc
from tokentrail.collector.coding import claude_code, codex, gemini_cli
from tokentrail.collector.coding.events import CLAUDE_CODE, CODEX, Touched
from tokentrail.collector.coding.model import Draft, Event, Task
from tokentrail.collector.flatten import SPAN_COLUMNS, SpanBatch
from tokentrail.pricing import PriceBook
from tokentrail.store import coding as store
from tokentrail.store import ingest

__all__ = ["build", "request_of", "trace_id_of"]

logger = logging.getLogger("tokentrail.collector")


_SCOPE = "tokentrail.coding"


def trace_id_of(tool: str, session: str, task: str) -> str:
    """The trace id of a task written from events (32 hex digits, stable)."""
    return hashlib.blake2b(f"{tool}\x1f{session}\x1f{task}".encode(), digest_size=16).hexdigest()


def _span_id(trace_id: str, key: str) -> str:
    return hashlib.blake2b(f"{trace_id}\x1f{key}".encode(), digest_size=8).hexdigest()


def build(client: Any, touched: Touched, pricer: PriceBook | None) -> set[tuple[str, str]]:
    """Write the tasks of the touched sessions as spans; returns the (project, trace id) pairs
    written or withdrawn, for the reconciler. A session that fails is logged and skipped."""
    changed: set[tuple[str, str]] = set()
    _sessions_of_traces(client, touched)
    for (project, tool, session), (prompts, lo, hi) in touched.sessions.items():
        try:
            changed |= _session(client, project, tool, session, prompts, lo, hi, pricer)
        except Exception:
            logger.exception("building the traces of %s session %s failed", tool, session)
    return changed


def _sessions_of_traces(client: Any, touched: Touched) -> None:
    """The sessions whose events were logged in the tool's own traces that named none."""
    by_tool: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}
    for (project, tool, trace_id), span in touched.traces.items():
        by_tool.setdefault((project, tool), {})[trace_id] = span
    for (project, tool), traces in by_tool.items():
        try:
            found = store.sessions_of_traces(client, project, tool, sorted(traces))
        except Exception:
            logger.exception("finding the sessions of %s traces failed", tool)
            continue
        for row in found:
            lo, hi = traces[row["trace_id"]]
            touched.add(project, (tool, "", row["session_id"], ""), lo, hi)


def _session(
    client: Any,
    project: str,
    tool: str,
    session: str,
    prompts: set[str],
    lo: int,
    hi: int,
    pricer: PriceBook | None,
) -> set[tuple[str, str]]:
    if tool == CLAUDE_CODE:
        rows = store.prompt_events(client, project, tool, session, sorted(prompts), lo, hi)
        tasks = claude_code.tasks([_event(r) for r in rows])
    else:
        rows, start = store.turn_events(client, project, tool, session, lo, hi)
        events = [_event(r) for r in rows]
        tasks = (
            codex.tasks(events, _event(start) if start else None)
            if tool == CODEX
            else gemini_cli.tasks(events)
        )
    if not tasks:
        return set()
    traces = sorted(set().union(*(t.trace_ids for t in tasks)))
    own = _OwnSpans(store.own_spans(client, project, tool, session, traces))
    request = ExportTraceServiceRequest()
    written: dict[str, set[str]] = {}  # trace id → span ids written
    synthetic: set[str] = set()
    for task in tasks:
        trace_id = trace_id_of(tool, session, task.key)
        synthetic.add(trace_id)
        target = own.trace_of(task) or trace_id
        spans = _add_task(request, task, target, own)
        written.setdefault(target, set()).update(spans)
        written.setdefault(trace_id, set())
    if request.resource_spans:
        batch = SpanBatch(pricer)
        batch.add(project, request)
        ingest.insert_span_stream(client, SPAN_COLUMNS, batch.arrow())
    store.withdraw_stale(client, project, written, synthetic)
    return {(project, t) for t in written}


class _OwnSpans:
    """The tool's own spans of a session: which request and tool-use ids they hold, which steps
    they are (by span id), and roots."""

    def __init__(self, rows: Iterable[dict[str, Any]]) -> None:
        self.by_id: dict[str, tuple[str, str]] = {}
        self.steps: dict[str, tuple[str, str]] = {}  # span id → (trace id, step kind)
        self.roots: dict[str, str] = {}
        for row in rows:
            where = (row["trace_id"], row["span_id"])
            for key in ("response_id", "client_request_id", "tool_call_id"):
                if row[key]:
                    self.by_id[row[key]] = where
            if row["parent_span_id"]:
                self.steps[row["span_id"]] = (row["trace_id"], row["step_kind"])
            else:
                self.roots[row["trace_id"]] = row["span_id"]

    def has(self, draft: Draft) -> tuple[str, str] | None:
        """The tool's own span of the draft's step: one holding its request or tool-use id, or
        the span of the same kind its event was logged in (Codex names no request in its spans)."""
        found = next((self.by_id[i] for i in draft.ids if i in self.by_id), None)
        if found is not None or not draft.context or draft.context not in self.steps:
            return found
        trace_id, kind = self.steps[draft.context]
        wanted = (
            "llm"
            if draft.model_call
            else "tool"
            if draft.attrs.get(sc.GEN_AI_OPERATION_NAME) == sc.OP_EXECUTE_TOOL
            else ""
        )
        return (trace_id, draft.context) if kind == wanted else None

    def trace_of(self, task: Task) -> str | None:
        """The tool's own trace of this task: the one holding any of its steps, else the one its
        events were emitted in."""
        for draft in task.steps:
            found = self.has(draft)
            if found is not None:
                return found[0]
        return next((t for t in sorted(task.trace_ids) if t in self.roots), None)


def _add_task(request: ExportTraceServiceRequest, task: Task, trace_id: str, own: _OwnSpans) -> set[str]:
    """Add the task's spans (in `trace_id`) to the request; returns their span ids."""
    spans = _spans(task, trace_id, own)
    if spans:
        resource = request.resource_spans.add()
        resource.resource.attributes.extend(_key_values(dict(task.resource)))
        scope = resource.scope_spans.add()
        scope.scope.name = _SCOPE
        scope.spans.extend(spans)
    return {s.span_id.hex() for s in spans}


def _spans(task: Task, trace_id: str, own: _OwnSpans) -> list[Span]:
    """The task's drafts as spans of `trace_id`, without the steps the tool's own spans hold. In
    the tool's own trace, the task's root joins its root as a step of its own: what the events say
    of the prompt and of who worked on it (the tool's spans may name neither)."""
    trace = bytes.fromhex(trace_id)
    own_root = own.roots.get(trace_id)
    ids: dict[str, str] = {}  # draft key → span id
    for draft in task.steps:
        found = own.has(draft)
        ids[draft.key] = found[1] if found is not None else _span_id(trace_id, draft.key)
    ids[""] = own_root if own_root is not None else _span_id(trace_id, "root")
    out = []
    if own_root is None:
        out.append(_span(task.root, trace, ids[""], ""))
    else:
        attrs = {k: v for k, v in task.root.attrs.items() if k not in _RUN_KEYS}
        told = replace(task.root, name=f"{task.root.name} events", attrs=attrs)
        out.append(_span(told, trace, _span_id(trace_id, "root"), own_root))
    for draft in task.steps:
        if own.has(draft) is None:
            out.append(_span(draft, trace, ids[draft.key], ids.get(draft.parent, ids[""])))
    return out


#: what makes a task's root an agent run: left out when it joins the tool's own root
_RUN_KEYS = frozenset({sc.GEN_AI_OPERATION_NAME, sc.GEN_AI_AGENT_NAME})


def _span(draft: Draft, trace: bytes, span_id: str, parent: str) -> Span:
    span = Span(
        trace_id=trace,
        span_id=bytes.fromhex(span_id),
        parent_span_id=bytes.fromhex(parent) if parent else b"",
        name=draft.name,
        kind=Span.SpanKind.SPAN_KIND_INTERNAL,
        start_time_unix_nano=max(draft.start_ns, 0),
        end_time_unix_nano=max(draft.end_ns, draft.start_ns, 0),
    )
    span.attributes.extend(_key_values(draft.attrs))
    for name, at, attrs in draft.events:
        event = span.events.add(name=name, time_unix_nano=at)
        event.attributes.extend(_key_values(attrs))
    if draft.error is not None:
        span.status.CopyFrom(Status(code=Status.StatusCode.STATUS_CODE_ERROR, message=draft.error))
    return span


def _key_values(attrs: dict[str, Any]) -> list[KeyValue]:
    out = []
    for key, value in attrs.items():
        if value is None or value == "":
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        out.append(KeyValue(key=key, value=AnyValue(string_value=text)))
    return out


def _event(row: dict[str, Any]) -> Event:
    return Event(
        name=row["event"],
        time_ns=int(row["time_ns"]),
        sequence=int(row["sequence"]),
        prompt=row["prompt_id"],
        attrs=dict(row["attributes"]),
        resource=dict(row["resource_attributes"]),
        trace_id=row["trace_id"],
        span_id=row["span_id"],
        record_hash=int(row["record_hash"]),
    )


def request_of(tasks: list[Task], tool: str, session: str) -> ExportTraceServiceRequest:
    """The tasks as one OTLP request, as written when the tool sent no spans of its own (for
    tests and benchmarks)."""
    request = ExportTraceServiceRequest()
    for task in tasks:
        _add_task(request, task, trace_id_of(tool, session, task.key), _OwnSpans(()))
    return request
