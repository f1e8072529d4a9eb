"""kill -9 the collector during sustained ingest: every acknowledged span must be stored exactly once."""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.collector import (
    chat_request,
    child_pids,
    collector_env,
    free_port,
    is_alive,
    start_collector_process,
    stored_span_counts,
)

pytestmark = pytest.mark.slow


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
                body, ids = chat_request(rng, 200, "crash-test", input_tokens=100)
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
    workers = child_pids(proc.pid)
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
    while time.monotonic() < deadline and any(is_alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not [pid for pid in workers if is_alive(pid)]

    proc = start_collector_process(env, port)  # restart: the writer replays the spool from its checkpoint
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = httpx.get(f"http://127.0.0.1:{port}/api/status").json()
        if status["spool"]["backlog_bytes"] == 0:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0

    stored = stored_span_counts(env)
    assert sum(stored.values()) == len(stored)  # no span id stored twice, acknowledged or not
    missing = [s for s in acknowledged if s not in stored]
    assert missing == [], f"{len(missing)} of {len(acknowledged)} acknowledged spans are missing"
    assert all(stored[s] == 1 for s in acknowledged)
