"""OTLP/HTTP receiver: POST /v1/traces and /v1/logs (protobuf or JSON, gzip), plus /metrics.

Status codes follow the OTLP/HTTP spec: 200 with `partial_success` when some items were
rejected, 400 for an undecodable body, 413 over the size limit, 415 for an unsupported content
type or encoding, 401 without a valid API key, 503 + Retry-After when the spool is full.
Error bodies are `google.rpc.Status`, encoded like the request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tokentrail.collector.decode import BadRequest, BodyTooLarge, Encoding, Signal, gunzip
from tokentrail.collector.ingest import Ingestor, Unauthorized
from tokentrail.collector.outcomes import outcomes_endpoint
from tokentrail.collector.spool import SpoolFull

__all__ = ["create_app"]

_CONTENT_TYPES: dict[str, Encoding] = {"application/x-protobuf": "protobuf", "application/json": "json"}


def _error(status: int, message: str, encoding: Encoding, headers: dict[str, str] | None = None) -> Response:
    grpc_code = {400: 3, 401: 16, 413: 8, 415: 3, 503: 14}.get(status, 2)
    body = status_pb2.Status(code=grpc_code, message=message)
    if encoding == "json":
        return JSONResponse({"code": grpc_code, "message": message}, status_code=status, headers=headers)
    return Response(body.SerializeToString(), status, headers=headers, media_type="application/x-protobuf")


def _api_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-tokentrail-api-key")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"body of {declared} bytes is over the limit of {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _endpoint(ingestor: Ingestor, signal: Signal) -> Callable[[Request], Any]:
    limit = ingestor.settings.max_body_bytes
    noun = "spans" if signal == "traces" else "log records"
    response_type = ExportTraceServiceResponse if signal == "traces" else ExportLogsServiceResponse

    async def export(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        encoding = _CONTENT_TYPES.get(content_type)
        if encoding is None:
            return _error(
                415, f"unsupported content type {content_type!r}: send application/x-protobuf or application/json",
                "json",
            )  # fmt: skip
        content_encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if content_encoding not in ("gzip", "identity", ""):
            return _error(415, f"unsupported content encoding {content_encoding!r}: use gzip or none", encoding)
        try:
            project = ingestor.project_for(_api_key(request))
            body = await _read_body(request, limit)
            if content_encoding == "gzip":
                body = await run_in_threadpool(gunzip, body, limit)
            decoded = await run_in_threadpool(ingestor.ingest, signal, body, encoding, project)
        except Unauthorized as exc:
            return _error(401, str(exc), encoding)
        except BodyTooLarge as exc:
            return _error(413, str(exc), encoding)
        except BadRequest as exc:
            return _error(400, str(exc), encoding)
        except SpoolFull as exc:
            return _error(503, str(exc), encoding, headers={"Retry-After": "5"})
        reply = response_type()
        if decoded.rejected:
            if signal == "traces":
                reply.partial_success.rejected_spans = decoded.rejected  # type: ignore[union-attr]
            else:
                reply.partial_success.rejected_log_records = decoded.rejected  # type: ignore[union-attr]
            reply.partial_success.error_message = f"{decoded.rejected} {noun} rejected: {decoded.reason}"
        if encoding == "json":
            return Response(
                json.dumps(json_format.MessageToDict(reply)), media_type="application/json"
            )
        return Response(reply.SerializeToString(), media_type="application/x-protobuf")

    return export


def create_app(ingestor: Ingestor, status: Callable[[], dict[str, Any]] | None = None) -> Starlette:
    async def metrics(_: Request) -> Response:
        return PlainTextResponse(ingestor.stats.prometheus(), media_type="text/plain; version=0.0.4")

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def api_status(_: Request) -> Response:
        return JSONResponse(status() if status else {"stats": ingestor.stats.snapshot()})

    return Starlette(
        routes=[
            Route("/v1/traces", _endpoint(ingestor, "traces"), methods=["POST"]),
            Route("/v1/logs", _endpoint(ingestor, "logs"), methods=["POST"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/api/status", api_status, methods=["GET"]),
            Route("/api/outcomes", outcomes_endpoint(ingestor, _api_key), methods=["POST"]),
        ]
    )
