"""API keys at a running collector: what a sender with a valid, revoked, expired, unknown or
read-only key sees, over OTLP/HTTP, OTLP/gRPC and `POST /api/outcomes`, and what gets stored."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult

from tests.support.collector import Running, running_collector
from tokentrail.store import keys

#: short, so that the tests wait little for a change of keys to be read
CACHE_SECONDS = 0.2

_TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _spans(*names: str) -> list[ReadableSpan]:
    provider = TracerProvider(resource=Resource.create({"service.name": "keyed-agent"}))
    spans = []
    for name in names:
        span = provider.get_tracer("test").start_span(name)
        span.end()
        spans.append(span)
    return spans  # type: ignore[return-value]  # ended SDK spans are ReadableSpans


def _http_export(tt: Running, key: str | None, *names: str) -> SpanExportResult:
    headers = {"Authorization": f"Bearer {key}"} if key else None
    exporter = HttpSpanExporter(endpoint=f"{tt.http_url}/v1/traces", headers=headers)
    try:
        return exporter.export(_spans(*names))
    finally:
        exporter.shutdown()


def _grpc_export(tt: Running, key: str | None, *names: str) -> SpanExportResult:
    headers = {"authorization": f"Bearer {key}"} if key else None
    exporter = GrpcSpanExporter(endpoint=tt.grpc_endpoint, insecure=True, headers=headers)
    try:
        return exporter.export(_spans(*names))
    finally:
        exporter.shutdown()


def _http_answer(tt: Running, key: str | None, path: str = "/v1/traces") -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{tt.http_url}{path}", json={}, headers=headers)


def _grpc_refusal(tt: Running, key: str | None) -> tuple[grpc.StatusCode, str]:
    """What the gRPC receiver answers an (empty) export sent with `key`; it must refuse it."""
    metadata = [("authorization", f"Bearer {key}")] if key else None
    with grpc.insecure_channel(tt.grpc_endpoint) as channel, pytest.raises(grpc.RpcError) as refused:
        channel.unary_unary(_TRACE_EXPORT)(b"", metadata=metadata, timeout=10)
    return refused.value.code(), refused.value.details() or ""


def _outcome(tt: Running, key: str | None, task_id: str) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    body = {"task_id": task_id, "name": "ticket_resolved", "success": True}
    return httpx.post(f"{tt.http_url}/api/outcomes", json=body, headers=headers)


def _stored(tt: Running) -> list[tuple[str, str]]:
    """(project, name) of the spans the exporters sent that were stored (not the outcomes')."""
    tt.flush()
    sql = "SELECT project, name FROM spans FINAL WHERE service_name = 'keyed-agent'"
    return sorted((p, n) for p, n in tt.query(sql))


def _wait_for_the_keys_to_be_read() -> None:
    time.sleep(CACHE_SECONDS * 1.5)


def _keyed(settings: Any, **changes: Any) -> Any:
    return settings.with_(key_cache_seconds=CACHE_SECONDS, **changes)


def test_a_revoked_key_stops_working_without_a_restart(settings, store):
    keys.create_project(store.client, "team-a")
    new = keys.create_key(store.client, "team-a", "ingest")
    with running_collector(_keyed(settings), store) as tt:
        assert _http_export(tt, new.key, "http before") == SpanExportResult.SUCCESS
        assert _grpc_export(tt, new.key, "grpc before") == SpanExportResult.SUCCESS
        assert _stored(tt) == [("team-a", "grpc before"), ("team-a", "http before")]

        revoked = keys.revoke_key(store.client, new.info.key_id)
        _wait_for_the_keys_to_be_read()

        assert _http_export(tt, new.key, "http after") == SpanExportResult.FAILURE
        assert _grpc_export(tt, new.key, "grpc after") == SpanExportResult.FAILURE
        assert revoked.revoked_at is not None
        said = f"API key {new.info.key_id} was revoked at {revoked.revoked_at:%Y-%m-%dT%H:%M:%S}Z"
        answer = _http_answer(tt, new.key)
        assert answer.status_code == 401 and answer.json()["message"] == said
        assert _grpc_refusal(tt, new.key) == (grpc.StatusCode.UNAUTHENTICATED, said)
        refused = _outcome(tt, new.key, "T-1")
        assert refused.status_code == 401 and refused.json()["error"] == said
        assert _stored(tt) == [("team-a", "grpc before"), ("team-a", "http before")]
        assert tt.query("SELECT count() FROM outcomes FINAL") == [(0,)]


def test_a_read_key_cannot_send_anything(settings, store):
    keys.create_project(store.client, "team-a")
    read = keys.create_key(store.client, "team-a", "read")
    said = (
        f"API key {read.info.key_id} of project 'team-a' may only read, not send data: send with an "
        "ingest key (`tokentrail keys create --project team-a --scope ingest`)"
    )
    with running_collector(_keyed(settings), store) as tt:
        assert _http_export(tt, read.key, "by http") == SpanExportResult.FAILURE
        assert _grpc_export(tt, read.key, "by grpc") == SpanExportResult.FAILURE
        for path in ("/v1/traces", "/v1/logs", "/v1/metrics"):
            answer = _http_answer(tt, read.key, path)
            assert (answer.status_code, answer.json()["message"]) == (403, said), path
        assert _grpc_refusal(tt, read.key) == (grpc.StatusCode.PERMISSION_DENIED, said)
        refused = _outcome(tt, read.key, "T-1")
        assert (refused.status_code, refused.json()["error"]) == (403, said)
        assert _stored(tt) == []
        assert tt.query("SELECT count() FROM logs") == [(0,)]
        assert tt.query("SELECT count() FROM outcomes FINAL") == [(0,)]


def test_unknown_expired_and_missing_keys_get_401_and_nothing_is_stored(settings, store):
    keys.create_project(store.client, "team-a")
    good = keys.create_key(store.client, "team-a", "ingest")
    # created two hours ago, for one hour
    created = datetime.now(UTC) - timedelta(hours=2)
    expired = keys.create_key(store.client, "team-a", "ingest", expires_in=timedelta(hours=1), now=created)
    forged = f"tt_{good.info.key_id}_{expired.key.split('_', 2)[2]}"  # a real id, another key's secret
    expired_at = f"{created + timedelta(hours=1):%Y-%m-%dT%H:%M:%S}Z"
    with running_collector(_keyed(settings), store) as tt:
        for key, said in (
            (expired.key, f"API key {expired.info.key_id} expired at {expired_at}"),
            (forged, "unknown API key"),
            ("tt_not-a-key", "unknown API key"),
            (None, "missing API key: send it as `Authorization: Bearer <key>`"),
        ):
            assert _http_export(tt, key, "refused") == SpanExportResult.FAILURE
            answer = _http_answer(tt, key)
            assert answer.status_code == 401 and answer.json()["message"].startswith(said), key
            code, details = _grpc_refusal(tt, key)
            assert code == grpc.StatusCode.UNAUTHENTICATED and details.startswith(said), key
        assert _grpc_export(tt, expired.key, "refused") == SpanExportResult.FAILURE
        assert _http_export(tt, good.key, "accepted") == SpanExportResult.SUCCESS
        assert _stored(tt) == [("team-a", "accepted")]


def test_environment_keys_keep_working_beside_database_keys(settings, store):
    keys.create_project(store.client, "team-a")
    new = keys.create_key(store.client, "team-a", "ingest")
    with running_collector(_keyed(settings, api_keys={"k-env": "team-env"}), store) as tt:
        assert _http_export(tt, "k-env", "env by http") == SpanExportResult.SUCCESS
        assert _grpc_export(tt, "k-env", "env by grpc") == SpanExportResult.SUCCESS
        assert _http_export(tt, new.key, "db by http") == SpanExportResult.SUCCESS
        ok = _outcome(tt, "k-env", "T-env")
        assert (ok.status_code, ok.json()["project"]) == (202, "team-env")
        assert _http_export(tt, "k-env2", "unknown") == SpanExportResult.FAILURE
        assert _stored(tt) == [
            ("team-a", "db by http"),
            ("team-env", "env by grpc"),
            ("team-env", "env by http"),
        ]
        assert tt.query("SELECT project, target_id FROM outcomes FINAL") == [("team-env", "T-env")]


def test_outcomes_need_an_ingest_key_once_a_key_exists(settings, store):
    keys.create_project(store.client, "team-a")
    with running_collector(_keyed(settings), store) as tt:
        # no key anywhere: open, as before keys existed, into the default project
        opened = _outcome(tt, None, "T-open")
        assert (opened.status_code, opened.json()["project"]) == (202, "default")
        assert _http_export(tt, None, "open") == SpanExportResult.SUCCESS

        ingest = keys.create_key(store.client, "team-a", "ingest")
        read = keys.create_key(store.client, "team-a", "read")
        _wait_for_the_keys_to_be_read()

        missing = _outcome(tt, None, "T-nokey")
        assert missing.status_code == 401 and missing.json()["error"].startswith("missing API key")
        assert _outcome(tt, read.key, "T-read").status_code == 403
        ok = _outcome(tt, ingest.key, "T-ingest")
        assert (ok.status_code, ok.json()["project"]) == (202, "team-a")
        assert _http_export(tt, None, "closed") == SpanExportResult.FAILURE

        # revoking every key does not open the collector again
        for key in (ingest, read):
            keys.revoke_key(store.client, key.info.key_id)
        _wait_for_the_keys_to_be_read()
        assert _outcome(tt, None, "T-after").status_code == 401
        assert _outcome(tt, ingest.key, "T-after").status_code == 401
        assert _stored(tt) == [("default", "open")]
        outcomes: Sequence[tuple[str, str]] = tt.query("SELECT project, target_id FROM outcomes FINAL")
        assert sorted(outcomes) == [("default", "T-open"), ("team-a", "T-ingest")]
