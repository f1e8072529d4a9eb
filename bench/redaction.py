"""Redaction's cost on the ingest hot path: the CPU time to flatten one span (decode, redact,
normalize, price, build its row) with redaction off, with the default rules (`secrets`, `cards`),
and with every rule set and one extra pattern; on the bench.ingest payloads (~1.9 KB a span, no
secret in them), and on the same payloads with an API key in the input messages of every tenth
model call (those strings are searched with the rules' Python expressions).

CPU time of this process, not wall time, so that other processes on the same cores move the figure
less; the configurations take turns, round after round, and each figure is the median of its rounds.
Run: `python -m bench.redaction [--requests 10] [--rounds 9]`.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.payloads import encoded_batches, iter_spans
from tokentrail.collector.flatten import SpoolItem, flatten_records
from tokentrail.collector.redact import Redactor
from tokentrail.collector.spool import KIND_TRACES
from tokentrail.pricing import PriceBook

_CONFIGS: dict[str, Redactor | None] = {
    "off": None,
    "default (secrets, cards)": Redactor(),
    "all sets + 1 pattern": Redactor(("secrets", "emails", "cards"), (("ticket", r"TCK-[0-9]{6}"),)),
}


def with_secrets(payload: bytes, rng: random.Random) -> bytes:
    """The payload with an API key in the input messages of every tenth model call."""
    request = ExportTraceServiceRequest.FromString(payload)
    calls = 0
    for span in iter_spans(request):
        for kv in span.attributes:
            if kv.key == "gen_ai.input.messages":
                calls += 1
                if calls % 10 == 0:
                    key = "sk-proj-" + "".join(rng.choice("abcdefXYZ0123456789") for _ in range(48))
                    kv.value.string_value = kv.value.string_value.replace(" ", f" {key} ", 1)
    return request.SerializeToString()


def _per_span_us(payloads: list[bytes], pricer: PriceBook, redactor: Redactor | None) -> float:
    items: list[SpoolItem] = [(KIND_TRACES, "default", p) for p in payloads]
    gc.disable()  # as in the worker processes
    try:
        start = time.process_time()
        flattened = flatten_records(items, pricer, redactor=redactor)
        elapsed = time.process_time() - start
    finally:
        gc.enable()
    return elapsed / flattened.span_count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=10, help="1,000-span requests a round")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    clean = encoded_batches(args.requests, 1000, seed=7)
    rng = random.Random(7)
    planted = [with_secrets(p, rng) for p in clean]
    pricer = PriceBook()
    for redactor in _CONFIGS.values():  # warm up: imports, compiled expressions, caches
        _per_span_us(clean[:1], pricer, redactor)
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for data, payloads in (("no secret", clean), ("a key in 1 call of 10", planted)):
            for name, redactor in _CONFIGS.items():
                results.setdefault((data, name), []).append(_per_span_us(payloads, pricer, redactor))
    print(f"{'payloads':<24}{'redaction':<28}{'µs/span (median)':>18}{'vs off':>10}")
    for (data, name), runs in results.items():
        median = statistics.median(runs)
        off = statistics.median(results[(data, "off")])
        print(f"{data:<24}{name:<28}{median:>18.1f}{median - off:>+10.1f}")


if __name__ == "__main__":
    main()
