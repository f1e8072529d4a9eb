"""Agent traces for the web UI's tests, made with the real OTel SDK and stored through the
collector's own flatten → insert → summary path (`tokentrail.collector.writer.load`)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from tokentrail import semconv as sc
from tokentrail.collector.writer import load
from tokentrail.pricing import PriceBook

_PRICES: PriceBook | None = None


def prices() -> PriceBook:
    global _PRICES
    if _PRICES is None:
        _PRICES = PriceBook()
    return _PRICES


class Recorder:
    """A tracer provider of its own (not the global one) whose spans go to a store."""

    def __init__(self, service: str = "support-bot", resource: dict[str, str] | None = None) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(
            resource=Resource.create({sc.SERVICE_NAME: service, **(resource or {})})
        )
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer: Tracer = self.provider.get_tracer("tests.web")
        self.clock = time.time_ns() - 3_600_000_000_000  # an hour ago: inside the default range

    def tick(self, ms: int) -> int:
        self.clock += ms * 1_000_000
        return self.clock

    @contextmanager
    def span(
        self, name: str, ms: int = 10, kind: SpanKind = SpanKind.INTERNAL, error: str = "", **attrs: Any
    ) -> Iterator[Any]:
        start = self.tick(1)
        with self.tracer.start_as_current_span(
            name,
            kind=kind,
            start_time=start,
            end_on_exit=False,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            for key, value in attrs.items():
                if value is not None:
                    span.set_attribute(key.replace("__", "."), value)
            yield span
            if error:
                span.set_status(Status(StatusCode.ERROR, error))
                span.set_attribute("error.type", error)
            span.end(end_time=max(self.tick(ms), start + ms * 1_000_000))

    @contextmanager
    def agent_run(self, agent: str, conversation: str, user: str, fail: bool = False) -> Iterator[Any]:
        """The root `invoke_agent` span of an agent run in a conversation, for a user."""
        with self.span(
            f"invoke_agent {agent}",
            5,
            error="AgentFailed" if fail else "",
            gen_ai__operation__name="invoke_agent",
            gen_ai__agent__name=agent,
            gen_ai__conversation__id=conversation,
            user__id=user,
        ) as root:
            yield root

    def chat(
        self,
        model: str,
        provider: str,
        input_tokens: int,
        output_tokens: int,
        cached: int = 0,
        reasoning: int = 0,
        messages: Any = None,
        output: Any = None,
        error: str = "",
        agent: str = "support",
        **extra: Any,
    ) -> None:
        attrs: dict[str, Any] = {
            sc.GEN_AI_OPERATION_NAME: "chat",
            sc.GEN_AI_PROVIDER_NAME: provider,
            sc.GEN_AI_REQUEST_MODEL: model,
            sc.GEN_AI_AGENT_NAME: agent,
            sc.GEN_AI_USAGE_INPUT_TOKENS: input_tokens,
            sc.GEN_AI_USAGE_OUTPUT_TOKENS: output_tokens,
            sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: cached,
            sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: reasoning,
        }
        if messages is not None:
            attrs[sc.GEN_AI_INPUT_MESSAGES] = json.dumps(messages)
        if output is not None:
            attrs[sc.GEN_AI_OUTPUT_MESSAGES] = json.dumps(output)
        attrs.update({k.replace("__", "."): v for k, v in extra.items()})
        with self.span(f"chat {model}", 800, SpanKind.CLIENT, error=error, **attrs):
            pass

    def finished(self) -> list[ReadableSpan]:
        spans = list(self.exporter.get_finished_spans())
        self.exporter.clear()
        return spans

    def store(self, client: Any, project: str = "default") -> int:
        request = encode_spans(self.finished())
        return load(client, project, [request.SerializeToString()], prices())


def text(content: str) -> list[dict[str, Any]]:
    return [{"role": "user", "parts": [{"type": "text", "content": content}]}]


def support_run(
    rec: Recorder,
    *,
    agent: str = "support",
    conversation: str = "conv-1",
    user: str = "user-7",
    question: str = "Where is order 42?",
    fail: bool = False,
) -> str:
    """invoke_agent → plan, chat, tool (with args/result), a failed chat retried, final chat.
    Returns the trace id (hex)."""
    with rec.agent_run(agent, conversation, user, fail) as root:
        with rec.span(
            f"plan {agent}",
            3,
            gen_ai__operation__name="plan",
            tokentrail__step__kind="plan",
            gen_ai__agent__name=agent,
        ):
            pass
        rec.chat(
            "gpt-4o",
            "openai",
            1200,
            80,
            cached=0,
            agent=agent,
            messages=text(question),
            output=[
                {
                    "role": "assistant",
                    "parts": [
                        {
                            "type": "tool_call",
                            "id": "call_1",
                            "name": "lookup_order",
                            "arguments": {"order": 42},
                        }
                    ],
                }
            ],
        )
        with rec.span(
            "execute_tool lookup_order",
            120,
            gen_ai__operation__name="execute_tool",
            gen_ai__tool__name="lookup_order",
            gen_ai__tool__call__id="call_1",
            gen_ai__tool__call__arguments='{"order": 42}',
            gen_ai__tool__call__result='{"status": "shipped", "eta": "tomorrow"}',
        ):
            pass
        rec.chat(
            "gpt-4o",
            "openai",
            1400,
            0,
            agent=agent,
            error="RateLimitError",
            tokentrail__retry__attempt=1,
            tokentrail__retry__reason="429 Too Many Requests",
        )
        rec.chat(
            "gpt-4o",
            "openai",
            1400,
            60,
            cached=1024,
            agent=agent,
            tokentrail__retry__attempt=2,
            output=[{"role": "assistant", "parts": [{"type": "text", "content": "It ships tomorrow."}]}],
        )
        return format(root.get_span_context().trace_id, "032x")
