"""kill -9 the collector during sustained ingest: every acknowledged span must be stored exactly once."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support.collector import collector_env, free_port, start_collector_process

pytestmark = pytest.mark.slow


def _request(rng: random.Random, spans: int) -> tuple[bytes, list[str]]:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    attr = rs.resource.attributes.add()
    attr.key, attr.value.string_value = "service.name", "crash-test"
    scope = rs.scope_spans.add()
    trace_id = rng.randbytes(16)
    ids = []
    for i in range(spans):
        span = scope.spans.add()
        span.trace_id = trace_id
        span.span_id = rng.randbytes(8)
        span.name = f"chat step {i}"
        span.start_time_unix_nano = time.time_ns()
        span.end_time_unix_nano = span.start_time_unix_nano + 1000
        for key, value in (("gen_ai.operation.name", "chat"), ("gen_ai.request.model", "gpt-4o-mini")):
            kv = span.attributes.add()
            kv.key, kv.value.string_value = key, value
        kv = span.attributes.add()
        kv.key, kv.value.int_value = "gen_ai.usage.input_tokens", 100
        ids.append(span.span_id.hex())
    return request.SerializeToString(), ids


def _stored(env: dict[str, str]) -> dict[str, int]:
    code = (
        "import json\n"
        "from tokentrail.server.settings import from_env\n"
        "from tokentrail.store import connect\n"
        "st = connect(from_env())\n"
        "rows = st.client.query('SELECT span_id, count() FROM spans FINAL GROUP BY span_id').result_rows\n"
        "raw = st.client.query('SELECT count(), uniqExact(span_id) FROM spans FINAL').result_rows[0]\n"
        "print(json.dumps({'per_span': dict(rows), 'raw': list(raw)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["raw"][0] == data["raw"][1]
    return {k: int(v) for k, v in data["per_span"].items()}


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent has not reaped it


def test_kill_9_loses_no_acknowledged_span(tmp_path: Path):
    port = free_port()
    env = collector_env(str(tmp_path / "data"), port, TOKENTRAIL_WRITER_BATCH_SPANS="2000")
    proc = start_collector_process(env, port)
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def sender(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                body, ids = _request(rng, 200)
                try:
                    r = client.post(
                        f"http://127.0.0.1:{port}/v1/traces",
                        content=body,
                        headers={"content-type": "application/x-protobuf"},
                    )
                except httpx.HTTPError:
                    time.sleep(0.05)
                    continue
                if r.status_code == 200:
                    with lock:
                        acked.extend(ids)

    threads = [threading.Thread(target=sender, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    time.sleep(3.0)
    workers = _children(proc.pid)
    assert workers, "the collector runs flattening worker processes"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    with lock:
        acknowledged = list(acked)
    assert len(acknowledged) > 1000, "the collector acknowledged too little to make the test meaningful"

    deadline = time.monotonic() + 10  # its workers notice and exit instead of idling on forever
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not [pid for pid in workers if _alive(pid)]

    proc = start_collector_process(env, port)  # restart: the writer replays the spool from its checkpoint
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = httpx.get(f"http://127.0.0.1:{port}/api/status").json()
        if status["spool"]["backlog_bytes"] == 0:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0

    stored = _stored(env)
    missing = [s for s in acknowledged if s not in stored]
    assert missing == [], f"{len(missing)} of {len(acknowledged)} acknowledged spans are missing"
    assert all(stored[s] == 1 for s in acknowledged)
