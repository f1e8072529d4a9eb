"""Several collector processes on one database: `tokentrail database` serves the embedded engine
over ClickHouse's HTTP interface, three `tokentrail collector`s with spools of their own write to
it through their clickhouse-connect HTTP clients (as to a ClickHouse server), and traces reach
them routed by trace id, as the OpenTelemetry Collector's load-balancing exporter routes them."""

from __future__ import annotations

import random
import signal
import subprocess
import time

import httpx
import pytest

from tests.support.collector import (
    chat_request,
    collector_env,
    free_port,
    scrape,
    start_collector_process,
    start_database_process,
)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def _query(url: str, sql: str) -> list[list[str]]:
    base, (user, password) = "http://" + url.split("@", 1)[1], url.split("//", 1)[1].split("@")[0].split(":")
    answer = httpx.post(base, params={"database": "tokentrail"}, content=sql, auth=(user, password))
    answer.raise_for_status()
    return [line.split("\t") for line in answer.text.splitlines()]


@pytest.mark.slow
def test_three_collectors_share_one_database_each_trace_stored_and_analysed_once(tmp_path):
    database, url = start_database_process(tmp_path / "db")
    collectors = []
    try:
        for n in range(3):
            port = free_port()
            env = collector_env(
                str(tmp_path / f"c{n}"),
                port,
                TOKENTRAIL_CLICKHOUSE_URL=f"chdb://{tmp_path / 'db' / 'chdb'}",
                TOKENTRAIL_WASTE_IDLE_SECONDS="1",
            )
            collectors.append((start_collector_process(env, port), f"http://127.0.0.1:{port}"))
        rng = random.Random(17)
        sent: dict[str, list[str]] = {}  # trace id -> span ids
        for i in range(30):
            body, ids = chat_request(rng, 4, "scale-out", input_tokens=1000 + i)
            trace_id = _trace_id(body)
            # the gateway's routing: every span of a trace to the same collector
            _, target = collectors[int(trace_id, 16) % len(collectors)]
            answer = httpx.post(
                f"{target}/v1/traces", content=body, headers={"content-type": "application/x-protobuf"}
            )
            assert answer.status_code == 200, answer.text
            sent[trace_id] = ids
        routed = {
            target: sum(1 for t in sent if collectors[int(t, 16) % 3][1] == target)
            for _, target in collectors
        }
        assert all(routed.values())  # each collector had traces of its own

        deadline = time.monotonic() + 90
        analysed: list[list[str]] = []
        while time.monotonic() < deadline:
            analysed = _query(url, "SELECT trace_id FROM trace_waste FINAL ORDER BY trace_id")
            if len(analysed) == len(sent):
                break
            time.sleep(0.5)
        assert [row[0] for row in analysed] == sorted(sent)
        spans = _query(url, "SELECT span_id, count() FROM spans GROUP BY span_id")
        assert {span: int(count) for span, count in spans} == {s: 1 for ids in sent.values() for s in ids}
        figures = [scrape(target) for _, target in collectors]
        assert sum(f["tokentrail_spans_stored_total"] for f in figures) == 4 * len(sent)
        # each trace analysed by one collector: the counts add up to the traces, not three times that
        assert sum(f["tokentrail_traces_analyzed_total"] for f in figures) == len(sent)
    finally:
        for proc, _ in collectors:
            _stop(proc)
        _stop(database)


def _trace_id(body: bytes) -> str:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest.FromString(body)
    return request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
