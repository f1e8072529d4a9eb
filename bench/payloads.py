"""Synthetic agent traces as real OTLP `ExportTraceServiceRequest` payloads.

Each trace looks like an agent run: `invoke_agent` → `plan`, model calls (`chat {model}`, CLIENT)
with OTel GenAI usage (cache reads and writes, reasoning), tool calls, and now and then a retried
model call. Part of the model spans carry message content, so spans average about 2 KB encoded.
Deterministic for a seed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans, Span

__all__ = ["agent_trace", "encoded_batches", "export_request"]

_MODELS = [
    ("openai", "gpt-4o", "gpt-4o-2024-08-06"),
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929"),
    ("anthropic", "claude-3-5-haiku", "claude-3-5-haiku-20241022"),
]
_TOOLS = ["search_orders", "get_customer", "refund", "send_email", "lookup_policy", "web_search"]
_AGENTS = ["support", "triage", "billing", "researcher"]
_WORDS = [
    "order",
    "refund",
    "shipping",
    "customer",
    "policy",
    "account",
    "invoice",
    "delivery",
    "warehouse",
    "status",
    "update",
]
_T0 = 1_764_000_000_000_000_000
_INTERNAL = Span.SpanKind.SPAN_KIND_INTERNAL
_CLIENT = Span.SpanKind.SPAN_KIND_CLIENT


def _set(span: Span, key: str, value: Any) -> None:
    kv = span.attributes.add()
    kv.key = key
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    elif isinstance(value, list):
        for item in value:
            kv.value.array_value.values.add().string_value = item
    else:
        kv.value.string_value = value


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def agent_trace(rng: random.Random, scope: ScopeSpans, *, spans: int = 20) -> None:
    """Append one agent run of about `spans` spans to `scope`: a plan, then chat and tool steps."""
    trace_id = rng.randbytes(16)
    start = _T0 + rng.randrange(7 * 86_400) * 1_000_000_000
    agent = rng.choice(_AGENTS)
    conversation = f"conv-{rng.randrange(10_000)}"
    root = scope.spans.add()
    root.trace_id, root.span_id, root.name, root.kind = (
        trace_id,
        rng.randbytes(8),
        f"invoke_agent {agent}",
        _INTERNAL,
    )
    for key, value in (
        ("gen_ai.operation.name", "invoke_agent"),
        ("gen_ai.agent.name", agent),
        ("gen_ai.conversation.id", conversation),
        ("user.id", f"user-{rng.randrange(500)}"),
    ):
        _set(root, key, value)
    clock = start + 1_000_000
    context = rng.randrange(800, 2000)
    for i in range(spans - 1):
        span = scope.spans.add()
        span.trace_id, span.span_id, span.parent_span_id = trace_id, rng.randbytes(8), root.span_id
        span.start_time_unix_nano = clock
        if i == 0:
            duration = _plan(span, agent)
        elif i % 3 == 2:
            duration = _tool(rng, span)
        else:
            duration, context = _chat(rng, span, context, conversation, agent)
        span.end_time_unix_nano = clock + duration
        clock += duration + 1_000_000
    root.start_time_unix_nano, root.end_time_unix_nano = start, clock


def _plan(span: Span, agent: str) -> int:
    span.name, span.kind = f"plan {agent}", _INTERNAL
    _set(span, "gen_ai.operation.name", "plan")
    _set(span, "tokentrail.step.kind", "plan")
    return 3_000_000


def _tool(rng: random.Random, span: Span) -> int:
    tool = rng.choice(_TOOLS)
    span.name, span.kind = f"execute_tool {tool}", _INTERNAL
    for key, value in (
        ("gen_ai.operation.name", "execute_tool"),
        ("gen_ai.tool.name", tool),
        ("gen_ai.tool.call.id", f"call_{rng.randbytes(6).hex()}"),
        ("gen_ai.tool.call.arguments", json.dumps({"query": _text(rng, 6), "limit": 10})),
    ):
        _set(span, key, value)
    return rng.randrange(5, 400) * 1_000_000


def _chat(rng: random.Random, span: Span, context: int, conversation: str, agent: str) -> tuple[int, int]:
    """A model call whose context has grown since the last one, part of it cached; returns its
    duration and the context it read."""
    provider, model, snapshot = rng.choice(_MODELS)
    span.name, span.kind = f"chat {model}", _CLIENT
    context += rng.randrange(200, 900)
    cached = int(context * rng.choice((0.0, 0.5, 0.8)))
    attrs: list[tuple[str, Any]] = [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", provider),
        ("gen_ai.request.model", model),
        ("gen_ai.response.model", snapshot),
        ("gen_ai.response.id", f"chatcmpl-{rng.randbytes(12).hex()}"),
        ("gen_ai.usage.input_tokens", context),
        ("gen_ai.usage.output_tokens", rng.randrange(20, 600)),
        ("gen_ai.usage.cache_read.input_tokens", cached),
        ("gen_ai.usage.cache_write.input_tokens", rng.choice((0, 0, 256))),
        ("gen_ai.usage.reasoning.output_tokens", rng.choice((0, 0, 64))),
        ("gen_ai.response.finish_reasons", [rng.choice(("stop", "tool_call", "stop"))]),
        ("gen_ai.request.temperature", 0.2),
        ("gen_ai.request.max_tokens", 1024),
        ("server.address", "api.openai.com" if provider == "openai" else "api.anthropic.com"),
        ("server.port", 443),
        ("http.response.status_code", 200),
        ("gen_ai.conversation.id", conversation),
        ("gen_ai.agent.name", agent),
    ]
    if rng.random() < 0.1:
        attrs.append(("tokentrail.retry.attempt", 2))
    question = [{"role": "user", "parts": [{"type": "text", "content": _text(rng, rng.randrange(150, 260))}]}]
    answer = [{"role": "assistant", "parts": [{"type": "text", "content": _text(rng, 40)}]}]
    attrs += [("gen_ai.input.messages", json.dumps(question)), ("gen_ai.output.messages", json.dumps(answer))]
    for key, value in attrs:
        _set(span, key, value)
    return rng.randrange(300, 4000) * 1_000_000, context


def export_request(
    spans: int, rng: random.Random, service_name: str = "support-bot"
) -> ExportTraceServiceRequest:
    """One request holding whole agent traces of ~20 spans each, `spans` spans in all."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    for key, value in (
        ("service.name", service_name),
        ("service.version", "1.4.2"),
        ("deployment.environment", "production"),
        ("telemetry.sdk.language", "python"),
    ):
        kv = resource_spans.resource.attributes.add()
        kv.key, kv.value.string_value = key, value
    scope = resource_spans.scope_spans.add()
    scope.scope.name, scope.scope.version = "tokentrail.instrumentation", "0.1.0"
    while len(scope.spans) < spans:
        agent_trace(
            rng, scope, spans=min(20, spans - len(scope.spans)) if spans - len(scope.spans) > 1 else 2
        )
    del scope.spans[spans:]
    return request


def encoded_batches(n_requests: int, spans_per_request: int = 1000, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [export_request(spans_per_request, rng).SerializeToString() for _ in range(n_requests)]


def iter_spans(request: ExportTraceServiceRequest) -> Iterator[Span]:
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            yield from ss.spans
