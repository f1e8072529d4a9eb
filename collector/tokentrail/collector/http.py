"""OTLP/HTTP receiver: POST /v1/traces, /v1/logs and /v1/metrics (protobuf or JSON, gzip), plus
/metrics (the collector's own).

/metrics is the collector's `Stats` in the Prometheus text format (or OpenMetrics, when the
scraper asks for it); how long each export takes to answer is observed there, in
`tokentrail_request_duration_seconds` (protocol="http"). With authentication on, /metrics and
/api/status need a read key; /health answers anyone, and says only "ok".

Status codes follow the OTLP/HTTP spec: 200 with `partial_success` when some items were
rejected, 400 for an undecodable body, 408 when the body does not arrive in time, 413 over the
size limit (or larger than the whole spool), 415 for an unsupported content type or encoding,
401 without a valid API key (missing, unknown, revoked, expired), 403 for a key that may not send
(a read key), 503 + Retry-After when the spool is full or cannot write, or the keys cannot be read.
Error bodies are `google.rpc.Status`, encoded like the request.

`server_config` is how every HTTP port of a server is run: a bounded number of connections and
requests at once, and deadlines for each request's headers and body.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import uvicorn
from google.protobuf import json_format
from google.rpc import status_pb2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tokentrail.collector.decode import BadRequest, BodyTimeout, BodyTooLarge, Encoding, Signal, gunzip
from tokentrail.collector.ingest import Forbidden, Ingestor, Unauthorized, export_response
from tokentrail.collector.outcomes import outcomes_endpoint
from tokentrail.collector.spool import RecordTooLarge, SpoolFull
from tokentrail.server.settings import Settings
from tokentrail.store.keys import KeysUnavailable

__all__ = ["create_app", "read_body", "server_config"]

_CONTENT_TYPES: dict[str, Encoding] = {"application/x-protobuf": "protobuf", "application/json": "json"}
# The rest of a body that is too slow is not worth waiting for: the connection is closed. (One
# answered before its body was read for another reason is drained, within the body deadline, so
# that the client reads the answer instead of a reset.)
_CLOSE = {"Connection": "close"}


def _error(status: int, message: str, encoding: Encoding, headers: dict[str, str] | None = None) -> Response:
    grpc_code = {400: 3, 401: 16, 403: 7, 408: 4, 413: 8, 415: 3, 503: 14}.get(status, 2)
    body = status_pb2.Status(code=grpc_code, message=message)
    if encoding == "json":
        return JSONResponse({"code": grpc_code, "message": message}, status_code=status, headers=headers)
    return Response(body.SerializeToString(), status, headers=headers, media_type="application/x-protobuf")


def _api_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-tokentrail-api-key")


async def read_body(request: Request, limit: int, timeout: float, what: str = "body") -> bytes:
    """The request body, read no further than `limit` bytes (BodyTooLarge) and for no longer than
    `timeout` seconds (BodyTimeout)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"{what} of {declared} bytes is over the limit of {limit} bytes")
    chunks = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(f"{what} is over the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout(f"the request body did not arrive within {timeout:g} seconds") from None
    return b"".join(chunks)


def _endpoint(ingestor: Ingestor, signal: Signal) -> Callable[[Request], Any]:
    settings = ingestor.settings
    limits: dict[Encoding, tuple[int, str]] = {
        "protobuf": (settings.max_body_bytes, "body"),
        "json": (settings.max_json_body_bytes, "JSON body"),
    }
    timer = ingestor.stats.request_timer("http", signal)

    async def export(request: Request) -> Response:
        with timer.time():
            return await answer(request)

    async def answer(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        encoding = _CONTENT_TYPES.get(content_type)
        if encoding is None:
            return _error(
                415,
                f"unsupported content type {content_type!r}: send application/x-protobuf or application/json",
                "json",
            )
        content_encoding = request.headers.get("content-encoding", "identity").strip().lower()
        if content_encoding not in ("gzip", "identity", ""):
            return _error(
                415, f"unsupported content encoding {content_encoding!r}: use gzip or none", encoding
            )
        limit, what = limits[encoding]
        try:
            project = await run_in_threadpool(ingestor.project_for, _api_key(request))
            body = await read_body(request, limit, settings.body_timeout_seconds, what)
            if content_encoding == "gzip":
                body = await run_in_threadpool(gunzip, body, limit)
            decoded = await run_in_threadpool(ingestor.ingest, signal, body, encoding, project)
        except Unauthorized as exc:
            return _error(401, str(exc), encoding)
        except Forbidden as exc:
            return _error(403, str(exc), encoding)
        except KeysUnavailable as exc:
            return _error(503, str(exc), encoding, headers={"Retry-After": "5"})
        except BodyTimeout as exc:
            ingestor.stats.add("tokentrail_requests_invalid_total")
            return _error(408, str(exc), encoding, headers=_CLOSE)
        except BodyTooLarge as exc:
            ingestor.stats.add("tokentrail_requests_invalid_total")
            return _error(413, str(exc), encoding)
        except RecordTooLarge as exc:
            # larger than the whole spool may hold: retrying (a 503) could never succeed
            return _error(413, str(exc), encoding)
        except BadRequest as exc:
            return _error(400, str(exc), encoding)
        except SpoolFull as exc:
            return _error(503, str(exc), encoding, headers={"Retry-After": "5"})
        reply = export_response(signal, decoded)
        if encoding == "json":
            return Response(json.dumps(json_format.MessageToDict(reply)), media_type="application/json")
        return Response(reply.SerializeToString(), media_type="application/x-protobuf")

    return export


def _reads_with(ingestor: Ingestor) -> Callable[[str], bool]:
    """Whether a key may read the collector's own figures: a read key of the key ring (the
    database's keys and the settings')."""

    def may_read(presented: str) -> bool:
        try:
            grant = ingestor.keys.verify(presented) if ingestor.keys is not None else None
        except KeysUnavailable:
            return False
        return grant is not None and grant.allows("read")

    return may_read


def create_app(
    ingestor: Ingestor,
    status: Callable[[], dict[str, Any]] | None = None,
    may_read: Callable[[str], bool] | None = None,
) -> Starlette:
    """The collector's HTTP routes. With authentication on (`Settings.auth_on`), its own figures
    (/metrics, /api/status: counters, and the spool's directories and errors) are for holders of
    a read key (`may_read`; by default the keys of the settings), as `Authorization: Bearer`."""
    reads = may_read or _reads_with(ingestor)

    def guarded() -> bool:
        """Sign-in or keys in the settings, or keys created in the database."""
        if ingestor.settings.auth_on:
            return True
        try:
            return ingestor.keys is not None and ingestor.keys.keys_exist()
        except KeysUnavailable:
            return True

    def refused(request: Request) -> Response | None:
        key = _api_key(request)
        if not guarded() or (key and reads(key)):
            return None
        return JSONResponse(
            {"error": "send a read key as `Authorization: Bearer <key>`"},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="tokentrail"'},
        )

    async def metrics(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        body, content_type = ingestor.stats.exposition(request.headers.get("accept", ""))
        return Response(body, headers={"Content-Type": content_type})

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def api_status(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        return JSONResponse(status() if status else {"stats": ingestor.stats.snapshot()})

    return Starlette(
        routes=[
            Route("/v1/traces", _endpoint(ingestor, "traces"), methods=["POST"]),
            Route("/v1/logs", _endpoint(ingestor, "logs"), methods=["POST"]),
            Route("/v1/metrics", _endpoint(ingestor, "metrics"), methods=["POST"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/api/status", api_status, methods=["GET"]),
            Route("/api/outcomes", outcomes_endpoint(ingestor, _api_key, read_body), methods=["POST"]),
        ]
    )


class _DeadlineProtocol(HttpToolsProtocol):  # type: ignore[misc]
    """uvicorn's httptools protocol with deadlines, which it lacks: a request's headers must arrive
    within `header_timeout` of its first byte (or of the connection, for the first request), and
    its body within `body_timeout` of its headers; else the connection is closed. Without them a
    client that trickles bytes holds its connection, and a place under the concurrency limit,
    for as long as it likes. (Endpoints that read a body answer 408 before this fires.)

    httptools parses in C: a 2 MB export's body is read for about half the CPU time of the
    pure-Python h11 parser."""

    header_timeout = 10.0
    body_timeout = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        self._awaiting = ""
        super().connection_made(transport)
        self._arm("headers", self.header_timeout)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # the first byte of a later request on a kept-alive connection, which was idle under
        # uvicorn's keep-alive timeout until now
        if self._awaiting != "headers":
            self._arm("headers", self.header_timeout)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm("body", self.body_timeout)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, awaiting: str, seconds: float) -> None:
        self._disarm()
        self._awaiting = awaiting
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._awaiting = ""

    def _expired(self) -> None:
        self._deadline = None
        self._awaiting = ""
        if not self.transport.is_closing():
            self.transport.close()


def server_config(app: Any, settings: Settings, port: int, host: str | None = None) -> uvicorn.Config:
    """How a server's HTTP port runs (on `host`, by default the collector's): at most
    `max_concurrent_requests` connections and requests at once (503 past that), and deadlines for
    each request's headers and body. uvicorn's own reading of X-Forwarded-* is off: the web UI
    believes them from `TOKENTRAIL_TRUSTED_PROXIES` only."""
    protocol = type(
        "DeadlineProtocol",
        (_DeadlineProtocol,),
        # one second later than the endpoints' own body deadline, so that they answer 408 first
        {
            "header_timeout": settings.header_timeout_seconds,
            "body_timeout": settings.body_timeout_seconds + 1,
        },
    )
    return uvicorn.Config(
        app,
        host=settings.host if host is None else host,
        port=port,
        proxy_headers=False,
        log_level="warning",
        access_log=False,
        http=protocol,
        limit_concurrency=settings.max_concurrent_requests,
    )
