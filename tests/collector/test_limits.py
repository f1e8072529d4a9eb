"""What one client can hold or cost: deadlines for headers and bodies, the concurrency limit, the size
and depth of JSON bodies, on both OTLP ports of a real `tokentrail collector` process (raw sockets
that trickle bytes, real OTel exporters)."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support.collector import collector_env, free_port, start_collector_process
from tokentrail.server.settings import SettingsError, from_env

LIMITS = {
    "TOKENTRAIL_HEADER_TIMEOUT_SECONDS": "1",
    "TOKENTRAIL_BODY_TIMEOUT_SECONDS": "1",
    "TOKENTRAIL_MAX_CONCURRENT_REQUESTS": "4",
    "TOKENTRAIL_MAX_JSON_BODY_BYTES": "65536",
    "TOKENTRAIL_MAX_JSON_DEPTH": "16",
    "TOKENTRAIL_WRITER_WORKERS": "0",
}
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@dataclass
class Collector:
    port: int
    grpc_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stored(self, at_least: float = 0, within: float = 10) -> float:
        """Spans stored once everything acknowledged is (or `within` seconds have passed), and at
        least `at_least` are."""
        deadline = time.monotonic() + within
        while True:
            stats = httpx.get(f"{self.url}/api/status").json()["stats"]
            stored = float(stats["tokentrail_spans_stored_total"])
            settled = stored >= max(at_least, stats["tokentrail_spans_spooled_total"])
            if settled or time.monotonic() > deadline:
                return stored
            time.sleep(0.05)


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    port = free_port()
    env = collector_env(str(tmp_path_factory.mktemp("limits")), port, **LIMITS)
    proc = start_collector_process(env, port)
    try:
        yield Collector(port, int(env["TOKENTRAIL_OTLP_GRPC_PORT"]))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def _closed_after(
    sock: socket.socket, trickle: bytes = b"", every: float = 0.2, limit: float = 6.0
) -> tuple[float, bytes]:
    """Seconds until the server closes `sock`, sending `trickle` every `every` seconds meanwhile,
    and what the server sent."""
    start = time.monotonic()
    received = b""
    try:
        while time.monotonic() - start < limit:
            readable, _, _ = select.select([sock], [], [], every)
            if readable:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
            elif trickle:
                sock.sendall(trickle)
        else:
            raise AssertionError(f"the connection was still open after {limit} s")
    except (BrokenPipeError, ConnectionResetError):
        pass
    return time.monotonic() - start, received


def test_trickled_headers_and_silent_connections_are_cut_off(collector):
    with _connect(collector.port) as silent, _connect(collector.port) as trickler:
        trickler.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")
        assert 0.8 < _closed_after(trickler, trickle=b"X-Slow: 1\r\n")[0] < 4
        assert _closed_after(silent)[0] < 4
    # a client that keeps up is not affected
    assert httpx.get(f"{collector.url}/health").status_code == 200


def test_a_slow_body_gets_408_and_the_connection_is_closed(collector):
    with _connect(collector.port) as sock:
        sock.sendall(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"resourceSpans": ['
        )
        seconds, received = _closed_after(sock, trickle=b" ")
        assert 0.8 < seconds < 4
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ")
        assert json.loads(body)["message"] == "the request body did not arrive within 1 seconds"
    # one that answers without reading the body (here 415) does not wait for the rest for ever either
    with _connect(collector.port) as sock:
        sock.sendall(
            b"POST /api/outcomes HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 1000\r\n\r\nname="
        )
        seconds, received = _closed_after(sock, trickle=b"x")
        assert seconds < 5 and received.startswith(b"HTTP/1.1 415 ")


def _held_connections(port: int, count: int) -> list[socket.socket]:
    """Connections that started a request and send nothing more, as a misbehaving sender would."""
    socks = [_connect(port) for _ in range(count)]
    for sock in socks:
        sock.sendall(b"POST /v1/traces HTTP/1.1\r\n")
    return socks


def _spans(name: str) -> list:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "limits"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span(name):
        pass
    return list(memory.get_finished_spans())


def test_over_the_concurrency_limit_http_answers_503_and_exporters_get_through_after(collector):
    before = collector.stored()
    held = _held_connections(collector.port, 4)
    try:
        refused = httpx.post(
            f"{collector.url}/v1/traces", content=b"", headers={"content-type": "application/json"}
        )
        assert refused.status_code == 503
        # the real exporter backs off on the 503 and gets through once the held connections are cut
        exporter = HttpSpanExporter(endpoint=f"{collector.url}/v1/traces", timeout=15)
        assert exporter.export(_spans("through")) == SpanExportResult.SUCCESS
    finally:
        for sock in held:
            sock.close()
    assert collector.stored(at_least=before + 1) == before + 1


# --- gRPC: HTTP/2 frames by hand, to hold calls open the way a trickling sender does ------------


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload


def _header(name: bytes, value: bytes) -> bytes:
    return b"\x00" + bytes((len(name),)) + name + bytes((len(value),)) + value  # HPACK literal, not indexed


def _held_grpc_calls(port: int, count: int) -> socket.socket:
    """One HTTP/2 connection with `count` Export calls whose request message never finishes."""
    sock = _connect(port)
    headers = b"".join(
        _header(k, v)
        for k, v in (
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", EXPORT.encode()),
            (b":authority", b"x"),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        )
    )
    out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(4, 0, 0) + _frame(4, 1, 0)  # preface, SETTINGS, ACK
    for i in range(count):
        stream = 2 * i + 1
        # END_HEADERS; then a message that announces 1,000 bytes and sends 1
        out += _frame(1, 4, stream, headers) + _frame(0, 0, stream, b"\x00\x00\x00\x03\xe8\x0a")
    sock.sendall(out)
    return sock


def _export(channel: grpc.Channel, body: bytes) -> grpc.StatusCode:
    try:
        channel.unary_unary(EXPORT)(body, timeout=10)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def _grpc_request() -> bytes:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x05" * 16, b"\x06" * 8, "grpc limits"
    span.start_time_unix_nano = span.end_time_unix_nano = time.time_ns()
    return request.SerializeToString()


def test_grpc_calls_that_never_finish_are_cut_off_and_count_against_the_limit(collector):
    endpoint = f"127.0.0.1:{collector.grpc_port}"
    with _connect(collector.grpc_port) as silent:
        assert _closed_after(silent)[0] < 4  # no HTTP/2 preface in time
    held = _held_grpc_calls(collector.grpc_port, 4)
    with held, grpc.insecure_channel(endpoint) as channel:
        time.sleep(0.3)  # let the server take the four calls
        assert _export(channel, _grpc_request()) == grpc.StatusCode.RESOURCE_EXHAUSTED
        # the connection is recycled after the body timeout and closed one body timeout later,
        # which ends the calls it holds
        assert _closed_after(held)[0] < 5
        assert _export(channel, _grpc_request()) == grpc.StatusCode.OK


def test_grpc_exporters_follow_the_connection_recycling(collector):
    before = collector.stored()
    exporter = GrpcSpanExporter(endpoint=f"127.0.0.1:{collector.grpc_port}", insecure=True)
    try:
        for i in range(2):
            if i:
                time.sleep(2.5)  # past the connection's age and grace: it has been replaced
            assert exporter.export(_spans(f"recycled {i}")) == SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert collector.stored(at_least=before + 2) == before + 2


# --- JSON: size and depth ------------------------------------------------------------------------


def _depth(obj: object) -> int:
    if isinstance(obj, dict | list):
        return 1 + max(map(_depth, obj.values() if isinstance(obj, dict) else obj), default=0)
    return 0


def _nested_span(wraps: int, extra: int = 0) -> bytes:
    """A valid OTLP/JSON request whose attribute value nests `wraps` arrays deep, with an unknown
    field nesting `extra` lists beside it."""
    value: dict = {"stringValue": "x"}
    for _ in range(wraps):
        value = {"arrayValue": {"values": [value]}}
    span = {
        "traceId": "0a" * 16,
        "spanId": "0b" * 8,
        "name": "deep",
        "startTimeUnixNano": "1",
        "endTimeUnixNano": "1",
        "attributes": [{"key": "k", "value": value}],
    }
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})
    if extra:
        body = body[:-1] + ', "future": ' + "[" * extra + "]" * extra + "}"
    return body.encode()


@pytest.mark.parametrize("extra", [16, 30_000])
def test_json_nested_deeper_than_the_limit_is_400(collector, extra):
    too_deep = _nested_span(2, extra)
    if extra == 16:
        assert _depth(json.loads(too_deep)) == 17
    for path in ("/v1/traces", "/v1/logs", "/api/outcomes"):
        r = httpx.post(
            f"{collector.url}{path}", content=too_deep, headers={"content-type": "application/json"}
        )
        assert r.status_code == 400, (path, r.text)
        assert "JSON body is nested deeper than the limit of 16 levels" in r.text
    at_the_limit = _nested_span(2)
    assert _depth(json.loads(at_the_limit)) == 16
    r = httpx.post(
        f"{collector.url}/v1/traces", content=at_the_limit, headers={"content-type": "application/json"}
    )
    assert r.status_code == 200 and r.json() == {}


def test_json_bodies_have_a_lower_size_limit_than_protobuf(collector):
    request = ExportTraceServiceRequest.FromString(_grpc_request())
    request.resource_spans[0].scope_spans[0].spans[0].name = "x" * 70_000
    protobuf = httpx.post(
        f"{collector.url}/v1/traces",
        content=request.SerializeToString(),
        headers={"content-type": "application/x-protobuf"},
    )
    assert protobuf.status_code == 200
    body = {"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "x" * 70_000}]}]}]}
    r = httpx.post(f"{collector.url}/v1/traces", json=body)
    assert r.status_code == 413
    assert (
        r.json()["message"] == f"JSON body of {len(r.request.content)} bytes is over the limit of 65536 bytes"
    )


def test_limits_are_settings_checked_at_start(tmp_path: Path):
    base = {"TOKENTRAIL_DATA_DIR": str(tmp_path)}
    settings = from_env(base)
    assert (
        settings.max_concurrent_requests,
        settings.header_timeout_seconds,
        settings.body_timeout_seconds,
        settings.max_json_body_bytes,
        settings.max_json_depth,
    ) == (256, 10.0, 30.0, 4 << 20, 64)
    # a smaller body limit lowers the JSON one with it, unless that is set explicitly
    assert from_env({**base, "TOKENTRAIL_MAX_BODY_BYTES": "1048576"}).max_json_body_bytes == 1 << 20
    for name, value, message in (
        ("TOKENTRAIL_MAX_CONCURRENT_REQUESTS", "0", "TOKENTRAIL_MAX_CONCURRENT_REQUESTS=0 is out of range"),
        (
            "TOKENTRAIL_HEADER_TIMEOUT_SECONDS",
            "soon",
            "TOKENTRAIL_HEADER_TIMEOUT_SECONDS='soon' is not a number",
        ),
        (
            "TOKENTRAIL_BODY_TIMEOUT_SECONDS",
            "-1",
            "TOKENTRAIL_BODY_TIMEOUT_SECONDS='-1' must be greater than 0",
        ),
        (
            "TOKENTRAIL_BODY_TIMEOUT_SECONDS",
            "nan",
            "TOKENTRAIL_BODY_TIMEOUT_SECONDS='nan' must be greater than 0",
        ),
        ("TOKENTRAIL_MAX_JSON_DEPTH", "1000", "TOKENTRAIL_MAX_JSON_DEPTH=1000 is out of range (8 to 128)"),
        (
            "TOKENTRAIL_MAX_JSON_BODY_BYTES",
            str(64 << 20),
            "TOKENTRAIL_MAX_JSON_BODY_BYTES=67108864 is larger than TOKENTRAIL_MAX_BODY_BYTES=33554432",
        ),
    ):
        with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
            from_env({**base, name: value})


def test_a_kept_alive_connection_idle_between_requests_is_not_cut(collector):
    """The header deadline starts with a request's first byte: an exporter's kept-alive connection,
    idle between exports for longer than that, is reused."""
    connects = []
    with httpx.Client() as client:
        for i in range(3):
            if i:
                time.sleep(1.5)
            r = client.post(
                f"{collector.url}/v1/traces",
                content=_grpc_request(),
                headers={"content-type": "application/x-protobuf"},
                extensions={
                    "trace": lambda name, _: (
                        connects.append(name) if name == "connection.connect_tcp.complete" else None
                    )
                },
            )
            assert r.status_code == 200
    assert len(connects) == 1
