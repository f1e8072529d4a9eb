"""A running collector for tests: real HTTP and gRPC listeners on free loopback ports."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families

from tokentrail.collector.http import server_config
from tokentrail.collector.service import Collector
from tokentrail.server.settings import Settings
from tokentrail.store import Store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    collector: Collector
    http_url: str
    grpc_endpoint: str
    store: Store

    def flush(self) -> None:
        """Wait until everything acknowledged is in ClickHouse and summaries are fresh."""
        self.collector.writer.flush()

    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        return list(self.store.client.query(sql, parameters=params).result_rows)


@contextmanager
def running_collector(
    settings: Settings, store: Store, *, pricer: Any = None, writer: bool = True
) -> Iterator[Running]:
    settings = settings.with_(otlp_http_port=free_port(), otlp_grpc_port=free_port())
    collector = Collector(settings, store, pricer=pricer)
    collector.start(grpc=True)
    if not writer:
        collector.writer.stop()
    server = uvicorn.Server(
        server_config(collector.app, settings.with_(host="127.0.0.1"), settings.otlp_http_port)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("collector HTTP server did not start")
        time.sleep(0.02)
    try:
        yield Running(
            collector,
            f"http://127.0.0.1:{settings.otlp_http_port}",
            f"127.0.0.1:{collector.grpc_port}",
            store,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        collector.stop()


def scrape(base_url: str, api_key: str = "") -> dict[str, float]:
    """A collector's /metrics, parsed with prometheus_client's parser: each sample's value by its
    name, written `name{label="value",...}` (labels sorted) when it has labels. `api_key`: a read
    key, which /metrics asks for once keys exist."""
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.get(f"{base_url}/metrics", headers=headers)
    response.raise_for_status()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def collector_env(data_dir: str, port: int, **extra: str) -> dict[str, str]:
    """The environment for a `tokentrail collector` subprocess, free of the developer's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TOKENTRAIL_"))}
    grpc_port = free_port()
    while grpc_port == port:  # both were free a moment ago; the OS may hand out the same one twice
        grpc_port = free_port()
    env.update(
        TOKENTRAIL_DATA_DIR=data_dir,
        TOKENTRAIL_OTLP_HTTP_PORT=str(port),
        TOKENTRAIL_OTLP_GRPC_PORT=str(grpc_port),
        **extra,
    )
    return env


def start_collector_process(
    env: dict[str, str], port: int, command: str = "collector"
) -> subprocess.Popen[bytes]:
    """Start `tokentrail collector` (or `up`) and wait until the collector's /health answers."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tokentrail", command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"collector exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("collector did not become healthy")


def start_database_process(
    data_dir: Path, pythonpath: str | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `tokentrail database` on `data_dir` and wait until its endpoint answers; returns the
    process and the endpoint's URL (with the user and password it published). `pythonpath`: the
    source tree to run (default: this one)."""
    env = collector_env(str(data_dir), free_port())
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.Popen(
        [sys.executable, "-m", "tokentrail", "database"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    published = data_dir / ".chdb.endpoint"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode()[-2000:] if proc.stderr else "exited")
        if published.exists():
            url = json.loads(published.read_text())["url"]
            try:
                if httpx.get(f"http://{url.split('@', 1)[1]}/ping", timeout=1).text == "Ok.\n":
                    return proc, url
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("`tokentrail database` did not start")


def chat_request(
    rng: random.Random, spans: int, service: str, name: str = "chat step", input_tokens: int | None = None
) -> tuple[bytes, list[str]]:
    """An OTLP request of `spans` chat spans in one trace, and their span ids (hex)."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    attr = rs.resource.attributes.add()
    attr.key, attr.value.string_value = "service.name", service
    scope = rs.scope_spans.add()
    trace_id = rng.randbytes(16)
    ids = []
    for i in range(spans):
        span = scope.spans.add()
        span.trace_id, span.span_id = trace_id, rng.randbytes(8)
        span.name = f"{name} {i}"
        span.start_time_unix_nano = time.time_ns()
        span.end_time_unix_nano = span.start_time_unix_nano + 1000
        for key, value in (("gen_ai.operation.name", "chat"), ("gen_ai.request.model", "gpt-4o-mini")):
            kv = span.attributes.add()
            kv.key, kv.value.string_value = key, value
        if input_tokens is not None:
            kv = span.attributes.add()
            kv.key, kv.value.int_value = "gen_ai.usage.input_tokens", input_tokens
        ids.append(span.span_id.hex())
    return request.SerializeToString(), ids


def stored_span_counts(env: dict[str, str]) -> dict[str, int]:
    """span id -> rows in ClickHouse, asked by another process once the collector has stopped."""
    code = (
        "import json\n"
        "from tokentrail.server.settings import from_env\n"
        "from tokentrail.store import connect\n"
        "st = connect(from_env())\n"
        "rows = st.client.query('SELECT span_id, count() FROM spans FINAL GROUP BY span_id').result_rows\n"
        "print(json.dumps(dict(rows)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return {k: int(v) for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a collector's flattening workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def is_alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; only its parent has not reaped it
