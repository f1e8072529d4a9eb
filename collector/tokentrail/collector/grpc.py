"""OTLP/gRPC receiver: TraceService/Export, LogsService/Export and MetricsService/Export.

Requests arrive as raw bytes (no deserializer), so the spool stores exactly what was sent and
both receivers share `Ingestor.ingest`. gRPC handles gzip itself.

How long each export takes to answer is observed in `tokentrail_request_duration_seconds`
(protocol="grpc").

Codes: UNAUTHENTICATED (missing, unknown, revoked or expired key), PERMISSION_DENIED (a key that
may not send: a read key), INVALID_ARGUMENT (undecodable), RESOURCE_EXHAUSTED (over the size limit,
larger than the whole spool, or over the concurrency limit), UNAVAILABLE (spool full or unable to
write, or the keys cannot be read: retryable), and OK with `partial_success` when some items were rejected.
"""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc

from tokentrail.collector.decode import BadRequest, Signal
from tokentrail.collector.ingest import Forbidden, Ingestor, Unauthorized, export_response
from tokentrail.collector.spool import RecordTooLarge, SpoolFull
from tokentrail.server.settings import Settings
from tokentrail.store.keys import KeysUnavailable

__all__ = ["create_server"]


def _api_key(context: Any) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and value.lower().startswith("bearer "):
            return str(value[7:].strip())
        if key == "x-tokentrail-api-key":
            return str(value)
    return None


def _handler(ingestor: Ingestor, signal: Signal) -> Any:
    timer = ingestor.stats.request_timer("grpc", signal)

    def export(body: bytes, context: Any) -> bytes:
        with timer.time():
            try:
                project = ingestor.project_for(_api_key(context))
                if len(body) > ingestor.settings.max_body_bytes:
                    context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "request is over the size limit")
                decoded = ingestor.ingest(signal, body, "protobuf", project)
            except Unauthorized as exc:
                context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
            except Forbidden as exc:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
            except KeysUnavailable as exc:
                context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            except BadRequest as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except RecordTooLarge as exc:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
            except SpoolFull as exc:
                # UNAVAILABLE is retryable for OTLP exporters; they back off and send again.
                context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            return export_response(signal, decoded).SerializeToString()

    return grpc.unary_unary_rpc_method_handler(export)


def _options(settings: Settings) -> list[tuple[str, int]]:
    body_ms = round(settings.body_timeout_seconds * 1000)
    return [
        ("grpc.max_receive_message_length", settings.max_body_bytes),
        ("grpc.so_reuseport", 0),
        # The connection preface and settings must arrive in time, like an HTTP request's headers.
        ("grpc.server_handshake_timeout_ms", round(settings.header_timeout_seconds * 1000)),
        # A worker thread waits for the whole request message of a call it has taken, and gRPC has
        # no server-side deadline for that: a sender that trickles its message would hold the
        # thread. Recycling every connection (GOAWAY, which clients follow by reconnecting) after
        # the body timeout, and closing it one body timeout later, bounds how long.
        ("grpc.max_connection_age_ms", body_ms),
        ("grpc.max_connection_age_grace_ms", body_ms),
    ]


def create_server(ingestor: Ingestor, address: str) -> tuple[Any, int]:
    """A started-ready (not started) gRPC server bound to `address`; returns it and the bound port."""
    limit = ingestor.settings.max_concurrent_requests
    server = grpc.server(
        # a thread for every call the limit lets in: a slow one cannot hold up the others
        futures.ThreadPoolExecutor(max_workers=limit, thread_name_prefix="tokentrail-grpc"),
        options=_options(ingestor.settings),
        maximum_concurrent_rpcs=limit,
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "opentelemetry.proto.collector.trace.v1.TraceService",
                {"Export": _handler(ingestor, "traces")},
            ),
            grpc.method_handlers_generic_handler(
                "opentelemetry.proto.collector.logs.v1.LogsService", {"Export": _handler(ingestor, "logs")}
            ),
            grpc.method_handlers_generic_handler(
                "opentelemetry.proto.collector.metrics.v1.MetricsService",
                {"Export": _handler(ingestor, "metrics")},
            ),
        )
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen for OTLP/gRPC on {address}")
    return server, port
