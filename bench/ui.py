"""Web UI server times: the trace page at 100, 1,000 and 10,000 spans, and the trace list over 1M
spans. Data goes in through the collector's own flatten → insert → summary path; pages are
fetched in-process through the ASGI app (query + template), median of repeated runs.

Run: `python -m bench.ui [--spans 1000000]`.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from typing import Any

from fastapi.testclient import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bench.dataset import ensure_spans
from bench.payloads import agent_trace
from tokentrail.analysis.run import analyze_range
from tokentrail.collector.writer import load
from tokentrail.pricing import PriceBook
from tokentrail.server.settings import from_env
from tokentrail.store import connect, migrate
from tokentrail.web.app import create_app


def _one_trace(spans: int, rng: random.Random) -> tuple[bytes, str]:
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    kv = resource.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "bench"
    scope = resource.scope_spans.add()
    agent_trace(rng, scope, spans=spans)
    return request.SerializeToString(), scope.spans[0].trace_id.hex()


def _median_ms(client: TestClient, url: str, runs: int) -> tuple[float, int]:
    times, size = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {response.status_code}: {response.text[:300]}")
        size = len(response.content)
    return statistics.median(times), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--spans", type=int, default=1_000_000, help="spans in the database for the list timings"
    )
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--analyze", action="store_true", help="analyse every trace for waste before timing the list"
    )
    args = parser.parse_args()
    rng = random.Random(7)
    pricer = PriceBook()
    with tempfile.TemporaryDirectory(prefix="tokentrail-bench-ui-") as tmp:
        settings = from_env({"TOKENTRAIL_DATA_DIR": tmp})
        store = connect(settings)
        migrate(store)
        big: dict[int, str] = {}
        for n in (100, 1_000, 10_000):
            payload, trace_id = _one_trace(n, rng)
            load(store.client, "default", [payload], pricer)
            big[n] = trace_id
        with TestClient(create_app(settings, store), base_url="http://127.0.0.1") as web:
            print(f"{'trace page (server render)':<44}{'median ms':>10}{'HTML KB':>10}")
            for n, trace_id in big.items():
                ms, size = _median_ms(web, f"/trace/{trace_id}", args.runs)
                print(f"{f'{n:,} spans':<44}{ms:>10.1f}{size / 1024:>10.0f}")
            start = time.perf_counter()
            loaded = ensure_spans(store, args.spans, pricer)
            traces = store.client.query("SELECT count() FROM traces FINAL").result_rows[0][0]
            print(f"{loaded:,} spans / {traces:,} traces ready in {time.perf_counter() - start:.0f}s")
            if args.analyze:
                start = time.perf_counter()
                analyzed = analyze_range(store.client, "default", 0, 2**62, pricer)
                print(f"{analyzed:,} traces analysed for waste in {time.perf_counter() - start:.0f}s")
            first: Any = web.get("/traces.json?range=all").json()
            cases = [
                ("list, all time, newest first", "/traces?range=all"),
                ("list, all time, by cost", "/traces?range=all&sort=cost"),
                ("list, by waste, only traces with waste", "/traces?range=all&sort=waste&has_waste=1"),
                ("waste report by agent", "/waste?range=all&by=agent"),
                ("waste report by model", "/waste?range=all&by=model"),
                ("list, next page (keyset)", "/traces?range=all&cursor=" + first["next"]["cursor"]),
                ("list, one model", "/traces?range=all&model=gpt-4o-2024-08-06"),
                ("list, span-name search", "/traces?range=all&q=refund"),
                ("list JSON, all time", "/traces.json?range=all"),
                ("conversations, all time", "/conversations?range=all"),
            ]
            print(f"{f'at {loaded:,} spans':<44}{'median ms':>10}{'HTML KB':>10}")
            for label, url in cases:
                ms, size = _median_ms(web, url, args.runs * 2)
                print(f"{label:<44}{ms:>10.1f}{size / 1024:>10.0f}")
        store.close()


if __name__ == "__main__":
    main()
