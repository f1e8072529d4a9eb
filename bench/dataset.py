"""Fill a database with realistic agent traces (bench.payloads) for the read-side benchmarks,
through the collector's own flatten → insert → summary path."""

from __future__ import annotations

import random
import time

from bench.payloads import export_request
from tokentrail.collector.writer import load
from tokentrail.pricing import PriceBook
from tokentrail.store import Store


def ensure_spans(store: Store, spans: int, pricer: PriceBook, seed: int = 11) -> int:
    """Load 1,000-span requests until the database holds at least `spans` spans; returns the count."""
    have = int(store.client.query("SELECT count() FROM spans").result_rows[0][0])
    if have >= spans:
        print(f"reusing {have:,} spans already loaded")
        return have
    rng = random.Random(seed + have)
    start = time.perf_counter()
    step = 50  # requests per load() call: summaries are refreshed once per call
    while have < spans:
        batch = [
            export_request(1000, rng).SerializeToString()
            for _ in range(min(step, (spans - have + 999) // 1000))
        ]
        have += load(store.client, "default", batch, pricer)
        print(f"  loaded {have:,} spans, {time.perf_counter() - start:.0f}s", flush=True)
    store.client.command("OPTIMIZE TABLE traces FINAL")
    return have
