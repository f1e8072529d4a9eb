"""SDK overhead: a bare function call against the same call wrapped in Tokentrail steps, and a
real openai / anthropic client call against the local model stand-in, bare and instrumented.

A real TracerProvider with a BatchSpanProcessor feeds an exporter that drops spans, so the
figure is what the application pays per step (span creation, attributes, context, export
queueing), not network time. The client calls go over loopback HTTP to `LLMServer`, so they
include the client library's own work; the target is under 5% or 200 µs a call.
Run: `python -m bench.overhead`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import tokentrail


class _Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _median_us(fn: Callable[[], object], n: int = 20_000, rounds: int = 5) -> float:
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        results.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(results)


def main() -> None:
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Drop(), max_queue_size=100_000))
    trace.set_tracer_provider(provider)

    def work() -> int:
        return sum(range(50))

    @tokentrail.tool("lookup")
    def tool_call() -> int:
        return work()

    def model_call() -> int:
        with tokentrail.llm("gpt-4o", provider="openai") as call:
            call.set_usage(input_tokens=1200, output_tokens=80, cache_read_tokens=1000)
            return work()

    bare = _median_us(work)
    print(f"{'call':<34}{'median µs':>10}{'overhead µs':>13}")
    print(f"{'bare function':<34}{bare:>10.2f}{'':>13}")
    for label, fn in (("@tokentrail.tool", tool_call), ("tokentrail.llm + set_usage", model_call)):
        us = _median_us(fn)
        print(f"{label:<34}{us:>10.2f}{us - bare:>13.2f}")
    _clients()
    provider.shutdown()


def _clients() -> None:
    import anthropic
    import openai

    from tokentrail.demo.llm_server import LLMServer
    from tokentrail.instrumentation.anthropic import AnthropicInstrumentor
    from tokentrail.instrumentation.openai import OpenAIInstrumentor

    messages: Any = [{"role": "user", "content": "Where is order 42?"}]
    with LLMServer(reply="It shipped yesterday.") as server:
        oai = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="t")
        claude = anthropic.Anthropic(base_url=server.base_url, api_key="t")
        calls: list[tuple[str, Callable[[], object]]] = [
            (
                "openai chat.completions.create",
                lambda: oai.chat.completions.create(model="gpt-4o", messages=messages),
            ),
            (
                "anthropic messages.create",
                lambda: claude.messages.create(model="claude-sonnet-4-6", max_tokens=256, messages=messages),
            ),
        ]
        print(f"\n{'client call (loopback HTTP)':<34}{'bare µs':>10}{'traced µs':>11}{'overhead':>16}")
        for label, fn in calls:
            bare_runs, traced_runs = [], []
            for _ in range(7):  # alternate, so drift (server, caches) hits both sides alike
                bare_runs.append(_median_us(fn, n=100, rounds=1))
                OpenAIInstrumentor().instrument()
                AnthropicInstrumentor().instrument()
                traced_runs.append(_median_us(fn, n=100, rounds=1))
                OpenAIInstrumentor().uninstrument()
                AnthropicInstrumentor().uninstrument()
            bare, traced = statistics.median(bare_runs), statistics.median(traced_runs)
            extra = traced - bare
            print(f"{label:<34}{bare:>10.0f}{traced:>11.0f}{extra:>8.0f} µs {extra / bare:>5.1%}")


if __name__ == "__main__":
    main()
