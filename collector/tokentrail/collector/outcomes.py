"""`POST /api/outcomes`: record how a task ended, over HTTP, from anything that is not an agent
(a ticketing webhook, a CI job when a pull request merges).

The outcome becomes the same standalone `outcome {name}` span that `tokentrail.record_outcome()`
sends, and goes through the one ingest path (spool first, so an acknowledged outcome is durable);
the summarizer files it under its target, which may arrive before or after it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tokentrail import semconv as sc
from tokentrail.collector.decode import BadRequest, BodyTimeout, BodyTooLarge, load_json
from tokentrail.collector.ingest import Forbidden, Ingestor, Unauthorized
from tokentrail.collector.spool import SpoolFull
from tokentrail.store.keys import KeysUnavailable

__all__ = ["MAX_OUTCOME_BYTES", "outcome_request", "outcomes_endpoint"]

MAX_OUTCOME_BYTES = 64 * 1024

_TARGETS = {
    "trace_id": sc.TT_OUTCOME_TRACE_ID,
    "task_id": sc.TT_TASK_ID,
    "conversation_id": sc.GEN_AI_CONVERSATION_ID,
    # a coding agent's session is its conversation (Claude Code's and Gemini CLI's session.id,
    # Codex's conversation.id)
    "session_id": sc.GEN_AI_CONVERSATION_ID,
}


def _text(body: dict[str, Any], key: str, limit: int = 1000) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit:
        raise BadRequest(f"{key} must be a string of at most {limit} characters")
    return value.strip()


def outcome_request(body: Any, now_ns: int | None = None) -> ExportTraceServiceRequest:
    """A validated outcome (JSON object) → an OTLP request holding its `outcome {name}` span."""
    if not isinstance(body, dict):
        raise BadRequest(
            'send a JSON object such as {"task_id": "T-17", "name": "pr_merged", "success": true}'
        )
    unknown = set(body) - {*_TARGETS, "name", "success", "value", "service"}
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    targets = {k: _text(body, k) for k in _TARGETS if _text(body, k)}
    if len(targets) != 1:
        raise BadRequest("give exactly one of trace_id, task_id, conversation_id or session_id")
    if "trace_id" in targets:
        trace_id = targets["trace_id"].lower()
        if (
            len(trace_id) != 32
            or any(c not in "0123456789abcdef" for c in trace_id)
            or set(trace_id) == {"0"}
        ):
            raise BadRequest("trace_id must be 32 hexadecimal characters (the W3C trace id)")
        targets["trace_id"] = trace_id
    name = _text(body, "name", 200)
    if not name:
        raise BadRequest('name is required (e.g. "ticket_resolved")')
    success = body.get("success")
    if success is not None and not isinstance(success, bool):
        raise BadRequest("success must be true, false or absent")
    value = body.get("value")
    if value is not None and (isinstance(value, bool) or not isinstance(value, str | int | float)):
        raise BadRequest("value must be a string or a number")
    if success is None and value is None:
        raise BadRequest("give success, value, or both")
    now_ns = now_ns or time.time_ns()
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    kv = resource.resource.attributes.add()
    kv.key, kv.value.string_value = sc.SERVICE_NAME, _text(body, "service", 200) or "tokentrail-outcomes-api"
    span = resource.scope_spans.add().spans.add()
    span.trace_id, span.span_id = os.urandom(16), os.urandom(8)
    span.name, span.kind = f"outcome {name}", Span.SpanKind.SPAN_KIND_INTERNAL
    span.start_time_unix_nano = span.end_time_unix_nano = now_ns
    attrs: dict[str, Any] = {sc.TT_OUTCOME_NAME: name, **{_TARGETS[k]: v for k, v in targets.items()}}
    for key, val in attrs.items():
        a = span.attributes.add()
        a.key, a.value.string_value = key, val
    if success is not None:
        a = span.attributes.add()
        a.key, a.value.bool_value = sc.TT_OUTCOME_SUCCESS, success
    if value is not None:
        a = span.attributes.add()
        a.key = sc.TT_OUTCOME_VALUE
        if isinstance(value, str):
            a.value.string_value = value[:1000]
        else:
            a.value.double_value = float(value)
    return request


def outcomes_endpoint(
    ingestor: Ingestor,
    api_key: Callable[[Request], str | None],
    read_body: Callable[[Request, int, float, str], Awaitable[bytes]],
) -> Any:
    settings = ingestor.settings

    async def record(request: Request) -> Response:
        # Only JSON: a browser posts text/plain and form types cross-site without asking (no CORS
        # preflight), so accepting them would let any web page record outcomes when keys are unset.
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return JSONResponse(
                {"error": f"unsupported content type {content_type!r}: send application/json"},
                status_code=415,
            )
        try:
            project = await run_in_threadpool(ingestor.project_for, api_key(request))
            raw = await read_body(request, MAX_OUTCOME_BYTES, settings.body_timeout_seconds, "an outcome")
            otlp = outcome_request(load_json(raw, settings.max_json_depth))
            await run_in_threadpool(ingestor.ingest, "traces", otlp.SerializeToString(), "protobuf", project)
        except Unauthorized as exc:
            return JSONResponse({"error": str(exc)}, status_code=401)
        except Forbidden as exc:
            return JSONResponse({"error": str(exc)}, status_code=403)
        except KeysUnavailable as exc:
            return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "5"})
        except BodyTimeout as exc:
            return JSONResponse({"error": str(exc)}, status_code=408, headers={"Connection": "close"})
        except BodyTooLarge as exc:
            return JSONResponse({"error": str(exc)}, status_code=413)
        except BadRequest as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except SpoolFull as exc:
            return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": "5"})
        span = otlp.resource_spans[0].scope_spans[0].spans[0]
        return JSONResponse({"outcome_id": span.span_id.hex(), "project": project}, status_code=202)

    return record
