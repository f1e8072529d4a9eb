"""Ingest throughput: spans/s *persisted* in ClickHouse by a real collector process.

Pre-encoded 1,000-span ExportTraceServiceRequest payloads (~2 KB a span, realistic GenAI
attributes) are sent concurrently over OTLP/HTTP to `tokentrail collector` running on its own
embedded database. The clock stops when the collector reports every span stored; the stored
count is then checked in ClickHouse itself (count of distinct rows), and peak RSS is read from
/proc. Run: `python -m bench.ingest [--requests 150] [--concurrency 4] [--runs 3]`. The
collector takes `TOKENTRAIL_WRITER_*` and `TOKENTRAIL_REDACT*` from the environment
(`TOKENTRAIL_REDACT=none` measures ingest without redaction).

Two write paths are measured, run by run in turn (`--transport`): `embedded`, the collector holding
the chDB database itself, and `http`, the collector writing over ClickHouse's HTTP interface (the
path taken with a ClickHouse server) to `tokentrail database` holding the same engine in its own
process. The peak RSS is the collector's and its flattening workers'.

The default run (150,000 spans, ~7 s) measures sustained ingest. Shorter runs mostly measure
their edges: the first chunk flattened before anything can be inserted, and the last insert
with nothing left to overlap it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.payloads import encoded_batches
from tests.support.collector import (
    child_pids,
    collector_env,
    free_port,
    start_collector_process,
    start_database_process,
)


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _count_in_clickhouse(env: dict[str, str]) -> int:
    code = (
        "from tokentrail.server.settings import from_env\n"
        "from tokentrail.store import connect\n"
        "st = connect(from_env())\n"
        "print(st.client.query('SELECT count() FROM spans FINAL').result_rows[0][0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def _peak_rss_with_workers_mib(pid: int) -> float:
    return _peak_rss_mib(pid) + sum(_peak_rss_mib(child) for child in child_pids(pid))


def run_once(
    payloads: list[bytes], spans_per_request: int, concurrency: int, transport: str = "embedded"
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="tokentrail-bench-") as tmp:
        port = free_port()
        extra = {
            k: v for k, v in os.environ.items() if k.startswith(("TOKENTRAIL_WRITER_", "TOKENTRAIL_REDACT"))
        }
        database = None
        if transport == "http":
            database, _ = start_database_process(Path(tmp) / "db")
            extra["TOKENTRAIL_CLICKHOUSE_URL"] = f"chdb://{Path(tmp) / 'db' / 'chdb'}"
        proc = start_collector_process(collector_env(f"{tmp}/collector", port, **extra), port)
        env = collector_env(f"{tmp}/collector", port, **extra)
        url = f"http://127.0.0.1:{port}"
        queue = list(payloads)
        lock = threading.Lock()
        refused = 0

        def send() -> None:
            nonlocal refused
            with httpx.Client(timeout=60) as client:
                while True:
                    with lock:
                        if not queue:
                            return
                        body = queue.pop()
                    while True:
                        r = client.post(
                            f"{url}/v1/traces",
                            content=body,
                            headers={"content-type": "application/x-protobuf"},
                        )
                        if r.status_code == 200:
                            break
                        with lock:
                            refused += 1
                        time.sleep(0.5)  # 503: spool full, back off like an exporter

        total = len(payloads) * spans_per_request
        start = time.perf_counter()
        threads = [threading.Thread(target=send) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        acked = time.perf_counter() - start
        while True:
            stored = httpx.get(f"{url}/api/status").json()["stats"]["tokentrail_spans_stored_total"]
            if stored >= total:
                break
            time.sleep(0.05)
        persisted = time.perf_counter() - start
        rss = _peak_rss_with_workers_mib(proc.pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        counted = _count_in_clickhouse(env)
        if database is not None:
            database.send_signal(signal.SIGTERM)
            database.wait(timeout=120)
        if counted != total:
            raise SystemExit(f"ClickHouse holds {counted} spans, expected {total}")
        return {
            "spans": total,
            "ack_per_s": total / acked,
            "persisted_per_s": total / persisted,
            "peak_rss_mib": rss,
            "refused": refused,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--spans", type=int, default=1000, help="spans per request")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--transport", default="embedded,http", help="write paths to measure, in turn: embedded, http"
    )
    args = parser.parse_args()
    transports = [t.strip() for t in args.transport.split(",") if t.strip()]
    if not transports or set(transports) - {"embedded", "http"}:
        parser.error("--transport takes embedded, http or both")
    payloads = encoded_batches(args.requests, spans_per_request=args.spans, seed=7)
    size = sum(map(len, payloads)) / (args.requests * args.spans)
    print(
        f"{args.requests} requests x {args.spans} spans, {size:.0f} bytes/span, concurrency {args.concurrency}"
    )
    results: dict[str, list[dict[str, float]]] = {t: [] for t in transports}
    for i in range(args.runs):
        for transport in transports:
            result = run_once(payloads, args.spans, args.concurrency, transport)
            results[transport].append(result)
            print(
                f"run {i + 1} {transport:8}: persisted {result['persisted_per_s']:,.0f} spans/s, "
                f"acknowledged {result['ack_per_s']:,.0f} spans/s, peak RSS {result['peak_rss_mib']:.0f} MiB, "
                f"503s {result['refused']:.0f}"
            )
    summary = {
        transport: {
            "median_persisted_spans_per_s": round(statistics.median(r["persisted_per_s"] for r in runs)),
            "median_acknowledged_spans_per_s": round(statistics.median(r["ack_per_s"] for r in runs)),
            "max_peak_rss_mib": round(max(r["peak_rss_mib"] for r in runs)),
        }
        for transport, runs in results.items()
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
