"""SDK overhead: a bare function call against the same call wrapped in Tokentrail steps.

A real TracerProvider with a BatchSpanProcessor feeds an exporter that drops spans, so the
figure is what the application pays per step (span creation, attributes, context, export
queueing), not network time. Run: `python -m bench.overhead`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

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
    provider.shutdown()


if __name__ == "__main__":
    main()
