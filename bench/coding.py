"""Coding agents at a working day's scale: a session of 2,000 model requests and 5,000 tool calls
(100 prompts, from the emulators in tests/support/coding_agents) sent as each tool sends it,
through the OTel SDK's OTLP exporter to a collector in this process.

Printed per tool: the events sent, how long the collector took to store them and build the
session's traces (the writer's flush), the spans and traces that made; the session builder's
time for one prompt of the day-long session, as a live session's batch asks of it (median); and
the server time of the pages that show the session: one prompt's trace, the session timeline and
the session's conversation, beside a 1,000-span trace page (median of repeated runs).

Run: `python -m bench.coding [--tools claude_code,codex,gemini_cli] [--runs 7]`.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from bench.dataset import one_trace as _one_trace
from bench.ui import _median_ms
from tests.support.coding_agents import TOOLS, day_long_session, emit_events
from tests.support.collector import running_collector
from tokentrail.collector.coding import sessions
from tokentrail.collector.coding.events import Touched
from tokentrail.collector.writer import load
from tokentrail.pricing import PriceBook
from tokentrail.server.settings import from_env
from tokentrail.store import connect, migrate
from tokentrail.web.app import create_app


def _median_s(work: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _settings(data_dir: str, database: str) -> Any:
    """One embedded database directory for the whole run (chDB opens one per process), a
    database in it per case."""
    return from_env({"TOKENTRAIL_DATA_DIR": data_dir, "TOKENTRAIL_CLICKHOUSE_DATABASE": database})


def _one_tool(tool: str, runs: int, pricer: PriceBook, baseline_ms: float, data_dir: str) -> None:
    session = day_long_session(tool)  # type: ignore[arg-type]
    settings = _settings(data_dir, f"bench_{tool}")
    store = connect(settings)
    migrate(store)
    with running_collector(settings, store, pricer=pricer) as run:
        start = time.perf_counter()
        sent = emit_events(session, run.http_url)
        sending = time.perf_counter() - start
        start = time.perf_counter()
        run.flush()
        building = time.perf_counter() - start
        traces, spans = run.query(
            "SELECT uniqExact(trace_id), count() FROM spans FINAL WHERE conversation_id = {s:String} "
            "OR trace_id IN (SELECT trace_id FROM traces FINAL WHERE conversation_id = {s:String})",
            s=session.session_id,
        )[0]
        print(
            f"{tool}: {sent:,} events sent in {sending:.1f} s; stored and built into {traces:,} traces "
            f"of {spans:,} spans in {building:.1f} s"
        )
        last = run.query(
            "SELECT trace_id, toUnixTimestamp64Nano(start_time), toUnixTimestamp64Nano(end_time) "
            "FROM traces FINAL WHERE conversation_id = {s:String} ORDER BY start_time DESC LIMIT 1",
            s=session.session_id,
        )[0]
        prompt = run.query(
            "SELECT any(prompt_id) FROM agent_events WHERE session_id = {s:String} AND prompt_id != '' "
            "AND timestamp >= fromUnixTimestamp64Nano({t:Int64})",
            s=session.session_id,
            t=last[1],
        )[0][0]
        found = (tool, "", session.session_id, prompt)

        def one_prompt() -> None:
            touched = Touched()
            touched.add("default", found, last[2], last[2])
            sessions.build(store.client, touched, pricer)

        step = _median_s(one_prompt, runs)
        print(f"  one prompt rebuilt (a live batch's work): {step * 1000:.1f} ms (median of {runs})")
    with TestClient(create_app(settings, store), base_url="http://127.0.0.1") as web:
        pages = [
            ("the day's last prompt, trace page", f"/trace/{last[0]}"),
            ("the session's conversation", f"/traces?range=all&conversation={session.session_id}"),
            ("session timeline", f"/developers/sessions/{session.session_id}?range=all"),
        ]
        for label, url in pages:
            try:
                ms, size = _median_ms(web, url, runs)
            except RuntimeError as exc:
                print(f"  {label:<42}{'—':>10}  ({exc})")
                continue
            print(
                f"  {label:<42}{ms:>10.1f}{size / 1024:>8.0f} KB ({ms / baseline_ms:.2f}× the 1,000-span trace)"
            )
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    pricer = PriceBook()
    with tempfile.TemporaryDirectory(prefix="tokentrail-bench-coding-") as tmp:
        settings = _settings(tmp, "bench_baseline")
        store = connect(settings)
        migrate(store)
        payload, trace_id = _one_trace(1_000, random.Random(7))
        load(store.client, "default", [payload], pricer)
        with TestClient(create_app(settings, store), base_url="http://127.0.0.1") as web:
            baseline_ms, _ = _median_ms(web, f"/trace/{trace_id}", args.runs)
        store.close()
        print(f"a 1,000-span trace page: {baseline_ms:.1f} ms (median of {args.runs})")
        for tool in args.tools.split(","):
            _one_tool(tool.strip(), args.runs, pricer, baseline_ms, tmp)


if __name__ == "__main__":
    main()
