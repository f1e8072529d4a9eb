"""Fault injection: a full disk, torn and zero-filled tails, damaged bytes, poison spans, two
collectors on one directory, kill -9 at many points. After each fault, every acknowledged span is
in ClickHouse exactly once, and nothing was acknowledged that the spool could not give back.

Real pieces throughout: `tokentrail collector` processes (or the in-process Collector) fed real
`ExportTraceServiceRequest` bodies over HTTP, the real spool on a real filesystem (the disk fills
up under RLIMIT_FSIZE, the kernel's per-file size limit, which needs no privileges), chDB.
"""

from __future__ import annotations

import os
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.support.collector import (
    chat_request,
    child_pids,
    collector_env,
    free_port,
    is_alive,
    running_collector,
    scrape,
    start_collector_process,
    stored_span_counts,
)
from tokentrail.collector.service import Collector
from tokentrail.collector.spool import KIND_TRACES, Spool

pytestmark = pytest.mark.slow

_injected: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _report_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(_injected.items()))
    line = f"\nfault injection: {sum(_injected.values())} faults injected ({summary})"
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        print(line)


def _post(client: httpx.Client, url: str, body: bytes) -> httpx.Response:
    return client.post(f"{url}/v1/traces", content=body, headers={"content-type": "application/x-protobuf"})


class _Senders:
    """Threads that send requests until stopped, like OTLP exporters, and note what was acknowledged."""

    def __init__(self, url: str, threads: int = 2, spans: int = 20) -> None:
        self.url, self.spans = url, spans
        self.acked: list[str] = []
        self.statuses: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._send, args=(seed,)) for seed in range(threads)]
        for t in self._threads:
            t.start()

    def _send(self, seed: int) -> None:
        rng = random.Random(seed * 7919 + int(time.time()))
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                body, ids = chat_request(rng, self.spans, "fault-test")
                try:
                    r = _post(client, self.url, body)
                except httpx.HTTPError:
                    time.sleep(0.05)  # the collector is down: retry with a new request
                    continue
                with self._lock:
                    self.statuses[r.status_code] += 1
                    if (
                        r.status_code == 200
                        and not ExportTraceServiceResponse.FromString(
                            r.content
                        ).partial_success.rejected_spans
                    ):
                        self.acked.extend(ids)
                if r.status_code != 200:
                    time.sleep(0.05)

    def count(self, status: int) -> int:
        with self._lock:
            return self.statuses[status]

    def acknowledged(self) -> int:
        with self._lock:
            return len(self.acked)

    def stop(self) -> list[str]:
        self._stop.set()
        for t in self._threads:
            t.join()
        return list(self.acked)


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _status(port: int) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=10).json()
    return data


def _drain_and_stop(proc: subprocess.Popen[bytes], port: int) -> None:
    _wait(lambda: _status(port)["spool"]["backlog_bytes"] == 0, 60, "the spool to drain")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def _assert_exactly_once(acknowledged: list[str], stored: dict[str, int]) -> None:
    assert len(set(acknowledged)) == len(acknowledged)
    missing = [s for s in acknowledged if s not in stored]
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged spans are not in ClickHouse"
    twice = [s for s in acknowledged if stored[s] != 1]
    assert not twice, f"{len(twice)} acknowledged spans are stored more than once"


# --- a real collector process: two on one directory, a full disk, kill -9 -------------------------


def test_two_collectors_one_directory_then_a_full_disk(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    env = collector_env(str(data), port, TOKENTRAIL_WRITER_WORKERS="1")
    proc = start_collector_process(env, port)
    senders: _Senders | None = None
    try:
        # A second collector on the same data directory (its own database, as with a ClickHouse
        # server) is refused at start, and says by whom.
        second = collector_env(
            str(data), free_port(), TOKENTRAIL_CLICKHOUSE_URL=f"chdb://{tmp_path / 'other'}"
        )
        out = subprocess.run(
            [sys.executable, "-m", "tokentrail", "collector"],
            env=second,
            capture_output=True,
            text=True,
            timeout=120,
        )
        _injected["second collector on one directory"] += 1
        assert out.returncode != 0
        assert f"the spool {data / 'spool'} is in use by pid {proc.pid}" in out.stderr

        senders = _Senders(f"http://127.0.0.1:{port}")
        _wait(lambda: senders.acknowledged() >= 200, 30, "acknowledged spans")
        # The disk fills up: the spool's file may grow only a little more.
        segment = max((data / "spool").glob("*.seg"))
        resource.prlimit(
            proc.pid, resource.RLIMIT_FSIZE, (segment.stat().st_size + 100_000, resource.RLIM_INFINITY)
        )
        _injected["disk full"] += 1
        _wait(lambda: senders.count(503) >= 20, 30, "503 answers while the disk is full")
        status = _status(port)
        assert status["spool"]["errors"] > 0 and "File too large" in status["spool"]["last_error"]
        assert status["spool"]["last_error_at"]
        metrics = scrape(f"http://127.0.0.1:{port}")
        assert metrics["tokentrail_spool_errors_total"] >= status["spool"]["errors"] > 0  # still failing
        assert metrics["tokentrail_spool_free_bytes"] >= 0
        assert senders.count(500) == 0, "a disk error is retryable (503), never a 500 exporters drop"
        shown = subprocess.run(
            [sys.executable, "-m", "tokentrail", "status", "--url", f"http://127.0.0.1:{port}/api/status"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "failed writes" in shown.stdout and "File too large" in shown.stdout, shown.stdout

        # Space comes back: the spool takes requests again, after the rolled-back ones.
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        mark = senders.acknowledged()
        _wait(lambda: senders.acknowledged() >= mark + 200, 30, "acknowledgements after space came back")
        acknowledged = senders.stop()

        # Nothing acknowledged that was not durable: killed now, the collector finds it all again.
        proc.kill()
        proc.wait()
        _injected["kill -9"] += 1
        proc = start_collector_process(env, port)
        _drain_and_stop(proc, port)
    finally:
        if senders is not None:
            senders.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _assert_exactly_once(acknowledged, stored_span_counts(env))


def test_kill_9_at_many_points_of_ingest_write_and_replay(tmp_path: Path) -> None:
    port = free_port()
    env = collector_env(
        str(tmp_path / "data"), port, TOKENTRAIL_WRITER_WORKERS="1", TOKENTRAIL_WRITER_BATCH_SPANS="500"
    )
    proc = start_collector_process(env, port)
    senders = _Senders(f"http://127.0.0.1:{port}", threads=3)
    orphans: list[int] = []
    try:
        # early kills land in the replay of what the previous run left (and in its worker's
        # start), later ones in ingest, flattening, insert and checkpoint
        for delay in (0.05, 0.7, 0.2, 1.0):
            time.sleep(delay)
            orphans += child_pids(proc.pid)
            proc.kill()
            proc.wait()
            _injected["kill -9"] += 1
            proc = start_collector_process(env, port)
        time.sleep(0.5)
        acknowledged = senders.stop()
        assert len(acknowledged) > 500, "too little acknowledged to make the test meaningful"
        _drain_and_stop(proc, port)
    finally:
        senders.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _assert_exactly_once(acknowledged, stored_span_counts(env))
    # the workers of a killed collector notice and exit, even one killed while they started
    try:
        _wait(
            lambda: not any(map(is_alive, orphans)), 10, f"the killed collectors' workers {orphans} to exit"
        )
    finally:
        for pid in filter(is_alive, orphans):
            os.kill(pid, signal.SIGKILL)


_APPEND_AND_CONSUME = """
import sys, threading, time
from pathlib import Path
from tokentrail.collector.spool import KIND_TRACES, Spool

spool = Spool(Path(sys.argv[1]), segment_bytes=2048)
run = sys.argv[2]
out = threading.Lock()

def say(line):
    with out:
        sys.stdout.write(line + "\\n")
        sys.stdout.flush()

def append(thread):
    for i in range(10**9):
        name = f"{run}.{thread}.{i}"
        spool.append(KIND_TRACES, "p", f"{name}|{'x' * (i % 7 * 30)}".encode())
        say("acked " + name)

def consume():
    while True:
        records = list(spool.read())
        if records:
            say("consumed " + " ".join(r.payload.split(b"|")[0].decode() for r in records))
            spool.commit(records[-1].end)
        time.sleep(0.005)

say("ready")
for t in range(3):
    threading.Thread(target=append, args=(t,), daemon=True).start()
threading.Thread(target=consume, daemon=True).start()
time.sleep(60)
"""


def test_kill_9_anywhere_in_the_spool_write_path(tmp_path: Path) -> None:
    """Appends (write, fsync, segment roll) and commits (checkpoint, segment deletion) killed at
    random points, dozens of times: whatever was acknowledged is read back after the restart."""
    rng = random.Random(11)
    directory = tmp_path / "spool"
    acked: set[str] = set()
    consumed: set[str] = set()
    for run in range(30):
        proc = subprocess.Popen(
            [sys.executable, "-c", _APPEND_AND_CONSUME, str(directory), str(run)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n", proc.stderr.read() if proc.stderr else ""
        time.sleep(rng.uniform(0.005, 0.08))
        proc.kill()
        # read through the same buffered files as the readline above: communicate() reads the
        # pipes' descriptors and would miss what readline had already buffered past "ready"
        output, errors = proc.stdout.read(), proc.stderr.read() if proc.stderr else b""
        proc.wait()
        _injected["kill -9 in the spool's write path"] += 1
        assert b"Traceback" not in errors, errors.decode()[-2000:]
        text = output.decode(errors="replace")
        for line in text[: text.rfind("\n") + 1].splitlines():  # not a last line cut short
            kind, _, rest = line.partition(" ")
            if kind == "acked":
                acked.add(rest)
            elif kind == "consumed":
                consumed.update(rest.split())
    spool = Spool(directory)
    names = [r.payload.split(b"|")[0].decode() for r in spool.read(max_bytes=1 << 40)]
    assert len(acked) > 200
    lost = acked - consumed - set(names)
    assert not lost, f"{len(lost)} acknowledged records are gone after kill -9: {sorted(lost)[:5]}"
    assert len(names) == len(set(names)), "a record comes back twice"
    assert spool.quarantined == 0
    records = list(spool.read(max_bytes=1 << 40))
    if records:
        spool.commit(records[-1].end)
    assert spool.backlog_bytes == 0
    spool.close()


# --- the spool of a real collector, damaged, then read by the next collector ------------------------


def _offsets(segment: bytes) -> list[int]:
    offsets, at = [], 0
    while at < len(segment):
        offsets.append(at)
        at += 8 + struct.unpack_from("<I", segment, at)[0]
    return [*offsets, len(segment)]


@pytest.fixture
def seeded(settings: Any, store: Any) -> tuple[Path, list[list[str]]]:
    """A spool holding eight requests a collector acknowledged (its writer stopped)."""
    rng = random.Random(5)
    sent: list[list[str]] = []
    with running_collector(settings, store, writer=False) as tt, httpx.Client() as client:
        for n in range(8):
            body, ids = chat_request(rng, 3 + n % 3, "fault-test", name=f"request {n}")
            assert _post(client, tt.http_url, body).status_code == 200
            sent.append(ids)
    return settings.spool_dir, sent


def _restart_and_count(
    settings: Any, store: Any, spool_dir: Path, name: str, damage: Any
) -> tuple[set[str], dict[str, Any]]:
    """A new collector on a copy of the spool, damaged by `damage(segment_path)`; returns the span
    ids it stores, and its status. It must also take and store a new request."""
    data = settings.data_dir / name
    shutil.copytree(spool_dir, data / "spool")
    damage(max((data / "spool").glob("*.seg")))
    collector = Collector(settings.with_(data_dir=data), store)
    try:
        body, ids = chat_request(random.Random(name), 2, "fault-test", name="after the restart")
        collector.ingestor.ingest("traces", body, "protobuf", "default")
        collector.writer.flush()
        status = collector.status()
        assert collector.spool.backlog_bytes == 0
        assert not collector.writer.failing and not collector.writer.stalled
    finally:
        collector.stop()
    rows = store.client.query("SELECT span_id, count() FROM spans FINAL GROUP BY span_id").result_rows
    store.client.command("TRUNCATE TABLE spans")
    stored = {span for span, _ in rows}
    assert all(n == 1 for _, n in rows)
    assert set(ids) <= stored, "the restarted collector stores new requests"
    return stored - set(ids), status


def test_torn_and_zero_filled_tails_at_many_offsets(settings, store, seeded) -> None:
    spool_dir, sent = seeded
    segment = max(spool_dir.glob("*.seg")).read_bytes()
    bounds = _offsets(segment)
    rng = random.Random(3)
    cuts = sorted(
        {b + d for b in bounds[1:] for d in (-1, 1, 9)} | {rng.randrange(len(segment)) for _ in range(4)}
    )
    cuts = [c for c in cuts if 0 < c <= len(segment)]
    for cut in cuts:
        for zeros in (0, 4096 - cut % 4096):  # a crash; or a power loss, the last page zero-filled

            def damage(path: Path, cut: int = cut, zeros: int = zeros) -> None:
                with open(path, "r+b") as f:
                    f.truncate(cut)
                    f.seek(cut)
                    f.write(bytes(zeros))

            stored, status = _restart_and_count(settings, store, spool_dir, f"cut-{cut}-{zeros}", damage)
            _injected["zero-filled tail" if zeros else "torn tail"] += 1
            whole = [ids for ids, end in zip(sent, bounds[1:], strict=True) if end <= cut]
            assert stored == {s for ids in whole for s in ids}, f"cut at {cut}, {zeros} zeros after"
            assert status["spool"]["quarantined_records"] == 0, "a torn tail was never acknowledged"
            assert status["writer"]["last_error"] == ""


def test_damaged_bytes_mid_segment(settings, store, seeded) -> None:
    spool_dir, sent = seeded
    segment = max(spool_dir.glob("*.seg")).read_bytes()
    bounds = _offsets(segment)
    for record in (1, 3, 6):
        start, end = bounds[record], bounds[record + 1]
        for at in (start + 1, start + 6, start + 8, end - 40, end - 1):  # length, crc, kind, payload

            def damage(path: Path, at: int = at) -> None:
                with open(path, "r+b") as f:
                    f.seek(at)
                    byte = f.read(1)[0]
                    f.seek(at)
                    f.write(bytes([byte ^ 0xA5]))

            stored, status = _restart_and_count(settings, store, spool_dir, f"flip-{at}", damage)
            _injected["damaged byte mid-segment"] += 1
            expected = {s for n, ids in enumerate(sent) if n != record for s in ids}
            assert stored == expected, f"byte {at} of record {record} damaged"
            assert status["spool"]["quarantined_records"] == 1
            kept = Path(status["spool"]["quarantine_directory"]) / f"0000000000000001-{start:012d}.bad"
            assert kept.stat().st_size == end - start


# --- a sender of poison next to healthy senders -----------------------------------------------------


def _poison(rng: random.Random) -> tuple[bytes, list[str]]:
    """A valid OTLP request whose first span starts at 2^64-1 ns, beside healthy ones."""
    body, ids = chat_request(rng, 4, "fault-test", name="poison")
    request = ExportTraceServiceRequest.FromString(body)
    request.resource_spans[0].scope_spans[0].spans[0].start_time_unix_nano = 2**64 - 1
    return request.SerializeToString(), ids


def test_poison_spans_hold_no_other_sender_back(settings, store) -> None:
    rng = random.Random(17)
    with running_collector(settings, store) as tt, httpx.Client() as client:
        canaries: list[str] = []
        kept_whole = 0
        for n in range(4):
            body, ids = _poison(rng)
            r = _post(client, tt.http_url, body)
            _injected["poison request over HTTP"] += 1
            assert r.status_code == 200
            rejected = ExportTraceServiceResponse.FromString(r.content).partial_success.rejected_spans
            assert rejected in (0, 1)
            if rejected:  # refused at receive time, span by span: the others are acknowledged
                canaries += ids[1:]
            else:
                kept_whole += 1
            # ...and poison that got past the receivers, straight into the spool
            tt.collector.spool.append(KIND_TRACES, "default", _poison(rng)[0])
            tt.collector.writer.wake()
            _injected["poison record in the spool"] += 1
            for _ in range(3):
                body, ids = chat_request(rng, 5, "fault-test", name=f"canary {n}")
                assert _post(client, tt.http_url, body).status_code == 200
                canaries += ids
            sent = time.monotonic()

            def stored(ids: list[str] = canaries) -> bool:
                rows = tt.query(
                    "SELECT count() FROM spans FINAL WHERE span_id IN {ids:Array(String)}", ids=ids
                )
                return bool(rows[0][0] == len(ids))

            _wait(stored, 10, "the healthy senders' spans")
            assert time.monotonic() - sent < 5, "healthy spans waited behind poison"
        status = tt.collector.status()
        assert status["writer"]["dead_lettered_records"] == 4 + kept_whole
        assert not status["writer"]["stalled"]
        assert len(list(Path(status["writer"]["dead_letter_directory"]).glob("*.pb"))) == 4 + kept_whole
        rows = tt.query(
            "SELECT count(), uniqExact(span_id) FROM spans FINAL WHERE span_id IN {ids:Array(String)}",
            ids=canaries,
        )
        assert rows == [(len(canaries), len(canaries))]
